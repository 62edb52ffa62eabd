//! The HTTP server: the ECS API on `POST /` (and the other AWS services of `crate::extensions`,
//! routed by the SigV4 service name), health on `GET /health`, metrics on `GET /metrics`, with
//! graceful shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, Uri};
use axum::routing::get;
use axum::Router;
use flotilla_model::arn::ArnScope;
use flotilla_store::{RedbStore, Store};
use futures::FutureExt;

use crate::auth::Authenticator;
use crate::context::{Clock, Ctx};
use crate::credentials::RootCredentials;
use crate::error::ApiError;
use crate::extensions::{Extension, ExtensionRequest, Extensions};
use crate::identity::tokens::TokenSigner;
use crate::identity::{self, Principal};
use crate::identity_api;
use crate::metrics::Metrics;
use crate::pagination::Paginator;
use crate::state::cache::Cache;
use crate::supervisor::Supervisor;
use crate::{dispatch, gateway, handlers, protocol};

/// Whether requests must carry a valid SigV4 signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Verify,
    /// Development only: every request is accepted unsigned.
    Disabled,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub region: String,
    pub account_id: String,
    pub auth: AuthMode,
    pub credentials: RootCredentials,
    /// The service controller's settings (the lost-agent grace period).
    pub controller: crate::controller::Settings,
    /// How long a STOPPED task stays visible before it is forgotten; zero keeps them forever.
    pub stopped_task_retention: std::time::Duration,
    /// Managed scaling's period and how long tasks may wait in PROVISIONING.
    pub capacity: crate::capacity::Settings,
    /// The other AWS services served on the same listener (EC2, Auto Scaling, ...).
    pub extensions: Extensions,
    /// This server's id among the servers sharing one store ([`Ctx::server_id`]); `None` picks
    /// a fresh uuid each start.
    pub server_id: Option<String>,
    /// The URL the other servers reach this one at (to forward a log read to the server holding
    /// the agent's session); `None`: `http(s)://` and the listen address.
    pub advertise_url: Option<String>,
    /// How this server checks the other servers' certificates when they serve HTTPS (`None`:
    /// the system's roots).
    pub peer_tls: Option<Arc<rustls::ClientConfig>>,
}

impl ServerConfig {
    /// A server keeping its data in `data_dir`, with these root credentials and every other
    /// setting at its default: region us-east-1, account 000000000000, SigV4 verified, the loops'
    /// default settings, stopped tasks kept an hour, no other AWS services.
    pub fn new(data_dir: PathBuf, credentials: RootCredentials) -> Self {
        ServerConfig {
            data_dir,
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            auth: AuthMode::Verify,
            credentials,
            controller: Default::default(),
            stopped_task_retention: crate::reaper::DEFAULT_RETENTION,
            capacity: Default::default(),
            extensions: Default::default(),
            server_id: None,
            advertise_url: None,
            peer_tls: None,
        }
    }
}

struct App {
    ctx: Ctx,
    /// The live agent sessions, to reach an agent (reading a task's logs). The gateway's own state,
    /// held here rather than in the context that the gateway itself builds on.
    sessions: Arc<gateway::Sessions>,
    auth: Option<Arc<Authenticator>>,
    tokens: TokenSigner,
    metrics: Metrics,
    extensions: Extensions,
}

/// Opens the store under `config.data_dir` and builds the shared context.
pub async fn open(config: &ServerConfig, clock: Clock) -> anyhow::Result<Ctx> {
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(&config.data_dir)?;
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&config.data_dir.join("store.redb"))?);
    build_ctx(store, config, clock).await
}

/// Builds the context over any store (tests use this with other backends), and starts
/// campaigning to lead the background loops (see [`crate::leader`]).
pub async fn build_ctx(store: Arc<dyn Store>, config: &ServerConfig, clock: Clock) -> anyhow::Result<Ctx> {
    let loops = Supervisor::new();
    let cache = Cache::start_supervised(store.clone(), &loops).await?;
    let server_id: Arc<str> = match &config.server_id {
        Some(id) => id.as_str().into(),
        None => uuid::Uuid::new_v4().to_string().into(),
    };
    let secret = format!("pagination:{}", config.credentials.secret_access_key);
    let ctx = Ctx {
        store,
        cache,
        arns: ArnScope::new(config.region.clone(), config.account_id.clone()),
        pager: Paginator::new(secret.as_bytes()),
        clock,
        loops,
        gauges: Arc::default(),
        server_id,
        fence: None,
    };
    crate::leader::start(&ctx.store, ctx.server_id.clone(), &ctx.loops);
    handlers::clusters::ensure_default_cluster(&ctx).await?;
    Ok(ctx)
}

