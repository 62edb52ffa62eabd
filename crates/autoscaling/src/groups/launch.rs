//! Launching one host for a group: work out what to launch from the group's launch template
//! (instance type, `ECS_*` settings of the user data, cluster), write the Host record (Pending)
//! and its activity in one transaction BEFORE the provisioner is called, so a pass that comes
//! while the launch is under way counts the host and launches no second one; then call the
//! provisioner and mark the host InService, or take it back out and fail the activity.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use flotilla_api::identity::tokens;
use flotilla_api::Ctx;
use flotilla_hosts::network::Subnet;
use flotilla_hosts::{keys, Activity, AutoScalingGroup, Host, Lifecycle};
use flotilla_store::{Compare, Op, Txn};

use super::records::encode;
use super::{activities, Shared};
use crate::provision::{new_instance_id, LaunchSpec};

/// How long a join token minted for one launch stays valid.
const JOIN_TOKEN_TTL_SECS: u64 = 900;
/// Addresses a default subnet (a /20) can hand out past its first host address.
const SUBNET_ADDRESSES: u32 = 4091;

pub use flotilla_hosts::template::{resolve, Template};

/// The first address of `subnet` no live host has.
pub fn free_address(subnet: &Subnet, used: &HashSet<String>) -> Option<String> {
    let first = u32::from(Ipv4Addr::from(subnet.first_host));
    (0..SUBNET_ADDRESSES).map(|i| Ipv4Addr::from(first + i).to_string()).find(|a| !used.contains(a))
}

/// Everything one launch needs.
pub struct Launch {
    pub group: AutoScalingGroup,
    /// The group's revision as read: the launch is written only if it is unchanged.
    pub group_revision: flotilla_store::Revision,
    pub template: Template,
    pub subnet: Subnet,
    pub private_ip: String,
    pub spot: bool,
}

/// The Host record of a launch, Pending.
fn pending_host(l: &Launch, instance_id: &str, now_ms: i64) -> Host {
    Host {
        instance_id: instance_id.to_string(),
        group: Some(l.group.name.clone()),
        instance_type: l.template.instance_type.clone(),
        availability_zone: l.subnet.availability_zone.clone(),
        subnet_id: l.subnet.subnet_id.clone(),
        private_ip: l.private_ip.clone(),
        spot: l.spot,
        lifecycle: Lifecycle::Pending,
        health: "Healthy".into(),
        protected_from_scale_in: l.group.new_instances_protected_from_scale_in,
        launched_at_ms: now_ms,
        terminated_at_ms: None,
        launch_template: l.group.template_ref().cloned(),
        cluster: l.template.cluster.clone(),
        provisioner_handle: None,
        interruption: None,
        tags: l.group.tags.iter().filter(|t| t.propagate_at_launch).cloned().collect(),
        spot_instance_draining: l.template.ecs_config.spot_instance_draining,
        drain_started_at_ms: None,
        termination_cause: None,
    }
}

/// Writes the Pending host and its activity, then launches it in the background. Returns
/// whether the records were written (a lost race leaves the next pass to decide again).
pub async fn start(ctx: &Ctx, shared: &Arc<Shared>, l: Launch) -> flotilla_api::ApiResult<bool> {
    let now = ctx.clock.now_ms();
    let id = new_instance_id();
    let host = pending_host(&l, &id, now);
    let (akey, activity) = activities::new(
        &l.group.name,
        format!("Launching a new EC2 instance: {id}"),
        format!(
            "At {} an instance was started in response to a difference between desired and actual capacity, increasing the capacity to meet the desired capacity.",
            activities::rfc3339(now)
        ),
        now,
    );
    let hkey = keys::host(&id);
    // The group must still be as read: a group deleted or changed meanwhile gets no new host.
    let txn = Txn::new()
        .when(Compare::unchanged(keys::group(&l.group.name), l.group_revision))
        .when(Compare::absent(&hkey))
        .then(Op::put(&hkey, encode(&host)));
    let txn = activities::create_ops(txn, &akey, &activity);
    if ctx.commit(txn).await?.is_none() {
        return Ok(false);
    }
    shared.begin(&id);
    let spec = LaunchSpec {
        instance_id: id.clone(),
        instance_type: host.instance_type.clone(),
        cpu: l.template.cpu,
        memory: l.template.memory,
        availability_zone: host.availability_zone.clone(),
        subnet_id: host.subnet_id.clone(),
        private_ip_address: host.private_ip.clone(),
        spot: host.spot,
        cluster: host.cluster.clone(),
        ecs_config: l.template.ecs_config.clone(),
    };
    let (ctx, shared) = (ctx.clone(), shared.clone());
    let group = l.group.name.clone();
    tokio::spawn(async move {
        let outcome = run(&ctx, &shared, &spec).await;
        if let Err(e) = finish(&ctx, &shared, &group, &host, akey, activity, outcome).await {
            tracing::warn!(instance = %spec.instance_id, error = %e, "recording a launch failed; the next pass looks again");
        }
        shared.end(&spec.instance_id);
    });
    Ok(true)
}

