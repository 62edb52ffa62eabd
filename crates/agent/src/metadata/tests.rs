//! The metadata endpoint against the fake runtime: the JSON shapes, and that a token opens its
//! own task and nothing else.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use flotilla_model::{Container, ContainerDefinition, Task, TaskDefinition};
use flotilla_protocol::TaskAssignment;
use serde_json::Value;

use super::shape::rfc3339;
use super::*;
use crate::engine::record::TaskRecord;
use crate::engine::status::ContainerStatus;
use crate::runtime::fake::FakeRuntime;
use crate::runtime::{labels, RunState, Runtime};

const CLUSTER: &str = "arn:aws:ecs:us-east-1:000000000000:cluster/default";
const INSTANCE: &str = "arn:aws:ecs:us-east-1:000000000000:container-instance/default/i1";

#[derive(Default)]
struct Book(Mutex<BTreeMap<String, TaskRecord>>);

impl TaskBook for Book {
    fn task(&self, task_arn: &str) -> Option<TaskRecord> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(task_arn).cloned()
    }
}

fn arn(id: &str) -> String {
    format!("arn:aws:ecs:us-east-1:000000000000:task/default/{id}")
}

fn definition(name: &str) -> ContainerDefinition {
    ContainerDefinition {
        name: Some(name.into()),
        image: Some("flotilla/workload:latest".into()),
        cpu: Some(128),
        memory: Some(64),
        ..Default::default()
    }
}

