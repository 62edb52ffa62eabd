//! Binding the API's listening socket, with an error an operator can act on: the address, and
//! the likely cause of the usual failures (in use, a privileged port, an address not on this host).

use std::io::ErrorKind;
use std::net::SocketAddr;

use anyhow::Context;

/// Binds `addr`, or says why not.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("{}", explain(addr, &e)))
        .with_context(|| format!("cannot listen on {addr} (choose another address with --listen or FLOTILLA_LISTEN)"))
}

/// What probably went wrong.
pub fn explain(addr: SocketAddr, e: &std::io::Error) -> String {
    let why = match e.kind() {
        ErrorKind::AddrInUse => format!("another process is already listening on port {}", addr.port()),
        ErrorKind::PermissionDenied if addr.port() < 1024 => {
            format!("port {} is below 1024, which needs root or CAP_NET_BIND_SERVICE", addr.port())
        }
        ErrorKind::PermissionDenied => "permission denied".to_string(),
        ErrorKind::AddrNotAvailable => format!("{} is not an address of this host", addr.ip()),
        _ => e.to_string(),
    };
    format!("{why} ({e})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_in_use_is_named_with_its_cause() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = format!("{:#}", bind(addr).await.unwrap_err());
        assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
        assert!(err.contains("already listening"), "{err}");
        // 192.0.2.1 (TEST-NET-1) is on no host.
        let foreign: SocketAddr = "192.0.2.1:4580".parse().unwrap();
        let err = format!("{:#}", bind(foreign).await.unwrap_err());
        assert!(err.contains("192.0.2.1 is not an address of this host"), "{err}");
        let denied = std::io::Error::from(ErrorKind::PermissionDenied);
        assert!(explain("0.0.0.0:80".parse().unwrap(), &denied).contains("below 1024"));
    }
}
