//! The workload's HTTP/1.1: a server that answers every request with 200 and a fixed body (or the
//! environment at `/env`), one thread per connection with keep-alive, and a one-shot GET client for
//! the `get` and `healthcheck` commands. Only what tests and load generators send is understood:
//! request bodies are skipped by Content-Length, chunked uploads are refused by closing.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Longest request line or header line accepted; protects the server from a runaway client.
const MAX_LINE: u64 = 16 * 1024;
/// How long the client waits to connect, and then for each read.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `0.0.0.0:port` (port 0 picks a free one), prints the bound address so callers can find
/// it, and serves forever. Only a failure to bind returns.
pub fn serve(port: u16, body: Option<String>) -> io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port))?;
    println!("listening on {}", listener.local_addr()?);
    let body: Arc<str> = body.unwrap_or_else(|| format!("flotilla-workload on {}\n", crate::hostname())).into();
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let body = Arc::clone(&body);
                thread::spawn(move || {
                    // A client that goes away mid-request is normal under load; nothing to report.
                    let _ = handle(stream, &body);
                });
            }
            // Accept errors (EMFILE under a connection storm, say) pass; keep serving.
            Err(e) => eprintln!("accept: {e}"),
        }
    }
    Ok(())
}

/// Serves requests on one connection until the client closes it or asks to.
fn handle(stream: TcpStream, body: &str) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let Some(request_line) = read_line(&mut reader)? else { return Ok(()) };
        let mut parts = request_line.split_whitespace();
        let (method, path, version) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"), parts.next());
        let mut keep_alive = version == Some("HTTP/1.1");
        let mut content_length = 0u64;
        loop {
            let Some(line) = read_line(&mut reader)? else { return Ok(()) };
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("connection") {
                keep_alive =
                    !value.eq_ignore_ascii_case("close") && (keep_alive || value.eq_ignore_ascii_case("keep-alive"));
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // Chunked request bodies are not worth parsing here: answer, then close.
                keep_alive = false;
            }
        }
        io::copy(&mut (&mut reader).take(content_length), &mut io::sink())?;

        let env_body;
        let payload = if path == "/env" {
            env_body = crate::environment_text();
            env_body.as_str()
        } else {
            body
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
            payload.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        let mut response = head.into_bytes();
        if method != "HEAD" {
            response.extend_from_slice(payload.as_bytes());
        }
        writer.write_all(&response)?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// One line without its line ending; `None` at a clean end of stream.
fn read_line(reader: &mut BufReader<TcpStream>) -> io::Result<Option<String>> {
    let mut line = String::new();
    let n = reader.take(MAX_LINE).read_line(&mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with('\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "header line too long or truncated"));
    }
    line.truncate(line.trim_end_matches(['\r', '\n']).len());
    Ok(Some(line))
}

/// What a GET returned.
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// GETs an `http://host[:port][/path]` URL over HTTP/1.0 with `Connection: close`, so the body is
/// simply everything after the head.
pub fn get(url: &str) -> Result<Response, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut stream = connect_once(&with_port)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| format!("{url}: {e}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| format!("{url}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("{url}: no complete response head"))?;
    let status =
        head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("{url}: bad status line"))?;
    Ok(Response { status, body: body.to_string() })
}

/// Resolves `host:port` and tries each address once, with [`CLIENT_TIMEOUT`].
pub fn connect_once(host_port: &str) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> =
        host_port.to_socket_addrs().map_err(|e| format!("cannot resolve {host_port}: {e}"))?.collect();
    let mut last = format!("{host_port}: no addresses");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}
