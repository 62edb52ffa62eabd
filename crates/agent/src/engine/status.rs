//! The task lifecycle as the agent drives it, and the one pure function that says what to do next.
//! The statuses and their allowed moves are the protocol's ([`flotilla_protocol::lifecycle`]),
//! shared with the control plane.
//!
//! ECS names a task's statuses after the work in progress: a task is PROVISIONING while its
//! network is set up, PENDING while images are pulled and containers started, ACTIVATING while
//! post-start steps run, RUNNING, then DEACTIVATING, STOPPING while containers are stopped,
//! DEPROVISIONING while the network is torn down, and STOPPED. [`next_transition`] maps (known,
//! desired) to the work to do now; it is an exhaustive match over every pair, never an ordering of
//! integers (the ECS agent's own code warns against that), so a new status cannot be forgotten.

use flotilla_protocol::lifecycle::ContainerLifecycle;
use serde::{Deserialize, Serialize};

pub use flotilla_protocol::lifecycle::{DesiredStatus, TaskStatus};

/// A container's status within its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerStatus {
    /// Not created yet (image not ready or waiting for creation).
    Pending,
    /// Created, waiting for its dependencies before start.
    Created,
    Running,
    Stopped,
}

impl ContainerStatus {
    /// The status ECS shows: containers are PENDING until they run.
    pub fn wire(self) -> ContainerLifecycle {
        match self {
            ContainerStatus::Pending | ContainerStatus::Created => ContainerLifecycle::Pending,
            ContainerStatus::Running => ContainerLifecycle::Running,
            ContainerStatus::Stopped => ContainerLifecycle::Stopped,
        }
    }

    /// The ECS wire name.
    pub fn as_str(self) -> &'static str {
        self.wire().as_str()
    }
}

/// Health as ECS reports it for containers and tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    Unknown,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "HEALTHY",
            HealthStatus::Unhealthy => "UNHEALTHY",
            HealthStatus::Unknown => "UNKNOWN",
        }
    }
}

/// The work to do for a (known, desired) pair. Each work item, once done, moves the task to
/// [`Transition::target`]; `Hold` and `Done` wait for something to happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Set up the task's network and volumes (PROVISIONING).
    Provision,
    /// Pull images, create containers, start them in dependency order (PENDING).
    StartContainers,
    /// Post-start steps: bindings and addresses are read (ACTIVATING).
    Activate,
    /// Running as desired: wait for events.
    Hold,
    /// Begin stopping a task that got as far as creating containers.
    BeginDeactivate,
    /// Pre-stop steps (DEACTIVATING).
    Deactivate,
    /// Stop containers, dependents first, SIGTERM then SIGKILL (STOPPING).
    StopContainers,
    /// Begin tearing down a task that never got past provisioning.
    BeginDeprovision,
    /// Tear down the network (DEPROVISIONING).
    Deprovision,
    /// STOPPED: nothing more, until cleanup.
    Done,
}

impl Transition {
    /// The status the task reaches when this work completes.
    pub fn target(self) -> Option<TaskStatus> {
        match self {
            Transition::Provision => Some(TaskStatus::Pending),
            Transition::StartContainers => Some(TaskStatus::Activating),
            Transition::Activate => Some(TaskStatus::Running),
            Transition::Hold | Transition::Done => None,
            Transition::BeginDeactivate => Some(TaskStatus::Deactivating),
            Transition::Deactivate => Some(TaskStatus::Stopping),
            Transition::StopContainers => Some(TaskStatus::Deprovisioning),
            Transition::BeginDeprovision => Some(TaskStatus::Deprovisioning),
            Transition::Deprovision => Some(TaskStatus::Stopped),
        }
    }
}

