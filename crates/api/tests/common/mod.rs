//! The harness the end-to-end tests share: a real server on 127.0.0.1:0 over a real redb store
//! in a temporary directory, and clients that talk to it as users do (the official AWS SDK,
//! signing with SigV4, or raw HTTP for what SDKs will not send).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use flotilla_api::{AuthMode, RootCredentials, ServerConfig};
use tokio::sync::oneshot;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "000000000000";

pub struct TestServer {
    pub addr: SocketAddr,
    pub credentials: RootCredentials,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(AuthMode::Verify, tempfile::tempdir().expect("tempdir")).await
    }

    pub async fn start_with(auth: AuthMode, dir: tempfile::TempDir) -> TestServer {
        Self::start_configured(auth, dir, Default::default()).await
    }

    /// A server whose service controller uses `controller` (e.g. a short lost-agent grace).
    pub async fn start_configured(
        auth: AuthMode,
        dir: tempfile::TempDir,
        controller: flotilla_api::controller::Settings,
    ) -> TestServer {
        Self::start_full(auth, dir, controller, flotilla_api::reaper::DEFAULT_RETENTION).await
    }

    /// A server that forgets tasks stopped for longer than `retention`.
    pub async fn start_with_retention(retention: std::time::Duration) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_full(AuthMode::Verify, dir, Default::default(), retention).await
    }

    async fn start_full(
        auth: AuthMode,
        dir: tempfile::TempDir,
        controller: flotilla_api::controller::Settings,
        stopped_task_retention: std::time::Duration,
    ) -> TestServer {
        let credentials = RootCredentials {
            access_key_id: "AKIDFLOTILLATEST".into(),
            secret_access_key: "flotilla-test-secret-key-0123456789abcdef".into(),
        };
        let config = ServerConfig {
            auth,
            controller,
            stopped_task_retention,
            ..ServerConfig::new(dir.path().to_path_buf(), credentials.clone())
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(flotilla_api::serve(config, listener, async move {
            let _ = rx.await;
        }));
        let server = TestServer { addr, credentials, dir, stop: Some(tx), handle: Some(handle) };
        server.wait_healthy().await;
        server
    }

    /// A server whose capacity loop uses `capacity`, and its context, so a test can write the
    /// records other services own (Auto Scaling groups, hosts) straight into its store.
    pub async fn start_with_ctx(capacity: flotilla_api::capacity::Settings) -> (TestServer, flotilla_api::Ctx) {
        let dir = tempfile::tempdir().expect("tempdir");
        let credentials = RootCredentials {
            access_key_id: "AKIDFLOTILLATEST".into(),
            secret_access_key: "flotilla-test-secret-key-0123456789abcdef".into(),
        };
        let config = ServerConfig { capacity, ..ServerConfig::new(dir.path().to_path_buf(), credentials.clone()) };
        let ctx = flotilla_api::server::open(&config, flotilla_api::Clock::system()).await.expect("open");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let served = ctx.clone();
        let handle = tokio::spawn(async move {
            flotilla_api::server::serve_ctx(served, &config, listener, async move {
                let _ = rx.await;
            })
            .await
        });
        let server = TestServer { addr, credentials, dir, stop: Some(tx), handle: Some(handle) };
        server.wait_healthy().await;
        (server, ctx)
    }

    async fn wait_healthy(&self) {
        let url = format!("http://{}/health", self.addr);
        for _ in 0..200 {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("server did not become healthy");
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// An ECS client configured as a user would configure it from the export lines.
    pub fn client(&self) -> aws_sdk_ecs::Client {
        self.client_with(&self.credentials.access_key_id, &self.credentials.secret_access_key)
    }

    pub fn client_with(&self, akid: &str, secret: &str) -> aws_sdk_ecs::Client {
        let creds = aws_credential_types::Credentials::new(akid, secret, None, None, "flotilla-test");
        let conf = aws_sdk_ecs::Config::builder()
            .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
            .region(aws_sdk_ecs::config::Region::new(REGION))
            .endpoint_url(self.endpoint())
            .credentials_provider(creds)
            .retry_config(aws_sdk_ecs::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_ecs::Client::from_conf(conf)
    }

    /// Stops the server and waits for it to finish, returning the data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server result");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The error code an SDK call failed with.
pub fn code_of<E, R>(err: &aws_sdk_ecs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ecs::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    match err {
        aws_sdk_ecs::error::SdkError::ServiceError(s) => s.err().code().unwrap_or("<none>").to_string(),
        other => format!("<not a service error: {other:?}>"),
    }
}

/// Sends a raw, unsigned or hand-built request (for protocol tests).
pub async fn raw(
    addr: SocketAddr,
    target: Option<&str>,
    body: &[u8],
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let client = reqwest::Client::new();
    let mut req = client.post(format!("http://{addr}/")).body(body.to_vec());
    if let Some(t) = target {
        req = req.header("x-amz-target", format!("AmazonEC2ContainerServiceV20141113.{t}"));
    }
    req = req.header("content-type", "application/x-amz-json-1.1");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    (status, headers, text)
}

/// The error message an SDK call failed with ("" when there is none).
pub fn message_of<E, R>(err: &aws_sdk_ecs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ecs::error::ProvideErrorMetadata,
{
    match err {
        aws_sdk_ecs::error::SdkError::ServiceError(s) => s.err().message().unwrap_or("").to_string(),
        _ => String::new(),
    }
}

/// Asserts that an SDK call failed with `code` and returns its message.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug, E, R>(
    result: Result<T, aws_sdk_ecs::error::SdkError<E, R>>,
    code: &str,
) -> String
where
    E: aws_sdk_ecs::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    match result {
        Ok(v) => panic!("expected {code}, got success: {v:?}"),
        Err(e) => {
            assert_eq!(code_of(&e), code, "wrong error: {e:?}");
            message_of(&e)
        }
    }
}

/// A container as most tests need it: a small image with a hard memory limit.
pub fn container(name: &str) -> aws_sdk_ecs::types::ContainerDefinition {
    aws_sdk_ecs::types::ContainerDefinition::builder().name(name).image("nginx:latest").memory(128).build()
}

/// Registers a one-container EC2 task definition in `family` and returns it.
pub async fn register_td(client: &aws_sdk_ecs::Client, family: &str) -> aws_sdk_ecs::types::TaskDefinition {
    client
        .register_task_definition()
        .family(family)
        .container_definitions(container("web"))
        .send()
        .await
        .expect("register task definition")
        .task_definition
        .expect("taskDefinition")
}

/// Registers a container instance into `cluster` the way the agent does, with 2048 CPU units,
/// 4096 MiB, some reserved ports and two attributes; returns its ARN.
pub async fn register_instance(client: &aws_sdk_ecs::Client, cluster: &str) -> String {
    register_instance_with(client, cluster, instance_attributes()).await
}

pub fn instance_attributes() -> Vec<aws_sdk_ecs::types::Attribute> {
    use aws_sdk_ecs::types::Attribute;
    vec![
        Attribute::builder().name("ecs.capability.docker-remote-api.1.18").build().expect("attribute"),
        Attribute::builder().name("ecs.availability-zone").value("us-east-1a").build().expect("attribute"),
        Attribute::builder().name("ecs.os-type").value("linux").build().expect("attribute"),
    ]
}

pub fn instance_resources() -> Vec<aws_sdk_ecs::types::Resource> {
    use aws_sdk_ecs::types::Resource;
    vec![
        Resource::builder().name("CPU").r#type("INTEGER").integer_value(2048).build(),
        Resource::builder().name("MEMORY").r#type("INTEGER").integer_value(4096).build(),
        Resource::builder()
            .name("PORTS")
            .r#type("STRINGSET")
            .set_string_set_value(Some(vec!["22".into(), "2375".into(), "2376".into(), "51678".into()]))
            .build(),
        Resource::builder().name("PORTS_UDP").r#type("STRINGSET").set_string_set_value(Some(vec![])).build(),
    ]
}

pub async fn register_instance_with(
    client: &aws_sdk_ecs::Client,
    cluster: &str,
    attributes: Vec<aws_sdk_ecs::types::Attribute>,
) -> String {
    client
        .register_container_instance()
        .cluster(cluster)
        .set_total_resources(Some(instance_resources()))
        .set_attributes(Some(attributes))
        .version_info(
            aws_sdk_ecs::types::VersionInfo::builder()
                .agent_version("1.80.0")
                .agent_hash("abcdef0")
                .docker_version("DockerVersion: 24.0.5")
                .build(),
        )
        .send()
        .await
        .expect("register container instance")
        .container_instance
        .and_then(|ci| ci.container_instance_arn)
        .expect("containerInstanceArn")
}

/// Creates a cluster and returns its name.
pub async fn create_cluster(client: &aws_sdk_ecs::Client, name: &str) -> String {
    client.create_cluster().cluster_name(name).send().await.expect("create cluster");
    name.to_string()
}

/// Polls `probe` every 100 ms for up to 20 s until it yields `Some`.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Sends a request signed with SigV4 (by `flotilla_sigv4::sign`) but otherwise raw, so tests can
/// put any body on the wire past authentication.
pub async fn signed_raw(server: &TestServer, target: &str, body: &[u8]) -> (u16, reqwest::header::HeaderMap, String) {
    signed_raw_with(server, target, body, &[]).await
}

/// [`signed_raw`] with `extra` headers set before signing (and so signed when the signer signs them).
pub async fn signed_raw_with(
    server: &TestServer,
    target: &str,
    body: &[u8],
    extra: &[(&'static str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let uri: http::Uri = format!("http://{}/", server.addr).parse().expect("uri");
    let mut headers = http::HeaderMap::new();
    for (k, v) in extra {
        headers.insert(*k, v.parse().expect("header"));
    }
    headers.insert("x-amz-target", format!("AmazonEC2ContainerServiceV20141113.{target}").parse().expect("header"));
    headers.insert("content-type", "application/x-amz-json-1.1".parse().expect("header"));
    let creds = flotilla_sigv4::Credentials::new(
        server.credentials.access_key_id.clone(),
        server.credentials.secret_access_key.clone(),
    );
    let params = flotilla_sigv4::SigningParams {
        credentials: &creds,
        region: REGION,
        service: "ecs",
        time: std::time::SystemTime::now(),
    };
    flotilla_sigv4::sign(&http::Method::POST, &uri, &mut headers, body, &params).expect("sign");
    let client = reqwest::Client::new();
    let mut req = client.post(uri.to_string()).body(body.to_vec());
    for (k, v) in headers.iter() {
        req = req.header(k.as_str(), v.to_str().expect("ascii header"));
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    (status, headers, text)
}

/// Starts hollow agent `i` (the agent's real registration and session, simulated containers)
/// in `cluster` and `zone`, keeping its state under `dir`; it runs until `true` is sent on the
/// returned sender. Starting the same `i` again restarts it with the same identity.
pub fn start_hollow_agent(
    api: flotilla_agent::session::ApiClient,
    dir: &std::path::Path,
    cluster: &str,
    zone: &str,
    i: usize,
) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let base = flotilla_agent::session::RegistrationConfig {
        cluster: cluster.into(),
        data_dir: dir.to_path_buf(),
        availability_zone: zone.into(),
        instance_type: "flotilla.test".into(),
        attributes: vec![],
        cpu: Some(2048),
        memory: Some(4096),
        memory_reserved_mib: 0,
        network_modes: vec!["bridge".into(), "host".into(), "awsvpc".into(), "none".into()],
        agent_version: "test".into(),
        docker_version: "test".into(),
        state_file: "agent.json".into(),
        ec2_instance_id: None,
        gpus: Vec::new(),
    };
    let cfg = flotilla_agent::hollow::hollow_config(&base, i);
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn(async move {
        let _ = flotilla_agent::hollow::run_hollow(api, cfg, rx).await;
    });
    (tx, handle)
}

/// An agent API client for `server`, signing with its root key pair.
pub fn agent_api(server: &TestServer) -> flotilla_agent::session::ApiClient {
    let creds =
        flotilla_sigv4::Credentials::new(&server.credentials.access_key_id, &server.credentials.secret_access_key);
    flotilla_agent::session::ApiClient::new(&server.endpoint(), REGION, creds).unwrap()
}
