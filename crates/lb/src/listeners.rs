//! The node's listening sockets: one accept loop per listener port, opened and closed as the
//! configuration changes. A port that cannot be bound is logged and tried again, never fatal.
//! HTTP ports serve keep-alive HTTP/1.1 connections through the proxy; TCP ports splice each
//! connection to a target with half-close (network load balancer).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
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
    workers: Vec<Handle>,
    running: HashMap<u16, Running>,
}

impl Listeners {
    pub fn new(node: Arc<Node>, bind: IpAddr, workers: Vec<Handle>) -> Listeners {
        Listeners { node, bind, workers, running: HashMap::new() }
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
                .map(|w| w.spawn(serve(self.node.clone(), addr, protocol, stopped.clone())))
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

async fn serve(node: Arc<Node>, addr: SocketAddr, protocol: Protocol, mut stop: watch::Receiver<bool>) {
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
        match protocol {
            Protocol::Http => connections.spawn(http_connection(node, addr.port(), stream, remote, stop)),
            Protocol::Tcp => connections.spawn(tcp_connection(node, addr.port(), stream, stop)),
        };
        // Reap finished connections so the set does not grow with every client.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    // HTTP connections end after their request in flight; TCP ones are cut (as NLB does when
    // a listener goes).
    while connections.join_next().await.is_some() {}
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
