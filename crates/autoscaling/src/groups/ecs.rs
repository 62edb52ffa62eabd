//! The ECS side of a host: its container instances (found by `ec2InstanceId`), setting them
//! DRAINING and deregistering them, through the same handlers the ECS API uses, so the service
//! controller sees an ordinary DRAINING instance and replaces its tasks.

use std::collections::HashMap;

use flotilla_api::handlers::container_instances;
use flotilla_api::{ApiResult, Ctx};
use flotilla_model::{DeregisterContainerInstanceRequest, UpdateContainerInstancesStateRequest};

/// One container instance of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub cluster: String,
    pub arn: String,
    /// `ACTIVE` or `DRAINING` (deregistered ones are left out).
    pub status: String,
    /// Tasks running or pending on it.
    pub tasks: i64,
}

/// The container instances that are not deregistered, by `ec2InstanceId`.
pub fn by_ec2_id(ctx: &Ctx) -> HashMap<String, Vec<Registered>> {
    let ix = ctx.cache.read();
    let mut out: HashMap<String, Vec<Registered>> = HashMap::new();
    for (key, e) in ix.instances.iter() {
        let ci = &e.value.instance;
        let status = ci.status.as_deref().unwrap_or("");
        let (Some(id), Some(arn)) = (ci.ec2_instance_id.as_deref(), ci.container_instance_arn.as_deref()) else {
            continue;
        };
        if status == "INACTIVE" {
            continue;
        }
        // Keys are `<prefix><cluster>/<id>`.
        let cluster = key.rsplit('/').nth(1).unwrap_or_default().to_string();
        let tasks = ix.instance_usage.get(arn).map_or(0, |u| u.running_tasks + u.pending_tasks);
        out.entry(id.to_string()).or_default().push(Registered {
            cluster,
            arn: arn.to_string(),
            status: status.to_string(),
            tasks,
        });
    }
    out
}

/// Sets the instance DRAINING (only an ACTIVE one can be).
pub async fn drain(ctx: &Ctx, ci: &Registered) -> ApiResult<()> {
    if ci.status != "ACTIVE" {
        return Ok(());
    }
    let req = UpdateContainerInstancesStateRequest {
        cluster: Some(ci.cluster.clone()),
        container_instances: Some(vec![ci.arn.clone()]),
        status: Some("DRAINING".into()),
    };
    container_instances::update_state(ctx, req).await?;
    tracing::info!(instance = %ci.arn, "container instance set DRAINING");
    Ok(())
}

/// Deregisters the instance even with tasks on it (its host is gone).
pub async fn deregister(ctx: &Ctx, ci: &Registered) -> ApiResult<()> {
    let req = DeregisterContainerInstanceRequest {
        cluster: Some(ci.cluster.clone()),
        container_instance: Some(ci.arn.clone()),
        force: Some(true),
    };
    match container_instances::deregister(ctx, req).await {
        // Already gone: what was wanted.
        Err(e) if e.code == "InvalidParameterException" || e.code == "ClusterNotFoundException" => Ok(()),
        other => other.map(|_| ()),
    }
}
