//! The service controller (design.md section 5): keeps every service's tasks as its spec says.
//!
//! Level-triggered and idempotent: whenever the cache applies a change (and at least once a
//! second, for time-based decisions such as back-off and lost agents), each ACTIVE or DRAINING
//! service is re-read with its tasks and its cluster's instances ([`gather`]), the pure
//! [`reconcile::reconcile`] step decides what to launch and stop, and [`execute`] carries it out
//! through the same placement path as RunTask. Then `service_status` settles counts and
//! deployments. Nothing is remembered between passes except when each agent was first seen
//! disconnected, which only delays replacing its tasks.
//!
//! One service failing (its step errors) is logged, counted in `/metrics`
//! (`loop_errors_total{loop="controller"}`) and retried on the next pass; the pass goes on with
//! the other services. A panic ends the run, and the supervisor starts a new one.

pub mod actions;
pub mod daemon;
pub mod deployment;
pub mod execute;
pub mod gather;
pub mod reconcile;
pub mod retire;
pub mod view;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::Duration;

use flotilla_model::Service;

use crate::context::Ctx;
use crate::error::ApiResult;
use crate::state::cache::{range_prefix, Entry};
use crate::state::keys;
pub use reconcile::Settings;

/// The longest the controller sleeps when nothing changes.
const IDLE_PASS: Duration = Duration::from_secs(1);

/// The controller's name among the supervised loops.
pub const LOOP: &str = "controller";

/// Runs the controller until the task is aborted.
pub async fn run(ctx: Ctx, settings: Settings) -> Result<(), crate::supervisor::LoopError> {
    let mut changes = ctx.cache.changes();
    let mut disconnected_since: HashMap<String, i64> = HashMap::new();
    loop {
        if let Err(e) = pass(&ctx, &settings, &mut disconnected_since).await {
            ctx.loops.count_error(LOOP);
            tracing::warn!(error = %e, "service controller pass failed");
        }
        if let Err(e) = crate::service_status::settle_all(&ctx).await {
            ctx.loops.count_error(LOOP);
            tracing::warn!(error = %e, "could not settle service status");
        }
        if let Err(e) = retire::finish_draining(&ctx).await {
            ctx.loops.count_error(LOOP);
            tracing::warn!(error = %e, "could not retire drained services");
        }
        changes.borrow_and_update();
        // Coalesce bursts of changes: a short pause lets related writes land before the next pass.
        let _ = tokio::time::timeout(IDLE_PASS, changes.changed()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many instances a DAEMON service would run on now, so a new service states its desired
/// count from the start (and `services-stable` does not pass on an empty service).
pub fn daemon_desired(ctx: &Ctx, cluster: &str, svc: &Service) -> i32 {
    let now_ms = ctx.clock.now_ms();
    let mut instances = gather::instances(ctx, cluster, now_ms, &mut HashMap::new());
    gather::mark_daemon_eligible(ctx, cluster, svc, &mut instances);
    let settings = Settings::default();
    instances.iter().filter(|i| reconcile::daemon_target(i, now_ms, &settings)).count() as i32
}

/// One pass over every service that is ACTIVE or DRAINING.
pub async fn pass(
    ctx: &Ctx,
    settings: &Settings,
    disconnected_since: &mut HashMap<String, i64>,
) -> ApiResult<Vec<execute::Outcome>> {
    let services: Vec<(String, String, Entry<Service>)> = {
        let ix = ctx.cache.read();
        range_prefix(&ix.services, keys::SERVICE)
            .filter(|(_, e)| matches!(e.value.status.as_deref(), Some("ACTIVE" | "DRAINING")))
            .map(|(k, e)| {
                let cluster = k[keys::SERVICE.len()..].split('/').next().unwrap_or("").to_string();
                (k.clone(), cluster, e.clone())
            })
            .collect()
    };
    let now_ms = ctx.clock.now_ms();
    let mut instances_of: HashMap<String, Vec<view::InstanceView>> = HashMap::new();
    let mut outcomes = Vec::new();
    for (key, cluster, entry) in services {
        if crate::faults::hit(crate::faults::Site::ControllerPass, &key) {
            panic!("injected fault: the service controller panics at {key}");
        }
        let svc = &entry.value;
        let mut instances = instances_of
            .entry(cluster.clone())
            .or_insert_with(|| gather::instances(ctx, &cluster, now_ms, disconnected_since))
            .clone();
        if svc.scheduling_strategy.as_deref() == Some("DAEMON") {
            gather::mark_daemon_eligible(ctx, &cluster, svc, &mut instances);
        } else if crate::domain::fargate::is_fargate_service(svc) {
            // Its tasks run on pool hosts: a lost or gone pool host stops them like any host's.
            let pool = crate::domain::fargate::FARGATE_POOL;
            let hosts = instances_of
                .entry(pool.to_string())
                .or_insert_with(|| gather::instances(ctx, pool, now_ms, disconnected_since));
            instances.extend(hosts.iter().cloned().map(|mut h| {
                h.daemon_eligible = false;
                h
            }));
        }
        let tasks = gather::service_tasks(ctx, &cluster, svc);
        let actions = reconcile::reconcile(svc, &tasks, &instances, now_ms, settings);
        if actions.launch.is_empty()
            && actions.stop.is_empty()
            && actions.service.is_none()
            && actions.events.is_empty()
        {
            continue;
        }
        let done = if crate::faults::hit(crate::faults::Site::ServiceLaunch, &key) {
            Err(crate::error::ApiError::server(format!("injected fault: the step of {key} fails")))
        } else {
            execute::execute(ctx, &cluster, &key, &entry, actions).await
        };
        match done {
            Ok(outcome) => outcomes.push(outcome),
            // One service's failure must not hold up the others: it is tried again next pass.
            Err(e) => {
                ctx.loops.count_error(LOOP);
                tracing::warn!(service = %key, error = %e, "service controller step failed; carrying on with the other services");
            }
        }
    }
    Ok(outcomes)
}
