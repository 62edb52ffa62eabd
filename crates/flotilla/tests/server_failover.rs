//! An agent given several servers (`flotilla agent --simulate 1 --server A,B`, the real binary)
//! outlives the server it is on: two control plane servers share one store, the server holding
//! the agent's session dies (its runtime dropped at once, as a `kill -9` would leave it: no
//! goodbye, sockets closed by the kernel), and the agent's session comes up on the other server
//! as the same container instance, which then runs a task launched through it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_api::{Clock, RootCredentials, ServerConfig};

const AKID: &str = "AKIDFAILOVERTEST";
const SECRET: &str = "failover-test-secret-0123456789abcdef";
/// A liveness bound, far above what any of these steps takes.
const BOUND: Duration = Duration::from_secs(60);

/// Kills the child when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server on its own runtime, so that dropping the runtime takes the whole server away at
/// once (listener, sessions, loops), as a killed process goes.
struct Server {
    endpoint: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    /// Starts a server over `store`; from a thread of its own, as a runtime cannot be started
    /// from within the test's.
    fn start(store: Arc<dyn flotilla_store::Store>, dir: std::path::PathBuf) -> Server {
        std::thread::spawn(move || Server::start_here(store, &dir)).join().expect("the server started")
    }

    fn start_here(store: Arc<dyn flotilla_store::Store>, dir: &std::path::Path) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let creds = RootCredentials { access_key_id: AKID.into(), secret_access_key: SECRET.into() };
        let config = ServerConfig::new(dir.to_path_buf(), creds);
        std::fs::create_dir_all(dir).unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let ctx = runtime.block_on(flotilla_api::server::build_ctx(store, &config, Clock::system())).unwrap();
        runtime.spawn(async move {
            let forever = std::future::pending::<()>();
            flotilla_api::server::serve_ctx(ctx, &config, flotilla_api::tls::Listening::Plain(listener), forever).await
        });
        Server { endpoint, runtime: Some(runtime) }
    }

    /// Takes the server away without a word to its clients.
    fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The child's stderr, line by line, as it comes.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    rx
}

/// The server of the next "agent session up" line, and the lines seen on the way.
fn next_session_up(lines: &Receiver<String>, seen: &mut Vec<String>) -> String {
    let until = Instant::now() + BOUND;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        let Ok(line) = lines.recv_timeout(left) else { break };
        seen.push(line.clone());
        if line.contains("agent session up") {
            if let Some(server) = line.split_whitespace().find_map(|w| w.strip_prefix("server=")) {
                return server.to_string();
            }
        }
    }
    panic!("no agent session came up; the agent said:\n{}", seen.join("\n"));
}

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + BOUND;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_moves_to_another_server_when_its_own_dies_and_runs_tasks_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn flotilla_store::Store> = Arc::new(flotilla_store::MemoryStore::new());
    let mut a = Server::start(store.clone(), dir.path().join("a"));
    let mut b = Server::start(store, dir.path().join("b"));
    let list = format!("{},{}", a.endpoint, b.endpoint);

    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["agent", "--simulate", "1", "--cpu", "1024", "--memory", "2048", "--server", &list, "--data-dir"])
            .arg(dir.path().join("agent"))
            .env("FLOTILLA_ACCESS_KEY_ID", AKID)
            .env("FLOTILLA_SECRET_ACCESS_KEY", SECRET)
            .env("FLOTILLA_LOG", "info")
            .env_remove("FLOTILLA_SERVER")
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flotilla agent --simulate 1"),
    );
    let lines = lines_of(&mut agent.0);
    let mut seen = Vec::new();
    let first = next_session_up(&lines, &mut seen);
    assert!(first == a.endpoint || first == b.endpoint, "{first} is one of {list}");

    // Whichever server the agent chose dies; the other stays.
    let (dying, surviving) = if first == a.endpoint { (&mut a, &b) } else { (&mut b, &a) };
    let ecs = common::client(&surviving.endpoint, AKID, SECRET);
    let instance = eventually("the instance registered", || async {
        let arns = ecs.list_container_instances().send().await.ok()?.container_instance_arns().to_vec();
        (arns.len() == 1).then(|| arns[0].clone())
    })
    .await;
    dying.kill();

    let second = next_session_up(&lines, &mut seen);
    assert_eq!(second, surviving.endpoint, "the session moved to the surviving server");
    assert!(
        seen.iter().any(|l| l.contains("moving to the next server")),
        "the agent said it moved on:\n{}",
        seen.join("\n")
    );

    // The same instance, connected, no second registration.
    let arns = ecs.list_container_instances().send().await.unwrap().container_instance_arns().to_vec();
    assert_eq!(arns, vec![instance.clone()], "the agent kept its instance");
    let described = ecs.describe_container_instances().container_instances(&instance).send().await.unwrap();
    assert!(described.container_instances()[0].agent_connected(), "{described:?}");

    // A task launched through the surviving server reaches the agent and runs.
    let app = aws_sdk_ecs::types::ContainerDefinition::builder().name("app").image("x").cpu(128).memory(64).build();
    ecs.register_task_definition().family("after-failover").container_definitions(app).send().await.unwrap();
    let run = ecs.run_task().task_definition("after-failover").send().await.unwrap();
    assert_eq!(run.tasks().len(), 1, "{:?}", run.failures());
    let task = run.tasks()[0].task_arn().unwrap().to_string();
    assert_eq!(run.tasks()[0].container_instance_arn(), Some(instance.as_str()));
    eventually("the task RUNNING on the moved agent", || async {
        let out = ecs.describe_tasks().tasks(&task).send().await.ok()?;
        (out.tasks().first()?.last_status() == Some("RUNNING")).then_some(())
    })
    .await;
}

#[test]
fn a_bad_entry_in_the_server_list_is_refused_by_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["agent", "--simulate", "1", "--server", "http://127.0.0.1:1,,http://127.0.0.1:2"])
        .env("FLOTILLA_ACCESS_KEY_ID", AKID)
        .env("FLOTILLA_SECRET_ACCESS_KEY", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("empty entry (number 2)"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["lb", "--server", "http://127.0.0.1:1,127.0.0.1:2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"127.0.0.1:2\" is not a server URL"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["token", "list", "--server", "ftp://x"])
        .env("FLOTILLA_ACCESS_KEY_ID", AKID)
        .env("FLOTILLA_SECRET_ACCESS_KEY", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"ftp://x\" is not a server URL"));
}

#[test]
fn user_commands_use_the_first_server_that_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (server, live) = common::start_printing_endpoint("server", &dir.path().join("server"), AKID, SECRET);
    let _server = Guard(server);
    let dead = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    );
    let token = |servers: &str| {
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["token", "create", "--cluster", "default", "--server", servers])
            .env("FLOTILLA_ACCESS_KEY_ID", AKID)
            .env("FLOTILLA_SECRET_ACCESS_KEY", SECRET)
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_ECS")
            .output()
            .unwrap()
    };
    let out = token(&format!("{dead},{live}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty(), "a token was printed");
    // None answering: an error saying so.
    let out = token(&format!("{dead},{dead}/"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the control plane"));
}
