//! The pure reconcile step: `(service, its tasks, the cluster's instances, now) -> actions`.
//!
//! Nothing here reads the store or the clock. The step looks at the whole picture every time
//! (level-triggered), so running it twice on the same inputs gives the same answer and a missed
//! pass costs nothing. Its answer is sorted into named buckets: tasks to launch (by the
//! scheduler, or on a named instance for DAEMON services), tasks to stop with ECS's reasons, tasks
//! to keep, and the service record as it should now read (deployments, counts, events).

use std::collections::{BTreeMap, HashMap, HashSet};

use flotilla_model::arn::short_id;
use flotilla_model::Service;

use super::deployment::{self, Limits};
use super::view::{Health, InstanceState, InstanceView, Targets, TaskView};
use crate::domain::capacity;

pub use super::actions::*;

fn lost_reason(settings: &Settings) -> String {
    format!(
        "Task stopped because the agent of its container instance was disconnected for more than {} seconds",
        settings.lost_grace_ms / 1000
    )
}

/// The whole step for one service.
pub fn reconcile(
    service: &Service,
    tasks: &[TaskView],
    instances: &[InstanceView],
    now_ms: i64,
    settings: &Settings,
) -> Actions {
    let mut actions = Actions::default();
    let mut svc = service.clone();
    let daemon = svc.scheduling_strategy.as_deref() == Some("DAEMON");
    let by_arn: HashMap<&str, &InstanceView> = instances.iter().map(|i| (i.arn.as_str(), i)).collect();

    // Tasks whose instance is lost or gone stop first; they no longer count for anything.
    let mut stopping: HashSet<&str> = HashSet::new();
    for t in tasks.iter().filter(|t| t.is_live()) {
        let reason = match t.instance.as_deref().map(|a| by_arn.get(a)) {
            Some(None) => Some(REASON_GONE.to_string()),
            Some(Some(i)) if i.status == InstanceState::Gone => Some(REASON_GONE.to_string()),
            Some(Some(i)) if is_lost(i, now_ms, settings) => Some(lost_reason(settings)),
            _ => None,
        };
        if let Some(reason) = reason {
            stopping.insert(&t.arn);
            actions.stop.push(Stop { task: t.arn.clone(), reason });
        }
    }

    if daemon {
        let eligible = instances.iter().filter(|i| daemon_target(i, now_ms, settings)).count() as i32;
        deployment::set_desired(&mut svc, eligible);
    }
    deployment::count_failures(&mut svc, tasks, now_ms);
    deployment::trip_circuit_breaker(&mut svc, &mut actions.events);

    let limits = Limits::of(&svc);
    let launch_allowed = match deployment::backoff_until(&svc, tasks, now_ms) {
        Some(until) if until > now_ms => {
            actions.retry_at_ms = Some(until);
            deployment::note_throttled(&svc, &mut actions.events);
            false
        }
        _ => deployment::primary_launchable(&svc),
    };

    let grace_ms = i64::from(svc.health_check_grace_period_seconds.unwrap_or(0)) * 1000;
    // Running tasks whose health check failed (after the grace period) are replaced.
    let candidates: Vec<&TaskView> =
        tasks.iter().filter(|t| t.is_live() && !stopping.contains(t.arn.as_str())).collect();
    for t in candidates {
        let past_grace = t.started_at_ms.is_none_or(|s| now_ms >= s + grace_ms);
        if t.is_running() && t.has_health_check && t.health == Health::Unhealthy && past_grace {
            stopping.insert(&t.arn);
            actions.stop.push(Stop { task: t.arn.clone(), reason: REASON_HEALTH.into() });
            actions.events.push(format!(
                "(service {}) (task {}) failed container health checks.",
                svc.service_name.as_deref().unwrap_or(""),
                short_id(&t.arn)
            ));
        }
    }

    // ... and so are tasks their target group found unhealthy.
    let balanced: Vec<&TaskView> =
        tasks.iter().filter(|t| t.is_live() && t.is_running() && !stopping.contains(t.arn.as_str())).collect();
    for t in balanced {
        let past_grace = t.started_at_ms.is_none_or(|s| now_ms >= s + grace_ms);
        if let (Targets::Unhealthy { target_group_arn, port, reason }, true) = (&t.targets, past_grace) {
            stopping.insert(&t.arn);
            actions.stop.push(Stop {
                task: t.arn.clone(),
                reason: format!("{REASON_TARGET_HEALTH} (target-group {target_group_arn})"),
            });
            actions.events.push(format!(
                "(service {}) (task {}) (port {port}) is unhealthy in (target-group {target_group_arn}) due to (reason {reason}).",
                svc.service_name.as_deref().unwrap_or(""),
                short_id(&t.arn)
            ));
        }
    }

    let live: Vec<&TaskView> = tasks.iter().filter(|t| t.is_live() && !stopping.contains(t.arn.as_str())).collect();
    if daemon {
        super::daemon::plan(&svc, &live, instances, now_ms, settings, &limits, launch_allowed, &mut actions);
    } else {
        replica(&svc, &live, &by_arn, &limits, launch_allowed, &mut actions);
    }

    let stopped: HashSet<&str> = actions.stop.iter().map(|s| s.task.as_str()).collect();
    actions.keep = live.iter().filter(|t| !stopped.contains(t.arn.as_str())).map(|t| t.arn.clone()).collect();
    if svc != *service {
        actions.service = Some(svc);
    }
    actions
}

