//! Join tokens end to end: the root principal mints, lists and revokes them; an agent that joins
//! with one gets a key pair that opens its own instance's session and nothing else (no ECS call,
//! no other instance's session), which stops working when the instance is deregistered; revoked,
//! expired and forged tokens join nothing, and tokens survive a restart.

mod common;

use std::time::Duration;

use common::*;
use flotilla_agent::session::{
    enroll, run_session, AgentIdentity, ApiClient, RegistrationConfig, SessionConfig, SessionEvent,
};
use flotilla_sigv4::Credentials;
use tokio::sync::mpsc;

fn registration(dir: &std::path::Path, cluster: &str) -> RegistrationConfig {
    RegistrationConfig {
        cluster: cluster.into(),
        data_dir: dir.to_path_buf(),
        availability_zone: "us-east-1a".into(),
        instance_type: "flotilla.test".into(),
        attributes: Vec::new(),
        cpu: Some(1024),
        memory: Some(2048),
        memory_reserved_mib: 0,
        network_modes: vec!["bridge".into()],
        agent_version: "test".into(),
        docker_version: "test".into(),
        state_file: "agent.json".into(),
        ec2_instance_id: None,
        gpus: Vec::new(),
    }
}

/// A `/v1/tokens` request signed with `creds`: (status, JSON body).
async fn tokens_call(
    server: &TestServer,
    creds: &Credentials,
    method: http::Method,
    pq: &str,
) -> (u16, serde_json::Value) {
    let url = format!("http://{}{pq}", server.addr);
    let mut headers = http::HeaderMap::new();
    let params = flotilla_sigv4::SigningParams {
        credentials: creds,
        region: REGION,
        service: "ecs",
        time: std::time::SystemTime::now(),
    };
    flotilla_sigv4::sign(&method, &url.parse().unwrap(), &mut headers, b"", &params).unwrap();
    let resp = reqwest::Client::new().request(method, &url).headers(headers).send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON"))
}

fn root(server: &TestServer) -> Credentials {
    Credentials::new(&server.credentials.access_key_id, &server.credentials.secret_access_key)
}

