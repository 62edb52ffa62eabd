//! `GET /v1/logs` end to end: a real server, a real agent (`run_agent`) on the local Docker Engine
//! running the locally built `flotilla/workload` image (never pulled), tasks started with the
//! official SDK, and the logs read over SigV4-signed HTTP as `flotilla logs` reads them.
//!
//! Each test has its own server and agent (so its own container instance ARN); a guard removes
//! the containers that instance created, even when the test panics.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_ecs::types::{ContainerDefinition, NetworkMode};
use common::*;
use flotilla_agent::run::{run_agent, AgentOptions};
use flotilla_agent::runtime::docker::{DockerRuntime, DockerTimeouts};
use flotilla_agent::runtime::{labels, Runtime};
use flotilla_agent::session::{ApiClient, RegistrationConfig};
use flotilla_protocol::{LogEntry, LogStream};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(90);

/// Removes the containers of one agent's instance, on drop (also on panic).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let instance = self.0.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let Ok(docker) = DockerRuntime::connect(DockerTimeouts::default()).await else { return };
                let ours = docker.list_containers(&[(labels::INSTANCE, Some(instance.as_str()))]).await;
                for c in ours.unwrap_or_default() {
                    let _ = docker.remove_container(&c.id).await;
                }
            });
        });
        let _ = done.join();
    }
}

struct Stack {
    server: TestServer,
    client: aws_sdk_ecs::Client,
    stop_agent: Option<oneshot::Sender<()>>,
    agent: tokio::task::JoinHandle<()>,
    instance: String,
    _cleanup: Cleanup,
    _agent_dir: tempfile::TempDir,
}

async fn stack() -> Stack {
    let server = TestServer::start().await;
    let client = server.client();
    let agent_dir = tempfile::tempdir().unwrap();
    let creds =
        flotilla_sigv4::Credentials::new(&server.credentials.access_key_id, &server.credentials.secret_access_key);
    let api = ApiClient::new(&server.endpoint(), REGION, creds).unwrap();
    let registration = RegistrationConfig {
        cluster: "default".into(),
        data_dir: agent_dir.path().to_path_buf(),
        availability_zone: "us-east-1a".into(),
        instance_type: "flotilla.test".into(),
        attributes: Vec::new(),
        cpu: Some(2048),
        memory: Some(2048),
        memory_reserved_mib: 0,
        network_modes: vec!["bridge".into(), "host".into(), "none".into()],
        agent_version: "test".into(),
        docker_version: "test".into(),
        state_file: "agent.json".into(),
        ec2_instance_id: None,
        gpus: Vec::new(),
    };
    let options = AgentOptions { host_ip: Some("127.0.0.1".into()), ..AgentOptions::default() };
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let agent = tokio::spawn(async move {
        if let Err(e) = run_agent(api, registration, options, async move {
            let _ = stop_rx.await;
        })
        .await
        {
            panic!("the agent failed: {e}");
        }
    });
    let instance = eventually_within("the agent connects", WAIT, || async {
        let list = client.list_container_instances().send().await.ok()?;
        let arn = list.container_instance_arns().first()?.clone();
        let out = client.describe_container_instances().container_instances(&arn).send().await.ok()?;
        out.container_instances().first()?.agent_connected().then_some(arn)
    })
    .await;
    Stack {
        server,
        client,
        stop_agent: Some(stop_tx),
        agent,
        _cleanup: Cleanup(instance.clone()),
        instance,
        _agent_dir: agent_dir,
    }
}

async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Registers a one-container task definition running the workload with `command`, and runs it.
async fn run(stack: &Stack, family: &str, command: &[&str]) -> String {
    let container = ContainerDefinition::builder()
        .name("app")
        .image("flotilla/workload:latest")
        .memory(32)
        .essential(true)
        .set_command(Some(command.iter().map(|s| s.to_string()).collect()))
        .build();
    stack
        .client
        .register_task_definition()
        .family(family)
        .network_mode(NetworkMode::None)
        .container_definitions(container)
        .send()
        .await
        .expect("register");
    let out = stack.client.run_task().task_definition(family).send().await.expect("run-task");
    assert!(out.failures().is_empty(), "{:?}", out.failures());
    out.tasks()[0].task_arn().expect("arn").to_string()
}

async fn wait_status(stack: &Stack, task: &str, status: &str) {
    eventually_within(&format!("task is {status}"), WAIT, || async {
        let out = stack.client.describe_tasks().tasks(task).send().await.ok()?;
        (out.tasks().first()?.last_status() == Some(status)).then_some(())
    })
    .await;
}

/// A GET of `path_and_query`, signed like the ECS API with `secret` (unsigned without one).
async fn get(server: &TestServer, path_and_query: &str, secret: Option<&str>) -> reqwest::Response {
    let url = format!("{}{path_and_query}", server.endpoint());
    let mut headers = http::HeaderMap::new();
    if let Some(secret) = secret {
        let creds = flotilla_sigv4::Credentials::new(server.credentials.access_key_id.clone(), secret.to_string());
        let params = flotilla_sigv4::SigningParams {
            credentials: &creds,
            region: REGION,
            service: "ecs",
            time: SystemTime::now(),
        };
        let uri: http::Uri = url.parse().unwrap();
        flotilla_sigv4::sign(&http::Method::GET, &uri, &mut headers, b"", &params).expect("sign");
    }
    reqwest::Client::new().get(&url).headers(headers).send().await.expect("send")
}

