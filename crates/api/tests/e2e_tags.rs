//! Tags end to end through the official SDK: TagResource, UntagResource and ListTagsForResource on
//! clusters, task definitions, container instances and services.

mod common;

use aws_sdk_ecs::types::Tag;
use common::*;

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

async fn tags_of(client: &aws_sdk_ecs::Client, arn: &str) -> Vec<Tag> {
    let mut tags = client.list_tags_for_resource().resource_arn(arn).send().await.unwrap().tags().to_vec();
    tags.sort_by(|a, b| a.key().cmp(&b.key()));
    tags
}

/// Tags, retags, untags and lists one resource.
async fn exercise(client: &aws_sdk_ecs::Client, arn: &str) {
    assert!(tags_of(client, arn).await.is_empty(), "{arn} starts untagged");
    client.tag_resource().resource_arn(arn).tags(tag("a", "1")).tags(tag("b", "2")).send().await.unwrap();
    assert_eq!(tags_of(client, arn).await, [tag("a", "1"), tag("b", "2")], "{arn}");
    // A key tagged again takes the new value.
    client.tag_resource().resource_arn(arn).tags(tag("b", "3")).tags(tag("c", "")).send().await.unwrap();
    assert_eq!(tags_of(client, arn).await, [tag("a", "1"), tag("b", "3"), tag("c", "")], "{arn}");
    client.untag_resource().resource_arn(arn).tag_keys("a").tag_keys("c").tag_keys("never-there").send().await.unwrap();
    assert_eq!(tags_of(client, arn).await, [tag("b", "3")], "{arn}");
}

