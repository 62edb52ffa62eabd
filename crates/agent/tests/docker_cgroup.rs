//! Task-level cpu and memory on the real Docker Engine: a task sized "256" cpu and "128" MiB runs
//! with all its containers (the awsvpc pause container included) under one task cgroup whose
//! files carry the limits, and the cgroup is gone once the task has stopped.
//!
//! The image is Flotilla's own workload image, built locally (never pulled). The test skips,
//! saying why, only when no Docker daemon answers; everything else is asserted. It reads the
//! cgroup files under /sys/fs/cgroup, so it expects the daemon on this machine, as the other
//! Docker tests of this crate do. A guard removes the test's containers and network even if an
//! assertion fails.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::Docker;
use flotilla_agent::cgroup::{Layout, TaskCgroups, Version, DEFAULT_ROOT};
use flotilla_agent::engine::EngineConfig;
use flotilla_agent::network::NetworkConfig;
use flotilla_agent::runtime::docker::{DockerRuntime, DockerTimeouts};
use flotilla_agent::runtime::labels;
use flotilla_agent::{Engine, PullBehavior};
use flotilla_model::{ContainerDefinition, Task, TaskDefinition};
use flotilla_protocol::{TaskAssignment, TaskReport};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

const CLUSTER: &str = "arn:aws:ecs:local:000000000000:cluster/agent-cgroup-tests";
const WAIT: Duration = Duration::from_secs(90);

mod common;
use common::Cleanup;

async fn until(reports: &mut UnboundedReceiver<TaskReport>, task: &str, status: &str) -> TaskReport {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    loop {
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Some(r)) if r.task_arn == task && r.status == status => return r,
            Ok(Some(r)) if r.task_arn == task => last = Some(r),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("{task}: never {status}; last report: {last:#?}"),
        }
    }
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_string()
}

/// Every directory the task's cgroup occupies: `<hierarchy>/flotilla/<task>` in each v1
/// hierarchy (runc adds the ones besides cpu and memory), or the one v2 directory.
fn task_cgroup_dirs(task_id: &str) -> Vec<PathBuf> {
    let root = PathBuf::from(DEFAULT_ROOT);
    let mut dirs = vec![root.join("flotilla").join(task_id)];
    for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        dirs.push(entry.path().join("flotilla").join(task_id));
    }
    dirs
}

/// The daemon, or `None` (the reason printed) when none answers.
async fn docker_runtime() -> Option<DockerRuntime> {
    match DockerRuntime::connect(DockerTimeouts::default()).await {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("skipped: no Docker daemon answers ({e})");
            None
        }
    }
}

/// An engine with its own instance identity and awsvpc network, and the guard that cleans up.
async fn engine(runtime: DockerRuntime) -> (Engine, UnboundedReceiver<TaskReport>, Cleanup, tempfile::TempDir) {
    let runtime = Arc::new(runtime);
    let docker = runtime.docker().clone();
    flotilla_images::ensure_standard_images(&docker).await.expect("build the workload and pause images");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let instance = format!("arn:aws:ecs:local:000000000000:container-instance/agent-cgroup-tests/{id}");
    let network = format!("flotilla-cgtest-{}", &id[..12]);
    let cleanup = Cleanup { docker, instance: instance.clone(), network: network.clone() };
    let data = tempfile::tempdir().expect("data dir");
    let mut config = EngineConfig::new(data.path(), CLUSTER, &instance);
    config.pull_behavior = PullBehavior::IfNotPresent;
    config.network = NetworkConfig { awsvpc_network: network, ..NetworkConfig::default() };
    config.default_stop_timeout = Duration::from_secs(5);
    config.resync_interval = Duration::from_secs(2);
    let (tx, reports) = unbounded_channel();
    (Engine::new(config, runtime, tx), reports, cleanup, data)
}

fn workload(name: &str) -> ContainerDefinition {
    ContainerDefinition {
        name: Some(name.into()),
        image: Some(flotilla_images::WORKLOAD_IMAGE.into()),
        command: Some(vec!["sleep".into(), "inf".into()]),
        ..Default::default()
    }
}

/// A task of two containers (one with its own 64 MiB, one without) sized `cpu` / `memory`.
fn sized_task(arn: &str, mode: &str, cpu: &str, memory: &str) -> TaskAssignment {
    TaskAssignment {
        task: Task { task_arn: Some(arn.into()), desired_status: Some("RUNNING".into()), ..Default::default() },
        definition: TaskDefinition {
            family: Some("cgroup".into()),
            revision: Some(1),
            network_mode: Some(mode.into()),
            cpu: Some(cpu.into()),
            memory: Some(memory.into()),
            container_definitions: Some(vec![
                ContainerDefinition { memory: Some(64), ..workload("app") },
                workload("sidecar"),
            ]),
            ..Default::default()
        },
        reserved_ports: Vec::new(),
        network: None,
        stop_timeout_cap_seconds: None,
    }
}

