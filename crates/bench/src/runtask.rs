//! The parts of `runtask-bench`: waiting for a hollow fleet to join, and the closed-loop RunTask
//! load. Each client holds one keep-alive connection and sends SigV4-signed RunTask requests
//! (count 10, spread over availability zones, a fresh clientToken each, as the SDKs send) one at a
//! time until the fleet holds the number of tasks asked for. A request's latency runs from just
//! before it is written until its whole answer is read; tasks placed are the tasks the answers
//! list, so a request that places fewer than ten (failures) counts for what it placed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::load::{connect, exchange, signed_request, Target};
use crate::procs;

/// The task definition family the benchmark runs.
pub const FAMILY: &str = "runtask-bench";

/// CPU units and MiB each task reserves: small, so that the fleet holds every task.
pub const TASK_CPU: u32 = 16;
pub const TASK_MEMORY: u32 = 32;

/// One JSON call on a fresh connection; the answer's body when it is a 200.
pub async fn call(target: &Target, operation: &str, body: &Value) -> anyhow::Result<Value> {
    let mut sender = connect(target.addr).await?;
    let (status, bytes) = exchange(&mut sender, signed_request(target, operation, serde_json::to_vec(body)?)?).await?;
    anyhow::ensure!(status == 200, "{operation} answered {status}: {}", String::from_utf8_lossy(&bytes));
    Ok(serde_json::from_slice(&bytes)?)
}

/// Registers the benchmark's task definition: one container, no ports.
pub async fn register_definition(target: &Target) -> anyhow::Result<()> {
    let body = json!({
        "family": FAMILY,
        "containerDefinitions": [{
            "name": "app",
            "image": "bench/app:1",
            "cpu": TASK_CPU,
            "memory": TASK_MEMORY,
            "essential": true,
        }],
    });
    call(target, "RegisterTaskDefinition", &body).await.map(|_| ())
}

/// How many container instances of the default cluster have their agent connected.
async fn connected(target: &Target) -> anyhow::Result<usize> {
    let mut n = 0;
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"filter": "agentConnected == true", "maxResults": 100});
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let page = call(target, "ListContainerInstances", &body).await?;
        n += page["containerInstanceArns"].as_array().map_or(0, Vec::len);
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return Ok(n),
        }
    }
}

