//! One module per resource, each a set of `async fn(&Ctx, Request) -> ApiResult<Response>`, and
//! the lookups they share: resolving a cluster given by name or ARN, the clusters' defaults.

pub mod account_settings;
pub mod attributes;
pub mod clusters;
pub mod container_instances;
pub mod run_task;
pub mod services;
pub mod start_task;
pub mod tags;
pub mod task_definitions;
pub mod tasks;

use flotilla_model::arn::Resource;
use flotilla_model::{Cluster, Failure};

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::state::cache::Entry;
use crate::state::keys;

pub const DEFAULT_CLUSTER: &str = "default";

/// The cluster name a `cluster` member names: a short name or a full ARN; absent means
/// `default`. Names that cannot be a cluster get `None`.
pub fn cluster_name(ctx: &Ctx, given: Option<&str>) -> Option<String> {
    match given {
        None => Some(DEFAULT_CLUSTER.to_string()),
        Some(s) if s.starts_with("arn:") => match ctx.arns.parse(s) {
            Ok(Resource::Cluster(name)) => Some(name),
            _ => None,
        },
        Some("") => None,
        Some(s) => Some(s.to_string()),
    }
}

/// The ACTIVE cluster the request names, or ClusterNotFoundException.
pub fn active_cluster(ctx: &Ctx, given: Option<&str>) -> ApiResult<(String, Entry<Cluster>)> {
    let name = cluster_name(ctx, given).ok_or_else(ApiError::cluster_not_found)?;
    let ix = ctx.cache.read();
    match ix.clusters.get(&keys::cluster(&name)) {
        Some(e) if e.value.status.as_deref() == Some("ACTIVE") => Ok((name, e.clone())),
        _ => Err(ApiError::cluster_not_found()),
    }
}

/// The kinds of resource that live inside a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoped {
    ContainerInstance,
    Task,
    Service,
}

/// The short ID (or name) a member gives for a resource of `kind` in `cluster`: the ID itself,
/// or an ARN of that kind naming this cluster (or none, in ECS's old short ARN format).
pub fn id_in_cluster<'a>(ctx: &Ctx, cluster: &str, given: &'a str, kind: Scoped) -> Option<&'a str> {
    if !given.starts_with("arn:") {
        return (!given.is_empty() && !given.contains('/')).then_some(given);
    }
    let (found, in_cluster) = match ctx.arns.parse(given).ok()? {
        Resource::ContainerInstance { cluster, .. } => (Scoped::ContainerInstance, cluster),
        Resource::Task { cluster, .. } => (Scoped::Task, cluster),
        Resource::Service { cluster, .. } => (Scoped::Service, cluster),
        _ => return None,
    };
    (found == kind && in_cluster.as_deref().is_none_or(|c| c == cluster)).then(|| flotilla_model::arn::short_id(given))
}

pub fn missing(arn: String) -> Failure {
    Failure { arn: Some(arn), reason: Some("MISSING".into()), detail: None }
}

/// Rejects a batch whose size is outside 1..=max, naming the member.
pub fn check_batch(member: &str, len: usize, max: usize) -> ApiResult<()> {
    if len == 0 {
        return Err(ApiError::invalid_parameter(format!("{member} can not be empty.")));
    }
    if len > max {
        return Err(ApiError::invalid_parameter(format!("{member} can have at most {max} items; got {len}.")));
    }
    Ok(())
}

/// A fresh identifier for a task, container instance or deployment: 32 lowercase hex digits,
/// as ECS's task IDs look.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
