//! Managed scaling, once per scaling period: for each capacity provider with managed scaling on a
//! cluster, CapacityProviderReservation is measured ([`super::reservation`]) and exported, and
//! the group's desired capacity follows it as target tracking does: out after one period above
//! `targetCapacity` (by at least `minimumScalingStepSize` and at most `maximumScalingStepSize`
//! hosts, and not while a host is within `instanceWarmupPeriod` of its launch), in after
//! `SCALE_IN_PERIODS` periods below it (by at most half the group at a time, never under the
//! group's minimum). Managed termination protection keeps every host that runs a non-daemon task
//! protected from scale-in, and lets the empty ones go. The target-tracking policy and the
//! `AmazonECSManaged` tag are kept on the group, as ECS keeps them.

use std::collections::HashMap;

use flotilla_hosts::{keys as host_keys, AutoScalingGroup, Host, Lifecycle, ScalingPolicy, Tag};
use flotilla_model::{CapacityProvider, ManagedScaling};
use flotilla_store::{Compare, Op, Txn};

use super::reservation::{desired_for, measure, HostRoom, Need, Reservation};
use super::waiting::waiting_in;
use crate::context::Ctx;
use crate::domain::association::policy_of;
use crate::domain::hosts::{self, Read};
use crate::error::ApiResult;
use crate::state::cache::{range_prefix, Indexes};
use crate::state::keys;

/// Periods the metric must stay below target before the group scales in (ECS's 15 minutes).
pub const SCALE_IN_PERIODS: u32 = 15;

/// What the loop remembers between periods: how many periods each provider has been below target.
#[derive(Debug, Default)]
pub struct Memory {
    below: HashMap<(String, String), u32>,
}

/// One provider of one cluster, with what the period needs of it.
struct Subject {
    cluster: String,
    provider: CapacityProvider,
    scaling: ManagedScaling,
    policy_name: Option<String>,
}

/// One scaling period over every cluster.
pub async fn period(ctx: &Ctx, memory: &mut Memory) -> ApiResult<()> {
    let subjects = subjects(&ctx.cache.read());
    if subjects.is_empty() {
        return Ok(());
    }
    let all_hosts = hosts::hosts(ctx).await?;
    for s in subjects {
        let asg = s.provider.auto_scaling_group_provider.as_ref().and_then(|a| a.auto_scaling_group_arn.clone());
        let Some(group) = hosts::group(ctx, asg.as_deref().unwrap_or_default()).await? else { continue };
        if group.value.is_deleting() {
            continue;
        }
        let name = s.provider.name.clone().unwrap_or_default();
        let live: Vec<&Read<Host>> = all_hosts
            .iter()
            .filter(|h| h.value.group.as_deref() == Some(group.value.name.as_str()))
            .filter(|h| matches!(h.value.lifecycle, Lifecycle::Pending | Lifecycle::InService))
            .collect();
        let fresh = fresh_room(ctx, &group.value).await?;
        let (rooms, busy_hosts, waiting) = {
            let ix = ctx.cache.read();
            let (rooms, busy) = rooms_of(&ix, &s.cluster, &name);
            let waiting: Vec<Need> = waiting_in(&ix, &s.cluster)
                .into_iter()
                .filter(|w| w.provider == name)
                .map(|w| Need { cpu: w.cpu, memory: w.memory })
                .collect();
            (rooms, busy, waiting)
        };
        let r = measure(live.len() as u32, &rooms, &waiting, fresh.unwrap_or(Need { cpu: 0, memory: 0 }));
        ctx.gauges.set_reservation(&s.cluster, &name, r.percent());
        let desired = next_desired(ctx, memory, &s, &group.value, &live, r);
        let protection = s
            .provider
            .auto_scaling_group_provider
            .as_ref()
            .is_some_and(|p| p.managed_termination_protection.as_deref() == Some("ENABLED"));
        if protection {
            protect(ctx, &live, &busy_hosts).await?;
        }
        keep_group(ctx, &group, &s, desired).await?;
    }
    Ok(())
}

