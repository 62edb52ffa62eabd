//! What the reconcile step sees: a service's tasks and the cluster's instances reduced to the
//! facts that decide what to start and stop. Plain data, so reconcile is a pure function that
//! tests can feed by hand.

/// A container instance as the service controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    pub arn: String,
    pub status: InstanceState,
    pub connected: bool,
    /// When the controller first saw the agent disconnected (epoch ms); `None` while connected.
    pub disconnected_since_ms: Option<i64>,
    /// Whether a DAEMON service's constraints and required attributes accept this instance.
    pub daemon_eligible: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    Active,
    Draining,
    /// Deregistered, or any state that takes no tasks.
    Gone,
}

/// The container health a task reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Healthy,
    Unhealthy,
}

/// How a task's load balancer target groups judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// The task is in no target group.
    None,
    /// Registered (or about to be) and not yet healthy in every group.
    Waiting,
    Healthy,
    /// Unhealthy in a group: which, on which port, and ELB's reason.
    Unhealthy {
        target_group_arn: String,
        port: u16,
        reason: String,
    },
}

/// One task of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub arn: String,
    /// The deployment that started it (the task's `startedBy`).
    pub deployment: Option<String>,
    pub last_status: String,
    pub desired_stopped: bool,
    pub health: Health,
    /// Whether any of its containers has a health check.
    pub has_health_check: bool,
    pub instance: Option<String>,
    pub zone: Option<String>,
    /// `capacityProviderName`: the provider it runs on (or waits for), under a strategy.
    pub capacity_provider: Option<String>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub stopped_at_ms: Option<i64>,
    pub stop_code: Option<String>,
    pub targets: Targets,
}

impl TaskView {
    pub fn is_running(&self) -> bool {
        self.last_status == "RUNNING"
    }

    /// Neither stopped nor asked to stop.
    pub fn is_live(&self) -> bool {
        !self.desired_stopped && self.last_status != "STOPPED" && self.last_status != "DEPROVISIONING"
    }

    /// A task that stopped on its own rather than because someone asked: it failed to start, an
    /// essential container exited, or it was stopped for failing its health check. These count
    /// toward back-off and the deployment circuit breaker.
    pub fn is_failure(&self) -> bool {
        if self.last_status != "STOPPED" {
            return false;
        }
        match self.stop_code.as_deref() {
            Some("UserInitiated") => false,
            Some("ServiceSchedulerInitiated") => self.health == Health::Unhealthy,
            _ => true,
        }
    }
}
