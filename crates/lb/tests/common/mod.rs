//! What the node's integration tests share: real hyper backends on 127.0.0.1:0, a fake control
//! plane fed with configurations by the test, builders for `NodeConfig` parts, and a node
//! running in the test's runtime.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flotilla_endpoints::elb::*;
use flotilla_lb::{ControlPlane, Node, NodeSettings};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Notify};

/// A control plane the test feeds by hand; it keeps every report it gets.
pub struct FakeControl {
    config: watch::Sender<Option<NodeConfig>>,
    pub reports: Mutex<Vec<NodeReport>>,
}

impl FakeControl {
    pub fn new() -> Arc<FakeControl> {
        Arc::new(FakeControl { config: watch::channel(None).0, reports: Mutex::new(Vec::new()) })
    }

    pub fn set(&self, config: NodeConfig) {
        self.config.send_replace(Some(config));
    }
}

#[async_trait::async_trait]
impl ControlPlane for FakeControl {
    async fn fetch(&self, after: i64) -> anyhow::Result<Option<NodeConfig>> {
        let mut rx = self.config.subscribe();
        let newer = |c: &Option<NodeConfig>| c.as_ref().is_some_and(|c| c.revision > after);
        let found = match tokio::time::timeout(Duration::from_secs(1), rx.wait_for(newer)).await {
            Ok(Ok(c)) => c.clone(),
            _ => None,
        };
        Ok(found)
    }

    async fn report(&self, report: NodeReport) -> anyhow::Result<()> {
        self.reports.lock().unwrap().push(report);
        Ok(())
    }
}

/// Worker threads of the nodes under test.
pub const WORKERS: usize = 2;

/// A node serving on 127.0.0.1, stopped when dropped.
pub struct Running {
    pub node: Arc<Node>,
    pub control: Arc<FakeControl>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    pub async fn start(config: NodeConfig) -> Running {
        Running::start_with(config, None).await
    }

    /// A node that also serves its metrics at `metrics`.
    pub async fn start_with(config: NodeConfig, metrics: Option<SocketAddr>) -> Running {
        let control = FakeControl::new();
        let node = Node::new("node-1");
        let mut settings = NodeSettings::new("node-1");
        settings.bind = "127.0.0.1".parse().unwrap();
        settings.metrics_listen = metrics;
        settings.workers = WORKERS;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let revision = config.revision;
        control.set(config);
        let task = tokio::spawn(flotilla_lb::run_node(node.clone(), settings, control.clone(), async move {
            let _ = stopped.await;
        }));
        node.wait_for_revision(revision).await;
        Running { node, control, stop: Some(stop), task: Some(task) }
    }

