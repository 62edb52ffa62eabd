//! The task engine on the real Docker Engine, with Flotilla's locally built images (no registry is
//! reachable, and these tests never pull: `flotilla/...` images are built locally when missing,
//! and the one test with another image runs with `PullBehavior::Never`).
//!
//! Each test gets its own container instance ARN and awsvpc network name, so tests running in
//! parallel (and the reaper) never touch each other's containers, and a guard removes whatever the
//! test created (containers, the network, task volumes) even when it panics. Addresses contacted:
//! 127.0.0.1 for published ports, and the test's own Docker network between awsvpc tasks.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::ListContainersOptionsBuilder;
use flotilla_agent::engine::EngineConfig;
use flotilla_agent::network::NetworkConfig;
use flotilla_agent::runtime::docker::{DockerRuntime, DockerTimeouts};
use flotilla_agent::runtime::{labels, LogSource};
use flotilla_agent::{Engine, PullBehavior, Runtime};
use flotilla_model::{ContainerDefinition, HealthCheck, PortMapping, Task, TaskDefinition};
use flotilla_protocol::{ContainerReport, TaskAssignment, TaskReport};
use futures::StreamExt;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

const CLUSTER: &str = "arn:aws:ecs:local:000000000000:cluster/agent-tests";
const WORKLOAD: &str = flotilla_images::WORKLOAD_IMAGE;
/// Far longer than anything here should take; a hang still fails.
const WAIT: Duration = Duration::from_secs(60);

mod common;
use common::Cleanup;

struct Agent {
    engine: Engine,
    reports: UnboundedReceiver<TaskReport>,
    runtime: Arc<DockerRuntime>,
    config: EngineConfig,
    _data: Arc<tempfile::TempDir>,
    _cleanup: Arc<Cleanup>,
}

impl Agent {
    async fn start() -> Agent {
        Agent::start_with(|_| {}).await
    }

    /// An agent whose settings `tune` adjusts first.
    async fn start_with(tune: impl FnOnce(&mut EngineConfig)) -> Agent {
        let runtime = Arc::new(DockerRuntime::connect(DockerTimeouts::default()).await.expect("Docker Engine"));
        flotilla_images::ensure_standard_images(runtime.docker()).await.expect("build the test images");
        let id = uuid::Uuid::new_v4().simple().to_string();
        let instance = format!("arn:aws:ecs:local:000000000000:container-instance/agent-tests/{id}");
        let network = format!("flotilla-test-{}", &id[..12]);
        let cleanup = Arc::new(Cleanup {
            docker: runtime.docker().clone(),
            instance: instance.clone(),
            network: network.clone(),
        });
        let data = Arc::new(tempfile::tempdir().expect("data dir"));
        let mut config = EngineConfig::new(data.path(), CLUSTER, &instance);
        // Flotilla's own images are built locally when missing, never pulled; tests that use
        // another image say `PullBehavior::Never`, so no test ever contacts a registry.
        config.pull_behavior = PullBehavior::IfNotPresent;
        config.network =
            NetworkConfig { awsvpc_network: network, host_ip: Some("127.0.0.1".into()), ..NetworkConfig::default() };
        config.default_stop_timeout = Duration::from_secs(5);
        config.resync_interval = Duration::from_secs(2);
        tune(&mut config);
        Agent::with(runtime, config, data, cleanup)
    }

    fn with(
        runtime: Arc<DockerRuntime>,
        config: EngineConfig,
        data: Arc<tempfile::TempDir>,
        cleanup: Arc<Cleanup>,
    ) -> Agent {
        let (tx, reports) = unbounded_channel();
        let engine = Engine::new(config.clone(), runtime.clone(), tx);
        Agent { engine, reports, runtime, config, _data: data, _cleanup: cleanup }
    }

    /// A second agent process on the same data dir and identity (a restart).
    async fn restart(self) -> Agent {
        self.engine.shutdown().await;
        let Agent { runtime, config, _data, _cleanup, .. } = self;
        Agent::with(runtime, config, _data, _cleanup)
    }

