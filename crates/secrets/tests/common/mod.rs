//! A real control plane with the secrets extension on a loopback port (its clock movable, its
//! sweep frequent), and SigV4-signed JSON calls to SSM and Secrets Manager.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flotilla_api::{AuthMode, Clock, Ctx, RootCredentials, ServerConfig};
use flotilla_secrets::Keys;
use flotilla_sigv4::{Credentials, SigningParams};
use serde_json::Value;
use tokio::sync::oneshot;

const REGION: &str = "us-east-1";

pub struct Server {
    pub url: String,
    pub ctx: Ctx,
    pub keys: Keys,
    pub key_file: PathBuf,
    pub data_dir: PathBuf,
    pub config: ServerConfig,
    root: Credentials,
    /// Added to the system clock: tests move the server's time forward with it.
    pub offset_ms: Arc<AtomicI64>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_file = flotilla_secrets::key_file(None, dir.path());
        let (keys, created) = flotilla_secrets::open_keys(&key_file).expect("keys");
        assert!(created);
        let credentials = RootCredentials {
            access_key_id: "AKIDSECRETSTEST".into(),
            secret_access_key: "secrets-test-secret-0123456789abcdef".into(),
        };
        let config = ServerConfig {
            auth: AuthMode::Verify,
            extensions: flotilla_api::Extensions::new([flotilla_secrets::extension_with(
                keys.clone(),
                Duration::from_millis(50),
            )]),
            ..ServerConfig::new(dir.path().to_path_buf(), credentials.clone())
        };
        let offset_ms = Arc::new(AtomicI64::new(0));
        let offset = offset_ms.clone();
        let system = Clock::system();
        let clock = Clock::from_fn(move || system.now_ms() + offset.load(Ordering::SeqCst));
        let ctx = flotilla_api::server::open(&config, clock).await.expect("context");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let served = ctx.clone();
        let served_config = config.clone();
        let handle = tokio::spawn(async move {
            flotilla_api::server::serve_ctx(served, &served_config, listener, async move {
                let _ = rx.await;
            })
            .await
        });
        let root = Credentials::new(&credentials.access_key_id, &credentials.secret_access_key);
        Server {
            url,
            ctx,
            keys,
            key_file,
            data_dir: dir.path().to_path_buf(),
            config,
            root,
            offset_ms,
            stop: Some(tx),
            handle: Some(handle),
            _dir: dir,
        }
    }

    /// POSTs `op` to `service` (`ssm` or `secretsmanager`), signed.
    pub async fn raw(&self, service: &str, op: &str, body: &Value) -> (u16, Value) {
        let prefix = if service == "ssm" { "AmazonSSM" } else { "secretsmanager" };
        let body = body.to_string();
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
        headers.insert("x-amz-target", format!("{prefix}.{op}").parse().unwrap());
        let params = SigningParams { credentials: &self.root, region: REGION, service, time: SystemTime::now() };
        flotilla_sigv4::sign(&http::Method::POST, &self.url.parse().unwrap(), &mut headers, body.as_bytes(), &params)
            .expect("sign");
        let resp = reqwest::Client::new().post(&self.url).headers(headers).body(body).send().await.expect("send");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn ssm(&self, op: &str, body: Value) -> Value {
        let (status, out) = self.raw("ssm", op, &body).await;
        assert_eq!(status, 200, "{op} failed: {out}");
        out
    }

    pub async fn sm(&self, op: &str, body: Value) -> Value {
        let (status, out) = self.raw("secretsmanager", op, &body).await;
        assert_eq!(status, 200, "{op} failed: {out}");
        out
    }

    /// A call that must fail: its `__type` and message.
    pub async fn fail(&self, service: &str, op: &str, body: Value) -> (String, String) {
        let (status, out) = self.raw(service, op, &body).await;
        assert_eq!(status, 400, "{op} should have failed: {out}");
        (out["__type"].as_str().unwrap_or_default().into(), out["message"].as_str().unwrap_or_default().into())
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        self.handle.take().expect("running").await.expect("join").expect("served");
    }
}