async fn signed(server: &TestServer, path_and_query: &str) -> reqwest::Response {
    get(server, path_and_query, Some(&server.credentials.secret_access_key)).await
}

/// Percent-encodes a query value.
fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn parse_lines(body: &str) -> Vec<LogEntry> {
    body.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logs_stay_readable_after_the_task_exits() {
    let mut stack = stack().await;
    let task = run(&stack, "logs-e2e", &["echo", "hello from flotilla", "then", "log", "3"]).await;
    wait_status(&stack, &task, "STOPPED").await;

    // By ARN (the cluster comes from the ARN): every line, in order, each with its stream.
    let resp = signed(&stack.server, &format!("/v1/logs?task={}", enc(&task))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let lines = parse_lines(&resp.text().await.unwrap());
    let text: Vec<(&str, LogStream, &str)> =
        lines.iter().map(|l| (l.container.as_str(), l.stream, l.line.as_str())).collect();
    assert!(text.contains(&("app", LogStream::Stdout, "hello from flotilla")), "{text:?}");
    assert!(text.contains(&("app", LogStream::Stdout, "stdout line 3 of 3")), "{text:?}");
    assert!(text.contains(&("app", LogStream::Stderr, "stderr line 3 of 3")), "{text:?}");
    assert_eq!(lines.len(), 7, "{text:?}");
    assert!(lines.windows(2).all(|w| w[0].seq < w[1].seq));

    // By ID, one container, resuming after the first line, at most two lines.
    let id = task.rsplit('/').next().unwrap();
    let q = format!("/v1/logs?task={id}&cluster=default&container=app&startAfterSeq={}&limit=2", lines[0].seq);
    let resp = signed(&stack.server, &q).await;
    assert_eq!(resp.status(), 200);
    let page = parse_lines(&resp.text().await.unwrap());
    assert_eq!(page, lines[1..3].to_vec());

    // A task that does not exist is named in the error.
    let resp = signed(&stack.server, "/v1/logs?task=0123456789abcdef0123456789abcdef").await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-amzn-errortype"], "InvalidParameterException");
    assert!(resp.text().await.unwrap().contains("0123456789abcdef0123456789abcdef"));

    // With the agent gone, the read is refused with a clear reason.
    let _ = stack.stop_agent.take().map(|s| s.send(()));
    tokio::time::timeout(WAIT, &mut stack.agent).await.expect("the agent stops").expect("agent task");
    let instance = stack.instance.clone();
    eventually_within("the agent is disconnected", WAIT, || async {
        let out = stack.client.describe_container_instances().container_instances(&instance).send().await.ok()?;
        (!out.container_instances().first()?.agent_connected()).then_some(())
    })
    .await;
    let resp = signed(&stack.server, &format!("/v1/logs?task={}", enc(&task))).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-amzn-errortype"], "ClientException");
    let body = resp.text().await.unwrap();
    assert!(body.contains(&format!("The agent of container instance {instance} is not connected")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follow_streams_lines_printed_after_the_request_and_ends_with_the_task() {
    let stack = stack().await;
    let task = run(&stack, "logs-follow", &["echo", "early", "then", "sleep", "5", "then", "echo", "late"]).await;
    wait_status(&stack, &task, "RUNNING").await;
    let asked_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut resp = signed(&stack.server, &format!("/v1/logs?task={}&follow=true", enc(&task))).await;
    assert_eq!(resp.status(), 200);
    let mut body = String::new();
    let mut early_seen_at = None;
    let mut late: Option<LogEntry> = None;
    // The stream ends by itself once the task's container has exited and its output is drained.
    tokio::time::timeout(WAIT, async {
        while let Some(chunk) = resp.chunk().await.expect("chunk") {
            body.push_str(std::str::from_utf8(&chunk).unwrap());
            for l in body.lines().filter(|l| l.ends_with('}')) {
                let e: LogEntry = serde_json::from_str(l).unwrap();
                if e.line == "early" && early_seen_at.is_none() {
                    early_seen_at = Some(Instant::now());
                }
                if e.line == "late" {
                    late = Some(e);
                }
            }
        }
    })
    .await
    .expect("the follow ends when the task stops");
    let lines: Vec<String> = parse_lines(&body).into_iter().map(|l| l.line).collect();
    assert_eq!(lines, vec!["early", "late"]);
    assert!(early_seen_at.is_some());
    let late = late.expect("the late line");
    assert!(late.timestamp_ms >= asked_at, "'late' was printed after the request started");
    wait_status(&stack, &task, "STOPPED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_refuses_unsigned_and_badly_signed_requests() {
    let server = TestServer::start().await;
    let resp = get(&server, "/v1/logs?task=abc", None).await;
    assert_eq!(resp.status(), 400);
    let code = resp.headers()["x-amzn-errortype"].to_str().unwrap().to_string();
    assert_eq!(code, "MissingAuthenticationTokenException");
    let resp = get(&server, "/v1/logs?task=abc", Some("not-the-secret")).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-amzn-errortype"], "InvalidSignatureException");
    // Signed, the same request gets past authentication to the lookup.
    let resp = signed(&server, "/v1/logs?task=abc").await;
    assert_eq!(resp.headers()["x-amzn-errortype"], "InvalidParameterException");
    let resp = signed(&server, "/v1/logs?task=abc&tail=3").await;
    assert!(resp.text().await.unwrap().contains("Unknown parameter 'tail'"));
}