/// What to do next. A task past RUNNING never goes back: a desired RUNNING that arrives while it
/// stops is too late, as in ECS.
pub fn next_transition(known: TaskStatus, desired: DesiredStatus) -> Transition {
    use DesiredStatus as D;
    use TaskStatus as K;
    match (known, desired) {
        (K::Provisioning, D::Running) => Transition::Provision,
        (K::Provisioning, D::Stopped) => Transition::BeginDeprovision,
        (K::Pending, D::Running) => Transition::StartContainers,
        (K::Pending, D::Stopped) => Transition::BeginDeactivate,
        (K::Activating, D::Running) => Transition::Activate,
        (K::Activating, D::Stopped) => Transition::BeginDeactivate,
        (K::Running, D::Running) => Transition::Hold,
        (K::Running, D::Stopped) => Transition::BeginDeactivate,
        (K::Deactivating, D::Running | D::Stopped) => Transition::Deactivate,
        (K::Stopping, D::Running | D::Stopped) => Transition::StopContainers,
        (K::Deprovisioning, D::Running | D::Stopped) => Transition::Deprovision,
        (K::Stopped, D::Running | D::Stopped) => Transition::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Follows transitions from `known`, assuming every work item completes.
    fn walk(mut known: TaskStatus, desired: DesiredStatus) -> Vec<TaskStatus> {
        let mut path = vec![known];
        while let Some(next) = next_transition(known, desired).target() {
            known = next;
            path.push(known);
        }
        path
    }

    #[test]
    fn a_running_task_walks_up_to_running_and_holds() {
        use TaskStatus::*;
        assert_eq!(walk(Provisioning, DesiredStatus::Running), vec![Provisioning, Pending, Activating, Running]);
        assert_eq!(next_transition(Running, DesiredStatus::Running), Transition::Hold);
    }

    #[test]
    fn a_stopped_task_walks_every_stopping_status() {
        use TaskStatus::*;
        assert_eq!(
            walk(Running, DesiredStatus::Stopped),
            vec![Running, Deactivating, Stopping, Deprovisioning, Stopped]
        );
        assert_eq!(
            walk(Pending, DesiredStatus::Stopped),
            vec![Pending, Deactivating, Stopping, Deprovisioning, Stopped]
        );
        // Nothing was created while provisioning, so there is nothing to stop.
        assert_eq!(walk(Provisioning, DesiredStatus::Stopped), vec![Provisioning, Deprovisioning, Stopped]);
    }

    #[test]
    fn stopping_never_turns_back() {
        for known in [TaskStatus::Deactivating, TaskStatus::Stopping, TaskStatus::Deprovisioning] {
            assert_eq!(next_transition(known, DesiredStatus::Running), next_transition(known, DesiredStatus::Stopped));
            assert_eq!(*walk(known, DesiredStatus::Running).last().unwrap(), TaskStatus::Stopped);
        }
        assert_eq!(next_transition(TaskStatus::Stopped, DesiredStatus::Running), Transition::Done);
    }

    #[test]
    fn every_pair_terminates_and_stopped_is_reached_when_desired() {
        for known in TaskStatus::ALL {
            for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
                let path = walk(known, desired);
                assert!(path.len() <= TaskStatus::ALL.len(), "{known:?}/{desired:?} loops: {path:?}");
                if desired == DesiredStatus::Stopped {
                    assert_eq!(*path.last().unwrap(), TaskStatus::Stopped);
                }
            }
        }
    }

    #[test]
    fn every_step_is_a_move_the_shared_lifecycle_allows() {
        for known in TaskStatus::ALL {
            for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
                if let Some(next) = next_transition(known, desired).target() {
                    assert!(known.successors().contains(&next), "{known} -> {next} is not an allowed move");
                }
            }
        }
    }

    #[test]
    fn wire_names_round_trip() {
        for s in TaskStatus::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(DesiredStatus::parse("STOPPED"), DesiredStatus::Stopped);
        assert_eq!(DesiredStatus::parse("PENDING"), DesiredStatus::Running);
        assert_eq!(ContainerStatus::Created.as_str(), "PENDING");
    }
}
