//! The server survives its own failures: a background loop that panics (the cache's watch
//! follower, the service controller) or a scheduler snapshot left half-built by a panic is
//! restarted or rebuilt while the API keeps answering, `/health` shows the loop running again and
//! `/metrics` counts the restart; and one service that keeps failing does not stop the others.
//! Faults are injected through the test-only hooks of `flotilla_api::faults`, each armed for a
//! name unique to its test.

mod common;

use std::time::Duration;

use common::*;
use flotilla_api::faults::{arm, Site};

/// `/health` as (HTTP status, JSON).
async fn health(server: &TestServer) -> (u16, serde_json::Value) {
    let r = reqwest::get(format!("{}/health", server.endpoint())).await.expect("health");
    (r.status().as_u16(), r.json().await.expect("health JSON"))
}

/// The value of one sample in `/metrics` (0 when absent).
async fn metric(server: &TestServer, sample: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", server.endpoint())).await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

/// Waits until `/health` is ok with `name` running and `/metrics` counts at least one restart.
async fn restarted(server: &TestServer, name: &str) {
    let sample = format!("flotilla_api_loop_restarts_total{{loop=\"{name}\"}}");
    eventually(&format!("the {name} loop restarted and running"), || async {
        let (status, body) = health(server).await;
        let running = status == 200 && body["status"] == "ok" && body["loops"][name] == "running";
        (running && metric(server, &sample).await >= 1.0).then_some(())
    })
    .await;
}

/// Hollow agents that run until dropped.
struct Agents {
    _dir: tempfile::TempDir,
    running: Vec<(tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Drop for Agents {
    fn drop(&mut self) {
        for (stop, _) in &self.running {
            let _ = stop.send(true);
        }
    }
}

/// Starts `n` hollow agents in `cluster` and waits until they are connected.
async fn agents(server: &TestServer, cluster: &str, n: usize) -> Agents {
    let dir = tempfile::tempdir().unwrap();
    let running = (0..n).map(|i| start_hollow_agent(agent_api(server), dir.path(), cluster, "us-east-1a", i)).collect();
    let client = server.client();
    eventually("the agents are connected", || async {
        let listed = client.list_container_instances().cluster(cluster).send().await.ok()?;
        let arns = listed.container_instance_arns().to_vec();
        if arns.len() < n {
            return None;
        }
        let out = client.describe_container_instances().cluster(cluster).set_container_instances(Some(arns));
        let out = out.send().await.ok()?;
        (out.container_instances().iter().filter(|ci| ci.agent_connected()).count() == n).then_some(())
    })
    .await;
    Agents { _dir: dir, running }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn task_count(client: &aws_sdk_ecs::Client, cluster: &str, service: Option<&str>) -> usize {
    let out = client.list_tasks().cluster(cluster).set_service_name(service.map(String::from)).send().await.unwrap();
    out.task_arns().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_lists_the_loops() {
    let server = TestServer::start().await;
    let (status, body) = health(&server).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    for name in ["cache", "controller", "reaper"] {
        assert_eq!(body["loops"][name], "running", "{body}");
    }
    assert!(body["revision"].as_u64().is_some());
    // One server on an embedded store leads unopposed, and names itself.
    let server_id = body["server"].as_str().expect("a server id");
    assert!(!server_id.is_empty());
    assert_eq!(body["leader"], true, "{body}");
    assert_eq!(body["leader_id"], server_id, "{body}");
    assert_eq!(body["loops"]["leadership"], "running", "{body}");
    assert_eq!(metric(&server, "flotilla_leader ").await, 1.0);
    assert_eq!(metric(&server, "flotilla_leader_terms_total ").await, 1.0);
}

/// The follower panics half-way through applying a change: the write that caused it still
/// answers (the follower reloads and catches up), reads keep working, the loop is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_cache_follower_is_survived() {
    let server = TestServer::start().await;
    let client = server.client();
    let name = unique("follower");
    arm(Site::CacheApply, &format!("cluster/{name}"), 1);
    let created = tokio::time::timeout(Duration::from_secs(30), client.create_cluster().cluster_name(&name).send())
        .await
        .expect("CreateCluster answers, not hangs");
    created.expect("CreateCluster succeeds once the cache caught up");
    restarted(&server, "cache").await;
    let listed = client.list_clusters().send().await.expect("reads keep working");
    assert!(listed.cluster_arns().iter().any(|a| a.ends_with(&format!("/{name}"))));
    let described = client.describe_clusters().clusters(&name).send().await.unwrap();
    assert_eq!(described.clusters()[0].status(), Some("ACTIVE"));
}

/// A snapshot rebuild panics half-way: that one RunTask fails with ServerException, the next
/// ones place tasks on a snapshot built afresh (not on the half-built one, not on a lock that
/// stays poisoned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_snapshot_rebuild_is_survived() {
    let server = TestServer::start().await;
    let client = server.client();
    let cluster = create_cluster(&client, &unique("snap")).await;
    let _agents = agents(&server, &cluster, 2).await;
    register_td(&client, "web").await;
    arm(Site::SnapshotRebuild, &cluster, 1);
    let failed = client.run_task().cluster(&cluster).task_definition("web").send().await;
    expect_code(failed, "ServerException");
    for _ in 0..3 {
        let out = client.run_task().cluster(&cluster).task_definition("web").count(2).send().await.expect("RunTask");
        assert_eq!(out.tasks().len(), 2, "{:?}", out.failures());
    }
    assert_eq!(task_count(&client, &cluster, None).await, 6);
}

/// The controller panics on a service: it is restarted and the service gets its task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_controller_is_survived() {
    let server = TestServer::start().await;
    let client = server.client();
    let cluster = create_cluster(&client, &unique("ctl")).await;
    let _agents = agents(&server, &cluster, 1).await;
    register_td(&client, "web").await;
    let name = unique("svc");
    arm(Site::ControllerPass, &format!("/{cluster}/{name}"), 1);
    client
        .create_service()
        .cluster(&cluster)
        .service_name(&name)
        .task_definition("web")
        .desired_count(1)
        .send()
        .await
        .unwrap();
    restarted(&server, "controller").await;
    eventually("the service's task is placed", || async {
        (task_count(&client, &cluster, Some(&name)).await == 1).then_some(())
    })
    .await;
}

/// One service's step keeps failing (sorted first, so a pass that stopped at the first error
/// would never reach the others): the other services still get their tasks, and the failures
/// are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_service_does_not_stop_the_others() {
    let server = TestServer::start().await;
    let client = server.client();
    let cluster = create_cluster(&client, &unique("pass")).await;
    let _agents = agents(&server, &cluster, 1).await;
    register_td(&client, "web").await;
    let doomed = format!("a-{}", unique("doomed"));
    arm(Site::ServiceLaunch, &format!("/{cluster}/{doomed}"), u32::MAX);
    let others = [format!("b-{}", unique("ok")), format!("c-{}", unique("ok"))];
    for name in std::iter::once(&doomed).chain(&others) {
        let svc = client.create_service().cluster(&cluster).service_name(name).task_definition("web");
        svc.desired_count(2).send().await.unwrap();
    }
    for name in &others {
        eventually(&format!("{name} reaches its desired count"), || async {
            (task_count(&client, &cluster, Some(name)).await == 2).then_some(())
        })
        .await;
    }
    assert_eq!(task_count(&client, &cluster, Some(&doomed)).await, 0);
    assert!(metric(&server, "flotilla_api_loop_errors_total{loop=\"controller\"}").await >= 1.0);
    let (status, body) = health(&server).await;
    assert_eq!((status, &body["loops"]["controller"]), (200, &serde_json::json!("running")));
}
