//! Finding what a request names: clusters by name or ARN, resources inside a cluster by ID or
//! ARN, task definitions by family, revision or ARN. Handlers and controllers share these, so a
//! name means the same thing to every operation.

use flotilla_model::arn::Resource;
use flotilla_model::{Cluster, Failure};

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::state::cache::{range_prefix, Entry, Indexes};
use crate::state::keys;
use crate::state::records::TaskDefinitionRecord;

pub const DEFAULT_CLUSTER: &str = "default";

/// The cluster name a `cluster` member names: a short name or a full ARN; absent means
/// `default`. Names that cannot be a cluster get `None`, and so does the Fargate pool's: no API
/// call names it (see [`host_cluster`]).
pub fn cluster_name(ctx: &Ctx, given: Option<&str>) -> Option<String> {
    any_cluster_name(ctx, given).filter(|n| !crate::domain::fargate::is_pool(n))
}

/// The ACTIVE cluster a host registers in: any cluster, or the Fargate pool (which only hosts
/// joined to it, and the root key pair minting their tokens, name).
pub fn host_cluster(ctx: &Ctx, given: Option<&str>) -> ApiResult<(String, Entry<Cluster>)> {
    match any_cluster_name(ctx, given).filter(|n| crate::domain::fargate::is_pool(n)) {
        Some(pool) => {
            let ix = ctx.cache.read();
            let e = ix.clusters.get(&keys::cluster(&pool)).cloned().ok_or_else(ApiError::cluster_not_found)?;
            Ok((pool, e))
        }
        None => active_cluster(ctx, given),
    }
}

fn any_cluster_name(ctx: &Ctx, given: Option<&str>) -> Option<String> {
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

/// The instance ID a `containerInstance` member names (an ID or an ARN of this cluster).
pub fn instance_id<'a>(ctx: &Ctx, cluster: &str, given: &'a str) -> Option<&'a str> {
    id_in_cluster(ctx, cluster, given, Scoped::ContainerInstance)
}

/// How a request names a task definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskDefinitionRef {
    /// The latest ACTIVE revision of a family.
    Family(String),
    Revision(String, u32),
}

/// Parses `family`, `family:revision` or a task definition ARN.
pub fn parse_ref(ctx: &Ctx, given: &str) -> Option<TaskDefinitionRef> {
    if given.starts_with("arn:") {
        return match ctx.arns.parse(given) {
            Ok(Resource::TaskDefinition { family, revision }) => Some(TaskDefinitionRef::Revision(family, revision)),
            _ => None,
        };
    }
    match given.rsplit_once(':') {
        Some((family, rev)) => {
            rev.parse().ok().filter(|r| *r > 0).map(|r| TaskDefinitionRef::Revision(family.into(), r))
        }
        None if !given.is_empty() => Some(TaskDefinitionRef::Family(given.into())),
        None => None,
    }
}

/// Finds the revision a reference names: an exact revision in any status, or a family's latest
/// ACTIVE revision.
pub fn task_definition(ctx: &Ctx, given: &str) -> Option<Entry<TaskDefinitionRecord>> {
    task_definition_in(ctx, &ctx.cache.read(), given)
}

/// [`task_definition`] in indexes the caller already holds. The cache's lock is not reentrant:
/// a second read while a writer waits would deadlock, so code that holds the indexes uses this.
pub fn task_definition_in(ctx: &Ctx, ix: &Indexes, given: &str) -> Option<Entry<TaskDefinitionRecord>> {
    let r = parse_ref(ctx, given)?;
    match r {
        TaskDefinitionRef::Revision(f, rev) => ix.task_definitions.get(&keys::task_definition(&f, rev)).cloned(),
        TaskDefinitionRef::Family(f) => {
            let prefix = keys::task_definition_family(&f);
            range_prefix(&ix.task_definitions, &prefix)
                .filter(|(_, e)| e.value.definition.status.as_deref() == Some("ACTIVE"))
                .last()
                .map(|(_, e)| e.clone())
        }
    }
}

/// The highest revision under a family prefix (`taskdef/family!`), found from the end of the
/// family's key range rather than by walking every revision.
pub fn latest_in_family<'a>(
    defs: &'a std::collections::BTreeMap<String, Entry<TaskDefinitionRecord>>,
    prefix: &str,
) -> Option<&'a Entry<TaskDefinitionRecord>> {
    // The separator '!' is followed by '"' in byte order: every key of the family sorts below it.
    let end = format!("{}\"", &prefix[..prefix.len() - 1]);
    defs.range(prefix.to_string()..end).next_back().map(|(_, e)| e)
}
