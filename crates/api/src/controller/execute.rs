//! Carrying out one service's actions: stopping tasks, launching through the scheduler (or on a
//! named instance for DAEMON services) along the same placement path as RunTask, and writing the
//! service record with its new events. Every write is a compare-and-swap; a lost race is simply
//! left to the next pass, which sees the new state and decides again.

use flotilla_model::arn::short_id;
use flotilla_model::{PlacementStrategy, Service, TaskDefinition};
use flotilla_store::{Compare, Op, Txn};

use super::reconcile::{Actions, Launch, Stop};
use crate::context::Ctx;
use crate::domain::capacity::{self, Capacity};
use crate::domain::launch::tags::{managed_tags, task_tags};
use crate::domain::launch::{self as launching, Placement, Shared, Spec};
use crate::domain::lookup;
use crate::domain::stop::stop_by_key;
use crate::error::ApiResult;
use crate::service_status::push_event;
use crate::state::cache::Entry;
use crate::state::codec::encode;
use crate::state::keys;

/// What one pass did for a service, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub started: usize,
    pub stopped: usize,
    pub unplaced: usize,
}

pub async fn execute(
    ctx: &Ctx,
    cluster: &str,
    key: &str,
    entry: &Entry<Service>,
    actions: Actions,
) -> ApiResult<Outcome> {
    let svc = actions.service.clone().unwrap_or_else(|| (*entry.value).clone());
    let name = svc.service_name.clone().unwrap_or_default();
    let mut events = actions.events.clone();
    let mut outcome = Outcome::default();

    let mut stopped = Vec::new();
    for s in &actions.stop {
        if stop_task(ctx, cluster, s).await? {
            stopped.push(short_id(&s.task).to_string());
        }
    }
    if !stopped.is_empty() {
        outcome.stopped = stopped.len();
        events.push(format!("(service {name}) has stopped {} running tasks: {}.", stopped.len(), list(&stopped)));
    }

    let mut started = Vec::new();
    for l in &actions.launch {
        let (ids, problem) = launch(ctx, cluster, &svc, l).await?;
        started.extend(ids);
        if let Some(p) = problem {
            outcome.unplaced += 1;
            events.push(format!(
                "(service {name}) was unable to place a task because no container instance met all of its \
                 requirements. {p} For more information, see the Troubleshooting section of the Amazon ECS \
                 Developer Guide."
            ));
        }
    }
    if !started.is_empty() {
        outcome.started = started.len();
        events.push(format!("(service {name}) has started {} tasks: {}.", started.len(), list(&started)));
    }

    if actions.service.is_some() || !events.is_empty() {
        write_service(ctx, key, entry, svc, &events).await?;
    }
    Ok(outcome)
}

fn list(ids: &[String]) -> String {
    ids.iter().map(|id| format!("(task {id})")).collect::<Vec<_>>().join(" ")
}

async fn stop_task(ctx: &Ctx, cluster: &str, s: &Stop) -> ApiResult<bool> {
    let key = keys::task(cluster, short_id(&s.task));
    let stopped = stop_by_key(ctx, &key, "ServiceSchedulerInitiated", &s.reason).await?;
    Ok(stopped.is_some_and(|(_, changed)| changed))
}

