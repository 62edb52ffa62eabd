//! The agent session end to end: a real server, the agent's own registration and websocket
//! session code, and the official SDK as the user. Tasks started on the instance reach the agent;
//! its reports become the task's state; `agentConnected` follows the session.

mod common;

use std::time::Duration;

use common::*;
use flotilla_agent::session::{register, run_session, ApiClient, RegistrationConfig, SessionConfig, SessionEvent};
use flotilla_protocol::{ContainerReport, TaskReport};
use flotilla_sigv4::Credentials;
use tokio::sync::mpsc;

fn registration(dir: &std::path::Path) -> RegistrationConfig {
    RegistrationConfig {
        cluster: "default".into(),
        data_dir: dir.to_path_buf(),
        availability_zone: "us-east-1a".into(),
        instance_type: "flotilla.test".into(),
        attributes: vec![("team".into(), Some("web".into()))],
        cpu: Some(2048),
        memory: Some(4096),
        memory_reserved_mib: 0,
        network_modes: vec!["bridge".into(), "host".into(), "awsvpc".into(), "none".into()],
        agent_version: "test".into(),
        docker_version: "test".into(),
        state_file: "agent.json".into(),
        ec2_instance_id: None,
        gpus: Vec::new(),
    }
}

async fn next_event(
    rx: &mut mpsc::UnboundedReceiver<SessionEvent>,
    want: impl Fn(&SessionEvent) -> bool,
) -> SessionEvent {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let ev = rx.recv().await.expect("session ended");
            if want(&ev) {
                return ev;
            }
        }
    })
    .await
    .expect("no such session event within 20 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_flow_to_the_agent_and_reports_flow_back() {
    let server = TestServer::start().await;
    let client = server.client();
    let agent_dir = tempfile::tempdir().unwrap();
    let creds = Credentials::new(&server.credentials.access_key_id, &server.credentials.secret_access_key);
    let api = ApiClient::new(&server.endpoint(), REGION, creds).unwrap();
    let cfg = registration(agent_dir.path());
    let (identity, ci) = register(&api, &cfg).await.expect("register");
    assert!(ci
        .attributes
        .iter()
        .flatten()
        .any(|a| a.name.as_deref() == Some("team") && a.value.as_deref() == Some("web")));
    // Registering again keeps the ARN.
    let (again, _) = register(&api, &cfg).await.expect("re-register");
    assert_eq!(again, identity);

    let (ev_tx, mut events) = mpsc::unbounded_channel();
    let (report_tx, reports) = mpsc::unbounded_channel();
    let session = tokio::spawn(run_session(api.clone(), identity.clone(), SessionConfig::default(), ev_tx, reports));
    next_event(&mut events, |e| matches!(e, SessionEvent::Connected)).await;
    eventually("agentConnected", || async {
        let out = client
            .describe_container_instances()
            .container_instances(&identity.container_instance_arn)
            .send()
            .await
            .ok()?;
        (out.container_instances()[0].agent_connected()).then_some(())
    })
    .await;

    register_td(&client, "web").await;
    let started = client
        .start_task()
        .task_definition("web")
        .container_instances(&identity.container_instance_arn)
        .send()
        .await
        .expect("start task");
    let task_arn = started.tasks()[0].task_arn().unwrap().to_string();
    let assigned =
        next_event(&mut events, |e| matches!(e, SessionEvent::Assign(t) if t.iter().any(|a| a.arn() == task_arn)))
            .await;
    let SessionEvent::Assign(tasks) = assigned else { unreachable!() };
    let a = tasks.iter().find(|a| a.arn() == task_arn).unwrap();
    assert_eq!(a.desired_status(), "RUNNING");
    assert_eq!(a.definition.family.as_deref(), Some("web"));

    report_tx
        .send(TaskReport {
            task_arn: task_arn.clone(),
            status: flotilla_protocol::TaskStatus::Running,
            seq: 1,
            containers: vec![ContainerReport {
                name: "web".into(),
                status: flotilla_protocol::ContainerLifecycle::Running,
                runtime_id: Some("c1".into()),
                ..Default::default()
            }],
            started_at_ms: Some(1_700_000_000_000),
            ..Default::default()
        })
        .unwrap();
    eventually("task RUNNING", || async {
        let out = client.describe_tasks().tasks(&task_arn).send().await.ok()?;
        let t = &out.tasks()[0];
        (t.last_status() == Some("RUNNING") && t.containers()[0].runtime_id() == Some("c1")).then_some(())
    })
    .await;

    // StopTask reaches the agent as a desired status of STOPPED.
    client.stop_task().task(&task_arn).send().await.expect("stop");
    next_event(&mut events, |e| {
        matches!(e, SessionEvent::Assign(t) if t.iter().any(|a| a.arn() == task_arn && a.desired_status() == "STOPPED"))
    })
    .await;
    report_tx
        .send(TaskReport {
            task_arn: task_arn.clone(),
            status: flotilla_protocol::TaskStatus::Stopped,
            seq: 2,
            containers: vec![ContainerReport {
                name: "web".into(),
                status: flotilla_protocol::ContainerLifecycle::Stopped,
                exit_code: Some(0),
                ..Default::default()
            }],
            stopped_at_ms: Some(1_700_000_001_000),
            ..Default::default()
        })
        .unwrap();
    eventually("task STOPPED and its memory released", || async {
        let out = client.describe_tasks().tasks(&task_arn).send().await.ok()?;
        let t = &out.tasks()[0];
        let ci = client
            .describe_container_instances()
            .container_instances(&identity.container_instance_arn)
            .send()
            .await
            .ok()?;
        let mem = ci.container_instances()[0]
            .remaining_resources()
            .iter()
            .find(|r| r.name() == Some("MEMORY"))?
            .integer_value();
        (t.last_status() == Some("STOPPED") && t.containers()[0].exit_code() == Some(0) && mem == 4096).then_some(())
    })
    .await;

    // When the agent goes away, the instance is marked disconnected.
    drop(report_tx);
    tokio::time::timeout(Duration::from_secs(10), session).await.expect("session ends").unwrap();
    eventually("agent disconnected", || async {
        let out = client
            .describe_container_instances()
            .container_instances(&identity.container_instance_arn)
            .send()
            .await
            .ok()?;
        (!out.container_instances()[0].agent_connected()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_unsigned_or_unknown_session_is_refused() {
    let server = TestServer::start().await;
    let url = format!("ws://{}/agent/ws?cluster=default&containerInstance=nope", server.addr);
    let err = tokio_tungstenite::connect_async(url.as_str()).await.expect_err("unsigned upgrade must fail");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("MissingAuthenticationTokenException"), "{body}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    // A signed request for an instance that was never registered is refused too.
    let creds = Credentials::new(&server.credentials.access_key_id, &server.credentials.secret_access_key);
    let api = ApiClient::new(&server.endpoint(), REGION, creds).unwrap();
    let identity = flotilla_agent::session::AgentIdentity {
        cluster_arn: format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/default"),
        container_instance_arn: format!("arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/default/nope"),
    };
    let (ev_tx, mut events) = mpsc::unbounded_channel();
    let (_report_tx, reports) = mpsc::unbounded_channel();
    tokio::spawn(run_session(api, identity, SessionConfig::default(), ev_tx, reports));
    let ev = next_event(&mut events, |e| matches!(e, SessionEvent::Rejected(_))).await;
    assert!(matches!(ev, SessionEvent::Rejected(body) if body.contains("InvalidInstanceException")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_task_spreads_over_zones_of_hollow_agents() {
    use aws_sdk_ecs::types::{PlacementStrategy, PlacementStrategyType};
    let server = TestServer::start().await;
    let client = server.client();
    let agent_dir = tempfile::tempdir().unwrap();
    let creds = Credentials::new(&server.credentials.access_key_id, &server.credentials.secret_access_key);
    let api = ApiClient::new(&server.endpoint(), REGION, creds).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut agents = Vec::new();
    // Two hollow instances in each of three zones.
    for (i, zone) in
        ["us-east-1a", "us-east-1a", "us-east-1b", "us-east-1b", "us-east-1c", "us-east-1c"].iter().enumerate()
    {
        let base = RegistrationConfig { availability_zone: zone.to_string(), ..registration(agent_dir.path()) };
        let cfg = flotilla_agent::hollow::hollow_config(&base, i);
        std::fs::create_dir_all(&cfg.data_dir).unwrap();
        agents.push(tokio::spawn(flotilla_agent::hollow::run_hollow(api.clone(), cfg, stop_rx.clone())));
    }
    eventually("six connected agents", || async {
        let arns = client.list_container_instances().send().await.ok()?.container_instance_arns().to_vec();
        let out = client.describe_container_instances().set_container_instances(Some(arns)).send().await.ok()?;
        (out.container_instances().iter().filter(|c| c.agent_connected()).count() == 6).then_some(())
    })
    .await;
    register_td(&client, "web").await;
    let spread = PlacementStrategy::builder()
        .r#type(PlacementStrategyType::Spread)
        .field("attribute:ecs.availability-zone")
        .build();
    let out = client.run_task().task_definition("web").count(9).placement_strategy(spread).send().await.expect("run");
    assert!(out.failures().is_empty(), "{:?}", out.failures());
    assert_eq!(out.tasks().len(), 9);
    let mut per_zone = std::collections::BTreeMap::new();
    for t in out.tasks() {
        *per_zone.entry(t.availability_zone().unwrap_or("?").to_string()).or_insert(0) += 1;
    }
    assert_eq!(per_zone.values().copied().collect::<Vec<_>>(), vec![3, 3, 3], "{per_zone:?}");
    // The hollow agents run them.
    let arns: Vec<String> = out.tasks().iter().filter_map(|t| t.task_arn().map(String::from)).collect();
    eventually("all nine RUNNING", || async {
        let d = client.describe_tasks().set_tasks(Some(arns.clone())).send().await.ok()?;
        d.tasks().iter().all(|t| t.last_status() == Some("RUNNING")).then_some(())
    })
    .await;
    // A task too big for every instance fails with RESOURCE:MEMORY and the counts.
    let huge = aws_sdk_ecs::types::ContainerDefinition::builder().name("big").image("x").memory(100_000).build();
    client.register_task_definition().family("huge").container_definitions(huge).send().await.unwrap();
    let out = client.run_task().task_definition("huge").send().await.expect("run");
    assert!(out.tasks().is_empty());
    assert_eq!(out.failures()[0].reason(), Some("RESOURCE:MEMORY"));
    assert!(out.failures()[0].detail().unwrap_or("").contains('6'), "{:?}", out.failures());
    let _ = stop_tx.send(true);
    for a in agents {
        let _ = a.await;
    }
}

type RawSession = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next message the server sends on a raw session.
async fn next_message(ws: &mut RawSession) -> flotilla_protocol::ServerMessage {
    use futures::StreamExt;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a frame within 10 s");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = frame.expect("session open").expect("a frame") {
            return serde_json::from_str(&t).expect("a server message");
        }
    }
}

/// A raw websocket session, signed as the agent signs it, for watching the frames themselves.
async fn raw_session(server: &TestServer, instance_arn: &str) -> RawSession {
    raw_session_with(server, instance_arn, None).await
}

/// A raw session whose socket, when `recv_buffer` is set, has a receive buffer that small (so
/// that a client that stops reading stalls the server's writes soon).
async fn raw_session_with(server: &TestServer, instance_arn: &str, recv_buffer: Option<u32>) -> RawSession {
    let enc = |v: &str| v.replace(':', "%3A").replace('/', "%2F");
    let cluster = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/default");
    let url = format!(
        "ws://{}{}?cluster={}&containerInstance={}&agentVersion=test",
        server.addr,
        flotilla_protocol::AGENT_WS_PATH,
        enc(&cluster),
        enc(instance_arn)
    );
    let creds = Credentials::new(&server.credentials.access_key_id, &server.credentials.secret_access_key);
    let params = flotilla_sigv4::SigningParams {
        credentials: &creds,
        region: REGION,
        service: "ecs",
        time: std::time::SystemTime::now(),
    };
    let mut headers = http::HeaderMap::new();
    flotilla_sigv4::sign(&http::Method::GET, &url.parse().unwrap(), &mut headers, b"", &params).unwrap();
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
    req.headers_mut().extend(headers);
    let Some(size) = recv_buffer else {
        return tokio_tungstenite::connect_async(req).await.expect("signed session").0;
    };
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(size).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    tokio_tungstenite::client_async(req, stream).await.expect("signed session").0
}

/// The resident memory of this process (the server runs in it), in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

/// An agent that registers, takes its first sync and then never reads again, while tasks keep
/// being placed on its instance: the server gives up on the session (its writes time out, or
/// the notice queue fills) and marks the agent disconnected, instead of waiting on the socket
/// forever and queueing every change for it. The API keeps answering meanwhile, and memory stays
/// flat (a generous bound: the tasks themselves take some).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_stops_reading_is_disconnected() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "web").await;
    let agent_dir = tempfile::tempdir().unwrap();
    let creds = Credentials::new(&server.credentials.access_key_id, &server.credentials.secret_access_key);
    let api = ApiClient::new(&server.endpoint(), REGION, creds).unwrap();
    // Room for thousands of tasks.
    let big = RegistrationConfig { cpu: Some(10_000_000), memory: Some(10_000_000), ..registration(agent_dir.path()) };
    let (identity, _) = register(&api, &big).await.expect("register");
    let arn = identity.container_instance_arn.clone();
    let mut ws = raw_session_with(&server, &arn, Some(4096)).await;
    assert!(matches!(next_message(&mut ws).await, flotilla_protocol::ServerMessage::PayloadMessage { .. }));
    let connected = || async {
        let out = client.describe_container_instances().container_instances(&arn).send().await.unwrap();
        out.container_instances()[0].agent_connected()
    };
    assert!(connected().await);
    let before = rss_bytes();
    // From here on the client never reads.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut placed = 0;
    while connected().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled session was never cut off ({placed} tasks placed)"
        );
        let out = client.run_task().task_definition("web").count(10).send().await.expect("the API keeps answering");
        placed += out.tasks().len();
        if placed >= 3000 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 512 << 20, "memory grew by {} MiB for {placed} tasks", grown >> 20);
    drop(ws);
}

/// Report acknowledgements wait for the next message to the agent, but never longer than about
/// half a second: an agent that reports and then hears nothing still gets its ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_acknowledged_alone_or_with_the_next_assignment() {
    use flotilla_protocol::{AgentMessage, ServerMessage};
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "web").await;
    let agent_dir = tempfile::tempdir().unwrap();
    let creds = Credentials::new(&server.credentials.access_key_id, &server.credentials.secret_access_key);
    let api = ApiClient::new(&server.endpoint(), REGION, creds).unwrap();
    let (identity, _) = register(&api, &registration(agent_dir.path())).await.expect("register");
    let mut ws = raw_session(&server, &identity.container_instance_arn).await;
    // The first full sync: no tasks yet.
    assert!(matches!(next_message(&mut ws).await, ServerMessage::PayloadMessage { tasks, .. } if tasks.is_empty()));
    assert!(matches!(next_message(&mut ws).await, ServerMessage::TaskManifestMessage { .. }));

    let started = client.start_task().task_definition("web").container_instances(&identity.container_instance_arn);
    let first = started.send().await.expect("start").tasks()[0].task_arn().unwrap().to_string();
    let report = |seq: u64, arn: &str| {
        let r = TaskReport {
            task_arn: arn.into(),
            status: flotilla_protocol::TaskStatus::Running,
            seq,
            ..Default::default()
        };
        Message::Text(AgentMessage::TaskStateChange(Box::new(r)).to_json().into())
    };
    loop {
        let msg = next_message(&mut ws).await;
        if matches!(&msg, ServerMessage::PayloadMessage { tasks, .. } if tasks.iter().any(|a| a.arn() == first)) {
            break;
        }
    }
    // Alone: nothing else is on its way to the agent, and the ack still comes.
    ws.send(report(1, &first)).await.unwrap();
    let ack = loop {
        if let ServerMessage::ReportAck { seq, task_arn } = next_message(&mut ws).await {
            break (seq, task_arn);
        }
    };
    assert_eq!((ack.0, ack.1.as_str()), (1, first.as_str()));

    // With the next assignment: both arrive (in one write when the ack was still waiting).
    ws.send(report(2, &first)).await.unwrap();
    let stop = client.stop_task().task(&first).send();
    stop.await.expect("stop");
    let mut order = Vec::new();
    while order.len() < 2 {
        match next_message(&mut ws).await {
            ServerMessage::ReportAck { seq, .. } => order.push(format!("ack {seq}")),
            ServerMessage::PayloadMessage { tasks, .. } if tasks.iter().any(|a| a.desired_status() == "STOPPED") => {
                order.push("stop".into())
            }
            _ => {}
        }
    }
    order.sort();
    assert_eq!(order, ["ack 2", "stop"]);
}

