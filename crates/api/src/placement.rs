//! Turning a decision about where tasks go into durable task records. StartTask commits through
//! [`commit_on_instance`] on the instances the caller named; RunTask builds its records and checks
//! them with [`new_task`] and [`fits`] and commits a whole plan in one transaction (see
//! `handlers::run_task`). Either way each instance's capacity is re-checked against what the cache
//! says at commit time, inside a transaction that compares the instance record's revision and
//! bumps it, so two concurrent placements on one instance cannot both pass: the loser re-reads and
//! re-checks.

use flotilla_model::{Container, ContainerInstance, Failure, Tag, Task, TaskDefinition, TaskOverride, Timestamp};
use flotilla_store::{Compare, Op, Revision, Txn};

use crate::context::{Ctx, MAX_CAS_ATTEMPTS};
use crate::error::{ApiError, ApiResult};
use crate::handlers::new_id;
use crate::state::cache::{Indexes, InstanceUsage};
use crate::state::codec::encode;
use crate::state::keys;
use crate::state::records::{Reservation, TaskRecord};

/// Why a task does not fit an instance, in ECS's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfit {
    Cpu,
    Memory,
    Ports,
    Inactive,
    Agent,
}

impl Misfit {
    pub fn reason(self) -> &'static str {
        match self {
            Misfit::Cpu => "RESOURCE:CPU",
            Misfit::Memory => "RESOURCE:MEMORY",
            Misfit::Ports => "RESOURCE:PORTS",
            Misfit::Inactive => "INACTIVE",
            Misfit::Agent => "AGENT",
        }
    }
}

/// What one task of `def` with `overrides` holds on its instance.
pub fn reservation_for(def: &TaskDefinition, overrides: Option<&TaskOverride>) -> Reservation {
    let containers = def.container_definitions.as_deref().unwrap_or_default();
    let over = |name: &Option<String>| {
        overrides
            .and_then(|o| o.container_overrides.as_ref())
            .and_then(|list| list.iter().find(|c| c.name.is_some() && c.name == *name))
    };
    let task_cpu =
        overrides.and_then(|o| o.cpu.as_deref()).or(def.cpu.as_deref()).and_then(flotilla_model::rules::parse_task_cpu);
    let task_mem = overrides
        .and_then(|o| o.memory.as_deref())
        .or(def.memory.as_deref())
        .and_then(flotilla_model::rules::parse_task_memory);
    let cpu = task_cpu.map(i64::from).unwrap_or_else(|| {
        containers.iter().map(|c| over(&c.name).and_then(|o| o.cpu).or(c.cpu).unwrap_or(0) as i64).sum()
    });
    let memory = task_mem.map(i64::from).unwrap_or_else(|| {
        containers
            .iter()
            .map(|c| {
                let o = over(&c.name);
                o.and_then(|o| o.memory)
                    .or(c.memory)
                    .or(o.and_then(|o| o.memory_reservation))
                    .or(c.memory_reservation)
                    .unwrap_or(0) as i64
            })
            .sum()
    });
    let mode = def.network_mode.as_deref().unwrap_or("bridge");
    let mut ports = Vec::new();
    let mut ports_udp = Vec::new();
    for pm in containers.iter().flat_map(|c| c.port_mappings.iter().flatten()) {
        let fixed = match mode {
            "host" => pm.host_port.or(pm.container_port),
            "bridge" => pm.host_port.filter(|p| *p > 0),
            _ => None,
        };
        if let Some(p) = fixed.and_then(|p| u16::try_from(p).ok()) {
            if pm.protocol.as_deref() == Some("udp") {
                ports_udp.push(p);
            } else {
                ports.push(p);
            }
        }
    }
    Reservation { cpu, memory, ports, ports_udp }
}

fn registered<'a>(ci: &'a ContainerInstance, name: &str) -> Option<&'a flotilla_model::Resource> {
    ci.registered_resources.iter().flatten().find(|r| r.name.as_deref() == Some(name))
}

