//! Fargate tasks on the real Docker Engine under gVisor's `runsc` (registered with the engine, as
//! `scripts/setup-gvisor.sh` does): the sandbox check a pool host makes at start, and one task
//! from PROVISIONING to STOPPED, of one container (one sandbox holding the task's address and MAC
//! in its own subnet network itself, reached there) and of two (every container, the pause
//! container that holds the address too, under runsc, sharing localhost): gVisor's kernel seen
//! from inside, and the task metadata endpoint read from inside the sandbox. What a Fargate task may not do
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

/// A pool host's engine on the real engine, with its metadata endpoint, and a subnet of its own.
struct PoolHost {
    runtime: Arc<DockerRuntime>,
    engine: Engine,
    reports: tokio::sync::mpsc::UnboundedReceiver<TaskReport>,
    eni: TaskNetwork,
    octet: u8,
    id: String,
    _data: tempfile::TempDir,
    _cleanup: Cleanup,
}

impl PoolHost {
    async fn start() -> PoolHost {
        let runtime = runtime().await;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let octet = u8::from_str_radix(&id[..2], 16).expect("hex");
        let instance = format!("arn:aws:ecs:us-east-1:000000000000:container-instance/fargate.pool/{id}");
        let eni = TaskNetwork {
            subnet_id: format!("subnet-test{}", &id[..8]),
            // A block of its own per run, so a leftover of a crashed run never overlaps.
            cidr_block: format!("10.213.{octet}.0/24"),
            ipv4_address: format!("10.213.{octet}.9"),
            mac_address: "02:00:0a:d5:00:09".into(),
            interface_id: "eni-test".into(),
        };
        let cleanup =
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
        let (tx, reports) = unbounded_channel::<TaskReport>();
        let engine = Engine::new(config, runtime.clone(), tx);
        let state = MetadataState {
            runtime: runtime.clone(),
            tasks: Arc::new(engine.clone()),
            instance_arn: instance.clone(),
            cluster_arn: CLUSTER.into(),
            availability_zone: Some("us-east-1a".into()),
        };
        tokio::spawn(serve(listener, state, std::future::pending()));
        PoolHost { runtime, engine, reports, eni, octet, id, _data: data, _cleanup: cleanup }
    }

    fn address(&self) -> String {
        self.eni.ipv4_address.clone()
    }

    fn assignment(&self, containers: Vec<ContainerDefinition>) -> TaskAssignment {
        TaskAssignment {
            task: Task {
                task_arn: Some(format!("arn:aws:ecs:us-east-1:000000000000:task/fargate-tests/{}", self.id)),
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
                container_definitions: Some(containers),
                ..Default::default()
            },
            reserved_ports: Vec::new(),
            network: Some(self.eni.clone()),
            stop_timeout_cap_seconds: None,
        }
    }

    /// Waits for the task's report of `status`, noting every status passed in `seen`.
    async fn until(&mut self, status: &str, seen: &mut Vec<String>) -> TaskReport {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = tokio::time::timeout_at(deadline, self.reports.recv())
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
    }

    /// Checks the container is a sandbox holding the task's interface on the subnet's network.
    async fn assert_holds_the_interface(&self, id: &str) {
        let inspected = self.runtime.docker().inspect_container(id, None).await.expect("inspect");
        let nets = inspected.network_settings.and_then(|n| n.networks).unwrap_or_default();
        assert_eq!(nets.len(), 1, "{nets:?}");
        let ep = nets.get(&self.eni.docker_network()).expect("on the subnet's network");
        assert_eq!(ep.ip_address.as_deref(), Some(self.address().as_str()));
        assert_eq!(ep.mac_address.as_deref(), Some("02:00:0a:d5:00:09"));
        assert_eq!(ep.gateway.as_deref(), Some(format!("10.213.{}.1", self.octet).as_str()));
    }

