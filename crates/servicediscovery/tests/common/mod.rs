//! A real control plane with the Cloud Map extension on a loopback port, signed JSON calls to
//! it, and a DNS client (hickory-proto messages over tokio UDP and TCP sockets).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use flotilla_api::{AuthMode, Clock, Ctx, RootCredentials, ServerConfig};
use flotilla_sigv4::{Credentials, SigningParams};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const REGION: &str = "us-east-1";

pub struct Server {
    pub url: String,
    pub ctx: Ctx,
    pub root: Credentials,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start(auth: AuthMode) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let credentials = RootCredentials {
            access_key_id: "AKIDCLOUDMAPTEST".into(),
            secret_access_key: "cloudmap-test-secret-0123456789abcdef".into(),
        };
        let config = ServerConfig {
            auth,
            extensions: flotilla_api::Extensions::new([flotilla_servicediscovery::extension()]),
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

    /// POSTs a Cloud Map operation, signed for `servicediscovery` unless `signed` is false.
    pub async fn raw(&self, op: &str, body: &Value, signed: bool) -> (u16, Value) {
        let body = body.to_string();
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
        headers.insert("x-amz-target", format!("Route53AutoNaming_v20170314.{op}").parse().unwrap());
        if signed {
            let params = SigningParams {
                credentials: &self.root,
                region: REGION,
                service: "servicediscovery",
                time: SystemTime::now(),
            };
            flotilla_sigv4::sign(
                &http::Method::POST,
                &self.url.parse().unwrap(),
                &mut headers,
                body.as_bytes(),
                &params,
            )
            .expect("sign");
        }
        let resp = reqwest::Client::new().post(&self.url).headers(headers).body(body).send().await.expect("send");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A call that must succeed.
    pub async fn call(&self, op: &str, body: Value) -> Value {
        let (status, out) = self.raw(op, &body, true).await;
        assert_eq!(status, 200, "{op} failed: {out}");
        out
    }

    /// A call that must fail: its `__type`.
    pub async fn fail(&self, op: &str, body: Value) -> (String, Value) {
        let (status, out) = self.raw(op, &body, true).await;
        assert_eq!(status, 400, "{op} should have failed: {out}");
        (out["__type"].as_str().unwrap_or_default().to_string(), out)
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        self.handle.take().expect("running").await.expect("join").expect("served");
    }
}

pub fn query(name: &str, t: RecordType, edns: bool) -> Message {
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        q.set_edns(e);
    }
    q
}

pub async fn udp(server: SocketAddr, q: &Message) -> Message {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) =
        tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf)).await.expect("answer").unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, q.metadata.id);
    m
}

pub async fn tcp(server: SocketAddr, q: &Message) -> Message {
    let mut conn = tokio::net::TcpStream::connect(server).await.unwrap();
    let bytes = q.to_vec().unwrap();
    conn.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
    conn.write_all(&bytes).await.unwrap();
    let len = conn.read_u16().await.unwrap() as usize;
    let mut buf = vec![0u8; len];
    conn.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

/// The sorted IPv4 addresses of a message's answer section.
pub fn addresses(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// Asks until the A answer is `want` (the table follows the store's watch); fails after a
/// generous bound so a broken watch cannot hang the suite.
pub async fn await_addresses(dns: SocketAddr, name: &str, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    let mut last = Vec::new();
    for _ in 0..500 {
        last = addresses(&udp(dns, &query(name, RecordType::A, false)).await);
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name}: wanted {want:?}, still {last:?}");
}
