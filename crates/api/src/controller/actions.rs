//! What the reconcile step decides for one service, and the facts its REPLICA and DAEMON halves
//! share: the action buckets (launch, stop, keep, the service record, events), the reasons tasks
//! are stopped with, the controller's settings, and whether an instance or task counts as lost,
//! wanted or healthy. Plain data and pure predicates; `reconcile` and `daemon` both build on them.

use flotilla_model::Service;

use super::view::{Health, InstanceState, InstanceView, Targets, TaskView};

/// Knobs of the controller that are not part of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long an agent may stay disconnected before its service tasks are replaced elsewhere.
    pub lost_grace_ms: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { lost_grace_ms: 60_000 }
    }
}

/// Tasks to start for one deployment: `count` placed by the scheduler, or one on `instance`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub deployment: String,
    pub task_definition: String,
    pub count: u32,
    pub instance: Option<String>,
}

/// A task to stop, with the reason the task will carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub task: String,
    pub reason: String,
}

/// What one service needs done.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Actions {
    pub launch: Vec<Launch>,
    pub stop: Vec<Stop>,
    /// Live tasks left as they are.
    pub keep: Vec<String>,
    /// The service record with deployments, counts and events brought up to date; `None` when
    /// nothing changed.
    pub service: Option<Service>,
    /// New service events, oldest first; the executor adds ids and times.
    pub events: Vec<String>,
    /// When launching was held back by back-off, when it may resume (epoch ms).
    pub retry_at_ms: Option<i64>,
}

impl Actions {
    pub fn launch_count(&self) -> u32 {
        self.launch.iter().map(|l| l.count).sum()
    }
}

pub const REASON_SCALE: &str = "Scaling activity initiated by";
pub const REASON_HEALTH: &str = "Task failed container health checks";
/// ECS's stoppedReason for a task its target group found unhealthy (followed by the group).
pub const REASON_TARGET_HEALTH: &str = "Task failed ELB health checks in";
pub const REASON_DRAINING: &str = "Container instance is being drained";
pub const REASON_GONE: &str = "Task stopped because its container instance was deregistered";
pub const REASON_INELIGIBLE: &str =
    "Task stopped because its container instance no longer meets the service's placement constraints";

/// Whether an instance's agent has been away longer than the grace period.
pub fn is_lost(i: &InstanceView, now_ms: i64, settings: &Settings) -> bool {
    !i.connected && i.disconnected_since_ms.is_some_and(|since| now_ms - since > settings.lost_grace_ms)
}

/// Whether a DAEMON service wants a task on this instance.
pub fn daemon_target(i: &InstanceView, now_ms: i64, settings: &Settings) -> bool {
    i.status == InstanceState::Active && i.daemon_eligible && !is_lost(i, now_ms, settings)
}

/// RUNNING, its containers healthy if they are checked, and healthy in its target groups if it
/// is in any: what counts toward minimumHealthyPercent.
pub fn is_healthy(t: &TaskView) -> bool {
    t.is_running()
        && (!t.has_health_check || t.health == Health::Healthy)
        && matches!(t.targets, Targets::None | Targets::Healthy)
}
