//! The fleet the benchmark reads: a deterministic set of realistic running EC2 tasks, written
//! straight into a fresh store with the control plane's own key layout and codec, in a few big
//! transactions, before the server is started on it.
//!
//! Task `i` is fully determined by `i`: its ID, family (`i % FAMILIES`), `startedBy`
//! (`(i / FAMILIES) % STARTERS`), container instance and host port. The load generator uses the
//! same functions to name tasks that exist without reading them back.

use std::path::Path;
use std::time::{Duration, Instant};

use flotilla_api::state::codec::encode;
use flotilla_api::state::keys;
use flotilla_api::state::records::{Reservation, TaskRecord};
use flotilla_model::arn::ArnScope;
use flotilla_model::{
    Container, ContainerOverride, DescribeTasksResponse, NetworkBinding, Task, TaskOverride, Timestamp,
};
use flotilla_store::{Op, RedbStore, Store, Txn, TxnOutcome};

/// The cluster every seeded task is in (the one the server creates at start).
pub const CLUSTER: &str = "default";
/// Region and account the server is started with, so the seeded ARNs are its own.
pub const REGION: &str = "us-east-1";

/// The name of availability zone number `z` of [`REGION`]: `us-east-1a`, `us-east-1b`, ...
pub fn zone(z: usize) -> String {
    format!("{REGION}{}", (b'a' + z as u8) as char)
}
pub const ACCOUNT: &str = "000000000000";
/// How many task definition families the tasks are spread over.
pub const FAMILIES: u64 = 10;
/// How many distinct `startedBy` values the tasks carry.
pub const STARTERS: u64 = 5;
/// How many container instances the tasks are placed on.
pub const INSTANCES: u64 = 200;
/// Tasks per seeding transaction.
pub const BATCH: u64 = 10_000;

/// A fixed "now" for the seeded timestamps, so the data (and the answer sizes) never vary.
const NOW_MS: i64 = 1_750_000_000_000;

pub fn arns() -> ArnScope {
    ArnScope::new(REGION, ACCOUNT)
}

pub fn family(f: u64) -> String {
    format!("bench-app-{f}")
}

pub fn started_by(s: u64) -> String {
    format!("deployer-{s}")
}

/// SplitMix64: a tiny, good-enough mixer for IDs and for the load generator's choices.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 32-hex-digit task ID, like the ones ECS mints.
pub fn task_id(i: u64) -> String {
    format!("{:016x}{:016x}", mix(i), mix(i ^ 0x5555_5555_5555_5555))
}

fn instance_id(n: u64) -> String {
    format!("{:016x}{:016x}", mix(n ^ 0xC0FF_EE00), mix(n ^ 0xFACE_0000))
}

/// The full ARN of task `i`, as ListTasks returns it and clients pass it back.
pub fn task_arn(arns: &ArnScope, i: u64) -> String {
    arns.task(CLUSTER, &task_id(i))
}

