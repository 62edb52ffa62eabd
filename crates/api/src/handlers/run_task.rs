//! RunTask: decode, check, launch through the one launch path ([`crate::domain::launch`]),
//! encode. The scheduler places `count` tasks on the cluster's snapshot; the clientToken is
//! remembered in the same transaction as the tasks.

use flotilla_model::{RunTaskRequest, RunTaskResponse};

use super::{active_cluster, DEFAULT_CLUSTER};
use crate::context::Ctx;
use crate::domain::launch::checks::{check_capacity, check_names, check_network, check_overrides, runnable_definition};
use crate::domain::launch::tags::launch_tags;
use crate::domain::launch::token::Token;
use crate::domain::launch::{self, Placement, Shared, Spec};
use crate::domain::{capacity, fargate};
use crate::error::{ApiError, ApiResult};
use crate::idempotency;

pub async fn run(ctx: &Ctx, req: RunTaskRequest) -> ApiResult<RunTaskResponse> {
    if let Some(t) = req.client_token.as_deref().filter(|t| t.is_empty() || t.chars().count() > 64) {
        return Err(ApiError::invalid_parameter(format!(
            "clientToken must be 1 to 64 characters long; got {}.",
            t.chars().count()
        )));
    }
    let hash = idempotency::request_hash(&req);
    let token = req.client_token.as_deref().map(|token| Token { token, hash: &hash });
    check_capacity(req.launch_type.as_deref(), req.capacity_provider_strategy.as_ref().is_some_and(|c| !c.is_empty()))?;
    let (cluster, entry) = active_cluster(ctx, req.cluster.as_deref().or(Some(DEFAULT_CLUSTER)))?;
    let capacity = capacity::resolve(
        &ctx.cache.read(),
        &entry.value,
        req.launch_type.as_deref(),
        req.capacity_provider_strategy.as_deref(),
    )?;
    let count = req.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(ApiError::invalid_parameter(format!("count must be between 1 and 10; got {count}.")));
    }
    let def = runnable_definition(ctx, req.task_definition.as_deref().unwrap_or_default(), capacity.launch_type())?;
    check_overrides(&def, req.overrides.as_ref())?;
    let platform_version = match capacity.is_fargate() {
        true => {
            fargate::check_launch(
                &def,
                req.placement_strategy.as_deref(),
                req.placement_constraints.as_ref().map_or(0, Vec::len),
                req.network_configuration.is_some(),
            )?;
            fargate::check_size(&def, req.overrides.as_ref())?;
            Some(fargate::platform_version(req.platform_version.as_deref())?)
        }
        false => None,
    };
    check_network(&def, req.network_configuration.as_ref())?;
    let tags = req.tags.clone().unwrap_or_default();
    let volumes = req.volume_configurations.as_ref().map_or(0, Vec::len);
    check_names(&tags, req.group.as_deref(), req.started_by.as_deref(), volumes)?;
    let shared = Shared {
        overrides: req.overrides.clone(),
        group: Some(req.group.clone().unwrap_or_else(|| format!("family:{}", def.family.as_deref().unwrap_or("")))),
        started_by: req.started_by.clone(),
        tags: launch_tags(ctx, &def, &cluster, tags, req.propagate_tags.as_deref(), req.enable_ecs_managed_tags),
        enable_execute_command: req.enable_execute_command.unwrap_or(false),
        awsvpc: req.network_configuration.as_ref().and_then(|n| n.awsvpc_configuration.clone()),
        platform_version,
    };
    let placement = Placement::Count {
        count: count as u32,
        strategies: req.placement_strategy.clone().unwrap_or_default(),
        constraints: req.placement_constraints.clone().unwrap_or_default(),
    };
    let launched = launch::launch(ctx, &Spec { cluster, def, shared, placement, capacity }, token).await?;
    Ok(RunTaskResponse { tasks: Some(super::tasks::shown(launched.tasks)), failures: Some(launched.failures) })
}