/// Starts a session for a freshly registered instance whose engine calls go through it.
async fn session_with_calls(
    server: &TestServer,
    dir: &std::path::Path,
) -> (flotilla_agent::session::AgentIdentity, flotilla_agent::calls::SessionCalls, mpsc::UnboundedSender<TaskReport>) {
    let creds = Credentials::new(&server.credentials.access_key_id, &server.credentials.secret_access_key);
    let api = ApiClient::new(&server.endpoint(), REGION, creds).unwrap();
    let (identity, _) = register(&api, &registration(dir)).await.expect("register");
    let (calls, inbox) = flotilla_agent::calls::SessionCalls::new();
    let (ev_tx, mut events) = mpsc::unbounded_channel();
    let (report_tx, reports) = mpsc::unbounded_channel();
    let cfg = SessionConfig { calls: Some(inbox), ..SessionConfig::default() };
    tokio::spawn(run_session(api, identity.clone(), cfg, ev_tx, reports));
    next_event(&mut events, |e| matches!(e, SessionEvent::Connected)).await;
    (identity, calls, report_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_asks_for_its_own_tasks_resources_only() {
    use flotilla_agent::calls::{CallError, ControlPlaneCalls};
    let server = TestServer::start().await;
    let client = server.client();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, calls_a, _reports_a) = session_with_calls(&server, dir_a.path()).await;
    let (_b, calls_b, _reports_b) = session_with_calls(&server, dir_b.path()).await;

    let secret = aws_sdk_ecs::types::Secret::builder().name("DB").value_from("/app/db").build().unwrap();
    client
        .register_task_definition()
        .family("vault")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("app")
                .image("flotilla/workload:latest")
                .memory(64)
                .secrets(secret)
                .build(),
        )
        .send()
        .await
        .expect("register");
    let plain = register_td(&client, "plain").await;
    let start = |family: String| {
        let client = client.clone();
        let instance = a.container_instance_arn.clone();
        async move {
            let out = client.start_task().task_definition(family).container_instances(instance).send().await.unwrap();
            out.tasks()[0].task_arn().unwrap().to_string()
        }
    };
    let vault = start("vault".into()).await;
    let plain = start(plain.family().unwrap().to_string()).await;

    // Another instance's agent is refused the task's resources.
    match calls_b.task_resources(&vault).await {
        Err(CallError::Refused { code, .. }) => assert_eq!(code, "AccessDeniedException"),
        other => panic!("instance B read instance A's task: {other:?}"),
    }
    // Its own agent gets them: none for a task without secrets; for one with secrets, on a
    // server that serves no secret store, ECS's error for a task that cannot start.
    let none = calls_a.task_resources(&plain).await.expect("resources");
    assert!(none.containers.is_empty() && none.failure.is_none(), "{none:?}");
    let failed = calls_a.task_resources(&vault).await.expect("resources").failure.expect("a failure");
    assert_eq!(failed.stop_code, "TaskFailedToStart");
    assert!(failed.reason.starts_with("ResourceInitializationError: unable to pull secrets or registry auth: "));
    // Log batches need the CloudWatch Logs extension, which this server does not have.
    let batch = flotilla_protocol::LogEventsBatch { task_arn: plain.clone(), ..Default::default() };
    assert!(matches!(calls_a.put_log_events(batch).await, Err(CallError::Refused { .. })));
}
