//! Joining: a node joins with a token minted for load balancer nodes and gets a key pair that
//! opens the node routes and nothing else; bad, expired, revoked and cluster tokens join
//! nothing, and a node token registers no container instance.

mod nodes_support;

use flotilla_api::identity::tokens::LOAD_BALANCER_NODES;
use flotilla_elbv2::nodes::{self, NodeCredentials, NodeRecord};
use nodes_support::Server;
use serde_json::json;

fn code(reply: &nodes_support::Reply) -> String {
    reply.json()["__type"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_with_a_node_token_and_its_key_opens_the_node_routes_only() {
    let server = Server::start().await;
    let (token_id, token) = server.token(LOAD_BALANCER_NODES, 600).await;
    let reply = server.join(json!({"token": token, "advertiseAddress": "10.1.2.3"})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let creds: NodeCredentials = serde_json::from_str(&reply.body).unwrap();
    assert!(creds.node_id.starts_with("lbn-"), "{}", creds.node_id);
    assert!(!creds.access_key_id.is_empty() && !creds.secret_access_key.is_empty());
    let record: NodeRecord = server.get(&nodes::node_key(&creds.node_id)).await.expect("node record");
    assert_eq!(record.advertise_address, "10.1.2.3");
    assert_eq!(record.token_id.as_deref(), Some(token_id.as_str()));

    let key = flotilla_sigv4::Credentials::new(&creds.access_key_id, &creds.secret_access_key);
    let config = server.fetch(&key, 0, 0).await;
    assert_eq!(config.status, 200, "{}", config.body);
    assert!(config.json()["revision"].as_i64().unwrap() > 0);

    // The ECS API and the token routes refuse the node's key.
    let ecs = server
        .call(http::Method::POST, "/", Some(&key), Some("AmazonEC2ContainerServiceV20141113.ListClusters"), "{}")
        .await;
    assert_eq!((ecs.status, code(&ecs).as_str()), (400, "AccessDeniedException"), "{}", ecs.body);
    let tokens = server.call(http::Method::GET, "/v1/tokens", Some(&key), None, "").await;
    assert_eq!(code(&tokens), "AccessDeniedException", "{}", tokens.body);

    // A node may report for itself only.
    let other = json!({"node_id": "lbn-0123", "health": []});
    let refused = server.report(&key, other).await;
    assert_eq!(code(&refused), "AccessDeniedException", "{}", refused.body);
    let own = server.report(&key, json!({"node_id": creds.node_id, "health": []})).await;
    assert_eq!(own.status, 204, "{}", own.body);

    // Joining again under its id gives the same node a new key pair, at its new address.
    let again = server.join(json!({"token": token, "nodeId": creds.node_id, "advertiseAddress": "10.1.2.4"})).await;
    assert_eq!(again.status, 200, "{}", again.body);
    let second: NodeCredentials = serde_json::from_str(&again.body).unwrap();
    assert_eq!(second.node_id, creds.node_id);
    assert_ne!(second.access_key_id, creds.access_key_id);
    let record: NodeRecord = server.get(&nodes::node_key(&creds.node_id)).await.unwrap();
    assert_eq!(record.advertise_address, "10.1.2.4");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_expired_revoked_and_cluster_tokens_join_nothing() {
    let server = Server::start().await;
    let (_, token) = server.token(LOAD_BALANCER_NODES, 60).await;

    let forged = server
        .join(json!({"token": token.replace("elbv2.nodes", "elbv2.nodez"), "advertiseAddress": "127.0.0.1"}))
        .await;
    assert_eq!(code(&forged), "AccessDeniedException", "{}", forged.body);
    let garbage = server.join(json!({"token": "FLTJ1.nope", "advertiseAddress": "127.0.0.1"})).await;
    assert_eq!(code(&garbage), "AccessDeniedException", "{}", garbage.body);

    // A token for a cluster is not a node token, and a node token registers no instance.
    let (_, cluster_token) = server.token("default", 600).await;
    let wrong = server.join(json!({"token": cluster_token, "advertiseAddress": "127.0.0.1"})).await;
    assert_eq!(code(&wrong), "AccessDeniedException", "{}", wrong.body);
    assert!(wrong.body.contains("cluster default"), "{}", wrong.body);
    let agent = server.call(http::Method::POST, "/v1/join", None, None, &json!({"token": token}).to_string()).await;
    assert_eq!(code(&agent), "AccessDeniedException", "{}", agent.body);
    assert!(agent.body.contains("/v1/lb/join"), "{}", agent.body);

    // Bad input names the field.
    let no_address = server.join(json!({"token": token})).await;
    assert_eq!(code(&no_address), "InvalidParameterException");
    assert!(no_address.body.contains("advertiseAddress"), "{}", no_address.body);
    let bad_address = server.join(json!({"token": token, "advertiseAddress": "lb.example"})).await;
    assert!(bad_address.body.contains("advertiseAddress"), "{}", bad_address.body);
    let bad_id = server.join(json!({"token": token, "nodeId": "node/1", "advertiseAddress": "127.0.0.1"})).await;
    assert_eq!(code(&bad_id), "InvalidParameterException");
    assert!(bad_id.body.contains("nodeId"), "{}", bad_id.body);
    let not_json = server.join(json!("token")).await;
    assert_eq!(code(&not_json), "SerializationException", "{}", not_json.body);

    // Revoked.
    let (id, revoked) = server.token(LOAD_BALANCER_NODES, 600).await;
    let r = server.call(http::Method::DELETE, &format!("/v1/tokens?id={id}"), Some(&server.root), None, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let refused = server.join(json!({"token": revoked, "advertiseAddress": "127.0.0.1"})).await;
    assert_eq!(code(&refused), "AccessDeniedException");
    assert!(refused.body.contains("revoked"), "{}", refused.body);

    // Expired: the first token lived 60 s.
    let ok = server.join(json!({"token": token, "advertiseAddress": "127.0.0.1"})).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    server.advance(61_000);
    let expired = server.join(json!({"token": token, "advertiseAddress": "127.0.0.1"})).await;
    assert_eq!(code(&expired), "AccessDeniedException");
    assert!(expired.body.contains("expired"), "{}", expired.body);

    // Unsigned config requests are refused.
    let unsigned = server.call(http::Method::GET, nodes::CONFIG_PATH, None, None, "").await;
    assert_eq!(unsigned.status, 400, "{}", unsigned.body);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_key_opens_no_agent_session() {
    let server = Server::start().await;
    let (_, key) = server.join_node().await;
    let registration =
        flotilla_model::RegisterContainerInstanceRequest { cluster: Some("default".into()), ..Default::default() };
    let out = flotilla_api::handlers::container_instances::register(&server.ctx, registration).await.expect("register");
    let arn = out.container_instance.unwrap().container_instance_arn.unwrap();
    let path = format!(
        "{}?{}=default&{}={}",
        flotilla_protocol::AGENT_WS_PATH,
        flotilla_protocol::query::CLUSTER,
        flotilla_protocol::query::CONTAINER_INSTANCE,
        arn.replace(':', "%3A").replace('/', "%2F")
    );
    let upgrade = || {
        let mut h = http::HeaderMap::new();
        h.insert("connection", "upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("sec-websocket-version", "13".parse().unwrap());
        h.insert("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap());
        h
    };
    let refused = server.call_with(http::Method::GET, &path, Some(&key), None, upgrade(), "").await;
    assert_eq!((refused.status, code(&refused).as_str()), (400, "AccessDeniedException"), "{}", refused.body);
    // The same request signed by the root key pair opens the session: the refusal is the key's.
    let root = server.root.clone();
    let opened = server.call_with(http::Method::GET, &path, Some(&root), None, upgrade(), "").await;
    assert_eq!(opened.status, 101, "{}", opened.body);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flotilla_up_mints_a_node_key_in_process() {
    let server = Server::start().await;
    let creds = nodes::local_credentials(&server.ctx, Some("lbn-00000000000000aa"), "127.0.0.1").await.expect("mint");
    assert_eq!(creds.node_id, "lbn-00000000000000aa");
    let record: NodeRecord = server.get(&nodes::node_key("lbn-00000000000000aa")).await.expect("node record");
    assert_eq!(record.token_id, None);
    let key = flotilla_sigv4::Credentials::new(&creds.access_key_id, &creds.secret_access_key);
    assert_eq!(server.fetch(&key, 0, 0).await.status, 200);
    let bad = nodes::local_credentials(&server.ctx, None, "localhost").await.unwrap_err();
    assert!(bad.message.contains("advertiseAddress"), "{}", bad.message);
    let bad = nodes::local_credentials(&server.ctx, Some("x"), "127.0.0.1").await.unwrap_err();
    assert!(bad.message.contains("nodeId"), "{}", bad.message);
    server.stop().await;
}
