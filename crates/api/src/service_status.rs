//! Keeps each service's numbers and deployments true to its tasks: running and pending counts
//! per deployment and for the service, and a rollout's completion. When the PRIMARY deployment
//! runs its desired count, healthy where the tasks have health checks and for a little while,
//! and no older deployment has tasks left, the older deployments are
//! dropped and the rollout is COMPLETED, so `deployments` collapses to one entry and
//! `aws ecs wait services-stable` (and Terraform's wait) succeed.
//!
//! Level-triggered: [`settle`] is a pure function of the service and its tasks; the loop in the
//! server applies it to every service on each pass. Starting and stopping tasks is the service
//! controller's job; this module only reports.

use std::collections::HashSet;

use flotilla_model::{Service, ServiceEvent, Task, Timestamp};
use flotilla_store::{Compare, Op, Txn};

use crate::context::Ctx;
use crate::error::ApiResult;
use crate::state::cache::{range_prefix, Entry, Indexes};
use crate::state::codec::encode;
use crate::state::keys;

/// A task that ran at least this long before stopping counts as having started successfully, so
/// it ends a run of failures.
pub const STARTED_OK_MS: i64 = 10_000;

/// How many events a service keeps, newest first.
pub const MAX_EVENTS: usize = 100;

/// An identical event is not repeated within this window, so a service that cannot place a task
/// says so once a minute rather than on every pass.
const EVENT_REPEAT_MS: i64 = 60_000;

/// Adds an event, newest first, unless the same message was said within [`EVENT_REPEAT_MS`].
pub fn push_event(svc: &mut Service, message: &str, now: Timestamp) {
    let list = svc.events.get_or_insert_with(Vec::new);
    let recent =
        list.iter().take_while(|e| e.created_at.is_some_and(|t| now.as_millis() - t.as_millis() < EVENT_REPEAT_MS));
    if recent.into_iter().any(|e| e.message.as_deref() == Some(message)) {
        return;
    }
    push_event_always(svc, message, now);
}

/// Adds an event, newest first, even if the same message was just said: for events that tell of
/// separate happenings in the same words (each target registered, each task drained).
pub fn push_event_always(svc: &mut Service, message: &str, now: Timestamp) {
    let list = svc.events.get_or_insert_with(Vec::new);
    list.insert(
        0,
        ServiceEvent {
            id: Some(uuid::Uuid::new_v4().to_string()),
            created_at: Some(now),
            message: Some(message.into()),
        },
    );
    list.truncate(MAX_EVENTS);
}

fn is_pending(t: &Task) -> bool {
    matches!(t.last_status.as_deref(), Some("PROVISIONING" | "PENDING" | "ACTIVATING"))
}

fn is_running(t: &Task) -> bool {
    t.last_status.as_deref() == Some("RUNNING")
}

/// RUNNING and, if any container has a health check, HEALTHY: what a rollout waits for. With
/// `settle_ms`, also for that long: a container that exits at once is RUNNING for a moment, and
/// a rollout that completed in that moment would drop the older deployment the circuit breaker
/// rolls back to (or leave the breaker nothing in progress to fail).
fn is_healthy(t: &Task, now: Timestamp, settle_ms: i64) -> bool {
    let checked = t.containers.iter().flatten().any(|c| c.health_status.is_some());
    let ran_ms = t.started_at.map_or(0.0, |s| (now.0 - s.0) * 1000.0);
    is_running(t) && (!checked || t.health_status.as_deref() == Some("HEALTHY")) && ran_ms >= settle_ms as f64
}

/// How long a PRIMARY deployment's tasks must have run before its rollout completes: nothing
/// for a service's only deployment without a circuit breaker (nothing depends on the moment, and
/// `aws ecs wait services-stable` then sees it COMPLETED), [`STARTED_OK_MS`] when an older
/// deployment is waiting to be dropped or the circuit breaker watches the rollout.
fn settle_ms(svc: &Service) -> i64 {
    let breaker = svc
        .deployment_configuration
        .as_ref()
        .and_then(|c| c.deployment_circuit_breaker.as_ref())
        .is_some_and(|b| b.enable == Some(true));
    if breaker || svc.deployments.as_ref().is_some_and(|d| d.len() > 1) {
        STARTED_OK_MS
    } else {
        0
    }
}

/// The service as its tasks say it is, or `None` if nothing changed.
pub fn settle(svc: &Service, tasks: &[&Task], now: Timestamp, event_id: impl FnOnce() -> String) -> Option<Service> {
    settle_with(svc, tasks, &HashSet::new(), now, event_id)
}

