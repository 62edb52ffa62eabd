//! The TCP half of the forwarder: each connection a client opens (a resolver retrying over TCP
//! after a truncated UDP answer, or one that asks over TCP to begin with) is spliced to a
//! connection of its own to the control plane's DNS server. DNS over TCP frames each message with
//! its length, so the bytes pass unchanged in both directions and IDs need no rewriting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Connections relayed at once per listener; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 256;
/// How long one relayed connection may last: resolvers ask and close, so this only ends stuck ones.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Relays connections accepted on `listen` to `upstream` until the task is aborted.
pub async fn serve(listen: TcpListener, upstream: SocketAddr, connect_timeout: Duration) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let Ok((mut client, _)) = listen.accept().await else { continue };
        tokio::spawn(async move {
            let _permit = permit;
            let connect = tokio::time::timeout(connect_timeout, TcpStream::connect(upstream)).await;
            // The client's resolver sees the connection close and tries its next server.
            let Ok(Ok(mut up)) = connect else { return };
            let _ = up.set_nodelay(true);
            let _ =
                tokio::time::timeout(CONNECTION_LIFETIME, tokio::io::copy_bidirectional(&mut client, &mut up)).await;
        });
    }
}
