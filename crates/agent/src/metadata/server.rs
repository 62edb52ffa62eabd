//! The metadata endpoint's HTTP server: `/v4/<token>`, `/v4/<token>/task`, `/v4/<token>/stats`
//! and `/v4/<token>/task/stats` (and the same under `/v3/`). The token alone says who asks; it
//! resolves through Docker's label filter to one container of this agent, and from there to
//! that container's task. Nothing else is served: no Docker socket, no credentials.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::{is_token, shape, TOKEN_LABEL};
use crate::engine::record::TaskRecord;
use crate::runtime::{labels, Runtime};

/// The agent's knowledge of its tasks, as the endpoint reads it: the engine, or a fake.
pub trait TaskBook: Send + Sync + 'static {
    /// The task's current record, `None` for a task the agent does not hold.
    fn task(&self, task_arn: &str) -> Option<TaskRecord>;
}

impl TaskBook for crate::engine::Engine {
    fn task(&self, task_arn: &str) -> Option<TaskRecord> {
        self.record(task_arn)
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct MetadataState {
    pub runtime: Arc<dyn Runtime>,
    pub tasks: Arc<dyn TaskBook>,
    /// Only containers of this agent's instance answer, when several agents share a Docker host.
    pub instance_arn: String,
    /// The agent's cluster, for tasks whose assignment does not name it.
    pub cluster_arn: String,
    /// The instance's availability zone, for tasks whose record does not name theirs.
    pub availability_zone: Option<String>,
}

pub fn router(state: MetadataState) -> Router {
    Router::new()
        .route("/{version}/{token}", get(container))
        .route("/{version}/{token}/task", get(task))
        .route("/{version}/{token}/stats", get(container_stats))
        .route("/{version}/{token}/task/stats", get(task_stats))
        .with_state(state)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: MetadataState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such metadata endpoint\n").into_response()
}

fn unavailable(what: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{what}: the container runtime did not answer\n")).into_response()
}

/// The container a token was given to: its task's record and its name in the task.
async fn resolve(state: &MetadataState, version: &str, token: &str) -> Result<(TaskRecord, String), Response> {
    if !matches!(version, "v3" | "v4") || !is_token(token) {
        return Err(not_found());
    }
    let filter = [
        (labels::MARKER, Some("true")),
        (labels::INSTANCE, Some(state.instance_arn.as_str())),
        (TOKEN_LABEL, Some(token)),
    ];
    let found = state.runtime.list_containers(&filter).await.map_err(|e| {
        tracing::warn!(error = %e, "metadata: listing containers failed");
        unavailable("resolving the token")
    })?;
    let [one] = found.as_slice() else { return Err(not_found()) };
    let (Some(arn), Some(name)) = (one.labels.get(labels::TASK), one.labels.get(labels::CONTAINER)) else {
        return Err(not_found());
    };
    let mut rec = state.tasks.task(arn).ok_or_else(not_found)?;
    // A container may ask before its task's next report records its ID; Docker knows it.
    if let Some(c) = rec.container_mut(name) {
        c.runtime_id.get_or_insert_with(|| one.id.clone());
    }
    Ok((rec, name.clone()))
}

/// Every container of the task that the runtime created, shaped; inspect failures leave the
/// Docker fields out rather than failing the whole answer.
async fn shape_containers(
    state: &MetadataState,
    rec: &TaskRecord,
    only: Option<&str>,
) -> Vec<shape::ContainerMetadata> {
    let mut out = Vec::new();
    for c in rec.containers.iter().filter(|c| only.is_none_or(|n| n == c.name)) {
        let info = match &c.runtime_id {
            Some(id) => state.runtime.inspect_container(id).await.ok(),
            None => None,
        };
        out.push(shape::container(rec, c, info.as_ref()));
    }
    out
}

async fn container(State(state): State<MetadataState>, Path((version, token)): Path<(String, String)>) -> Response {
    let (rec, name) = match resolve(&state, &version, &token).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match shape_containers(&state, &rec, Some(&name)).await.pop() {
        Some(c) => Json(c).into_response(),
        None => not_found(),
    }
}

async fn task(State(state): State<MetadataState>, Path((version, token)): Path<(String, String)>) -> Response {
    let (rec, _) = match resolve(&state, &version, &token).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let containers = shape_containers(&state, &rec, None).await;
    let mut task = shape::task(&rec, &state.cluster_arn, containers);
    if task.availability_zone.is_none() {
        task.availability_zone = state.availability_zone.clone();
    }
    Json(task).into_response()
}

async fn container_stats(
    State(state): State<MetadataState>,
    Path((version, token)): Path<(String, String)>,
) -> Response {
    let (rec, name) = match resolve(&state, &version, &token).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let Some(id) = rec.container(&name).and_then(|c| c.runtime_id.clone()) else { return not_found() };
    match state.runtime.stats_json(&id).await {
        Ok(v) => Json(v).into_response(),
        Err(e) if e.is_transient() => unavailable("stats"),
        // A container that is not running has no stats; ECS answers null then too.
        Err(_) => Json(serde_json::Value::Null).into_response(),
    }
}

async fn task_stats(State(state): State<MetadataState>, Path((version, token)): Path<(String, String)>) -> Response {
    let (rec, _) = match resolve(&state, &version, &token).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut out = BTreeMap::new();
    for id in rec.containers.iter().filter_map(|c| c.runtime_id.clone()) {
        let stats = state.runtime.stats_json(&id).await.unwrap_or(serde_json::Value::Null);
        out.insert(id, stats);
    }
    Json(out).into_response()
}