    async fn until(&mut self, task: &str, what: &str, pred: impl Fn(&TaskReport) -> bool) -> TaskReport {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = None;
        loop {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Ok(Some(r)) if r.task_arn == task && pred(&r) => return r,
                Ok(Some(r)) if r.task_arn == task => last = Some(r),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("{task}: no report {what}; last: {last:#?}"),
            }
        }
    }

    async fn status(&mut self, task: &str, status: &str) -> TaskReport {
        self.until(task, status, |r| r.status == status).await
    }
}

fn task_arn() -> String {
    format!("arn:aws:ecs:local:000000000000:task/agent-tests/{}", uuid::Uuid::new_v4().simple())
}

fn workload(name: &str, command: &[&str]) -> ContainerDefinition {
    ContainerDefinition {
        name: Some(name.into()),
        image: Some(WORKLOAD.into()),
        command: (!command.is_empty()).then(|| command.iter().map(|s| s.to_string()).collect()),
        memory: Some(64),
        ..Default::default()
    }
}

fn assignment(arn: &str, mode: Option<&str>, containers: Vec<ContainerDefinition>) -> TaskAssignment {
    TaskAssignment {
        task: Task { task_arn: Some(arn.into()), desired_status: Some("RUNNING".into()), ..Default::default() },
        definition: TaskDefinition {
            family: Some("agent-tests".into()),
            revision: Some(1),
            network_mode: mode.map(str::to_string),
            container_definitions: Some(containers),
            ..Default::default()
        },
        reserved_ports: Vec::new(),
        network: None,
        stop_timeout_cap_seconds: None,
    }
}

fn stopped(mut a: TaskAssignment) -> TaskAssignment {
    a.task.desired_status = Some("STOPPED".into());
    a
}

fn container<'a>(r: &'a TaskReport, name: &str) -> &'a ContainerReport {
    r.containers.iter().find(|c| c.name == name).expect("container in report")
}