    /// Checks the task cgroup holds the sandboxes (gVisor's sentry and gofer) to 512 MiB and a
    /// quarter of a core.
    async fn assert_in_the_task_cgroup(&self, id: &str) {
        let host = self.runtime.docker().inspect_container(id, None).await.expect("inspect").host_config.unwrap();
        let parent = host.cgroup_parent.expect("a task cgroup");
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
        // And to its quarter of a core, set once the first sandbox had booted.
        let quota = match std::fs::read_to_string(format!("/sys/fs/cgroup/cpu{parent}/cpu.cfs_quota_us")) {
            Ok(v1) => v1.trim().to_string(),
            Err(_) => std::fs::read_to_string(format!("/sys/fs/cgroup{parent}/cpu.max"))
                .expect("the task's CPU quota")
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string(),
        };
        assert_eq!(quota, "25000", "{parent}");
    }

    /// Checks what the container printed: gVisor's kernel, then its own task's metadata.
    async fn assert_sandboxed_and_reads_its_metadata(&self, id: &str, arn: &str) {
        let lines = stdout_until(&self.runtime, id, 2).await;
        assert!(lines[0].starts_with("Linux version 4.4.0"), "not gVisor's kernel: {lines:?}");
        let task: serde_json::Value = serde_json::from_str(&lines[1]).unwrap_or_else(|e| panic!("{}: {e}", lines[1]));
        assert_eq!(task["TaskARN"], arn);
        assert_eq!(task["LaunchType"], FARGATE);
        assert_eq!(task["AvailabilityZone"], "us-east-1a");
        assert_eq!(task["Limits"]["CPU"], 0.25);
        assert_eq!(task["Limits"]["Memory"], 512);
        let me = task["Containers"].as_array().expect("Containers").iter().find(|c| c["Name"] == "app").expect("app");
        let net = &me["Networks"][0];
        assert_eq!(net["NetworkMode"], "awsvpc");
        assert_eq!(net["IPv4Addresses"][0], self.address().as_str());
        assert_eq!(net["MACAddress"], "02:00:0a:d5:00:09");
    }
}

