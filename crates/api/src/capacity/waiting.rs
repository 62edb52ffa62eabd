//! The tasks that wait in PROVISIONING for a capacity provider: each pass places those that now
//! fit (through [`crate::domain::launch::waiting`], the launch path's own placing) and stops those
//! that have waited longer than the provisioning timeout, as ECS stops them.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_model::PlacementStrategy;
use flotilla_protocol::TaskStatus;

use crate::context::Ctx;
use crate::domain::launch::waiting::{place_waiting, Waiting};
use crate::domain::lookup;
use crate::domain::stop::stop_by_key;
use crate::error::ApiResult;
use crate::state::cache::{range_prefix, Indexes};
use crate::state::keys;

/// The stop code ECS gives a task that never started.
pub const STOP_CODE: &str = "TaskFailedToStart";

/// A waiting task, as the metric and the placing read it.
#[derive(Debug, Clone)]
pub struct WaitingTask {
    pub key: String,
    pub cluster: String,
    pub provider: String,
    pub cpu: i64,
    pub memory: i64,
}

/// Every task of `cluster` that waits for a provider's capacity.
pub fn waiting_in(ix: &Indexes, cluster: &str) -> Vec<WaitingTask> {
    let Some(keys) = ix.task_index.waiting.get(cluster) else { return Vec::new() };
    let mut out = Vec::new();
    for key in keys {
        let Some(e) = ix.tasks.get(&**key) else { continue };
        let s = &e.value.summary;
        if s.instance.is_some() || s.last_status != Some(TaskStatus::Provisioning) {
            continue;
        }
        // A task launched with the FARGATE launch type shows no provider; it waits for FARGATE's.
        let fargate = (s.launch_type.as_deref() == Some(flotilla_protocol::FARGATE)).then_some("FARGATE");
        let Some(provider) = s.capacity_provider.as_deref().or(fargate) else { continue };
        let (cpu, memory) = s.reservation.as_ref().map_or((0, 0), |r| (r.cpu, r.memory));
        out.push(WaitingTask {
            key: key.to_string(),
            cluster: cluster.to_string(),
            provider: provider.to_string(),
            cpu,
            memory,
        });
    }
    out
}

/// One pass over every cluster's waiting tasks. Returns how many were placed.
pub async fn pass(ctx: &Ctx, timeout: Duration) -> ApiResult<usize> {
    let clusters: Vec<String> = {
        let ix = ctx.cache.read();
        range_prefix(&ix.clusters, keys::CLUSTER)
            .filter(|(_, c)| c.value.status.as_deref() == Some("ACTIVE"))
            .filter_map(|(_, c)| c.value.cluster_name.clone())
            .collect()
    };
    let now = ctx.now().as_millis();
    let mut placed = 0;
    for cluster in clusters {
        let (groups, expired) = gather(ctx, &cluster, now, timeout);
        for (key, provider) in expired {
            let reason = match crate::domain::fargate::is_provider(&provider) {
                true => crate::domain::fargate::NO_CAPACITY.to_string(),
                false => format!(
                    "Capacity provider {provider} did not provide an instance for the task within {} seconds.",
                    timeout.as_secs()
                ),
            };
            stop_by_key(ctx, &key, STOP_CODE, &reason).await?;
        }
        for w in groups {
            placed += place_waiting(ctx, &w).await?;
        }
    }
    Ok(placed)
}

/// The cluster's waiting tasks grouped by what they need, and those past their time.
fn gather(ctx: &Ctx, cluster: &str, now: i64, timeout: Duration) -> (Vec<Waiting>, Vec<(String, String)>) {
    let ix = ctx.cache.read();
    let mut groups: BTreeMap<String, Waiting> = BTreeMap::new();
    let mut expired = Vec::new();
    for w in waiting_in(&ix, cluster) {
        let Some(e) = ix.tasks.get(w.key.as_str()) else { continue };
        let rec = e.value.record();
        let created = rec.task.created_at.map(|t| t.as_millis()).unwrap_or(now);
        if now - created > timeout.as_millis() as i64 {
            expired.push((w.key.clone(), w.provider.clone()));
            continue;
        }
        let def_arn = rec.task.task_definition_arn.clone().unwrap_or_default();
        let overrides = serde_json::to_string(&rec.task.overrides).unwrap_or_default();
        let group = rec.task.group.clone().unwrap_or_default();
        let awsvpc = rec.hidden.as_ref().and_then(|h| h.awsvpc.clone());
        let id = format!(
            "{}\u{0}{def_arn}\u{0}{group}\u{0}{overrides}\u{0}{:?}\u{0}{awsvpc:?}",
            w.provider, rec.reservation
        );
        if !groups.contains_key(&id) {
            let Some(def) = lookup::task_definition_in(ctx, &ix, &def_arn) else { continue };
            groups.insert(
                id.clone(),
                Waiting {
                    cluster: cluster.to_string(),
                    provider: w.provider.clone(),
                    def: def.value.definition.clone(),
                    tasks: Vec::new(),
                    strategies: strategies_of(&ix, cluster, &group),
                    fargate: crate::domain::fargate::is_provider(&w.provider),
                    awsvpc,
                },
            );
        }
        if let Some(g) = groups.get_mut(&id) {
            g.tasks.push((w.key.clone(), rec, e.revision));
        }
    }
    (groups.into_values().collect(), expired)
}

/// A service's tasks are placed by its strategies (ECS's spread by zone, then instance, if it
/// gave none); a RunTask's by none.
fn strategies_of(ix: &Indexes, cluster: &str, group: &str) -> Vec<PlacementStrategy> {
    let Some(name) = group.strip_prefix("service:") else { return Vec::new() };
    let given = ix.services.get(&keys::service(cluster, name)).and_then(|s| s.value.placement_strategy.clone());
    match given.filter(|s| !s.is_empty()) {
        Some(s) => s,
        None => vec![
            PlacementStrategy { r#type: Some("spread".into()), field: Some("attribute:ecs.availability-zone".into()) },
            PlacementStrategy { r#type: Some("spread".into()), field: Some("instanceId".into()) },
        ],
    }
}
