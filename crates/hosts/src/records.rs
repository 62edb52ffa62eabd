//! The stored records, serialized as JSON under the keys of [`crate::keys`]. Times are Unix
//! milliseconds.

use serde::{Deserialize, Serialize};

/// A key/value tag as EC2 and Auto Scaling keep them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
    /// Auto Scaling only: whether hosts launched by the group carry the tag too.
    #[serde(default)]
    pub propagate_at_launch: bool,
}

/// An EC2 launch template and its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchTemplate {
    /// `lt-` and 17 hex digits.
    pub id: String,
    pub name: String,
    pub created_at_ms: i64,
    pub default_version: u32,
    /// Versions in order, numbered from 1.
    pub versions: Vec<LaunchTemplateVersion>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchTemplateVersion {
    pub number: u32,
    #[serde(default)]
    pub description: Option<String>,
    pub created_at_ms: i64,
    #[serde(default)]
    pub instance_type: Option<String>,
    /// Base64 as given; decoded with [`crate::ecs_config::parse`] when a host launches.
    #[serde(default)]
    pub user_data: Option<String>,
    #[serde(default)]
    pub image_id: Option<String>,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    /// Everything else in `LaunchTemplateData`, kept to be described back as given.
    #[serde(default)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl LaunchTemplate {
    pub fn latest_version(&self) -> u32 {
        self.versions.last().map(|v| v.number).unwrap_or(0)
    }

    /// The version a reference names: a number, `$Latest` or `$Default` (absent means default).
    pub fn version(&self, reference: Option<&str>) -> Option<&LaunchTemplateVersion> {
        let n = match reference {
            None | Some("$Default") => self.default_version,
            Some("$Latest") => self.latest_version(),
            Some(n) => n.parse().ok()?,
        };
        self.versions.iter().find(|v| v.number == n)
    }
}

/// How a group names its launch template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplateRef {
    pub id: String,
    pub name: String,
    /// `$Latest`, `$Default` or a number, as given (absent means `$Default`).
    #[serde(default)]
    pub version: Option<String>,
}

/// `MixedInstancesPolicy`: the template, the instance types it may launch and the Spot split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixedInstancesPolicy {
    pub launch_template: LaunchTemplateRef,
    /// `Overrides[].InstanceType`, in priority order; empty means the template's type.
    #[serde(default)]
    pub instance_types: Vec<String>,
    pub distribution: InstancesDistribution,
}

/// `InstancesDistribution` with Auto Scaling's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstancesDistribution {
    /// Default `prioritized`.
    pub on_demand_allocation_strategy: String,
    /// Default 0.
    pub on_demand_base_capacity: u32,
    /// Default 100 (all on-demand).
    pub on_demand_percentage_above_base_capacity: u32,
    /// Default `lowest-price`.
    pub spot_allocation_strategy: String,
    #[serde(default)]
    pub spot_instance_pools: Option<u32>,
    #[serde(default)]
    pub spot_max_price: Option<String>,
}

impl Default for InstancesDistribution {
    fn default() -> Self {
        InstancesDistribution {
            on_demand_allocation_strategy: "prioritized".into(),
            on_demand_base_capacity: 0,
            on_demand_percentage_above_base_capacity: 100,
            spot_allocation_strategy: "lowest-price".into(),
            spot_instance_pools: None,
            spot_max_price: None,
        }
    }
}

impl InstancesDistribution {
    /// Whether the host launched when the group already has `on_demand` on-demand and `spot` Spot
    /// hosts should be Spot: the base is on-demand, then the percentage above it.
    pub fn next_is_spot(&self, on_demand: u32, spot: u32) -> bool {
        if on_demand < self.on_demand_base_capacity {
            return false;
        }
        let above = (on_demand - self.on_demand_base_capacity) + spot + 1;
        let want_on_demand = (above * self.on_demand_percentage_above_base_capacity).div_ceil(100);
        on_demand - self.on_demand_base_capacity >= want_on_demand
    }
}

