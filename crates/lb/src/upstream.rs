//! Keep-alive connections to targets: each target's idle HTTP/1.1 connections wait in its slot
//! (most recently used first) and a request takes one, or opens one when none is idle. A
//! connection goes back once its response body has been read to the end. Kept small and
//! per-target instead of a general client pool: a request costs one uncontended lock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{Either, Empty};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Response;
use hyper_util::rt::TokioIo;

use crate::targets::RouteTarget;

/// Idle connections close before common backends close them (Node.js: 5 s), so the pool rarely
/// hands out a connection the target is closing.
pub const POOL_IDLE: Duration = Duration::from_secs(4);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What goes to a target: the client's body, or none for a request that may be replayed.
pub type UpstreamBody = Either<Incoming, Empty<Bytes>>;
pub type Sender = SendRequest<UpstreamBody>;

/// Shards of a pool: a connection serves requests of the worker thread that opened it.
const SHARDS: usize = 16;

/// A shard's lock and list on a cache line of their own: the workers' shards sit side by side,
/// and without the padding every take and put of one worker would evict the other's line.
#[derive(Default)]
#[repr(align(128))]
struct Idle(Mutex<Vec<(Sender, Instant)>>);

/// One target's idle connections, per worker thread (a connection's task runs on the worker
/// that opened it, and a request from another thread would hop to it and back).
#[derive(Default)]
pub struct Pool {
    shards: [Idle; SHARDS],
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pool")
    }
}

impl Pool {
    fn shard(&self) -> &Idle {
        &self.shards[crate::workers::current() % SHARDS]
    }

    /// The most recently used live connection, and how long it sat idle.
    fn take(&self) -> Option<(Sender, Duration)> {
        let mut idle = self.shard().0.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((sender, at)) = idle.pop() {
            let waited = at.elapsed();
            if waited < POOL_IDLE && !sender.is_closed() {
                return Some((sender, waited));
            }
        }
        None
    }

    /// Gives a connection back after its response ended.
    pub fn put(&self, sender: Sender) {
        if !sender.is_closed() {
            self.shard().0.lock().unwrap_or_else(|e| e.into_inner()).push((sender, Instant::now()));
        }
    }

    /// Closes the connections idle for longer than [`POOL_IDLE`].
    pub fn prune(&self) {
        for shard in &self.shards {
            shard
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(s, at)| at.elapsed() < POOL_IDLE && !s.is_closed());
        }
    }
}

#[derive(Debug)]
pub enum UpstreamError {
    Connect(std::io::Error),
    Http(hyper::Error),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "connecting: {e}"),
            UpstreamError::Http(e) => write!(f, "{e}"),
        }
    }
}

async fn connect(target: &RouteTarget) -> Result<Sender, UpstreamError> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target.addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(UpstreamError::Connect(e)),
        Err(_) => return Err(UpstreamError::Connect(std::io::ErrorKind::TimedOut.into())),
    };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(UpstreamError::Http)?;
    // Upgrades: a 101 answer hands the connection to the tunnel.
    tokio::spawn(conn.with_upgrades());
    Ok(sender)
}

fn idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

/// A request goes out again only on a connection idle at least this long: targets close kept-alive
/// connections after an idle timeout (a second or more in practice), so one in steady use is not
/// closing and its requests need no copy.
const REPLAY_IDLE: Duration = Duration::from_millis(250);

fn copy(req: &Request<UpstreamBody>) -> Request<UpstreamBody> {
    let mut again = Request::new(Either::Right(Empty::new()));
    *again.method_mut() = req.method().clone();
    *again.uri_mut() = req.uri().clone();
    *again.version_mut() = req.version();
    *again.headers_mut() = req.headers().clone();
    again
}

/// Sends `req` to `target` on an idle connection or a new one. A pooled connection found closed
/// before the request went out is replaced. One the target closed as the request went out
/// (hyper's "connection closed before message completed": the target timed out the idle
/// connection at that moment) is retried once on a new connection, for idempotent requests
/// without a body only, which are safe to send twice.
pub async fn send(
    target: &Arc<RouteTarget>,
    req: Request<Incoming>,
) -> Result<(Response<Incoming>, Sender), UpstreamError> {
    let (parts, body) = req.into_parts();
    let replayable = idempotent(&parts.method) && body.is_end_stream();
    let body = if replayable { Either::Right(Empty::new()) } else { Either::Left(body) };
    let mut req = Request::from_parts(parts, body);
    let mut fresh_only = false;
    loop {
        let pooled = if fresh_only { None } else { target.slot.pool.take() };
        let (mut sender, idle) = match pooled {
            Some((s, idle)) => (s, Some(idle)),
            None => (connect(target).await?, None),
        };
        if idle.is_some() && sender.ready().await.is_err() {
            continue;
        }
        let replay = (replayable && idle.is_some_and(|d| d >= REPLAY_IDLE)).then(|| copy(&req));
        match sender.try_send_request(req).await {
            Ok(resp) => return Ok((resp, sender)),
            Err(mut e) => {
                if let Some(unsent) = e.take_message() {
                    if idle.is_some() {
                        req = unsent;
                        continue;
                    }
                }
                let error = e.into_error();
                match replay {
                    Some(again) if error.is_incomplete_message() => {
                        req = again;
                        fresh_only = true;
                    }
                    _ => return Err(UpstreamError::Http(error)),
                }
            }
        }
    }
}
