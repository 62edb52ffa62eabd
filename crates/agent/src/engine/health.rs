//! Health: a container's HEALTHCHECK result as ECS reports it, and the task's healthStatus.
//!
//! The check itself runs in Docker (the definition's `healthCheck` becomes the container's
//! HEALTHCHECK, see `spec.rs`); the engine hears the results as runtime events. ECS rolls them up
//! over the essential containers that have a check: the task is UNHEALTHY as soon as one of them
//! is, HEALTHY only when all of them are, and UNKNOWN otherwise (still starting, or no checks).

use super::status::HealthStatus;
use crate::runtime::Health;

/// A container's reported health: a check still in its start period is UNKNOWN.
pub fn container_health(h: Health) -> HealthStatus {
    match h {
        Health::Starting => HealthStatus::Unknown,
        Health::Healthy => HealthStatus::Healthy,
        Health::Unhealthy => HealthStatus::Unhealthy,
    }
}

/// One container as the roll-up sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub essential: bool,
    /// `None` for a container without a health check.
    pub health: Option<HealthStatus>,
}

/// The task's healthStatus.
pub fn task_health(members: impl IntoIterator<Item = Member>) -> HealthStatus {
    let mut checked = 0;
    let mut healthy = 0;
    for m in members.into_iter().filter(|m| m.essential) {
        match m.health {
            None => {}
            Some(HealthStatus::Unhealthy) => return HealthStatus::Unhealthy,
            Some(HealthStatus::Healthy) => {
                checked += 1;
                healthy += 1;
            }
            Some(HealthStatus::Unknown) => checked += 1,
        }
    }
    if checked > 0 && healthy == checked {
        HealthStatus::Healthy
    } else {
        HealthStatus::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(essential: bool, health: Option<HealthStatus>) -> Member {
        Member { essential, health }
    }

    #[test]
    fn the_task_is_healthy_only_when_every_checked_essential_container_is() {
        use HealthStatus::*;
        assert_eq!(task_health([m(true, None)]), Unknown);
        assert_eq!(task_health([m(true, Some(Healthy)), m(true, None)]), Healthy);
        assert_eq!(task_health([m(true, Some(Healthy)), m(true, Some(Unknown))]), Unknown);
        assert_eq!(task_health([m(true, Some(Healthy)), m(true, Some(Unhealthy))]), Unhealthy);
        // Non-essential containers do not count.
        assert_eq!(task_health([m(true, Some(Healthy)), m(false, Some(Unhealthy))]), Healthy);
        assert_eq!(container_health(Health::Starting), Unknown);
    }
}