/// Whether `r` fits on the instance given what its tasks already hold.
pub fn fits(ci: &ContainerInstance, usage: &InstanceUsage, r: &Reservation) -> Result<(), Misfit> {
    if ci.status.as_deref() != Some("ACTIVE") {
        return Err(Misfit::Inactive);
    }
    let int = |name| registered(ci, name).and_then(|r| r.integer_value).unwrap_or(0) as i64;
    if usage.cpu + r.cpu > int("CPU") {
        return Err(Misfit::Cpu);
    }
    if usage.memory + r.memory > int("MEMORY") {
        return Err(Misfit::Memory);
    }
    let taken = |name, used: &std::collections::BTreeSet<u16>, p: &u16| {
        used.contains(p)
            || registered(ci, name)
                .and_then(|r| r.string_set_value.as_ref())
                .is_some_and(|set| set.iter().any(|s| s.parse::<u16>().ok() == Some(*p)))
    };
    let mut seen = std::collections::BTreeSet::new();
    for p in &r.ports {
        if taken("PORTS", &usage.ports, p) || !seen.insert(*p) {
            return Err(Misfit::Ports);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in &r.ports_udp {
        if taken("PORTS_UDP", &usage.ports_udp, p) || !seen.insert(*p) {
            return Err(Misfit::Ports);
        }
    }
    Ok(())
}

/// How a request launches tasks: the parts of RunTask and StartTask every task shares.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    pub overrides: Option<TaskOverride>,
    pub group: Option<String>,
    pub started_by: Option<String>,
    pub tags: Vec<Tag>,
    pub enable_execute_command: bool,
}

/// A new task record for `def` on `instance`.
/// A task id: 32 hex digits like ECS's, time-ordered (a UUIDv7). Tasks are the most written
/// records, and keys that follow creation order land next to each other in the store's B-tree,
/// so a batch of new tasks, and their first reports a moment later, touch a few pages rather
/// than one page each.
fn new_task_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

pub fn new_task(
    ctx: &Ctx,
    cluster: &str,
    def: &TaskDefinition,
    instance: &ContainerInstance,
    launch: &Launch,
) -> TaskRecord {
    let id = new_task_id();
    let task_arn = ctx.arns.task(cluster, &id);
    let now: Timestamp = ctx.now();
    let family = def.family.clone().unwrap_or_default();
    let awsvpc = def.network_mode.as_deref() == Some("awsvpc");
    let containers: Vec<Container> = def
        .container_definitions
        .iter()
        .flatten()
        .map(|c| Container {
            container_arn: Some(ctx.arns.container(cluster, &id, &new_id())),
            task_arn: Some(task_arn.clone()),
            name: c.name.clone(),
            image: c.image.clone(),
            last_status: Some("PENDING".into()),
            network_interfaces: Some(Vec::new()),
            health_status: c.health_check.as_ref().map(|_| "UNKNOWN".to_string()),
            cpu: Some(c.cpu.unwrap_or(0).to_string()),
            memory: c.memory.map(|m| m.to_string()),
            memory_reservation: c.memory_reservation.map(|m| m.to_string()),
            ..Default::default()
        })
        .collect();
    let zone = instance
        .attributes
        .iter()
        .flatten()
        .find(|a| a.name.as_deref() == Some("ecs.availability-zone"))
        .and_then(|a| a.value.clone());
    let mut overrides = launch.overrides.clone().unwrap_or_default();
    overrides.container_overrides.get_or_insert_with(Vec::new);
    overrides.inference_accelerator_overrides.get_or_insert_with(Vec::new);
    let reservation = reservation_for(def, launch.overrides.as_ref());
    let task = Task {
        attachments: Some(Vec::new()),
        attributes: Some(vec![flotilla_model::Attribute {
            name: Some("ecs.cpu-architecture".into()),
            value: Some("x86_64".into()),
            ..Default::default()
        }]),
        availability_zone: zone,
        cluster_arn: Some(ctx.arns.cluster(cluster)),
        connectivity: Some("CONNECTED".into()),
        connectivity_at: Some(now),
        container_instance_arn: instance.container_instance_arn.clone(),
        containers: Some(containers),
        cpu: launch
            .overrides
            .as_ref()
            .and_then(|o| o.cpu.clone())
            .or_else(|| def.cpu.clone())
            .or_else(|| Some(reservation.cpu.to_string())),
        created_at: Some(now),
        desired_status: Some("RUNNING".into()),
        enable_execute_command: Some(launch.enable_execute_command),
        group: Some(launch.group.clone().unwrap_or_else(|| format!("family:{family}"))),
        health_status: Some("UNKNOWN".into()),
        last_status: Some(if awsvpc { "PROVISIONING" } else { "PENDING" }.into()),
        launch_type: Some("EC2".into()),
        memory: launch
            .overrides
            .as_ref()
            .and_then(|o| o.memory.clone())
            .or_else(|| def.memory.clone())
            .or_else(|| Some(reservation.memory.to_string())),
        overrides: Some(overrides),
        started_by: launch.started_by.clone(),
        tags: (!launch.tags.is_empty()).then(|| launch.tags.clone()),
        task_arn: Some(task_arn),
        task_definition_arn: def.task_definition_arn.clone(),
        version: Some(1),
        ..Default::default()
    };
    TaskRecord { task, reservation: Some(reservation) }
}

/// What `records` reserve together.
pub fn total(records: &[TaskRecord]) -> Reservation {
    let mut total = Reservation::default();
    for r in records.iter().filter_map(|t| t.reservation.as_ref()) {
        total.cpu += r.cpu;
        total.memory += r.memory;
        total.ports.extend(&r.ports);
        total.ports_udp.extend(&r.ports_udp);
    }
    total
}

/// Guards a placement on the instance under `instance_key`: the transaction requires the
/// instance record unchanged since `instance_revision` (still ACTIVE, same resources) and bumps
/// the instance's placement counter, so that of two placements that checked the same usage only
/// one commits. The counter is a few bytes, where rewriting the instance record instead cost a
/// few KiB per placement to write, to store and to decode again in the cache.
pub fn guard_instance(ix: &Indexes, txn: Txn, instance_key: &str, instance_revision: Revision) -> Txn {
    let key = keys::placement_of(instance_key);
    let (compare, next) = match ix.placements.get(&key) {
        Some(e) => (Compare::unchanged(key.as_str(), e.revision), *e.value + 1),
        None => (Compare::absent(key.as_str()), 1),
    };
    txn.when(Compare::unchanged(instance_key, instance_revision)).when(compare).then(Op::put(key, encode(&next)))
}

/// Commits `tasks` onto the instance under `instance_key` if they still fit. `Ok(Err(misfit))`
/// when they do not; [`guard_instance`] guards against concurrent placements.
pub async fn commit_on_instance(ctx: &Ctx, instance_key: &str, tasks: &[TaskRecord]) -> ApiResult<Result<(), Misfit>> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let mut txn = {
            let ix = ctx.cache.read();
            let Some(entry) = ix.instances.get(instance_key) else { return Ok(Err(Misfit::Inactive)) };
            let arn = entry.value.instance.container_instance_arn.as_deref().unwrap_or_default();
            if let Err(m) =
                fits(&entry.value.instance, ix.instance_usage.get(arn).unwrap_or(&Default::default()), &total(tasks))
            {
                return Ok(Err(m));
            }
            guard_instance(&ix, Txn::new(), instance_key, entry.revision)
        };
        for t in tasks {
            let arn = t.task.task_arn.as_deref().unwrap_or_default();
            let (cluster, id) = split_task_arn(arn)?;
            let key = keys::task(cluster, id);
            txn = txn.when(Compare::absent(&key)).then(Op::put(&key, encode(t)));
        }
        if ctx.commit(txn).await?.is_some() {
            return Ok(Ok(()));
        }
    }
    Err(ApiError::server("The container instance kept changing while tasks were placed on it; try again."))
}

fn split_task_arn(arn: &str) -> ApiResult<(&str, &str)> {
    let rest = arn.split_once(":task/").map(|(_, r)| r).unwrap_or_default();
    rest.split_once('/').ok_or_else(|| ApiError::server(format!("malformed task ARN {arn}")))
}

pub fn failure(arn: String, m: Misfit) -> Failure {
    Failure { arn: Some(arn), reason: Some(m.reason().into()), detail: None }
}
