//! The HTTP/1.1 reverse proxy of HTTP listeners: routes each request by the listener's rules,
//! answers fixed responses and redirects itself, and forwards the rest to a target of the chosen
//! group over pooled keep-alive connections, streaming bodies both ways. Upgrade requests
//! (websockets) become a tunnel once the target switches protocols. Errors are ALB's: 502 when
//! the target fails, 503 when the group has no target, 504 when it does not answer in time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;

use crate::node::Node;
use crate::rules::{RedirectInput, RequestView, RouteAction};
use crate::targets::Outstanding;
use crate::upstream;

pub type ProxyBody = Either<Tracked, Full<Bytes>>;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// A target's response body, counted as an outstanding request until it is sent in full; its
/// connection goes back to the target's pool when the body ended.
pub struct Tracked {
    inner: Incoming,
    outstanding: Outstanding,
    connection: Option<upstream::Sender>,
    ended: bool,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.ended || self.inner.is_end_stream() {
            if let Some(sender) = self.connection.take() {
                self.outstanding.slot.pool.put(sender);
            }
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer the load balancer makes itself, with ALB's `Server` header.
fn own(status: StatusCode, content_type: Option<HeaderValue>, body: Bytes) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::SERVER, HeaderValue::from_static("awselb/2.0"));
    if let Some(ct) = content_type {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}

/// ALB's error page for `status`.
fn error_page(status: StatusCode) -> Response<ProxyBody> {
    let text = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    let body = format!(
        "<html>\r\n<head><title>{text}</title></head>\r\n<body>\r\n<center><h1>{text}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    own(status, Some(HeaderValue::from_static("text/html")), Bytes::from(body))
}

fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

/// Whether `name` concerns one connection only (those `Connection` names aside).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::UPGRADE
        || *name == KEEP_ALIVE
        || *name == PROXY_CONNECTION
        || *name == header::PROXY_AUTHENTICATE
        || *name == header::PROXY_AUTHORIZATION
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::TRANSFER_ENCODING
}

/// Removes the headers that concern one connection only (and those `Connection` names).
/// When tunneling, `Upgrade` and `Connection: upgrade` go through.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, tunneling: bool) {
    // Most messages carry none of them: one pass over their few names instead of a dozen
    // hash lookups.
    if !tunneling && !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            if !(tunneling && name == header::UPGRADE) {
                headers.remove(&name);
            }
        }
        headers.remove(header::CONNECTION);
    }
    for name in [&KEEP_ALIVE, &PROXY_CONNECTION] {
        headers.remove(name);
    }
    for name in [
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    if tunneling {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// One client connection to an HTTP listener, and what every request on it shares.
pub struct Conn {
    pub node: Arc<Node>,
    pub port: u16,
    pub peer: SocketAddr,
    /// The client's address and the listener's port as header values, made once.
    peer_ip: HeaderValue,
    port_value: HeaderValue,
}

impl Conn {
    pub fn new(node: Arc<Node>, port: u16, peer: SocketAddr) -> Conn {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_canonical().to_string()).expect("an IP is a header value");
        Conn { node, port, peer, peer_ip, port_value: HeaderValue::from(port) }
    }

    /// Adds ALB's `X-Forwarded-*` headers: the client's address appended to `X-Forwarded-For`.
    fn forwarded(&self, headers: &mut HeaderMap) {
        let xff = if headers.contains_key(&X_FORWARDED_FOR) {
            let mut xff = String::new();
            // Several X-Forwarded-For lines are one list, as if joined by commas.
            for prior in headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()) {
                if !prior.trim().is_empty() {
                    xff.push_str(prior.trim());
                    xff.push_str(", ");
                }
            }
            xff.push_str(self.peer_ip.to_str().unwrap_or(""));
            HeaderValue::from_str(&xff).unwrap_or_else(|_| self.peer_ip.clone())
        } else {
            self.peer_ip.clone()
        };
        headers.insert(X_FORWARDED_FOR.clone(), xff);
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
        headers.insert(X_FORWARDED_PORT.clone(), self.port_value.clone());
    }
}