/// ECS's default for REPLICA services without a strategy: spread across zones, then instances.
fn default_strategy() -> Vec<PlacementStrategy> {
    vec![
        PlacementStrategy { r#type: Some("spread".into()), field: Some("attribute:ecs.availability-zone".into()) },
        PlacementStrategy { r#type: Some("spread".into()), field: Some("instanceId".into()) },
    ]
}

fn shared(ctx: &Ctx, svc: &Service, def: &TaskDefinition, deployment: &str) -> Shared {
    let mut tags = match svc.propagate_tags.as_deref() {
        Some("SERVICE") => svc.tags.clone().unwrap_or_default(),
        Some("TASK_DEFINITION") => task_tags(ctx, def, Vec::new(), Some("TASK_DEFINITION")),
        _ => Vec::new(),
    };
    if svc.enable_ecs_managed_tags == Some(true) {
        let cluster = svc.cluster_arn.as_deref().map(short_id).unwrap_or_default();
        tags.extend(managed_tags(cluster, svc.service_name.as_deref()));
    }
    Shared {
        overrides: None,
        group: Some(format!("service:{}", svc.service_name.as_deref().unwrap_or(""))),
        started_by: Some(deployment.to_string()),
        tags,
        enable_execute_command: svc.enable_execute_command.unwrap_or(false),
        awsvpc: svc.network_configuration.as_ref().and_then(|n| n.awsvpc_configuration.clone()),
        platform_version: crate::domain::fargate::platform_version(svc.platform_version.as_deref()).ok(),
    }
}

/// Launches `l`'s tasks through the one launch path; returns the new task ids and, if some could
/// not be placed, why.
async fn launch(ctx: &Ctx, cluster: &str, svc: &Service, l: &Launch) -> ApiResult<(Vec<String>, Option<String>)> {
    let Some(def) = lookup::task_definition(ctx, &l.task_definition) else {
        return Ok((Vec::new(), Some(format!("Reason: the task definition {} was not found.", l.task_definition))));
    };
    let def = def.value.definition.clone();
    let shared = shared(ctx, svc, &def, &l.deployment);
    let id_of = |t: &flotilla_model::Task| short_id(t.task_arn.as_deref().unwrap_or_default()).to_string();
    if let Some(instance) = &l.instance {
        let placement = Placement::Instances(vec![instance.clone()]);
        let spec = Spec { cluster: cluster.to_string(), def, shared, placement, capacity: Capacity::LaunchType };
        let launched = launching::launch(ctx, &spec, None).await?;
        // An instance that is gone has nothing to say: the next pass no longer targets it.
        let problem = launched.failures.iter().find(|f| f.reason.as_deref() != Some("MISSING")).map(|f| {
            let reason = f.reason.as_deref().unwrap_or_default();
            format!("The closest matching container-instance {} failed: {reason}.", short_id(instance))
        });
        return Ok((launched.tasks.iter().map(id_of).collect(), problem));
    }
    let capacity = match svc.capacity_provider_strategy.as_deref().filter(|s| !s.is_empty()) {
        None if svc.launch_type.as_deref() == Some(crate::domain::fargate::FARGATE) => Capacity::Fargate,
        None => Capacity::LaunchType,
        Some(strategy) => {
            let ix = ctx.cache.read();
            let Some(c) = ix.clusters.get(&keys::cluster(cluster)) else { return Ok((Vec::new(), None)) };
            match capacity::resolve(&ix, &c.value, None, Some(strategy)) {
                Ok(capacity) => capacity,
                Err(e) => return Ok((Vec::new(), Some(format!("Reason: {}", e.message)))),
            }
        }
    };
    let strategies = match svc.placement_strategy.as_deref() {
        Some(s) if !s.is_empty() => s.to_vec(),
        _ => default_strategy(),
    };
    let constraints = svc.placement_constraints.clone().unwrap_or_default();
    let mut ids = Vec::new();
    let mut left = l.count;
    let mut problem = None;
    while left > 0 {
        let count = left.min(flotilla_scheduler::MAX_COUNT);
        let placement = Placement::Count { count, strategies: strategies.clone(), constraints: constraints.clone() };
        let spec = Spec {
            cluster: cluster.to_string(),
            def: def.clone(),
            shared: shared.clone(),
            placement,
            capacity: capacity.clone(),
        };
        let launched = launching::launch(ctx, &spec, None).await?;
        ids.extend(launched.tasks.iter().map(id_of));
        if let Some(f) = launched.failures.first() {
            problem = Some(describe_failure(f));
            break;
        }
        left -= count;
    }
    Ok((ids, problem))
}

fn describe_failure(f: &flotilla_model::Failure) -> String {
    let what = match f.reason.as_deref() {
        Some("MISSING") => return "Reason: No Container Instances were found in your cluster.".to_string(),
        Some("RESOURCE:MEMORY") => "has insufficient memory available",
        Some("RESOURCE:CPU") => "has insufficient CPU units available",
        Some("RESOURCE:PORTS") => "is already using a port required by your task",
        Some("AGENT") => "has an agent that is not connected",
        Some("ATTRIBUTE") => "is missing an attribute required by your task",
        Some(other) => return format!("Reason: {other}. {}", f.detail.as_deref().unwrap_or("")).trim().to_string(),
        None => "did not fit",
    };
    match &f.arn {
        Some(arn) => format!("The closest matching container-instance {} {what}.", short_id(arn)),
        None => "Reason: No Container Instances were found in your cluster.".to_string(),
    }
}

async fn write_service(
    ctx: &Ctx,
    key: &str,
    entry: &Entry<Service>,
    mut svc: Service,
    events: &[String],
) -> ApiResult<()> {
    let now = ctx.now();
    for message in events {
        push_event(&mut svc, message, now);
    }
    if let Some(settled) = crate::service_status::settle_from_cache(&ctx.cache.read(), key, &svc, now) {
        svc = settled;
    }
    if svc == *entry.value {
        return Ok(());
    }
    let txn = Txn::new().when(Compare::unchanged(key, entry.revision)).then(Op::put(key, encode(&svc)));
    // A conflict means someone else changed the service; the next pass starts from theirs.
    ctx.commit(txn).await?;
    Ok(())
}
