//! The CloudWatch Logs API on a real server: routing (signed for `logs`, or unsigned by its
//! target prefix), groups, streams, retention, PutLogEvents/GetLogEvents tokens,
//! FilterLogEvents paging and patterns, the agents' sink (idempotent per sequence) and the
//! retention sweep.

use std::time::SystemTime;

use flotilla_api::{AuthMode, Clock, Ctx, RootCredentials, ServerConfig};
use flotilla_protocol::{LogEvent, LogEventsBatch};
use flotilla_sigv4::{Credentials, SigningParams};
use serde_json::{json, Value};
use tokio::sync::oneshot;

struct Server {
    url: String,
    ctx: Ctx,
    root: Credentials,
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let credentials = RootCredentials {
            access_key_id: "AKIDLOGSTEST".into(),
            secret_access_key: "logs-test-secret-0123456789".into(),
        };
        let config = ServerConfig {
            auth: AuthMode::Verify,
            extensions: flotilla_api::Extensions::new([flotilla_cwlogs::extension()]),
            ..ServerConfig::new(dir.path().to_path_buf(), credentials.clone())
        };
        let ctx = flotilla_api::server::open(&config, Clock::system()).await.expect("context");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let (stop, rx) = oneshot::channel::<()>();
        let served = ctx.clone();
        let handle = tokio::spawn(async move {
            flotilla_api::server::serve_ctx(served, &config, listener, async move {
                let _ = rx.await;
            })
            .await
        });
        let root = Credentials::new(&credentials.access_key_id, &credentials.secret_access_key);
        Server { url, ctx, root, stop, handle, _dir: dir }
    }

    async fn raw(&self, op: &str, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
        headers.insert("x-amz-target", format!("Logs_20140328.{op}").parse().unwrap());
        let params =
            SigningParams { credentials: &self.root, region: "us-east-1", service: "logs", time: SystemTime::now() };
        flotilla_sigv4::sign(&http::Method::POST, &self.url.parse().unwrap(), &mut headers, body.as_bytes(), &params)
            .expect("sign");
        let resp = reqwest::Client::new().post(&self.url).headers(headers).body(body).send().await.expect("send");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn call(&self, op: &str, body: Value) -> Value {
        let (status, out) = self.raw(op, &body).await;
        assert_eq!(status, 200, "{op} failed: {out}");
        out
    }

    async fn fail(&self, op: &str, body: Value) -> (String, String) {
        let (status, out) = self.raw(op, &body).await;
        assert_eq!(status, 400, "{op} should have failed: {out}");
        (out["__type"].as_str().unwrap_or_default().into(), out["message"].as_str().unwrap_or_default().into())
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.handle.await.expect("join").expect("served");
    }
}

