//! The node's listening sockets: one accept loop per listener port, opened and closed as the
//! configuration changes. A port that cannot be bound is logged and tried again, never fatal.
//! HTTP ports serve keep-alive HTTP/1.1 connections through the proxy; TCP ports splice each
//! connection to a target with half-close (network load balancer).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::node::Node;
use crate::rules::RouteAction;
use crate::table::Protocol;
use crate::targets::Outstanding;

/// How long to wait before binding a refused port again.
const BIND_RETRY: Duration = Duration::from_secs(2);
/// How long a TCP listener waits for a target to accept.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

struct Running {
    protocol: Protocol,
    stop: watch::Sender<bool>,
    /// One accept loop per worker thread.
    tasks: Vec<JoinHandle<()>>,
}

/// The listeners open now, by port.
pub struct Listeners {
    node: Arc<Node>,
    bind: IpAddr,
    workers: Arc<Vec<Handle>>,
    /// Client connections open on each worker, over all ports.
    open: Arc<Vec<AtomicUsize>>,
    running: HashMap<u16, Running>,
}

impl Listeners {
    pub fn new(node: Arc<Node>, bind: IpAddr, workers: Vec<Handle>) -> Listeners {
        let open = Arc::new(workers.iter().map(|_| AtomicUsize::new(0)).collect());
        Listeners { node, bind, workers: Arc::new(workers), open, running: HashMap::new() }
    }

    /// Opens the ports in `wanted` not open yet (or open with another protocol), closes the rest.
    pub fn reconcile(&mut self, wanted: &HashMap<u16, Protocol>) {
        let gone: Vec<u16> =
            self.running.iter().filter(|(p, r)| wanted.get(p) != Some(&r.protocol)).map(|(p, _)| *p).collect();
        for port in gone {
            if let Some(r) = self.running.remove(&port) {
                tracing::info!(port, "closing listener");
                let _ = r.stop.send(true);
            }
        }
        for (&port, &protocol) in wanted {
            if self.running.contains_key(&port) {
                continue;
            }
            let (stop, stopped) = watch::channel(false);
            let addr = SocketAddr::new(self.bind, port);
            let tasks = self
                .workers
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let spread = Spread { me: i, workers: self.workers.clone(), open: self.open.clone() };
                    w.spawn(serve(self.node.clone(), addr, protocol, spread, stopped.clone()))
                })
                .collect();
            self.running.insert(port, Running { protocol, stop, tasks });
        }
    }

    /// Closes every listener and lets open connections finish their requests.
    pub async fn close(&mut self) {
        for (_, r) in self.running.drain() {
            let _ = r.stop.send(true);
            for task in r.tasks {
                let _ = task.await;
            }
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    // Each worker thread binds the port; the kernel spreads connections over them.
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Where an accepted connection is served: the kernel's `SO_REUSEPORT` hash spreads
/// connections over the workers unevenly (a few dozen clients often land 60/40), and the busier
/// worker's requests then wait on it while the other idles. So, as HAProxy does, a connection
/// goes to the worker with the fewest open connections, the accepting one on a tie.
struct Spread {
    me: usize,
    workers: Arc<Vec<Handle>>,
    open: Arc<Vec<AtomicUsize>>,
}

impl Spread {
    fn pick(&self) -> usize {
        let load = |i: usize| self.open[i].load(Ordering::Relaxed);
        let mut best = self.me;
        for i in 0..self.open.len() {
            if load(i) < load(best) {
                best = i;
            }
        }
        best
    }
}

/// Counts a client connection against its worker while it is open.
struct Open(Arc<Vec<AtomicUsize>>, usize);

impl Open {
    fn new(open: &Arc<Vec<AtomicUsize>>, worker: usize) -> Open {
        open[worker].fetch_add(1, Ordering::Relaxed);
        Open(open.clone(), worker)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0[self.1].fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve(node: Arc<Node>, addr: SocketAddr, protocol: Protocol, spread: Spread, mut stop: watch::Receiver<bool>) {
    let listener = loop {
        match bind(addr) {
            Ok(l) => break l,
            Err(e) => {
                tracing::warn!(%addr, error = %e, "cannot listen; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(BIND_RETRY) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    };
    tracing::info!(%addr, ?protocol, "listening");
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: breathe instead of spinning.
                tracing::warn!(%addr, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let node = node.clone();
        let stop = stop.clone();
        let worker = spread.pick();
        let open = Open::new(&spread.open, worker);
        let port = addr.port();
        if worker == spread.me {
            connections.spawn(async move {
                let _open = open;
                connection(node, protocol, port, stream, remote, stop).await
            });
        } else {
            // Moved to the other worker's reactor, so that its events wake that thread only.
            let Ok(stream) = stream.into_std() else { continue };
            connections.spawn_on(
                async move {
                    let _open = open;
                    let Ok(stream) = TcpStream::from_std(stream) else { return };
                    connection(node, protocol, port, stream, remote, stop).await
                },
                &spread.workers[worker],
            );
        }
        // Reap finished connections so the set does not grow with every client.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    // HTTP connections end after their request in flight; TCP ones are cut (as NLB does when
    // a listener goes).
    while connections.join_next().await.is_some() {}
}

async fn connection(
    node: Arc<Node>,
    protocol: Protocol,
    port: u16,
    stream: TcpStream,
    remote: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    match protocol {
        Protocol::Http => http_connection(node, port, stream, remote, stop).await,
        Protocol::Tcp => tcp_connection(node, port, stream, stop).await,
    }
}

async fn http_connection(
    node: Arc<Node>,
    port: u16,
    stream: TcpStream,
    remote: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let conn = Arc::new(crate::proxy::Conn::new(node, port, remote));
    let service = service_fn(move |req| crate::proxy::handle(conn.clone(), req));
    let conn = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn tcp_connection(node: Arc<Node>, port: u16, mut client: TcpStream, mut stop: watch::Receiver<bool>) {
    let table = node.table.load_full();
    let Some(listener) = table.listeners.get(&port) else { return };
    listener.metrics.requests.inc();
    let Some(RouteAction::Forward { groups, total_weight }) = listener.rules.last().map(|r| &r.action) else { return };
    let Some(group) = RouteAction::pick_group(groups, *total_weight) else { return };
    let Some(target) = group.chooser.choose().cloned() else { return };
    group.metrics.requests.inc();
    let _tunnel = Outstanding::tunnel(&target.slot);
    let mut upstream = match tokio::time::timeout(TCP_CONNECT_TIMEOUT, TcpStream::connect(target.addr)).await {
        Ok(Ok(s)) => s,
        _ => {
            tracing::debug!(target_addr = %target.addr, "target refused a TCP connection");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    // Copies both ways; an end of stream on one side shuts the other's write half (half-close).
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = stop.changed() => {}
    }
}
