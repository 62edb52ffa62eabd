//! `flotilla lb`: run a load balancer node (the ELBv2 data plane). It joins the control plane
//! once with a token, keeps its key pair in its data directory, then serves the listeners of
//! the load balancers the control plane assigns it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use flotilla_lb::{Endpoints, HttpControlPlane, NodeSettings};

#[derive(Args, Debug, Clone)]
pub struct LbArgs {
    /// The control plane's URL, or the URLs of its servers separated by commas
    /// (`http://a:4580,http://b:4580`): the node joins, polls and reports through one of them and
    /// moves to the next at once when it cannot be reached, serving its last configuration
    /// meanwhile.
    #[arg(long, env = "FLOTILLA_SERVER", default_value = "http://127.0.0.1:4580", value_name = "URL[,URL...]",
          value_parser = crate::agent_cmd::parse_servers)]
    pub server: String,
    /// A load balancer join token: used once, then the node keeps the key pair it earns in the
    /// data directory.
    #[arg(long, env = "FLOTILLA_LB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Directory for the node's identity [default: the user's data directory + /flotilla-lb,
    /// or ./.flotilla-lb]
    #[arg(long, env = "FLOTILLA_LB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The address listener ports are opened on.
    #[arg(long, env = "FLOTILLA_LB_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// The address clients reach this node at, told to the control plane [default: the
    /// address this host uses to reach the first server of --server]
    #[arg(long, env = "FLOTILLA_LB_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<IpAddr>,
    /// Serve Prometheus metrics at ADDR:PORT (`GET /metrics`).
    #[arg(long, env = "FLOTILLA_LB_METRICS_LISTEN", value_name = "ADDR:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// Threads serving client connections [default: one per core]
    #[arg(long, env = "FLOTILLA_LB_WORKERS")]
    pub workers: Option<usize>,
    /// Region of the control plane (used in request signatures).
    #[arg(long, env = "FLOTILLA_REGION", default_value = "us-east-1")]
    pub region: String,
}

fn default_data_dir() -> PathBuf {
    dirs::data_dir().map(|d| d.join("flotilla-lb")).unwrap_or_else(|| PathBuf::from(".flotilla-lb"))
}

/// The local address of the route to the server: what clients on the same network reach.
fn route_address(server: &str) -> IpAddr {
    let fallback = IpAddr::from([127, 0, 0, 1]);
    let Ok(uri) = server.parse::<http::Uri>() else { return fallback };
    let Some(host) = uri.host() else { return fallback };
    let port = uri.port_u16().unwrap_or(80);
    let probe = || -> std::io::Result<IpAddr> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        socket.connect((host.trim_matches(|c| c == '[' || c == ']'), port))?;
        Ok(socket.local_addr()?.ip())
    };
    probe().unwrap_or(fallback)
}

pub async fn run(args: LbArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let servers = Endpoints::parse(&args.server)?;
    let advertise = args.advertise_address.unwrap_or_else(|| route_address(servers.first()));
    // A node started before its servers waits for them; a refused join or a missing token ends here.
    let mut backoff = std::time::Duration::from_secs(1);
    let control = loop {
        match HttpControlPlane::enroll(&servers, &args.region, &data_dir, args.token.as_deref(), &advertise.to_string())
            .await
        {
            Ok(control) => break control,
            Err(e) if e.downcast_ref::<flotilla_lb::Unreachable>().is_some() => {
                tracing::warn!(servers = %servers, error = %format!("{e:#}"), retry_in = ?backoff, "control plane unreachable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
            }
            Err(e) => return Err(e),
        }
    };
    tracing::info!(node_id = control.node_id(), servers = %servers, "load balancer node joined");
    let mut settings = NodeSettings::new(control.node_id());
    settings.bind = args.bind;
    settings.metrics_listen = args.metrics_listen;
    if let Some(n) = args.workers {
        settings.workers = n.max(1);
    }
    flotilla_lb::run(settings, Arc::new(control), crate::shutdown_signal()).await
}
