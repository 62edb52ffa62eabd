//! Which address the metadata server listens on, so that every container can reach it.
//!
//! One address serves all network modes: the gateway of Docker's default `bridge` network (as
//! a rule 172.17.0.1), an address of the host itself. Bridge-mode containers route to it as their
//! gateway; host-mode containers share the host's network namespace, where it is a local
//! address; awsvpc containers are on the `flotilla-awsvpc` network or their subnet's (in their
//! pause container's namespace, or, a task of one container, holding the interface themselves),
//! whose gateway is the host, which delivers to its own addresses. Listening there and not on
//! 0.0.0.0 keeps the endpoint off the host's other networks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The port ECS reserves for its agent's metadata and credentials endpoint; also Flotilla's
/// default, so a host registers it as taken already.
pub const DEFAULT_PORT: u16 = 51679;

/// What `--metadata-listen` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenChoice {
    /// The Docker bridge's gateway, on `port` (0 picks a free one).
    BridgeGateway { port: u16 },
    /// This address exactly.
    Address(SocketAddr),
    /// No endpoint: containers get no metadata variables.
    Off,
}

impl std::str::FromStr for ListenChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" {
            return Ok(ListenChoice::Off);
        }
        if let Some(port) = s.strip_prefix("gateway:").or(if s == "gateway" { Some("") } else { None }) {
            let port = if port.is_empty() {
                DEFAULT_PORT
            } else {
                port.parse().map_err(|_| format!("{s:?}: the port after gateway: is not a number"))?
            };
            return Ok(ListenChoice::BridgeGateway { port });
        }
        s.parse::<SocketAddr>()
            .map(ListenChoice::Address)
            .map_err(|_| format!("{s:?} is not gateway[:PORT], ADDR:PORT or off"))
    }
}

impl Default for ListenChoice {
    fn default() -> Self {
        ListenChoice::BridgeGateway { port: DEFAULT_PORT }
    }
}

/// The address to bind for `choice`, given the bridge's gateway (`None` when Docker has none).
pub fn resolve(choice: ListenChoice, gateway: Option<IpAddr>) -> Option<SocketAddr> {
    match choice {
        ListenChoice::Off => None,
        ListenChoice::Address(a) => Some(a),
        ListenChoice::BridgeGateway { port } => gateway.map(|ip| SocketAddr::new(ip, port)),
    }
}

/// The first host address of an IPv4 subnet ("172.17.0.0/16" -> 172.17.0.1), where Docker puts a
/// bridge's gateway unless told otherwise; `None` for anything else.
pub fn first_host(subnet: &str) -> Option<Ipv4Addr> {
    let (addr, len) = subnet.split_once('/')?;
    let (addr, len) = (addr.parse::<Ipv4Addr>().ok()?, len.parse::<u32>().ok()?);
    if len > 30 {
        return None;
    }
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    Some(Ipv4Addr::from((u32::from(addr) & mask) + 1))
}

/// Binds the listener for `choice`. The default port already taken (a second agent on the host)
/// falls back to a free one, since containers learn the port from their environment anyway.
/// `None`, with the reason logged, when there is nothing to bind: the agent then runs without
/// the endpoint rather than not at all.
pub async fn bind(choice: ListenChoice, gateway: Option<IpAddr>) -> Option<tokio::net::TcpListener> {
    let Some(addr) = resolve(choice, gateway) else {
        if choice != ListenChoice::Off {
            tracing::warn!(
                "the Docker bridge network has no IPv4 gateway: no task metadata endpoint (see --metadata-listen)"
            );
        }
        return None;
    };
    let first = tokio::net::TcpListener::bind(addr).await;
    let result = match first {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && choice == ListenChoice::default() => {
            tracing::info!(%addr, "the metadata port is taken (another agent?); using a free one");
            tokio::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await
        }
        other => other,
    };
    match result {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot listen for the task metadata endpoint; containers run without it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse() {
        assert_eq!("gateway".parse(), Ok(ListenChoice::BridgeGateway { port: DEFAULT_PORT }));
        assert_eq!("gateway:0".parse(), Ok(ListenChoice::BridgeGateway { port: 0 }));
        assert_eq!("off".parse(), Ok(ListenChoice::Off));
        assert_eq!("127.0.0.1:9".parse(), Ok(ListenChoice::Address("127.0.0.1:9".parse().unwrap())));
        assert!("gateway:x".parse::<ListenChoice>().is_err());
        assert!("nowhere".parse::<ListenChoice>().is_err());
    }

    #[test]
    fn a_subnets_first_host_is_its_default_gateway() {
        assert_eq!(first_host("172.17.0.0/16"), Some(Ipv4Addr::new(172, 17, 0, 1)));
        assert_eq!(first_host("10.1.2.128/25"), Some(Ipv4Addr::new(10, 1, 2, 129)));
        assert_eq!(first_host("0.0.0.0/0"), Some(Ipv4Addr::new(0, 0, 0, 1)));
        assert_eq!(first_host("10.0.0.1/32"), None);
        assert_eq!(first_host("fd00::/64"), None);
        assert_eq!(first_host("nonsense"), None);
    }

    #[test]
    fn the_gateway_is_needed_for_the_default() {
        let gw: IpAddr = "172.17.0.1".parse().unwrap();
        assert_eq!(resolve(ListenChoice::default(), Some(gw)), Some(SocketAddr::new(gw, DEFAULT_PORT)));
        assert_eq!(resolve(ListenChoice::default(), None), None);
        assert_eq!(resolve(ListenChoice::Off, Some(gw)), None);
    }
}
