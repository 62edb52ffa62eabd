//! Bad input, at volume: 100,000 random and mutated request bodies and headers go through the
//! real router over a real store. None may panic the server or get a 500; every one gets a
//! modeled answer (a 200 with JSON, or a 400 with `__type`, `message` and the error headers).

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use flotilla_api::{AuthMode, Clock, RootCredentials, ServerConfig};
use flotilla_store::{RedbStore, Store};
use futures::StreamExt;
use http::Request;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tower::ServiceExt;

const TOTAL: usize = 100_000;
const SIGNED_SHARE: usize = 5_000;

/// Error codes the API may answer with: ECS's modeled exceptions and the protocol's own.
const KNOWN_CODES: &[&str] = &[
    "AccessDeniedException",
    "AttributeLimitExceededException",
    "ClientException",
    "ClusterContainsContainerInstancesException",
    "ClusterContainsServicesException",
    "ClusterContainsTasksException",
    "ClusterNotFoundException",
    "ConflictException",
    "InvalidParameterException",
    "LimitExceededException",
    "ResourceNotFoundException",
    "ServiceNotActiveException",
    "ServiceNotFoundException",
    "TargetNotFoundException",
    "UnsupportedFeatureException",
    "SerializationException",
    "UnknownOperationException",
    "MissingAuthenticationTokenException",
    "IncompleteSignatureException",
    "InvalidSignatureException",
    "UnrecognizedClientException",
];

fn corpus() -> Vec<(&'static str, Value)> {
    let container = json!({"name": "web", "image": "nginx", "memory": 128, "essential": true,
        "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp"}],
        "environment": [{"name": "A", "value": "1"}],
        "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 10, "retries": 3},
        "dependsOn": [], "mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}]});
    vec![
        (
            "CreateCluster",
            json!({"clusterName": "fuzz", "tags": [{"key": "k", "value": "v"}],
            "settings": [{"name": "containerInsights", "value": "enabled"}]}),
        ),
        ("DescribeClusters", json!({"clusters": ["default", "fuzz"], "include": ["STATISTICS", "TAGS"]})),
        ("ListClusters", json!({"maxResults": 5, "nextToken": "abc"})),
        ("DeleteCluster", json!({"cluster": "fuzz"})),
        (
            "UpdateClusterSettings",
            json!({"cluster": "default", "settings": [{"name": "containerInsights", "value": "disabled"}]}),
        ),
        (
            "RegisterTaskDefinition",
            json!({"family": "fuzz", "containerDefinitions": [container],
            "volumes": [{"name": "data", "host": {"sourcePath": "/tmp"}}], "networkMode": "bridge",
            "cpu": "256", "memory": "512", "requiresCompatibilities": ["EC2"]}),
        ),
        ("DescribeTaskDefinition", json!({"taskDefinition": "fuzz:1", "include": ["TAGS"]})),
        ("ListTaskDefinitions", json!({"familyPrefix": "fuzz", "status": "ACTIVE", "sort": "DESC", "maxResults": 10})),
        ("ListTaskDefinitionFamilies", json!({"familyPrefix": "f", "status": "ALL"})),
        ("DeregisterTaskDefinition", json!({"taskDefinition": "fuzz:1"})),
        ("DeleteTaskDefinitions", json!({"taskDefinitions": ["fuzz:1"]})),
        (
            "RegisterContainerInstance",
            json!({"cluster": "default", "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096},
            {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]}],
            "attributes": [{"name": "ecs.os-type", "value": "linux"}],
            "versionInfo": {"agentVersion": "1", "dockerVersion": "20"}}),
        ),
        ("DescribeContainerInstances", json!({"containerInstances": ["abc"]})),
        ("ListContainerInstances", json!({"status": "ACTIVE", "maxResults": 3})),
        ("UpdateContainerInstancesState", json!({"containerInstances": ["abc"], "status": "DRAINING"})),
        ("PutAttributes", json!({"attributes": [{"name": "x", "value": "y", "targetId": "abc"}]})),
        ("ListAttributes", json!({"targetType": "container-instance", "attributeName": "x"})),
        ("DescribeTasks", json!({"tasks": ["abc"], "include": ["TAGS"]})),
        ("ListTasks", json!({"family": "fuzz", "desiredStatus": "STOPPED", "startedBy": "me"})),
        ("StopTask", json!({"task": "abc", "reason": "fuzz"})),
        (
            "CreateService",
            json!({"serviceName": "svc", "taskDefinition": "fuzz", "desiredCount": 0,
            "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"}],
            "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 50,
                "deploymentCircuitBreaker": {"enable": true, "rollback": true}}, "clientToken": "t1"}),
        ),
        ("DescribeServices", json!({"services": ["svc"]})),
        ("UpdateService", json!({"service": "svc", "desiredCount": 0, "forceNewDeployment": true})),
        ("DeleteService", json!({"service": "svc", "force": true})),
        (
            "TagResource",
            json!({"resourceArn": "arn:aws:ecs:us-east-1:000000000000:cluster/default",
            "tags": [{"key": "a", "value": "b"}]}),
        ),
        ("ListTagsForResource", json!({"resourceArn": "arn:aws:ecs:us-east-1:000000000000:cluster/default"})),
        ("PutAccountSetting", json!({"name": "containerInsights", "value": "enabled"})),
        ("RunTask", json!({"taskDefinition": "fuzz", "count": 1})),
    ]
}

