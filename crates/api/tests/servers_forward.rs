//! Two servers over one store. An agent that moves from one to the other stays connected when its
//! old session ends. An agent's session is on server B, and a log read asked of server A
//! comes back, streamed through B (`flotilla_api::servers::forward`), as a `follow` keeps going.
//!
//! In the log test B is a whole server (`serve_ctx`) and A serves `GET /v1/logs` through the same handler with
//! forwarding switched on. The agent is a raw websocket session signed as the agent signs it,
//! answering log reads itself, so the test needs no container runtime.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, Method, Uri};
use common::*;
use flotilla_agent::session::{register, ApiClient, RegistrationConfig};
use flotilla_api::auth::Authenticator;
use flotilla_api::gateway::Sessions;
use flotilla_api::servers::forward::{Peers, FORWARDED_BY};
use flotilla_api::servers::{self, ServerInfo};
use flotilla_api::{Clock, Ctx, RootCredentials, ServerConfig};
use flotilla_protocol::{AgentMessage, LogEntry, LogStream, LogsBatch, ServerMessage};
use flotilla_sigv4::{Credentials, SigningParams};
use flotilla_store::{MemoryStore, Store};
use futures::{SinkExt, StreamExt};
use tokio::sync::{oneshot, Notify};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(20);

fn credentials() -> RootCredentials {
    RootCredentials {
        access_key_id: "AKIDFLOTILLATEST".into(),
        secret_access_key: "flotilla-test-secret-key-0123456789abcdef".into(),
    }
}

fn enc(v: &str) -> String {
    v.replace(':', "%3A").replace('/', "%2F")
}

/// A whole server (the API and agent sessions) over `store`, on a port of its own.
async fn full_server(store: Arc<dyn Store>, dir: &std::path::Path) -> (FullServer, Ctx) {
    let config = ServerConfig::new(dir.to_path_buf(), credentials());
    let ctx = flotilla_api::server::build_ctx(store, &config, Clock::system()).await.expect("ctx b");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, rx) = oneshot::channel::<()>();
    let served = ctx.clone();
    tokio::spawn(async move {
        flotilla_api::server::serve_ctx(served, &config, listener, async move {
            let _ = rx.await;
        })
        .await
    });
    (FullServer { addr, _stop: stop }, ctx)
}

