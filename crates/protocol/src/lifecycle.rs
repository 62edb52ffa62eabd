//! The task lifecycle, one typed state machine for the agent, the session protocol and the
//! control plane.
//!
//! ECS names a task's statuses after the work in progress: a task is PROVISIONING while its
//! network is set up, PENDING while images are pulled and containers started, ACTIVATING while
//! post-start steps run, RUNNING, then DEACTIVATING, STOPPING while containers are stopped,
//! DEPROVISIONING while the network is torn down, and STOPPED. A task only moves forward, and may
//! skip steps (a task whose image cannot be pulled goes from PENDING straight to STOPPED). Each
//! status lists the statuses it may become ([`TaskStatus::successors`]), as data rather than as an
//! ordering of integers (the ECS agent's own code warns against that), so a report that would move
//! a task back is refused by name, and a new status cannot be added without saying where it leads.

use serde::{Deserialize, Serialize};

/// A task's known (last) status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    #[default]
    Provisioning,
    Pending,
    Activating,
    Running,
    Deactivating,
    Stopping,
    Deprovisioning,
    Stopped,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 8] = [
        TaskStatus::Provisioning,
        TaskStatus::Pending,
        TaskStatus::Activating,
        TaskStatus::Running,
        TaskStatus::Deactivating,
        TaskStatus::Stopping,
        TaskStatus::Deprovisioning,
        TaskStatus::Stopped,
    ];

    /// The ECS wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Provisioning => "PROVISIONING",
            TaskStatus::Pending => "PENDING",
            TaskStatus::Activating => "ACTIVATING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Deactivating => "DEACTIVATING",
            TaskStatus::Stopping => "STOPPING",
            TaskStatus::Deprovisioning => "DEPROVISIONING",
            TaskStatus::Stopped => "STOPPED",
        }
    }

    /// The status an ECS wire name names.
    pub fn parse(s: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The statuses a task in this one may move to next (skipping steps is allowed: each list
    /// holds every later status).
    pub fn successors(self) -> &'static [TaskStatus] {
        use TaskStatus::*;
        match self {
            Provisioning => &[Pending, Activating, Running, Deactivating, Stopping, Deprovisioning, Stopped],
            Pending => &[Activating, Running, Deactivating, Stopping, Deprovisioning, Stopped],
            Activating => &[Running, Deactivating, Stopping, Deprovisioning, Stopped],
            Running => &[Deactivating, Stopping, Deprovisioning, Stopped],
            Deactivating => &[Stopping, Deprovisioning, Stopped],
            Stopping => &[Deprovisioning, Stopped],
            Deprovisioning => &[Stopped],
            Stopped => &[],
        }
    }

    /// Whether a task in this status may become `next`: one of its successors, or itself (a
    /// report repeated is not a move back).
    pub fn may_become(self, next: TaskStatus) -> bool {
        self == next || self.successors().contains(&next)
    }

    /// Not started yet: counts toward a service's or instance's pending tasks.
    pub fn is_pending(self) -> bool {
        matches!(self, TaskStatus::Provisioning | TaskStatus::Pending | TaskStatus::Activating)
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the task should be doing. ECS only ever asks for RUNNING or STOPPED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DesiredStatus {
    Running,
    Stopped,
}

impl DesiredStatus {
    /// Parses the wire value; anything but STOPPED means keep running, as ECS's PENDING desired
    /// status does.
    pub fn parse(s: &str) -> DesiredStatus {
        if s.eq_ignore_ascii_case("STOPPED") {
            DesiredStatus::Stopped
        } else {
            DesiredStatus::Running
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DesiredStatus::Running => "RUNNING",
            DesiredStatus::Stopped => "STOPPED",
        }
    }
}

/// A container's status as ECS shows it: PENDING until it runs, RUNNING, STOPPED.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerLifecycle {
    #[default]
    Pending,
    Running,
    Stopped,
}

impl ContainerLifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerLifecycle::Pending => "PENDING",
            ContainerLifecycle::Running => "RUNNING",
            ContainerLifecycle::Stopped => "STOPPED",
        }
    }

    pub fn parse(s: &str) -> Option<ContainerLifecycle> {
        [ContainerLifecycle::Pending, ContainerLifecycle::Running, ContainerLifecycle::Stopped]
            .into_iter()
            .find(|c| c.as_str() == s)
    }

    /// Whether a container in this status may become `next` (itself included).
    pub fn may_become(self, next: ContainerLifecycle) -> bool {
        use ContainerLifecycle::*;
        match self {
            Pending => true,
            Running => matches!(next, Running | Stopped),
            Stopped => next == Stopped,
        }
    }
}

/// A status equals its ECS wire name (`status == "RUNNING"`), so code and tests that read
/// reports can compare with the names ECS documents.
macro_rules! eq_wire_name {
    ($t:ty) => {
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}
eq_wire_name!(TaskStatus);
eq_wire_name!(ContainerLifecycle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_only_move_forward_and_stopped_is_final() {
        for (i, from) in TaskStatus::ALL.into_iter().enumerate() {
            for (j, to) in TaskStatus::ALL.into_iter().enumerate() {
                assert_eq!(from.may_become(to), j >= i, "{from} -> {to}");
            }
            assert_eq!(TaskStatus::parse(from.as_str()), Some(from));
            let json = serde_json::to_string(&from).unwrap();
            assert_eq!(json, format!("\"{}\"", from.as_str()), "the wire name is ECS's");
        }
        assert!(TaskStatus::Stopped.successors().is_empty());
        assert_eq!(TaskStatus::parse("STARTING"), None);
    }

    #[test]
    fn containers_never_go_back() {
        use ContainerLifecycle::*;
        assert!(Pending.may_become(Running) && Pending.may_become(Stopped) && Running.may_become(Stopped));
        assert!(!Running.may_become(Pending) && !Stopped.may_become(Running) && !Stopped.may_become(Pending));
    }
}
