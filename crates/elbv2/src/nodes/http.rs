//! The HTTP side of the node contract, on the control plane's listener:
//!
//! - `POST /v1/lb/join`, unsigned: `{"token", "nodeId"?, "advertiseAddress"}` with a join token
//!   minted for load balancer nodes (`flotilla token create --lb`) -> `{"nodeId", "accessKeyId",
//!   "secretAccessKey"}`. A node that joins again under its old `nodeId` gets a new key pair.
//! - `GET /v1/lb/config?after=REV&wait=SECONDS`, signed (SigV4, service `ecs`, as agents sign) ->
//!   200 and the `NodeConfig` whose revision is greater than `after`, or 304 when `wait` (at most
//!   30) passes with no change to what nodes serve.
//! - `POST /v1/lb/report`, signed, a `NodeReport` -> 204.
//!
//! A node's key opens these routes and nothing else; the root key pair opens them too (and, with
//! authentication off, everyone is root). Errors are ECS's JSON error shapes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use axum::routing::{get, post};
use axum::Router;
use flotilla_api::auth::Authenticator;
use flotilla_api::identity::tokens::{self, TokenSigner};
use flotilla_api::identity::{access_denied, Principal};
use flotilla_api::{ApiError, ApiResult, Ctx};
use flotilla_endpoints::elb::NodeReport;
use serde::Deserialize;

use super::feed::Feed;
use super::health::Reports;
use super::records;

pub const JOIN_PATH: &str = "/v1/lb/join";
pub const CONFIG_PATH: &str = "/v1/lb/config";
pub const REPORT_PATH: &str = "/v1/lb/report";

/// A node's last-seen time is written at most this often (it is live for `LIVE_MS`).
const TOUCH_EVERY_MS: i64 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinRequest {
    token: String,
    #[serde(default)]
    node_id: Option<String>,
    #[serde(default)]
    advertise_address: Option<String>,
}

pub use flotilla_endpoints::elb::NodeCredentials;

struct NodeApi {
    ctx: Ctx,
    auth: Option<Arc<Authenticator>>,
    signer: TokenSigner,
    feed: Feed,
    reports: Reports,
    /// When each node's last-seen time was last written.
    touched: Mutex<HashMap<String, i64>>,
}

/// The node routes, to merge into the control plane's router.
pub fn routes(ctx: &Ctx, auth: Option<Arc<Authenticator>>, signer: TokenSigner) -> Router {
    let api = Arc::new(NodeApi {
        ctx: ctx.clone(),
        auth,
        signer,
        feed: Feed::new(ctx.clone()),
        reports: Reports::default(),
        touched: Mutex::default(),
    });
    Router::new()
        .route(JOIN_PATH, post(join))
        .route(CONFIG_PATH, get(config))
        .route(REPORT_PATH, post(report))
        .with_state(api)
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", "application/json".parse().expect("static"));
    r
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

fn answer(result: ApiResult<Response<Body>>) -> Response<Body> {
    result.unwrap_or_else(|e| {
        if e.status() >= 500 {
            tracing::error!(code = e.code, message = %e.message, "load balancer node request failed");
        }
        flotilla_api::protocol::error_response(&request_id(), &e)
    })
}

async fn join(State(api): State<Arc<NodeApi>>, body: Bytes) -> Response<Body> {
    answer(enroll(&api, &body).await.map(|c| json(StatusCode::OK, serde_json::to_vec(&c).unwrap_or_default())))
}

async fn enroll(api: &NodeApi, body: &[u8]) -> ApiResult<NodeCredentials> {
    let request: JoinRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::serialization(format!("The join request is not valid: {e}")))?;
    let address =
        request.advertise_address.ok_or_else(|| ApiError::invalid_parameter("advertiseAddress is required."))?;
    if address.parse::<std::net::IpAddr>().is_err() {
        return Err(ApiError::invalid_parameter(format!("advertiseAddress must be an IP address; got '{address}'.")));
    }
    if let Some(id) = request.node_id.as_deref().filter(|id| !records::valid_node_id(id)) {
        return Err(ApiError::invalid_parameter(format!("nodeId must be 'lbn-' and hex digits; got '{id}'.")));
    }
    let token = tokens::check(&api.ctx, &api.signer, &request.token).await?;
    if token.cluster != tokens::LOAD_BALANCER_NODES {
        return Err(access_denied(format!(
            "The join token is for cluster {}, not for load balancer nodes.",
            token.cluster
        )));
    }
    let node_id = request.node_id.unwrap_or_else(records::new_node_id);
    let credentials = enroll_node(&api.ctx, &node_id, &address, Some(&token.id)).await?;
    tracing::info!(node = %node_id, address = %address, token = %token.id, "load balancer node joined");
    Ok(credentials)
}