/// Mints a join token if the provisioner wants one, and launches.
async fn run(ctx: &Ctx, shared: &Shared, spec: &LaunchSpec) -> Result<Option<String>, String> {
    let token = if shared.provisioner.wants_join_token() {
        let signer =
            shared.settings.join_tokens.as_ref().ok_or(
                "This server cannot mint join tokens for new hosts (no root secret was given to the group loop).",
            )?;
        let (_, token) = tokens::create(ctx, signer, &spec.cluster, JOIN_TOKEN_TTL_SECS)
            .await
            .map_err(|e| format!("Minting a join token for cluster {} failed: {}", spec.cluster, e.message))?;
        Some(token)
    } else {
        None
    };
    let launched = shared.provisioner.launch(spec, token.as_deref()).await.map_err(|e| e.to_string())?;
    Ok(launched.handle)
}

/// Records how a launch went: the host InService (or gone), the activity ended, the back-off.
async fn finish(
    ctx: &Ctx,
    shared: &Shared,
    group: &str,
    host: &Host,
    akey: String,
    activity: Activity,
    outcome: Result<Option<String>, String>,
) -> flotilla_api::ApiResult<()> {
    let id = host.instance_id.as_str();
    match outcome {
        Ok(handle) => {
            shared.launch_succeeded(group);
            let updated = super::records::update_host(ctx, id, |h| {
                h.provisioner_handle = handle.clone();
                if h.lifecycle == Lifecycle::Pending {
                    h.lifecycle = Lifecycle::InService;
                }
                true
            })
            .await?;
            if updated.is_none() {
                // The record went while the host came up: take the host down again.
                tracing::warn!(instance = %id, "a launched host's record is gone; terminating it");
                let gone = Host { provisioner_handle: handle.clone(), ..host.clone() };
                if let Err(e) = shared.provisioner.terminate(&gone).await {
                    tracing::warn!(instance = %id, error = %e, "terminating an orphaned host failed");
                }
            }
            activities::finish(ctx, &akey, activity, None).await
        }
        Err(message) => {
            tracing::warn!(group, instance = %id, %message, "launch failed");
            shared.launch_failed(group, ctx.clock.now_ms());
            // A host that never came up is not kept: it never existed as far as EC2 would say.
            let key = keys::host(id);
            if let Some(h) = super::records::host(ctx, id).await? {
                ctx.commit(Txn::new().when(Compare::unchanged(&key, h.revision)).then(Op::delete(&key))).await?;
            }
            activities::finish(ctx, &akey, activity, Some(message)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use flotilla_hosts::{LaunchTemplate, LaunchTemplateRef, LaunchTemplateVersion, MixedInstancesPolicy};

    fn template(user_data: &str, instance_type: Option<&str>) -> LaunchTemplate {
        LaunchTemplate {
            id: "lt-1".into(),
            name: "ecs".into(),
            created_at_ms: 0,
            default_version: 1,
            versions: vec![LaunchTemplateVersion {
                number: 1,
                description: None,
                created_at_ms: 0,
                instance_type: instance_type.map(String::from),
                user_data: Some(base64::engine::general_purpose::STANDARD.encode(user_data)),
                image_id: None,
                security_group_ids: vec![],
                other: Default::default(),
            }],
            tags: vec![],
        }
    }

    fn group() -> AutoScalingGroup {
        serde_json::from_value(serde_json::json!({
            "name": "g", "arn": "a", "created_at_ms": 0,
            "launch_template": {"id": "lt-1", "name": "ecs"},
            "min_size": 0, "max_size": 4, "desired_capacity": 1, "availability_zones": ["us-east-1a"]
        }))
        .unwrap()
    }

    #[test]
    fn the_template_gives_type_resources_and_cluster() {
        let ts = [("lt-1".to_string(), template("ECS_CLUSTER=demo\nECS_RESERVED_MEMORY=256\n", Some("m5.large")))]
            .into_iter()
            .collect();
        let t = resolve(&group(), &ts).unwrap();
        assert_eq!((t.instance_type.as_str(), t.cpu, t.memory, t.cluster.as_str()), ("m5.large", 2048, 7424, "demo"));
        // The first override wins over the template's type; no ECS_CLUSTER means default.
        let ts = [("lt-1".to_string(), template("", Some("m5.large")))].into_iter().collect();
        let mut g = group();
        g.mixed_instances_policy = Some(MixedInstancesPolicy {
            launch_template: LaunchTemplateRef { id: "lt-1".into(), name: "ecs".into(), version: None },
            instance_types: vec!["x9.unknown".into(), "c5.xlarge".into(), "m5.large".into()],
            distribution: Default::default(),
        });
        g.launch_template = None;
        let t = resolve(&g, &ts).unwrap();
        assert_eq!((t.instance_type.as_str(), t.cluster.as_str()), ("c5.xlarge", "default"));
    }

    #[test]
    fn bad_templates_say_why() {
        let none = std::collections::HashMap::new();
        assert!(resolve(&group(), &none).unwrap_err().contains("does not exist"));
        let ts = [("lt-1".to_string(), template("", Some("m9.gigantic")))].into_iter().collect();
        assert!(resolve(&group(), &ts).unwrap_err().contains("m9.gigantic"));
        let ts = [("lt-1".to_string(), template("ECS_RESERVED_MEMORY=lots", Some("m5.large")))].into_iter().collect();
        assert!(resolve(&group(), &ts).unwrap_err().contains("ECS_RESERVED_MEMORY"));
    }

    #[test]
    fn addresses_are_not_reused() {
        let vpc = flotilla_hosts::network::default_vpc("us-east-1");
        let s = &vpc.subnets[1];
        let used: HashSet<String> = ["172.31.16.4".to_string()].into_iter().collect();
        assert_eq!(free_address(s, &used).unwrap(), "172.31.16.5");
    }
}
