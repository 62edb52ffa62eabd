//! RunTask: the scheduler picks instances for `count` tasks from a snapshot of the cluster, and
//! the tasks are committed through the same placement path as StartTask, which re-checks each
//! instance's room at commit time so concurrent RunTasks never oversubscribe an instance.

use std::collections::HashMap;

use flotilla_model::{
    Failure, PlacementConstraint, PlacementStrategy, RunTaskRequest, RunTaskResponse, Task, TaskDefinition,
};
use flotilla_scheduler::{
    place, Constraint, Env, HostPort, Instance, InstanceStatus, Protocol, Request, RequiredAttribute, Snapshot,
    Strategy,
};

use super::start_task::{check_network, check_overrides, runnable_definition, task_tags};
use super::tags::validate_tags;
use super::{active_cluster, DEFAULT_CLUSTER};
use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::idempotency;
use crate::placement::{commit_on_instance, new_task, reservation_for, Launch};
use crate::state::cache::range_prefix;
use crate::state::keys;
use crate::state::records::Reservation;

/// The cluster's container instances as the scheduler sees them, with their store keys.
pub fn snapshot(ctx: &Ctx, cluster: &str) -> (Snapshot, Vec<String>) {
    let ix = ctx.cache.read();
    let prefix = format!("{}{cluster}/", keys::INSTANCE);
    let mut instances = Vec::new();
    let mut keys_out = Vec::new();
    for (key, e) in range_prefix(&ix.instances, &prefix) {
        let ci = &e.value.instance;
        let arn = ci.container_instance_arn.clone().unwrap_or_default();
        let usage = ix.instance_usage.get(&arn).cloned().unwrap_or_default();
        let int = |name: &str| {
            ci.registered_resources
                .iter()
                .flatten()
                .find(|r| r.name.as_deref() == Some(name))
                .and_then(|r| r.integer_value)
                .unwrap_or(0) as i64
        };
        let mut used_ports: Vec<HostPort> = Vec::new();
        for (name, protocol, used) in
            [("PORTS", Protocol::Tcp, &usage.ports), ("PORTS_UDP", Protocol::Udp, &usage.ports_udp)]
        {
            let reserved = ci.registered_resources.iter().flatten().filter(|r| r.name.as_deref() == Some(name));
            let reserved =
                reserved.flat_map(|r| r.string_set_value.iter().flatten()).filter_map(|p| p.parse::<u16>().ok());
            used_ports.extend(reserved.chain(used.iter().copied()).map(|port| HostPort { port, protocol }));
        }
        let mut groups: HashMap<String, u32> = HashMap::new();
        for t in ix.task_index.by_instance.get(arn.as_str()).into_iter().flatten() {
            if let Some(task) = ix.tasks.get(t) {
                if !task.value.is_stopped() {
                    if let Some(g) = &task.value.summary.group {
                        *groups.entry(g.to_string()).or_default() += 1;
                    }
                }
            }
        }
        instances.push(Instance {
            arn,
            ec2_instance_id: ci.ec2_instance_id.clone().unwrap_or_default(),
            status: match ci.status.as_deref() {
                Some("ACTIVE") => InstanceStatus::Active,
                Some("DRAINING") => InstanceStatus::Draining,
                _ => InstanceStatus::Inactive,
            },
            agent_connected: ci.agent_connected.unwrap_or(false),
            agent_version: ci.version_info.as_ref().and_then(|v| v.agent_version.clone()),
            registered_at_ms: ci.registered_at.map(|t| t.as_millis()).unwrap_or(0),
            attributes: ci
                .attributes
                .iter()
                .flatten()
                .filter_map(|a| Some((a.name.clone()?, a.value.clone())))
                .collect(),
            remaining_cpu: int("CPU") - usage.cpu,
            remaining_memory: int("MEMORY") - usage.memory,
            used_ports,
            running_tasks_count: usage.running_tasks.max(0) as u32,
            task_groups: groups.into_iter().collect(),
        });
        keys_out.push(key.clone());
    }
    (Snapshot::new(instances), keys_out)
}

