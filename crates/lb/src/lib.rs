//! A load balancer node: the data plane of ELBv2. It holds its load balancers' listeners,
//! rules and targets in memory (a `NodeConfig` from the control plane, swapped whole at each
//! change), proxies HTTP/1.1 and TCP to healthy targets, runs the target groups' health checks
//! and reports them. A slow control plane never slows a request in flight.
//!
//! [`run`] drives a node until shutdown: it long-polls its [`ControlPlane`] for configurations,
//! opens and closes listener ports to match, checks targets and reports what it judges. Client
//! connections are served on the node's own worker threads (`NodeSettings::workers`, one
//! single-threaded runtime each); the caller's runtime runs the control loops and checks.
//! When the control plane cannot be reached (every one of its servers, see `control`), the node
//! keeps serving the last configuration it applied.

pub mod control;
mod health;
mod listeners;
mod matching;
mod metrics;
mod node;
mod proxy;
mod rules;
mod table;
mod targets;
mod upstream;
mod workers;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub use control::{ControlPlane, Endpoints, HttpControlPlane, NodeCredentials, Unreachable};
pub use health::{check_once, code_matches, Judge, Outcome};
pub use matching::{Cidr, Glob};
pub use node::Node;

/// How often the node reports even when nothing changed.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// Health changes closer together than this go in one report.
const REPORT_DEBOUNCE: Duration = Duration::from_millis(100);

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// The id the control plane gave the node (reports carry it).
    pub node_id: String,
    /// The address listener ports are opened on.
    pub bind: IpAddr,
    /// Where to serve Prometheus metrics (`GET /metrics`), if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Threads serving client connections (each its own single-threaded runtime).
    pub workers: usize,
}

impl NodeSettings {
    pub fn new(node_id: &str) -> NodeSettings {
        NodeSettings {
            node_id: node_id.to_string(),
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            metrics_listen: None,
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        }
    }
}

/// Runs a node until `shutdown` resolves.
pub async fn run(
    settings: NodeSettings,
    control: Arc<dyn ControlPlane>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    run_node(Node::new(&settings.node_id), settings, control, shutdown).await
}

/// [`run`] with a node the caller made (to read its revision, report and metrics meanwhile).
pub async fn run_node(
    node: Arc<Node>,
    settings: NodeSettings,
    control: Arc<dyn ControlPlane>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (config_tx, mut config_rx) = tokio::sync::watch::channel(None);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(fetch_loop(control.clone(), config_tx));
    tasks.spawn(report_loop(node.clone(), control));
    if let Some(addr) = settings.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "serving metrics");
        tasks.spawn(metrics_loop(node.clone(), listener));
    }
    let workers = workers::Workers::start(settings.workers)?;
    let mut listeners = listeners::Listeners::new(node.clone(), settings.bind, workers.handles.clone());
    let mut checks = health::Checks::default();
    tokio::pin!(shutdown);
    let mut prune = tokio::time::interval(upstream::POOL_IDLE / 2);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = prune.tick() => node.prune_pools(),
            changed = config_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                let Some(config) = config_rx.borrow_and_update().clone() else { continue };
                let table = node.apply(&config);
                tracing::info!(revision = table.revision, listeners = table.listeners.len(), "configuration applied");
                listeners.reconcile(&table.ports());
                checks.reconcile(&table.checks, &node.health_changed);
                // Targets may have come or gone: the control plane hears of it now.
                node.health_changed.notify_one();
            }
        }
    }
    tasks.abort_all();
    checks.stop();
    listeners.close().await;
    workers.stop().await;
    Ok(())
}

/// Long-polls the control plane forever, keeping the last configuration when it is away.
async fn fetch_loop(
    control: Arc<dyn ControlPlane>,
    tx: tokio::sync::watch::Sender<Option<flotilla_endpoints::elb::NodeConfig>>,
) {
    let mut after = 0;
    let mut backoff = Duration::from_millis(250);
    loop {
        let asked = tokio::time::Instant::now();
        match control.fetch(after).await {
            Ok(Some(config)) => {
                after = config.revision;
                backoff = Duration::from_millis(250);
                tx.send_replace(Some(config));
            }
            Ok(None) => {
                backoff = Duration::from_millis(250);
                // A control plane that answers "nothing new" at once instead of waiting must
                // not be asked in a tight loop.
                if asked.elapsed() < Duration::from_millis(500) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "control plane unreachable; serving the last configuration");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Reports after each health change (debounced) and every [`REPORT_EVERY`].
async fn report_loop(node: Arc<Node>, control: Arc<dyn ControlPlane>) {
    loop {
        tokio::select! {
            _ = node.health_changed.notified() => tokio::time::sleep(REPORT_DEBOUNCE).await,
            _ = tokio::time::sleep(REPORT_EVERY) => {}
        }
        if let Err(e) = control.report(node.report()).await {
            tracing::warn!(error = %e, "report not delivered");
        }
    }
}

/// Serves `GET /metrics` (any path, in fact) with the Prometheus text.
async fn metrics_loop(node: Arc<Node>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let node = node.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_req| {
                let text = node.metrics_text();
                async move {
                    let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(text)));
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}
