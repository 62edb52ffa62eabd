//! Reports: health records follow what the live nodes say (healthy when any says so, written
//! only on change), and draining ends when every live node reports no connections left, or at
//! the draining deadline otherwise.

mod nodes_support;

use flotilla_endpoints::elb::{HealthState, NodeConfig, Registration, Target, TargetHealth, TargetType};
use flotilla_endpoints::keys;
use nodes_support::{register, target, target_group, Server};
use serde_json::json;

const GROUP: &str = "eeee000000000005";

fn observation(state: &str, reason: Option<&str>) -> serde_json::Value {
    json!({"target_group_id": GROUP, "target_id": "10.0.0.9", "port": 80, "state": state, "reason": reason})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_records_follow_the_live_nodes_and_are_written_on_change_only() {
    let server = Server::start().await;
    let (a_id, a) = server.join_node().await;
    let (b_id, b) = server.join_node().await;
    register(&server, &target_group(GROUP, TargetType::Ip), &target("10.0.0.9", 80, Registration::Registered)).await;
    let other = target("10.0.0.10", 80, Registration::Registered);
    server.put(&keys::target(GROUP, &other.id, other.port), &other).await;
    let health_key = keys::target_health(GROUP, "10.0.0.9", 80);
    let health = || async { server.get::<TargetHealth>(&health_key).await };

    let unhealthy = json!({"node_id": a_id.node_id, "health": [observation("unhealthy", Some("Target.Timeout"))]});
    assert_eq!(server.report(&a, unhealthy.clone()).await.status, 204);
    let h = health().await.expect("health record");
    assert_eq!((h.state, h.reason.as_deref()), (HealthState::Unhealthy, Some("Target.Timeout")));
    let written = server.mod_revision(&health_key).await;
    // The same report again writes nothing.
    assert_eq!(server.report(&a, unhealthy.clone()).await.status, 204);
    assert_eq!(server.mod_revision(&health_key).await, written);

    // One node reaching it is enough.
    let healthy = json!({"node_id": b_id.node_id, "health": [observation("healthy", None)]});
    assert_eq!(server.report(&b, healthy).await.status, 204);
    assert_eq!(health().await.unwrap().state, HealthState::Healthy);
    assert_eq!(server.report(&a, unhealthy.clone()).await.status, 204);
    assert_eq!(health().await.unwrap().state, HealthState::Healthy, "b's healthy report still counts");
    let config: NodeConfig = serde_json::from_str(&server.fetch(&a, 0, 0).await.body).expect("NodeConfig");
    let shown: Vec<(String, Option<HealthState>)> =
        config.targets.iter().map(|t| (t.target.id.clone(), t.health)).collect();
    // The target no node reported on has no health: initial.
    assert_eq!(shown, vec![("10.0.0.10".into(), None), ("10.0.0.9".into(), Some(HealthState::Healthy))]);
    assert!(server.get::<TargetHealth>(&keys::target_health(GROUP, "10.0.0.10", 80)).await.is_none());

    // Once b has been silent past the live window, a's word is the only one.
    server.advance(flotilla_elbv2::nodes::LIVE_MS + 1_000);
    assert_eq!(server.report(&a, unhealthy).await.status, 204);
    assert_eq!(health().await.unwrap().state, HealthState::Unhealthy);

    // A report that does not decode names what is wrong.
    let bad = server.report(&a, json!({"node_id": a_id.node_id, "health": [{"state": "fine"}]})).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    server.stop().await;
}

/// Two servers over one store, as on etcd: each node reports to its own server, and each server
/// judges from both nodes' reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_sharing_a_store_judge_from_every_nodes_report() {
    let store: std::sync::Arc<dyn flotilla_store::Store> = std::sync::Arc::new(flotilla_store::MemoryStore::new());
    let one = Server::start_on(Some(store.clone())).await;
    let two = Server::start_on(Some(store)).await;
    let (a_id, a) = one.join_node().await;
    let (b_id, b) = two.join_node().await;
    register(&one, &target_group(GROUP, TargetType::Ip), &target("10.0.0.9", 80, Registration::Registered)).await;
    let health_key = keys::target_health(GROUP, "10.0.0.9", 80);

    let healthy = json!({"node_id": b_id.node_id, "health": [observation("healthy", None)]});
    assert_eq!(two.report(&b, healthy).await.status, 204);
    assert_eq!(one.get::<TargetHealth>(&health_key).await.unwrap().state, HealthState::Healthy);
    // a, reporting to the other server, cannot reach it; b's word (given to server two) stands.
    let unhealthy = json!({"node_id": a_id.node_id, "health": [observation("unhealthy", Some("Target.Timeout"))]});
    assert_eq!(one.report(&a, unhealthy.clone()).await.status, 204);
    assert_eq!(one.get::<TargetHealth>(&health_key).await.unwrap().state, HealthState::Healthy);
    // Once b has been silent past the live window, server one goes by a alone.
    one.advance(flotilla_elbv2::nodes::LIVE_MS + 1_000);
    assert_eq!(one.report(&a, unhealthy).await.status, 204);
    let h = one.get::<TargetHealth>(&health_key).await.unwrap();
    assert_eq!((h.state, h.reason.as_deref()), (HealthState::Unhealthy, Some("Target.Timeout")));
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_ends_when_every_live_node_has_no_connections_left() {
    let server = Server::start().await;
    let (a_id, a) = server.join_node().await;
    let (b_id, b) = server.join_node().await;
    let now = server.now_ms();
    let draining = Registration::Draining { since_ms: now, until_ms: now + 300_000 };
    register(&server, &target_group(GROUP, TargetType::Ip), &target("10.0.0.9", 80, draining)).await;
    let health = TargetHealth { state: HealthState::Draining, reason: None, description: None, updated_at_ms: now };
    server.put(&keys::target_health(GROUP, "10.0.0.9", 80), &health).await;
    let target_key = keys::target(GROUP, "10.0.0.9", 80);
    let report = |id: &str, open: u32| json!({"node_id": id, "health": [], "draining_connections": [[GROUP, "10.0.0.9", 80, open]]});

    assert_eq!(server.report(&a, report(&a_id.node_id, 0)).await.status, 204);
    // b is live (it joined) but has not said it is done.
    assert!(server.get::<Target>(&target_key).await.is_some());
    assert_eq!(server.report(&b, report(&b_id.node_id, 3)).await.status, 204);
    assert!(server.get::<Target>(&target_key).await.is_some());
    assert_eq!(server.report(&b, report(&b_id.node_id, 0)).await.status, 204);
    assert!(server.get::<Target>(&target_key).await.is_none(), "deregistered once no node holds a connection");
    assert!(server.get::<TargetHealth>(&keys::target_health(GROUP, "10.0.0.9", 80)).await.is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_ends_at_its_deadline_without_reports() {
    let server = Server::start().await;
    let now = server.now_ms();
    let draining = Registration::Draining { since_ms: now, until_ms: now + 300_000 };
    register(&server, &target_group(GROUP, TargetType::Ip), &target("10.0.0.9", 80, draining)).await;
    let registered = target("10.0.0.10", 80, Registration::Registered);
    server.put(&keys::target(GROUP, &registered.id, registered.port), &registered).await;
    let target_key = keys::target(GROUP, "10.0.0.9", 80);

    // The loop runs every 50 ms: before the deadline it leaves the target.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(server.get::<Target>(&target_key).await.is_some());
    server.advance(300_001);
    server.until("the draining target to go", || async { server.get::<Target>(&target_key).await.is_none() }).await;
    assert!(server.get::<Target>(&keys::target(GROUP, "10.0.0.10", 80)).await.is_some(), "registered targets stay");
    server.stop().await;
}
