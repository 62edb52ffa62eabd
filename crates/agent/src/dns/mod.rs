//! The agent's DNS forwarder: how every task's containers resolve Cloud Map names with no
//! configuration of their own.
//!
//! The control plane answers DNS for Cloud Map private namespaces and forwards every other name
//! to its host's resolvers (`flotilla server --dns-listen`). The agent, given that server's
//! address (`flotilla agent --dns-server ADDR`), runs a small forwarder on addresses the
//! containers reach, and gives each task container that resolver. Without `--dns-server`, none of
//! this runs and containers keep Docker's default resolver.
//!
//! Where it listens, port 53, UDP and TCP:
//! - the gateway of Docker's default bridge (as a rule 172.17.0.1), an address of the host. Bridge
//!   containers route to it as their gateway. awsvpc containers, on `flotilla-awsvpc` or a
//!   subnet's `flotilla-<subnet-id>` network, reach it through their own network's gateway,
//!   which is the host too, and the host takes packets for any of its addresses on any
//!   interface; the task metadata endpoint relies on the same (see `metadata::address`). One
//!   socket thus serves every network, including subnet networks another agent makes later, and
//!   nothing listens on the host's other networks (no open resolver on 0.0.0.0).
//! - a loopback address, 127.0.0.153, for host-mode containers, which share the host's network
//!   namespace (and may not route to docker0 when the host has no bridge at all).
//!
//! How containers get it, unless the task definition names its own `dnsServers` (or mounts its
//! own /etc/resolv.conf), which win:
//! - bridge: Docker's `HostConfig.Dns`; Docker writes the container's resolv.conf itself
//!   (`nameserver 172.17.0.1`), with the host's `search` and `options` lines.
//! - host: the same, `nameserver 127.0.0.153` (Docker only warns about a loopback server there).
//! - awsvpc, Fargate's included: a resolv.conf the agent writes once into its data directory
//!   (`resolv`: the gateway as nameserver, the host's search domains and options), bind-mounted
//!   read-only on /etc/resolv.conf of each of the task's containers. `Dns` would not do: these
//!   containers are on user-defined networks, where Docker always names its embedded DNS,
//!   127.0.0.11, a loopback address reached through iptables rules in the task's namespace, which
//!   a gVisor sandbox's own network stack does not pass through (google/gvisor#768, #7469); the
//!   gateway is reached from a sandbox like any address (the metadata endpoint is, from Fargate
//!   tasks). The containers joined to a pause container's namespace would also only inherit its
//!   resolv.conf, and Docker refuses `Dns` on them. Should the file not be written, `Dns` on the
//!   pause container (or the task's one container holding its interface) is the fallback: the
//!   embedded DNS forwards to the gateway from the task's namespace, which works under runc.
//! - none: no network, no resolver.
//!
//! The forwarder relays plain DNS messages only: containers see no credential of the agent or
//! the control plane, and the mounted file holds nothing but resolver settings.

mod packet;
pub mod resolv;
mod tcp;
#[cfg(test)]
mod tests;
mod udp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::network::NetworkMode;

/// The port resolv.conf servers are asked on; it cannot name another.
pub const DNS_PORT: u16 = 53;
/// Where host-mode containers find the forwarder: a loopback address of its own, apart from the
/// host's own stub resolvers (127.0.0.53, 127.0.0.1).
pub const HOST_MODE_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 153);
/// How long a query waits for the control plane before the client gets SERVFAIL. Below the 5 s
/// a glibc resolver waits itself, so that it hears the failure rather than timing out.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// The resolver each network mode's containers are given; `None` leaves Docker's default.
/// Part of `NetworkConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskResolvers {
    /// For bridge and awsvpc (and so Fargate) containers: the forwarder on the bridge's gateway.
    pub bridge: Option<IpAddr>,
    /// For host-mode containers: the forwarder on its loopback address.
    pub host: Option<IpAddr>,
    /// The resolv.conf naming `bridge` that awsvpc containers get on /etc/resolv.conf (see
    /// `resolv`); without it they get `bridge` through Docker's embedded DNS instead.
    pub resolv_conf: Option<PathBuf>,
}

impl TaskResolvers {
    /// The server for a container in `mode`.
    pub fn for_mode(&self, mode: NetworkMode) -> Option<IpAddr> {
        match mode {
            NetworkMode::Bridge | NetworkMode::Awsvpc => self.bridge,
            NetworkMode::Host => self.host,
            NetworkMode::None => None,
        }
    }
}

/// The running forwarder: its sockets' tasks, stopped when it is dropped.
pub struct Forwarder {
    addrs: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

/// UDP and TCP on the same port. With port 0 the kernel's pick for UDP may be taken for TCP, so
/// a few picks are tried.
fn bind_pair(addr: SocketAddr) -> std::io::Result<(socket2::Socket, socket2::Socket)> {
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = shared(addr, socket2::Type::DGRAM)?;
        let bound = udp.local_addr()?.as_socket().ok_or_else(|| std::io::Error::other("not an inet socket"))?;
        match shared(bound, socket2::Type::STREAM).and_then(|tcp| tcp.listen(1024).map(|_| tcp)) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::ErrorKind::AddrInUse.into()))
}

