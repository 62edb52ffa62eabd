//! `flotilla logs` end to end with the real binary: `flotilla up` (control plane and a local agent
//! on the local Docker Engine, running the locally built `flotilla/workload` image, never pulled),
//! tasks started with the official SDK, and `flotilla logs` run as a user runs it, with the
//! variables `flotilla up` printed. A guard kills `flotilla up` and removes the containers of its
//! instance, even when the test panics.

mod common;

use std::process::Child;
use std::time::Duration;

use aws_sdk_ecs::types::{ContainerDefinition, NetworkMode};
use flotilla_agent::runtime::docker::{DockerRuntime, DockerTimeouts};
use flotilla_agent::runtime::{labels, Runtime};

const AKID: &str = "AKIDLOGSCLITEST";
const SECRET: &str = "logs-cli-test-secret";
const WAIT: Duration = Duration::from_secs(90);

struct Up {
    child: Child,
    endpoint: String,
    instance: Option<String>,
    _dir: tempfile::TempDir,
}

impl Up {
    fn start() -> Up {
        let dir = tempfile::tempdir().expect("tempdir");
        let (child, endpoint) = common::start_printing_endpoint("up", dir.path(), AKID, SECRET);
        Up { child, endpoint, instance: None, _dir: dir }
    }

    fn client(&self) -> aws_sdk_ecs::Client {
        common::client(&self.endpoint, AKID, SECRET)
    }

    /// `flotilla logs ARGS` with the environment `flotilla up` printed: (success, stdout, stderr).
    async fn logs(&self, args: &[&str]) -> (bool, String, String) {
        let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .arg("logs")
            .args(args)
            .env_remove("FLOTILLA_ACCESS_KEY_ID")
            .env_remove("FLOTILLA_SECRET_ACCESS_KEY")
            .env("AWS_ACCESS_KEY_ID", AKID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_ENDPOINT_URL_ECS", &self.endpoint)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(WAIT, run).await.expect("flotilla logs finishes").expect("run flotilla logs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let Some(instance) = self.instance.clone() else { return };
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let Ok(docker) = DockerRuntime::connect(DockerTimeouts::default()).await else { return };
                for c in
                    docker.list_containers(&[(labels::INSTANCE, Some(instance.as_str()))]).await.unwrap_or_default()
                {
                    let _ = docker.remove_container(&c.id).await;
                }
            });
        });
        let _ = done.join();
    }
}

async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < WAIT {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn run_task(client: &aws_sdk_ecs::Client, family: &str, command: &[&str]) -> String {
    let container = ContainerDefinition::builder()
        .name("app")
        .image("flotilla/workload:latest")
        .memory(32)
        .set_command(Some(command.iter().map(|s| s.to_string()).collect()))
        .build();
    client
        .register_task_definition()
        .family(family)
        .network_mode(NetworkMode::None)
        .container_definitions(container)
        .send()
        .await
        .expect("register");
    let out = client.run_task().task_definition(family).send().await.expect("run-task");
    assert!(out.failures().is_empty(), "{:?}", out.failures());
    out.tasks()[0].task_arn().expect("arn").to_string()
}

async fn wait_status(client: &aws_sdk_ecs::Client, task: &str, status: &str) {
    eventually(&format!("task is {status}"), || async {
        let out = client.describe_tasks().tasks(task).send().await.ok()?;
        (out.tasks().first()?.last_status() == Some(status)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flotilla_logs_prints_a_stopped_tasks_output_and_follows_a_running_one() {
    let mut up = Up::start();
    let client = up.client();
    let instance = eventually("the local agent connects", || async {
        let list = client.list_container_instances().send().await.ok()?;
        let arn = list.container_instance_arns().first()?.clone();
        let out = client.describe_container_instances().container_instances(&arn).send().await.ok()?;
        out.container_instances().first()?.agent_connected().then_some(arn)
    })
    .await;
    up.instance = Some(instance);

    // After the task has exited: stdout lines on stdout, stderr lines on stderr.
    let task = run_task(&client, "cli-logs", &["echo", "hello from the cli", "then", "echo", "--stderr", "oops"]).await;
    wait_status(&client, &task, "STOPPED").await;
    let (ok, out, err) = up.logs(&[&task]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "app | hello from the cli\n");
    assert!(err.contains("app | oops"), "{err}");

    // By ID, with timestamps.
    let id = task.rsplit('/').next().unwrap();
    let (ok, out, err) = up.logs(&["--timestamps", "--cluster", "default", id]).await;
    assert!(ok, "{err}");
    let line = out.trim_end();
    assert!(line.ends_with("Z app | hello from the cli") && line.starts_with("20"), "{line}");

    // A task that does not exist: a failure that says why.
    let (ok, _, err) = up.logs(&["0123456789abcdef0123456789abcdef"]).await;
    assert!(!ok);
    assert!(err.contains("InvalidParameterException"), "{err}");

    // --follow prints the line that comes after it started, and returns once the task stops.
    let task = run_task(&client, "cli-follow", &["echo", "one", "then", "sleep", "3", "then", "echo", "two"]).await;
    wait_status(&client, &task, "RUNNING").await;
    let (ok, out, err) = up.logs(&["--follow", &task]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "app | one\napp | two\n");
    wait_status(&client, &task, "STOPPED").await;
}
