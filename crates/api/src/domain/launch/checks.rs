//! What a launch request must pass before anything is placed: a runnable definition, overrides
//! that name its containers and hold sane sizes, a network configuration that matches its network
//! mode, names within ECS's bounds, and the launch type Flotilla can serve. Every refusal is the
//! modeled error ECS gives, naming the field.

use flotilla_model::{NetworkConfiguration, Tag, TaskDefinition, TaskOverride};

use crate::context::Ctx;
use crate::domain::lookup;
use crate::domain::tags::validate_tags;
use crate::error::{ApiError, ApiResult};

/// RunTask's choice of capacity, before anything is looked up: `launchType` and
/// `capacityProviderStrategy` exclude each other (ECS says so before it looks at anything else),
/// and only the EC2 launch type runs here yet. The strategy itself is checked against the
/// cluster by [`crate::domain::capacity::resolve`].
pub fn check_capacity(launch_type: Option<&str>, capacity_provider_strategy: bool) -> ApiResult<()> {
    if launch_type.is_some() && capacity_provider_strategy {
        return Err(ApiError::invalid_parameter(
            "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
        ));
    }
    match launch_type.unwrap_or("EC2") {
        "EC2" | "FARGATE" => Ok(()),
        other => Err(ApiError::unsupported(format!("The {other} launch type is not supported by Flotilla yet."))),
    }
}

/// The ACTIVE task definition a launch names, compatible with the launch type.
pub fn runnable_definition(ctx: &Ctx, given: &str, launch_type: &str) -> ApiResult<TaskDefinition> {
    let entry = lookup::task_definition(ctx, given).ok_or_else(|| ApiError::client("TaskDefinition not found."))?;
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
        flotilla_model::rules::check_container_override(o)?;
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
pub fn check_network(def: &TaskDefinition, config: Option<&NetworkConfiguration>) -> ApiResult<()> {
    flotilla_model::rules::check_network_configuration(config)?;
    match (def.network_mode.as_deref(), config.is_some()) {
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
pub fn check_names(
    tags: &[Tag],
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