/// Waits until `n` instances are registered and their agents connected; returns how long it took.
pub async fn wait_for_fleet(target: &Target, n: usize, timeout: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut last = 0;
    loop {
        // The registered count is cheap to read; the connected count pages through the fleet.
        let clusters = call(target, "DescribeClusters", &json!({"clusters": ["default"]})).await?;
        let registered = clusters["clusters"][0]["registeredContainerInstancesCount"].as_u64().unwrap_or(0) as usize;
        if registered >= n {
            last = connected(target).await?;
            if last >= n {
                return Ok(started.elapsed());
            }
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "only {registered} instances registered and {last} connected of {n} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How many tasks of the cluster are RUNNING, as DescribeClusters counts them.
pub async fn running_tasks(target: &Target) -> anyhow::Result<u64> {
    let clusters = call(target, "DescribeClusters", &json!({"clusters": ["default"]})).await?;
    Ok(clusters["clusters"][0]["runningTasksCount"].as_u64().unwrap_or(0))
}

/// What a RunTask load measured.
#[derive(Debug, Default)]
pub struct Outcome {
    pub requests: u64,
    pub placed: u64,
    /// Tasks that came back as failures.
    pub failed: u64,
    /// Requests answered with something other than 200, or not at all.
    pub errors: u64,
    pub first_error: Option<String>,
    pub first_failure: Option<String>,
    /// Latencies in nanoseconds, sorted.
    pub latencies: Vec<u64>,
    pub elapsed: Duration,
    pub server_cpu: Option<Duration>,
}

impl Outcome {
    pub fn tasks_per_second(&self) -> f64 {
        self.placed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-quantile latency, nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.latencies.len() as f64) * p).ceil() as usize;
        Duration::from_nanos(self.latencies[rank.clamp(1, self.latencies.len()) - 1])
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    tasks: Vec<IgnoredAny>,
    #[serde(default)]
    failures: Vec<Value>,
}

/// Shared between the clients of one load.
#[derive(Default)]
struct Shared {
    placed: AtomicU64,
    failed: AtomicU64,
    outcome: Mutex<Outcome>,
}

/// Sends RunTask (count 10) from `clients` concurrent connections until `tasks` tasks are
/// placed, or until as many tasks have failed (a fleet that cannot hold them).
pub async fn drive(target: &Target, clients: usize, tasks: u64) -> Outcome {
    let shared = Arc::new(Shared::default());
    let target = Arc::new(target.clone());
    let server_before = target.pid.and_then(procs::cpu_time);
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (shared, target) = (shared.clone(), target.clone());
            tokio::spawn(async move { client(&target, &shared, c, tasks).await })
        })
        .collect();
    for h in handles {
        if let Err(e) = h.await {
            let mut o = shared.outcome.lock().expect("outcome lock");
            o.errors += 1;
            o.first_error.get_or_insert(format!("a client failed: {e}"));
        }
    }
    let elapsed = started.elapsed();
    let server_after = target.pid.and_then(procs::cpu_time);
    let mut o = std::mem::take(&mut *shared.outcome.lock().expect("outcome lock"));
    o.placed = shared.placed.load(Ordering::Relaxed);
    o.failed = shared.failed.load(Ordering::Relaxed);
    o.elapsed = elapsed;
    o.server_cpu = server_before.zip(server_after).map(|(b, a)| a.saturating_sub(b));
    o.latencies.sort_unstable();
    o
}

async fn client(target: &Target, shared: &Shared, c: usize, tasks: u64) {
    let mut latencies = Vec::new();
    let (mut requests, mut errors) = (0u64, 0u64);
    let mut first_error = None;
    let mut first_failure = None;
    let mut sender = None;
    let mut n = 0u64;
    while shared.placed.load(Ordering::Relaxed) < tasks && shared.failed.load(Ordering::Relaxed) < tasks {
        let s = match &mut sender {
            Some(s) => s,
            None => match connect(target.addr).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        n += 1;
        let body = json!({
            "cluster": "default",
            "taskDefinition": FAMILY,
            "count": 10,
            "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"}],
            "clientToken": format!("bench-{}-{c}-{n}", std::process::id()),
        });
        let req = match signed_request(target, "RunTask", serde_json::to_vec(&body).unwrap_or_default()) {
            Ok(r) => r,
            Err(e) => {
                first_error.get_or_insert(format!("building the request: {e}"));
                errors += 1;
                break;
            }
        };
        let sent = Instant::now();
        let result = exchange(s, req).await;
        let latency = sent.elapsed();
        match result {
            Ok((200, bytes)) => match serde_json::from_slice::<Answer>(&bytes) {
                Ok(a) => {
                    requests += 1;
                    latencies.push(latency.as_nanos() as u64);
                    shared.placed.fetch_add(a.tasks.len() as u64, Ordering::Relaxed);
                    shared.failed.fetch_add(a.failures.len() as u64, Ordering::Relaxed);
                    if let Some(f) = a.failures.first() {
                        first_failure.get_or_insert_with(|| f.to_string());
                    }
                }
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(format!("decoding the answer: {e}"));
                }
            },
            Ok((status, bytes)) => {
                errors += 1;
                first_error.get_or_insert(format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)));
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(format!("transport: {e}"));
                sender = None;
            }
        }
    }
    let mut o = shared.outcome.lock().expect("outcome lock");
    o.requests += requests;
    o.errors += errors;
    o.latencies.extend(latencies);
    if o.first_error.is_none() {
        o.first_error = first_error;
    }
    if o.first_failure.is_none() {
        o.first_failure = first_failure;
    }
}
