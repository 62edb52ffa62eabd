//! Tasks end to end through the official SDK: DescribeTasks, ListTasks and StopTask on clusters
//! without tasks, and RunTask/StartTask, which are not served yet.

mod common;

use aws_sdk_ecs::types::{DesiredStatus, LaunchType, TaskField};
use common::*;

#[tokio::test]
async fn describe_reports_unknown_tasks_as_missing() {
    let server = TestServer::start().await;
    let client = server.client();
    let arn = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task/default/0123456789abcdef0123456789abcdef");
    let out = client
        .describe_tasks()
        .tasks("fedcba9876543210fedcba9876543210")
        .tasks(&arn)
        .include(TaskField::Tags)
        .send()
        .await
        .unwrap();
    assert!(out.tasks().is_empty());
    assert_eq!(out.failures().len(), 2);
    assert!(out.failures().iter().all(|f| f.reason() == Some("MISSING")));
    // A short ID comes back as an ARN (ECS's exact ARN form for a missing ID is not documented).
    let missing = out.failures()[0].arn().unwrap_or("");
    assert!(missing.starts_with(&format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task/")), "{missing}");
    assert!(missing.ends_with("/fedcba9876543210fedcba9876543210"), "{missing}");
    assert_eq!(out.failures()[1].arn(), Some(arn.as_str()));
}

#[tokio::test]
async fn describe_takes_one_to_one_hundred_tasks() {
    let server = TestServer::start().await;
    let client = server.client();
    expect_code(client.describe_tasks().set_tasks(Some(vec![])).send().await, "InvalidParameterException");
    let many: Vec<String> = (0..101).map(|i| format!("{i:032x}")).collect();
    expect_code(client.describe_tasks().set_tasks(Some(many)).send().await, "InvalidParameterException");
    let hundred: Vec<String> = (0..100).map(|i| format!("{i:032x}")).collect();
    let out = client.describe_tasks().set_tasks(Some(hundred)).send().await.unwrap();
    assert_eq!(out.failures().len(), 100);
}

#[tokio::test]
async fn list_on_an_empty_cluster_is_empty_for_every_filter() {
    let server = TestServer::start().await;
    let client = server.client();
    create_cluster(&client, "quiet").await;
    register_td(&client, "web").await;
    let arn = register_instance(&client, "quiet").await;

    let out = client.list_tasks().cluster("quiet").send().await.unwrap();
    assert!(out.task_arns().is_empty());
    assert!(out.next_token().is_none());
    for status in [DesiredStatus::Running, DesiredStatus::Pending, DesiredStatus::Stopped] {
        let out = client.list_tasks().cluster("quiet").desired_status(status).send().await.unwrap();
        assert!(out.task_arns().is_empty());
    }
    let filtered = client
        .list_tasks()
        .cluster("quiet")
        .family("web")
        .started_by("me")
        .container_instance(&arn)
        .launch_type(LaunchType::Ec2)
        .send()
        .await
        .unwrap();
    assert!(filtered.task_arns().is_empty());
    let paged: Vec<String> = client
        .list_tasks()
        .cluster("quiet")
        .into_paginator()
        .page_size(5)
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert!(paged.is_empty());
}

#[tokio::test]
async fn list_by_an_unknown_service_is_service_not_found() {
    let server = TestServer::start().await;
    let client = server.client();
    expect_code(client.list_tasks().service_name("nope").send().await, "ServiceNotFoundException");
}

#[tokio::test]
async fn stop_of_an_unknown_task_is_an_invalid_parameter() {
    let server = TestServer::start().await;
    let client = server.client();
    let msg = expect_code(
        client.stop_task().task("0123456789abcdef0123456789abcdef").reason("test").send().await,
        "InvalidParameterException",
    );
    assert_eq!(msg, "The referenced task was not found.");
    let arn = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task/default/0123456789abcdef0123456789abcdef");
    expect_code(client.stop_task().task(arn).send().await, "InvalidParameterException");
}

#[tokio::test]
async fn run_task_and_start_task_are_not_supported_yet() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "web").await;
    let msg = expect_code(client.run_task().task_definition("web").send().await, "UnsupportedFeatureException");
    assert!(msg.contains("RunTask"), "{msg}");
    let arn = register_instance(&client, "default").await;
    let msg = expect_code(
        client.start_task().task_definition("web").container_instances(arn).send().await,
        "UnsupportedFeatureException",
    );
    assert!(msg.contains("StartTask"), "{msg}");
    // Nothing was started.
    assert!(client.list_tasks().send().await.unwrap().task_arns().is_empty());
}

#[tokio::test]
async fn every_task_call_needs_a_known_cluster() {
    let server = TestServer::start().await;
    let client = server.client();
    let c = "no-such-cluster";
    let nf = "ClusterNotFoundException";
    expect_code(client.describe_tasks().cluster(c).tasks("x").send().await, nf);
    expect_code(client.list_tasks().cluster(c).send().await, nf);
    expect_code(client.stop_task().cluster(c).task("x").send().await, nf);
    let arn = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{c}");
    expect_code(client.list_tasks().cluster(arn).send().await, nf);
}
