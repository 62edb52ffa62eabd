//! Keep-alive connections to targets: each target's idle HTTP/1.1 connections wait in its slot
//! (most recently used first) and a request takes one, or opens one when none is idle. A
//! connection goes back once its response body has been read to the end. Kept small and
//! per-target instead of a general client pool: a request costs one uncontended lock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Request;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Response;
use hyper_util::rt::TokioIo;

use crate::targets::RouteTarget;

/// Idle connections close before common backends close them (Node.js: 5 s), so the pool rarely
/// hands out a connection the target is closing.
pub const POOL_IDLE: Duration = Duration::from_secs(4);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub type Sender = SendRequest<Incoming>;

/// Shards of a pool: a connection serves requests of the worker thread that opened it.
const SHARDS: usize = 16;

type Idle = Mutex<Vec<(Sender, Instant)>>;

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

    fn take(&self) -> Option<Sender> {
        let mut idle = self.shard().lock().unwrap_or_else(|e| e.into_inner());
        while let Some((sender, at)) = idle.pop() {
            if at.elapsed() < POOL_IDLE && !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// Gives a connection back after its response ended.
    pub fn put(&self, sender: Sender) {
        if !sender.is_closed() {
            self.shard().lock().unwrap_or_else(|e| e.into_inner()).push((sender, Instant::now()));
        }
    }

    /// Closes the connections idle for longer than [`POOL_IDLE`].
    pub fn prune(&self) {
        for shard in &self.shards {
            shard
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

/// Sends `req` to `target` on an idle connection or a new one; a pooled connection that turns
/// out closed before the request went out is replaced, never a request sent twice.
pub async fn send(
    target: &Arc<RouteTarget>,
    mut req: Request<Incoming>,
) -> Result<(Response<Incoming>, Sender), UpstreamError> {
    loop {
        let (mut sender, reused) = match target.slot.pool.take() {
            Some(s) => (s, true),
            None => (connect(target).await?, false),
        };
        if reused && sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(req).await {
            Ok(resp) => return Ok((resp, sender)),
            Err(mut e) => match e.take_message() {
                Some(unsent) if reused => req = unsent,
                _ => return Err(UpstreamError::Http(e.into_error())),
            },
        }
    }
}
