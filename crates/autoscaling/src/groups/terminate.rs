//! Taking one Terminating host away, one level-triggered step per pass: while its container
//! instance still has tasks, set it DRAINING (managed draining) and wait, bounded by the drain
//! timeout and by a Spot interruption's deadline; then have the provisioner terminate the host,
//! deregister its container instance (force: the host is gone) so that it leaves
//! ListContainerInstances, and mark the host Terminated with a scaling activity.

use std::sync::Arc;

use flotilla_api::{ApiResult, Ctx};
use flotilla_hosts::{Host, Lifecycle};

use super::ecs::{self, Registered};
use super::{activities, plan, Shared};

/// What a pass does with a Terminating host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Set these container instances DRAINING and note when draining began.
    Drain,
    /// Tasks are still stopping: look again next pass.
    Wait,
    /// Terminate the host now.
    Terminate,
}

/// The next step for `host`, whose container instances are `registered`.
pub fn next_step(host: &Host, registered: &[Registered], now_ms: i64, drain_timeout_ms: i64) -> Step {
    let busy = registered.iter().any(|r| r.tasks > 0);
    // A Spot host goes at its deadline, tasks or not: the capacity is being taken back.
    if !busy || plan::interrupted(host, now_ms) {
        return Step::Terminate;
    }
    match host.drain_started_at_ms {
        None => Step::Drain,
        Some(_) if registered.iter().any(|r| r.status == "ACTIVE") => Step::Drain,
        Some(t) if now_ms - t < drain_timeout_ms => Step::Wait,
        Some(_) => Step::Terminate,
    }
}

/// One step for the Terminating host `host`.
pub async fn step(ctx: &Ctx, shared: &Arc<Shared>, host: &Host, registered: Vec<Registered>) -> ApiResult<()> {
    let now = ctx.clock.now_ms();
    let timeout_ms = shared.settings.drain_timeout.as_millis() as i64;
    match next_step(host, &registered, now, timeout_ms) {
        Step::Wait => Ok(()),
        Step::Drain => {
            for r in &registered {
                ecs::drain(ctx, r).await?;
            }
            super::records::update_host(ctx, &host.instance_id, |h| {
                h.drain_started_at_ms.get_or_insert(now);
                h.lifecycle == Lifecycle::Terminating
            })
            .await?;
            Ok(())
        }
        Step::Terminate => {
            if !shared.begin(&host.instance_id) {
                return Ok(());
            }
            let (ctx, shared, host) = (ctx.clone(), shared.clone(), host.clone());
            tokio::spawn(async move {
                if let Err(e) = terminate(&ctx, &shared, &host, &registered).await {
                    tracing::warn!(instance = %host.instance_id, error = %e, "terminating a host failed; the next pass tries again");
                }
                shared.end(&host.instance_id);
            });
            Ok(())
        }
    }
}

async fn terminate(ctx: &Ctx, shared: &Shared, host: &Host, registered: &[Registered]) -> Result<(), String> {
    shared.provisioner.terminate(host).await.map_err(|e| e.to_string())?;
    for r in registered {
        ecs::deregister(ctx, r).await.map_err(|e| e.message)?;
    }
    let now = ctx.clock.now_ms();
    let done = super::records::update_host(ctx, &host.instance_id, |h| {
        h.lifecycle = Lifecycle::Terminated;
        h.terminated_at_ms.get_or_insert(now);
        true
    })
    .await
    .map_err(|e| e.message)?;
    if let (Some(h), Some(group)) = (done, host.group.as_deref()) {
        let cause = h.termination_cause.clone().unwrap_or_else(|| {
            format!(
                "At {} an instance was taken out of service in response to a user request.",
                activities::rfc3339(h.drain_started_at_ms.unwrap_or(now))
            )
        });
        let (key, mut a) = activities::new(group, format!("Terminating EC2 instance: {}", h.instance_id), cause, now);
        a.started_at_ms = h.drain_started_at_ms.unwrap_or(now);
        activities::record(ctx, a, &key, None).await.map_err(|e| e.message)?;
    }
    tracing::info!(instance = %host.instance_id, "host terminated");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_hosts::Interruption;

    fn reg(status: &str, tasks: i64) -> Registered {
        Registered { cluster: "c".into(), arn: "arn".into(), status: status.into(), tasks }
    }

    fn host() -> Host {
        let mut h = crate::groups::plan::tests::host("i-1", "us-east-1a", 0);
        h.lifecycle = Lifecycle::Terminating;
        h
    }

    #[test]
    fn a_busy_host_drains_first_then_goes_when_empty_or_late() {
        let mut h = host();
        assert_eq!(next_step(&h, &[reg("ACTIVE", 2)], 0, 1000), Step::Drain);
        h.drain_started_at_ms = Some(0);
        assert_eq!(next_step(&h, &[reg("DRAINING", 2)], 500, 1000), Step::Wait);
        assert_eq!(next_step(&h, &[reg("DRAINING", 0)], 600, 1000), Step::Terminate);
        assert_eq!(next_step(&h, &[reg("DRAINING", 1)], 1000, 1000), Step::Terminate, "the wait is bounded");
        // Someone set it ACTIVE again meanwhile: drain again.
        assert_eq!(next_step(&h, &[reg("ACTIVE", 1)], 10, 1000), Step::Drain);
    }

    #[test]
    fn idle_hosts_and_hosts_without_an_instance_go_at_once() {
        assert_eq!(next_step(&host(), &[], 0, 1000), Step::Terminate);
        assert_eq!(next_step(&host(), &[reg("ACTIVE", 0)], 0, 1000), Step::Terminate);
    }

    #[test]
    fn a_spot_deadline_does_not_wait_for_tasks() {
        let mut h = host();
        h.interruption = Some(Interruption { action: "terminate".into(), noticed_at_ms: 0, deadline_ms: 100 });
        assert_eq!(next_step(&h, &[reg("DRAINING", 3)], 99, 1000), Step::Drain);
        assert_eq!(next_step(&h, &[reg("DRAINING", 3)], 100, 1000), Step::Terminate);
    }
}