async fn task_containers(docker: &Docker, arn: &str) -> Vec<bollard::models::ContainerInspectResponse> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{}={arn}", labels::TASK)])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    let mut out = Vec::new();
    for c in docker.list_containers(Some(options)).await.unwrap() {
        out.push(docker.inspect_container(c.id.as_deref().unwrap(), None).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_level_cpu_and_memory_confine_every_container_in_one_cgroup() {
    let Some(runtime) = docker_runtime().await else { return };
    let docker = runtime.docker().clone();
    let info = docker.info().await.expect("docker info");
    let layout = Layout::from_docker(
        info.cgroup_driver.map(|d| d.to_string()).as_deref(),
        info.cgroup_version.map(|v| v.to_string()).as_deref(),
    );
    let (engine, mut reports, _cleanup, _data) = engine(runtime).await;

    let task_id = uuid::Uuid::new_v4().simple().to_string();
    let arn = format!("arn:aws:ecs:local:000000000000:task/agent-cgroup-tests/{task_id}");
    let a = sized_task(&arn, "awsvpc", "256", "128");
    engine.apply(a.clone()).unwrap();
    until(&mut reports, &arn, "RUNNING").await;

    // Every container of the task, the pause container included, is under the task's cgroup.
    let parent = layout.parent(&task_id);
    let listed = task_containers(&docker, &arn).await;
    assert_eq!(listed.len(), 3, "app, sidecar and the pause container: {listed:#?}");
    for c in listed {
        let (host, name) = (c.host_config.unwrap(), c.name.unwrap_or_default());
        assert_eq!(host.cgroup_parent.as_deref(), Some(parent.as_str()), "{name}");
        // The task's cpu is the cgroup's: no container carries a quota of its own.
        assert_eq!((host.cpu_quota, host.nano_cpus), (Some(0), Some(0)), "{name}");
        // And the kernel agrees: the container's process is in a cgroup below the task's.
        let pid = c.state.unwrap().pid.unwrap();
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let marker = if parent.starts_with('/') { format!("{parent}/") } else { format!("/{parent}/") };
        assert!(own.lines().any(|l| l.contains(&marker)), "{name}: {own}");
    }

    // The limits are in force in the task cgroup's files.
    let files = TaskCgroups::new(DEFAULT_ROOT, layout).limit_dirs(&task_id);
    match layout.version {
        Version::V1 => {
            let (cpu, memory) = (&files[0], &files[1]);
            assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "25000");
            assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
            assert_eq!(read(&memory.join("memory.limit_in_bytes")), (128u64 << 20).to_string());
        }
        Version::V2 => {
            assert_eq!(read(&files[0].join("cpu.max")), "25000 100000");
            assert_eq!(read(&files[0].join("memory.max")), (128u64 << 20).to_string());
        }
    }

    let mut stop = a;
    stop.task.desired_status = Some("STOPPED".into());
    engine.apply(stop).unwrap();
    until(&mut reports, &arn, "STOPPED").await;
    for dir in task_cgroup_dirs(&task_id) {
        assert!(!dir.exists(), "{} is left after the task stopped", dir.display());
    }
    assert!(files.iter().all(|d| !d.exists()));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_no_task_cgroup_can_be_made_each_container_is_capped() {
    let Some(runtime) = docker_runtime().await else { return };
    // A cgroup root with no hierarchies in it: as on a host whose cgroups the agent cannot write.
    let nowhere = tempfile::tempdir().expect("empty root");
    let runtime = runtime.with_cgroup_root(nowhere.path());
    let docker = runtime.docker().clone();
    let (engine, mut reports, _cleanup, _data) = engine(runtime).await;
    let arn = format!("arn:aws:ecs:local:000000000000:task/agent-cgroup-tests/{}", uuid::Uuid::new_v4().simple());
    let a = sized_task(&arn, "bridge", "512", "256");
    engine.apply(a.clone()).unwrap();
    until(&mut reports, &arn, "RUNNING").await;
    let mut memories = Vec::new();
    for c in task_containers(&docker, &arn).await {
        let host = c.host_config.unwrap();
        assert_eq!(host.cgroup_parent.as_deref().unwrap_or_default(), "", "no task cgroup");
        // Half a core each, and the task's memory for the container without its own.
        assert_eq!(host.nano_cpus, Some(500_000_000));
        memories.push(host.memory.unwrap());
    }
    memories.sort();
    assert_eq!(memories, vec![64 << 20, 256 << 20]);
    assert!(std::fs::read_dir(nowhere.path()).unwrap().next().is_none(), "nothing was made under the root");
    let mut stop = a;
    stop.task.desired_status = Some("STOPPED".into());
    engine.apply(stop).unwrap();
    until(&mut reports, &arn, "STOPPED").await;
    engine.shutdown().await;
}
