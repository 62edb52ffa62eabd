//! A container's `restartPolicy`, as ECS documents it: when a container with an enabled policy
//! exits, the agent starts the same container again in place (the task keeps its identity and
//! stays RUNNING), unless the exit code is one the policy ignores, or the container did not run
//! for `restartAttemptPeriod` seconds since its last (re)start ("a container can be restarted
//! only once every restartAttemptPeriod seconds"). Then the exit stands as any other: an
//! essential container's exit stops the task.
//!
//! The decision is a pure function of the policy, the exit and the engine's clock, so it is
//! tested as data; the actor asks it on every exit it observes (`Actor::restart_due`) and does
//! the restart (`Actor::run_due_restarts`): the log capture of the run that ended is drained
//! first, and a new one follows the restarted container from the last stored line, so the
//! container's log continues across restarts without duplicates.

use std::time::Duration;

use flotilla_model::ContainerDefinition;

use super::actor::Actor;
use super::status::{ContainerStatus, DesiredStatus};

/// How long a restart waits for the capture of the run that ended to drain.
const CAPTURE_DRAIN: Duration = Duration::from_secs(5);

/// ECS's default `restartAttemptPeriod`: 300 seconds.
pub const DEFAULT_ATTEMPT_PERIOD: Duration = Duration::from_secs(300);

/// An enabled restart policy, resolved from the definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Exit codes that end the container as usual.
    pub ignored_exit_codes: Vec<i32>,
    /// How long the container must have run since its last (re)start for a restart.
    pub attempt_period: Duration,
}

impl RestartPolicy {
    /// The container's policy, or `None` when it has none or it is disabled.
    pub fn of(def: &ContainerDefinition) -> Option<RestartPolicy> {
        let p = def.restart_policy.as_ref().filter(|p| p.enabled == Some(true))?;
        let period = p.restart_attempt_period.and_then(|s| u64::try_from(s).ok()).map(Duration::from_secs);
        Some(RestartPolicy {
            ignored_exit_codes: p.ignored_exit_codes.clone().unwrap_or_default(),
            attempt_period: period.unwrap_or(DEFAULT_ATTEMPT_PERIOD),
        })
    }
}

/// Why an exit is not followed by a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// The container has no enabled policy.
    NoPolicy,
    /// The task is stopping: its containers are meant to exit.
    TaskStopping,
    /// The runtime gave no exit code (the container never ran, or vanished).
    NoExitCode,
    /// The policy lists this code.
    Ignored(i32),
    /// It ran for less than the attempt period since its last (re)start.
    TooSoon { ran_for: Duration, period: Duration },
}

/// What to do about a container that exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Restart,
    Stop(Keep),
}

/// What the decision needs to know about the exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub exit_code: Option<i32>,
    /// When the container last started or was restarted (engine clock, epoch ms); `None` when
    /// the agent never saw it start (it then counts as having run long enough).
    pub last_started_ms: Option<i64>,
    /// The engine clock now (epoch ms).
    pub now_ms: i64,
    /// Whether the task is still meant to run.
    pub task_running: bool,
}

/// Whether a container that exited is restarted in place.
pub fn decide(policy: Option<&RestartPolicy>, exit: Exit) -> Decision {
    let Some(policy) = policy else { return Decision::Stop(Keep::NoPolicy) };
    if !exit.task_running {
        return Decision::Stop(Keep::TaskStopping);
    }
    let Some(code) = exit.exit_code else { return Decision::Stop(Keep::NoExitCode) };
    if policy.ignored_exit_codes.contains(&code) {
        return Decision::Stop(Keep::Ignored(code));
    }
    if let Some(started) = exit.last_started_ms {
        let ran_for = Duration::from_millis(u64::try_from(exit.now_ms.saturating_sub(started)).unwrap_or(0));
        if ran_for < policy.attempt_period {
            return Decision::Stop(Keep::TooSoon { ran_for, period: policy.attempt_period });
        }
    }
    Decision::Restart
}

impl Actor {
    /// Whether a container that just exited is to be restarted; if so it is queued, and its
    /// record stays RUNNING (the task sees no exit).
    pub(super) fn restart_due(&mut self, name: &str, exit_code: Option<i32>) -> bool {
        let def = self.defs.iter().find(|d| d.name.as_deref() == Some(name));
        let policy = def.and_then(RestartPolicy::of);
        let Some(c) = self.rec.container(name) else { return false };
        if c.status == ContainerStatus::Stopped || self.restarts_due.iter().any(|n| n == name) {
            return false;
        }
        let exit = Exit {
            exit_code,
            last_started_ms: c.last_started_ms,
            now_ms: self.shared.now_ms(),
            task_running: self.rec.desired == DesiredStatus::Running,
        };
        match decide(policy.as_ref(), exit) {
            Decision::Restart => {
                self.restarts_due.push(name.to_string());
                true
            }
            Decision::Stop(Keep::NoPolicy) => false,
            Decision::Stop(why) => {
                tracing::info!(task = %self.rec.arn(), container = %name, ?why, "container exited; not restarting");
                false
            }
        }
    }