/// A RUNNING task whose containers exist in the fake; returns each container's token.
fn running_task(fake: &FakeRuntime, book: &Book, id: &str, instance: &str) -> BTreeMap<String, String> {
    let names = ["web", "side"];
    let assignment = TaskAssignment {
        task: Task {
            task_arn: Some(arn(id)),
            cluster_arn: Some(CLUSTER.into()),
            desired_status: Some("RUNNING".into()),
            availability_zone: Some("us-east-1a".into()),
            launch_type: Some("EC2".into()),
            containers: Some(
                names
                    .iter()
                    .map(|n| Container {
                        name: Some(n.to_string()),
                        container_arn: Some(format!("arn:aws:ecs:us-east-1:000000000000:container/default/{id}/{n}")),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        },
        definition: TaskDefinition {
            family: Some("fam".into()),
            revision: Some(3),
            cpu: Some("256".into()),
            memory: Some("512".into()),
            container_definitions: Some(names.iter().map(|n| definition(n)).collect()),
            ..Default::default()
        },
        reserved_ports: Vec::new(),
        network: None,
        stop_timeout_cap_seconds: None,
    };
    let mut rec = TaskRecord::new(assignment);
    rec.known = crate::engine::status::TaskStatus::Running;
    rec.times.pull_started_at = Some(1_700_000_000_123);
    rec.times.pull_stopped_at = Some(1_700_000_001_000);
    let endpoint = MetadataEndpoint { base_url: "http://172.17.0.1:51679".into() };
    let mut tokens = BTreeMap::new();
    for c in &mut rec.containers {
        let mut spec = crate::runtime::ContainerSpec {
            name: format!("flotilla-{id}-{}", c.name),
            image: "flotilla/workload:latest".into(),
            labels: BTreeMap::from([
                (labels::MARKER.to_string(), "true".to_string()),
                (labels::CLUSTER.to_string(), CLUSTER.to_string()),
                (labels::INSTANCE.to_string(), instance.to_string()),
                (labels::TASK.to_string(), arn(id)),
                (labels::CONTAINER.to_string(), c.name.clone()),
            ]),
            ..Default::default()
        };
        inject(&mut spec, &endpoint);
        tokens.insert(c.name.clone(), spec.labels[TOKEN_LABEL].clone());
        c.runtime_id = Some(fake.insert_container(spec, RunState::Running));
        if c.name == "web" {
            c.bindings = vec![flotilla_model::NetworkBinding {
                bind_ip: Some("0.0.0.0".into()),
                container_port: Some(8080),
                host_port: Some(32768),
                protocol: Some("tcp".into()),
                ..Default::default()
            }];
        }
        c.status = ContainerStatus::Running;
    }
    book.0.lock().unwrap().insert(arn(id), rec);
    tokens
}

struct Served {
    base: String,
    fake: FakeRuntime,
    tokens: BTreeMap<String, String>,
    other_tokens: BTreeMap<String, String>,
    foreign_tokens: BTreeMap<String, String>,
}

async fn served() -> Served {
    let fake = FakeRuntime::new();
    let book = Arc::new(Book::default());
    let tokens = running_task(&fake, &book, "t1", INSTANCE);
    let other_tokens = running_task(&fake, &book, "t2", INSTANCE);
    // A container of another agent sharing the Docker host.
    let foreign_tokens =
        running_task(&fake, &book, "t3", "arn:aws:ecs:us-east-1:000000000000:container-instance/default/i2");
    let state = MetadataState {
        runtime: Arc::new(fake.clone()) as Arc<dyn Runtime>,
        tasks: book,
        instance_arn: INSTANCE.into(),
        cluster_arn: CLUSTER.into(),
        availability_zone: Some("us-east-1a".into()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, state, std::future::pending()));
    Served { base, fake, tokens, other_tokens, foreign_tokens }
}

async fn get(url: &str) -> (u16, Option<Value>) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.ok())
}

fn id_of(s: &Served, task: &str, container: &str) -> String {
    s.fake.task_containers(&arn(task))[container].id.clone()
}

#[tokio::test]
async fn a_container_reads_itself_in_ecs_shape() {
    let s = served().await;
    let (status, body) = get(&format!("{}/v4/{}", s.base, s.tokens["web"])).await;
    assert_eq!(status, 200);
    let c = body.unwrap();
    assert_eq!(c["DockerId"], id_of(&s, "t1", "web"));
    assert_eq!(c["Name"], "web");
    assert_eq!(c["DockerName"], "flotilla-t1-web");
    assert_eq!(c["Image"], "flotilla/workload:latest");
    assert!(c["ImageID"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(c["DesiredStatus"], "RUNNING");
    assert_eq!(c["KnownStatus"], "RUNNING");
    assert_eq!(c["Limits"], serde_json::json!({"CPU": 128, "Memory": 64}));
    assert_eq!(c["Type"], "NORMAL");
    assert_eq!(c["ContainerARN"], "arn:aws:ecs:us-east-1:000000000000:container/default/t1/web");
    assert_eq!(c["CreatedAt"], "2026-01-01T00:00:00Z");
    assert_eq!(c["StartedAt"], "2026-01-01T00:00:01Z");
    assert_eq!(c["Networks"][0]["NetworkMode"], "bridge");
    assert_eq!(
        c["Ports"],
        serde_json::json!([{"ContainerPort": 8080, "Protocol": "tcp", "HostPort": 32768, "HostIp": "0.0.0.0"}])
    );
    assert_eq!(c["Labels"][labels::TASK], arn("t1"));
    // The token is the container's secret, not part of what it is shown.
    assert!(c["Labels"].get(TOKEN_LABEL).is_none());
    // v3's path answers alike.
    let (status, v3) = get(&format!("{}/v3/{}", s.base, s.tokens["web"])).await;
    assert_eq!((status, v3), (200, Some(c)));
}

#[tokio::test]
async fn the_task_lists_its_containers_with_ecs_fields() {
    let s = served().await;
    let (status, body) = get(&format!("{}/v4/{}/task", s.base, s.tokens["side"])).await;
    assert_eq!(status, 200);
    let t = body.unwrap();
    assert_eq!(t["Cluster"], CLUSTER);
    assert_eq!(t["TaskARN"], arn("t1"));
    assert_eq!(t["Family"], "fam");
    assert_eq!(t["Revision"], "3");
    assert_eq!(t["DesiredStatus"], "RUNNING");
    assert_eq!(t["KnownStatus"], "RUNNING");
    assert_eq!(t["Limits"], serde_json::json!({"CPU": 0.25, "Memory": 512}));
    assert_eq!(t["PullStartedAt"], "2023-11-14T22:13:20.123Z");
    assert_eq!(t["PullStoppedAt"], "2023-11-14T22:13:21.000Z");
    assert_eq!(t["AvailabilityZone"], "us-east-1a");
    assert_eq!(t["LaunchType"], "EC2");
    assert!(t["Containers"][1].get("Ports").is_none(), "a container without ports has no Ports");
    let names: Vec<&str> = t["Containers"].as_array().unwrap().iter().map(|c| c["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web", "side"]);
}

#[tokio::test]
async fn stats_come_in_dockers_shape() {
    let s = served().await;
    let web = id_of(&s, "t1", "web");
    let (status, body) = get(&format!("{}/v4/{}/stats", s.base, s.tokens["web"])).await;
    assert_eq!(status, 200);
    let stats = body.unwrap();
    assert_eq!(stats["id"], web);
    assert_eq!(stats["memory_stats"]["usage"], 4096);
    let (status, body) = get(&format!("{}/v4/{}/task/stats", s.base, s.tokens["web"])).await;
    assert_eq!(status, 200);
    let all = body.unwrap();
    let mut keys: Vec<&String> = all.as_object().unwrap().keys().collect();
    keys.sort();
    let mut want = [web.clone(), id_of(&s, "t1", "side")];
    want.sort();
    assert_eq!(keys, want.iter().collect::<Vec<_>>());
    assert_eq!(all[&web]["id"], web);
}

#[tokio::test]
async fn a_token_opens_its_own_task_only() {
    let s = served().await;
    // Each token leads to its own task, whichever asks.
    let (_, t2) = get(&format!("{}/v4/{}/task", s.base, s.other_tokens["web"])).await;
    assert_eq!(t2.unwrap()["TaskARN"], arn("t2"));
    let unknown = new_token();
    for path in [
        format!("/v4/{unknown}"),
        format!("/v4/{unknown}/task"),
        format!("/v4/{unknown}/stats"),
        format!("/v4/{unknown}/task/stats"),
        "/v4/not-a-token".to_string(),
        format!("/v4/{}", s.tokens["web"].to_uppercase()),
        format!("/v5/{}", s.tokens["web"]),
        format!("/v4/{}/containers", s.tokens["web"]),
        // Another agent's container on the same Docker host.
        format!("/v4/{}/task", s.foreign_tokens["web"]),
        "/v4".to_string(),
        "/".to_string(),
    ] {
        let (status, _) = get(&format!("{}{path}", s.base)).await;
        assert_eq!(status, 404, "{path}");
    }
}

#[tokio::test]
async fn a_forgotten_task_is_not_found() {
    let fake = FakeRuntime::new();
    let book = Arc::new(Book::default());
    let tokens = running_task(&fake, &book, "t1", INSTANCE);
    book.0.lock().unwrap().clear();
    let state = MetadataState {
        runtime: Arc::new(fake),
        tasks: book,
        instance_arn: INSTANCE.into(),
        cluster_arn: CLUSTER.into(),
        availability_zone: Some("us-east-1a".into()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, state, std::future::pending()));
    assert_eq!(get(&format!("{base}/v4/{}", tokens["web"])).await.0, 404);
}

#[test]
fn inject_gives_each_container_its_own_token_and_keeps_a_users_variable() {
    let endpoint = MetadataEndpoint { base_url: "http://172.17.0.1:51679".into() };
    let mut a = crate::runtime::ContainerSpec::default();
    let mut b =
        crate::runtime::ContainerSpec { env: vec!["ECS_CONTAINER_METADATA_URI=mine".into()], ..Default::default() };
    inject(&mut a, &endpoint);
    inject(&mut b, &endpoint);
    let (ta, tb) = (&a.labels[TOKEN_LABEL], &b.labels[TOKEN_LABEL]);
    assert!(is_token(ta) && is_token(tb) && ta != tb);
    assert_eq!(
        a.env,
        vec![
            format!("ECS_CONTAINER_METADATA_URI_V4=http://172.17.0.1:51679/v4/{ta}"),
            format!("ECS_CONTAINER_METADATA_URI=http://172.17.0.1:51679/v3/{ta}"),
        ]
    );
    assert_eq!(
        b.env,
        vec![
            "ECS_CONTAINER_METADATA_URI=mine".to_string(),
            format!("ECS_CONTAINER_METADATA_URI_V4=http://172.17.0.1:51679/v4/{tb}"),
        ]
    );
}

#[test]
fn times_are_rfc3339_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
}
