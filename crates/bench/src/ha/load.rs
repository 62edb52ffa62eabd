//! Steady load while faults happen: RunTask (two tasks, a fresh clientToken each, retried with the
//! same token on another server when the answer is lost, as the SDKs retry), StopTask of the
//! oldest tasks so the fleet stays about as full, and a sampler of the service's counts that
//! measures how long it ran above its `maximumPercent`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::bed::SERVICE;
use super::client::{MultiClient, Outcome};
use crate::runtask;

/// Tasks per RunTask call.
pub const PER_CALL: usize = 2;

/// What the load did, for the checker.
#[derive(Debug, Default)]
pub struct Ledger {
    /// clientToken (also the tasks' startedBy) and the tasks its acknowledged answer listed.
    pub acked: Vec<(String, Vec<String>)>,
    /// Tokens whose outcome no server could tell before the load gave up on them.
    pub unknown: Vec<String>,
    /// Calls refused with a modeled error.
    pub refused: u64,
    pub first_refusal: Option<String>,
}

/// A running load; [`Load::finish`] stops it and returns what it did.
pub struct Load {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<Ledger>,
}

impl Load {
    /// Starts the load over `client`, keeping about `keep` of its tasks running.
    pub fn start(client: Arc<MultiClient>, keep: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = tokio::spawn(async move { drive(client, flag, keep).await });
        Load { stop, handle }
    }

    pub async fn finish(self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.unwrap_or_default()
    }
}

async fn drive(client: Arc<MultiClient>, stop: Arc<AtomicBool>, keep: usize) -> Ledger {
    let mut ledger = Ledger::default();
    let mut running: VecDeque<String> = VecDeque::new();
    let run = std::process::id();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        // startedBy is at most 36 characters; the token doubles as it.
        let token = format!("ha-{run}-{n}");
        let body = json!({
            "taskDefinition": runtask::FAMILY,
            "count": PER_CALL,
            "clientToken": token,
            "startedBy": token,
            "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"}],
        });
        match client.call("RunTask", &body, Duration::from_secs(30)).await {
            Outcome::Ok(v) => {
                let arns: Vec<String> = v["tasks"]
                    .as_array()
                    .map(|t| t.iter().filter_map(|t| t["taskArn"].as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                running.extend(arns.iter().cloned());
                ledger.acked.push((token, arns));
            }
            Outcome::Refused(code, message) => {
                ledger.refused += 1;
                ledger.first_refusal.get_or_insert(format!("{code}: {message}"));
            }
            Outcome::Unknown(_) => ledger.unknown.push(token),
        }
        while running.len() > keep {
            let Some(arn) = running.pop_front() else { break };
            let _ = client.call("StopTask", &json!({"task": arn, "reason": "ha load"}), Duration::from_secs(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ledger
}

/// Samples the service's counts until stopped: how long it ran above `maximumPercent` of its
/// desired count, and the most tasks it had.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<(Duration, u64)>,
}

impl Sampler {
    pub fn start(client: Arc<MultiClient>, maximum_percent: u64) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            let (mut above, mut most) = (Duration::ZERO, 0u64);
            let mut last = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let out =
                    client.call("DescribeServices", &json!({"services": [SERVICE]}), Duration::from_secs(5)).await;
                let now = Instant::now();
                if let Outcome::Ok(v) = out {
                    let s = &v["services"][0];
                    let n = |f: &str| s[f].as_u64().unwrap_or(0);
                    let tasks = n("runningCount") + n("pendingCount");
                    most = most.max(tasks);
                    if tasks * 100 > n("desiredCount") * maximum_percent {
                        above += now - last;
                    }
                }
                last = now;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (above, most)
        });
        Sampler { stop, handle }
    }

    /// (time above maximumPercent, most tasks seen).
    pub async fn finish(self) -> (Duration, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.unwrap_or_default()
    }
}