async fn mint(server: &TestServer, cluster: &str, ttl: u64) -> (String, String) {
    let (status, v) = tokens_call(
        server,
        &root(server),
        http::Method::POST,
        &format!("/v1/tokens?cluster={cluster}&ttlSeconds={ttl}"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    (v["id"].as_str().unwrap().to_string(), v["token"].as_str().unwrap().to_string())
}

/// Joins with `token` from a fresh data directory: the agent's client (signing with its own
/// key pair) and identity, or the error code.
async fn join(
    server: &TestServer,
    dir: &std::path::Path,
    cluster: &str,
    token: &str,
) -> Result<(ApiClient, AgentIdentity), String> {
    let bare = ApiClient::new(&server.endpoint(), REGION, Credentials::new("", "")).unwrap();
    enroll(&bare, &registration(dir, cluster), Some(token)).await.map_err(|e| e.to_string())
}

/// Opens a session as `identity` with `client`'s key: Ok once connected, Err(body) if refused.
async fn open_session(client: &ApiClient, identity: &AgentIdentity) -> Result<(), String> {
    let (ev_tx, mut events) = mpsc::unbounded_channel();
    let (_reports_tx, reports) = mpsc::unbounded_channel();
    let session = tokio::spawn(run_session(client.clone(), identity.clone(), SessionConfig::default(), ev_tx, reports));
    let out = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await.expect("session ended") {
                SessionEvent::Connected => return Ok(()),
                SessionEvent::Rejected(body) => return Err(body),
                _ => {}
            }
        }
    })
    .await
    .expect("connected or rejected within 20 s");
    session.abort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_agent_opens_its_own_session_and_nothing_else() {
    let server = TestServer::start().await;
    let admin = server.client();
    create_cluster(&admin, "prod").await;
    let (_, token) = mint(&server, "prod", 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, identity) = join(&server, dir.path(), "prod", &token).await.expect("join");
    assert!(identity.container_instance_arn.contains(":container-instance/prod/"), "{identity:?}");
    assert!(agent.credentials().access_key_id.starts_with("FLTI"));

    // The key pair is kept, readable by the agent's user only, and a restart needs no token.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let file = dir.path().join(flotilla_agent::session::join::CREDENTIALS_FILE);
        assert_eq!(std::fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let bare = ApiClient::new(&server.endpoint(), REGION, Credentials::new("", "")).unwrap();
    let (again, same) = enroll(&bare, &registration(dir.path(), "prod"), None).await.expect("restart");
    assert_eq!((again.credentials(), &same), (agent.credentials(), &identity));

    open_session(&agent, &identity).await.expect("its own session");

    // No ECS call: not even a read, let alone CreateCluster.
    let as_agent = server.client_with(&agent.credentials().access_key_id, &agent.credentials().secret_access_key);
    expect_code(as_agent.create_cluster().cluster_name("evil").send().await, "AccessDeniedException");
    expect_code(as_agent.list_container_instances().cluster("prod").send().await, "AccessDeniedException");
    let (status, v) = tokens_call(&server, agent.credentials(), http::Method::POST, "/v1/tokens?cluster=prod").await;
    assert_eq!((status, v["__type"].as_str()), (400, Some("AccessDeniedException")), "{v}");

    // Not another instance's session.
    let other_arn = register_instance(&admin, "prod").await;
    let other = AgentIdentity { cluster_arn: identity.cluster_arn.clone(), container_instance_arn: other_arn };
    let refused = open_session(&agent, &other).await.expect_err("another instance's session");
    assert!(refused.contains("AccessDeniedException"), "{refused}");

    // Deregistering the instance revokes its key.
    admin
        .deregister_container_instance()
        .cluster("prod")
        .container_instance(&identity.container_instance_arn)
        .force(true)
        .send()
        .await
        .expect("deregister");
    let refused = open_session(&agent, &identity).await.expect_err("a deregistered instance's session");
    assert!(refused.contains("AccessDeniedException") && refused.contains("deregistered"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_expired_and_forged_tokens_join_nothing_and_tokens_survive_a_restart() {
    let server = TestServer::start().await;
    let (revoked_id, revoked) = mint(&server, "default", 3600).await;
    let (_, expiring) = mint(&server, "default", 1).await;
    let (kept_id, kept) = mint(&server, "default", 3600).await;

    let (status, v) =
        tokens_call(&server, &root(&server), http::Method::DELETE, &format!("/v1/tokens?id={revoked_id}")).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("REVOKED")), "{v}");
    let dir = tempfile::tempdir().unwrap();
    let err = join(&server, dir.path(), "default", &revoked).await.err().expect("refused");
    assert!(err.contains("AccessDeniedException") && err.contains("revoked"), "{err}");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = join(&server, dir.path(), "default", &expiring).await.err().expect("refused");
    assert!(err.contains("AccessDeniedException") && err.contains("expired"), "{err}");

    // A token moved to another cluster, or signed with another key, is not valid.
    create_cluster(&server.client(), "prod").await;
    let moved = kept.replace(".default.", ".prod.");
    let err = join(&server, dir.path(), "prod", &moved).await.err().expect("refused");
    assert!(err.contains("AccessDeniedException"), "{err}");
    // Nor does a token join a cluster other than its own.
    let err = join(&server, dir.path(), "prod", &kept).await.err().expect("refused");
    assert!(err.contains("AccessDeniedException"), "{err}");

    let (_, v) = tokens_call(&server, &root(&server), http::Method::GET, "/v1/tokens").await;
    let status_of = |v: &serde_json::Value, id: &str| {
        v["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .map(|t| t["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status_of(&v, &revoked_id).as_deref(), Some("REVOKED"));
    assert_eq!(status_of(&v, &kept_id).as_deref(), Some("ACTIVE"));
    assert!(v["tokens"].as_array().unwrap().iter().all(|t| t.get("token").is_none()), "tokens are never shown again");

    // After a restart the records are still there: the revoked token stays revoked, the other joins.
    let data = server.stop().await;
    let server = TestServer::start_with(flotilla_api::AuthMode::Verify, data).await;
    let (_, v) = tokens_call(&server, &root(&server), http::Method::GET, "/v1/tokens").await;
    assert_eq!(status_of(&v, &revoked_id).as_deref(), Some("REVOKED"));
    let err = join(&server, dir.path(), "default", &revoked).await.err().expect("refused");
    assert!(err.contains("revoked"), "{err}");
    let (agent, identity) = join(&server, dir.path(), "default", &kept).await.expect("join after a restart");
    open_session(&agent, &identity).await.expect("its session after a restart");
}
