//! The wire protocol end to end: SigV4 authentication failures, the error and success shapes
//! every SDK parses, routing on X-Amz-Target, body decoding, paging rules, operations not served
//! yet, and durability across a restart on the same data directory.

mod common;

use aws_sdk_ecs::types::{ClusterField, ContainerInstanceStatus, Tag, TaskDefinitionStatus};
use common::*;
use flotilla_api::AuthMode;

/// Checks the error shape every client relies on and returns the parsed body.
#[track_caller]
fn assert_error(status: u16, headers: &reqwest::header::HeaderMap, body: &str, code: &str) -> serde_json::Value {
    assert_eq!(status, 400, "{body}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("body {body:?} is not JSON: {e}"));
    assert_eq!(v["__type"], code, "{body}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "a message: {body}");
    assert_eq!(headers.get("x-amzn-errortype").and_then(|h| h.to_str().ok()), Some(code));
    let rid = headers.get("x-amzn-requestid").and_then(|h| h.to_str().ok()).unwrap_or("");
    assert!(!rid.is_empty(), "x-amzn-RequestId on errors");
    assert_eq!(headers.get("content-type").and_then(|h| h.to_str().ok()), Some("application/x-amz-json-1.1"));
    v
}

#[tokio::test]
async fn an_unsigned_request_is_missing_its_token() {
    let server = TestServer::start().await;
    let (status, headers, body) = raw(server.addr, Some("ListClusters"), b"{}", &[]).await;
    assert_error(status, &headers, &body, "MissingAuthenticationTokenException");
}

#[tokio::test]
async fn a_wrong_secret_is_an_invalid_signature() {
    let server = TestServer::start().await;
    let client = server.client_with(&server.credentials.access_key_id, "not-the-secret");
    expect_code(client.list_clusters().send().await, "InvalidSignatureException");
    // Nothing is written by a refused request.
    expect_code(client.create_cluster().cluster_name("sneaky").send().await, "InvalidSignatureException");
    let out = server.client().describe_clusters().clusters("sneaky").send().await.unwrap();
    assert_eq!(out.failures()[0].reason(), Some("MISSING"));
}

#[tokio::test]
async fn an_unsigned_payload_is_refused_as_aws_refuses_it() {
    let server = TestServer::start().await;
    let body = br#"{"clusterName":"unsigned"}"#;
    let (status, headers, text) =
        signed_raw_with(&server, "CreateCluster", body, &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")]).await;
    let v = assert_error(status, &headers, &text, "InvalidSignatureException");
    assert_eq!(v["message"], "The provided 'x-amz-content-sha256' header does not match what was computed.");
    // The same call with its body signed goes through.
    let (status, _, text) = signed_raw(&server, "CreateCluster", body).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn an_unknown_access_key_is_unrecognized() {
    let server = TestServer::start().await;
    let client = server.client_with("AKIDSOMEONEELSE", &server.credentials.secret_access_key);
    expect_code(client.list_clusters().send().await, "UnrecognizedClientException");
}

#[tokio::test]
async fn a_malformed_authorization_header_is_an_incomplete_signature() {
    let server = TestServer::start().await;
    for auth in [
        "AWS4-HMAC-SHA256 garbage",
        "AWS4-HMAC-SHA256 Credential=AKIDFLOTILLATEST/20260101/us-east-1/ecs/aws4_request",
        "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=00",
    ] {
        let (status, headers, body) = raw(
            server.addr,
            Some("ListClusters"),
            b"{}",
            &[("authorization", auth), ("x-amz-date", "20260101T000000Z")],
        )
        .await;
        assert_error(status, &headers, &body, "IncompleteSignatureException");
    }
}

#[tokio::test]
async fn success_carries_a_request_id_and_json() {
    let server = TestServer::start().await;
    let (status, headers, body) = signed_raw(&server, "ListClusters", b"{}").await;
    assert_eq!(status, 200, "{body}");
    assert!(headers.get("x-amzn-requestid").is_some_and(|h| !h.is_empty()));
    assert!(headers.get("x-amzn-errortype").is_none());
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["clusterArns"][0], format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/default"));
    // Request ids are per request.
    let (_, again, _) = signed_raw(&server, "ListClusters", b"{}").await;
    assert_ne!(headers.get("x-amzn-requestid"), again.get("x-amzn-requestid"));
}

#[tokio::test]
async fn modeled_errors_have_the_same_shape() {
    let server = TestServer::start().await;
    let (status, headers, body) = signed_raw(&server, "DeleteCluster", br#"{"cluster":"ghost"}"#).await;
    let v = assert_error(status, &headers, &body, "ClusterNotFoundException");
    assert_eq!(v["message"], "Cluster not found.");
    let (status, headers, body) = signed_raw(&server, "DescribeTaskDefinition", br#"{"taskDefinition":"x"}"#).await;
    assert_error(status, &headers, &body, "ClientException");
}

#[tokio::test]
async fn an_unknown_target_is_an_unknown_operation() {
    let server = TestServer::start().await;
    let (status, headers, body) = signed_raw(&server, "MakeCoffee", b"{}").await;
    assert_error(status, &headers, &body, "UnknownOperationException");
    // Without any target, on a server that does not check signatures.
    let open = TestServer::start_with(AuthMode::Disabled, tempfile::tempdir().unwrap()).await;
    let (status, headers, body) = raw(open.addr, None, b"{}", &[]).await;
    assert_error(status, &headers, &body, "UnknownOperationException");
    let (status, headers, body) = raw(open.addr, Some(""), b"{}", &[]).await;
    assert_error(status, &headers, &body, "UnknownOperationException");
}

#[tokio::test]
async fn bodies_that_do_not_decode_are_serialization_exceptions() {
    let server = TestServer::start().await;
    for body in [
        &b"this is not json"[..],
        b"{\"clusterName\": ",
        b"[1, 2, 3]",
        b"null",
        br#"{"clusterName": 42}"#,
        br#"{"tags": {"key": "a"}}"#,
    ] {
        let (status, headers, text) = signed_raw(&server, "CreateCluster", body).await;
        assert_error(status, &headers, &text, "SerializationException");
    }
    let (status, headers, text) = signed_raw(&server, "ListClusters", br#"{"maxResults": "5"}"#).await;
    assert_error(status, &headers, &text, "SerializationException");
    // Nothing was created by the refused bodies.
    let out = server.client().list_clusters().send().await.unwrap();
    assert_eq!(out.cluster_arns().len(), 1);
}

#[tokio::test]
async fn unsigned_bodies_decode_the_same_with_authentication_off() {
    let open = TestServer::start_with(AuthMode::Disabled, tempfile::tempdir().unwrap()).await;
    let (status, headers, body) = raw(open.addr, Some("CreateCluster"), b"{oops", &[]).await;
    assert_error(status, &headers, &body, "SerializationException");
    let (status, _, body) = raw(open.addr, Some("CreateCluster"), br#"{"clusterName":"open"}"#, &[]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn unknown_members_are_ignored_and_an_empty_body_is_an_empty_object() {
    let server = TestServer::start().await;
    let (status, _, body) = signed_raw(
        &server,
        "CreateCluster",
        br#"{"clusterName": "lenient", "zoneId": "use1-az1", "clientToken": "x", "nested": {"a": [1]}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["cluster"]["clusterName"], "lenient");
    let (status, _, body) = signed_raw(&server, "ListClusters", b"").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["clusterArns"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn absent_members_are_left_out_rather_than_null() {
    let server = TestServer::start().await;
    let (_, _, body) = signed_raw(&server, "ListClusters", b"{}").await;
    assert!(!body.contains("null"), "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v.get("nextToken").is_none(), "no token when nothing remains: {body}");
}

#[tokio::test]
async fn max_results_outside_one_to_one_hundred_is_invalid() {
    let server = TestServer::start().await;
    let client = server.client();
    for n in [0, -1, 101] {
        let msg = expect_code(client.list_clusters().max_results(n).send().await, "InvalidParameterException");
        assert!(msg.contains("maxResults"), "{msg}");
        expect_code(client.list_task_definitions().max_results(n).send().await, "InvalidParameterException");
        expect_code(client.list_services().max_results(n).send().await, "InvalidParameterException");
        expect_code(client.list_container_instances().max_results(n).send().await, "InvalidParameterException");
        expect_code(client.list_tasks().max_results(n).send().await, "InvalidParameterException");
    }
    assert_eq!(client.list_clusters().max_results(100).send().await.unwrap().cluster_arns().len(), 1);
    assert_eq!(client.list_clusters().max_results(1).send().await.unwrap().cluster_arns().len(), 1);
}

#[tokio::test]
async fn a_forged_next_token_is_invalid() {
    let server = TestServer::start().await;
    let client = server.client();
    for i in 0..3 {
        create_cluster(&client, &format!("c{i}")).await;
    }
    let page = client.list_clusters().max_results(1).send().await.unwrap();
    let token = page.next_token().unwrap().to_string();
    // The real token works.
    let next = client.list_clusters().max_results(1).next_token(&token).send().await.unwrap();
    assert_eq!(next.cluster_arns().len(), 1);
    assert_ne!(next.cluster_arns(), page.cluster_arns());

    let mut edited = token.clone().into_bytes();
    edited[0] = if edited[0] == b'A' { b'B' } else { b'A' };
    let edited = String::from_utf8(edited).unwrap();
    for forged in [edited.as_str(), "garbage", "eyJsYXN0IjoiY2x1c3Rlci9jMCJ9", "!!!"] {
        let msg = expect_code(
            client.list_clusters().max_results(1).next_token(forged).send().await,
            "InvalidParameterException",
        );
        assert!(msg.contains("nextToken"), "{msg}");
    }
    // A token from one listing is not accepted by another.
    expect_code(client.list_task_definitions().next_token(&token).send().await, "InvalidParameterException");
}

#[tokio::test]
async fn operations_not_served_yet_are_unsupported_features() {
    let server = TestServer::start().await;
    let client = server.client();
    let msg = expect_code(
        client.create_task_set().cluster("default").service("s").task_definition("t").send().await,
        "UnsupportedFeatureException",
    );
    assert!(msg.contains("CreateTaskSet"), "{msg}");
    let (status, headers, body) =
        signed_raw(&server, "CreateTaskSet", br#"{"cluster":"default","service":"s","taskDefinition":"t"}"#).await;
    assert_error(status, &headers, &body, "UnsupportedFeatureException");
}

#[tokio::test]
async fn missing_required_members_are_invalid_parameters() {
    let server = TestServer::start().await;
    for (target, body, member) in [
        ("DeleteCluster", "{}", "cluster"),
        ("DescribeTaskDefinition", "{}", "taskDefinition"),
        ("UpdateService", "{}", "service"),
        ("TagResource", r#"{"tags": []}"#, "resourceArn"),
    ] {
        let (status, headers, text) = signed_raw(&server, target, body.as_bytes()).await;
        let v = assert_error(status, &headers, &text, "InvalidParameterException");
        assert!(v["message"].as_str().unwrap().contains(member), "{target}: {text}");
    }
}

#[tokio::test]
async fn everything_survives_a_restart_on_the_same_data_directory() {
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create_cluster()
        .cluster_name("durable")
        .tags(Tag::builder().key("k").value("v").build())
        .send()
        .await
        .unwrap();
    create_cluster(&client, "gone").await;
    client.delete_cluster().cluster("gone").send().await.unwrap();
    for _ in 0..3 {
        register_td(&client, "web").await;
    }
    client.deregister_task_definition().task_definition("web:1").send().await.unwrap();
    let instance = register_instance(&client, "durable").await;
    client
        .update_container_instances_state()
        .cluster("durable")
        .container_instances(&instance)
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    client
        .put_attributes()
        .cluster("durable")
        .attributes(
            aws_sdk_ecs::types::Attribute::builder().name("stack").value("prod").target_id(&instance).build().unwrap(),
        )
        .send()
        .await
        .unwrap();
    let svc = client
        .create_service()
        .cluster("durable")
        .service_name("api")
        .task_definition("web:3")
        .desired_count(0)
        .client_token("restart-token")
        .send()
        .await
        .unwrap()
        .service
        .unwrap();
    let page = client.list_task_definitions().max_results(1).send().await.unwrap();
    let token = page.next_token().unwrap().to_string();

    let dir = server.stop().await;
    let server = TestServer::start_with(AuthMode::Verify, dir).await;
    let client = server.client();

    let c = client
        .describe_clusters()
        .clusters("durable")
        .clusters("gone")
        .include(ClusterField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(c.clusters()[0].status(), Some("ACTIVE"));
    assert_eq!(c.clusters()[0].tags(), [Tag::builder().key("k").value("v").build()]);
    assert_eq!(c.clusters()[0].registered_container_instances_count(), 1);
    assert_eq!(c.clusters()[0].active_services_count(), 1);
    assert_eq!(c.clusters()[1].status(), Some("INACTIVE"));

    let td1 = client.describe_task_definition().task_definition("web:1").send().await.unwrap();
    assert_eq!(td1.task_definition().unwrap().status(), Some(&TaskDefinitionStatus::Inactive));
    let latest = client.describe_task_definition().task_definition("web").send().await.unwrap();
    assert_eq!(latest.task_definition().unwrap().revision(), 3);
    // Revisions keep counting from where they were.
    assert_eq!(register_td(&client, "web").await.revision(), 4);

    let ci =
        client.describe_container_instances().cluster("durable").container_instances(&instance).send().await.unwrap();
    let ci = &ci.container_instances()[0];
    assert_eq!(ci.status(), Some("DRAINING"));
    assert!(ci.attributes().iter().any(|a| a.name() == "stack" && a.value() == Some("prod")));

    let s = client.describe_services().cluster("durable").services("api").send().await.unwrap();
    assert_eq!(s.services()[0].service_arn(), svc.service_arn());
    assert_eq!(s.services()[0].status(), Some("ACTIVE"));
    // A clientToken used before the restart still answers the same service.
    let again = client
        .create_service()
        .cluster("durable")
        .service_name("api")
        .task_definition("web:3")
        .desired_count(0)
        .client_token("restart-token")
        .send()
        .await
        .unwrap()
        .service
        .unwrap();
    assert_eq!(again.created_at(), svc.created_at());
    // So does a page token issued before it.
    let next = client.list_task_definitions().max_results(1).next_token(&token).send().await.unwrap();
    assert_eq!(next.task_definition_arns().len(), 1);
    assert_ne!(next.task_definition_arns(), page.task_definition_arns());
}