/// An Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoScalingGroup {
    pub name: String,
    /// `arn:aws:autoscaling:<region>:<account>:autoScalingGroup:<uuid>:autoScalingGroupName/<name>`.
    pub arn: String,
    pub created_at_ms: i64,
    /// Exactly one of `launch_template` and `mixed_instances_policy` is set.
    #[serde(default)]
    pub launch_template: Option<LaunchTemplateRef>,
    #[serde(default)]
    pub mixed_instances_policy: Option<MixedInstancesPolicy>,
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: u32,
    /// `VPCZoneIdentifier` split on commas: subnet ids of the default VPC.
    #[serde(default)]
    pub subnet_ids: Vec<String>,
    /// The zones hosts are spread over (from the subnets, or `AvailabilityZones`).
    pub availability_zones: Vec<String>,
    #[serde(default)]
    pub new_instances_protected_from_scale_in: bool,
    #[serde(default = "default_cooldown")]
    pub default_cooldown: u32,
    #[serde(default = "default_health_check_type")]
    pub health_check_type: String,
    #[serde(default)]
    pub health_check_grace_period: u32,
    #[serde(default)]
    pub capacity_rebalance: bool,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// `Delete in progress` once DeleteAutoScalingGroup has begun.
    #[serde(default)]
    pub status: Option<String>,
    /// Scaling policies (the target-tracking one managed scaling creates).
    #[serde(default)]
    pub policies: Vec<ScalingPolicy>,
}

fn default_cooldown() -> u32 {
    300
}
fn default_health_check_type() -> String {
    "EC2".into()
}

impl AutoScalingGroup {
    /// The template this group launches from, whichever way it names it.
    pub fn template_ref(&self) -> Option<&LaunchTemplateRef> {
        self.launch_template.as_ref().or(self.mixed_instances_policy.as_ref().map(|m| &m.launch_template))
    }

    pub fn is_deleting(&self) -> bool {
        self.status.is_some()
    }
}

/// A scaling policy attached to a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingPolicy {
    pub name: String,
    pub arn: String,
    /// `TargetTrackingScaling`.
    pub policy_type: String,
    /// For managed scaling: the capacity provider's `targetCapacity`.
    pub target_value: f64,
    /// The metric it tracks (`CapacityProviderReservation`) and its dimensions.
    pub metric_name: String,
    pub metric_namespace: String,
    #[serde(default)]
    pub metric_dimensions: Vec<(String, String)>,
    #[serde(default)]
    pub disable_scale_in: bool,
}

/// Where a host is in its life, as Auto Scaling's `LifecycleState` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lifecycle {
    Pending,
    InService,
    Terminating,
    Terminated,
}

impl Lifecycle {
    /// Auto Scaling's `LifecycleState`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Lifecycle::Pending => "Pending",
            Lifecycle::InService => "InService",
            Lifecycle::Terminating => "Terminating",
            Lifecycle::Terminated => "Terminated",
        }
    }

    /// EC2's `InstanceState` name and code.
    pub fn ec2_state(&self) -> (&'static str, i32) {
        match self {
            Lifecycle::Pending => ("pending", 0),
            Lifecycle::InService => ("running", 16),
            Lifecycle::Terminating => ("shutting-down", 32),
            Lifecycle::Terminated => ("terminated", 48),
        }
    }
}

/// A Spot interruption notice given to a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interruption {
    /// `terminate`, `stop` or `hibernate`, as EC2's instance-action says.
    pub action: String,
    pub noticed_at_ms: i64,
    /// When the host goes away.
    pub deadline_ms: i64,
}

