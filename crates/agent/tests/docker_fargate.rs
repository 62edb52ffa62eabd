//! Fargate tasks on the real Docker Engine under gVisor's `runsc` (registered with the engine, as
//! `scripts/setup-gvisor.sh` does): the sandbox check a pool host makes at start, and one task
//! from PROVISIONING to STOPPED: every container (the pause container too) under runsc, the task
//! at its own address and MAC in its own subnet network, gVisor's kernel seen from inside, and
//! the task metadata endpoint read from inside the sandbox. What a Fargate task may not do
//! (privileged, host paths, capabilities) is refused before anything is created; the fake-runtime
//! tests (`engine::tests::fargate`) cover those cases, so they are not repeated here.
//!
//! The test's subnet (a /24 in 10.213.0.0/16 and an id, both picked per run) and its containers are removed by a guard
//! even when the test panics. A host without Docker or runsc fails these tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_agent::engine::EngineConfig;
use flotilla_agent::metadata::address::{bind, ListenChoice};
use flotilla_agent::metadata::{serve, MetadataEndpoint, MetadataState};
use flotilla_agent::runtime::docker::{DockerRuntime, DockerTimeouts};
use flotilla_agent::runtime::sandbox::RUNSC;
use flotilla_agent::runtime::{labels, LogSource};
use flotilla_agent::{Engine, PullBehavior, Runtime};
use flotilla_model::{ContainerDefinition, Task, TaskDefinition};
use flotilla_protocol::{TaskAssignment, TaskNetwork, TaskReport, FARGATE};
use futures::StreamExt;
use tokio::sync::mpsc::unbounded_channel;

const CLUSTER: &str = "arn:aws:ecs:us-east-1:000000000000:cluster/fargate-tests";
const WAIT: Duration = Duration::from_secs(90);

mod common;
use common::Cleanup;

