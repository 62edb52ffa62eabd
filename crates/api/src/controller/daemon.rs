//! DAEMON services: exactly one task of the PRIMARY deployment on every ACTIVE instance the
//! service's constraints accept. A new instance gets its task as it registers; a draining,
//! deregistered or no longer eligible instance has its task stopped. A new revision rolls out
//! instance by instance: with maximumPercent above 100 the new task starts before the old one
//! stops, otherwise the old one stops first, never taking more instances down at once than
//! minimumHealthyPercent allows.

use std::collections::HashMap;

use flotilla_model::Service;

use super::actions::{daemon_target, is_healthy, Actions, Launch, Settings, Stop, REASON_DRAINING, REASON_INELIGIBLE};
use super::deployment::{self, Limits};
use super::view::{InstanceState, InstanceView, TaskView};

#[allow(clippy::too_many_arguments)]
pub fn plan(
    svc: &Service,
    live: &[&TaskView],
    instances: &[InstanceView],
    now_ms: i64,
    settings: &Settings,
    limits: &Limits,
    launch_allowed: bool,
    actions: &mut Actions,
) {
    let Some(primary) = deployment::primary(svc) else { return };
    let primary_id = primary.id.clone().unwrap_or_default();
    let task_definition = primary.task_definition.clone().unwrap_or_default();
    let scale_reason = format!("{} (deployment {primary_id})", super::actions::REASON_SCALE);
    let active = svc.status.as_deref() == Some("ACTIVE");

    let mut on: HashMap<&str, Vec<&TaskView>> = HashMap::new();
    for t in live {
        on.entry(t.instance.as_deref().unwrap_or("")).or_default().push(t);
    }
    let mut healthy = live.iter().filter(|t| is_healthy(t)).count() as i32;

    let stop = |t: &TaskView, reason: &str, healthy: &mut i32, actions: &mut Actions| {
        if is_healthy(t) {
            *healthy -= 1;
        }
        actions.stop.push(Stop { task: t.arn.clone(), reason: reason.to_string() });
    };

    // Tasks on instances the service should not be on.
    for i in instances.iter().filter(|i| !active || !daemon_target(i, now_ms, settings)) {
        let reason = if i.status == InstanceState::Draining { REASON_DRAINING } else { REASON_INELIGIBLE };
        let reason = if active { reason } else { scale_reason.as_str() };
        for t in on.remove(i.arn.as_str()).unwrap_or_default() {
            stop(t, reason, &mut healthy, actions);
        }
    }
    if !active {
        for t in on.into_values().flatten() {
            stop(t, &scale_reason, &mut healthy, actions);
        }
        return;
    }

    let mut targets: Vec<&InstanceView> = instances.iter().filter(|i| daemon_target(i, now_ms, settings)).collect();
    targets.sort_by(|a, b| a.arn.cmp(&b.arn));
    let surge = limits.max_total > limits.desired;
    for i in targets {
        let here = on.remove(i.arn.as_str()).unwrap_or_default();
        let (mut current, old): (Vec<&TaskView>, Vec<&TaskView>) =
            here.into_iter().partition(|t| t.deployment.as_deref() == Some(primary_id.as_str()));
        // Never two of the current deployment on one instance: keep the most useful one.
        current.sort_by_key(|t| (std::cmp::Reverse(is_healthy(t)), std::cmp::Reverse(t.is_running()), t.created_at_ms));
        for extra in current.iter().skip(1) {
            stop(extra, &scale_reason, &mut healthy, actions);
        }
        let has_current = !current.is_empty();
        let current_healthy = current.first().is_some_and(|t| is_healthy(t));
        let launch_here = || Launch {
            deployment: primary_id.clone(),
            task_definition: task_definition.clone(),
            count: 1,
            instance: Some(i.arn.clone()),
        };
        if old.is_empty() {
            if !has_current && launch_allowed && i.connected {
                actions.launch.push(launch_here());
            }
            continue;
        }
        if current_healthy {
            for t in &old {
                stop(t, &scale_reason, &mut healthy, actions);
            }
            continue;
        }
        if surge {
            if !has_current && launch_allowed && i.connected {
                actions.launch.push(launch_here());
            }
            continue;
        }
        // No room for two: the old task goes first, if the healthy floor allows.
        for t in &old {
            if is_healthy(t) && healthy - 1 < limits.min_healthy {
                continue;
            }
            stop(t, &scale_reason, &mut healthy, actions);
        }
    }
}
