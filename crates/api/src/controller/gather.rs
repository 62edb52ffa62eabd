//! Reading the reconcile step's inputs out of the cache: a service's tasks and its cluster's
//! instances as plain views, and which instances a DAEMON service's constraints accept.

use std::collections::HashMap;

use flotilla_model::{Service, Task};
use flotilla_scheduler::Constraint;

use super::view::{Health, InstanceState, InstanceView, TaskView};
use crate::context::Ctx;
use crate::state::cache::range_prefix;
use crate::state::keys;

fn ms(t: Option<flotilla_model::Timestamp>) -> Option<i64> {
    t.map(|t| t.as_millis())
}

pub fn task_view(t: &Task) -> TaskView {
    TaskView {
        arn: t.task_arn.clone().unwrap_or_default(),
        deployment: t.started_by.clone(),
        last_status: t.last_status.clone().unwrap_or_default(),
        desired_stopped: t.desired_status.as_deref() == Some("STOPPED"),
        health: match t.health_status.as_deref() {
            Some("HEALTHY") => Health::Healthy,
            Some("UNHEALTHY") => Health::Unhealthy,
            _ => Health::Unknown,
        },
        has_health_check: t.containers.iter().flatten().any(|c| c.health_status.is_some()),
        instance: t.container_instance_arn.clone(),
        zone: t.availability_zone.clone(),
        created_at_ms: ms(t.created_at).unwrap_or(0),
        started_at_ms: ms(t.started_at),
        stopped_at_ms: ms(t.stopped_at).or(ms(t.execution_stopped_at)),
        stop_code: t.stop_code.clone(),
    }
}

/// The service's tasks, stopped ones included (they carry the failure history).
pub fn service_tasks(ctx: &Ctx, cluster: &str, svc: &Service) -> Vec<TaskView> {
    let group = format!("service:{}", svc.service_name.as_deref().unwrap_or(""));
    let ix = ctx.cache.read();
    ix.task_index
        .in_group(cluster, &group)
        .filter_map(|k| ix.tasks.get(k))
        .map(|e| task_view(&e.value.task()))
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

/// Marks which instances a DAEMON service may run on: its memberOf constraints and the task
/// definition's required attributes. An expression that no longer parses accepts nothing.
pub fn mark_daemon_eligible(ctx: &Ctx, cluster: &str, svc: &Service, instances: &mut [InstanceView]) {
    let def = svc.task_definition.as_deref().and_then(|td| crate::handlers::task_definitions::lookup(ctx, td));
    let mut constraints = Vec::new();
    let from_service = svc.placement_constraints.iter().flatten().map(|c| (c.r#type.clone(), c.expression.clone()));
    let from_def = def
        .iter()
        .flat_map(|d| d.value.definition.placement_constraints.clone().unwrap_or_default())
        .map(|c| (c.r#type.clone(), c.expression.clone()));
    for (kind, expression) in from_service.chain(from_def) {
        match Constraint::from_wire(kind.as_deref().unwrap_or(""), expression.as_deref()) {
            Ok(c) => constraints.push(c),
            Err(_) => {
                instances.iter_mut().for_each(|i| i.daemon_eligible = false);
                return;
            }
        }
    }
    let required: Vec<(String, Option<String>)> = def
        .iter()
        .flat_map(|d| d.value.definition.requires_attributes.clone().unwrap_or_default())
        .filter_map(|a| Some((a.name?, a.value)))
        .collect();
    let member_of: Vec<_> = constraints
        .iter()
        .filter_map(|c| match c {
            Constraint::MemberOf(e) => Some(e),
            Constraint::DistinctInstance => None,
        })
        .collect();
    if member_of.is_empty() && required.is_empty() {
        return;
    }
    let (snap, _) = crate::handlers::run_task::snapshot(ctx, cluster);
    let mut accepted: HashMap<String, bool> = (0..snap.len()).map(|i| (snap.arn(i).to_string(), true)).collect();
    for e in member_of {
        let chosen: std::collections::HashSet<usize> = snap.filter(e).into_iter().collect();
        for i in 0..snap.len() {
            if !chosen.contains(&i) {
                accepted.insert(snap.arn(i).to_string(), false);
            }
        }
    }
    for i in 0..snap.len() {
        let attributes = if required.is_empty() { Vec::new() } else { snap.instance(i).attributes };
        let has = |(name, value): &(String, Option<String>)| {
            attributes.iter().any(|(n, v)| n == name && (value.is_none() || v == value))
        };
        if !required.iter().all(has) {
            accepted.insert(snap.arn(i).to_string(), false);
        }
    }
    for i in instances.iter_mut() {
        i.daemon_eligible = accepted.get(&i.arn).copied().unwrap_or(false);
    }
}
