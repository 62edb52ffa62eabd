//! The configuration nodes long-poll for: 304 while nothing they serve changes (writes elsewhere
//! do not count), 200 as soon as a target is registered; instance targets resolve to where their
//! instance publishes the port (a task's bind address, else the agent's address, else
//! loopback); load balancers turn active once a node is live.

mod nodes_support;

use flotilla_api::state::keys as ecs_keys;
use flotilla_endpoints::elb::{LoadBalancer, NodeConfig, Registration, TargetType};
use flotilla_endpoints::keys;
use flotilla_model::RegisterContainerInstanceRequest;
use nodes_support::{load_balancer, register, target, target_group, Server};

fn config(reply: &nodes_support::Reply) -> NodeConfig {
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).expect("NodeConfig")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_waits_out_unrelated_writes_and_answers_a_registration() {
    let server = Server::start().await;
    let (_, node) = server.join_node().await;
    let first = config(&server.fetch(&node, 0, 0).await);
    assert!(first.targets.is_empty());
    let r0 = first.revision;

    let idle = server.fetch(&node, r0, 1).await;
    assert_eq!(idle.status, 304, "{}", idle.body);
    assert!(idle.body.is_empty());
    // Another node joining writes the store, but nothing nodes serve.
    let _ = server.join_node().await;
    let still = server.fetch(&node, r0, 1).await;
    assert_eq!(still.status, 304, "{}", still.body);

    let waiting = {
        let fetch = server.fetch(&node, r0, 20);
        let register = async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let group = target_group("aaaa000000000001", TargetType::Ip);
            register(&server, &group, &target("10.0.0.7", 8080, Registration::Registered)).await;
        };
        tokio::join!(fetch, register).0
    };
    let changed = config(&waiting);
    assert!(changed.revision > r0, "{} > {r0}", changed.revision);
    assert_eq!(changed.target_groups.len(), 1);
    assert_eq!(changed.targets.len(), 1);
    assert_eq!(changed.targets[0].address, "10.0.0.7:8080");
    assert_eq!(changed.targets[0].target_group_id, "aaaa000000000001");
    // No node has reported on it: no health yet (initial).
    assert_eq!(changed.targets[0].health, None);

    // A revision from another store's history (the control plane's data was replaced) gets the
    // configuration at once rather than waiting for this store to catch up.
    let elsewhere = config(&server.fetch(&node, 1_000_000, 20).await);
    assert_eq!(elsewhere.revision, changed.revision);

    let bad = server.call(http::Method::GET, "/v1/lb/config?wait=soon", Some(&node), None, "").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("wait"), "{}", bad.body);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_targets_resolve_to_the_address_their_instance_advertises() {
    let server = Server::start().await;
    let (_, node) = server.join_node().await;
    let registration = RegisterContainerInstanceRequest {
        cluster: Some("default".into()),
        instance_identity_document: Some(r#"{"instanceId":"i-0123456789abcdef0"}"#.into()),
        ..Default::default()
    };
    let out = flotilla_api::handlers::container_instances::register(&server.ctx, registration).await.expect("register");
    let instance_arn = out.container_instance.unwrap().container_instance_arn.unwrap();

    let group = target_group("bbbb000000000002", TargetType::Instance);
    register(&server, &group, &target("i-0123456789abcdef0", 32768, Registration::Registered)).await;
    register(&server, &group, &target("i-fffffffffffffffff", 32768, Registration::Registered)).await;
    let c = config(&server.fetch(&node, 0, 0).await);
    // Published on every address: loopback; an unknown instance is nowhere to send traffic.
    let addresses: Vec<&str> = c.targets.iter().map(|t| t.address.as_str()).collect();
    assert_eq!(addresses, vec!["127.0.0.1:32768"]);

    // Once the gateway has seen the agent connect from a host: that host.
    let instance_key = ecs_keys::instance("default", instance_arn.rsplit('/').next().unwrap());
    let peer: std::net::IpAddr = "10.9.8.7".parse().unwrap();
    flotilla_api::gateway::set_agent_address(&server.ctx, &instance_key, peer).await.expect("address");
    let c = config(&server.fetch(&node, c.revision, 10).await);
    let addresses: Vec<&str> = c.targets.iter().map(|t| t.address.as_str()).collect();
    assert_eq!(addresses, vec!["10.9.8.7:32768"]);

    // An address the agent advertises (`flotilla agent --host-address`) wins over the session's.
    let attribute = flotilla_model::Attribute {
        name: Some("flotilla.host-address".into()),
        value: Some("127.0.5.6".into()),
        target_id: Some(instance_arn.clone()),
        ..Default::default()
    };
    let put =
        flotilla_model::PutAttributesRequest { cluster: Some("default".into()), attributes: Some(vec![attribute]) };
    flotilla_api::handlers::attributes::put(&server.ctx, put).await.expect("put attributes");
    let next = config(&server.fetch(&node, c.revision, 10).await);
    assert!(next.revision > c.revision);
    let addresses: Vec<&str> = next.targets.iter().map(|t| t.address.as_str()).collect();
    assert_eq!(addresses, vec!["127.0.5.6:32768"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancer_turns_active_once_a_node_is_live() {
    let server = Server::start().await;
    server.put(&keys::load_balancer("cccc000000000003"), &load_balancer("cccc000000000003")).await;
    let state = |id: &'static str| {
        let server = &server;
        async move { server.get::<LoadBalancer>(&keys::load_balancer(id)).await.unwrap().state }
    };
    // No node has joined: the loop (every 50 ms) leaves it provisioning.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(state("cccc000000000003").await, "provisioning");

    let (_, node) = server.join_node().await;
    let c = config(&server.fetch(&node, 0, 0).await);
    server.until("the load balancer to turn active", || async { state("cccc000000000003").await == "active" }).await;
    // The change reaches the node (at once, if the loop was quicker than its first fetch).
    let c2 = match c.load_balancers[0].state.as_str() {
        "active" => c.clone(),
        _ => config(&server.fetch(&node, c.revision, 10).await),
    };
    assert_eq!(c2.load_balancers[0].state, "active");

    // Once the node has been silent for longer than the live window, a new load balancer waits
    // for a node to be heard from again.
    server.advance(flotilla_elbv2::nodes::LIVE_MS + 1_000);
    server.put(&keys::load_balancer("dddd000000000004"), &load_balancer("dddd000000000004")).await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(state("dddd000000000004").await, "provisioning");
    let _ = server.fetch(&node, 0, 0).await;
    server
        .until("the second load balancer to turn active", || async { state("dddd000000000004").await == "active" })
        .await;
    server.stop().await;
}