/// Serves one request received on a connection to an HTTP listener.
pub async fn handle(conn: Arc<Conn>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let table = conn.node.table.load_full();
    let Some(listener) = table.listeners.get(&conn.port) else {
        return Ok(error_page(StatusCode::SERVICE_UNAVAILABLE));
    };
    listener.metrics.requests.inc();
    let resp = route(&conn, listener, req).await;
    if resp.status().is_server_error() {
        listener.metrics.http_5xx.inc();
    }
    Ok(resp)
}

async fn route(conn: &Conn, listener: &crate::table::ListenerRoute, req: Request<Incoming>) -> Response<ProxyBody> {
    let client = conn.peer;
    let action = {
        let view = RequestView {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query(),
            headers: req.headers(),
            source: client.ip(),
        };
        listener.route(&view)
    };
    match action {
        None => error_page(StatusCode::SERVICE_UNAVAILABLE),
        Some(RouteAction::Fixed { status, content_type, body }) => own(*status, content_type.clone(), body.clone()),
        Some(RouteAction::Redirect(redirect)) => {
            let host = RequestView { method: "", path: "", query: None, headers: req.headers(), source: client.ip() }
                .host()
                .unwrap_or("")
                .to_string();
            let location = redirect.location(&RedirectInput {
                protocol: "HTTP",
                host: &host,
                port: listener.port,
                path: req.uri().path(),
                query: req.uri().query(),
            });
            let mut resp = own(redirect.status, None, Bytes::new());
            match HeaderValue::from_str(&location) {
                Ok(v) => {
                    resp.headers_mut().insert(header::LOCATION, v);
                    resp
                }
                Err(_) => error_page(StatusCode::BAD_REQUEST),
            }
        }
        Some(RouteAction::Forward { groups, total_weight }) => {
            let Some(group) = RouteAction::pick_group(groups, *total_weight) else {
                return error_page(StatusCode::SERVICE_UNAVAILABLE);
            };
            forward(conn, listener, group, req).await
        }
    }
}

async fn forward(
    conn: &Conn,
    listener: &crate::table::ListenerRoute,
    group: &crate::table::Group,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let Some(target) = group.chooser.choose().cloned() else {
        return error_page(StatusCode::SERVICE_UNAVAILABLE);
    };
    group.metrics.requests.inc();
    let tunneling = wants_upgrade(req.headers());
    let client_upgrade = tunneling.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers, tunneling);
    conn.forwarded(&mut parts.headers);
    // A connection of our own: the request line carries the path only.
    if parts.uri.scheme().is_some() {
        let pq = parts.uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
        parts.uri = match pq.parse::<Uri>() {
            Ok(u) => u,
            Err(_) => return error_page(StatusCode::BAD_REQUEST),
        };
    }
    if !parts.headers.contains_key(header::HOST) {
        if let Ok(host) = HeaderValue::from_str(target.authority.as_str()) {
            parts.headers.insert(header::HOST, host);
        }
    }
    parts.version = http::Version::HTTP_11;
    let outstanding = Outstanding::request(&target.slot);
    let started = Instant::now();
    let sent =
        tokio::time::timeout(listener.idle_timeout, upstream::send(&target, Request::from_parts(parts, body))).await;
    let (mut resp, connection) = match sent {
        Err(_) => return error_page(StatusCode::GATEWAY_TIMEOUT),
        Ok(Err(e)) => {
            tracing::debug!(group = %group.id, target_addr = %target.addr, error = %e, "target failed");
            return error_page(StatusCode::BAD_GATEWAY);
        }
        Ok(Ok(answer)) => answer,
    };
    group.metrics.response_time.observe(started.elapsed().as_secs_f64());
    if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) = (client_upgrade, resp.status()) {
        let target_upgrade = hyper::upgrade::on(&mut resp);
        let tunnel = Outstanding::tunnel(&target.slot);
        drop(outstanding);
        // The connection is the tunnel's now, not the pool's.
        drop(connection);
        tokio::spawn(async move {
            let _tunnel = tunnel;
            let (Ok(down), Ok(up)) = (client_upgrade.await, target_upgrade.await) else { return };
            let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
            let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
        });
        let (mut parts, _) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, true);
        return Response::from_parts(parts, Either::Right(Full::new(Bytes::new())));
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    Response::from_parts(
        parts,
        Either::Left(Tracked { inner: body, outstanding, connection: Some(connection), ended: false }),
    )
}
