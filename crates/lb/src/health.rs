//! Target health checks as ALB runs them: an HTTP GET (status matched against the group's
//! matcher) or a TCP connect every interval, bounded by the timeout, on a fresh connection each
//! time. The verdicts drive a per-target state machine with ELB's thresholds; its state is
//! written into the target's slot at once (target choice reads it) and a change wakes the reporter.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flotilla_endpoints::elb::{HealthCheck, HealthState};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::table::CheckSpec;
use crate::targets::TargetSlot;

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// The target answered with a status the matcher refuses.
    CodeMismatch(u16),
    Timeout,
    /// Connection refused or reset, or an answer that is not HTTP.
    Failed,
}

impl Outcome {
    fn reason(&self) -> (String, String) {
        match self {
            Outcome::CodeMismatch(code) => {
                ("Target.ResponseCodeMismatch".into(), format!("Health checks failed with these codes: [{code}]"))
            }
            Outcome::Timeout => ("Target.Timeout".into(), "Request timed out".into()),
            _ => ("Target.FailedHealthChecks".into(), "Health checks failed".into()),
        }
    }
}

/// ELB's health state machine for one target.
#[derive(Debug, Clone)]
pub struct Judge {
    pub state: HealthState,
    successes: u32,
    failures: u32,
    pub reason: Option<String>,
    pub description: Option<String>,
}

impl Judge {
    pub fn new(state: HealthState) -> Judge {
        Judge { state, successes: 0, failures: 0, reason: None, description: None }
    }

    /// Records one outcome; true when the state changed. A new target is healthy after one
    /// pass; a healthy one unhealthy after `unhealthy_threshold` failures in a row; an unhealthy
    /// one healthy after `healthy_threshold` passes in a row.
    pub fn record(&mut self, outcome: &Outcome, check: &HealthCheck) -> bool {
        let before = self.state;
        if *outcome == Outcome::Pass {
            self.failures = 0;
            self.successes += 1;
            let needed = if self.state == HealthState::Unhealthy { check.healthy_threshold.max(1) } else { 1 };
            if self.successes >= needed {
                self.state = HealthState::Healthy;
                self.reason = None;
                self.description = None;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            let (reason, description) = outcome.reason();
            if self.state == HealthState::Unhealthy {
                self.reason = Some(reason);
                self.description = Some(description);
            } else if self.failures >= check.unhealthy_threshold.max(1) {
                self.state = HealthState::Unhealthy;
                self.reason = Some(reason);
                self.description = Some(description);
            }
        }
        self.state != before
    }
}

/// Whether `code` is in a matcher such as `200`, `200,202` or `200-299` (ELB's default `200`).
pub fn code_matches(matcher: Option<&str>, code: u16) -> bool {
    let matcher = matcher.filter(|m| !m.trim().is_empty()).unwrap_or("200");
    matcher.split(',').map(str::trim).any(|part| match part.split_once('-') {
        Some((lo, hi)) => match (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) {
            (Ok(lo), Ok(hi)) => (lo..=hi).contains(&code),
            _ => false,
        },
        None => part.parse::<u16>() == Ok(code),
    })
}

/// Runs one check against `addr`.
pub async fn check_once(addr: SocketAddr, check: &HealthCheck) -> Outcome {
    let timeout = Duration::from_secs(check.timeout_seconds.max(1) as u64);
    match tokio::time::timeout(timeout, probe(addr, check)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Timeout,
    }
}

async fn probe(addr: SocketAddr, check: &HealthCheck) -> Outcome {
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else { return Outcome::Failed };
    if !check.protocol.eq_ignore_ascii_case("HTTP") && !check.protocol.eq_ignore_ascii_case("HTTPS") {
        return Outcome::Pass;
    }
    let _ = stream.set_nodelay(true);
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
        return Outcome::Failed;
    };
    let driver = tokio::spawn(conn);
    let path = check.path.as_deref().filter(|p| p.starts_with('/')).unwrap_or("/");
    let req = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::USER_AGENT, "ELB-HealthChecker/2.0")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new());
    let Ok(req) = req else { return Outcome::Failed };
    let outcome = match sender.send_request(req).await {
        Ok(resp) if code_matches(check.matcher.as_deref(), resp.status().as_u16()) => Outcome::Pass,
        Ok(resp) => Outcome::CodeMismatch(resp.status().as_u16()),
        Err(_) => Outcome::Failed,
    };
    driver.abort();
    outcome
}

/// The running checks, one task per target, restarted when a target's check changes.
#[derive(Default)]
pub struct Checks {
    running: HashMap<CheckSpec, JoinHandle<()>>,
}

