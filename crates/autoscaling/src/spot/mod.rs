//! Spot interruptions. `POST /v1/spot/interrupt` (root principal only, SigV4-signed like any
//! ECS call) gives a Spot host its two-minute warning, as EC2 does: the host's record gets an
//! [`Interruption`] with a deadline (now + `warningSeconds`, default 120). When its user data
//! set `ECS_ENABLE_SPOT_INSTANCE_DRAINING=true`, its container instance goes DRAINING at once:
//! the control plane does it on the agent's behalf (an ECS agent polls the instance metadata's
//! `spot/instance-action` and calls UpdateContainerInstancesState DRAINING itself; Flotilla's
//! agents have no metadata service to poll, and the outcome is the same ordinary DRAINING
//! request). Services then replace its tasks, whose containers get SIGTERM and their stop
//! timeout; at the deadline the group loop terminates the host and deregisters its container
//! instance. The request is a JSON body `{"instanceId", "warningSeconds", "action"}` or the same
//! names as query parameters (what `flotilla spot interrupt` sends).
//!
//! Fargate Spot is reclaimed the same way: `taskArn` names a FARGATE_SPOT task, or `instanceId` a
//! Fargate pool host (all its FARGATE_SPOT tasks); each is told to stop at once, still RUNNING,
//! with stop code `SpotInterruption` and "Your Spot Task was interrupted.", its containers'
//! grace capped at the warning (`flotilla_api::domain::fargate::interrupt`).

use axum::body::Body;
use axum::http::{HeaderMap, Method, Response, Uri};
use flotilla_api::auth::Authenticator;
use flotilla_api::identity::Principal;
use flotilla_api::protocol::error_response;
use flotilla_api::{ApiError, ApiResult, Ctx};
use flotilla_hosts::{Interruption, Lifecycle};
use serde::{Deserialize, Serialize};

use crate::groups::{ecs, plan, records};

pub const INTERRUPT_PATH: &str = "/v1/spot/interrupt";
/// EC2's two-minute warning.
pub const DEFAULT_WARNING_SECS: u64 = 120;
/// The longest warning accepted.
pub const MAX_WARNING_SECS: u64 = 3600;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterruptRequest {
    #[serde(default)]
    pub instance_id: String,
    /// A FARGATE_SPOT task to interrupt, instead of a host.
    #[serde(default)]
    pub task_arn: Option<String>,
    #[serde(default)]
    pub warning_seconds: Option<u64>,
    /// `terminate` (default), `stop` or `hibernate`, as EC2's instance-action says.
    #[serde(default)]
    pub action: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterruptResponse {
    pub instance_id: String,
    pub action: String,
    /// Seconds since the epoch, as ECS gives times.
    pub deadline: f64,
    /// Whether its container instances were set DRAINING.
    pub draining: bool,
}

/// Records a Spot interruption notice for a host and drains it if its settings say so.
pub async fn interrupt(ctx: &Ctx, req: InterruptRequest) -> ApiResult<InterruptResponse> {
    let id = req.instance_id.trim().to_string();
    if id.is_empty() {
        return Err(ApiError::invalid_parameter("instanceId is required."));
    }
    let warning = req.warning_seconds.unwrap_or(DEFAULT_WARNING_SECS);
    if warning > MAX_WARNING_SECS {
        return Err(ApiError::invalid_parameter(format!(
            "warningSeconds must be between 0 and {MAX_WARNING_SECS}; got {warning}."
        )));
    }
    let action = req.action.unwrap_or_else(|| "terminate".into());
    if !matches!(action.as_str(), "terminate" | "stop" | "hibernate") {
        return Err(ApiError::invalid_parameter(format!(
            "action must be terminate, stop or hibernate; got '{action}'."
        )));
    }
    let Some(current) = records::host(ctx, &id).await? else {
        return Err(ApiError::invalid_parameter(format!(
            "instanceId '{id}' is not an instance this control plane runs."
        )));
    };
    if !current.value.spot {
        return Err(ApiError::invalid_parameter(format!(
            "Instance {id} is an On-Demand instance; only Spot instances get interruption notices."
        )));
    }
    if !plan::is_live(&current.value) {
        return Err(ApiError::invalid_parameter(format!(
            "Instance {id} is {}; only pending or running instances can be interrupted.",
            current.value.lifecycle.ec2_state().0
        )));
    }
    let now = ctx.clock.now_ms();
    let notice = Interruption { action: action.clone(), noticed_at_ms: now, deadline_ms: now + warning as i64 * 1000 };
    // A second notice keeps the first, earlier deadline: the capacity is going either way.
    let host = records::update_host(ctx, &id, |h| {
        if h.interruption.is_none() {
            h.interruption = Some(notice.clone());
        }
        matches!(h.lifecycle, Lifecycle::Pending | Lifecycle::InService)
    })
    .await?
    .ok_or_else(|| ApiError::invalid_parameter(format!("Instance {id} was terminated meanwhile.")))?;
    let mut draining = false;
    if host.spot_instance_draining {
        for r in ecs::by_ec2_id(ctx).get(&id).into_iter().flatten() {
            ecs::drain(ctx, r).await?;
            draining = true;
        }
    }
    let i = host.interruption.unwrap_or(notice);
    tracing::info!(instance = %id, deadline_ms = i.deadline_ms, draining, "Spot interruption notice");
    Ok(InterruptResponse { instance_id: id, action: i.action, deadline: i.deadline_ms as f64 / 1000.0, draining })
}

/// Interrupts what the request names: a Fargate Spot task, a Fargate pool host's Spot tasks, or a
/// Spot host of an Auto Scaling group.
pub async fn interrupt_any(ctx: &Ctx, req: InterruptRequest) -> ApiResult<serde_json::Value> {
    use flotilla_api::domain::fargate::{self, SpotTarget};
    let warning = req.warning_seconds.unwrap_or(DEFAULT_WARNING_SECS);
    let encode = |v: &InterruptResponse| serde_json::to_value(v).map_err(|e| ApiError::server(e.to_string()));
    let id = req.instance_id.trim().to_string();
    if let Some(task) = req.task_arn.as_deref().filter(|t| !t.is_empty()) {
        if !id.is_empty() {
            return Err(ApiError::invalid_parameter("Give taskArn or instanceId, not both."));
        }
        let tasks = fargate::interrupt(ctx, SpotTarget::Task(task), warning).await?;
        return Ok(serde_json::json!({ "tasks": tasks, "warningSeconds": warning.min(fargate::MAX_STOP_TIMEOUT) }));
    }
    if !id.is_empty() && records::host(ctx, &id).await?.is_none() {
        // Not a group's host: perhaps a Fargate pool host, whose Spot tasks go.
        if let Ok(tasks) = fargate::interrupt(ctx, SpotTarget::PoolHost(&id), warning).await {
            return Ok(serde_json::json!({
                "instanceId": id,
                "tasks": tasks,
                "warningSeconds": warning.min(fargate::MAX_STOP_TIMEOUT),
            }));
        }
    }
    encode(&interrupt(ctx, req).await?)
}

/// `%XX` escapes and `+` decoded (a query value).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request from a JSON body, else from the query string.
fn request_of(uri: &Uri, body: &[u8]) -> ApiResult<InterruptRequest> {
    if !body.iter().all(u8::is_ascii_whitespace) {
        return serde_json::from_slice(body)
            .map_err(|e| ApiError::serialization(format!("The body is not an interruption request: {e}")));
    }
    let mut req = InterruptRequest::default();
    for pair in uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "instanceId" => req.instance_id = v,
            "warningSeconds" => {
                req.warning_seconds = Some(v.parse().map_err(|_| {
                    ApiError::invalid_parameter(format!("warningSeconds must be a whole number; got '{v}'."))
                })?)
            }
            "action" => req.action = Some(v),
            "taskArn" => req.task_arn = Some(v),
            other => return Err(ApiError::invalid_parameter(format!("Unknown parameter '{other}'."))),
        }
    }
    Ok(req)
}