#[tokio::test]
async fn clusters_task_definitions_instances_and_services_take_tags() {
    let server = TestServer::start().await;
    let client = server.client();
    create_cluster(&client, "tagged").await;
    let td = register_td(&client, "web").await;
    let instance = register_instance(&client, "tagged").await;
    let svc = client
        .create_service()
        .cluster("tagged")
        .service_name("api")
        .task_definition("web")
        .desired_count(0)
        .send()
        .await
        .unwrap()
        .service
        .unwrap();
    let cluster_arn = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/tagged");
    for arn in [cluster_arn.as_str(), td.task_definition_arn().unwrap(), instance.as_str(), svc.service_arn().unwrap()]
    {
        exercise(&client, arn).await;
    }
    // The tags are the resources' own, as Describe shows them.
    let c = client
        .describe_clusters()
        .clusters("tagged")
        .include(aws_sdk_ecs::types::ClusterField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(c.clusters()[0].tags(), [tag("b", "3")]);
    let s = client
        .describe_services()
        .cluster("tagged")
        .services("api")
        .include(aws_sdk_ecs::types::ServiceField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(s.services()[0].tags(), [tag("b", "3")]);
    let t = client
        .describe_task_definition()
        .task_definition("web:1")
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(t.tags(), [tag("b", "3")]);
    let i = client
        .describe_container_instances()
        .cluster("tagged")
        .container_instances(&instance)
        .include(aws_sdk_ecs::types::ContainerInstanceField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(i.container_instances()[0].tags(), [tag("b", "3")]);
}

#[tokio::test]
async fn unknown_resources_are_not_found() {
    let server = TestServer::start().await;
    let client = server.client();
    let p = format!("arn:aws:ecs:{REGION}:{ACCOUNT}");
    for arn in [
        format!("{p}:cluster/ghost"),
        format!("{p}:task-definition/ghost:1"),
        format!("{p}:container-instance/default/0123456789abcdef0123456789abcdef"),
        format!("{p}:service/default/ghost"),
        format!("{p}:task/default/0123456789abcdef0123456789abcdef"),
    ] {
        expect_code(
            client.tag_resource().resource_arn(&arn).tags(tag("a", "1")).send().await,
            "ResourceNotFoundException",
        );
        expect_code(client.untag_resource().resource_arn(&arn).tag_keys("a").send().await, "ResourceNotFoundException");
        expect_code(client.list_tags_for_resource().resource_arn(&arn).send().await, "ResourceNotFoundException");
    }
}

#[tokio::test]
async fn resources_of_a_deleted_cluster_answer_as_ecs_does() {
    let server = TestServer::start().await;
    let client = server.client();
    create_cluster(&client, "doomed").await;
    client.delete_cluster().cluster("doomed").send().await.unwrap();
    let arn = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/doomed");
    // The words Terraform's ECS tagging code matches to learn that the resource is gone.
    let msg = expect_code(client.list_tags_for_resource().resource_arn(&arn).send().await, "InvalidParameterException");
    assert_eq!(msg, "The specified cluster is inactive. Specify an active cluster and try again.");
    let msg = expect_code(
        client.tag_resource().resource_arn(&arn).tags(tag("a", "1")).send().await,
        "InvalidParameterException",
    );
    assert_eq!(msg, "The specified cluster is inactive. Specify an active cluster and try again.");
    let svc = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:service/doomed/api");
    let msg = expect_code(client.list_tags_for_resource().resource_arn(&svc).send().await, "InvalidParameterException");
    assert_eq!(msg, "The specified cluster is inactive. Specify an active cluster and try again.");
}

#[tokio::test]
async fn malformed_tags_and_arns_are_invalid_parameters() {
    let server = TestServer::start().await;
    let client = server.client();
    let arn = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/default");
    let msg = expect_code(
        client.tag_resource().resource_arn(&arn).tags(tag("aws:owner", "x")).send().await,
        "InvalidParameterException",
    );
    assert!(msg.contains("aws:"), "{msg}");
    expect_code(
        client.tag_resource().resource_arn(&arn).tags(tag("AWS:Owner", "x")).send().await,
        "InvalidParameterException",
    );
    expect_code(
        client.tag_resource().resource_arn(&arn).tags(tag(&"k".repeat(129), "x")).send().await,
        "InvalidParameterException",
    );
    expect_code(
        client.tag_resource().resource_arn(&arn).tags(tag("k", &"v".repeat(257))).send().await,
        "InvalidParameterException",
    );
    let fifty_one = (0..51).fold(client.tag_resource().resource_arn(&arn), |r, i| r.tags(tag(&format!("k{i}"), "v")));
    expect_code(fifty_one.send().await, "InvalidParameterException");
    assert!(tags_of(&client, &arn).await.is_empty(), "nothing was written");

    for bad in ["not-an-arn", "arn:aws:s3:::bucket", "arn:aws:ecs:eu-west-1:000000000000:cluster/default"] {
        expect_code(client.list_tags_for_resource().resource_arn(bad).send().await, "InvalidParameterException");
    }
    // Tags given at creation follow the same rules.
    expect_code(
        client.create_cluster().cluster_name("t").tags(tag("aws:x", "1")).send().await,
        "InvalidParameterException",
    );
    expect_code(
        client
            .register_task_definition()
            .family("t")
            .container_definitions(container("a"))
            .tags(tag("aws:x", "1"))
            .send()
            .await,
        "InvalidParameterException",
    );
}

#[tokio::test]
async fn a_resource_holds_at_most_fifty_tags() {
    let server = TestServer::start().await;
    let client = server.client();
    let arn = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/default");
    let fifty = (0..50).fold(client.tag_resource().resource_arn(&arn), |r, i| r.tags(tag(&format!("k{i}"), "v")));
    fifty.send().await.unwrap();
    expect_code(
        client.tag_resource().resource_arn(&arn).tags(tag("one-more", "v")).send().await,
        "InvalidParameterException",
    );
    // Retagging an existing key does not add one.
    client.tag_resource().resource_arn(&arn).tags(tag("k7", "w")).send().await.unwrap();
    assert_eq!(tags_of(&client, &arn).await.len(), 50);
}