impl std::hash::Hash for CheckSpec {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
        self.addr.hash(state);
    }
}

impl Checks {
    /// Starts checks for new specs and stops those no longer wanted.
    pub fn reconcile(&mut self, wanted: &[(CheckSpec, Arc<TargetSlot>)], changed: &Arc<Notify>) {
        let keep: std::collections::HashSet<&CheckSpec> = wanted.iter().map(|(s, _)| s).collect();
        self.running.retain(|spec, task| {
            let stay = keep.contains(spec);
            if !stay {
                task.abort();
            }
            stay
        });
        for (spec, slot) in wanted {
            if !self.running.contains_key(spec) {
                let task = tokio::spawn(run_check(spec.clone(), slot.clone(), changed.clone()));
                self.running.insert(spec.clone(), task);
            }
        }
    }

    pub fn stop(&mut self) {
        for (_, task) in self.running.drain() {
            task.abort();
        }
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Checks one target every interval (first check at once) until aborted.
async fn run_check(spec: CheckSpec, slot: Arc<TargetSlot>, changed: Arc<Notify>) {
    let interval = Duration::from_secs(spec.check.interval_seconds.max(1) as u64);
    let mut judge = Judge::new(slot.state());
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let outcome = check_once(spec.addr, &spec.check).await;
        let first = !slot.checked.swap(true, std::sync::atomic::Ordering::Relaxed);
        if judge.record(&outcome, &spec.check) || first {
            tracing::info!(target_id = %spec.key.target_id, port = spec.key.port, group = %spec.key.group_id,
                state = judge.state.as_str(), reason = ?judge.reason, "target health");
            slot.set_state(judge.state, judge.reason.clone(), judge.description.clone());
            changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(healthy: u32, unhealthy: u32) -> HealthCheck {
        HealthCheck {
            enabled: true,
            protocol: "HTTP".into(),
            port: "traffic-port".into(),
            path: Some("/".into()),
            interval_seconds: 5,
            timeout_seconds: 2,
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
            matcher: Some("200".into()),
        }
    }

    #[test]
    fn a_new_target_is_healthy_after_one_pass() {
        let mut j = Judge::new(HealthState::Initial);
        assert!(j.record(&Outcome::Pass, &hc(5, 2)));
        assert_eq!(j.state, HealthState::Healthy);
    }

    #[test]
    fn thresholds_move_between_healthy_and_unhealthy() {
        let check = hc(3, 2);
        let mut j = Judge::new(HealthState::Healthy);
        assert!(!j.record(&Outcome::CodeMismatch(503), &check));
        assert_eq!(j.state, HealthState::Healthy);
        assert!(j.record(&Outcome::CodeMismatch(503), &check));
        assert_eq!(j.state, HealthState::Unhealthy);
        assert_eq!(j.reason.as_deref(), Some("Target.ResponseCodeMismatch"));
        assert_eq!(j.description.as_deref(), Some("Health checks failed with these codes: [503]"));
        assert!(!j.record(&Outcome::Timeout, &check));
        assert_eq!(j.reason.as_deref(), Some("Target.Timeout"));
        assert_eq!(j.description.as_deref(), Some("Request timed out"));
        assert!(!j.record(&Outcome::Pass, &check));
        assert!(!j.record(&Outcome::Pass, &check));
        assert!(!j.record(&Outcome::Failed, &check), "a failure restarts the count");
        assert_eq!(j.reason.as_deref(), Some("Target.FailedHealthChecks"));
        assert!(!j.record(&Outcome::Pass, &check));
        assert!(!j.record(&Outcome::Pass, &check));
        assert!(j.record(&Outcome::Pass, &check));
        assert_eq!(j.state, HealthState::Healthy);
        assert_eq!(j.reason, None);
        // One failure then a pass keeps it healthy.
        assert!(!j.record(&Outcome::Failed, &check));
        assert!(!j.record(&Outcome::Pass, &check));
        assert!(!j.record(&Outcome::Failed, &check));
        assert_eq!(j.state, HealthState::Healthy);
    }

    #[test]
    fn matchers() {
        assert!(code_matches(None, 200));
        assert!(!code_matches(None, 204));
        assert!(code_matches(Some("200,202"), 202));
        assert!(!code_matches(Some("200,202"), 201));
        assert!(code_matches(Some("200-299"), 204));
        assert!(!code_matches(Some("200-299"), 302));
        assert!(!code_matches(Some("junk"), 200));
    }
}
