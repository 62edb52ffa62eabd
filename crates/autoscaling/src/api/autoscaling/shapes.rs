//! How Auto Scaling writes its shapes: `AutoScalingGroup` with its `Instances`, `Activity`,
//! `TagDescription`, `ScalingPolicy` and `AutoScalingInstanceDetails`, lists as `<member>`.

use flotilla_hosts::{Activity, AutoScalingGroup, Host, LaunchTemplateRef, ScalingPolicy, Tag};
use flotilla_query::Xml;

use crate::api::time::iso8601;

pub fn launch_template(x: &mut Xml, tag: &str, t: &LaunchTemplateRef) {
    x.elem(tag, |x| {
        x.leaf("LaunchTemplateId", &t.id).leaf("LaunchTemplateName", &t.name);
        x.leaf("Version", t.version.as_deref().unwrap_or("$Default"));
    });
}

pub fn tag(x: &mut Xml, group: &str, t: &Tag) {
    x.leaf("ResourceId", group)
        .leaf("ResourceType", "auto-scaling-group")
        .leaf("Key", &t.key)
        .leaf("Value", &t.value)
        .leaf("PropagateAtLaunch", t.propagate_at_launch.to_string());
}

pub fn group(x: &mut Xml, g: &AutoScalingGroup, hosts: &[&Host]) {
    x.leaf("AutoScalingGroupName", &g.name).leaf("AutoScalingGroupARN", &g.arn);
    if let Some(t) = &g.launch_template {
        launch_template(x, "LaunchTemplate", t);
    }
    if let Some(m) = &g.mixed_instances_policy {
        x.elem("MixedInstancesPolicy", |x| {
            x.elem("LaunchTemplate", |x| {
                launch_template(x, "LaunchTemplateSpecification", &m.launch_template);
                if !m.instance_types.is_empty() {
                    x.list("Overrides", "member", &m.instance_types, |x, t| {
                        x.leaf("InstanceType", t);
                    });
                }
            });
            let d = &m.distribution;
            x.elem("InstancesDistribution", |x| {
                x.leaf("OnDemandAllocationStrategy", &d.on_demand_allocation_strategy)
                    .leaf("OnDemandBaseCapacity", d.on_demand_base_capacity.to_string())
                    .leaf("OnDemandPercentageAboveBaseCapacity", d.on_demand_percentage_above_base_capacity.to_string())
                    .leaf("SpotAllocationStrategy", &d.spot_allocation_strategy)
                    .opt_leaf("SpotInstancePools", d.spot_instance_pools.map(|n| n.to_string()))
                    .opt_leaf("SpotMaxPrice", d.spot_max_price.as_deref());
            });
        });
    }
    x.leaf("MinSize", g.min_size.to_string())
        .leaf("MaxSize", g.max_size.to_string())
        .leaf("DesiredCapacity", g.desired_capacity.to_string())
        .leaf("DefaultCooldown", g.default_cooldown.to_string())
        .string_list("AvailabilityZones", "member", &g.availability_zones)
        .elem("LoadBalancerNames", |_| {})
        .elem("TargetGroupARNs", |_| {})
        .leaf("HealthCheckType", &g.health_check_type)
        .leaf("HealthCheckGracePeriod", g.health_check_grace_period.to_string())
        .list("Instances", "member", hosts, |x, h| instance(x, h))
        .leaf("CreatedTime", iso8601(g.created_at_ms))
        .elem("SuspendedProcesses", |_| {})
        .leaf("VPCZoneIdentifier", g.subnet_ids.join(","))
        .elem("EnabledMetrics", |_| {})
        .opt_leaf("Status", g.status.as_deref())
        .list("Tags", "member", &g.tags, |x, t| tag(x, &g.name, t))
        .string_list("TerminationPolicies", "member", ["Default"])
        .leaf("NewInstancesProtectedFromScaleIn", g.new_instances_protected_from_scale_in.to_string())
        .leaf("CapacityRebalance", g.capacity_rebalance.to_string());
}

/// An `Instance` inside a group.
pub fn instance(x: &mut Xml, h: &Host) {
    x.leaf("InstanceId", &h.instance_id)
        .leaf("InstanceType", &h.instance_type)
        .leaf("AvailabilityZone", &h.availability_zone)
        .leaf("LifecycleState", h.lifecycle.as_str())
        .leaf("HealthStatus", &h.health);
    if let Some(t) = &h.launch_template {
        launch_template(x, "LaunchTemplate", t);
    }
    x.leaf("ProtectedFromScaleIn", h.protected_from_scale_in.to_string());
}

/// `AutoScalingInstanceDetails`: an instance with its group's name.
pub fn instance_details(x: &mut Xml, h: &Host) {
    x.leaf("InstanceId", &h.instance_id)
        .leaf("InstanceType", &h.instance_type)
        .leaf("AutoScalingGroupName", h.group.as_deref().unwrap_or_default())
        .leaf("AvailabilityZone", &h.availability_zone)
        .leaf("LifecycleState", h.lifecycle.as_str())
        .leaf("HealthStatus", health_upper(&h.health));
    if let Some(t) = &h.launch_template {
        launch_template(x, "LaunchTemplate", t);
    }
    x.leaf("ProtectedFromScaleIn", h.protected_from_scale_in.to_string());
}

/// DescribeAutoScalingInstances says `HEALTHY`/`UNHEALTHY` where groups say `Healthy`.
fn health_upper(health: &str) -> String {
    health.to_uppercase()
}

pub fn activity(x: &mut Xml, a: &Activity, group_arn: Option<&str>) {
    x.leaf("ActivityId", &a.activity_id)
        .leaf("AutoScalingGroupName", &a.group)
        .leaf("Description", &a.description)
        .leaf("Cause", &a.cause)
        .leaf("StartTime", iso8601(a.started_at_ms))
        .opt_leaf("EndTime", a.ended_at_ms.map(iso8601))
        .leaf("StatusCode", &a.status_code)
        .opt_leaf("StatusMessage", a.status_message.as_deref())
        .leaf("Progress", a.progress.to_string())
        .opt_leaf("Details", a.details.as_deref())
        .opt_leaf("AutoScalingGroupARN", group_arn);
}

pub fn policy(x: &mut Xml, group: &str, p: &ScalingPolicy) {
    x.leaf("AutoScalingGroupName", group)
        .leaf("PolicyName", &p.name)
        .leaf("PolicyARN", &p.arn)
        .leaf("PolicyType", &p.policy_type)
        .elem("TargetTrackingConfiguration", |x| {
            x.elem("CustomizedMetricSpecification", |x| {
                x.leaf("MetricName", &p.metric_name).leaf("Namespace", &p.metric_namespace);
                x.list("Dimensions", "member", &p.metric_dimensions, |x, (n, v)| {
                    x.leaf("Name", n).leaf("Value", v);
                });
                x.leaf("Statistic", "Average");
            })
            .leaf("TargetValue", p.target_value.to_string())
            .leaf("DisableScaleIn", p.disable_scale_in.to_string());
        })
        .elem("Alarms", |_| {})
        .leaf("Enabled", "true");
}