    /// Starts again, in place, every container queued by `restart_due`.
    pub(super) async fn run_due_restarts(&mut self) {
        while let Some(name) = self.restarts_due.pop() {
            self.restart_one(&name).await;
        }
    }

    async fn restart_one(&mut self, name: &str) {
        let Some(id) = self.rec.container(name).and_then(|c| c.runtime_id.clone()) else { return };
        // The ended run's capture finishes once its stream is drained; the restarted run gets
        // a new one (started by `observe`), resuming after the last stored line.
        if let Some(i) = self.captures.iter().position(|(rid, _)| *rid == id) {
            let (_, handle) = self.captures.swap_remove(i);
            let _ = tokio::time::timeout(CAPTURE_DRAIN, handle).await;
        }
        self.captured.remove(&id);
        let started = self.shared.runtime.start_container(&id).await;
        let now = self.shared.now_ms();
        match started {
            Ok(()) => {
                if let Some(c) = self.rec.container_mut(name) {
                    c.restart_count = c.restart_count.saturating_add(1);
                    c.last_started_ms = Some(now);
                    tracing::info!(container = %name, restarts = c.restart_count, "restarted the container in place");
                }
                self.save_unreported();
            }
            Err(e) => {
                tracing::warn!(task = %self.rec.arn(), container = %name, error = %e, "restart failed");
                let code = match self.shared.runtime.inspect_container(&id).await {
                    Ok(info) => info.exit_code.and_then(|c| i32::try_from(c).ok()),
                    Err(_) => None,
                };
                let reason = format!("CannotStartContainerError: restart of {name}: {e}");
                self.mark_stopped(name, code, false, Some(reason));
                return;
            }
        }
        match self.shared.runtime.inspect_container(&id).await {
            // Exited again already: `observe` decides again (too soon, so the exit stands).
            Ok(info) => self.observe(name, &info),
            Err(e) if e.is_not_found() => {
                self.mark_stopped(name, None, false, Some("The container was removed outside the agent".into()))
            }
            // The next event or resync looks again.
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::ContainerRestartPolicy;

    fn policy(ignored: &[i32], period: u64) -> RestartPolicy {
        RestartPolicy { ignored_exit_codes: ignored.to_vec(), attempt_period: Duration::from_secs(period) }
    }

    fn exit(code: Option<i32>, ran_secs: Option<i64>) -> Exit {
        let now_ms = 1_000_000_000;
        Exit { exit_code: code, last_started_ms: ran_secs.map(|s| now_ms - s * 1000), now_ms, task_running: true }
    }

    #[test]
    fn decisions_as_data() {
        let p = policy(&[0, 42], 60);
        let cases: Vec<(Option<&RestartPolicy>, Exit, Decision)> = vec![
            (None, exit(Some(1), Some(600)), Decision::Stop(Keep::NoPolicy)),
            (Some(&p), exit(Some(1), Some(60)), Decision::Restart),
            (Some(&p), exit(Some(137), Some(3600)), Decision::Restart),
            (Some(&p), exit(Some(1), None), Decision::Restart),
            (Some(&p), exit(Some(42), Some(600)), Decision::Stop(Keep::Ignored(42))),
            (Some(&p), exit(Some(0), Some(600)), Decision::Stop(Keep::Ignored(0))),
            (Some(&p), exit(None, Some(600)), Decision::Stop(Keep::NoExitCode)),
            (
                Some(&p),
                exit(Some(1), Some(59)),
                Decision::Stop(Keep::TooSoon { ran_for: Duration::from_secs(59), period: Duration::from_secs(60) }),
            ),
            (Some(&p), Exit { task_running: false, ..exit(Some(1), Some(600)) }, Decision::Stop(Keep::TaskStopping)),
        ];
        for (policy, exit, expected) in cases {
            assert_eq!(decide(policy, exit), expected, "{policy:?} {exit:?}");
        }
    }

    #[test]
    fn a_clock_behind_the_start_counts_as_no_time_run() {
        let p = policy(&[], 60);
        let e = Exit { exit_code: Some(1), last_started_ms: Some(2_000), now_ms: 1_000, task_running: true };
        assert_eq!(
            decide(Some(&p), e),
            Decision::Stop(Keep::TooSoon { ran_for: Duration::ZERO, period: p.attempt_period })
        );
    }

    #[test]
    fn the_policy_comes_from_the_definition_with_ecs_defaults() {
        let mut def = ContainerDefinition::default();
        assert_eq!(RestartPolicy::of(&def), None);
        def.restart_policy = Some(ContainerRestartPolicy { enabled: Some(false), ..Default::default() });
        assert_eq!(RestartPolicy::of(&def), None);
        def.restart_policy = Some(ContainerRestartPolicy { enabled: Some(true), ..Default::default() });
        assert_eq!(RestartPolicy::of(&def), Some(policy(&[], 300)));
        def.restart_policy = Some(ContainerRestartPolicy {
            enabled: Some(true),
            ignored_exit_codes: Some(vec![3]),
            restart_attempt_period: Some(90),
        });
        assert_eq!(RestartPolicy::of(&def), Some(policy(&[3], 90)));
    }
}