/// Records the node and issues its key pair.
pub(crate) async fn enroll_node(
    ctx: &Ctx,
    node_id: &str,
    address: &str,
    token_id: Option<&str>,
) -> ApiResult<NodeCredentials> {
    records::register(ctx, node_id, address, token_id).await?;
    let key = flotilla_api::identity::node_keys::issue(ctx, node_id, token_id).await?;
    Ok(NodeCredentials {
        node_id: node_id.to_string(),
        access_key_id: key.access_key_id,
        secret_access_key: key.secret_access_key,
    })
}

impl NodeApi {
    /// Who signed: a node (its id) or root (`None`); anyone else is refused.
    async fn caller(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> ApiResult<Option<String>> {
        let principal = match &self.auth {
            Some(auth) => auth.authenticate(&self.ctx, method, uri, headers, body).await?,
            None => Principal::Root,
        };
        match principal {
            Principal::Root => Ok(None),
            Principal::LoadBalancerNode { node_id } => Ok(Some(node_id)),
            Principal::Instance { instance_arn, .. } => {
                Err(access_denied(format!("User: {instance_arn} is not authorized to act as a load balancer node.")))
            }
        }
    }

    /// Notes that a node was heard from, in the store at most every [`TOUCH_EVERY_MS`].
    async fn seen(&self, node_id: &str) -> ApiResult<()> {
        let now = self.ctx.clock.now_ms();
        {
            let mut touched = flotilla_api::locks::lock(&self.touched);
            if touched.get(node_id).is_some_and(|at| now - at < TOUCH_EVERY_MS) {
                return Ok(());
            }
            touched.insert(node_id.to_string(), now);
        }
        records::touch(&self.ctx, node_id, now).await
    }
}

fn query(uri: &Uri) -> impl Iterator<Item = (&str, &str)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

async fn config(State(api): State<Arc<NodeApi>>, method: Method, uri: Uri, headers: HeaderMap) -> Response<Body> {
    answer(serve_config(&api, &method, &uri, &headers).await)
}

async fn serve_config(api: &NodeApi, method: &Method, uri: &Uri, headers: &HeaderMap) -> ApiResult<Response<Body>> {
    let node = api.caller(method, uri, headers, b"").await?;
    let (mut after, mut wait) = (0i64, 0u64);
    for (k, v) in query(uri) {
        match k {
            "after" => {
                after = v
                    .parse()
                    .map_err(|_| ApiError::invalid_parameter(format!("after must be a revision number; got '{v}'.")))?
            }
            "wait" => {
                wait = v.parse().map_err(|_| {
                    ApiError::invalid_parameter(format!("wait must be a whole number of seconds; got '{v}'."))
                })?
            }
            other => return Err(ApiError::invalid_parameter(format!("Unknown parameter '{other}'."))),
        }
    }
    if let Some(node) = &node {
        api.seen(node).await?;
    }
    match api.feed.wait(after, Duration::from_secs(wait)).await? {
        Some(config) => Ok(json(StatusCode::OK, serde_json::to_vec(&*config).unwrap_or_default())),
        None => Ok(empty(StatusCode::NOT_MODIFIED)),
    }
}

async fn report(
    State(api): State<Arc<NodeApi>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    answer(take_report(&api, &method, &uri, &headers, &body).await)
}

async fn take_report(
    api: &NodeApi,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response<Body>> {
    let node = api.caller(method, uri, headers, body).await?;
    let report: NodeReport =
        serde_json::from_slice(body).map_err(|e| ApiError::serialization(format!("The report is not valid: {e}")))?;
    if node.as_ref().is_some_and(|n| *n != report.node_id) {
        return Err(access_denied(format!(
            "These credentials may not report for load balancer node {}.",
            report.node_id
        )));
    }
    if records::get(&api.ctx, &report.node_id).await?.is_none() {
        return Err(ApiError::resource_not_found(format!("Load balancer node {} has not joined.", report.node_id)));
    }
    api.seen(&report.node_id).await?;
    let node_id = report.node_id.clone();
    let outcome = api.reports.apply(&api.ctx, report).await?;
    if outcome.health_written > 0 || outcome.drained > 0 {
        tracing::debug!(node = %node_id, health = outcome.health_written, drained = outcome.drained, "node report applied");
    }
    Ok(empty(StatusCode::NO_CONTENT))
}
