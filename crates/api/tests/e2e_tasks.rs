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
async fn run_task_needs_a_connected_agent() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "web").await;
    // No instances at all: MISSING.
    let out = client.run_task().task_definition("web").send().await.expect("run task");
    assert!(out.tasks().is_empty());
    assert_eq!(out.failures()[0].reason(), Some("MISSING"));
    // An instance whose agent is not connected takes no tasks, as on ECS.
    register_instance(&client, "default").await;
    let out = client.run_task().task_definition("web").count(2).send().await.expect("run task");
    assert!(out.tasks().is_empty());
    assert_eq!(out.failures()[0].reason(), Some("AGENT"));
    assert!(client.list_tasks().send().await.unwrap().task_arns().is_empty());
    expect_code(client.run_task().task_definition("web").count(11).send().await, "InvalidParameterException");
    let msg = expect_code(
        client
            .run_task()
            .task_definition("web")
            .placement_constraints(
                aws_sdk_ecs::types::PlacementConstraint::builder()
                    .r#type(aws_sdk_ecs::types::PlacementConstraintType::MemberOf)
                    .expression("attribute:ecs.instance-type =! t2.micro")
                    .build(),
            )
            .send()
            .await,
        "InvalidParameterException",
    );
    assert!(msg.contains("column"), "{msg}");
}

fn remaining(ci: &aws_sdk_ecs::types::ContainerInstance, name: &str) -> i32 {
    ci.remaining_resources().iter().find(|r| r.name() == Some(name)).map(|r| r.integer_value()).unwrap_or(-1)
}

#[tokio::test]
async fn start_task_reserves_resources_on_the_named_instance() {
    use aws_sdk_ecs::types::{ContainerDefinition, PortMapping};
    let server = TestServer::start().await;
    let client = server.client();
    let arn = register_instance(&client, "default").await;
    // 1024 MiB and a fixed host port 8080 per task, on an instance with 4096 MiB.
    let big = ContainerDefinition::builder()
        .name("web")
        .image("nginx")
        .memory(1024)
        .cpu(256)
        .port_mappings(PortMapping::builder().container_port(80).host_port(8080).build())
        .build();
    client.register_task_definition().family("big").container_definitions(big).send().await.expect("register");
    let version = |ci: &aws_sdk_ecs::operation::describe_container_instances::DescribeContainerInstancesOutput| {
        ci.container_instances()[0].version()
    };
    let fresh = version(&client.describe_container_instances().container_instances(&arn).send().await.unwrap());
    let out = client
        .start_task()
        .task_definition("big")
        .container_instances(&arn)
        .started_by("tester")
        .send()
        .await
        .expect("start task");
    assert!(out.failures().is_empty(), "{:?}", out.failures());
    let task = &out.tasks()[0];
    assert_eq!(task.container_instance_arn(), Some(arn.as_str()));
    assert_eq!(task.desired_status(), Some("RUNNING"));
    assert_eq!(task.last_status(), Some("PENDING"));
    assert_eq!(task.group(), Some("family:big"));
    assert_eq!(task.started_by(), Some("tester"));
    assert_eq!(task.containers().len(), 1);
    let described = client.describe_container_instances().container_instances(&arn).send().await.unwrap();
    // As on ECS, a placement is a change of the instance: its version counts it.
    let placed_one = version(&described);
    assert_eq!(placed_one, fresh + 1);
    let ci = &described.container_instances()[0];
    assert_eq!(remaining(ci, "MEMORY"), 4096 - 1024);
    assert_eq!(remaining(ci, "CPU"), 2048 - 256);
    assert!(ci
        .remaining_resources()
        .iter()
        .any(|r| r.name() == Some("PORTS") && r.string_set_value().contains(&"8080".to_string())));
    assert_eq!(ci.pending_tasks_count(), 1);

    // The same fixed host port cannot be taken twice on one instance.
    let again = client.start_task().task_definition("big").container_instances(&arn).send().await.unwrap();
    assert!(again.tasks().is_empty());
    assert_eq!(again.failures()[0].reason(), Some("RESOURCE:PORTS"));

    // Memory runs out before CPU: three more 1024 MiB tasks without ports fit, the fourth does not.
    let small = ContainerDefinition::builder().name("app").image("busybox").memory(1024).build();
    client.register_task_definition().family("mem").container_definitions(small).send().await.unwrap();
    for _ in 0..3 {
        let r = client.start_task().task_definition("mem").container_instances(&arn).send().await.unwrap();
        assert!(r.failures().is_empty(), "{:?}", r.failures());
    }
    let full = client.start_task().task_definition("mem").container_instances(&arn).send().await.unwrap();
    assert_eq!(full.failures()[0].reason(), Some("RESOURCE:MEMORY"));
    // Three more placements; the refused ones changed nothing.
    let now = version(&client.describe_container_instances().container_instances(&arn).send().await.unwrap());
    assert_eq!(now, placed_one + 3);

    // Unknown instances are MISSING; the listing sees the five tasks.
    let missing = client.start_task().task_definition("mem").container_instances("nope").send().await.unwrap();
    assert_eq!(missing.failures()[0].reason(), Some("MISSING"));
    let listed = client.list_tasks().container_instance(&arn).send().await.unwrap();
    assert_eq!(listed.task_arns().len(), 4);
    let by_family = client.list_tasks().family("mem").send().await.unwrap();
    assert_eq!(by_family.task_arns().len(), 3);
    let by_starter = client.list_tasks().started_by("tester").send().await.unwrap();
    assert_eq!(by_starter.task_arns(), &[task.task_arn().unwrap().to_string()]);

    // Stopping a task marks it to stop; its reservation holds until its agent reports it stopped.
    let stopped = client.stop_task().task(task.task_arn().unwrap()).reason("done").send().await.unwrap();
    let t = stopped.task().unwrap();
    assert_eq!(t.desired_status(), Some("STOPPED"));
    assert_eq!(t.stop_code().map(|c| c.as_str()), Some("UserInitiated"));
    assert_eq!(t.stopped_reason(), Some("done"));
    let running = client.list_tasks().send().await.unwrap();
    assert_eq!(running.task_arns().len(), 3);
    let stopping = client.list_tasks().desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped).send().await.unwrap();
    assert_eq!(stopping.task_arns().len(), 1);
}