/// A container that prints its kernel and its task's metadata, then serves on 8080.
fn probe_app() -> ContainerDefinition {
    let probe =
        ["cat", "/proc/version", "then", "fetch", "${ECS_CONTAINER_METADATA_URI_V4}/task", "then", "serve", "8080"];
    ContainerDefinition {
        name: Some("app".into()),
        image: Some(flotilla_images::WORKLOAD_IMAGE.into()),
        command: Some(probe.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

fn name_of(c: &flotilla_agent::runtime::ContainerSummary) -> &str {
    c.labels.get(labels::CONTAINER).map(String::as_str).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_container_fargate_task_is_one_sandbox_at_its_own_address_and_reads_its_metadata() {
    let mut host = PoolHost::start().await;
    let mut a = host.assignment(vec![probe_app()]);
    let arn = a.task.task_arn.clone().unwrap();
    host.engine.apply(a.clone()).expect("apply");
    let mut seen = Vec::new();
    let running = host.until("RUNNING", &mut seen).await;
    assert_eq!(running.private_ipv4.as_deref(), Some(host.address().as_str()));

    // One sandbox, no pause container: the app holds the task's address and MAC itself.
    let ours = host.runtime.list_containers(&[(labels::TASK, Some(arn.as_str()))]).await.expect("list");
    assert_eq!(ours.iter().map(name_of).collect::<Vec<_>>(), ["app"], "{ours:?}");
    let inspected = host.runtime.docker().inspect_container(&ours[0].id, None).await.expect("inspect");
    let hc = inspected.host_config.expect("HostConfig");
    assert_eq!(hc.runtime.as_deref(), Some(RUNSC));
    assert_ne!(hc.privileged, Some(true));
    assert!(hc.port_bindings.unwrap_or_default().is_empty());
    host.assert_holds_the_interface(&ours[0].id).await;
    host.assert_in_the_task_cgroup(&ours[0].id).await;
    host.assert_sandboxed_and_reads_its_metadata(&ours[0].id, &arn).await;

    // It is reached at its own address from the subnet.
    let reach = format!("{}:8080", host.address());
    let out = host
        .runtime
        .docker()
        .create_container(
            Some(bollard::query_parameters::CreateContainerOptionsBuilder::default().build()),
            bollard::models::ContainerCreateBody {
                image: Some(flotilla_images::WORKLOAD_IMAGE.into()),
                cmd: Some(["connect", reach.as_str(), "--timeout", "30"].map(String::from).to_vec()),
                labels: Some(HashMap::from([(labels::INSTANCE.to_string(), host._cleanup.instance.clone())])),
                host_config: Some(bollard::models::HostConfig {
                    network_mode: Some(host.eni.docker_network()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create a client on the subnet");
    host.runtime.docker().start_container(&out.id, None).await.expect("start the client");
    let said = stdout_until(&host.runtime, &out.id, 1).await;
    assert!(said[0].starts_with("connected to"), "{said:?}");

    a.task.desired_status = Some("STOPPED".into());
    host.engine.apply(a).expect("stop");
    host.until("STOPPED", &mut seen).await;
    assert_eq!(
        seen,
        ["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"]
    );
    host.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fargate_task_of_two_sandboxes_shares_its_pause_containers_address_and_localhost() {
    let mut host = PoolHost::start().await;
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
    let mut a = host.assignment(vec![probe_app(), side]);
    let arn = a.task.task_arn.clone().unwrap();
    host.engine.apply(a.clone()).expect("apply");
    let mut seen = Vec::new();
    let running = host.until("RUNNING", &mut seen).await;
    assert_eq!(running.private_ipv4.as_deref(), Some(host.address().as_str()));

    // Every container of the task, its pause container too, is a gVisor sandbox.
    let ours = host.runtime.list_containers(&[(labels::TASK, Some(arn.as_str()))]).await.expect("list");
    assert_eq!(ours.len(), 3, "app, side and their pause container: {ours:?}");
    for c in &ours {
        let inspected = host.runtime.docker().inspect_container(&c.id, None).await.expect("inspect");
        let hc = inspected.host_config.expect("HostConfig");
        assert_eq!(hc.runtime.as_deref(), Some(RUNSC), "{}", c.name);
        assert_ne!(hc.privileged, Some(true));
        if name_of(c) == labels::PAUSE_NAME {
            host.assert_holds_the_interface(&c.id).await;
        }
    }
    host.assert_in_the_task_cgroup(&ours[0].id).await;
    let app = ours.iter().find(|c| name_of(c) == "app").unwrap();
    host.assert_sandboxed_and_reads_its_metadata(&app.id, &arn).await;

    // The subnet's network is Flotilla's, with the daemon's MTU.
    let net =
        host.runtime.docker().inspect_network(&host.eni.docker_network(), None).await.expect("the subnet network");
    assert_eq!(net.labels.unwrap_or_default().get(labels::MARKER).map(String::as_str), Some("true"));
    let bridge = host.runtime.docker().inspect_network("bridge", None).await.expect("the bridge");
    let mtu = |o: Option<HashMap<String, String>>| o.unwrap_or_default().get("com.docker.network.driver.mtu").cloned();
    assert_eq!(mtu(net.options), mtu(bridge.options));

    let side = ours.iter().find(|c| name_of(c) == "side").unwrap();
    let side_out = stdout_until(&host.runtime, &side.id, 1).await;
    assert!(side_out[0].starts_with("connected to 127.0.0.1:8080"), "{side_out:?}");

    a.task.desired_status = Some("STOPPED".into());
    host.engine.apply(a).expect("stop");
    host.until("STOPPED", &mut seen).await;
    let from_running = seen.iter().position(|s| s == "RUNNING").unwrap();
    assert_eq!(seen[..from_running], ["PROVISIONING", "PENDING", "ACTIVATING"]);
    assert_eq!(seen[from_running..], ["RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"]);
    // The pause container, and with it the interface, is gone.
    let left = host.runtime.list_containers(&[(labels::TASK, Some(arn.as_str()))]).await.expect("list");
    assert!(left.iter().all(|c| name_of(c) != labels::PAUSE_NAME));
    host.engine.shutdown().await;
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
