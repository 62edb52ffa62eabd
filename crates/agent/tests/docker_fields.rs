//! Container definition fields on the real Docker Engine: a restart policy restarts a crashing
//! container in place (the same Docker container, counted, its log continuing) and leaves alone
//! one that exits with an ignored code; security options, sysctls, a TTY, stdin and disabled
//! networking reach Docker (inspected), and a TTY container's output is still captured.
//!
//! The engine's clock is injected and moved forward by hand, so "ran for the attempt period"
//! takes seconds, not minutes. Only Flotilla's locally built workload image is used.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flotilla_agent::engine::EngineConfig;
use flotilla_agent::metadata::{MetadataEndpoint, TaskBook};
use flotilla_agent::network::NetworkConfig;
use flotilla_agent::runtime::docker::{DockerRuntime, DockerTimeouts};
use flotilla_agent::{Engine, PullBehavior};
use flotilla_model::{ContainerDefinition, ContainerRestartPolicy, SystemControl, Task, TaskDefinition};
use flotilla_protocol::{TaskAssignment, TaskReport};
use futures::StreamExt;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

mod common;
use common::Cleanup;

const CLUSTER: &str = "arn:aws:ecs:local:000000000000:cluster/agent-tests";
const WAIT: Duration = Duration::from_secs(90);

struct Agent {
    engine: Engine,
    reports: UnboundedReceiver<TaskReport>,
    runtime: Arc<DockerRuntime>,
    /// Added to the wall clock the engine reads, in ms.
    skew: Arc<AtomicI64>,
    _data: tempfile::TempDir,
    _cleanup: Cleanup,
}

