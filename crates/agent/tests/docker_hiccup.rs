//! A Docker daemon hiccup on the real Docker Engine, without touching the daemon that other tests
//! share: the engine talks to Docker through a small Unix-socket proxy of this test's own, which
//! forwards to the real socket and can be cut (open connections dropped, new ones closed at once)
//! and restored. While the proxy is cut, one task runs on, a second is being created, and a third
//! task's container is stopped behind the agent's back through the real socket. Once the proxy is
//! back, every task must end in its true state: running with exactly one container each, and the
//! stopped one STOPPED with its exit code. A second cut then swallows a stop order, which must
//! reach the container (as a SIGTERM) once the proxy is back.
//!
//! Images are Flotilla's own, built locally (never pulled). The test uses its own container
//! instance ARN, and a guard removes its containers even when it panics. Skipped, with the reason
//! printed, only when no Docker daemon answers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::query_parameters::{
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use flotilla_agent::engine::EngineConfig;
use flotilla_agent::runtime::docker::{DockerRuntime, DockerTimeouts};
use flotilla_agent::runtime::labels;
use flotilla_agent::{Engine, PullBehavior};
use flotilla_model::{ContainerDefinition, Task, TaskDefinition};
use flotilla_protocol::{TaskAssignment, TaskReport};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::task::JoinHandle;

const CLUSTER: &str = "arn:aws:ecs:local:000000000000:cluster/agent-tests";
/// Far longer than anything here should take; a hang still fails.
const WAIT: Duration = Duration::from_secs(90);

/// The real daemon's socket: DOCKER_HOST when it names a Unix socket, else the default.
fn daemon_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => PathBuf::from(h.trim_start_matches("unix://")),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

/// A Unix-socket proxy to the daemon that can be cut off and restored.
struct Proxy {
    path: PathBuf,
    up: Arc<AtomicBool>,
    /// The forwarding tasks of open connections; the lock also orders accepting against `cut`.
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    fn start(dir: &Path) -> Proxy {
        let path = dir.join("docker.sock");
        let listener = UnixListener::bind(&path).expect("bind the proxy socket");
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let daemon = daemon_socket();
        let (up2, conns2) = (up.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut conns = conns2.lock().unwrap();
                if !up2.load(Ordering::SeqCst) {
                    // The daemon is "away": the connection closes before any answer.
                    drop(client);
                    continue;
                }
                let daemon = daemon.clone();
                conns.retain(|h| !h.is_finished());
                conns.push(tokio::spawn(async move {
                    if let Ok(mut d) = UnixStream::connect(&daemon).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut d).await;
                    }
                }));
            }
        });
        Proxy { path, up, conns, accept }
    }

    /// Drops every open connection (event streams included) and closes new ones at once.
    fn cut(&self) {
        let mut conns = self.conns.lock().unwrap();
        self.up.store(false, Ordering::SeqCst);
        for h in conns.drain(..) {
            h.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Removes the test's containers on drop (also on panic).
struct Cleanup {
    docker: Docker,
    instance: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (docker, instance) = (self.docker.clone(), self.instance.clone());
        // Drop cannot await and the test's runtime may be panicking: use a fresh one.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                for id in containers_of(&docker, labels::INSTANCE, &instance).await.into_keys() {
                    let rm = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
                    let _ = docker.remove_container(&id, Some(rm)).await;
                }
            });
        });
        let _ = done.join();
    }
}

/// Container ID to state ("running", "exited", ...) of the containers carrying `label=value`,
/// asked of the real daemon.
async fn containers_of(docker: &Docker, label: &str, value: &str) -> HashMap<String, String> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{label}={value}")])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    let list = docker.list_containers(Some(options)).await.expect("list containers");
    list.into_iter().map(|c| (c.id.unwrap_or_default(), c.state.map(|s| s.to_string()).unwrap_or_default())).collect()
}

fn task_arn() -> String {
    format!("arn:aws:ecs:local:000000000000:task/agent-tests/{}", uuid::Uuid::new_v4().simple())
}

fn assignment(arn: &str, command: &[&str]) -> TaskAssignment {
    let main = ContainerDefinition {
        name: Some("main".into()),
        image: Some(flotilla_images::WORKLOAD_IMAGE.into()),
        command: Some(command.iter().map(|s| s.to_string()).collect()),
        memory: Some(64),
        ..Default::default()
    };
    TaskAssignment {
        task: Task { task_arn: Some(arn.into()), desired_status: Some("RUNNING".into()), ..Default::default() },
        definition: TaskDefinition {
            family: Some("agent-tests".into()),
            revision: Some(1),
            container_definitions: Some(vec![main]),
            ..Default::default()
        },
        reserved_ports: Vec::new(),
        network: None,
        stop_timeout_cap_seconds: None,
    }
}

