//! StartTask: tasks on the container instances the caller names, each checked for room and
//! reserved through the same placement path RunTask uses.

use flotilla_model::{StartTaskRequest, StartTaskResponse, TaskDefinition, TaskOverride};

use super::container_instances::instance_id;
use super::tags::validate_tags;
use super::{active_cluster, check_batch, missing, task_definitions};
use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::placement::{commit_on_instance, failure, new_task, Launch};
use crate::state::keys;

/// The ACTIVE task definition a RunTask or StartTask names, compatible with the launch type.
pub fn runnable_definition(ctx: &Ctx, given: &str, launch_type: &str) -> ApiResult<TaskDefinition> {
    let entry = task_definitions::lookup(ctx, given).ok_or_else(|| ApiError::client("TaskDefinition not found."))?;
    let td = &entry.value.definition;
    if td.status.as_deref() != Some("ACTIVE") {
        return Err(ApiError::client("TaskDefinition is inactive."));
    }
    if !td.compatibilities.iter().flatten().any(|c| c == launch_type) {
        return Err(ApiError::invalid_parameter(format!(
            "Task definition does not support launch_type {launch_type}."
        )));
    }
    Ok(td.clone())
}

/// Checks overrides against the definition: every container override names a container.
pub fn check_overrides(def: &TaskDefinition, overrides: Option<&TaskOverride>) -> ApiResult<()> {
    let names: Vec<&str> = def.container_definitions.iter().flatten().filter_map(|c| c.name.as_deref()).collect();
    for o in overrides.and_then(|o| o.container_overrides.as_ref()).into_iter().flatten() {
        let name = o.name.as_deref().unwrap_or("");
        if !names.contains(&name) {
            return Err(ApiError::invalid_parameter(format!(
                "Override for container named {name} is not a container in the TaskDefinition."
            )));
        }
        for (field, value) in [("cpu", o.cpu), ("memory", o.memory), ("memoryReservation", o.memory_reservation)] {
            if value.is_some_and(|v| v < 0) {
                return Err(ApiError::invalid_parameter(format!(
                    "overrides.containerOverrides {field} for container {name} cannot be negative."
                )));
            }
        }
        if o.memory.is_some_and(|m| m < 6) {
            return Err(ApiError::invalid_parameter(format!(
                "overrides.containerOverrides memory for container {name} must be at least 6 MiB."
            )));
        }
    }
    let Some(o) = overrides else { return Ok(()) };
    if let Some(cpu) = o.cpu.as_deref().filter(|c| flotilla_model::rules::parse_task_cpu(c).is_none()) {
        return Err(ApiError::invalid_parameter(format!(
            "overrides.cpu '{cpu}' is not valid: give CPU units (\"1024\") or vCPUs (\"1 vCPU\")."
        )));
    }
    if let Some(memory) = o.memory.as_deref().filter(|m| flotilla_model::rules::parse_task_memory(m).is_none()) {
        return Err(ApiError::invalid_parameter(format!(
            "overrides.memory '{memory}' is not valid: give MiB (\"2048\") or GB (\"2 GB\")."
        )));
    }
    Ok(())
}

/// Checks the network configuration against the definition's network mode.
pub fn check_network(def: &TaskDefinition, has_config: bool) -> ApiResult<()> {
    match (def.network_mode.as_deref(), has_config) {
        (Some("awsvpc"), false) => Err(ApiError::invalid_parameter(
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        )),
        (mode, true) if mode != Some("awsvpc") => Err(ApiError::invalid_parameter(
            "Network Configuration is not valid for the given networkMode of this task definition.",
        )),
        _ => Ok(()),
    }
}

/// Checks what RunTask and StartTask both take beside the definition: the tags, the names the
/// tasks get (as ECS bounds them), and no `volumeConfigurations` (not built yet).
pub fn check_launch(
    tags: &[flotilla_model::Tag],
    group: Option<&str>,
    started_by: Option<&str>,
    volume_configurations: usize,
) -> ApiResult<()> {
    validate_tags(tags)?;
    if let Some(g) = group.filter(|g| g.chars().count() > 255) {
        return Err(ApiError::invalid_parameter(format!(
            "group can be at most 255 characters long; got {}.",
            g.chars().count()
        )));
    }
    if let Some(s) = started_by.filter(|s| s.chars().count() > 128) {
        return Err(ApiError::invalid_parameter(format!(
            "startedBy can be at most 128 characters long; got {}.",
            s.chars().count()
        )));
    }
    if volume_configurations > 0 {
        return Err(ApiError::unsupported("volumeConfigurations are not supported by Flotilla yet."));
    }
    Ok(())
}