#[tokio::test]
async fn start_task_checks_its_input() {
    let server = TestServer::start().await;
    let client = server.client();
    let arn = register_instance(&client, "default").await;
    register_td(&client, "web").await;
    expect_code(client.start_task().task_definition("nope").container_instances(&arn).send().await, "ClientException");
    let over = aws_sdk_ecs::types::TaskOverride::builder()
        .container_overrides(aws_sdk_ecs::types::ContainerOverride::builder().name("ghost").build())
        .build();
    let msg = expect_code(
        client.start_task().task_definition("web").container_instances(&arn).overrides(over).send().await,
        "InvalidParameterException",
    );
    assert!(msg.contains("ghost"), "{msg}");
    // Sizes that cannot be: each refused, naming what is wrong.
    let web = || aws_sdk_ecs::types::ContainerOverride::builder().name("web");
    let bad = [
        (aws_sdk_ecs::types::TaskOverride::builder().cpu("lots").build(), "overrides.cpu"),
        (aws_sdk_ecs::types::TaskOverride::builder().memory("2 TBs").build(), "overrides.memory"),
        (aws_sdk_ecs::types::TaskOverride::builder().container_overrides(web().cpu(-1).build()).build(), "cpu"),
        (aws_sdk_ecs::types::TaskOverride::builder().container_overrides(web().memory(4).build()).build(), "6 MiB"),
    ];
    for (over, says) in bad {
        let msg = expect_code(
            client.start_task().task_definition("web").container_instances(&arn).overrides(over).send().await,
            "InvalidParameterException",
        );
        assert!(msg.contains(says), "{says}: {msg}");
    }
    let eleven: Vec<String> = (0..11).map(|_| arn.clone()).collect();
    expect_code(
        client.start_task().task_definition("web").set_container_instances(Some(eleven)).send().await,
        "InvalidParameterException",
    );
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

#[tokio::test]
async fn task_level_overrides_become_the_tasks_cpu_and_memory() {
    use aws_sdk_ecs::types::{ContainerDefinition, TaskOverride};
    let server = TestServer::start().await;
    let client = server.client();
    let arn = register_instance(&client, "default").await;
    let def = ContainerDefinition::builder().name("app").image("busybox").memory(64).build();
    client.register_task_definition().family("tiny").container_definitions(def).send().await.unwrap();
    let over = TaskOverride::builder().cpu("128").memory("256").build();
    let r = client.start_task().task_definition("tiny").container_instances(&arn).overrides(over).send().await.unwrap();
    assert!(r.failures().is_empty(), "{:?}", r.failures());
    assert_eq!((r.tasks()[0].cpu(), r.tasks()[0].memory()), (Some("128"), Some("256")));
    let ci = client.describe_container_instances().container_instances(&arn).send().await.unwrap();
    let mem = ci.container_instances()[0]
        .remaining_resources()
        .iter()
        .find(|r| r.name() == Some("MEMORY"))
        .map(|r| r.integer_value());
    assert_eq!(mem, Some(4096 - 256), "the override is what the task reserves");
}
