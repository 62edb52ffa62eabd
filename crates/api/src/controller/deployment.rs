//! Deployments as the reconcile step sees them: the rollout bounds (minimumHealthyPercent and
//! maximumPercent as task counts), failed-task counts, the deployment circuit breaker with its
//! rollback, and the back-off for tasks that keep failing to start. Pure functions over the
//! service record and its tasks.

use flotilla_model::{Deployment, Service};

use super::view::{Health, TaskView};

pub use crate::service_status::STARTED_OK_MS;
/// The first retry after repeated failures waits this long; each further failure doubles it.
pub const BACKOFF_BASE_MS: i64 = 5_000;
pub const BACKOFF_MAX_MS: i64 = 300_000;

/// minimumHealthyPercent and maximumPercent of the desired count, as numbers of tasks. ECS
/// rounds the minimum up and the maximum down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub desired: i32,
    pub min_healthy: i32,
    pub max_total: i32,
}

impl Limits {
    pub fn of(svc: &Service) -> Limits {
        let desired = if svc.status.as_deref() == Some("ACTIVE") { svc.desired_count.unwrap_or(0).max(0) } else { 0 };
        let daemon = svc.scheduling_strategy.as_deref() == Some("DAEMON");
        let config = svc.deployment_configuration.as_ref();
        let min_pct = config.and_then(|c| c.minimum_healthy_percent).unwrap_or(if daemon { 0 } else { 100 }).max(0);
        let max_pct = config.and_then(|c| c.maximum_percent).unwrap_or(if daemon { 100 } else { 200 }).max(0);
        let min_healthy = ((i64::from(desired) * i64::from(min_pct) + 99) / 100).min(i64::from(desired)) as i32;
        let max_total = (i64::from(desired) * i64::from(max_pct) / 100) as i32;
        // A maximum below the desired count could never run the service at all.
        Limits { desired, min_healthy, max_total: max_total.max(desired) }
    }
}

pub fn primary(svc: &Service) -> Option<&Deployment> {
    svc.deployments.iter().flatten().find(|d| d.status.as_deref() == Some("PRIMARY"))
}

fn primary_mut(svc: &mut Service) -> Option<&mut Deployment> {
    svc.deployments.iter_mut().flatten().find(|d| d.status.as_deref() == Some("PRIMARY"))
}

/// A DAEMON service's desired count is the number of instances that should run it.
pub fn set_desired(svc: &mut Service, count: i32) {
    if svc.status.as_deref() != Some("ACTIVE") {
        return;
    }
    svc.desired_count = Some(count);
    if let Some(p) = primary_mut(svc) {
        p.desired_count = Some(count);
    }
}

/// How long a task has run: until it stopped, or until now.
fn ran_ms(t: &TaskView, now_ms: i64) -> i64 {
    match (t.started_at_ms, t.stopped_at_ms) {
        (Some(s), Some(e)) => e - s,
        (Some(s), None) => now_ms - s,
        _ => 0,
    }
}