/// Serves `POST /v1/spot/interrupt`: mount it on the control plane's router.
pub async fn serve(
    ctx: &Ctx,
    auth: Option<&Authenticator>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let answer = async {
        let principal = match auth {
            Some(auth) => auth.authenticate(ctx, method, uri, headers, body).await?,
            None => Principal::Root,
        };
        principal.require_root("flotilla:InterruptSpotInstance")?;
        if *method != Method::POST {
            return Err(ApiError::invalid_parameter(format!("{INTERRUPT_PATH} answers POST only.")));
        }
        interrupt_any(ctx, request_of(uri, body)?).await
    };
    match answer.await {
        Ok(v) => {
            let mut r = Response::new(Body::from(serde_json::to_vec(&v).unwrap_or_default()));
            r.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => error_response(&request_id, &e),
    }
}

/// `POST /v1/spot/interrupt` as a router to merge into the control plane's (`auth` as the
/// server's: `None` only with signatures disabled).
pub fn router(ctx: Ctx, auth: Option<std::sync::Arc<Authenticator>>) -> axum::Router {
    let state = std::sync::Arc::new((ctx, auth));
    axum::Router::new().route(
        INTERRUPT_PATH,
        axum::routing::any(move |method: Method, uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
            let state = state.clone();
            async move { serve(&state.0, state.1.as_deref(), &method, &uri, &headers, &body).await }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_comes_from_the_body_or_the_query() {
        let uri: Uri = "/v1/spot/interrupt?instanceId=i-1&warningSeconds=30".parse().unwrap();
        let r = request_of(&uri, b"").unwrap();
        assert_eq!((r.instance_id.as_str(), r.warning_seconds), ("i-1", Some(30)));
        let r = request_of(&"/v1/spot/interrupt".parse().unwrap(), br#"{"instanceId":"i-2"}"#).unwrap();
        assert_eq!((r.instance_id.as_str(), r.warning_seconds), ("i-2", None));
        let bad: Uri = "/v1/spot/interrupt?instanceId=i-1&warningSeconds=soon".parse().unwrap();
        assert!(request_of(&bad, b"").unwrap_err().message.contains("warningSeconds"));
    }
}