fn random_value(rng: &mut StdRng, depth: usize) -> Value {
    match rng.gen_range(0..12) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen::<f64>() * 1e300),
        4 => json!(-1),
        5 => json!(""),
        6 => json!("x".repeat(rng.gen_range(0..3000))),
        7 => json!("arn:aws:ecs:us-east-1:000000000000:cluster/\u{0}\u{ffff}/../"),
        8 if depth < 4 => Value::Array((0..rng.gen_range(0..4)).map(|_| random_value(rng, depth + 1)).collect()),
        9 if depth < 4 => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.gen_range(0..4) {
                m.insert(
                    ["name", "value", "key", "x", "containerPort"][rng.gen_range(0..5)].into(),
                    random_value(rng, depth + 1),
                );
            }
            Value::Object(m)
        }
        10 => json!(rng.gen_range(-70000..70000)),
        _ => json!(["ACTIVE", "DRAINING", "bridge", "awsvpc", "FARGATE", "CMD", "tcp", "binpack"][rng.gen_range(0..8)]),
    }
}

/// Replaces one randomly chosen node of `v` with a random value.
fn mutate_value(rng: &mut StdRng, v: &mut Value, depth: usize) {
    let here = depth > 0 && rng.gen_range(0..4) == 0;
    match v {
        Value::Object(m) if !m.is_empty() && !here => {
            let k = m.keys().nth(rng.gen_range(0..m.len())).cloned().expect("non-empty");
            mutate_value(rng, m.get_mut(&k).expect("present"), depth + 1)
        }
        Value::Array(a) if !a.is_empty() && !here => {
            let i = rng.gen_range(0..a.len());
            mutate_value(rng, &mut a[i], depth + 1)
        }
        _ => *v = random_value(rng, depth),
    }
}

fn random_body(rng: &mut StdRng, corpus: &[(&'static str, Value)]) -> (Option<String>, Vec<u8>) {
    let (op, base) = &corpus[rng.gen_range(0..corpus.len())];
    let target = match rng.gen_range(0..20) {
        0 => None,
        1 => Some("AmazonEC2ContainerServiceV20141113.NoSuchOperation".to_string()),
        2 => Some(format!("SomethingElse.{op}")),
        3 => {
            let all = flotilla_model::Operation::ALL;
            Some(format!("AmazonEC2ContainerServiceV20141113.{}", all[rng.gen_range(0..all.len())].name()))
        }
        _ => Some(format!("AmazonEC2ContainerServiceV20141113.{op}")),
    };
    let body = match rng.gen_range(0..10) {
        0 => (0..rng.gen_range(0..256)).map(|_| rng.gen::<u8>()).collect(),
        1 | 2 => {
            let mut b = serde_json::to_vec(base).expect("json");
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..b.len());
                match rng.gen_range(0..3) {
                    0 => b[i] = rng.gen(),
                    1 => b.truncate(i),
                    _ => b.insert(i, b"{}[]\",:0-e\\"[rng.gen_range(0..11)]),
                }
                if b.is_empty() {
                    break;
                }
            }
            b
        }
        3 => {
            let depth = rng.gen_range(100..400);
            let mut s = "[".repeat(depth);
            s.push_str(&"]".repeat(depth));
            format!("{{\"clusters\": {s}}}").into_bytes()
        }
        _ => {
            let mut v = base.clone();
            for _ in 0..rng.gen_range(1..4) {
                mutate_value(rng, &mut v, 0);
            }
            serde_json::to_vec(&v).expect("json")
        }
    };
    (target, body)
}

struct Checked {
    ok: usize,
    errors: std::collections::BTreeMap<String, usize>,
}

async fn send(
    router: Router,
    target: Option<String>,
    body: Vec<u8>,
    extra: Vec<(String, String)>,
) -> (u16, String, http::HeaderMap) {
    let mut req = Request::builder().method("POST").uri("/").header("host", "127.0.0.1:4580");
    if let Some(t) = target {
        req = req.header("x-amz-target", t);
    }
    for (k, v) in extra {
        req = req.header(k, v);
    }
    let req = req.body(Body::from(body)).expect("request");
    let resp = router.oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned(), headers)
}