fn messages(out: &Value) -> Vec<String> {
    out["events"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap().to_string()).collect()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_streams_and_events_round_trip() {
    let s = Server::start().await;
    let g = json!({"logGroupName": "/ecs/web"});
    s.call("CreateLogGroup", g.clone()).await;
    assert_eq!(s.fail("CreateLogGroup", g.clone()).await.0, "ResourceAlreadyExistsException");
    let (code, msg) = s.fail("CreateLogGroup", json!({"logGroupName": "bad name"})).await;
    assert_eq!(code, "InvalidParameterException");
    assert!(msg.contains("'logGroupName'"), "{msg}");
    let (code, msg) = s.fail("PutRetentionPolicy", json!({"logGroupName": "/ecs/web", "retentionInDays": 2})).await;
    assert!(code == "InvalidParameterException" && msg.contains("retentionInDays"), "{msg}");
    s.call("PutRetentionPolicy", json!({"logGroupName": "/ecs/web", "retentionInDays": 7})).await;
    let groups = s.call("DescribeLogGroups", json!({"logGroupNamePrefix": "/ecs"})).await;
    assert_eq!(groups["logGroups"][0]["retentionInDays"], 7);
    assert!(groups["logGroups"][0]["arn"].as_str().unwrap().ends_with(":log-group:/ecs/web:*"));

    assert_eq!(
        s.fail("CreateLogStream", json!({"logGroupName": "/nope", "logStreamName": "a"})).await,
        ("ResourceNotFoundException".into(), "The specified log group does not exist.".into())
    );
    for name in ["b", "a"] {
        s.call("CreateLogStream", json!({"logGroupName": "/ecs/web", "logStreamName": name})).await;
    }
    let now = now_ms();
    let put = |stream: &str, from: i64, n: i64| {
        let events: Vec<Value> =
            (0..n).map(|i| json!({"timestamp": now + from + i, "message": format!("{stream}{}", from + i)})).collect();
        json!({"logGroupName": "/ecs/web", "logStreamName": stream, "logEvents": events})
    };
    let out = s.call("PutLogEvents", put("a", 0, 3)).await;
    assert!(out["nextSequenceToken"].is_string());
    s.call("PutLogEvents", put("a", 3, 2)).await;
    s.call("PutLogEvents", put("b", 10, 2)).await;

    let streams = s
        .call(
            "DescribeLogStreams",
            json!({"logGroupName": "/ecs/web", "orderBy": "LastEventTime", "descending": true, "limit": 1}),
        )
        .await;
    assert_eq!(streams["logStreams"][0]["logStreamName"], "b");
    assert_eq!(streams["logStreams"][0]["lastEventTimestamp"], now + 11);
    let next = s.call("DescribeLogStreams", json!({"logGroupName": "/ecs/web", "orderBy": "LastEventTime", "descending": true, "nextToken": streams["nextToken"]})).await;
    assert_eq!(next["logStreams"][0]["logStreamName"], "a");
    assert!(next.get("nextToken").is_none());

    // GetLogEvents: the tail by default, pages from the head, the same token once at the end.
    let tail = s.call("GetLogEvents", json!({"logGroupName": "/ecs/web", "logStreamName": "a", "limit": 2})).await;
    assert_eq!(messages(&tail), ["a3", "a4"]);
    let back = s
        .call(
            "GetLogEvents",
            json!({"logGroupName": "/ecs/web", "logStreamName": "a", "nextToken": tail["nextBackwardToken"]}),
        )
        .await;
    assert_eq!(messages(&back), ["a0", "a1", "a2"]);
    let head = s
        .call(
            "GetLogEvents",
            json!({"logGroupName": "/ecs/web", "logStreamName": "a", "startFromHead": true, "limit": 4}),
        )
        .await;
    assert_eq!(messages(&head), ["a0", "a1", "a2", "a3"]);
    let rest = s
        .call(
            "GetLogEvents",
            json!({"logGroupName": "/ecs/web", "logStreamName": "a", "nextToken": head["nextForwardToken"]}),
        )
        .await;
    assert_eq!(messages(&rest), ["a4"]);
    let end = s
        .call(
            "GetLogEvents",
            json!({"logGroupName": "/ecs/web", "logStreamName": "a", "nextToken": rest["nextForwardToken"]}),
        )
        .await;
    assert_eq!((messages(&end).len(), &end["nextForwardToken"]), (0, &rest["nextForwardToken"]));
    s.call("PutLogEvents", put("a", 5, 1)).await;
    let new = s
        .call(
            "GetLogEvents",
            json!({"logGroupName": "/ecs/web", "logStreamName": "a", "nextToken": rest["nextForwardToken"]}),
        )
        .await;
    assert_eq!(messages(&new), ["a5"]);

    // FilterLogEvents: interleaved by time, paged, patterns and time ranges.
    let all = s.call("FilterLogEvents", json!({"logGroupName": "/ecs/web", "interleaved": true})).await;
    assert_eq!(messages(&all), ["a0", "a1", "a2", "a3", "a4", "a5", "b10", "b11"]);
    assert_eq!(all["searchedLogStreams"].as_array().unwrap().len(), 2);
    let p1 = s.call("FilterLogEvents", json!({"logGroupName": "/ecs/web", "limit": 5})).await;
    let p2 =
        s.call("FilterLogEvents", json!({"logGroupName": "/ecs/web", "limit": 5, "nextToken": p1["nextToken"]})).await;
    assert_eq!([messages(&p1), messages(&p2)].concat(), messages(&all));
    assert!(p2.get("nextToken").is_none());
    let some = s
        .call("FilterLogEvents", json!({"logGroupName": "/ecs/web", "filterPattern": "?a1 ?b11", "startTime": now}))
        .await;
    assert_eq!(messages(&some), ["a1", "b11"]);
    assert_eq!(some["events"][1]["logStreamName"], "b");
    let ranged = s
        .call(
            "FilterLogEvents",
            json!({"logGroupName": "/ecs/web", "logStreamNames": ["a"], "startTime": now + 2, "endTime": now + 4}),
        )
        .await;
    assert_eq!(messages(&ranged), ["a2", "a3"]);

    s.call("DeleteLogStream", json!({"logGroupName": "/ecs/web", "logStreamName": "a"})).await;
    assert_eq!(
        s.fail("GetLogEvents", json!({"logGroupName": "/ecs/web", "logStreamName": "a"})).await.1,
        "The specified log stream does not exist."
    );
    s.call("DeleteLogGroup", g.clone()).await;
    assert_eq!(s.fail("DeleteLogGroup", g).await.0, "ResourceNotFoundException");
    let left = s.ctx.store.list("logs/").await.unwrap();
    assert!(left.kvs.is_empty(), "nothing is left behind: {:?}", left.kvs.iter().map(|kv| &kv.key).collect::<Vec<_>>());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_stores_each_agent_batch_once_and_retention_drops_old_batches() {
    let s = Server::start().await;
    let batch = |sequence: u64, ts: i64, lines: &[&str]| LogEventsBatch {
        task_arn: "arn:aws:ecs:us-east-1:0:task/c/1".into(),
        log_group: "/ecs/app".into(),
        log_stream: "web/app/1".into(),
        create_group: false,
        sequence,
        events: lines.iter().map(|m| LogEvent { timestamp: ts, message: m.to_string() }).collect(),
    };
    let e = flotilla_cwlogs::sink::put(&s.ctx, &batch(0, 1, &["x"])).await.unwrap_err();
    assert_eq!((e.code, e.message.as_str()), ("ResourceNotFoundException", "The specified log group does not exist."));
    let old = now_ms() - 3 * 86_400_000;
    let first = LogEventsBatch { create_group: true, ..batch(0, old, &["old"]) };
    flotilla_cwlogs::sink::put(&s.ctx, &first).await.unwrap();
    flotilla_cwlogs::sink::put(&s.ctx, &first).await.unwrap();
    flotilla_cwlogs::sink::put(&s.ctx, &batch(1, now_ms(), &["new"])).await.unwrap();
    let all = s.call("FilterLogEvents", json!({"logGroupName": "/ecs/app"})).await;
    assert_eq!(messages(&all), ["old", "new"], "a resent batch is stored once");

    assert_eq!(flotilla_cwlogs::retention::sweep(&s.ctx).await.unwrap(), 0, "no retention, nothing expires");
    s.call("PutRetentionPolicy", json!({"logGroupName": "/ecs/app", "retentionInDays": 1})).await;
    assert_eq!(flotilla_cwlogs::retention::sweep(&s.ctx).await.unwrap(), 1);
    let all = s.call("FilterLogEvents", json!({"logGroupName": "/ecs/app"})).await;
    assert_eq!(messages(&all), ["new"]);
    let streams = s.call("DescribeLogStreams", json!({"logGroupName": "/ecs/app"})).await;
    assert_eq!(streams["logStreams"][0]["storedBytes"], 3 + 26);
    s.stop().await;
}