/// Serves the API on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    config: ServerConfig,
    listener: impl Into<crate::tls::Listening>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let ctx = open(&config, Clock::system()).await?;
    serve_ctx(ctx, &config, listener, shutdown).await
}

/// Serves an already-built context.
pub async fn serve_ctx(
    ctx: Ctx,
    config: &ServerConfig,
    listener: impl Into<crate::tls::Listening>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Loops that must run once among the servers sharing the store: on the leader only, each run
    // writing through the term's fence.
    let (c, settings) = (ctx.clone(), config.controller);
    let controller =
        ctx.loops.spawn_leader("controller", move |fence| crate::controller::run(c.fenced(fence), settings));
    let c = ctx.clone();
    let registrar = ctx.loops.spawn_leader(crate::endpoints::registrar::LOOP, move |fence| {
        crate::endpoints::registrar::run(c.fenced(fence))
    });
    let (c, retention) = (ctx.clone(), config.stopped_task_retention);
    let reaper = ctx.loops.spawn_leader("reaper", move |fence| crate::reaper::run(c.fenced(fence), retention));
    let (c, capacity) = (ctx.clone(), config.capacity);
    let capacity = ctx.loops.spawn_leader("capacity", move |fence| crate::capacity::run(c.fenced(fence), capacity));
    let extension_loops: Vec<_> = config.extensions.0.iter().flat_map(|e| e.start(&ctx)).collect();
    // The server registry: who holds which agent session, and where to reach them. Registered
    // before any session is recorded, so the leader's sweep never takes this server for dead.
    let listening: crate::tls::Listening = listener.into();
    let advertise = match &config.advertise_url {
        Some(url) => url.clone(),
        None => listening.default_url()?,
    };
    let me = crate::servers::ServerInfo::new(&ctx.server_id, &advertise, ctx.clock.now_ms());
    crate::servers::start(&ctx, &me).await?;
    let heartbeat = crate::servers::spawn_heartbeat(&ctx, me);
    let c = ctx.clone();
    let sweep = ctx.loops.spawn_leader(crate::servers::SWEEP_LOOP, move |fence| crate::servers::run(c.fenced(fence)));
    let (cache, loops, registry) = (ctx.cache.clone(), ctx.loops.clone(), ctx.clone());
    let router = router(ctx, config);
    let served = crate::tls::serve(listening, router, shutdown).await;
    // Let go of the store before returning, so the data directory can be opened again at once.
    controller.stop().await;
    registrar.stop().await;
    reaper.stop().await;
    capacity.stop().await;
    for handle in extension_loops {
        handle.stop().await;
    }
    sweep.stop().await;
    // Stopped before withdrawing, or its next beat would write the record back.
    heartbeat.stop().await;
    if let Err(e) = crate::servers::withdraw(&registry, &registry.server_id).await {
        tracing::warn!(error = %e, "could not withdraw from the server registry");
    }
    // Let another server take over now rather than when this one's lease runs out.
    loops.resign().await;
    cache.stop().await;
    served?;
    Ok(())
}