/// Each deployment's `failedTasks`, as ECS's deployment circuit breaker counts them in its two
/// stages: tasks that failed to launch (stopped on their own before they had run for
/// [`STARTED_OK_MS`]), and tasks that ran and were then stopped for failing their health check. A
/// task that ran fine and was later killed (its container died, someone stopped it) is replaced
/// like any other and is not a failure. With `resetOnHealthyTask` (the default), the count starts
/// again from zero each time one of the deployment's tasks proves healthy (it has run for
/// [`STARTED_OK_MS`] without failing its health check).
pub fn count_failures(svc: &mut Service, tasks: &[TaskView], now_ms: i64) {
    let breaker = svc.deployment_configuration.as_ref().and_then(|c| c.deployment_circuit_breaker.as_ref());
    let reset_on_healthy = breaker.and_then(|b| b.reset_on_healthy_task).unwrap_or(true);
    for d in svc.deployments.iter_mut().flatten() {
        let mine = || tasks.iter().filter(|t| t.deployment.is_some() && t.deployment == d.id);
        let healthy_since = mine()
            .filter(|t| ran_ms(t, now_ms) >= STARTED_OK_MS && t.health != Health::Unhealthy)
            .filter_map(|t| t.started_at_ms.map(|s| s + STARTED_OK_MS))
            .max()
            .filter(|_| reset_on_healthy);
        let failed_launch = |t: &&TaskView| t.is_failure() && ran_ms(t, now_ms) < STARTED_OK_MS;
        let failed_health = |t: &&TaskView| t.is_failure() && t.health == Health::Unhealthy;
        let counted = mine()
            .filter(|t| failed_launch(t) || failed_health(t))
            .filter(|t| healthy_since.is_none_or(|h| t.stopped_at_ms.unwrap_or(now_ms) > h))
            .count() as i32;
        // Never below what was counted before unless a task proved healthy: the reaper forgets
        // tasks stopped longer than the retention, and the count must not fall with them.
        let failed = match healthy_since {
            Some(_) => counted,
            None => counted.max(d.failed_tasks.unwrap_or(0)),
        };
        if d.failed_tasks != Some(failed) {
            d.failed_tasks = Some(failed);
        }
    }
}

/// ECS's default circuit breaker threshold: half the desired count, at least 3 and at most 200.
/// A `thresholdConfiguration` (COUNT, or BOUNDED_PERCENT / UNBOUNDED_PERCENT of the desired
/// count) replaces it.
pub fn failure_threshold(desired: i32) -> i32 {
    ((desired + 1) / 2).clamp(3, 200)
}

fn percent_of(desired: i32, percent: i32) -> i32 {
    ((i64::from(desired) * i64::from(percent) + 99) / 100) as i32
}

/// Fails an in-progress PRIMARY deployment whose tasks keep failing when the circuit breaker is
/// on; with rollback, the last deployment that completed becomes PRIMARY again (its tasks are
/// kept) and the failed one is retired like any older deployment.
pub fn trip_circuit_breaker(svc: &mut Service, events: &mut Vec<String>) {
    let breaker = svc.deployment_configuration.as_ref().and_then(|c| c.deployment_circuit_breaker.clone());
    let breaker = breaker.as_ref();
    let (enabled, rollback) = match breaker {
        Some(b) => (b.enable.unwrap_or(false), b.rollback.unwrap_or(false)),
        None => (false, false),
    };
    if !enabled || svc.status.as_deref() != Some("ACTIVE") {
        return;
    }
    let name = svc.service_name.clone().unwrap_or_default();
    let Some(p) = primary(svc) else { return };
    if p.rollout_state.as_deref() != Some("IN_PROGRESS") {
        return;
    }
    let desired = p.desired_count.unwrap_or(0);
    let threshold = match breaker.and_then(|b| b.threshold_configuration.as_ref()) {
        Some(t) if t.r#type.as_deref() == Some("COUNT") => t.value.unwrap_or(3).max(1),
        Some(t) if t.r#type.as_deref() == Some("BOUNDED_PERCENT") => {
            percent_of(desired, t.value.unwrap_or(50)).clamp(3, 200)
        }
        Some(t) if t.r#type.as_deref() == Some("UNBOUNDED_PERCENT") => {
            percent_of(desired, t.value.unwrap_or(50)).max(1)
        }
        _ => failure_threshold(desired),
    };
    if p.failed_tasks.unwrap_or(0) < threshold {
        return;
    }
    let failed_id = p.id.clone().unwrap_or_default();
    let previous = svc
        .deployments
        .iter()
        .flatten()
        .filter(|d| d.status.as_deref() == Some("ACTIVE") && d.rollout_state.as_deref() == Some("COMPLETED"))
        .max_by(|a, b| a.created_at.partial_cmp(&b.created_at).unwrap_or(std::cmp::Ordering::Equal))
        .and_then(|d| d.id.clone());
    let updated_at = p.updated_at;
    let desired = svc.desired_count;
    if let Some(p) = primary_mut(svc) {
        p.rollout_state = Some("FAILED".into());
        p.rollout_state_reason = Some("ECS deployment circuit breaker: tasks failed to start.".into());
    }
    events.push(format!("(service {name}) (deployment {failed_id}) deployment failed: tasks failed to start."));
    let Some(previous) = previous.filter(|_| rollback) else {
        let why = if rollback { "there is no completed deployment to roll back to" } else { "rollback is off" };
        events.push(format!(
            "(service {name}) (deployment {failed_id}) is not rolled back: {why}; the service launches no new tasks \
             until it is updated."
        ));
        return;
    };
    let mut task_definition = None;
    for d in svc.deployments.iter_mut().flatten() {
        if d.id.as_deref() == Some(failed_id.as_str()) {
            d.status = Some("ACTIVE".into());
            d.desired_count = Some(0);
        } else if d.id.as_deref() == Some(previous.as_str()) {
            d.status = Some("PRIMARY".into());
            d.desired_count = desired;
            d.rollout_state = Some("IN_PROGRESS".into());
            d.rollout_state_reason =
                Some(format!("ECS deployment circuit breaker: rolling back to deploymentId {previous}."));
            d.updated_at = updated_at;
            task_definition = d.task_definition.clone();
        }
    }
    // The PRIMARY entry leads the list, as ECS shows it.
    if let Some(list) = svc.deployments.as_mut() {
        list.sort_by_key(|d| d.status.as_deref() != Some("PRIMARY"));
    }
    if task_definition.is_some() {
        svc.task_definition = task_definition;
    }
    events.push(format!("(service {name}) rolling back to deployment {previous}."));
}