fn check(status: u16, body: &str, headers: &http::HeaderMap, tally: &mut Checked) {
    assert!(headers.contains_key("x-amzn-requestid"), "no request id: {status} {body}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {body}"));
    match status {
        200 => {
            assert!(v.is_object(), "200 with a non-object: {body}");
            tally.ok += 1;
        }
        400 => {
            let code = v["__type"].as_str().unwrap_or_else(|| panic!("no __type: {body}"));
            assert!(v["message"].is_string(), "no message: {body}");
            assert!(KNOWN_CODES.contains(&code), "unmodeled error code {code}: {body}");
            assert_eq!(headers.get("x-amzn-errortype").and_then(|h| h.to_str().ok()), Some(code));
            *tally.errors.entry(code.to_string()).or_default() += 1;
        }
        other => panic!("status {other} for a bad request: {body}"),
    }
}

async fn router_with(auth: AuthMode, dir: &std::path::Path) -> Router {
    let config = ServerConfig {
        data_dir: dir.to_path_buf(),
        region: "us-east-1".into(),
        account_id: "000000000000".into(),
        auth,
        credentials: RootCredentials { access_key_id: "AKIDFUZZ".into(), secret_access_key: "fuzz-secret".into() },
        controller: Default::default(),
        stopped_task_retention: flotilla_api::reaper::DEFAULT_RETENTION,
        capacity: Default::default(),
        extensions: Default::default(),
        server_id: None,
        advertise_url: None,
        peer_tls: None,
    };
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.join("store.redb")).expect("store"));
    let ctx = flotilla_api::server::build_ctx(store, &config, Clock::system()).await.expect("ctx");
    flotilla_api::server::router(ctx, &config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_bad_requests_get_modeled_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let router = router_with(AuthMode::Disabled, dir.path()).await;
    let corpus = corpus();
    let mut rng = StdRng::seed_from_u64(0x_f107_111a);
    let requests: Vec<_> = (0..TOTAL - SIGNED_SHARE).map(|_| random_body(&mut rng, &corpus)).collect();
    let mut tally = Checked { ok: 0, errors: Default::default() };
    let mut answers =
        futures::stream::iter(requests).map(|(t, b)| send(router.clone(), t, b, Vec::new())).buffer_unordered(64);
    while let Some((status, body, headers)) = answers.next().await {
        check(status, &body, &headers, &mut tally);
    }

    // The signed path: random and mangled Authorization headers never get past SigV4.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let signed = router_with(AuthMode::Verify, dir2.path()).await;
    let mut auth_requests = Vec::new();
    for i in 0..SIGNED_SHARE {
        let (t, b) = random_body(&mut rng, &corpus);
        let auth = match i % 4 {
            0 => "AWS4-HMAC-SHA256 Credential=AKIDFUZZ/20261125/us-east-1/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature=00".to_string(),
            1 => (0..rng.gen_range(0..200)).map(|_| rng.gen_range(32u8..127) as char).collect(),
            2 => format!("AWS4-HMAC-SHA256 Credential={}", "/".repeat(rng.gen_range(0..10))),
            _ => String::new(),
        };
        let mut headers = vec![("x-amz-date".to_string(), "20261125T000000Z".to_string())];
        if !auth.is_empty() {
            headers.push(("authorization".into(), auth));
        }
        auth_requests.push((t, b, headers));
    }
    let mut answers =
        futures::stream::iter(auth_requests).map(|(t, b, h)| send(signed.clone(), t, b, h)).buffer_unordered(64);
    let mut signed_tally = Checked { ok: 0, errors: Default::default() };
    while let Some((status, body, headers)) = answers.next().await {
        check(status, &body, &headers, &mut signed_tally);
    }
    assert_eq!(signed_tally.ok, 0, "an unsigned or forged request was accepted");

    let total = tally.ok + tally.errors.values().sum::<usize>() + signed_tally.errors.values().sum::<usize>();
    assert_eq!(total, TOTAL);
    // The mutations must reach the decoders and handlers, not just the router's front door.
    for code in ["SerializationException", "InvalidParameterException", "UnknownOperationException"] {
        assert!(tally.errors.get(code).copied().unwrap_or(0) > 100, "too few {code}: {:?}", tally.errors);
    }
    assert!(tally.ok > 100, "too few requests were valid enough to succeed: {}", tally.ok);
    eprintln!("answers: {} ok, errors {:?}, signed path {:?}", tally.ok, tally.errors, signed_tally.errors);
}