/// The HTTP routes over a context: the API, `/health` and `/metrics`.
pub fn router(ctx: Ctx, config: &ServerConfig) -> Router {
    let auth = match config.auth {
        AuthMode::Verify => Some(Arc::new(
            Authenticator::new(&config.region, config.credentials.clone(), ctx.store.clone())
                .with_services(&config.region, config.extensions.signing_names()),
        )),
        AuthMode::Disabled => None,
    };
    let mut registry = Metrics::new();
    registry.register_loops(ctx.loops.metrics());
    registry.register_gauges(ctx.gauges.clone());
    let tokens = TokenSigner::new(&config.credentials.secret_access_key);
    let extra: Vec<Router> = config.extensions.0.iter().filter_map(|e| e.routes(&ctx, auth.clone())).collect();
    let extensions = config.extensions.clone();
    let sessions = gateway::Sessions::new(ctx.server_id.clone()).with_services(config.extensions.agent_services());
    let sessions =
        match crate::servers::forward::Peers::new(&config.credentials, &config.region, config.peer_tls.clone()) {
            Ok(peers) => sessions.with_peers(peers),
            Err(e) => {
                tracing::warn!(error = %e, "cannot forward log reads to other servers");
                sessions
            }
        };
    let app = Arc::new(App { ctx, sessions: Arc::new(sessions), auth, tokens, metrics: registry, extensions });
    let router = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route(flotilla_protocol::AGENT_WS_PATH, get(agent_ws))
        .route(
            crate::logs_api::LOGS_PATH,
            get(|State(app): State<Arc<App>>, m: Method, u: Uri, h: HeaderMap| async move {
                crate::logs_api::get_logs(app.ctx.clone(), &app.sessions, app.auth.as_deref(), &m, &u, &h).await
            }),
        )
        .route(
            identity_api::TOKENS_PATH,
            axum::routing::any(|State(app): State<Arc<App>>, m: Method, u: Uri, h: HeaderMap| async move {
                identity_api::tokens(&app.ctx, app.auth.as_deref(), &app.tokens, &m, &u, &h).await
            }),
        )
        .route(
            identity_api::JOIN_PATH,
            axum::routing::any(|State(app): State<Arc<App>>, m: Method, body: Bytes| async move {
                identity_api::join(&app.ctx, &app.tokens, &m, &body).await
            }),
        )
        .fallback(api)
        .with_state(app);
    extra.into_iter().fold(router, Router::merge)
}

/// The agent session endpoint: a SigV4-signed websocket upgrade naming the instance.
async fn agent_ws(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    extensions: http::Extensions,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let principal = match &app.auth {
        Some(auth) => match auth.authenticate(&app.ctx, &method, &uri, &headers, b"").await {
            Ok(p) => p,
            Err(e) => return protocol::error_response(&request_id, &e),
        },
        None => Principal::Root,
    };
    match gateway::admit(&app.ctx, uri.query()) {
        // An instance's key opens that instance's session and no other; a load balancer node's
        // opens none.
        Ok(target)
            if matches!(&principal, Principal::Instance { instance_arn, .. } if *instance_arn != target.instance_arn)
                || matches!(principal, Principal::LoadBalancerNode { .. }) =>
        {
            let e = identity::access_denied(format!(
                "These credentials may not open the session of container instance {}.",
                target.instance_arn
            ));
            protocol::error_response(&request_id, &e)
        }
        Ok(mut target) => {
            // Where load balancer nodes reach the instance (absent behind the TLS listener).
            target.peer = extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
            let (ctx, sessions) = (app.ctx.clone(), app.sessions.clone());
            ws.read_buffer_size(flotilla_protocol::SESSION_READ_BUFFER)
                .on_upgrade(move |socket| gateway::run_session(ctx, sessions, socket, target))
        }
        Err(e) => protocol::error_response(&request_id, &e),
    }
}

/// `{"status":"ok"|"degraded","revision":N,"server":id,"leader":bool,"leader_id":id|null,
/// "loops":{"cache":"running",...}}`, with HTTP 503 while a loop is down (a leader loop in
/// standby on a server that does not lead is not down).
async fn health(State(app): State<Arc<App>>) -> Response<Body> {
    let loops = app.ctx.loops.states();
    let healthy = loops.values().all(|s| s.is_healthy());
    let body = serde_json::json!({
        "status": if healthy { "ok" } else { "degraded" },
        "revision": app.ctx.cache.applied(),
        // Agent sessions held by this server (each agent keeps one, on one server).
        "sessions": app.sessions.links.len(),
        "server": &*app.ctx.server_id,
        "leader": app.ctx.loops.leads(),
        "leader_id": crate::leader::leader_id(&app.ctx.loops, &*app.ctx.store, &app.ctx.server_id).await,
        "loops": loops.iter().map(|(name, s)| (name.to_string(), serde_json::Value::from(s.as_str()))).collect::<serde_json::Map<_, _>>(),
    });
    let mut r = Response::new(Body::from(body.to_string()));
    if !healthy {
        *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    }
    r.headers_mut().insert("content-type", "application/json".parse().expect("static"));
    r
}

async fn metrics(State(app): State<Arc<App>>) -> Response<Body> {
    let mut r = Response::new(Body::from(app.metrics.render()));
    r.headers_mut()
        .insert("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8".parse().expect("static"));
    r
}

