//! Names outside every private namespace go to the host's resolvers (the `nameserver` lines of
//! `/etc/resolv.conf`, skipping this server itself), over UDP with a timeout; no answer means
//! SERVFAIL to the client.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

#[derive(Debug, Clone)]
pub struct Upstreams {
    pub servers: Vec<SocketAddr>,
    /// How long each server gets to answer.
    pub timeout: Duration,
}

/// The nameservers a resolv.conf text lists, without `own` (this server's address).
pub fn parse_resolv_conf(text: &str, own: SocketAddr) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|s| !is_self(*s, own))
        .collect()
}

fn is_self(server: SocketAddr, own: SocketAddr) -> bool {
    server.port() == own.port()
        && (server.ip() == own.ip()
            || (own.ip().is_unspecified() && (server.ip().is_loopback() || server.ip().is_unspecified())))
}

impl Upstreams {
    pub fn from_host(own: SocketAddr) -> Upstreams {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        Upstreams { servers: parse_resolv_conf(&text, own), timeout: Duration::from_secs(2) }
    }

    /// The first answer an upstream gives to `query` (same id), if any does in time.
    pub async fn forward(&self, query: &[u8]) -> Option<Vec<u8>> {
        if query.len() < 12 {
            return None;
        }
        for server in &self.servers {
            let bind: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
            let Ok(socket) = UdpSocket::bind(bind).await else { continue };
            if socket.send_to(query, server).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 65535];
            let wait = async {
                loop {
                    let (n, from) = socket.recv_from(&mut buf).await.ok()?;
                    // Only the server asked, answering this query's id.
                    if from == *server && n >= 12 && buf[..2] == query[..2] {
                        return Some(buf[..n].to_vec());
                    }
                }
            };
            if let Ok(Some(answer)) = tokio::time::timeout(self.timeout, wait).await {
                return Some(answer);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_without_this_server() {
        let text =
            "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver 127.0.0.1\nnameserver fe80::1%eth0\n";
        let own: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let got = parse_resolv_conf(text, own);
        assert_eq!(got, vec!["10.0.0.2:53".parse().unwrap(), "[fe80::1]:53".parse().unwrap()]);
        let other: SocketAddr = "127.0.0.1:8053".parse().unwrap();
        assert_eq!(parse_resolv_conf(text, other).len(), 3);
        let any: SocketAddr = "0.0.0.0:53".parse().unwrap();
        assert_eq!(parse_resolv_conf(text, any).len(), 2);
    }
}