/// The tags ECS adds itself when `enableECSManagedTags` is on: the cluster's name, and the
/// service's for a service's tasks. User tags cannot use the `aws:` prefix, so these never clash.
pub fn managed_tags(cluster: &str, service: Option<&str>) -> Vec<flotilla_model::Tag> {
    let tag = |key: &str, value: &str| flotilla_model::Tag { key: Some(key.into()), value: Some(value.into()) };
    let mut tags = vec![tag("aws:ecs:clusterName", cluster)];
    if let Some(service) = service {
        tags.push(tag("aws:ecs:serviceName", service));
    }
    tags
}

/// The tags a task started by RunTask or StartTask gets: [`task_tags`], and ECS's own with
/// `enableECSManagedTags`.
pub fn launch_tags(
    ctx: &Ctx,
    def: &TaskDefinition,
    cluster: &str,
    tags: Vec<flotilla_model::Tag>,
    propagate: Option<&str>,
    managed: Option<bool>,
) -> Vec<flotilla_model::Tag> {
    let mut tags = task_tags(ctx, def, tags, propagate);
    if managed == Some(true) {
        tags.extend(managed_tags(cluster, None));
    }
    tags
}

/// The tags a new task gets: the request's, plus the definition's when asked to propagate.
pub fn task_tags(
    ctx: &Ctx,
    def: &TaskDefinition,
    tags: Vec<flotilla_model::Tag>,
    propagate: Option<&str>,
) -> Vec<flotilla_model::Tag> {
    if propagate != Some("TASK_DEFINITION") {
        return tags;
    }
    let key = keys::task_definition(def.family.as_deref().unwrap_or(""), def.revision.unwrap_or(0) as u32);
    let inherited = ctx.cache.read().task_definitions.get(&key).map(|e| e.value.tags.clone()).unwrap_or_default();
    super::tags::merge_tags(&inherited, &tags)
}

pub async fn start(ctx: &Ctx, req: StartTaskRequest) -> ApiResult<StartTaskResponse> {
    let (cluster, _) = active_cluster(ctx, req.cluster.as_deref())?;
    let instances = req.container_instances.clone().unwrap_or_default();
    check_batch("containerInstances", instances.len(), 10)?;
    let def = runnable_definition(ctx, req.task_definition.as_deref().unwrap_or_default(), "EC2")?;
    check_overrides(&def, req.overrides.as_ref())?;
    check_network(&def, req.network_configuration.is_some())?;
    let tags = req.tags.clone().unwrap_or_default();
    let volumes = req.volume_configurations.as_ref().map_or(0, Vec::len);
    check_launch(&tags, req.group.as_deref(), req.started_by.as_deref(), volumes)?;
    let launch = Launch {
        overrides: req.overrides.clone(),
        group: req.group.clone(),
        started_by: req.started_by.clone(),
        tags: launch_tags(ctx, &def, &cluster, tags, req.propagate_tags.as_deref(), req.enable_ecs_managed_tags),
        enable_execute_command: req.enable_execute_command.unwrap_or(false),
    };
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for given in instances {
        let arn = if given.starts_with("arn:") { given.clone() } else { ctx.arns.container_instance(&cluster, &given) };
        let Some(id) = instance_id(ctx, &cluster, &given) else {
            failures.push(missing(arn));
            continue;
        };
        let key = keys::instance(&cluster, id);
        let Some(entry) = ctx.cache.read().instances.get(&key).cloned() else {
            failures.push(missing(arn));
            continue;
        };
        let record = new_task(ctx, &cluster, &def, &entry.value.instance, &launch);
        match commit_on_instance(ctx, &key, std::slice::from_ref(&record)).await? {
            Ok(()) => tasks.push(record.task),
            Err(m) => failures.push(failure(arn, m)),
        }
    }
    Ok(StartTaskResponse { tasks: Some(tasks), failures: Some(failures) })
}
