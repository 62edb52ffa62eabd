//! Pulls from a private registry on the real Docker Engine: a local `docker-registry` with
//! htpasswd auth on 127.0.0.1 (`flotilla_images::registry`), holding the workload image under a
//! name of the test's own, whose local copy is removed first so that the pull really happens.
//!
//! The runtime pulls with the right credentials and fails with the registry's own words with
//! wrong ones and with none; the engine pulls with a task's `repositoryCredentials` (handed over
//! by a stand-in control plane, as the session's calls would), or else with the host's Docker
//! config, stops a task whose pull is refused with `CannotPullContainerError: ...` carrying those
//! words, and notes each pull in the task's log. These tests need `docker-registry` and
//! `htpasswd` and fail without them. Addresses contacted: the registry on 127.0.0.1.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use flotilla_agent::calls::{CallError, ControlPlaneCalls};
use flotilla_agent::engine::EngineConfig;
use flotilla_agent::network::NetworkConfig;
use flotilla_agent::registry_auth::HostCredentials;
use flotilla_agent::runtime::docker::{DockerRuntime, DockerTimeouts};
use flotilla_agent::runtime::{RegistryAuth, RuntimeError};
use flotilla_agent::{Engine, PullBehavior, Runtime};
use flotilla_images::registry::{remove_local, LocalRegistry};
use flotilla_model::{ContainerDefinition, RepositoryCredentials, Task, TaskDefinition};
use flotilla_protocol::{ContainerResources, LogEventsBatch, TaskAssignment, TaskReport, TaskResources};
use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

mod common;
use common::Cleanup;

const CLUSTER: &str = "arn:aws:ecs:local:000000000000:cluster/registry-tests";
const USER: &str = "flotilla";
const PASSWORD: &str = "registry-test-password";
/// Far longer than anything here should take; a hang still fails.
const WAIT: Duration = Duration::from_secs(120);

/// A registry holding the workload image as `127.0.0.1:PORT/flotilla-test/private-ID:v1`, with no
/// local copy left.
struct Private {
    registry: LocalRegistry,
    runtime: Arc<DockerRuntime>,
    image: String,
}

impl Private {
    async fn start() -> Private {
        let runtime = Arc::new(DockerRuntime::connect(DockerTimeouts::default()).await.expect("Docker Engine"));
        let docker = runtime.docker();
        let workload =
            flotilla_images::ensure_image(docker, flotilla_images::WORKLOAD_IMAGE).await.expect("workload image");
        let registry = LocalRegistry::start(USER, PASSWORD)
            .await
            .expect("docker-registry starts (apt install docker-registry apache2-utils)");
        let name = format!("flotilla-test/private-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let image = registry.push(docker, &workload.tag, &name, "v1").await.expect("push to the local registry");
        remove_local(docker, &image).await.expect("remove the local copy");
        assert!(!runtime.image_present(&image).await.expect("inspect"), "the local copy is gone");
        Private { registry, runtime, image }
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let (docker, image) = (self.runtime.docker().clone(), self.image.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let _ = remove_local(&docker, &image).await;
            });
        })
        .join();
    }
}

fn auth(password: &str) -> RegistryAuth {
    RegistryAuth { username: USER.into(), password: password.into() }
}

fn unavailable_message(r: Result<(), RuntimeError>) -> String {
    match r {
        Err(RuntimeError::ImageUnavailable { message, .. }) => message,
        other => panic!("expected ImageUnavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_pulls_with_the_right_credentials_and_reports_the_registry_refusals() {
    let p = Private::start().await;
    let wrong = unavailable_message(p.runtime.pull_image(&p.image, Some(&auth("wrong-password"))).await);
    assert!(wrong.contains("unauthorized: authentication required"), "{wrong}");
    assert!(!wrong.contains("wrong-password"), "{wrong}");
    let none = unavailable_message(p.runtime.pull_image(&p.image, None).await);
    assert!(none.contains("no basic auth credentials"), "{none}");
    assert!(!p.runtime.image_present(&p.image).await.expect("inspect"));
    p.runtime.pull_image(&p.image, Some(&auth(PASSWORD))).await.expect("pull with the right credentials");
    assert!(p.runtime.image_present(&p.image).await.expect("inspect"), "pulled");
    let missing = format!("{}/flotilla-test/absent:v1", p.registry.host());
    let absent = unavailable_message(p.runtime.pull_image(&missing, Some(&auth(PASSWORD))).await);
    assert!(absent.contains("not found"), "{absent}");
}

/// The control plane's answer to the task-resources call: these credentials for container `app`.
struct StaticCalls(Option<RegistryAuth>);

impl ControlPlaneCalls for StaticCalls {
    fn task_resources(&self, _task_arn: &str) -> BoxFuture<'_, Result<TaskResources, CallError>> {
        let containers =
            vec![ContainerResources { name: "app".into(), registry_auth: self.0.clone(), ..Default::default() }];
        Box::pin(async move { Ok(TaskResources { containers, failure: None }) })
    }

    fn put_log_events(&self, _batch: LogEventsBatch) -> BoxFuture<'_, Result<(), CallError>> {
        Box::pin(async { Ok(()) })
    }
}

struct Agent {
    engine: Engine,
    reports: UnboundedReceiver<TaskReport>,
    _data: tempfile::TempDir,
    _cleanup: Cleanup,
}