impl Forwarder {
    /// Listens on each of `listen` (UDP and TCP on the same address) and relays to `upstream`.
    /// An address that cannot be bound is logged and left out, so one missing interface does
    /// not cost the others; `local_addrs` says which are served.
    pub async fn bind(upstream: SocketAddr, listen: &[SocketAddr], timeout: Duration) -> Forwarder {
        let mut fwd = Forwarder { addrs: Vec::new(), tasks: Vec::new() };
        for &addr in listen {
            if let Err(e) = fwd.bind_one(upstream, addr, timeout).await {
                tracing::warn!(%addr, error = %e, "cannot listen for DNS; containers there keep Docker's resolver");
            }
        }
        fwd
    }

    async fn bind_one(&mut self, upstream: SocketAddr, addr: SocketAddr, timeout: Duration) -> std::io::Result<()> {
        let (udp, tcp) = bind_pair(addr)?;
        let udp = Arc::new(tokio::net::UdpSocket::from_std(udp.into())?);
        let bound = udp.local_addr()?;
        let tcp = tokio::net::TcpListener::from_std(tcp.into())?;
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = udp::serve(udp, upstream, timeout).await {
                tracing::warn!(addr = %bound, error = %e, "the DNS forwarder stopped");
            }
        }));
        self.tasks.push(tokio::spawn(tcp::serve(tcp, upstream, timeout)));
        self.addrs.push(bound);
        Ok(())
    }

    /// The addresses served.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops serving and waits until the sockets are closed.
    pub async fn stop(mut self) {
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
            let _ = t.await;
        }
    }

    /// Whether `ip` is served.
    fn serves(&self, ip: IpAddr) -> bool {
        self.addrs.iter().any(|a| a.ip() == ip)
    }
}

/// A socket bound to `addr` with SO_REUSEPORT: every agent of a host (`flotilla up` runs a
/// cluster agent and a Fargate pool agent on one Docker Engine) serves port 53 on the same
/// gateway, the kernel spreading clients over them, and one agent stopping leaves the others
/// serving. Only sockets of the same user may share a port, and another program holding it
/// without the option still refuses the bind.
fn shared(addr: SocketAddr, ty: socket2::Type) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), ty, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the forwarder for the agent's tasks: on the bridge gateway (`None` when Docker has
/// none) and on [`HOST_MODE_ADDRESS`], port 53, relaying to the control plane's DNS server
/// `upstream`. Returns it with the resolvers the network hooks give containers: only addresses
/// actually served, so a port another program holds leaves those containers with Docker's
/// default rather than with no resolver. Other agents of the host share the port (see
/// `shared`); they are expected to serve the same control plane.
/// The resolv.conf for awsvpc containers is written into `data_dir`.
pub async fn start_for_tasks(
    upstream: SocketAddr,
    bridge_gateway: Option<IpAddr>,
    data_dir: &Path,
) -> (Forwarder, TaskResolvers) {
    start_on(upstream, bridge_gateway, data_dir, DNS_PORT).await
}

/// `start_for_tasks` on another port (0 in unit tests, which must not take port 53).
async fn start_on(
    upstream: SocketAddr,
    bridge_gateway: Option<IpAddr>,
    data_dir: &Path,
    port: u16,
) -> (Forwarder, TaskResolvers) {
    let host = IpAddr::V4(HOST_MODE_ADDRESS);
    let listen: Vec<SocketAddr> =
        bridge_gateway.into_iter().chain([host]).map(|ip| SocketAddr::new(ip, port)).collect();
    if bridge_gateway.is_none() {
        tracing::warn!(
            "the Docker bridge network has no IPv4 gateway: bridge and awsvpc containers keep Docker's resolver"
        );
    }
    let fwd = Forwarder::bind(upstream, &listen, DEFAULT_TIMEOUT).await;
    let bridge = bridge_gateway.filter(|ip| fwd.serves(*ip));
    let resolv_conf = bridge.and_then(|ip| match resolv::write(data_dir, ip) {
        Ok(path) => Some(path),
        Err(e) => {
            tracing::warn!(dir = %data_dir.display(), error = %e, "cannot write the awsvpc tasks' resolv.conf; they resolve through Docker's embedded DNS");
            None
        }
    });
    let resolvers = TaskResolvers { bridge, host: Some(host).filter(|ip| fwd.serves(*ip)), resolv_conf };
    tracing::info!(%upstream, listen = ?fwd.local_addrs(), "DNS forwarder for task containers");
    (fwd, resolvers)
}
