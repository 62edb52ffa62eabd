//! The task records a launch writes: what one task of a definition reserves on its instance, and
//! the task as ECS shows it the moment it is placed (PENDING, or PROVISIONING in awsvpc mode).

use flotilla_model::{Container, ContainerInstance, Tag, TaskDefinition, TaskOverride, Timestamp};

use crate::context::Ctx;
use crate::domain::lookup::new_id;
use crate::state::records::{Reservation, TaskRecord};

/// What every task of one launch shares: the parts of RunTask, StartTask and a service's
/// deployment that are not the definition.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    pub overrides: Option<TaskOverride>,
    pub group: Option<String>,
    pub started_by: Option<String>,
    pub tags: Vec<Tag>,
    pub enable_execute_command: bool,
    /// The awsvpcConfiguration of an awsvpc launch: where its tasks' interfaces go.
    pub awsvpc: Option<flotilla_model::AwsVpcConfiguration>,
    /// The Fargate platform version (resolved) of a Fargate launch.
    pub platform_version: Option<String>,
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
    Reservation { cpu, memory, ports, ports_udp, gpus: Vec::new() }
}

/// A task id: 32 hex digits like ECS's, time-ordered (a UUIDv7). Tasks are the most written
/// records, and keys that follow creation order land next to each other in the store's B-tree,
/// so a batch of new tasks, and their first reports a moment later, touch a few pages rather
/// than one page each.
fn new_task_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A new task record for `def` on `instance`, holding `reservation` (what [`reservation_for`]
/// says of `def` and the shared overrides, worked out once per launch). Without an instance the
/// task is PROVISIONING: it waits for capacity provider `provider` to add the host it will run on.
pub fn new_task(
    ctx: &Ctx,
    cluster: &str,
    def: &TaskDefinition,
    instance: Option<&ContainerInstance>,
    shared: &Shared,
    reservation: &Reservation,
    provider: Option<&str>,
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
        .iter()
        .flat_map(|i| i.attributes.iter().flatten())
        .find(|a| a.name.as_deref() == Some("ecs.availability-zone"))
        .and_then(|a| a.value.clone());
    let mut overrides = shared.overrides.clone().unwrap_or_default();
    overrides.container_overrides.get_or_insert_with(Vec::new);
    overrides.inference_accelerator_overrides.get_or_insert_with(Vec::new);
    let task = flotilla_model::Task {
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
        container_instance_arn: instance.and_then(|i| i.container_instance_arn.clone()),
        capacity_provider_name: provider.map(String::from),
        containers: Some(containers),
        cpu: shared
            .overrides
            .as_ref()
            .and_then(|o| o.cpu.clone())
            .or_else(|| def.cpu.clone())
            .or_else(|| Some(reservation.cpu.to_string())),
        created_at: Some(now),
        desired_status: Some("RUNNING".into()),
        enable_execute_command: Some(shared.enable_execute_command),
        group: Some(shared.group.clone().unwrap_or_else(|| format!("family:{family}"))),
        health_status: Some("UNKNOWN".into()),
        last_status: Some(if awsvpc || instance.is_none() { "PROVISIONING" } else { "PENDING" }.into()),
        launch_type: Some("EC2".into()),
        memory: shared
            .overrides
            .as_ref()
            .and_then(|o| o.memory.clone())
            .or_else(|| def.memory.clone())
            .or_else(|| Some(reservation.memory.to_string())),
        overrides: Some(overrides),
        started_by: shared.started_by.clone(),
        tags: (!shared.tags.is_empty()).then(|| shared.tags.clone()),
        task_arn: Some(task_arn),
        task_definition_arn: def.task_definition_arn.clone(),
        version: Some(1),
        ..Default::default()
    };
    let hidden = shared
        .awsvpc
        .clone()
        .filter(|_| awsvpc)
        .map(|a| Box::new(crate::state::records::Hidden { awsvpc: Some(a), ..Default::default() }));
    TaskRecord { task, reservation: Some(reservation.clone()), hidden }
}
