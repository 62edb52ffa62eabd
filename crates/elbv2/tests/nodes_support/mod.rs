//! A real control plane serving the load balancer node routes and loops (through a test-only
//! extension that carries nothing else, since the ELBv2 extension is wired elsewhere), a clock
//! the tests move, signed HTTP calls, and records written straight into the store.

#![allow(dead_code)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use flotilla_api::extensions::{Extension, ExtensionRequest, ExtensionResponse};
use flotilla_api::supervisor::LoopHandle;
use flotilla_api::{ApiError, AuthMode, Clock, Ctx, Extensions, RootCredentials, ServerConfig};
use flotilla_elbv2::nodes::{self, LoopSettings, NodeCredentials};
use flotilla_endpoints::elb::{
    HealthCheck, LoadBalancer, LoadBalancerType, Registration, Target, TargetGroup, TargetType,
};
use flotilla_endpoints::keys;
use flotilla_sigv4::{Credentials, SigningParams};
use flotilla_store::{Op, Txn};
use futures::future::BoxFuture;
use tokio::sync::oneshot;

pub const REGION: &str = "us-east-1";
const SECRET: &str = "nodes-test-secret-0123456789abcdef";

/// Serves the node routes and runs the node loops, nothing else.
struct NodesOnly {
    secret: String,
    tick: Duration,
}

impl Extension for NodesOnly {
    fn signing_names(&self) -> &'static [&'static str] {
        &[]
    }
    fn claims(&self, _action: &str, _version: Option<&str>) -> Option<&'static str> {
        None
    }
    fn handle<'a>(&'a self, request: ExtensionRequest<'a>) -> BoxFuture<'a, ExtensionResponse> {
        let e = ApiError::new("UnknownOperationException", "No operation is served here.");
        let response = flotilla_api::protocol::error_response(request.request_id, &e);
        Box::pin(async move { ExtensionResponse { response, operation: "Unknown", error: Some(e.code) } })
    }
    fn error(&self, _signing_name: &'static str, request_id: &str, error: &ApiError) -> http::Response<Body> {
        flotilla_api::protocol::error_response(request_id, error)
    }
    fn start(&self, ctx: &Ctx) -> Vec<LoopHandle> {
        nodes::start_with(ctx, LoopSettings { tick: self.tick })
    }
    fn routes(&self, ctx: &Ctx, auth: Option<Arc<flotilla_api::auth::Authenticator>>) -> Option<axum::Router> {
        Some(nodes::routes(ctx, auth, &self.secret))
    }
}

pub struct Server {
    pub url: String,
    pub ctx: Ctx,
    pub root: Credentials,
    /// The context's clock, in ms; starts at the real time (signatures use the real one).
    pub now: Arc<AtomicI64>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Server {
    pub async fn start() -> Server {
        Server::start_on(None).await
    }

    /// A server over `store` (several servers may share one, as on etcd), or over its own
    /// embedded store when `None`.
    pub async fn start_on(store: Option<Arc<dyn flotilla_store::Store>>) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let credentials = RootCredentials { access_key_id: "AKIDNODESTEST".into(), secret_access_key: SECRET.into() };
        let extension = NodesOnly { secret: SECRET.into(), tick: Duration::from_millis(50) };
        let config = ServerConfig {
            auth: AuthMode::Verify,
            extensions: Extensions::new([Arc::new(extension) as Arc<dyn Extension>]),
            ..ServerConfig::new(dir.path().to_path_buf(), credentials.clone())
        };
        let start = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64;
        let now = Arc::new(AtomicI64::new(start));
        let read = now.clone();
        let clock = Clock::from_fn(move || read.load(Ordering::SeqCst));
        let ctx = match store {
            Some(store) => flotilla_api::server::build_ctx(store, &config, clock).await.expect("context"),
            None => flotilla_api::server::open(&config, clock).await.expect("context"),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let served = ctx.clone();
        let handle = tokio::spawn(async move {
            flotilla_api::server::serve_ctx(served, &config, listener, async move {
                let _ = rx.await;
            })
            .await
        });
        let root = Credentials::new(&credentials.access_key_id, &credentials.secret_access_key);
        Server { url, ctx, root, now, stop: Some(tx), handle: Some(handle), _dir: dir }
    }

    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    /// A request to `path`, signed for `ecs` with `creds` (unsigned when `None`).
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        creds: Option<&Credentials>,
        target: Option<&str>,
        body: &str,
    ) -> Reply {
        self.call_with(method, path, creds, target, http::HeaderMap::new(), body).await
    }

    /// [`Self::call`] with extra headers (unsigned ones).
    pub async fn call_with(
        &self,
        method: http::Method,
        path: &str,
        creds: Option<&Credentials>,
        target: Option<&str>,
        extra: http::HeaderMap,
        body: &str,
    ) -> Reply {
        let url = format!("{}{path}", self.url);
        let mut headers = http::HeaderMap::new();
        let content_type = if target.is_some() { "application/x-amz-json-1.1" } else { "application/json" };
        headers.insert("content-type", content_type.parse().unwrap());
        if let Some(t) = target {
            headers.insert("x-amz-target", t.parse().unwrap());
        }
        if let Some(credentials) = creds {
            let params = SigningParams { credentials, region: REGION, service: "ecs", time: SystemTime::now() };
            flotilla_sigv4::sign(&method, &url.parse().unwrap(), &mut headers, body.as_bytes(), &params).expect("sign");
        }
        headers.extend(extra);
        let resp = reqwest::Client::new()
            .request(method, &url)
            .headers(headers)
            .body(body.to_string())
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("send");
        let status = resp.status().as_u16();
        // A switched protocol has no HTTP body to wait for.
        let body = if status == 101 { String::new() } else { resp.text().await.expect("body") };
        Reply { status, body }
    }