async fn runtime() -> Arc<DockerRuntime> {
    let runtime = Arc::new(DockerRuntime::connect(DockerTimeouts::default()).await.expect("Docker Engine"));
    flotilla_images::ensure_standard_images(runtime.docker()).await.expect("build the test images");
    runtime
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_host_starts_a_sandbox_and_names_what_is_missing() {
    let runtime = runtime().await;
    let found = flotilla_agent::run::check_sandbox(&runtime, RUNSC).await.expect("runsc is registered and starts");
    assert!(found.path.ends_with("runsc"), "{found:?}");
    let missing = flotilla_agent::run::check_sandbox(&runtime, "no-such-sandbox").await.unwrap_err().to_string();
    for needle in
        ["apt-get install -y runsc", "/etc/docker/daemon.json", "--network=host", "kill -HUP $(pidof dockerd)"]
    {
        assert!(missing.contains(needle), "{needle}: {missing}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fargate_task_runs_sandboxed_at_its_own_address_and_reads_its_metadata() {
    let runtime = runtime().await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let octet = u8::from_str_radix(&id[..2], 16).expect("hex");
    let address = format!("10.213.{octet}.9");
    let instance = format!("arn:aws:ecs:us-east-1:000000000000:container-instance/fargate.pool/{id}");
    let eni = TaskNetwork {
        subnet_id: format!("subnet-test{}", &id[..8]),
        // A block of its own per run, so a leftover of a crashed run never overlaps.
        cidr_block: format!("10.213.{octet}.0/24"),
        ipv4_address: format!("10.213.{octet}.9"),
        mac_address: "02:00:0a:d5:00:09".into(),
        interface_id: "eni-test".into(),
    };
    let _cleanup =
        Cleanup { docker: runtime.docker().clone(), instance: instance.clone(), network: eni.docker_network() };

    // The metadata endpoint on the bridge gateway, as a pool host's agent runs it.
    let gateway = runtime.bridge_gateway().await.expect("inspect the bridge").expect("a bridge gateway");
    let listener = bind(ListenChoice::BridgeGateway { port: 0 }, Some(gateway)).await.expect("listen");
    let data = tempfile::tempdir().expect("data dir");
    let mut config = EngineConfig::new(data.path(), CLUSTER, &instance);
    config.pull_behavior = PullBehavior::IfNotPresent;
    config.sandbox_runtime = Some(RUNSC.into());
    config.default_stop_timeout = Duration::from_secs(5);
    config.resync_interval = Duration::from_secs(2);
    config.metadata = Some(MetadataEndpoint { base_url: format!("http://{}", listener.local_addr().unwrap()) });
    let (tx, mut reports) = unbounded_channel::<TaskReport>();
    let engine = Engine::new(config, runtime.clone(), tx);
    let state = MetadataState {
        runtime: runtime.clone(),
        tasks: Arc::new(engine.clone()),
        instance_arn: instance.clone(),
        cluster_arn: CLUSTER.into(),
        availability_zone: Some("us-east-1a".into()),
    };
    tokio::spawn(serve(listener, state, std::future::pending()));

    let arn = format!("arn:aws:ecs:us-east-1:000000000000:task/fargate-tests/{id}");
    let probe =
        ["cat", "/proc/version", "then", "fetch", "${ECS_CONTAINER_METADATA_URI_V4}/task", "then", "serve", "8080"];
    let app = ContainerDefinition {
        name: Some("app".into()),
        image: Some(flotilla_images::WORKLOAD_IMAGE.into()),
        command: Some(probe.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    // A second sandbox of the task reaches the first on localhost: one network namespace.
    let side = ContainerDefinition {
        name: Some("side".into()),
        image: Some(flotilla_images::WORKLOAD_IMAGE.into()),
        essential: Some(false),
        command: Some(
            ["connect", "127.0.0.1:8080", "--timeout", "60", "then", "sleep", "inf"].map(String::from).to_vec(),
        ),
        ..Default::default()
    };
    let mut a = TaskAssignment {
        task: Task {
            task_arn: Some(arn.clone()),
            desired_status: Some("RUNNING".into()),
            launch_type: Some(FARGATE.into()),
            ..Default::default()
        },
        definition: TaskDefinition {
            family: Some("fargate-tests".into()),
            revision: Some(1),
            network_mode: Some("awsvpc".into()),
            requires_compatibilities: Some(vec![FARGATE.into()]),
            cpu: Some("256".into()),
            memory: Some("512".into()),
            container_definitions: Some(vec![app, side]),
            ..Default::default()
        },
        reserved_ports: Vec::new(),
        network: Some(eni.clone()),
        stop_timeout_cap_seconds: None,
    };
    engine.apply(a.clone()).expect("apply");

    let mut seen: Vec<String> = Vec::new();
    let mut until = async |status: &str| -> TaskReport {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = tokio::time::timeout_at(deadline, reports.recv())
                .await
                .unwrap_or_else(|_| panic!("no {status}; saw {seen:?}"))
                .expect("reports");
            if r.status == "STOPPED" && status != "STOPPED" {
                panic!("stopped early: {:?}; saw {seen:?}", r.stopped_reason);
            }
            if seen.last() != Some(&r.status.as_str().to_string()) {
                seen.push(r.status.as_str().to_string());
            }
            if r.status == status {
                return r;
            }
        }
    };
    let running = until("RUNNING").await;
    assert_eq!(running.private_ipv4.as_deref(), Some(address.as_str()));

    // Every container of the task, its pause container too, is a gVisor sandbox.
    let ours = runtime.list_containers(&[(labels::TASK, Some(arn.as_str()))]).await.expect("list");
    assert_eq!(ours.len(), 3, "app, side and their pause container: {ours:?}");
    for c in &ours {
        let inspected = runtime.docker().inspect_container(&c.id, None).await.expect("inspect");
        let host = inspected.host_config.expect("HostConfig");
        assert_eq!(host.runtime.as_deref(), Some(RUNSC), "{}", c.name);
        assert_ne!(host.privileged, Some(true));
        if c.labels.get(labels::CONTAINER).map(String::as_str) == Some(labels::PAUSE_NAME) {
            let nets = inspected.network_settings.and_then(|n| n.networks).unwrap_or_default();
            let ep = nets.get(&eni.docker_network()).expect("on the subnet's network");
            assert_eq!(ep.ip_address.as_deref(), Some(address.as_str()));
            assert_eq!(ep.mac_address.as_deref(), Some("02:00:0a:d5:00:09"));
            assert_eq!(ep.gateway.as_deref(), Some(format!("10.213.{octet}.1").as_str()));
        }
    }

    // The task cgroup holds the sandboxes (gVisor's sentry and gofer) to the task's 512 MiB.
    let parent = runtime.docker().inspect_container(&ours[0].id, None).await.expect("inspect").host_config.unwrap();
    let parent = parent.cgroup_parent.expect("a task cgroup");
    let (v1, v2) = (format!("/sys/fs/cgroup/memory{parent}"), format!("/sys/fs/cgroup{parent}"));
    let (dir, limit_file) =
        if std::path::Path::new(&v1).is_dir() { (v1, "memory.limit_in_bytes") } else { (v2, "memory.max") };
    let limit = std::fs::read_to_string(format!("{dir}/{limit_file}")).expect("the task's memory limit");
    assert_eq!(limit.trim(), (512u64 << 20).to_string(), "{dir}");
    let procs: usize = std::fs::read_dir(&dir)
        .expect("the task cgroup")
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| std::fs::read_to_string(e.path().join("cgroup.procs")).ok())
        .map(|p| p.lines().count())
        .sum();
    assert!(procs > 0, "no sandbox process under {dir}");

    // From inside: gVisor's kernel, and the task's own metadata.
    let app_id = ours.iter().find(|c| c.labels.get(labels::CONTAINER).map(String::as_str) == Some("app")).unwrap();
    let lines = stdout_until(&runtime, &app_id.id, 2).await;
    assert!(lines[0].starts_with("Linux version 4.4.0"), "not gVisor's kernel: {lines:?}");
    let task: serde_json::Value = serde_json::from_str(&lines[1]).unwrap_or_else(|e| panic!("{}: {e}", lines[1]));
    assert_eq!(task["TaskARN"], arn.as_str());
    assert_eq!(task["LaunchType"], FARGATE);
    assert_eq!(task["AvailabilityZone"], "us-east-1a");
    assert_eq!(task["Limits"]["CPU"], 0.25);
    assert_eq!(task["Limits"]["Memory"], 512);
    let me = task["Containers"].as_array().expect("Containers").iter().find(|c| c["Name"] == "app").expect("app");
    let net = &me["Networks"][0];
    assert_eq!(net["NetworkMode"], "awsvpc");
    assert_eq!(net["IPv4Addresses"][0], address.as_str());
    assert_eq!(net["MACAddress"], "02:00:0a:d5:00:09");

    // The subnet's network is Flotilla's, with the daemon's MTU.
    let net = runtime.docker().inspect_network(&eni.docker_network(), None).await.expect("the subnet network");
    assert_eq!(net.labels.unwrap_or_default().get(labels::MARKER).map(String::as_str), Some("true"));
    let bridge = runtime.docker().inspect_network("bridge", None).await.expect("the bridge");
    let mtu = |o: Option<HashMap<String, String>>| o.unwrap_or_default().get("com.docker.network.driver.mtu").cloned();
    assert_eq!(mtu(net.options), mtu(bridge.options));

    let side_id = ours.iter().find(|c| c.labels.get(labels::CONTAINER).map(String::as_str) == Some("side")).unwrap();
    let side_out = stdout_until(&runtime, &side_id.id, 1).await;
    assert!(side_out[0].starts_with("connected to 127.0.0.1:8080"), "{side_out:?}");

    a.task.desired_status = Some("STOPPED".into());
    engine.apply(a).expect("stop");
    until("STOPPED").await;
    let from_running = seen.iter().position(|s| s == "RUNNING").unwrap();
    assert_eq!(seen[..from_running], ["PROVISIONING", "PENDING", "ACTIVATING"]);
    assert_eq!(seen[from_running..], ["RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"]);
    // The pause container, and with it the interface, is gone.
    let left = runtime.list_containers(&[(labels::TASK, Some(arn.as_str()))]).await.expect("list");
    assert!(left.iter().all(|c| c.labels.get(labels::CONTAINER).map(String::as_str) != Some(labels::PAUSE_NAME)));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_racing_to_create_a_subnet_network_share_one() {
    use flotilla_agent::runtime::NetworkSpec;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let octet = u8::from_str_radix(&id[..2], 16).expect("hex");
    let name = format!("flotilla-subnet-race{}", &id[..8]);
    let spec = NetworkSpec {
        name: name.clone(),
        labels: [(labels::MARKER.to_string(), "true".to_string())].into(),
        subnet: Some(format!("10.214.{octet}.0/24")),
        gateway: Some(format!("10.214.{octet}.1")),
    };
    // Two agents on one engine: two clients, each with its own lock.
    let (one, two) = (runtime().await, runtime().await);
    let _cleanup = Cleanup { docker: one.docker().clone(), instance: format!("none-{id}"), network: name.clone() };
    let (a, b) = tokio::join!(one.ensure_network(&spec), two.ensure_network(&spec));
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(a, b, "one network for the subnet");
    let other = NetworkSpec { subnet: Some(format!("10.215.{octet}.0/24")), ..spec };
    let clash = one.ensure_network(&other).await.unwrap_err().to_string();
    assert!(clash.contains("instead of"), "{clash}");
}

/// The first `n` stdout lines of a container, waiting for them.
async fn stdout_until(runtime: &DockerRuntime, id: &str, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let chunks: Vec<_> = runtime.logs(id, None, false).collect().await;
        let lines: Vec<String> = chunks
            .into_iter()
            .filter_map(Result::ok)
            .filter(|c| c.source == LogSource::Stdout)
            .map(|c| c.line.trim_end().to_string())
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(std::time::Instant::now() < deadline, "{id}: only {lines:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
