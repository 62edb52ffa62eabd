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
        let credentials = RootCredentials {
            access_key_id: "AKIDFLOTILLATEST".into(),
            secret_access_key: "flotilla-test-secret-key-0123456789abcdef".into(),
        };
        let config = ServerConfig {
            data_dir: dir.path().to_path_buf(),
            region: REGION.into(),
            account_id: ACCOUNT.into(),
            auth,
            credentials: credentials.clone(),
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
    E: aws_sdk_ecs::error::ProvideErrorMetadata,
{
    match err {
        aws_sdk_ecs::error::SdkError::ServiceError(s) => s.err().code().unwrap_or("<none>").to_string(),
        other => format!("<not a service error: {other:?}>"),
    }
}

/// Sends a raw, unsigned or hand-built request (for protocol tests).
pub async fn raw(addr: SocketAddr, target: Option<&str>, body: &[u8], headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, String) {
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