/// [`settle`], where the tasks in `targets_unhealthy` (by ARN) do not count as healthy yet: their
/// load balancer targets have not all passed their health checks, which a rollout waits for as
/// ECS's does.
pub fn settle_with(
    svc: &Service,
    tasks: &[&Task],
    targets_unhealthy: &HashSet<String>,
    now: Timestamp,
    event_id: impl FnOnce() -> String,
) -> Option<Service> {
    let mut out = svc.clone();
    let live = |t: &&&Task| t.desired_status.as_deref() != Some("STOPPED");
    let mut total_running = 0;
    let mut total_pending = 0;
    let mut primary_healthy = 0;
    let settle_ms = settle_ms(svc);
    for d in out.deployments.iter_mut().flatten() {
        let mine = tasks.iter().filter(|t| t.started_by.is_some() && t.started_by == d.id);
        if d.status.as_deref() == Some("PRIMARY") {
            primary_healthy = mine
                .clone()
                .filter(live)
                .filter(|t| is_healthy(t, now, settle_ms))
                .filter(|t| t.task_arn.as_ref().is_none_or(|a| !targets_unhealthy.contains(a)))
                .count() as i32;
        }
        let running = mine.clone().filter(live).filter(|t| is_running(t)).count() as i32;
        let pending = mine.filter(live).filter(|t| is_pending(t)).count() as i32;
        if d.running_count != Some(running) || d.pending_count != Some(pending) {
            d.running_count = Some(running);
            d.pending_count = Some(pending);
            d.updated_at = Some(now);
        }
        total_running += running;
        total_pending += pending;
    }
    out.running_count = Some(total_running);
    out.pending_count = Some(total_pending);

    if out.status.as_deref() == Some("ACTIVE") {
        let deployments = out.deployments.get_or_insert_with(Vec::new);
        let primary_done = deployments.iter().any(|d| {
            d.status.as_deref() == Some("PRIMARY")
                && d.running_count == d.desired_count
                && d.pending_count == Some(0)
                && d.desired_count == Some(primary_healthy)
        });
        let others_empty = deployments
            .iter()
            .filter(|d| d.status.as_deref() != Some("PRIMARY"))
            .all(|d| d.running_count.unwrap_or(0) + d.pending_count.unwrap_or(0) == 0);
        if primary_done && others_empty {
            deployments.retain(|d| d.status.as_deref() == Some("PRIMARY"));
            let primary = deployments.first_mut().expect("primary is present");
            let completed = primary.rollout_state.as_deref() != Some("COMPLETED");
            if completed {
                primary.rollout_state = Some("COMPLETED".into());
                primary.rollout_state_reason =
                    Some(format!("ECS deployment {} completed.", primary.id.as_deref().unwrap_or("")));
                primary.updated_at = Some(now);
            }
            // Said when a rollout completes, and again whenever the service recovers (after a
            // task was replaced, or a scale change, whose events came after the last one), as
            // ECS does.
            let message =
                format!("(service {}) has reached a steady state.", out.service_name.as_deref().unwrap_or(""));
            let events = out.events.get_or_insert_with(Vec::new);
            let said = events.first().and_then(|e| e.message.as_deref()) == Some(message.as_str());
            if completed || !said {
                events.insert(0, ServiceEvent { id: Some(event_id()), created_at: Some(now), message: Some(message) });
                events.truncate(MAX_EVENTS);
            }
        }
    }
    (out != *svc).then_some(out)
}

/// The service as the tasks in the cache say it is, or `None` if nothing changed (or it is
/// INACTIVE, with nothing left to settle). The controller settles a service it writes in the
/// same write, so a record never carries a new event beside counts from before the change that
/// caused it.
pub fn settle_from_cache(ix: &Indexes, key: &str, svc: &Service, now: Timestamp) -> Option<Service> {
    if svc.status.as_deref() == Some("INACTIVE") {
        return None;
    }
    let cluster = key[keys::SERVICE.len()..].split('/').next().unwrap_or("");
    let group = format!("service:{}", svc.service_name.as_deref().unwrap_or(""));
    let balanced = svc.load_balancers.as_ref().is_some_and(|l| !l.is_empty());
    let mut targets_unhealthy = HashSet::new();
    let tasks: Vec<Task> = ix
        .task_index
        .in_group(cluster, &group)
        .filter_map(|t| ix.tasks.get(t))
        .map(|e| {
            let task = e.value.task();
            let judged = e.value.hidden.as_ref().and_then(|h| h.target_health.as_ref());
            if balanced && judged != Some(&crate::state::records::TargetsHealth::Healthy) {
                targets_unhealthy.insert(task.task_arn.clone().unwrap_or_default());
            }
            task
        })
        .collect();
    let tasks: Vec<&Task> = tasks.iter().collect();
    settle_with(svc, &tasks, &targets_unhealthy, now, || uuid::Uuid::new_v4().to_string())
}