async fn api(State(app): State<Arc<App>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response<Body> {
    if let Some((extension, name)) = extension_for(&app, &method, &uri, &headers, &body) {
        return serve_extension(&app, extension.as_ref(), name, &method, &uri, &headers, &body).await;
    }
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let op_name = protocol::operation_of(target).map(|o| o.name()).unwrap_or("Unknown");
    let result = handle(&app, &method, &uri, &headers, &body).await;
    let resp = match &result {
        Ok(bytes) => {
            let mut r = Response::new(Body::from(bytes.clone()));
            r.headers_mut().insert("content-type", protocol::CONTENT_TYPE.parse().expect("static"));
            if let Ok(v) = request_id.parse() {
                r.headers_mut().insert("x-amzn-requestid", v);
            }
            r
        }
        Err(e) => {
            if e.status() >= 500 {
                tracing::error!(operation = op_name, code = e.code, message = %e.message, "request failed");
            } else {
                tracing::debug!(operation = op_name, code = e.code, message = %e.message, "request refused");
            }
            protocol::error_response(&request_id, e)
        }
    };
    app.metrics.observe(op_name, started.elapsed().as_secs_f64(), result.as_ref().err().map(|e| e.code));
    resp
}

async fn handle(app: &App, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let principal = match &app.auth {
        Some(auth) => auth.authenticate(&app.ctx, method, uri, headers, body).await?,
        None => Principal::Root,
    };
    if method != Method::POST || uri.path() != "/" {
        return Err(ApiError::new(
            "UnknownOperationException",
            "The requested operation is not recognized by the service.",
        ));
    }
    let op = protocol::operation_of(headers.get("x-amz-target").and_then(|v| v.to_str().ok()))?;
    principal.require_root(&format!("ecs:{}", op.name()))?;
    // A handler bug must cost one request, not the connection or the server.
    match std::panic::AssertUnwindSafe(dispatch::dispatch(&app.ctx, op, body)).catch_unwind().await {
        Ok(r) => r,
        Err(_) => Err(ApiError::server("An internal error occurred while handling the request.")),
    }
}

/// The extension a request is for: the one serving the service its credential is scoped to, or,
/// for a request signed for no service and carrying no ECS target, the one whose service has its
/// query `Action` (unsigned dev mode; with signatures on, that extension refuses it in its own
/// error format).
fn extension_for(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<(Arc<dyn Extension>, &'static str)> {
    if app.extensions.0.is_empty() || method != Method::POST || uri.path() != "/" {
        return None;
    }
    let found = match crate::extensions::signing_name_of(headers) {
        Some(name) => app.extensions.by_signing_name(name),
        None => match headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
            None => app.extensions.by_action(body),
            Some(target) => app.extensions.by_target(target),
        },
    };
    found.map(|(e, n)| (e.clone(), n))
}

/// Authenticates a request for another service, lets only the root key pair through, and hands
/// it to its extension; every refusal is written in that service's error format.
async fn serve_extension(
    app: &App,
    extension: &dyn Extension,
    signing_name: &'static str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response<Body> {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let principal = match &app.auth {
        Some(auth) => match auth.authenticate_for(signing_name, &app.ctx, method, uri, headers, body).await {
            Ok(p) => p,
            Err(e) => return extension.error(signing_name, &request_id, &e),
        },
        None => Principal::Root,
    };
    // A JSON service names its operation in `X-Amz-Target`, a query service in `Action`.
    let action = match headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        Some(target) => target.rsplit('.').next().unwrap_or_default().to_string(),
        None => crate::extensions::action_of(body).map(|(a, _)| a).unwrap_or_default(),
    };
    if let Err(e) = principal.require_root(&format!("{signing_name}:{action}")) {
        return extension.error(signing_name, &request_id, &e);
    }
    let request =
        ExtensionRequest { ctx: &app.ctx, principal: &principal, signing_name, headers, body, request_id: &request_id };
    // A handler bug must cost one request, not the connection or the server.
    match std::panic::AssertUnwindSafe(extension.handle(request)).catch_unwind().await {
        Ok(out) => {
            app.metrics.observe(out.operation, started.elapsed().as_secs_f64(), out.error);
            out.response
        }
        Err(_) => {
            tracing::error!(service = signing_name, action, "request handler panicked");
            let e = ApiError::server("An internal error occurred while handling the request.");
            extension.error(signing_name, &request_id, &e)
        }
    }
}