/// A host: an EC2 instance launched by a group (or on its own), running a `flotilla agent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// `i-` and 17 hex digits; the container instance's `ec2InstanceId`.
    pub instance_id: String,
    /// The group that launched it.
    #[serde(default)]
    pub group: Option<String>,
    pub instance_type: String,
    pub availability_zone: String,
    pub subnet_id: String,
    pub private_ip: String,
    pub spot: bool,
    pub lifecycle: Lifecycle,
    /// `Healthy` or `Unhealthy`.
    pub health: String,
    pub protected_from_scale_in: bool,
    pub launched_at_ms: i64,
    #[serde(default)]
    pub terminated_at_ms: Option<i64>,
    pub launch_template: Option<LaunchTemplateRef>,
    /// The cluster its agent joins (`ECS_CLUSTER`, else `default`).
    pub cluster: String,
    /// What the provisioner needs to find the host again (a process id, a handle of its own).
    #[serde(default)]
    pub provisioner_handle: Option<String>,
    #[serde(default)]
    pub interruption: Option<Interruption>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// `ECS_ENABLE_SPOT_INSTANCE_DRAINING=true` in its user data: a Spot interruption notice sets
    /// its container instance DRAINING at once.
    #[serde(default)]
    pub spot_instance_draining: bool,
    /// When the group loop set its container instance DRAINING on the way to terminating it
    /// (managed draining): the wait for its tasks to stop is bounded from here.
    #[serde(default)]
    pub drain_started_at_ms: Option<i64>,
    /// Why it is being terminated, for the scaling activity (set by whoever marks it Terminating).
    #[serde(default)]
    pub termination_cause: Option<String>,
}

/// A scaling activity, as DescribeScalingActivities shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    pub activity_id: String,
    pub group: String,
    pub description: String,
    pub cause: String,
    pub started_at_ms: i64,
    #[serde(default)]
    pub ended_at_ms: Option<i64>,
    /// `InProgress`, `Successful`, `Failed`, `Cancelled`, ...
    pub status_code: String,
    #[serde(default)]
    pub status_message: Option<String>,
    pub progress: u32,
    #[serde(default)]
    pub details: Option<String>,
}

/// Keeps the keys of activities started in the same millisecond apart and in order.
static ACTIVITY_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Activity {
    /// A new activity of `group`, `InProgress` since `now_ms`, and its key, which orders by time
    /// (whoever starts it: a user's request or the group loop).
    pub fn start(group: &str, description: String, cause: String, now_ms: i64) -> (String, Activity) {
        let seq = ACTIVITY_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1000;
        let activity = Activity {
            activity_id: uuid::Uuid::new_v4().to_string(),
            group: group.to_string(),
            description,
            cause,
            started_at_ms: now_ms,
            ended_at_ms: None,
            status_code: "InProgress".into(),
            status_message: None,
            progress: 0,
            details: None,
        };
        (crate::keys::activity(group, (now_ms.max(0) as u64) * 1000 + seq), activity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_keeps_the_base_on_demand_then_the_percentage() {
        let spot_only = InstancesDistribution { on_demand_percentage_above_base_capacity: 0, ..Default::default() };
        assert!(spot_only.next_is_spot(0, 0));
        assert!(!InstancesDistribution::default().next_is_spot(3, 0));
        let half = InstancesDistribution {
            on_demand_base_capacity: 1,
            on_demand_percentage_above_base_capacity: 50,
            ..Default::default()
        };
        assert!(!half.next_is_spot(0, 0)); // the base
        assert!(!half.next_is_spot(1, 0)); // 1 above base: 50% rounds up to one on-demand
        assert!(half.next_is_spot(2, 0));
        assert!(!half.next_is_spot(2, 1));
    }

    #[test]
    fn template_versions_resolve() {
        let v = |n| LaunchTemplateVersion {
            number: n,
            description: None,
            created_at_ms: 0,
            instance_type: Some(format!("t{n}")),
            user_data: None,
            image_id: None,
            security_group_ids: vec![],
            other: Default::default(),
        };
        let t = LaunchTemplate {
            id: "lt-1".into(),
            name: "n".into(),
            created_at_ms: 0,
            default_version: 1,
            versions: vec![v(1), v(2)],
            tags: vec![],
        };
        assert_eq!(t.version(None).unwrap().number, 1);
        assert_eq!(t.version(Some("$Latest")).unwrap().number, 2);
        assert_eq!(t.version(Some("2")).unwrap().number, 2);
        assert!(t.version(Some("3")).is_none());
    }
}
