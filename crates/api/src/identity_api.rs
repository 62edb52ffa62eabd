//! The identity endpoints (the tokens and keys themselves are `identity`). Token management is the root principal's, SigV4-signed like any ECS
//! call (service `ecs`, empty body):
//!
//! - `POST /v1/tokens?cluster=C[&ttlSeconds=N]` mints a join token: `{"id", "cluster",
//!   "expiresAt", "token"}` (times in seconds since the epoch, as ECS gives them);
//! - `GET /v1/tokens` lists them: `{"tokens": [{"id", "cluster", "createdAt", "expiresAt",
//!   "status"}]}`, status `ACTIVE`, `EXPIRED` or `REVOKED`; the token itself is never shown again;
//! - `DELETE /v1/tokens?id=ID` revokes one.
//!
//! `POST /v1/join` is not signed (the agent has no key yet): its body `{"token", "registration"}`
//! carries the token and a RegisterContainerInstance request. The instance is registered into the
//! token's cluster and the answer is `{"containerInstance", "credentials": {"accessKeyId",
//! "secretAccessKey"}}`, a key pair for that instance's session only.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Response, Uri};
use flotilla_model::{RegisterContainerInstanceRequest, Validate};
use serde::{Deserialize, Serialize};

use crate::auth::Authenticator;
use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::gateway::percent_decode;
use crate::identity::tokens::{self, TokenRecord, TokenSigner};
use crate::identity::{access_denied, instance_keys, Principal};
use crate::protocol::{decode, error_response};

pub const TOKENS_PATH: &str = "/v1/tokens";
pub const JOIN_PATH: &str = "/v1/join";

/// The body of `POST /v1/join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub token: String,
    #[serde(default)]
    pub registration: RegisterContainerInstanceRequest,
}

/// The key pair a joined agent receives.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for JoinCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinCredentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn query(uri: &Uri) -> impl Iterator<Item = (&str, String)> {
    uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k, percent_decode(v))
    })
}

fn ok(value: serde_json::Value, request_id: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(value.to_string()));
    r.headers_mut().insert("content-type", "application/json".parse().expect("static"));
    if let Ok(v) = request_id.parse() {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

fn describe(t: &TokenRecord, now: i64) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "cluster": t.cluster,
        "createdAt": seconds(t.created_at),
        "expiresAt": seconds(t.expires_at),
        "status": t.status(now),
    })
}

/// Serves `/v1/tokens`.
pub async fn tokens(
    ctx: &Ctx,
    auth: Option<&Authenticator>,
    signer: &TokenSigner,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().to_string();
    match manage(ctx, auth, signer, method, uri, headers).await {
        Ok(v) => ok(v, &request_id),
        Err(e) => error_response(&request_id, &e),
    }
}

async fn manage(
    ctx: &Ctx,
    auth: Option<&Authenticator>,
    signer: &TokenSigner,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> ApiResult<serde_json::Value> {
    let principal = match auth {
        Some(auth) => auth.authenticate(ctx, method, uri, headers, b"").await?,
        None => Principal::Root,
    };
    let now = ctx.clock.now_ms();
    if *method == Method::POST {
        principal.require_root("flotilla:CreateJoinToken")?;
        let (mut cluster, mut ttl) = (None, tokens::DEFAULT_TTL_SECS);
        for (k, v) in query(uri) {
            match k {
                "cluster" => cluster = Some(v),
                "ttlSeconds" => {
                    ttl = v.parse().map_err(|_| {
                        ApiError::invalid_parameter(format!("ttlSeconds must be a whole number; got '{v}'."))
                    })?
                }
                other => return Err(ApiError::invalid_parameter(format!("Unknown parameter '{other}'."))),
            }
        }
        let cluster = cluster.ok_or_else(|| ApiError::invalid_parameter("cluster is required."))?;
        let (record, token) = tokens::create(ctx, signer, &cluster, ttl).await?;
        let mut v = describe(&record, now);
        v["token"] = token.into();
        Ok(v)
    } else if *method == Method::GET {
        principal.require_root("flotilla:ListJoinTokens")?;
        let list = tokens::list(ctx).await?;
        Ok(serde_json::json!({ "tokens": list.iter().map(|t| describe(t, now)).collect::<Vec<_>>() }))
    } else if *method == Method::DELETE {
        principal.require_root("flotilla:RevokeJoinToken")?;
        let id = query(uri)
            .find(|(k, _)| *k == "id")
            .map(|(_, v)| v)
            .ok_or_else(|| ApiError::invalid_parameter("id is required."))?;
        let record = tokens::revoke(ctx, &id).await?;
        Ok(describe(&record, now))
    } else {
        Err(ApiError::invalid_parameter(format!("{TOKENS_PATH} answers GET, POST and DELETE.")))
    }
}

/// Serves `POST /v1/join`.
pub async fn join(ctx: &Ctx, signer: &TokenSigner, method: &Method, body: &[u8]) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().to_string();
    match enroll(ctx, signer, method, body).await {
        Ok(v) => ok(v, &request_id),
        Err(e) => error_response(&request_id, &e),
    }
}

async fn enroll(ctx: &Ctx, signer: &TokenSigner, method: &Method, body: &[u8]) -> ApiResult<serde_json::Value> {
    if *method != Method::POST {
        return Err(ApiError::invalid_parameter(format!("{JOIN_PATH} answers POST only.")));
    }
    let JoinRequest { token, mut registration } = decode(body)?;
    let record = tokens::check(ctx, signer, &token).await?;
    if record.cluster == tokens::LOAD_BALANCER_NODES {
        return Err(access_denied("The join token is for load balancer nodes, which join at /v1/lb/join."));
    }
    if let Some(asked) = registration.cluster.as_deref() {
        let (asked, _) = crate::domain::lookup::host_cluster(ctx, Some(asked))?;
        if asked != record.cluster {
            return Err(access_denied(format!("The join token is for cluster {}, not {asked}.", record.cluster)));
        }
    }
    registration.cluster = Some(record.cluster.clone());
    Validate::validate_request(&registration)?;
    let out = crate::handlers::container_instances::register(ctx, registration).await?;
    let arn = out
        .container_instance
        .as_ref()
        .and_then(|ci| ci.container_instance_arn.clone())
        .ok_or_else(|| ApiError::server("The registration answered no container instance ARN."))?;
    let key = instance_keys::issue(ctx, &record.cluster, &arn, &record.id).await?;
    tracing::info!(instance = %arn, token = %record.id, access_key_id = %key.access_key_id, "agent joined with a token");
    let credentials = JoinCredentials { access_key_id: key.access_key_id, secret_access_key: key.secret_access_key };
    Ok(serde_json::json!({
        "containerInstance": out.container_instance,
        "credentials": credentials,
    }))
}