/// Seeded task `i`: RUNNING on an EC2 container instance, one container with a dynamic port.
pub fn task(arns: &ArnScope, i: u64) -> TaskRecord {
    let id = task_id(i);
    let fam = family(i % FAMILIES);
    let task_arn = arns.task(CLUSTER, &id);
    let host_port = 32768 + ((i / INSTANCES) % 28_000) as i32;
    let created = NOW_MS - (i % 86_400) as i64 * 1000;
    let at = |offset_ms: i64| Some(Timestamp::from_millis(created + offset_ms));
    let container = Container {
        container_arn: Some(arns.container(CLUSTER, &id, &task_id(i ^ 0xA5A5))),
        task_arn: Some(task_arn.clone()),
        name: Some("app".into()),
        image: Some(format!("registry.local/bench/{fam}:1.4.2")),
        runtime_id: Some(format!("{:016x}{:016x}{:016x}{:016x}", mix(i), mix(i + 1), mix(i + 2), mix(i + 3))),
        last_status: Some("RUNNING".into()),
        network_bindings: Some(vec![NetworkBinding {
            bind_ip: Some("0.0.0.0".into()),
            container_port: Some(8080),
            host_port: Some(host_port),
            protocol: Some("tcp".into()),
            ..Default::default()
        }]),
        health_status: Some("UNKNOWN".into()),
        cpu: Some("256".into()),
        memory: Some("512".into()),
        ..Default::default()
    };
    let task = Task {
        task_arn: Some(task_arn),
        cluster_arn: Some(arns.cluster(CLUSTER)),
        task_definition_arn: Some(arns.task_definition(&fam, 1)),
        container_instance_arn: Some(arns.container_instance(CLUSTER, &instance_id(i % INSTANCES))),
        last_status: Some("RUNNING".into()),
        desired_status: Some("RUNNING".into()),
        launch_type: Some("EC2".into()),
        cpu: Some("256".into()),
        memory: Some("512".into()),
        connectivity: Some("CONNECTED".into()),
        connectivity_at: at(900),
        created_at: at(0),
        pull_started_at: at(1_200),
        pull_stopped_at: at(3_400),
        started_at: at(4_100),
        group: Some(format!("family:{fam}")),
        started_by: Some(started_by((i / FAMILIES) % STARTERS)),
        health_status: Some("UNKNOWN".into()),
        enable_execute_command: Some(false),
        version: Some(2),
        overrides: Some(TaskOverride {
            container_overrides: Some(vec![ContainerOverride { name: Some("app".into()), ..Default::default() }]),
            inference_accelerator_overrides: Some(Vec::new()),
            ..Default::default()
        }),
        attachments: Some(Vec::new()),
        containers: Some(vec![container]),
        ..Default::default()
    };
    TaskRecord {
        task,
        reservation: Some(Reservation {
            cpu: 256,
            memory: 512,
            ports: vec![host_port as u16],
            ports_udp: vec![],
            gpus: vec![],
        }),
        hidden: None,
    }
}

/// The body DescribeTasks answers for `n` seeded tasks: the floor server answers with this, so
/// the floor moves as many bytes as the real answer.
pub fn describe_answer(n: u64) -> Vec<u8> {
    let arns = arns();
    let tasks = (0..n).map(|i| task(&arns, i).task).collect();
    serde_json::to_vec(&DescribeTasksResponse { tasks: Some(tasks), failures: Some(Vec::new()) })
        .expect("tasks always serialize")
}

/// What seeding took.
#[derive(Debug, Clone)]
pub struct SeedStats {
    pub tasks: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// Writes `count` seeded tasks into a new store at `path` (the server's `store.redb`).
pub async fn seed(path: &Path, count: u64) -> anyhow::Result<SeedStats> {
    let started = Instant::now();
    let store = RedbStore::open(path)?;
    let arns = arns();
    let mut bytes = 0u64;
    let mut next = 0u64;
    while next < count {
        let end = (next + BATCH).min(count);
        let mut txn = Txn::new();
        for i in next..end {
            let value = encode(&task(&arns, i));
            bytes += value.len() as u64;
            txn = txn.then(Op::put(keys::task(CLUSTER, &task_id(i)), value));
        }
        match store.txn(txn).await? {
            TxnOutcome::Committed { .. } => {}
            other => anyhow::bail!("seeding transaction was not committed: {other:?}"),
        }
        next = end;
    }
    drop(store);
    Ok(SeedStats { tasks: count, bytes, elapsed: started.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_api::state::cache::family_of_arn;

    #[test]
    fn tasks_are_deterministic_and_spread() {
        let arns = arns();
        assert_eq!(task(&arns, 7), task(&arns, 7));
        assert_ne!(task_id(1), task_id(2));
        assert_eq!(task_id(3).len(), 32);
        let t = task(&arns, 13).task;
        assert_eq!(t.task_definition_arn.as_deref().and_then(family_of_arn), Some("bench-app-3"));
        assert_eq!(t.started_by.as_deref(), Some("deployer-1"));
        assert_eq!(t.task_arn.as_deref(), Some(task_arn(&arns, 13).as_str()));
    }

    #[test]
    fn answer_is_a_describe_tasks_body() {
        let v: serde_json::Value = serde_json::from_slice(&describe_answer(2)).unwrap();
        assert_eq!(v["tasks"].as_array().unwrap().len(), 2);
        assert_eq!(v["failures"], serde_json::json!([]));
    }
}