struct FullServer {
    addr: std::net::SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// Server A: `GET /v1/logs` over `store`, forwarding to the server holding a session.
async fn server_a(store: Arc<dyn Store>, dir: &std::path::Path) -> std::net::SocketAddr {
    let config = ServerConfig::new(dir.to_path_buf(), credentials());
    let ctx = flotilla_api::server::build_ctx(store.clone(), &config, Clock::system()).await.expect("ctx a");
    let auth = Arc::new(Authenticator::new(REGION, credentials(), store));
    let peers = Peers::new(&credentials(), REGION, None).expect("peers");
    let sessions = Arc::new(Sessions::new("server-a".into()).with_peers(peers));
    let router = axum::Router::new().route(
        flotilla_api::logs_api::LOGS_PATH,
        axum::routing::get(move |m: Method, u: Uri, h: HeaderMap| {
            let (ctx, sessions, auth) = (ctx.clone(), sessions.clone(), auth.clone());
            async move { flotilla_api::logs_api::get_logs(ctx, &sessions, Some(&auth), &m, &u, &h).await }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// A signed GET, as `flotilla logs` sends it, with `extra` headers.
async fn get(url: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let creds = Credentials::new(credentials().access_key_id, credentials().secret_access_key);
    let params = SigningParams { credentials: &creds, region: REGION, service: "ecs", time: SystemTime::now() };
    let mut headers = http::HeaderMap::new();
    flotilla_sigv4::sign(&http::Method::GET, &url.parse().unwrap(), &mut headers, b"", &params).unwrap();
    let mut req = reqwest::Client::new().get(url).headers(headers);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.expect("answer")
}

type RawSession = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The agent's session of `instance_arn` on the server at `addr`, signed with the root pair.
async fn session(addr: std::net::SocketAddr, instance_arn: &str) -> RawSession {
    let cluster = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/default");
    let url = format!(
        "ws://{addr}{}?cluster={}&containerInstance={}&agentVersion=test",
        flotilla_protocol::AGENT_WS_PATH,
        enc(&cluster),
        enc(instance_arn)
    );
    let creds = Credentials::new(credentials().access_key_id, credentials().secret_access_key);
    let params = SigningParams { credentials: &creds, region: REGION, service: "ecs", time: SystemTime::now() };
    let mut headers = http::HeaderMap::new();
    flotilla_sigv4::sign(&http::Method::GET, &url.parse().unwrap(), &mut headers, b"", &params).unwrap();
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
    req.headers_mut().extend(headers);
    tokio_tungstenite::connect_async(req).await.expect("signed session").0
}

fn registration(dir: &std::path::Path) -> RegistrationConfig {
    RegistrationConfig {
        cluster: "default".into(),
        data_dir: dir.to_path_buf(),
        availability_zone: "us-east-1a".into(),
        instance_type: "flotilla.test".into(),
        attributes: vec![],
        cpu: Some(2048),
        memory: Some(4096),
        memory_reserved_mib: 0,
        network_modes: vec!["bridge".into(), "host".into(), "none".into()],
        agent_version: "test".into(),
        docker_version: "test".into(),
        state_file: "agent.json".into(),
        ec2_instance_id: None,
        gpus: Vec::new(),
    }
}

fn line(seq: u64) -> LogEntry {
    LogEntry::new(seq, 1_000 + seq as i64, "web".into(), LogStream::Stdout, format!("line {seq}"))
}

/// Plays the agent: answers the first log read for `task_arn` with lines 1 and 2, then, once
/// `more` is notified, line 3 and the end.
async fn agent(mut ws: RawSession, task_arn: String, more: Arc<Notify>) {
    let send = |batch: LogsBatch| Message::Text(serde_json::to_string(&AgentMessage::LogsBatch(batch)).unwrap().into());
    while let Some(Ok(frame)) = ws.next().await {
        let Message::Text(text) = frame else { continue };
        let Ok(ServerMessage::LogsRequest(req)) = serde_json::from_str::<ServerMessage>(&text) else { continue };
        assert_eq!(req.task_arn, task_arn);
        assert!(req.follow, "the follow reaches the agent");
        let id = req.request_id.clone();
        ws.send(send(LogsBatch { request_id: id.clone(), lines: vec![], done: false, error: None })).await.unwrap();
        ws.send(send(LogsBatch { request_id: id.clone(), lines: vec![line(1), line(2)], done: false, error: None }))
            .await
            .unwrap();
        more.notified().await;
        ws.send(send(LogsBatch { request_id: id, lines: vec![line(3)], done: true, error: None })).await.unwrap();
        // Stay connected until the test ends.
        while let Some(Ok(_)) = ws.next().await {}
        return;
    }
}

fn parse(lines: &str) -> Vec<LogEntry> {
    lines.lines().map(|l| serde_json::from_str(l).expect("a log line")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_read_asked_of_one_server_reaches_the_agent_whose_session_is_on_another() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (b, ctx_b) = full_server(store.clone(), dir_b.path()).await;
    let a = server_a(store.clone(), dir_a.path()).await;
    let client = {
        let conf = aws_sdk_ecs::Config::builder()
            .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
            .region(aws_sdk_ecs::config::Region::new(REGION))
            .endpoint_url(format!("http://{}", b.addr))
            .credentials_provider(aws_credential_types::Credentials::new(
                credentials().access_key_id,
                credentials().secret_access_key,
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_ecs::Client::from_conf(conf)
    };

    // The agent's session is on B; B is registered (and kept live) under the id its session
    // recorded.
    register_td(&client, "web").await;
    let agent_dir = tempfile::tempdir().unwrap();
    let creds = Credentials::new(credentials().access_key_id, credentials().secret_access_key);
    let api = ApiClient::new(&format!("http://{}", b.addr), REGION, creds).unwrap();
    let (identity, _) = register(&api, &registration(agent_dir.path())).await.expect("register");
    let instance = identity.container_instance_arn;
    let ws = session(b.addr, &instance).await;
    let b_id = eventually("B records the session", || async {
        let key = flotilla_api::state::keys::instance("default", instance.rsplit('/').next()?);
        ctx_b.caught_up(ctx_b.store.revision()).await.ok()?;
        let ix = ctx_b.cache.read();
        ix.instances.get(&key)?.value.session_server.clone()
    })
    .await;
    let info = ServerInfo::new(&b_id, &format!("http://{}", b.addr), ctx_b.clock.now_ms());
    servers::beat(&ctx_b, &info).await.unwrap();
    let heartbeat = tokio::spawn(servers::heartbeat(ctx_b.clone(), info));

    let out = client.run_task().task_definition("web").send().await.expect("run task");
    let task =
        out.tasks().first().unwrap_or_else(|| panic!("placed: {:?}", out.failures())).task_arn().unwrap().to_string();
    let more = Arc::new(Notify::new());
    tokio::spawn(agent(ws, task.clone(), more.clone()));

    // A holds no session: the read goes to B, and the lines stream back before the end.
    let url = format!("http://{a}/v1/logs?task={}&follow=true", enc(&task));
    let mut resp = get(&url, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let mut got = String::new();
    tokio::time::timeout(WAIT, async {
        while parse(&got).len() < 2 {
            let chunk = resp.chunk().await.expect("body").expect("more body");
            got.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .expect("the first lines arrive while the read follows");
    more.notify_one();
    while let Some(chunk) = tokio::time::timeout(WAIT, resp.chunk()).await.expect("the end arrives").expect("body") {
        got.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(parse(&got), vec![line(1), line(2), line(3)]);

    // A read that was already forwarded is never forwarded again.
    let resp = get(&url, &[(FORWARDED_BY, "elsewhere")]).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-amzn-errortype"], "ClientException");
    assert!(resp.text().await.unwrap().contains("is not connected"));

    // An unsigned read is refused before anything is forwarded.
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_ne!(resp.headers()["x-amzn-errortype"], "ClientException");

    // With B gone from the registry, A does not forward: the agent is not connected to it.
    heartbeat.abort();
    let _ = heartbeat.await;
    servers::withdraw(&ctx_b, &b_id).await.unwrap();
    let resp = get(&url, &[]).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("is not connected"));
}

/// The instance's record as `ctx` sees it once caught up: connected, and the session's server.
async fn presence(ctx: &Ctx, instance_arn: &str) -> Option<(bool, Option<String>)> {
    let key = flotilla_api::state::keys::instance("default", instance_arn.rsplit('/').next()?);
    ctx.caught_up(ctx.store.revision()).await.ok()?;
    let ix = ctx.cache.read();
    let rec = &ix.instances.get(&key)?.value;
    Some((rec.instance.agent_connected == Some(true), rec.session_server.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_moves_to_another_server_stays_connected_when_its_old_session_ends() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, ctx_a) = full_server(store.clone(), dir_a.path()).await;
    let (b, ctx_b) = full_server(store.clone(), dir_b.path()).await;
    let agent_dir = tempfile::tempdir().unwrap();
    let creds = Credentials::new(credentials().access_key_id, credentials().secret_access_key);
    let api = ApiClient::new(&format!("http://{}", a.addr), REGION, creds).unwrap();
    let (identity, _) = register(&api, &registration(agent_dir.path())).await.expect("register");
    let instance = identity.container_instance_arn;

    let on_a = session(a.addr, &instance).await;
    let a_id = eventually("A records the session", || async { presence(&ctx_b, &instance).await?.1 }).await;
    let on_b = session(b.addr, &instance).await;
    let b_id =
        eventually("B records the session", || async { presence(&ctx_a, &instance).await?.1.filter(|s| *s != a_id) })
            .await;
    // A's session ends after the agent moved: A leaves the instance to B.
    drop(on_a);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(presence(&ctx_a, &instance).await, Some((true, Some(b_id))));
    // B's session end does disconnect it.
    drop(on_b);
    eventually("B's session end disconnects the agent", || async {
        (presence(&ctx_a, &instance).await? == (false, None)).then_some(())
    })
    .await;
}