    /// Swaps in `config` and waits until it is served.
    pub async fn apply(&self, config: NodeConfig) {
        let revision = config.revision;
        self.control.set(config);
        self.node.wait_for_revision(revision).await;
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    /// Waits (bounded) until the node's own report satisfies `f`.
    pub async fn until_report(&self, what: &str, f: impl Fn(&NodeReport) -> bool) -> NodeReport {
        for _ in 0..400 {
            let r = self.node.report();
            if f(&r) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("never saw {what}: {:?}", self.node.report());
    }
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `port` accepts connections (the node opened its listener).
pub async fn until_listening(port: u16) {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("port {port} never opened");
}

/// Waits until `port` refuses connections (the node closed its listener).
pub async fn until_closed(port: u16) {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("port {port} never closed");
}

/// A test backend: answers `/health` with its health status, holds `/slow` until released,
/// streams `/stream` from the test, echoes upgraded connections, otherwise names itself and
/// the forwarding headers it saw.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub health: AtomicU16,
    pub hits: AtomicUsize,
    /// Connections that carried a request other than a health check.
    pub proxied_connections: AtomicUsize,
    pub release: Notify,
    pub stream: Mutex<Option<http_body_util::channel::Channel<Bytes>>>,
}

type BackendBody = Either<Full<Bytes>, http_body_util::channel::Channel<Bytes>>;

impl Backend {
    pub async fn start(name: &str) -> Arc<Backend> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = Arc::new(Backend {
            name: name.to_string(),
            addr: listener.local_addr().unwrap(),
            health: AtomicU16::new(200),
            hits: AtomicUsize::new(0),
            proxied_connections: AtomicUsize::new(0),
            release: Notify::new(),
            stream: Mutex::new(None),
        });
        let b = backend.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let b = b.clone();
                tokio::spawn(async move {
                    let counted = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let b = b.clone();
                        if req.uri().path() != "/health" && !counted.swap(true, Ordering::SeqCst) {
                            b.proxied_connections.fetch_add(1, Ordering::SeqCst);
                        }
                        async move { Ok::<_, std::convert::Infallible>(b.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        backend
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    async fn answer(&self, mut req: Request<Incoming>) -> Response<BackendBody> {
        let full = |status: u16, body: String| {
            let mut r = Response::new(Either::Left(Full::new(Bytes::from(body))));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            r
        };
        let path = req.uri().path().to_string();
        if path == "/health" {
            return full(self.health.load(Ordering::SeqCst), "health".into());
        }
        self.hits.fetch_add(1, Ordering::SeqCst);
        match path.as_str() {
            "/slow" => {
                self.release.notified().await;
                full(200, format!("{} slow done", self.name))
            }
            "/stream" => {
                let body = self.stream.lock().unwrap().take().expect("a stream body set by the test");
                Response::new(Either::Right(body))
            }
            "/upload" => {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                full(200, format!("{}", body.len()))
            }
            "/ws" => {
                let upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    let mut io = TokioIo::new(upgrade.await.unwrap());
                    let mut buf = [0u8; 1024];
                    loop {
                        let n = io.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        io.write_all(&buf[..n]).await.unwrap();
                    }
                });
                let mut r = full(101, String::new());
                r.headers_mut().insert("upgrade", "echo".parse().unwrap());
                r.headers_mut().insert("connection", "upgrade".parse().unwrap());
                r
            }
            _ => {
                let mut r = full(200, self.name.clone());
                for (seen, name) in [
                    ("x-seen-xff", "x-forwarded-for"),
                    ("x-seen-proto", "x-forwarded-proto"),
                    ("x-seen-port", "x-forwarded-port"),
                    ("x-seen-host", "host"),
                    ("x-seen-keep-alive", "keep-alive"),
                    ("x-seen-custom", "x-custom"),
                ] {
                    if let Some(v) = req.headers().get(name) {
                        r.headers_mut().insert(seen, v.clone());
                    }
                }
                r
            }
        }
    }
}

/// A plain GET through the node: status, headers, body.
pub async fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> (StatusCode, http::HeaderMap, String) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(path);
    let mut has_host = false;
    for (k, v) in headers {
        has_host |= k.eq_ignore_ascii_case("host");
        req = req.header(*k, *v);
    }
    if !has_host {
        req = req.header("host", format!("127.0.0.1:{port}"));
    }
    let resp = sender.send_request(req.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned())
}

// ---- configuration builders ----

pub const LB_ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/web/0123456789abcdef";

pub fn load_balancer(kind: LoadBalancerType) -> LoadBalancer {
    LoadBalancer {
        id: "0123456789abcdef".into(),
        arn: LB_ARN.into(),
        name: "web".into(),
        kind,
        dns_name: "web-0123456789abcdef.us-east-1.elb.localhost".into(),
        scheme: "internet-facing".into(),
        vpc_id: None,
        zones: vec![],
        security_groups: vec![],
        ip_address_type: "ipv4".into(),
        state: "active".into(),
        attributes: BTreeMap::new(),
        tags: vec![],
        created_at_ms: 0,
    }
}

pub fn tg_arn(id: &str) -> String {
    format!("arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/tg-{id}/{id}")
}

pub fn target_group(id: &str, protocol: &str) -> TargetGroup {
    TargetGroup {
        id: id.into(),
        arn: tg_arn(id),
        name: format!("tg-{id}"),
        protocol: Some(protocol.into()),
        protocol_version: None,
        port: Some(80),
        vpc_id: None,
        target_type: TargetType::Ip,
        health_check: HealthCheck {
            enabled: true,
            protocol: if protocol == "TCP" { "TCP".into() } else { "HTTP".into() },
            port: "traffic-port".into(),
            path: Some("/health".into()),
            interval_seconds: 1,
            timeout_seconds: 1,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            matcher: Some("200".into()),
        },
        attributes: BTreeMap::new(),
        load_balancer_arns: vec![LB_ARN.into()],
        tags: vec![],
        created_at_ms: 0,
    }
}

pub fn target(group: &str, addr: SocketAddr, health: Option<HealthState>) -> NodeTarget {
    NodeTarget {
        target_group_id: group.into(),
        target: Target {
            id: addr.ip().to_string(),
            port: addr.port(),
            availability_zone: None,
            registered_at_ms: 0,
            registration: Registration::Registered,
            task_arn: None,
        },
        address: addr.to_string(),
        health,
    }
}

pub fn forward(group: &str) -> Action {
    Action::Forward {
        groups: vec![WeightedGroup { target_group_arn: tg_arn(group), weight: 1 }],
        stickiness_seconds: None,
        single: true,
    }
}

pub fn listener(id: &str, port: u16, protocol: &str, default: Action) -> Listener {
    Listener {
        id: id.into(),
        arn: format!("{LB_ARN}/listener/{id}"),
        load_balancer_arn: LB_ARN.into(),
        protocol: protocol.into(),
        port,
        default_actions: vec![default],
        tags: vec![],
    }
}

pub fn rule(listener_id: &str, priority: u32, conditions: Vec<Condition>, action: Action) -> Rule {
    Rule {
        id: format!("r{priority}"),
        arn: format!("{LB_ARN}/rule/{listener_id}/r{priority}"),
        listener_arn: format!("{LB_ARN}/listener/{listener_id}"),
        priority,
        conditions,
        actions: vec![action],
        tags: vec![],
    }
}

pub fn config(
    revision: i64,
    listeners: Vec<Listener>,
    rules: Vec<Rule>,
    groups: Vec<TargetGroup>,
    targets: Vec<NodeTarget>,
) -> NodeConfig {
    NodeConfig {
        revision,
        load_balancers: vec![load_balancer(LoadBalancerType::Application)],
        listeners,
        rules,
        target_groups: groups,
        targets,
    }
}
