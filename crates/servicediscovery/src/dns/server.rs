//! The DNS listeners. UDP is served by plain threads, each blocking on its own `SO_REUSEPORT`
//! socket (the kernel spreads queries over them): per query that is one receive, a lookup in the
//! swapped-in table, an encode and one send, with no task wake-ups. TCP (for answers that did not
//! fit UDP) runs on tokio. Forwarded names are handed to tokio tasks so a slow upstream never
//! holds a responder thread.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flotilla_api::supervisor::LoopHandle;
use flotilla_api::Ctx;
use hickory_proto::op::{Message, ResponseCode};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::answer::{self, Outcome};
use super::fast;
use super::follow::{self, Shared};
use super::forward::Upstreams;
use super::table::Table;

/// How often a blocked UDP thread wakes to see whether the server is stopping.
const POLL: Duration = Duration::from_millis(200);
/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// UDP responder threads (one socket each); 0 means one per available CPU, at most 4.
    pub udp_threads: usize,
    /// Where outside names go; `None` reads the host's /etc/resolv.conf.
    pub upstreams: Option<Upstreams>,
}

/// A running DNS server.
pub struct DnsServer {
    addr: SocketAddr,
    table: Shared,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    tcp: tokio::task::JoinHandle<()>,
    follow: LoopHandle,
}

impl DnsServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The table queries are answered from now.
    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tcp.abort();
        self.follow.stop().await;
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| drop(t.join()))).await;
    }
}

fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    // Room for bursts (as NSD asks for): a full receive buffer drops queries silently. Best
    // effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(1 << 20);
    let _ = socket.set_send_buffer_size(1 << 20);
    socket.bind(&addr.into())?;
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket.into())
}

/// A FORMERR for a datagram that did not parse, if it has a header to answer.
fn format_error(query: &[u8]) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    let mut out = header.to_vec();
    out[2] = 0x80 | (header[2] & 0x79); // QR, the opcode and RD kept
    out[3] = 1; // FORMERR
    out[4..12].fill(0);
    Some(out)
}

fn servfail(request: &Message) -> Option<Vec<u8>> {
    answer::error(request, ResponseCode::ServFail).to_vec().ok()
}

fn udp_loop(
    socket: UdpSocket,
    table: Shared,
    upstreams: Arc<Upstreams>,
    stop: Arc<AtomicBool>,
    rt: tokio::runtime::Handle,
) {
    let mut buf = [0u8; 4096];
    let mut out = Vec::with_capacity(4096);
    let mut rng = rand::thread_rng();
    let mut cache = fast::Cache::default();
    let socket = Arc::new(socket);
    while !stop.load(Ordering::Relaxed) {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "DNS UDP receive failed");
                continue;
            }
        };
        let query = &buf[..n];
        let current = table.load();
        cache.follow(&current);
        let plain = fast::parse(query);
        if let Some(p) = &plain {
            if cache.answer(p, query, &mut out) {
                let _ = socket.send_to(&out, peer);
                continue;
            }
        }
        let Ok(request) = Message::from_vec(query) else {
            if let Some(reply) = format_error(query) {
                let _ = socket.send_to(&reply, peer);
            }
            continue;
        };
        match answer::answer(&current, &request, &mut rng) {
            Outcome::Answer(m) => {
                if let Some(bytes) = answer::encode(&m, answer::udp_limit(&request)) {
                    let _ = socket.send_to(&bytes, peer);
                    if let Some(p) = plain.filter(|p| fast::fixed(&current, &p.key)) {
                        cache.insert(p, &bytes);
                    }
                }
            }
            Outcome::Forward => {
                let (socket, upstreams, query) = (socket.clone(), upstreams.clone(), query.to_vec());
                rt.spawn(async move {
                    let reply = match upstreams.forward(&query).await {
                        Some(r) => Some(r),
                        None => servfail(&request),
                    };
                    if let Some(reply) = reply {
                        let _ = socket.send_to(&reply, peer);
                    }
                });
            }
        }
    }
}

async fn tcp_connection(mut conn: tokio::net::TcpStream, table: Shared, upstreams: Arc<Upstreams>) -> io::Result<()> {
    let mut buf = vec![0u8; 65535];
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, conn.read_u16()).await {
            Ok(Ok(len)) => len as usize,
            _ => return Ok(()),
        };
        conn.read_exact(&mut buf[..len]).await?;
        let query = &buf[..len];
        let reply = match Message::from_vec(query) {
            Err(_) => format_error(query),
            Ok(request) => {
                let outcome = answer::answer(&table.load(), &request, &mut rand::thread_rng());
                match outcome {
                    Outcome::Answer(m) => answer::encode(&m, 65535),
                    Outcome::Forward => match upstreams.forward(query).await {
                        Some(r) => Some(r),
                        None => servfail(&request),
                    },
                }
            }
        };
        let Some(reply) = reply else { return Ok(()) };
        conn.write_all(&(reply.len() as u16).to_be_bytes()).await?;
        conn.write_all(&reply).await?;
    }
}

/// Binds UDP and TCP on the same port. With port 0 the kernel's pick for one protocol may be
/// taken in the other, so a few picks are tried before giving up.
async fn bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = udp_socket(addr)?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

/// Starts answering on `addr` (UDP and TCP, same port; port 0 picks one).
pub async fn start(ctx: &Ctx, addr: SocketAddr, settings: Settings) -> io::Result<DnsServer> {
    let (table, follow) = follow::start(ctx).await.map_err(|e| io::Error::other(e.to_string()))?;
    let (first, tcp) = bind_pair(addr).await?;
    let addr = first.local_addr()?;
    let upstreams = Arc::new(settings.upstreams.unwrap_or_else(|| Upstreams::from_host(addr)));
    let threads = match settings.udp_threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(4),
        n => n,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Handle::current();
    let mut handles = Vec::new();
    let mut sockets = vec![first];
    for _ in 1..threads {
        sockets.push(udp_socket(addr)?);
    }
    for (n, socket) in sockets.into_iter().enumerate() {
        let (t, u, s, r) = (table.clone(), upstreams.clone(), stop.clone(), rt.clone());
        handles.push(
            std::thread::Builder::new().name(format!("dns-udp-{n}")).spawn(move || udp_loop(socket, t, u, s, r))?,
        );
    }
    let (t, u) = (table.clone(), upstreams.clone());
    let tcp = tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = tcp.accept().await else { continue };
            let (t, u) = (t.clone(), u.clone());
            tokio::spawn(async move {
                let _ = tcp_connection(conn, t, u).await;
            });
        }
    });
    tracing::info!(%addr, udp_threads = threads, upstreams = ?upstreams.servers, "Cloud Map DNS server listening");
    Ok(DnsServer { addr, table, stop, threads: handles, tcp, follow })
}

/// Serves DNS on `addr` until `shutdown` completes.
pub async fn serve(ctx: &Ctx, addr: SocketAddr, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let server = start(ctx, addr, Settings::default()).await?;
    shutdown.await;
    server.stop().await;
    Ok(())
}