/// The order in which tasks are given up when some must go: the ones doing the least good first
/// (not yet running, then unhealthy), then the newest.
fn stop_preference(t: &TaskView) -> (u8, std::cmp::Reverse<i64>) {
    let rank = if !t.is_running() {
        0
    } else if !is_healthy(t) {
        1
    } else {
        2
    };
    (rank, std::cmp::Reverse(t.created_at_ms))
}

fn scale_reason(svc: &Service) -> String {
    format!("{REASON_SCALE} (deployment {})", deployment::primary(svc).and_then(|d| d.id.as_deref()).unwrap_or(""))
}

/// REPLICA: keep the PRIMARY deployment at its desired count, retire older deployments and tasks
/// on DRAINING instances, all within minimumHealthyPercent and maximumPercent.
fn replica(
    svc: &Service,
    live: &[&TaskView],
    instances: &HashMap<&str, &InstanceView>,
    limits: &Limits,
    launch_allowed: bool,
    actions: &mut Actions,
) {
    let Some(primary) = deployment::primary(svc) else { return };
    let primary_id = primary.id.clone().unwrap_or_default();
    let desired = limits.desired;
    let draining = |t: &TaskView| {
        t.instance.as_deref().and_then(|a| instances.get(a)).is_some_and(|i| i.status == InstanceState::Draining)
    };
    let mut current: Vec<&TaskView> =
        live.iter().copied().filter(|t| t.deployment.as_deref() == Some(primary_id.as_str()) && !draining(t)).collect();
    let mut retiring: Vec<&TaskView> =
        live.iter().copied().filter(|t| t.deployment.as_deref() != Some(primary_id.as_str()) || draining(t)).collect();

    // Scale in: too many current tasks. Take from the zone holding the most, least useful first;
    // but while giving up a healthy task would leave fewer than minimumHealthyPercent, a task
    // that is not (yet) healthy goes first wherever it runs.
    let reason = scale_reason(svc);
    let mut healthy = current.iter().chain(retiring.iter()).filter(|t| is_healthy(t)).count() as i32;
    let shares = provider_shares(svc, desired);
    while current.len() as i32 > desired {
        let victim = pick_scale_in(&current, healthy - 1 < limits.min_healthy, &shares);
        let t = current.remove(victim);
        if is_healthy(t) {
            healthy -= 1;
        }
        actions.stop.push(Stop { task: t.arn.clone(), reason: reason.clone() });
    }

    // Scale out, within maximumPercent of the desired count.
    let total = (current.len() + retiring.len()) as i32;
    let shortfall = desired - current.len() as i32;
    let room = limits.max_total - total;
    let launch = shortfall.min(room).max(0);
    if launch > 0 && launch_allowed {
        actions.launch.push(Launch {
            deployment: primary_id.clone(),
            task_definition: primary.task_definition.clone().unwrap_or_default(),
            count: launch as u32,
            instance: None,
        });
    }

    // Retire old and draining tasks while enough healthy ones remain.
    retiring.sort_by_key(|t| stop_preference(t));
    for t in retiring {
        let reason = if draining(t) { REASON_DRAINING.to_string() } else { reason.clone() };
        if is_healthy(t) {
            if healthy - 1 < limits.min_healthy {
                continue;
            }
            healthy -= 1;
        }
        actions.stop.push(Stop { task: t.arn.clone(), reason });
    }
}

/// How many of `desired` tasks each provider of the service's capacity provider strategy should
/// hold, by the same base and weight split that placed them; empty without a strategy.
fn provider_shares(svc: &Service, desired: i32) -> HashMap<String, i64> {
    let items: Vec<capacity::Item> = svc
        .capacity_provider_strategy
        .iter()
        .flatten()
        .map(|i| capacity::Item {
            provider: i.capacity_provider.clone().unwrap_or_default(),
            weight: i.weight.unwrap_or(0).max(0) as u32,
            base: i.base.unwrap_or(0).max(0) as u32,
            managed_scaling: false,
        })
        .collect();
    let mut shares: HashMap<String, i64> = items.iter().map(|i| (i.provider.clone(), 0)).collect();
    for i in capacity::split(&items, &[], desired.max(0) as u32) {
        *shares.entry(items[i].provider.clone()).or_default() += 1;
    }
    shares
}

/// Which current task to stop when scaling in: from the capacity provider most above its share,
/// then from the zone with the most tasks, the least useful; with `spare_healthy`, any task that
/// is not healthy before any that is.
fn pick_scale_in(current: &[&TaskView], spare_healthy: bool, shares: &HashMap<String, i64>) -> usize {
    let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_provider: HashMap<&str, i64> = HashMap::new();
    for t in current {
        *per_zone.entry(t.zone.as_deref().unwrap_or("")).or_default() += 1;
        *per_provider.entry(t.capacity_provider.as_deref().unwrap_or("")).or_default() += 1;
    }
    let over = |t: &TaskView| {
        let p = t.capacity_provider.as_deref().unwrap_or("");
        per_provider.get(p).copied().unwrap_or(0) - shares.get(p).copied().unwrap_or(0)
    };
    (0..current.len())
        .min_by_key(|&i| {
            let t = current[i];
            let crowd = per_zone[t.zone.as_deref().unwrap_or("")];
            let over = if shares.is_empty() { 0 } else { over(t) };
            (
                spare_healthy && is_healthy(t),
                std::cmp::Reverse(over),
                std::cmp::Reverse(crowd),
                stop_preference(t),
                t.arn.clone(),
            )
        })
        .unwrap_or(0)
}