/// The scheduler's request for `count` tasks of `def` holding `r` each, with the caller's
/// strategies and constraints plus the task definition's own constraints.
pub fn placement_request(
    count: u32,
    placement_strategy: &[PlacementStrategy],
    placement_constraints: &[PlacementConstraint],
    def: &TaskDefinition,
    r: &Reservation,
    group: &str,
) -> ApiResult<Request> {
    let bad = |e: flotilla_scheduler::RequestError| ApiError::invalid_parameter(e.to_string());
    let strategies = placement_strategy.iter();
    let strategies = strategies
        .map(|s| Strategy::from_wire(s.r#type.as_deref().unwrap_or(""), s.field.as_deref()).map_err(bad))
        .collect::<ApiResult<Vec<_>>>()?;
    let mut constraints = Vec::new();
    for c in placement_constraints {
        constraints
            .push(Constraint::from_wire(c.r#type.as_deref().unwrap_or(""), c.expression.as_deref()).map_err(bad)?);
    }
    for c in def.placement_constraints.iter().flatten() {
        constraints
            .push(Constraint::from_wire(c.r#type.as_deref().unwrap_or(""), c.expression.as_deref()).map_err(bad)?);
    }
    if constraints.len() > flotilla_scheduler::MAX_CONSTRAINTS {
        return Err(ApiError::invalid_parameter(format!(
            "placementConstraints can have at most {} items, including the task definition's.",
            flotilla_scheduler::MAX_CONSTRAINTS
        )));
    }
    let ports = r.ports.iter().map(|&port| HostPort { port, protocol: Protocol::Tcp });
    let ports = ports.chain(r.ports_udp.iter().map(|&port| HostPort { port, protocol: Protocol::Udp })).collect();
    let required_attributes = def
        .requires_attributes
        .iter()
        .flatten()
        .filter_map(|a| Some(RequiredAttribute { name: a.name.clone()?, value: a.value.clone() }))
        .collect();
    Ok(Request {
        count,
        cpu: r.cpu.max(0) as u32,
        memory: r.memory.max(0) as u32,
        ports,
        required_attributes,
        strategies,
        constraints,
        group: group.to_string(),
    })
}

pub async fn run(ctx: &Ctx, req: RunTaskRequest) -> ApiResult<RunTaskResponse> {
    let token = req.client_token.clone();
    let hash = idempotency::request_hash(&req);
    if let Some(t) = &token {
        if let Some(earlier) = idempotency::replay::<RunTaskResponse>(ctx, "RunTask", t, &hash)? {
            return Ok(earlier);
        }
    }
    let (cluster, _) = active_cluster(ctx, req.cluster.as_deref().or(Some(DEFAULT_CLUSTER)))?;
    let count = req.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(ApiError::invalid_parameter(format!("count must be between 1 and 10; got {count}.")));
    }
    if req.capacity_provider_strategy.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(ApiError::unsupported("Capacity provider strategies are not supported by Flotilla yet."));
    }
    let launch_type = req.launch_type.clone().unwrap_or_else(|| "EC2".into());
    if launch_type != "EC2" {
        return Err(ApiError::unsupported(format!("The {launch_type} launch type is not supported by Flotilla yet.")));
    }
    let def = runnable_definition(ctx, req.task_definition.as_deref().unwrap_or_default(), "EC2")?;
    check_overrides(&def, req.overrides.as_ref())?;
    check_network(&def, req.network_configuration.is_some())?;
    let tags = req.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    let group = req.group.clone().unwrap_or_else(|| format!("family:{}", def.family.as_deref().unwrap_or("")));
    let reservation = reservation_for(&def, req.overrides.as_ref());
    let request = placement_request(
        count as u32,
        req.placement_strategy.as_deref().unwrap_or_default(),
        req.placement_constraints.as_deref().unwrap_or_default(),
        &def,
        &reservation,
        &group,
    )?;
    let launch = Launch {
        overrides: req.overrides.clone(),
        group: Some(group),
        started_by: req.started_by.clone(),
        tags: task_tags(ctx, &def, tags, req.propagate_tags.as_deref()),
        enable_execute_command: req.enable_execute_command.unwrap_or(false),
    };
    let (tasks, failures) = place_and_commit(ctx, &cluster, &def, &request, &launch).await?;
    let response = RunTaskResponse { tasks: Some(tasks), failures: Some(failures) };
    if let Some(t) = &token {
        let (c, op) = idempotency::remember(ctx, "RunTask", t, &hash, &response);
        let _ = ctx.commit(flotilla_store::Txn::new().when(c).then(op)).await?;
    }
    Ok(response)
}

/// Places the tasks `request` asks for in `cluster` and commits each on its instance. Tasks that
/// could not be placed, or whose instance filled up before the commit, come back as failures.
/// RunTask and the service controller both launch tasks through here.
pub async fn place_and_commit(
    ctx: &Ctx,
    cluster: &str,
    def: &TaskDefinition,
    request: &Request,
    launch: &Launch,
) -> ApiResult<(Vec<Task>, Vec<Failure>)> {
    let (snap, instance_keys) = snapshot(ctx, cluster);
    let seed = rand::random::<u64>();
    let plan = place(&snap, request, &Env { seed }).map_err(|e| ApiError::invalid_parameter(e.to_string()))?;
    let mut tasks = Vec::new();
    let mut failures: Vec<Failure> = plan
        .failures
        .iter()
        .map(|f| Failure {
            arn: f.arn.clone(),
            reason: Some(f.reason.ecs_reason().into()),
            detail: Some(f.detail.clone()),
        })
        .collect();
    for p in &plan.placements {
        let key = &instance_keys[p.instance];
        let Some(entry) = ctx.cache.read().instances.get(key).cloned() else { continue };
        let record = new_task(ctx, cluster, def, &entry.value.instance, launch);
        match commit_on_instance(ctx, key, std::slice::from_ref(&record)).await? {
            Ok(()) => tasks.push(record.task),
            // Another request took the room between the snapshot and the commit.
            Err(m) => failures.push(Failure {
                arn: Some(snap.arn(p.instance).to_string()),
                reason: Some(m.reason().into()),
                detail: Some("the instance filled up while this request was placed".into()),
            }),
        }
    }
    Ok((tasks, failures))
}