/// Every associated provider with managed scaling, with the policy name its attachment gives.
fn subjects(ix: &Indexes) -> Vec<Subject> {
    let mut out = Vec::new();
    for (_, c) in range_prefix(&ix.clusters, keys::CLUSTER) {
        if c.value.status.as_deref() != Some("ACTIVE") {
            continue;
        }
        let cluster = c.value.cluster_name.clone().unwrap_or_default();
        for name in c.value.capacity_providers.iter().flatten() {
            let Some(p) = crate::domain::capacity::active_provider(ix, name) else { continue };
            let Some(scaling) = p.auto_scaling_group_provider.as_ref().and_then(|a| a.managed_scaling.clone()) else {
                continue;
            };
            if scaling.status.as_deref() != Some("ENABLED") {
                continue;
            }
            let policy_name = c
                .value
                .attachments
                .iter()
                .flatten()
                .filter_map(policy_of)
                .find(|(p, _)| p == name)
                .map(|(_, policy)| policy.to_string());
            out.push(Subject { cluster: cluster.clone(), provider: p.clone(), scaling, policy_name });
        }
    }
    out
}

/// The provider's registered instances in `cluster` as the metric sees them, and the EC2 ids of
/// the ones that run a non-daemon task.
fn rooms_of(ix: &Indexes, cluster: &str, provider: &str) -> (Vec<HostRoom>, Vec<String>) {
    let mut rooms = Vec::new();
    let mut busy_ids = Vec::new();
    let prefix = format!("{}{cluster}/", keys::INSTANCE);
    for (_, e) in range_prefix(&ix.instances, &prefix) {
        let ci = &e.value.instance;
        if ci.capacity_provider_name.as_deref() != Some(provider) {
            continue;
        }
        let status = ci.status.as_deref().unwrap_or_default();
        if status != "ACTIVE" && status != "DRAINING" {
            continue;
        }
        let arn = ci.container_instance_arn.as_deref().unwrap_or_default();
        let usage = ix.instance_usage.get(arn);
        let busy = usage.is_some_and(|u| u.groups.iter().any(|(g, n)| *n > 0 && !is_daemon_group(ix, cluster, g)));
        let int = |name: &str| {
            let r = ci.registered_resources.iter().flatten().find(|r| r.name.as_deref() == Some(name));
            r.and_then(|r| r.integer_value).unwrap_or(0) as i64
        };
        rooms.push(HostRoom {
            busy,
            accepts: status == "ACTIVE" && ci.agent_connected.unwrap_or(false),
            cpu_left: int("CPU") - usage.map_or(0, |u| u.cpu),
            memory_left: int("MEMORY") - usage.map_or(0, |u| u.memory),
        });
        if busy {
            busy_ids.extend(ci.ec2_instance_id.clone());
        }
    }
    (rooms, busy_ids)
}

fn is_daemon_group(ix: &Indexes, cluster: &str, group: &str) -> bool {
    let Some(name) = group.strip_prefix("service:") else { return false };
    ix.services
        .get(&keys::service(cluster, name))
        .is_some_and(|s| s.value.scheduling_strategy.as_deref() == Some("DAEMON"))
}

/// What a fresh host of the group offers: its instance type's CPU and memory as its agent
/// registers them (less `ECS_RESERVED_MEMORY` from the launch template's user data).
async fn fresh_room(ctx: &Ctx, group: &AutoScalingGroup) -> ApiResult<Option<Need>> {
    let Some(template_ref) = group.template_ref() else { return Ok(None) };
    let key = host_keys::launch_template(&template_ref.id);
    let Some(kv) = ctx.store.get(&key).await.map_err(|e| crate::error::ApiError::server(e.to_string()))? else {
        return Ok(None);
    };
    let Ok(template) = flotilla_hosts::codec::decode::<flotilla_hosts::LaunchTemplate>(&kv.value) else {
        return Ok(None);
    };
    let templates = std::collections::HashMap::from([(template.id.clone(), template)]);
    // What the group loop would launch; a template it cannot launch from adds no room.
    Ok(flotilla_hosts::template::resolve(group, &templates)
        .ok()
        .map(|t| Need { cpu: i64::from(t.cpu), memory: i64::from(t.memory) }))
}

