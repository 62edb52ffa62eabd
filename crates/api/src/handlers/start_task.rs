//! StartTask: decode, check, launch one task on each named instance through the one launch path
//! ([`crate::domain::launch`]), encode. The scheduler judges each named instance's room.

use flotilla_model::{StartTaskRequest, StartTaskResponse};

use super::{active_cluster, check_batch};
use crate::context::Ctx;
use crate::domain::launch::checks::{check_names, check_network, check_overrides, runnable_definition};
use crate::domain::launch::tags::launch_tags;
use crate::domain::launch::{self, Capacity, Placement, Shared, Spec};
use crate::error::ApiResult;

pub async fn start(ctx: &Ctx, req: StartTaskRequest) -> ApiResult<StartTaskResponse> {
    let (cluster, _) = active_cluster(ctx, req.cluster.as_deref())?;
    let instances = req.container_instances.clone().unwrap_or_default();
    check_batch("containerInstances", instances.len(), 10)?;
    let def = runnable_definition(ctx, req.task_definition.as_deref().unwrap_or_default(), "EC2")?;
    check_overrides(&def, req.overrides.as_ref())?;
    check_network(&def, req.network_configuration.as_ref())?;
    let tags = req.tags.clone().unwrap_or_default();
    let volumes = req.volume_configurations.as_ref().map_or(0, Vec::len);
    check_names(&tags, req.group.as_deref(), req.started_by.as_deref(), volumes)?;
    let shared = Shared {
        overrides: req.overrides.clone(),
        group: req.group.clone(),
        started_by: req.started_by.clone(),
        tags: launch_tags(ctx, &def, &cluster, tags, req.propagate_tags.as_deref(), req.enable_ecs_managed_tags),
        enable_execute_command: req.enable_execute_command.unwrap_or(false),
        awsvpc: req.network_configuration.as_ref().and_then(|n| n.awsvpc_configuration.clone()),
        platform_version: None,
    };
    let spec =
        Spec { cluster, def, shared, placement: Placement::Instances(instances), capacity: Capacity::LaunchType };
    let launched = launch::launch(ctx, &spec, None).await?;
    Ok(StartTaskResponse { tasks: Some(super::tasks::shown(launched.tasks)), failures: Some(launched.failures) })
}