impl Agent {
    async fn start() -> Agent {
        let runtime = Arc::new(DockerRuntime::connect(DockerTimeouts::default()).await.expect("Docker Engine"));
        flotilla_images::ensure_standard_images(runtime.docker()).await.expect("build the test images");
        let id = uuid::Uuid::new_v4().simple().to_string();
        let instance = format!("arn:aws:ecs:local:000000000000:container-instance/agent-tests/{id}");
        let network = format!("flotilla-test-{}", &id[..12]);
        let cleanup =
            Cleanup { docker: runtime.docker().clone(), instance: instance.clone(), network: network.clone() };
        let data = tempfile::tempdir().expect("data dir");
        let mut config = EngineConfig::new(data.path(), CLUSTER, &instance);
        config.pull_behavior = PullBehavior::IfNotPresent;
        config.network =
            NetworkConfig { awsvpc_network: network, host_ip: Some("127.0.0.1".into()), ..NetworkConfig::default() };
        config.default_stop_timeout = Duration::from_secs(5);
        config.resync_interval = Duration::from_secs(2);
        // The endpoint is never called here; it makes the engine keep records for `TaskBook`.
        config.metadata = Some(MetadataEndpoint { base_url: "http://127.0.0.1:9".into() });
        let skew = Arc::new(AtomicI64::new(0));
        let system = flotilla_agent::engine::system_clock();
        let s = skew.clone();
        config.clock = Arc::new(move || system() + s.load(Ordering::SeqCst));
        let (tx, reports) = unbounded_channel();
        let engine = Engine::new(config, runtime.clone(), tx);
        Agent { engine, reports, runtime, skew, _data: data, _cleanup: cleanup }
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

    fn restarts(&self, task: &str, name: &str) -> u32 {
        let rec = TaskBook::task(&self.engine, task).expect("the task's record");
        rec.containers.iter().find(|c| c.name == name).map_or(0, |c| c.restart_count)
    }
}

fn task_arn() -> String {
    format!("arn:aws:ecs:local:000000000000:task/agent-tests/{}", uuid::Uuid::new_v4().simple())
}

fn workload(name: &str, command: &[&str]) -> ContainerDefinition {
    ContainerDefinition {
        name: Some(name.into()),
        image: Some(flotilla_images::WORKLOAD_IMAGE.into()),
        command: Some(command.iter().map(|s| s.to_string()).collect()),
        memory: Some(64),
        ..Default::default()
    }
}

fn restarting(c: ContainerDefinition, ignored: &[i32]) -> ContainerDefinition {
    ContainerDefinition {
        restart_policy: Some(ContainerRestartPolicy {
            enabled: Some(true),
            ignored_exit_codes: Some(ignored.to_vec()),
            restart_attempt_period: Some(60),
        }),
        ..c
    }
}

fn assignment(arn: &str, containers: Vec<ContainerDefinition>) -> TaskAssignment {
    TaskAssignment {
        task: Task { task_arn: Some(arn.into()), desired_status: Some("RUNNING".into()), ..Default::default() },
        definition: TaskDefinition {
            family: Some("agent-tests".into()),
            revision: Some(1),
            container_definitions: Some(containers),
            ..Default::default()
        },
        reserved_ports: Vec::new(),
        network: None,
        stop_timeout_cap_seconds: None,
    }
}

fn runtime_id(r: &TaskReport, name: &str) -> String {
    r.containers.iter().find(|c| c.name == name).and_then(|c| c.runtime_id.clone()).expect("a runtime id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_policy_restarts_a_crashing_container_in_place_and_ignores_listed_codes() {
    let mut agent = Agent::start().await;
    let arn = task_arn();
    let crash = restarting(workload("crash", &["echo", "run", "then", "exit", "1", "--after", "4"]), &[42]);
    let done = ContainerDefinition {
        essential: Some(false),
        ..restarting(workload("done", &["exit", "42", "--after", "4"]), &[42])
    };
    agent.engine.apply(assignment(&arn, vec![crash, done])).unwrap();
    let r = agent.until(&arn, "RUNNING", |r| r.status == "RUNNING").await;
    let (crash_id, done_id) = (runtime_id(&r, "crash"), runtime_id(&r, "done"));
    // Both have now "run" for two minutes: past the 60 s attempt period.
    agent.skew.store(120_000, Ordering::SeqCst);
    // The restarted run also fails after 4 s, too soon for another restart: the exit stands and,
    // the container being essential, stops the task.
    let r = agent.until(&arn, "STOPPED", |r| r.status == "STOPPED").await;
    assert_eq!(r.stop_code.as_deref(), Some("EssentialContainerExited"));
    assert_eq!((runtime_id(&r, "crash"), runtime_id(&r, "done")), (crash_id.clone(), done_id));
    assert_eq!(agent.restarts(&arn, "crash"), 1);
    assert_eq!(agent.restarts(&arn, "done"), 0);
    let done_exit = r.containers.iter().find(|c| c.name == "done").and_then(|c| c.exit_code);
    assert_eq!(done_exit, Some(42));
    // Docker started the one container twice: its log holds both runs.
    let lines: Vec<String> = agent.engine.logs(&arn, Some("crash"), false).unwrap().map(|l| l.line).collect().await;
    assert_eq!(lines.iter().filter(|l| *l == "run").count(), 2, "{lines:?}");
    let info = agent.runtime.docker().inspect_container(&crash_id, None).await.unwrap();
    assert_eq!(info.state.and_then(|s| s.exit_code), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_options_reach_docker_and_a_tty_container_is_still_logged() {
    let mut agent = Agent::start().await;
    let arn = task_arn();
    let tty = ContainerDefinition {
        docker_security_options: Some(vec!["no-new-privileges".into()]),
        system_controls: Some(vec![SystemControl {
            namespace: Some("net.core.somaxconn".into()),
            value: Some("1000".into()),
        }]),
        pseudo_terminal: Some(true),
        interactive: Some(true),
        ..workload("tty", &["echo", "hello-tty", "then", "sleep", "inf"])
    };
    let offline = ContainerDefinition { disable_networking: Some(true), ..workload("offline", &["sleep", "inf"]) };
    agent.engine.apply(assignment(&arn, vec![tty, offline])).unwrap();
    let r = agent.until(&arn, "RUNNING", |r| r.status == "RUNNING").await;
    let docker = agent.runtime.docker();
    let info = docker.inspect_container(&runtime_id(&r, "tty"), None).await.unwrap();
    let (config, host) = (info.config.unwrap(), info.host_config.unwrap());
    assert_eq!(host.security_opt, Some(vec!["no-new-privileges=true".to_string()]));
    assert_eq!(host.sysctls.unwrap_or_default().get("net.core.somaxconn").map(String::as_str), Some("1000"));
    assert_eq!((config.tty, config.open_stdin, config.attach_stdin), (Some(true), Some(true), Some(true)));
    let info = docker.inspect_container(&runtime_id(&r, "offline"), None).await.unwrap();
    assert_eq!(info.config.unwrap().network_disabled, Some(true));
    // A TTY's output comes unmultiplexed; the capture still stores it as lines.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let lines: Vec<String> = agent.engine.logs(&arn, Some("tty"), false).unwrap().map(|l| l.line).collect().await;
        if lines.iter().any(|l| l == "hello-tty") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the TTY output was not captured: {lines:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