/// One pass over every service.
pub async fn settle_all(ctx: &Ctx) -> ApiResult<usize> {
    let now = ctx.now();
    let changes: Vec<(String, Entry<Service>, Service)> = {
        let ix = ctx.cache.read();
        range_prefix(&ix.services, keys::SERVICE)
            .filter_map(|(k, e)| settle_from_cache(&ix, k, &e.value, now).map(|s| (k.clone(), e.clone(), s)))
            .collect()
    };
    let mut done = 0;
    // One service's write failing does not keep the others' from being settled; the caller
    // hears of the first failure.
    let mut failed = None;
    for (key, entry, svc) in changes {
        let txn = Txn::new().when(Compare::unchanged(&key, entry.revision)).then(Op::put(&key, encode(&svc)));
        match ctx.commit(txn).await {
            Ok(Some(_)) => done += 1,
            Ok(None) => {}
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    failed.map_or(Ok(done), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::Deployment;

    fn deployment(id: &str, status: &str, desired: i32) -> Deployment {
        Deployment {
            id: Some(id.into()),
            status: Some(status.into()),
            desired_count: Some(desired),
            running_count: Some(0),
            pending_count: Some(0),
            rollout_state: Some("IN_PROGRESS".into()),
            ..Default::default()
        }
    }

    fn service(deployments: Vec<Deployment>) -> Service {
        Service {
            service_name: Some("web".into()),
            status: Some("ACTIVE".into()),
            deployments: Some(deployments),
            ..Default::default()
        }
    }

    fn task(deployment: &str, last: &str) -> Task {
        Task {
            started_by: Some(deployment.into()),
            last_status: Some(last.into()),
            desired_status: Some("RUNNING".into()),
            started_at: Some(Timestamp(NOW.0 - 60.0)),
            ..Default::default()
        }
    }

    const NOW: Timestamp = Timestamp(1000.0);

    #[test]
    fn an_empty_rollout_completes_and_collapses() {
        let svc = service(vec![deployment("new", "PRIMARY", 0), deployment("old", "ACTIVE", 0)]);
        let out = settle(&svc, &[], NOW, || "e1".into()).expect("changed");
        let d = out.deployments.as_ref().unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].id.as_deref(), Some("new"));
        assert_eq!(d[0].rollout_state.as_deref(), Some("COMPLETED"));
        assert_eq!(
            out.events.as_ref().unwrap()[0].message.as_deref(),
            Some("(service web) has reached a steady state.")
        );
        // Settling again changes nothing: the step is idempotent.
        assert_eq!(settle(&out, &[], NOW, || "e2".into()), None);
    }

    #[test]
    fn old_tasks_keep_the_old_deployment() {
        let svc = service(vec![deployment("new", "PRIMARY", 1), deployment("old", "ACTIVE", 1)]);
        let (a, b) = (task("new", "RUNNING"), task("old", "RUNNING"));
        let out = settle(&svc, &[&a, &b], NOW, || "e".into()).expect("counts changed");
        assert_eq!(out.deployments.as_ref().unwrap().len(), 2);
        assert_eq!(out.running_count, Some(2));
        assert_eq!(out.deployments.as_ref().unwrap()[0].rollout_state.as_deref(), Some("IN_PROGRESS"));
    }

    #[test]
    fn pending_tasks_are_counted_and_block_completion() {
        let svc = service(vec![deployment("d", "PRIMARY", 2)]);
        let (a, b) = (task("d", "RUNNING"), task("d", "PENDING"));
        let out = settle(&svc, &[&a, &b], NOW, || "e".into()).expect("counts changed");
        assert_eq!((out.running_count, out.pending_count), (Some(1), Some(1)));
        assert_eq!(out.deployments.as_ref().unwrap()[0].rollout_state.as_deref(), Some("IN_PROGRESS"));
        let c = task("d", "RUNNING");
        let done = settle(&out, &[&a, &c], NOW, || "e".into()).expect("completed");
        assert_eq!(done.deployments.as_ref().unwrap()[0].rollout_state.as_deref(), Some("COMPLETED"));
    }

    #[test]
    fn a_rollout_completes_only_once_its_tasks_have_run_a_while() {
        let svc = service(vec![deployment("new", "PRIMARY", 1), deployment("old", "ACTIVE", 0)]);
        let mut t = task("new", "RUNNING");
        t.started_at = Some(Timestamp(NOW.0 - 1.0));
        let out = settle(&svc, &[&t], NOW, || "e".into()).expect("counts changed");
        assert_eq!(out.deployments.as_ref().unwrap().len(), 2, "the older deployment is kept");
        assert_eq!(out.deployments.as_ref().unwrap()[0].rollout_state.as_deref(), Some("IN_PROGRESS"));
        let later = Timestamp(NOW.0 - 1.0 + STARTED_OK_MS as f64 / 1000.0);
        let done = settle(&out, &[&t], later, || "e".into()).expect("completed");
        assert_eq!(done.deployments.as_ref().unwrap().len(), 1);
        assert_eq!(done.deployments.as_ref().unwrap()[0].rollout_state.as_deref(), Some("COMPLETED"));
    }

    #[test]
    fn a_first_deployment_without_a_breaker_completes_as_soon_as_its_tasks_run() {
        let svc = service(vec![deployment("d", "PRIMARY", 1)]);
        let mut t = task("d", "RUNNING");
        t.started_at = Some(NOW);
        let out = settle(&svc, &[&t], NOW, || "e".into()).expect("completed");
        assert_eq!(out.deployments.as_ref().unwrap()[0].rollout_state.as_deref(), Some("COMPLETED"));
    }

    #[test]
    fn a_rollout_with_health_checks_completes_only_when_healthy() {
        use flotilla_model::Container;
        let svc = service(vec![deployment("d", "PRIMARY", 1)]);
        let mut t = task("d", "RUNNING");
        t.containers = Some(vec![Container { health_status: Some("UNKNOWN".into()), ..Default::default() }]);
        t.health_status = Some("UNKNOWN".into());
        let out = settle(&svc, &[&t], NOW, || "e".into()).expect("counts changed");
        assert_eq!(out.running_count, Some(1));
        assert_eq!(out.deployments.as_ref().unwrap()[0].rollout_state.as_deref(), Some("IN_PROGRESS"));
        t.health_status = Some("HEALTHY".into());
        let done = settle(&out, &[&t], NOW, || "e".into()).expect("completed");
        assert_eq!(done.deployments.as_ref().unwrap()[0].rollout_state.as_deref(), Some("COMPLETED"));
    }

    #[test]
    fn a_service_that_recovers_says_it_is_steady_again() {
        let mut svc = service(vec![deployment("d", "PRIMARY", 1)]);
        svc.desired_count = Some(1);
        // With the circuit breaker on, a task counts once it has run a while.
        svc.deployment_configuration = Some(flotilla_model::DeploymentConfiguration {
            deployment_circuit_breaker: Some(flotilla_model::DeploymentCircuitBreaker {
                enable: Some(true),
                rollback: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        });
        let a = task("d", "RUNNING");
        let steady = settle(&svc, &[&a], NOW, || "e1".into()).expect("completed");
        assert_eq!(steady.events.as_ref().unwrap().len(), 1);
        // The task dies: one pass sees nothing running, the next its replacement.
        let mut dead = task("d", "STOPPED");
        dead.desired_status = Some("STOPPED".into());
        let down = settle(&steady, &[&dead], NOW, || "e2".into()).expect("counts changed");
        assert_eq!(down.running_count, Some(0));
        assert_eq!(down.events.as_ref().unwrap().len(), 1, "no event while short");
        // The controller starts a replacement and says so; it is steady once it has run a while.
        let mut down = down;
        let started =
            ServiceEvent { message: Some("(service web) has started 1 tasks: (task b).".into()), ..Default::default() };
        down.events.as_mut().unwrap().insert(0, started);
        let mut b = task("d", "RUNNING");
        b.started_at = Some(NOW);
        let young = settle(&down, &[&dead, &b], NOW, || "e3".into()).expect("counts changed");
        assert_eq!(young.events.as_ref().unwrap().len(), 2, "not steady before the replacement ran a while");
        let later = Timestamp(NOW.0 + STARTED_OK_MS as f64 / 1000.0);
        let up = settle(&young, &[&dead, &b], later, || "e3".into()).expect("recovered");
        let events = up.events.as_ref().unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].message.as_deref(), Some("(service web) has reached a steady state."));
        assert_eq!(settle(&up, &[&dead, &b], later, || "e4".into()), None, "said once");
    }
}