/// The desired capacity target tracking asks for this period, or `None` to leave it.
fn next_desired(
    ctx: &Ctx,
    memory: &mut Memory,
    s: &Subject,
    group: &AutoScalingGroup,
    live: &[&Read<Host>],
    r: Reservation,
) -> Option<u32> {
    let target = s.scaling.target_capacity.unwrap_or(100).clamp(1, 100) as u32;
    let key = (s.cluster.clone(), s.provider.name.clone().unwrap_or_default());
    let percent = r.percent();
    let n = live.len() as u32;
    let wanted = desired_for(r, target);
    if percent > f64::from(target) {
        memory.below.remove(&key);
        let warmup_ms = i64::from(s.scaling.instance_warmup_period.unwrap_or(300)) * 1000;
        let now = ctx.now().as_millis();
        if live.iter().any(|h| now - h.value.launched_at_ms < warmup_ms) {
            return None;
        }
        let min_step = s.scaling.minimum_scaling_step_size.unwrap_or(1).max(1) as u32;
        let max_step = s.scaling.maximum_scaling_step_size.unwrap_or(10_000).max(1) as u32;
        let step = wanted.saturating_sub(n).clamp(min_step, max_step.max(min_step));
        let desired = (n + step).min(group.max_size);
        return (desired > group.desired_capacity).then_some(desired);
    }
    if percent < f64::from(target) {
        let periods = memory.below.entry(key).or_insert(0);
        *periods += 1;
        if *periods < SCALE_IN_PERIODS {
            return None;
        }
        let floor = n.saturating_sub((n / 2).max(1));
        let desired = wanted.max(floor).max(group.min_size);
        return (desired < group.desired_capacity).then_some(desired);
    }
    memory.below.remove(&key);
    None
}

/// Managed termination protection: hosts running non-daemon tasks are protected from scale-in,
/// registered empty ones are not; hosts not yet registered keep what they launched with.
async fn protect(ctx: &Ctx, live: &[&Read<Host>], busy: &[String]) -> ApiResult<()> {
    let registered: Vec<String> = {
        let ix = ctx.cache.read();
        ix.instances.values().filter_map(|e| e.value.instance.ec2_instance_id.clone()).collect()
    };
    for h in live {
        let id = &h.value.instance_id;
        if !registered.contains(id) {
            continue;
        }
        let want = busy.contains(id);
        if h.value.protected_from_scale_in == want {
            continue;
        }
        let mut host = h.value.clone();
        host.protected_from_scale_in = want;
        let key = host_keys::host(id);
        // A lost race leaves it to the next period, which reads the host again.
        ctx.commit(
            Txn::new()
                .when(Compare::unchanged(&key, h.revision))
                .then(Op::put(&key, flotilla_hosts::codec::encode(&host))),
        )
        .await?;
    }
    Ok(())
}

/// Writes the group's new desired capacity, its managed policy and its `AmazonECSManaged` tag,
/// when any of them differs from what is stored.
async fn keep_group(ctx: &Ctx, group: &Read<AutoScalingGroup>, s: &Subject, desired: Option<u32>) -> ApiResult<()> {
    let mut g = group.value.clone();
    if let Some(d) = desired {
        tracing::info!(group = %g.name, from = g.desired_capacity, to = d, "managed scaling sets the desired capacity");
        g.desired_capacity = d;
    }
    if let Some(name) = &s.policy_name {
        let policy = ScalingPolicy {
            name: name.clone(),
            arn: format!(
                "arn:aws:autoscaling:{}:{}:scalingPolicy:{}:autoScalingGroupName/{}:policyName/{name}",
                ctx.arns.region,
                ctx.arns.account,
                uuid::Uuid::new_v4(),
                g.name
            ),
            policy_type: "TargetTrackingScaling".into(),
            target_value: f64::from(s.scaling.target_capacity.unwrap_or(100)),
            metric_name: "CapacityProviderReservation".into(),
            metric_namespace: "AWS/ECS/ManagedScaling".into(),
            metric_dimensions: vec![
                ("ClusterName".into(), s.cluster.clone()),
                ("CapacityProviderName".into(), s.provider.name.clone().unwrap_or_default()),
            ],
            disable_scale_in: false,
        };
        match g.policies.iter_mut().find(|p| p.name == *name) {
            Some(p) if p.target_value == policy.target_value && p.metric_dimensions == policy.metric_dimensions => {}
            Some(p) => {
                p.target_value = policy.target_value;
                p.metric_dimensions = policy.metric_dimensions;
            }
            None => g.policies.push(policy),
        }
    }
    if !g.tags.iter().any(|t| t.key == "AmazonECSManaged") {
        g.tags.push(Tag { key: "AmazonECSManaged".into(), value: String::new(), propagate_at_launch: true });
    }
    if g == group.value {
        return Ok(());
    }
    let key = host_keys::group(&g.name);
    ctx.commit(
        Txn::new()
            .when(Compare::unchanged(&key, group.revision))
            .then(Op::put(&key, flotilla_hosts::codec::encode(&g))),
    )
    .await?;
    Ok(())
}