/// Whether the PRIMARY deployment may launch tasks: not when its rollout failed.
pub fn primary_launchable(svc: &Service) -> bool {
    primary(svc).is_some_and(|p| p.rollout_state.as_deref() != Some("FAILED"))
}

/// When launching may resume after a run of failures of the PRIMARY deployment's tasks, if it is
/// held back at all. One failure is retried at once; after that the wait doubles from
/// [`BACKOFF_BASE_MS`] up to [`BACKOFF_MAX_MS`]. A task that ran for [`STARTED_OK_MS`] ends the run.
pub fn backoff_until(svc: &Service, tasks: &[TaskView], now_ms: i64) -> Option<i64> {
    let primary_id = primary(svc)?.id.clone()?;
    // (time, failure?) for every outcome of this deployment's tasks, newest first.
    let mut outcomes: Vec<(i64, bool)> = Vec::new();
    for t in tasks.iter().filter(|t| t.deployment.as_deref() == Some(primary_id.as_str())) {
        let ran = ran_ms(t, now_ms);
        if ran >= STARTED_OK_MS {
            outcomes.push((t.started_at_ms.unwrap_or(0) + STARTED_OK_MS, false));
        } else if t.is_failure() {
            outcomes.push((t.stopped_at_ms.unwrap_or(t.created_at_ms), true));
        }
    }
    outcomes.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let run = outcomes.iter().take_while(|(_, failed)| *failed).count() as u32;
    if run < 2 {
        return None;
    }
    let last = outcomes[0].0;
    let delay = BACKOFF_BASE_MS.saturating_mul(1 << (run - 2).min(16)).min(BACKOFF_MAX_MS);
    Some(last + delay)
}

/// The event ECS gives while it throttles a service whose tasks keep failing.
pub fn note_throttled(svc: &Service, events: &mut Vec<String>) {
    events.push(format!(
        "(service {}) is unable to consistently start tasks successfully. For more information, see the \
         Troubleshooting section of the Amazon ECS Developer Guide.",
        svc.service_name.as_deref().unwrap_or("")
    ));
}
