//! A real server with the ELBv2 extension on 127.0.0.1:0, and signed query-protocol requests to
//! it over HTTP, for the integration tests.

#![allow(dead_code)]

use std::time::SystemTime;

use flotilla_api::{AuthMode, Clock, Ctx, RootCredentials, ServerConfig};
use flotilla_sigv4::{Credentials, SigningParams};
use flotilla_store::{Op, Txn};
use tokio::sync::oneshot;

pub const REGION: &str = "us-east-1";

pub struct Server {
    pub url: String,
    pub ctx: Ctx,
    root: Credentials,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// One answer: its HTTP status and body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// The text of every `<tag>` element, in document order.
    pub fn all(&self, tag: &str) -> Vec<String> {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        let mut out = Vec::new();
        let mut rest = self.body.as_str();
        while let Some(i) = rest.find(&open) {
            rest = &rest[i + open.len()..];
            let Some(j) = rest.find(&close) else { break };
            out.push(rest[..j].to_string());
            rest = &rest[j + close.len()..];
        }
        out
    }

    /// The text of the first `<tag>` element.
    pub fn one(&self, tag: &str) -> String {
        self.all(tag).into_iter().next().unwrap_or_else(|| panic!("no <{tag}> in {}", self.body))
    }

    /// The error code, asserting the answer is a 400 ErrorResponse.
    pub fn code(&self) -> String {
        assert_eq!(self.status, 400, "{}", self.body);
        assert!(
            self.body
                .starts_with("<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\">"),
            "{}",
            self.body
        );
        self.one("Code")
    }

    pub fn ok(self) -> Answer {
        assert_eq!(self.status, 200, "{}", self.body);
        self
    }
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(AuthMode::Verify).await
    }

    pub async fn start_with(auth: AuthMode) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let credentials = RootCredentials {
            access_key_id: "AKIDELBTEST".into(),
            secret_access_key: "elb-test-secret-0123456789abcdef".into(),
        };
        let config = ServerConfig {
            auth,
            extensions: flotilla_api::Extensions::new([flotilla_elbv2::api::extension()]),
            ..ServerConfig::new(dir.path().to_path_buf(), credentials.clone())
        };
        let ctx = flotilla_api::server::open(&config, Clock::system()).await.expect("context");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let served = ctx.clone();
        let handle = tokio::spawn(async move {
            flotilla_api::server::serve_ctx(served, &config, listener, async move {
                let _ = rx.await;
            })
            .await
        });
        let root = Credentials::new(&credentials.access_key_id, &credentials.secret_access_key);
        Server { url, ctx, root, stop: Some(tx), handle: Some(handle), _dir: dir }
    }

    /// POSTs a form body signed for `elasticloadbalancing`.
    pub async fn raw(&self, body: &str) -> Answer {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/x-www-form-urlencoded".parse().unwrap());
        let params = SigningParams {
            credentials: &self.root,
            region: REGION,
            service: "elasticloadbalancing",
            time: SystemTime::now(),
        };
        flotilla_sigv4::sign(&http::Method::POST, &self.url.parse().unwrap(), &mut headers, body.as_bytes(), &params)
            .expect("sign");
        let resp =
            reqwest::Client::new().post(&self.url).headers(headers).body(body.to_string()).send().await.expect("send");
        Answer { status: resp.status().as_u16(), body: resp.text().await.expect("body") }
    }

    /// POSTs a form body unsigned (servers with authentication disabled route it by its action).
    pub async fn unsigned(&self, body: &str) -> Answer {
        let resp = reqwest::Client::new()
            .post(&self.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .await
            .expect("send");
        Answer { status: resp.status().as_u16(), body: resp.text().await.expect("body") }
    }

    /// Calls `action` (version 2015-12-01) with `params`, form-encoding their values.
    pub async fn call(&self, action: &str, params: &[(&str, &str)]) -> Answer {
        let mut body = format!("Action={action}&Version=2015-12-01");
        for (k, v) in params {
            body.push('&');
            body.push_str(k);
            body.push('=');
            body.extend(form_urlencoded::byte_serialize(v.as_bytes()));
        }
        self.raw(&body).await
    }

    pub async fn put<T: serde::Serialize>(&self, key: &str, value: &T) {
        let txn = Txn::new().then(Op::put(key, serde_json::to_vec(value).unwrap()));
        self.ctx.commit(txn).await.expect("commit");
    }

    pub async fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let kv = self.ctx.store.get(key).await.expect("get")?;
        Some(serde_json::from_slice(&kv.value).expect("record"))
    }

    pub async fn keys_under(&self, prefix: &str) -> Vec<String> {
        self.ctx.store.list(prefix).await.expect("list").kvs.into_iter().map(|kv| kv.key.clone()).collect()
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        self.handle.take().expect("running").await.expect("join").expect("served");
    }

    /// An application load balancer over the default VPC's subnets: its ARN.
    pub async fn alb(&self, name: &str) -> String {
        self.call("CreateLoadBalancer", &[("Name", name)]).await.ok().one("LoadBalancerArn")
    }

    /// A target group: its ARN.
    pub async fn target_group(&self, name: &str, protocol: &str, target_type: &str) -> String {
        self.call(
            "CreateTargetGroup",
            &[("Name", name), ("Protocol", protocol), ("Port", "80"), ("TargetType", target_type)],
        )
        .await
        .ok()
        .one("TargetGroupArn")
    }

    /// A listener on `port` forwarding to `tg`: its ARN.
    pub async fn forward_listener(&self, lb: &str, protocol: &str, port: &str, tg: &str) -> String {
        self.call(
            "CreateListener",
            &[
                ("LoadBalancerArn", lb),
                ("Protocol", protocol),
                ("Port", port),
                ("DefaultActions.member.1.Type", "forward"),
                ("DefaultActions.member.1.TargetGroupArn", tg),
            ],
        )
        .await
        .ok()
        .one("ListenerArn")
    }
}
