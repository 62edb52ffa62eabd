//! Reading the reconcile step's inputs out of the cache: a service's tasks and its cluster's
//! instances as plain views, and which instances a DAEMON service's constraints accept.

use std::collections::HashMap;

use flotilla_model::{Service, Task};
use flotilla_scheduler::{Constraint, Request};

use super::actions::REASON_TARGET_HEALTH;
use super::view::{Health, InstanceState, InstanceView, Targets, TaskView};
use crate::context::Ctx;
use crate::domain::launch::required_attributes;
use crate::domain::lookup;
use crate::state::cache::range_prefix;
use crate::state::keys;
use crate::state::records::TargetsHealth;

fn ms(t: Option<flotilla_model::Timestamp>) -> Option<i64> {
    t.map(|t| t.as_millis())
}

pub fn task_view(t: &Task) -> TaskView {
    TaskView {
        arn: t.task_arn.clone().unwrap_or_default(),
        deployment: t.started_by.clone(),
        last_status: t.last_status.clone().unwrap_or_default(),
        desired_stopped: t.desired_status.as_deref() == Some("STOPPED"),
        // A task stopped for failing its target group's health check failed its health check,
        // for back-off and the circuit breaker alike.
        health: match t.health_status.as_deref() {
            _ if t.stopped_reason.as_deref().is_some_and(|r| r.starts_with(REASON_TARGET_HEALTH)) => Health::Unhealthy,
            Some("HEALTHY") => Health::Healthy,
            Some("UNHEALTHY") => Health::Unhealthy,
            _ => Health::Unknown,
        },
        has_health_check: t.containers.iter().flatten().any(|c| c.health_status.is_some()),
        instance: t.container_instance_arn.clone(),
        zone: t.availability_zone.clone(),
        capacity_provider: t.capacity_provider_name.clone(),
        created_at_ms: ms(t.created_at).unwrap_or(0),
        started_at_ms: ms(t.started_at),
        stopped_at_ms: ms(t.stopped_at).or(ms(t.execution_stopped_at)),
        stop_code: t.stop_code.clone(),
        targets: Targets::None,
    }
}

/// The service's tasks, stopped ones included (they carry the failure history).
pub fn service_tasks(ctx: &Ctx, cluster: &str, svc: &Service) -> Vec<TaskView> {
    let group = format!("service:{}", svc.service_name.as_deref().unwrap_or(""));
    let balanced = svc.load_balancers.as_ref().is_some_and(|l| !l.is_empty());
    let ix = ctx.cache.read();
    ix.task_index
        .in_group(cluster, &group)
        .filter_map(|k| ix.tasks.get(k))
        .map(|e| {
            // A Fargate task's host is its pool host, which ECS does not show.
            let mut view = task_view(&e.value.task());
            view.instance = e.value.summary.instance.as_deref().map(String::from);
            view.targets = match e.value.hidden.as_ref().and_then(|h| h.target_health.clone()) {
                Some(TargetsHealth::Healthy) => Targets::Healthy,
                Some(TargetsHealth::Unhealthy { target_group_arn, port, reason }) => {
                    Targets::Unhealthy { target_group_arn, port, reason }
                }
                Some(TargetsHealth::Initial) => Targets::Waiting,
                None if balanced => Targets::Waiting,
                None => Targets::None,
            };
            view
        })
        .collect()
}

/// The cluster's instances. `disconnected_since` is the controller's memory of when each agent
/// was first seen away; it is updated here.
pub fn instances(
    ctx: &Ctx,
    cluster: &str,
    now_ms: i64,
    disconnected_since: &mut HashMap<String, i64>,
) -> Vec<InstanceView> {
    let ix = ctx.cache.read();
    let prefix = format!("{}{cluster}/", keys::INSTANCE);
    range_prefix(&ix.instances, &prefix)
        .map(|(_, e)| {
            let ci = &e.value.instance;
            let arn = ci.container_instance_arn.clone().unwrap_or_default();
            let connected = ci.agent_connected.unwrap_or(false);
            let since = if connected {
                disconnected_since.remove(&arn);
                None
            } else {
                Some(*disconnected_since.entry(arn.clone()).or_insert(now_ms))
            };
            InstanceView {
                arn,
                status: match ci.status.as_deref() {
                    Some("ACTIVE") => InstanceState::Active,
                    Some("DRAINING") => InstanceState::Draining,
                    _ => InstanceState::Gone,
                },
                connected,
                disconnected_since_ms: since,
                daemon_eligible: true,
            }
        })
        .collect()
}

/// Marks which instances a DAEMON service may run on, as the scheduler judges its memberOf
/// constraints and the task definition's required attributes. Constraints that no longer parse
/// accept nothing.
pub fn mark_daemon_eligible(ctx: &Ctx, cluster: &str, svc: &Service, instances: &mut [InstanceView]) {
    let def = svc.task_definition.as_deref().and_then(|td| lookup::task_definition(ctx, td));
    let mut request = Request { count: 1, ..Request::default() };
    let from_service = svc.placement_constraints.iter().flatten().map(|c| (&c.r#type, &c.expression));
    let from_def = def.iter().flat_map(|d| d.value.definition.placement_constraints.iter().flatten());
    for (kind, expression) in from_service.chain(from_def.map(|c| (&c.r#type, &c.expression))) {
        match Constraint::from_wire(kind.as_deref().unwrap_or(""), expression.as_deref()) {
            Ok(c) => request.constraints.push(c),
            Err(_) => {
                instances.iter_mut().for_each(|i| i.daemon_eligible = false);
                return;
            }
        }
    }
    if let Some(d) = &def {
        request.required_attributes = required_attributes(&d.value.definition);
    }
    if request.constraints.is_empty() && request.required_attributes.is_empty() {
        return;
    }
    let verdicts = ctx.cache.snapshots.with(
        || ctx.cache.read(),
        cluster,
        |_, snap, _| {
            let eligible = flotilla_scheduler::eligible(snap, &request).unwrap_or_else(|_| vec![false; snap.len()]);
            (0..snap.len()).map(|i| (snap.arn(i).to_string(), eligible[i])).collect::<HashMap<_, _>>()
        },
    );
    for i in instances.iter_mut() {
        i.daemon_eligible = verdicts.get(&i.arn).copied().unwrap_or(false);
    }
}