impl Agent {
    fn start(p: &Private, tune: impl FnOnce(&mut EngineConfig)) -> Agent {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let instance = format!("arn:aws:ecs:local:000000000000:container-instance/registry-tests/{id}");
        let network = format!("flotilla-test-{}", &id[..12]);
        let cleanup =
            Cleanup { docker: p.runtime.docker().clone(), instance: instance.clone(), network: network.clone() };
        let data = tempfile::tempdir().expect("data dir");
        let mut config = EngineConfig::new(data.path(), CLUSTER, &instance);
        config.pull_behavior = PullBehavior::IfNotPresent;
        config.network =
            NetworkConfig { awsvpc_network: network, host_ip: Some("127.0.0.1".into()), ..NetworkConfig::default() };
        config.default_stop_timeout = Duration::from_secs(2);
        tune(&mut config);
        let (tx, reports) = unbounded_channel();
        let engine = Engine::new(config, p.runtime.clone(), tx);
        Agent { engine, reports, _data: data, _cleanup: cleanup }
    }

    async fn settled(&mut self, task: &str) -> TaskReport {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Ok(Some(r)) if r.task_arn == task && (r.status == "RUNNING" || r.status == "STOPPED") => return r,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("{task}: neither RUNNING nor STOPPED"),
            }
        }
    }

    async fn log_lines(&self, task: &str) -> Vec<String> {
        self.engine.logs(task, Some("app"), false).expect("task log").map(|l| l.line).collect().await
    }
}

/// A one-container task whose image is the private one; `credentials` names a secret when set.
fn task(image: &str, credentials: bool) -> (String, TaskAssignment) {
    let arn = format!("arn:aws:ecs:local:000000000000:task/registry-tests/{}", uuid::Uuid::new_v4().simple());
    let app = ContainerDefinition {
        name: Some("app".into()),
        image: Some(image.into()),
        command: Some(vec!["serve".into(), "8080".into()]),
        memory: Some(64),
        repository_credentials: credentials.then(|| RepositoryCredentials {
            credentials_parameter: Some("arn:aws:secretsmanager:local:000000000000:secret:registry-AbCdEf".into()),
        }),
        ..Default::default()
    };
    let a = TaskAssignment {
        task: Task { task_arn: Some(arn.clone()), desired_status: Some("RUNNING".into()), ..Default::default() },
        definition: TaskDefinition {
            family: Some("registry-tests".into()),
            revision: Some(1),
            container_definitions: Some(vec![app]),
            ..Default::default()
        },
        reserved_ports: Vec::new(),
        network: None,
        stop_timeout_cap_seconds: None,
    };
    (arn, a)
}

fn assert_cannot_pull(r: &TaskReport, words: &str) {
    assert_eq!(r.status, "STOPPED", "{r:?}");
    assert_eq!(r.stop_code.as_deref(), Some("TaskFailedToStart"), "{r:?}");
    let reason = r.stopped_reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("CannotPullContainerError: ") && reason.contains(words), "{reason}");
    let app = r.containers.iter().find(|c| c.name == "app").expect("app in the report");
    assert_eq!(app.reason.as_deref(), Some(reason), "the container's reason is the task's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_pulls_with_its_repository_credentials_and_stops_on_a_refusal() {
    let p = Private::start().await;

    let mut wrong = Agent::start(&p, |c| c.calls = Some(Arc::new(StaticCalls(Some(auth("wrong-password"))))));
    let (arn, a) = task(&p.image, true);
    wrong.engine.apply(a).expect("apply");
    let r = wrong.settled(&arn).await;
    assert_cannot_pull(&r, "unauthorized: authentication required");
    assert!(!r.stopped_reason.as_deref().unwrap_or_default().contains("wrong-password"));
    let lines = wrong.log_lines(&arn).await;
    assert!(lines.iter().any(|l| l.contains("pulling image") && l.contains("with registry credentials")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("failed") && l.contains("unauthorized")), "{lines:?}");

    let mut right = Agent::start(&p, |c| c.calls = Some(Arc::new(StaticCalls(Some(auth(PASSWORD))))));
    let (arn, a) = task(&p.image, true);
    right.engine.apply(a).expect("apply");
    let r = right.settled(&arn).await;
    assert_eq!(r.status, "RUNNING", "{r:?}");
    assert!(r.pull_started_at_ms.is_some() && r.pull_stopped_at_ms.is_some(), "{r:?}");
    let lines = right.log_lines(&arn).await;
    assert!(lines.iter().any(|l| l.starts_with("[flotilla-agent] pulled image ")), "{lines:?}");
}

fn docker_config(dir: &Path, registry: &str, password: &str) -> HostCredentials {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    let text = format!(r#"{{"auths": {{"http://{registry}": {{"auth": "{encoded}"}}}}}}"#);
    let path = dir.join("config.json");
    std::fs::write(&path, text).expect("write config.json");
    HostCredentials::load(&path).expect("load config.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_repository_credentials_the_host_docker_config_is_used() {
    let p = Private::start().await;
    let dir = tempfile::tempdir().expect("config dir");

    let mut none = Agent::start(&p, |_| {});
    let (arn, a) = task(&p.image, false);
    none.engine.apply(a).expect("apply");
    assert_cannot_pull(&none.settled(&arn).await, "no basic auth credentials");

    let wrong = Arc::new(docker_config(dir.path(), &p.registry.host(), "wrong-password"));
    let mut agent = Agent::start(&p, |c| c.host_registry_auth = wrong);
    let (arn, a) = task(&p.image, false);
    agent.engine.apply(a).expect("apply");
    assert_cannot_pull(&agent.settled(&arn).await, "unauthorized: authentication required");

    let right = Arc::new(docker_config(dir.path(), &p.registry.host(), PASSWORD));
    let mut agent = Agent::start(&p, |c| c.host_registry_auth = right);
    let (arn, a) = task(&p.image, false);
    agent.engine.apply(a).expect("apply");
    let r = agent.settled(&arn).await;
    assert_eq!(r.status, "RUNNING", "{r:?}");
}