/// GETs `/` on 127.0.0.1:port, retrying while the server starts.
fn http_get_local(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match attempt {
            Ok(body) if body.starts_with("HTTP/1.") => return body,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            other => panic!("no answer on 127.0.0.1:{port}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_web_server_is_reachable_on_its_dynamic_host_port() {
    let mut agent = Agent::start().await;
    let arn = task_arn();
    let web = ContainerDefinition {
        port_mappings: Some(vec![PortMapping { container_port: Some(8080), ..Default::default() }]),
        ..workload("web", &[])
    };
    let a = assignment(&arn, None, vec![web]);
    agent.engine.apply(a.clone()).unwrap();
    let r = agent.status(&arn, "RUNNING").await;
    let binding = container(&r, "web").network_bindings.first().cloned().expect("a network binding");
    assert_eq!((binding.container_port, binding.protocol.as_deref()), (Some(8080), Some("tcp")));
    let port = u16::try_from(binding.host_port.unwrap()).unwrap();
    assert!(port > 0);
    let port_for_get = port;
    let body = tokio::task::spawn_blocking(move || http_get_local(port_for_get)).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");

    agent.engine.apply(stopped(a)).unwrap();
    let r = agent.status(&arn, "STOPPED").await;
    // The workload has no SIGTERM handler in `serve`: it dies of the signal, 128 + 15.
    assert_eq!(container(&r, "web").exit_code, Some(143));
    assert!(r.stop_code.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_essential_container_exiting_with_3_stops_the_task() {
    let mut agent = Agent::start().await;
    let arn = task_arn();
    agent.engine.apply(assignment(&arn, None, vec![workload("main", &["exit", "3", "--after", "1"])])).unwrap();
    let r = agent.status(&arn, "STOPPED").await;
    assert_eq!(r.stop_code.as_deref(), Some("EssentialContainerExited"));
    assert!(r.stopped_reason.as_deref().unwrap().starts_with("Essential container in task exited"), "{r:?}");
    assert_eq!(container(&r, "main").exit_code, Some(3));
    assert!(r.started_at_ms.is_some() && r.execution_stopped_at_ms.is_some() && r.stopped_at_ms.is_some());
    assert!(container(&r, "main").image_digest.as_deref().is_some_and(|d| d.starts_with("sha256:")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depends_on_success_runs_the_init_container_first() {
    let mut agent = Agent::start().await;
    let arn = task_arn();
    let init = ContainerDefinition {
        essential: Some(false),
        ..workload("init", &["touch", "/shared/ready", "ready\n", "then", "exit", "0"])
    };
    let web = ContainerDefinition {
        depends_on: Some(vec![flotilla_model::ContainerDependency {
            container_name: Some("init".into()),
            condition: Some("SUCCESS".into()),
        }]),
        ..workload("web", &["cat", "/shared/ready", "then", "sleep", "inf"])
    };
    let mount = |c: ContainerDefinition| ContainerDefinition {
        mount_points: Some(vec![flotilla_model::MountPoint {
            source_volume: Some("shared".into()),
            container_path: Some("/shared".into()),
            read_only: None,
        }]),
        ..c
    };
    let mut a = assignment(&arn, None, vec![mount(web), mount(init)]);
    a.definition.volumes = Some(vec![flotilla_model::Volume { name: Some("shared".into()), ..Default::default() }]);
    agent.engine.apply(a.clone()).unwrap();
    let r = agent.status(&arn, "RUNNING").await;
    assert_eq!(container(&r, "init").exit_code, Some(0));
    // `cat` exits 1 if init had not written the file, which would have stopped the task.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(agent.engine.report(&arn).unwrap().status, "RUNNING");
    let deadline = Instant::now() + WAIT;
    loop {
        let lines: Vec<String> = agent.engine.logs(&arn, Some("web"), false).unwrap().map(|l| l.line).collect().await;
        if lines == ["ready"] {
            break;
        }
        assert!(Instant::now() < deadline, "web logged {lines:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.engine.apply(stopped(a)).unwrap();
    agent.status(&arn, "STOPPED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awsvpc_tasks_have_distinct_addresses_and_reach_each_other() {
    let mut agent = Agent::start().await;
    let server = task_arn();
    agent.engine.apply(assignment(&server, Some("awsvpc"), vec![workload("web", &["serve", "8080"])])).unwrap();
    let rs = agent.status(&server, "RUNNING").await;
    let server_ip = rs.private_ipv4.clone().expect("the server task's address");

    let client = task_arn();
    let target = format!("http://{server_ip}:8080/");
    let get = workload("get", &["connect", &format!("{server_ip}:8080"), "--timeout", "20", "then", "get", &target]);
    agent.engine.apply(assignment(&client, Some("awsvpc"), vec![get])).unwrap();
    // The client may be done before the agent has seen all of it run, so wait for the end.
    let rc = agent.status(&client, "STOPPED").await;
    let client_ip = rc.private_ipv4.clone().expect("the client task's address");
    assert_ne!(server_ip, client_ip);
    assert_eq!(container(&rc, "get").exit_code, Some(0), "the client could not reach {target}: {rc:?}");
    // ECS reports no host bindings in awsvpc mode.
    assert!(container(&rs, "web").network_bindings.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_health_check_makes_the_task_unhealthy() {
    let mut agent = Agent::start().await;
    let arn = task_arn();
    let web = ContainerDefinition {
        health_check: Some(HealthCheck {
            command: Some(vec!["CMD".into(), "/flotilla-workload".into(), "healthcheck".into(), "/tmp/healthy".into()]),
            interval: Some(1),
            timeout: Some(2),
            retries: Some(1),
            start_period: Some(0),
        }),
        ..workload("web", &["fail-health", "--after", "3"])
    };
    agent.engine.apply(assignment(&arn, None, vec![web])).unwrap();
    let healthy = agent.until(&arn, "HEALTHY", |r| r.health_status.as_deref() == Some("HEALTHY")).await;
    assert_eq!(healthy.status, "RUNNING");
    let r = agent.until(&arn, "UNHEALTHY", |r| r.health_status.as_deref() == Some("UNHEALTHY")).await;
    assert_eq!(container(&r, "web").health_status.as_deref(), Some("UNHEALTHY"));
    assert_eq!(r.status, "RUNNING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_readable_after_the_container_exits() {
    let mut agent = Agent::start().await;
    let arn = task_arn();
    let talk = workload("talk", &["echo", "hello", "then", "echo", "--stderr", "oops", "then", "exit", "0"]);
    agent.engine.apply(assignment(&arn, None, vec![talk])).unwrap();
    let mut follow = agent.engine.logs(&arn, None, true).unwrap();
    agent.status(&arn, "STOPPED").await;
    let followed: Vec<String> =
        tokio::time::timeout(WAIT, (&mut follow).map(|l| l.line).collect()).await.expect("the follower ends");
    // stdout and stderr are separate pipes, so only each stream's own order is defined. The
    // workload also says how it exits.
    let mut sorted = followed.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["exiting with 0", "hello", "oops"]);
    let lines: Vec<(LogSource, String)> =
        agent.engine.logs(&arn, Some("talk"), false).unwrap().map(|l| (l.source, l.line)).collect().await;
    assert!(lines.contains(&(LogSource::Stdout, "hello".into())), "{lines:?}");
    assert!(lines.contains(&(LogSource::Stderr, "oops".into())), "{lines:?}");
    assert_eq!(lines.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_is_not_there_stops_the_task_with_cannot_pull() {
    let agent = Agent::start().await;
    let mut config = agent.config.clone();
    config.pull_behavior = PullBehavior::Never;
    let Agent { runtime, _data, _cleanup, .. } = agent;
    let mut agent = Agent::with(runtime, config, _data, _cleanup);
    let arn = task_arn();
    let c = ContainerDefinition { image: Some("flotilla-test/absent:never".into()), ..workload("c", &[]) };
    agent.engine.apply(assignment(&arn, None, vec![c])).unwrap();
    let r = agent.status(&arn, "STOPPED").await;
    assert_eq!(r.stop_code.as_deref(), Some("TaskFailedToStart"));
    assert!(r.stopped_reason.as_deref().unwrap().starts_with("CannotPullContainerError:"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_its_running_task() {
    let mut agent = Agent::start().await;
    let arn = task_arn();
    let a = assignment(&arn, None, vec![workload("web", &["trap-term", "--code", "0"])]);
    agent.engine.apply(a.clone()).unwrap();
    let before = agent.status(&arn, "RUNNING").await;
    let mut agent = agent.restart().await;
    assert_eq!(agent.engine.adopt().await.unwrap(), vec![arn.clone()]);
    let after = agent.status(&arn, "RUNNING").await;
    assert_eq!(container(&after, "web").runtime_id, container(&before, "web").runtime_id);
    assert!(agent.engine.reap().await.unwrap().is_empty());
    agent.engine.apply(stopped(a)).unwrap();
    let r = agent.status(&arn, "STOPPED").await;
    assert_eq!(container(&r, "web").exit_code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_links_reach_the_linked_container_by_alias() {
    let mut agent = Agent::start().await;
    let arn = task_arn();
    let db = workload("db", &["serve", "8080"]);
    let client = ContainerDefinition {
        links: Some(vec!["db:database".into()]),
        ..workload("client", &["connect", "database:8080", "--timeout", "20", "then", "exit", "0"])
    };
    agent.engine.apply(assignment(&arn, Some("bridge"), vec![client, db])).unwrap();
    let r = agent.status(&arn, "STOPPED").await;
    assert_eq!(container(&r, "client").exit_code, Some(0), "{r:?}");
    assert!(r.stopped_reason.as_deref().unwrap().contains("client"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_definition_reaches_the_docker_container() {
    let mut agent = Agent::start().await;
    let arn = task_arn();
    let c = ContainerDefinition {
        environment: Some(vec![flotilla_model::KeyValuePair { name: Some("FOO".into()), value: Some("bar".into()) }]),
        working_directory: Some("/dev".into()),
        user: Some("1000".into()),
        cpu: Some(256),
        memory: Some(64),
        memory_reservation: Some(32),
        ulimits: Some(vec![flotilla_model::Ulimit {
            name: Some("nofile".into()),
            soft_limit: Some(1000),
            hard_limit: Some(2000),
        }]),
        readonly_root_filesystem: Some(true),
        docker_labels: Some([("team".to_string(), "web".to_string())].into()),
        ..workload("c", &["env", "then", "sleep", "inf"])
    };
    let mut a = assignment(&arn, None, vec![c]);
    // A task-level size is the definition's (or the overrides'); the task record's cpu alone may be
    // only the containers' sum, which is no limit.
    a.definition.cpu = Some("512".into());
    agent.engine.apply(a.clone()).unwrap();
    let r = agent.status(&arn, "RUNNING").await;
    let id = container(&r, "c").runtime_id.clone().unwrap();
    let info = agent.runtime.docker().inspect_container(&id, None).await.unwrap();
    let (config, host) = (info.config.unwrap(), info.host_config.unwrap());
    assert!(config.env.unwrap().contains(&"FOO=bar".to_string()));
    assert_eq!((config.working_dir.as_deref(), config.user.as_deref()), (Some("/dev"), Some("1000")));
    let labels = config.labels.unwrap();
    assert_eq!((labels["team"].as_str(), labels[labels::TASK].as_str()), ("web", arn.as_str()));
    assert_eq!((host.memory, host.memory_reservation), (Some(64 << 20), Some(32 << 20)));
    // The task's 512 units are the task cgroup's quota, not a per-container one.
    assert_eq!((host.cpu_shares, host.cpu_quota, host.nano_cpus), (Some(256), Some(0), Some(0)));
    assert_eq!(host.cgroup_parent, Some(format!("/flotilla/{}", arn.rsplit('/').next().unwrap())));
    let ulimit = &host.ulimits.unwrap()[0];
    assert_eq!((ulimit.name.as_deref(), ulimit.soft, ulimit.hard), (Some("nofile"), Some(1000), Some(2000)));
    assert_eq!(host.readonly_rootfs, Some(true));
    let deadline = Instant::now() + WAIT;
    while !agent.engine.logs(&arn, None, false).unwrap().any(|l| async move { l.line == "FOO=bar" }).await {
        assert!(Instant::now() < deadline, "the environment was not logged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.engine.apply(stopped(a)).unwrap();
    agent.status(&arn, "STOPPED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_ignores_sigterm_is_killed_after_its_stop_timeout() {
    let mut agent = Agent::start().await;
    let arn = task_arn();
    let c = ContainerDefinition { stop_timeout: Some(2), ..workload("stubborn", &["ignore-term"]) };
    let a = assignment(&arn, None, vec![c]);
    agent.engine.apply(a.clone()).unwrap();
    agent.status(&arn, "RUNNING").await;
    let asked = Instant::now();
    agent.engine.apply(stopped(a)).unwrap();
    let r = agent.status(&arn, "STOPPED").await;
    assert!(asked.elapsed() >= Duration::from_secs(2), "{:?}", asked.elapsed());
    assert_eq!(container(&r, "stubborn").exit_code, Some(137));
}

/// A task whose host volume is `dir` (a bind mount), mounted read-only at /host in `c`, which
/// prints /host/greeting and sleeps.
fn host_mount_task(arn: &str, dir: &std::path::Path) -> TaskAssignment {
    let c = ContainerDefinition {
        mount_points: Some(vec![flotilla_model::MountPoint {
            source_volume: Some("host".into()),
            container_path: Some("/host".into()),
            read_only: Some(true),
        }]),
        ..workload("c", &["cat", "/host/greeting", "then", "sleep", "inf"])
    };
    let mut a = assignment(arn, None, vec![c]);
    a.definition.volumes = Some(vec![flotilla_model::Volume {
        name: Some("host".into()),
        host: Some(flotilla_model::HostVolumeProperties { source_path: Some(dir.display().to_string()) }),
        ..Default::default()
    }]);
    a
}

/// The containers of `arn` that Docker has, running or not.
async fn containers_of(agent: &Agent, arn: &str) -> usize {
    let filters = HashMap::from([("label".to_string(), vec![format!("{}={arn}", labels::TASK)])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    agent.runtime.docker().list_containers(Some(options)).await.expect("list containers").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_mount_needs_the_instance_to_allow_its_path() {
    let shared = tempfile::tempdir().expect("host dir");
    std::fs::write(shared.path().join("greeting"), "hello from the host\n").unwrap();
    let mounted = shared.path().canonicalize().unwrap();

    // Nothing allowed: the task stops before any container exists, and says which flag to pass.
    let mut strict = Agent::start().await;
    let arn = task_arn();
    strict.engine.apply(host_mount_task(&arn, &mounted)).unwrap();
    let r = strict.status(&arn, "STOPPED").await;
    let reason = r.stopped_reason.clone().unwrap_or_default();
    let flag = format!("start the agent with --allow-host-path {}", mounted.display());
    assert!(reason.contains(&flag), "{reason}");
    assert_eq!(r.stop_code.as_deref(), Some("TaskFailedToStart"), "{r:?}");
    assert!(r.containers.iter().all(|c| c.runtime_id.is_none()), "{r:?}");
    assert_eq!(containers_of(&strict, &arn).await, 0);

    // A prefix elsewhere is not enough either.
    let mut elsewhere = Agent::start_with(|c| c.allowed_host_paths = vec!["/srv/flotilla-nowhere".into()]).await;
    let arn = task_arn();
    elsewhere.engine.apply(host_mount_task(&arn, &mounted)).unwrap();
    let r = elsewhere.status(&arn, "STOPPED").await;
    assert!(r.stopped_reason.as_deref().unwrap_or_default().contains("--allow-host-path"), "{r:?}");
    assert_eq!(containers_of(&elsewhere, &arn).await, 0);

    // The parent allowed: the container runs and reads the host's file.
    let parent = mounted.parent().unwrap().to_path_buf();
    let mut open = Agent::start_with(|c| c.allowed_host_paths = vec![parent]).await;
    let arn = task_arn();
    let a = host_mount_task(&arn, &mounted);
    open.engine.apply(a.clone()).unwrap();
    open.status(&arn, "RUNNING").await;
    let deadline = Instant::now() + WAIT;
    while !open.engine.logs(&arn, None, false).unwrap().any(|l| async move { l.line == "hello from the host" }).await {
        assert!(Instant::now() < deadline, "the host file was not read");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    open.engine.apply(stopped(a)).unwrap();
    open.status(&arn, "STOPPED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_socket_is_never_mounted_without_allow_privileged() {
    let mut agent = Agent::start_with(|c| c.allowed_host_paths = vec!["/".into()]).await;
    let arn = task_arn();
    agent.engine.apply(host_mount_task(&arn, std::path::Path::new("/var/run/docker.sock"))).unwrap();
    let r = agent.status(&arn, "STOPPED").await;
    assert!(r.stopped_reason.as_deref().unwrap_or_default().contains("--allow-privileged"), "{r:?}");
    assert_eq!(containers_of(&agent, &arn).await, 0);
}

/// The stdout and stderr lines of a container so far, waiting until `pred` holds of them.
async fn output_until(
    agent: &Agent,
    id: &str,
    what: &str,
    pred: impl Fn(&[(LogSource, String)]) -> bool,
) -> Vec<(LogSource, String)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let chunks: Vec<_> = agent.runtime.logs(id, None, false).collect().await;
        let lines: Vec<(LogSource, String)> =
            chunks.into_iter().filter_map(Result::ok).map(|c| (c.source, c.line.trim_end().to_string())).collect();
        if pred(&lines) {
            return lines;
        }
        assert!(Instant::now() < deadline, "{id}: no {what} in its output: {lines:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The task metadata endpoint from inside containers in bridge, host and awsvpc mode: each
/// container reads itself and its own task through `ECS_CONTAINER_METADATA_URI_V4`, a made-up
/// token is refused with a 404, and from the host a container's token opens its own task only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_read_their_own_task_metadata_in_every_network_mode() {
    use flotilla_agent::metadata::address::{bind, ListenChoice};
    use flotilla_agent::metadata::{new_token, serve, MetadataEndpoint, MetadataState, TOKEN_LABEL};
    use serde_json::Value;

    let docker = DockerRuntime::connect(DockerTimeouts::default()).await.expect("Docker Engine");
    let gateway = docker.bridge_gateway().await.expect("inspect the bridge network").expect("a bridge gateway");
    let listener = bind(ListenChoice::BridgeGateway { port: 0 }, Some(gateway)).await.expect("listen on the gateway");
    let base = format!("http://{}", listener.local_addr().expect("bound"));
    let endpoint = MetadataEndpoint { base_url: base.clone() };
    let mut agent = Agent::start_with(|c| c.metadata = Some(endpoint)).await;
    let state = MetadataState {
        runtime: agent.runtime.clone(),
        tasks: Arc::new(agent.engine.clone()),
        instance_arn: agent.config.container_instance_arn.clone(),
        cluster_arn: CLUSTER.into(),
        availability_zone: None,
    };
    tokio::spawn(serve(listener, state, std::future::pending()));

    let probe = ["fetch", "${ECS_CONTAINER_METADATA_URI_V4}", "then", "fetch", "${ECS_CONTAINER_METADATA_URI_V4}/task"];
    let probe: Vec<&str> = probe.into_iter().chain(["then", "sleep", "inf"]).collect();
    let guess = format!("{base}/v4/{}/task", new_token());
    let mut tokens = Vec::new();
    // One task at a time: `until` passes over other tasks' reports.
    for mode in ["bridge", "host", "awsvpc"] {
        let arn = &task_arn();
        let guesser = ContainerDefinition { essential: Some(false), ..workload("guess", &["fetch", &guess]) };
        agent.engine.apply(assignment(arn, Some(mode), vec![workload("probe", &probe), guesser])).expect("apply");
        let r = agent
            .until(arn, "probe running, guess exited", |r| {
                container(r, "probe").status == "RUNNING" && container(r, "guess").status == "STOPPED"
            })
            .await;
        let guess_id = container(&r, "guess").runtime_id.clone().expect("guess id");
        let refused = output_until(&agent, &guess_id, "refusal", |l| !l.is_empty()).await;
        assert!(refused.iter().any(|(_, l)| l.ends_with("status 404")), "{mode}: a made-up token: {refused:?}");
        assert_eq!(container(&r, "guess").exit_code, Some(1), "{mode}");

        let id = container(&r, "probe").runtime_id.clone().expect("probe id");
        let out =
            output_until(&agent, &id, "two bodies", |l| l.iter().filter(|(s, _)| *s == LogSource::Stdout).count() >= 2)
                .await;
        let bodies: Vec<Value> = out
            .iter()
            .filter(|(s, _)| *s == LogSource::Stdout)
            .map(|(_, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{mode}: {l}: {e}")))
            .collect();
        let (me, task) = (&bodies[0], &bodies[1]);
        assert_eq!(me["DockerId"], id.as_str(), "{mode}");
        assert_eq!(me["Name"], "probe", "{mode}");
        assert_eq!(me["KnownStatus"], "RUNNING", "{mode}");
        assert_eq!(me["Networks"][0]["NetworkMode"], mode, "{mode}");
        assert!(me["Labels"].get(TOKEN_LABEL).is_none(), "{mode}: the token is not shown");
        assert_eq!(task["TaskARN"], arn.as_str(), "{mode}");
        assert_eq!(task["Cluster"], CLUSTER, "{mode}");
        assert_eq!(task["Family"], "agent-tests", "{mode}");
        let listed: Vec<&str> =
            task["Containers"].as_array().expect("Containers").iter().filter_map(|c| c["DockerId"].as_str()).collect();
        assert!(listed.contains(&id.as_str()), "{mode}: {listed:?}");
        let info = agent.runtime.inspect_container(&id).await.expect("inspect probe");
        tokens.push((arn.clone(), id, info.labels[TOKEN_LABEL].clone()));
    }
    // From the host: each token answers for its own task, and stats come in Docker's shape.
    for (arn, id, token) in &tokens {
        let task: Value =
            reqwest::get(format!("{base}/v4/{token}/task")).await.expect("GET").json().await.expect("JSON");
        assert_eq!(task["TaskARN"], arn.as_str());
        let stats: Value =
            reqwest::get(format!("{base}/v4/{token}/stats")).await.expect("GET").json().await.expect("JSON");
        assert!(stats.get("memory_stats").is_some(), "{stats}");
        let all: Value =
            reqwest::get(format!("{base}/v4/{token}/task/stats")).await.expect("GET").json().await.expect("JSON");
        assert!(all.get(id.as_str()).is_some(), "{all}");
    }
}