/// Waits for a report of `task` that satisfies `pred`, remembering every task's latest report.
async fn until(
    reports: &mut UnboundedReceiver<TaskReport>,
    latest: &mut HashMap<String, TaskReport>,
    task: &str,
    what: &str,
    pred: impl Fn(&TaskReport) -> bool,
) -> TaskReport {
    if let Some(r) = latest.get(task).filter(|r| pred(r)) {
        return r.clone();
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Some(r)) => {
                latest.insert(r.task_arn.clone(), r.clone());
                if r.task_arn == task && pred(&r) {
                    return r;
                }
            }
            Ok(None) | Err(_) => panic!("{task}: no report {what}; last: {:#?}", latest.get(task)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_end_in_their_true_state_after_the_daemon_connection_is_cut_and_restored() {
    let docker = match Docker::connect_with_local_defaults() {
        Ok(d) => d,
        Err(e) => return eprintln!("skipped: no Docker client: {e}"),
    };
    if let Err(e) = docker.ping().await {
        return eprintln!("skipped: the Docker daemon is unreachable: {e}");
    }
    let docker = docker.negotiate_version().await.expect("negotiate the API version");
    flotilla_images::ensure_standard_images(&docker).await.expect("build the test images");

    let dir = tempfile::tempdir().expect("temp dir");
    let proxy = Proxy::start(dir.path());
    let runtime = DockerRuntime::connect_unix(proxy.path.to_str().unwrap(), DockerTimeouts::default())
        .await
        .expect("the daemon through the proxy");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let instance = format!("arn:aws:ecs:local:000000000000:container-instance/agent-tests/{id}");
    let _cleanup = Cleanup { docker: docker.clone(), instance: instance.clone() };
    let mut config = EngineConfig::new(dir.path().join("data"), CLUSTER, &instance);
    config.pull_behavior = PullBehavior::IfNotPresent;
    config.default_stop_timeout = Duration::from_secs(5);
    config.resync_interval = Duration::from_secs(2);
    let (tx, mut reports) = unbounded_channel();
    let engine = Engine::new(config, Arc::new(runtime), tx);
    let mut latest = HashMap::new();

    // `steady` runs through the cut; `victim` is stopped behind the agent's back during it.
    let (steady, victim, late) = (task_arn(), task_arn(), task_arn());
    engine.apply(assignment(&steady, &["sleep", "inf"])).unwrap();
    engine.apply(assignment(&victim, &["trap-term", "--code", "42"])).unwrap();
    for t in [&steady, &victim] {
        until(&mut reports, &mut latest, t, "RUNNING", |r| r.status == "RUNNING").await;
    }
    let victim_id = containers_of(&docker, labels::TASK, &victim).await.into_keys().next().expect("victim container");

    proxy.cut();
    // `late` arrives while the daemon is away: its first attempts are refused.
    engine.apply(assignment(&late, &["sleep", "inf"])).unwrap();
    let term = KillContainerOptionsBuilder::default().signal("SIGTERM").build();
    docker.kill_container(&victim_id, Some(term)).await.expect("SIGTERM through the real socket");
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Nothing could be known meanwhile, so nothing changed.
    for t in [&steady, &victim] {
        assert_eq!(engine.report(t).expect("a report").status, "RUNNING", "{t} changed during the cut");
    }
    let r = engine.report(&late).expect("the late task is held");
    assert!(r.stopped_reason.is_none() && r.status != "RUNNING", "{r:?}");
    proxy.restore();

    let r = until(&mut reports, &mut latest, &victim, "STOPPED", |r| r.status == "STOPPED").await;
    let main = r.containers.iter().find(|c| c.name == "main").expect("main");
    assert_eq!(main.exit_code, Some(42), "{r:?}");
    assert_eq!(r.stop_code.as_deref(), Some("EssentialContainerExited"));
    until(&mut reports, &mut latest, &late, "RUNNING", |r| r.status == "RUNNING").await;
    // The steady task stayed up, and every task has exactly one container.
    assert_eq!(engine.report(&steady).expect("a report").status, "RUNNING");
    for (t, state) in [(&steady, "running"), (&late, "running"), (&victim, "exited")] {
        let found = containers_of(&docker, labels::TASK, t).await;
        assert_eq!(found.len(), 1, "{t}: {found:?}");
        assert_eq!(found.values().next().map(String::as_str), Some(state), "{t}");
    }
    for t in [&steady, &late] {
        let r = engine.report(t).expect("a report");
        let main = r.containers.iter().find(|c| c.name == "main").expect("main");
        assert_eq!((main.status.as_str(), main.exit_code), ("RUNNING", None), "{t}");
    }

    // A stop ordered while the daemon is away is delivered once it is back, as a SIGTERM (the
    // workload's `sleep` dies of it: 143), not escalated to SIGKILL (137).
    proxy.cut();
    let mut stop = assignment(&steady, &["sleep", "inf"]);
    stop.task.desired_status = Some("STOPPED".into());
    engine.apply(stop).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let found = containers_of(&docker, labels::TASK, &steady).await;
    assert_eq!(found.values().next().map(String::as_str), Some("running"), "nothing reached the daemon");
    proxy.restore();
    let r = until(&mut reports, &mut latest, &steady, "STOPPED", |r| r.status == "STOPPED").await;
    let main = r.containers.iter().find(|c| c.name == "main").expect("main");
    assert_eq!(main.exit_code, Some(143), "{r:?}");
    assert!(r.stop_code.is_none(), "{r:?}");
    engine.shutdown().await;
}