    /// Mints a join token through `/v1/tokens` as the root principal: `(id, token)`.
    pub async fn token(&self, cluster: &str, ttl_secs: u64) -> (String, String) {
        let path = format!("/v1/tokens?cluster={cluster}&ttlSeconds={ttl_secs}");
        let reply = self.call(http::Method::POST, &path, Some(&self.root), None, "").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let v = reply.json();
        (v["id"].as_str().unwrap().to_string(), v["token"].as_str().unwrap().to_string())
    }

    pub async fn join(&self, body: serde_json::Value) -> Reply {
        self.call(http::Method::POST, nodes::JOIN_PATH, None, None, &body.to_string()).await
    }

    /// Joins a node with a fresh token: its credentials.
    pub async fn join_node(&self) -> (NodeCredentials, Credentials) {
        let (_, token) = self.token(flotilla_api::identity::tokens::LOAD_BALANCER_NODES, 600).await;
        let reply = self.join(serde_json::json!({"token": token, "advertiseAddress": "127.0.0.1"})).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let creds: NodeCredentials = serde_json::from_str(&reply.body).expect("credentials");
        let signing = Credentials::new(&creds.access_key_id, &creds.secret_access_key);
        (creds, signing)
    }

    pub async fn fetch(&self, creds: &Credentials, after: i64, wait: u64) -> Reply {
        let path = format!("{}?after={after}&wait={wait}", nodes::CONFIG_PATH);
        self.call(http::Method::GET, &path, Some(creds), None, "").await
    }

    pub async fn report(&self, creds: &Credentials, report: serde_json::Value) -> Reply {
        self.call(http::Method::POST, nodes::REPORT_PATH, Some(creds), None, &report.to_string()).await
    }

    pub async fn put<T: serde::Serialize>(&self, key: &str, value: &T) {
        let txn = Txn::new().then(Op::put(key, serde_json::to_vec(value).unwrap()));
        self.ctx.commit(txn).await.expect("commit");
    }

    pub async fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let kv = self.ctx.store.get(key).await.expect("get")?;
        Some(serde_json::from_slice(&kv.value).expect("record"))
    }

    pub async fn mod_revision(&self, key: &str) -> Option<u64> {
        self.ctx.store.get(key).await.expect("get").map(|kv| kv.mod_revision)
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        self.handle.take().expect("running").await.expect("join").expect("served");
    }

    /// Polls `what` until it holds (the loops tick every 50 ms); panics after 10 s.
    pub async fn until<F, Fut>(&self, what: &str, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..1200 {
            if f().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("timed out waiting for {what}");
    }
}

pub fn load_balancer(id: &str) -> LoadBalancer {
    LoadBalancer {
        id: id.into(),
        arn: format!("arn:aws:elasticloadbalancing:{REGION}:000000000000:loadbalancer/app/web/{id}"),
        name: "web".into(),
        kind: LoadBalancerType::Application,
        dns_name: format!("web-{id}.{REGION}.elb.localhost"),
        scheme: "internet-facing".into(),
        vpc_id: None,
        zones: Vec::new(),
        security_groups: Vec::new(),
        ip_address_type: "ipv4".into(),
        state: "provisioning".into(),
        attributes: Default::default(),
        tags: Vec::new(),
        created_at_ms: 0,
    }
}

pub fn target_group(id: &str, kind: TargetType) -> TargetGroup {
    TargetGroup {
        id: id.into(),
        arn: format!("arn:aws:elasticloadbalancing:{REGION}:000000000000:targetgroup/tg/{id}"),
        name: "tg".into(),
        protocol: Some("HTTP".into()),
        protocol_version: Some("HTTP1".into()),
        port: Some(80),
        vpc_id: None,
        target_type: kind,
        health_check: HealthCheck {
            enabled: true,
            protocol: "HTTP".into(),
            port: "traffic-port".into(),
            path: Some("/".into()),
            interval_seconds: 30,
            timeout_seconds: 5,
            healthy_threshold: 5,
            unhealthy_threshold: 2,
            matcher: Some("200".into()),
        },
        attributes: Default::default(),
        load_balancer_arns: Vec::new(),
        tags: Vec::new(),
        created_at_ms: 0,
    }
}

pub fn target(id: &str, port: u16, registration: Registration) -> Target {
    Target { id: id.into(), port, availability_zone: None, registered_at_ms: 0, registration, task_arn: None }
}

/// Writes a target group and one target in it, in one transaction.
pub async fn register(server: &Server, group: &TargetGroup, t: &Target) {
    let txn = Txn::new()
        .then(Op::put(keys::target_group(&group.id), serde_json::to_vec(group).unwrap()))
        .then(Op::put(keys::target(&group.id, &t.id, t.port), serde_json::to_vec(t).unwrap()));
    server.ctx.commit(txn).await.expect("commit");
}
