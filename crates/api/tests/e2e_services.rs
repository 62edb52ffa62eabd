//! Services end to end through the official SDK: CreateService (validation, the record's shape,
//! clientToken idempotency), DescribeServices, ListServices, UpdateService and DeleteService
//! (ACTIVE, DRAINING, INACTIVE).

mod common;

use aws_sdk_ecs::types::{
    AwsVpcConfiguration, DeploymentConfiguration, LaunchType, NetworkConfiguration, NetworkMode, PlacementStrategy,
    PlacementStrategyType, SchedulingStrategy, ServiceField, Tag,
};
use common::*;

fn service_arn(cluster: &str, name: &str) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT}:service/{cluster}/{name}")
}

fn td_arn(family: &str, revision: i32) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:{revision}")
}

fn vpc() -> NetworkConfiguration {
    NetworkConfiguration::builder()
        .awsvpc_configuration(AwsVpcConfiguration::builder().subnets("subnet-12345").build().unwrap())
        .build()
}

async fn describe_one(client: &aws_sdk_ecs::Client, cluster: &str, name: &str) -> aws_sdk_ecs::types::Service {
    let out = client.describe_services().cluster(cluster).services(name).send().await.unwrap();
    assert!(out.failures().is_empty(), "{:?}", out.failures());
    out.services()[0].clone()
}

async fn wait_inactive(client: &aws_sdk_ecs::Client, cluster: &str, name: &str) {
    eventually("the service is INACTIVE", || {
        let client = client.clone();
        let (cluster, name) = (cluster.to_string(), name.to_string());
        async move { (describe_one(&client, &cluster, &name).await.status() == Some("INACTIVE")).then_some(()) }
    })
    .await
}

async fn active_services(client: &aws_sdk_ecs::Client, cluster: &str) -> i32 {
    client.describe_clusters().clusters(cluster).send().await.unwrap().clusters()[0].active_services_count()
}

#[tokio::test]
async fn create_returns_an_active_service_with_one_primary_deployment() {
    let server = TestServer::start().await;
    let client = server.client();
    create_cluster(&client, "apps").await;
    register_td(&client, "web").await;
    let svc = client
        .create_service()
        .cluster("apps")
        .service_name("web")
        .task_definition("web")
        .desired_count(2)
        .tags(Tag::builder().key("tier").value("front").build())
        .send()
        .await
        .unwrap()
        .service
        .unwrap();
    assert_eq!(svc.service_name(), Some("web"));
    assert_eq!(svc.service_arn(), Some(service_arn("apps", "web").as_str()));
    assert_eq!(svc.cluster_arn(), Some(format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/apps").as_str()));
    assert_eq!(svc.status(), Some("ACTIVE"));
    assert_eq!(svc.desired_count(), 2);
    assert_eq!(svc.running_count(), 0);
    assert_eq!(svc.task_definition(), Some(td_arn("web", 1).as_str()));
    assert_eq!(svc.launch_type(), Some(&LaunchType::Ec2));
    assert_eq!(svc.scheduling_strategy(), Some(&SchedulingStrategy::Replica));
    assert!(svc.created_at().is_some());
    let dc = svc.deployment_configuration().unwrap();
    assert_eq!(dc.maximum_percent(), Some(200));
    assert_eq!(dc.minimum_healthy_percent(), Some(100));
    assert_eq!(svc.deployments().len(), 1);
    let d = &svc.deployments()[0];
    assert_eq!(d.status(), Some("PRIMARY"));
    assert_eq!(d.task_definition(), Some(td_arn("web", 1).as_str()));
    assert_eq!(d.desired_count(), 2);
    assert!(d.id().unwrap_or("").starts_with("ecs-svc/"), "{:?}", d.id());
    assert_eq!(svc.tags(), [Tag::builder().key("tier").value("front").build()]);
    assert_eq!(active_services(&client, "apps").await, 1);

    let described = describe_one(&client, "apps", "web").await;
    assert_eq!(described.service_arn(), svc.service_arn());
    assert!(described.tags().is_empty(), "tags only with include TAGS");
    let with_tags = client
        .describe_services()
        .cluster("apps")
        .services(service_arn("apps", "web"))
        .include(ServiceField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(with_tags.services()[0].tags(), [Tag::builder().key("tier").value("front").build()]);
}

#[tokio::test]
async fn daemon_services_default_to_100_and_0_percent() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "agent").await;
    let svc = client
        .create_service()
        .service_name("agent")
        .task_definition("agent")
        .scheduling_strategy(SchedulingStrategy::Daemon)
        .send()
        .await
        .unwrap()
        .service
        .unwrap();
    assert_eq!(svc.scheduling_strategy(), Some(&SchedulingStrategy::Daemon));
    let dc = svc.deployment_configuration().unwrap();
    assert_eq!(dc.maximum_percent(), Some(100));
    assert_eq!(dc.minimum_healthy_percent(), Some(0));
}

#[tokio::test]
async fn create_validates_the_request() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "web").await;
    client
        .register_task_definition()
        .family("vpcapp")
        .network_mode(NetworkMode::Awsvpc)
        .container_definitions(container("app"))
        .send()
        .await
        .unwrap();
    let base = |name: &str| client.create_service().service_name(name).desired_count(1);

    let msg = expect_code(base("a").task_definition("ghost").send().await, "ClientException");
    assert_eq!(msg, "TaskDefinition not found.");
    let msg = expect_code(base("a").task_definition("web:9").send().await, "ClientException");
    assert_eq!(msg, "TaskDefinition not found.");

    let msg = expect_code(base("b").task_definition("vpcapp").send().await, "InvalidParameterException");
    assert!(msg.contains("Network Configuration must be provided"), "{msg}");
    let msg = expect_code(
        base("b").task_definition("web").network_configuration(vpc()).send().await,
        "InvalidParameterException",
    );
    assert!(msg.contains("Network Configuration"), "{msg}");

    let msg = expect_code(
        client
            .create_service()
            .service_name("c")
            .task_definition("web")
            .scheduling_strategy(SchedulingStrategy::Daemon)
            .desired_count(2)
            .send()
            .await,
        "InvalidParameterException",
    );
    assert!(msg.contains("desired count"), "{msg}");

    let binpack_by_instance =
        PlacementStrategy::builder().r#type(PlacementStrategyType::Binpack).field("instanceId").build();
    let msg = expect_code(
        base("d").task_definition("web").placement_strategy(binpack_by_instance).send().await,
        "InvalidParameterException",
    );
    assert!(msg.contains("instanceId"), "{msg}");
    let spread_by_cpu = PlacementStrategy::builder().r#type(PlacementStrategyType::Spread).field("cpu").build();
    expect_code(
        base("d").task_definition("web").placement_strategy(spread_by_cpu).send().await,
        "InvalidParameterException",
    );

    let msg = expect_code(base("bad name").task_definition("web").send().await, "InvalidParameterException");
    assert!(msg.contains("service name"), "{msg}");

    let msg = expect_code(
        base("e").task_definition("web").launch_type(LaunchType::Fargate).network_configuration(vpc()).send().await,
        "InvalidParameterException",
    );
    assert!(msg.contains("FARGATE"), "{msg}");

    expect_code(base("f").task_definition("web").desired_count(-1).send().await, "InvalidParameterException");

    // ECS's answers real clients depend on: no subnets, a platform version on the default EC2
    // launch type, a role without load balancers.
    let no_subnets = aws_sdk_ecs::types::NetworkConfiguration::builder()
        .awsvpc_configuration(
            aws_sdk_ecs::types::AwsVpcConfiguration::builder().set_subnets(Some(vec![])).build().unwrap(),
        )
        .build();
    let msg = expect_code(
        base("h").task_definition("vpcapp").network_configuration(no_subnets.clone()).send().await,
        "InvalidParameterException",
    );
    assert_eq!(msg, "subnets can not be empty.");
    let msg = expect_code(
        base("h").task_definition("web").platform_version("LATEST").send().await,
        "InvalidParameterException",
    );
    assert_eq!(msg, "The platform version must be null when specifying an EC2 launch type.");
    let msg =
        expect_code(base("h").task_definition("web").role("ecsServiceRole").send().await, "InvalidParameterException");
    assert_eq!(msg, "A role was passed, but no load balancers were present.");
    expect_code(base("g").cluster("nowhere").task_definition("web").send().await, "ClusterNotFoundException");

    // None of them created a service.
    assert!(client.list_services().send().await.unwrap().service_arns().is_empty());
    assert_eq!(active_services(&client, "default").await, 0);
}

#[tokio::test]
async fn an_inactive_task_definition_cannot_back_a_service() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "old").await;
    client.deregister_task_definition().task_definition("old:1").send().await.unwrap();
    let msg = expect_code(
        client.create_service().service_name("s").task_definition("old:1").desired_count(0).send().await,
        "ClientException",
    );
    assert_eq!(msg, "TaskDefinition is inactive.");
    // By family alone there is no ACTIVE revision left to find.
    expect_code(
        client.create_service().service_name("s").task_definition("old").desired_count(0).send().await,
        "ClientException",
    );
}

#[tokio::test]
async fn client_token_makes_create_idempotent() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "web").await;
    let create =
        || client.create_service().service_name("idem").task_definition("web").desired_count(1).client_token("token-1");
    let first = create().send().await.unwrap().service.unwrap();
    let second = create().send().await.unwrap().service.unwrap();
    assert_eq!(first.service_arn(), second.service_arn());
    assert_eq!(first.created_at(), second.created_at());
    assert_eq!(first.deployments()[0].id(), second.deployments()[0].id(), "the same service, not a new one");
    assert_eq!(client.list_services().send().await.unwrap().service_arns().len(), 1);

    // The same name without the token is a second creation, which ECS refuses.
    let msg = expect_code(
        client.create_service().service_name("idem").task_definition("web").desired_count(3).send().await,
        "InvalidParameterException",
    );
    assert_eq!(msg, "Creation of service was not idempotent.");
    assert_eq!(describe_one(&client, "default", "idem").await.desired_count(), 1);
}

#[tokio::test]
async fn describe_reports_unknown_services_as_missing() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "web").await;
    client.create_service().service_name("real").task_definition("web").desired_count(0).send().await.unwrap();
    let out = client
        .describe_services()
        .services("real")
        .services("ghost")
        .services(service_arn("default", "ghost2"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.services().len(), 1);
    assert_eq!(out.failures().len(), 2);
    assert!(out.failures().iter().all(|f| f.reason() == Some("MISSING")));
    // A name comes back as an ARN (ECS's exact ARN form for a missing name is not documented).
    let missing = out.failures()[0].arn().unwrap_or("");
    assert!(missing.starts_with(&format!("arn:aws:ecs:{REGION}:{ACCOUNT}:service/")), "{missing}");
    assert!(missing.ends_with("/ghost"), "{missing}");
    assert_eq!(out.failures()[1].arn(), Some(service_arn("default", "ghost2").as_str()));
    expect_code(client.describe_services().set_services(Some(vec![])).send().await, "InvalidParameterException");
    let eleven: Vec<String> = (0..11).map(|i| format!("s{i}")).collect();
    expect_code(client.describe_services().set_services(Some(eleven)).send().await, "InvalidParameterException");
}

#[tokio::test]
async fn list_pages_ten_services_at_a_time_by_default() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "web").await;
    for i in 0..12 {
        client
            .create_service()
            .service_name(format!("svc-{i:02}"))
            .task_definition("web")
            .desired_count(0)
            .send()
            .await
            .unwrap();
    }
    let first = client.list_services().send().await.unwrap();
    assert_eq!(first.service_arns().len(), 10);
    let token = first.next_token().expect("a token for the rest");
    let second = client.list_services().next_token(token).send().await.unwrap();
    assert_eq!(second.service_arns().len(), 2);
    assert!(second.next_token().is_none());

    let mut all: Vec<String> =
        client.list_services().into_paginator().items().send().collect::<Result<Vec<_>, _>>().await.unwrap();
    all.sort();
    assert_eq!(all, (0..12).map(|i| service_arn("default", &format!("svc-{i:02}"))).collect::<Vec<_>>());
    let big = client.list_services().max_results(100).send().await.unwrap();
    assert_eq!(big.service_arns().len(), 12);
    let filtered = client.list_services().launch_type(LaunchType::Fargate).send().await.unwrap();
    assert!(filtered.service_arns().is_empty());
}

#[tokio::test]
async fn update_with_a_new_revision_starts_a_new_primary_deployment() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "web").await;
    register_td(&client, "web").await;
    let created = client
        .create_service()
        .service_name("roll")
        .task_definition("web:1")
        .desired_count(0)
        .send()
        .await
        .unwrap()
        .service
        .unwrap();
    let old_id = created.deployments()[0].id().unwrap().to_string();

    let updated =
        client.update_service().service("roll").task_definition("web:2").send().await.unwrap().service.unwrap();
    assert_eq!(updated.task_definition(), Some(td_arn("web", 2).as_str()));
    let primary: Vec<_> = updated.deployments().iter().filter(|d| d.status() == Some("PRIMARY")).collect();
    assert_eq!(primary.len(), 1, "{:?}", updated.deployments());
    assert_eq!(primary[0].task_definition(), Some(td_arn("web", 2).as_str()));
    assert_ne!(primary[0].id(), Some(old_id.as_str()));
    let old = updated.deployments().iter().find(|d| d.id() == Some(old_id.as_str())).expect("old deployment");
    assert_eq!(old.status(), Some("ACTIVE"));
    assert_eq!(old.task_definition(), Some(td_arn("web", 1).as_str()));

    // The service's own view follows the update.
    let described = describe_one(&client, "default", "roll").await;
    assert_eq!(described.task_definition(), Some(td_arn("web", 2).as_str()));
    let primary = described.deployments().iter().find(|d| d.status() == Some("PRIMARY")).unwrap();
    assert_eq!(primary.task_definition(), Some(td_arn("web", 2).as_str()));
}

#[tokio::test]
async fn update_of_the_desired_count_keeps_the_deployment() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "web").await;
    let created = client
        .create_service()
        .service_name("scale")
        .task_definition("web")
        .desired_count(0)
        .send()
        .await
        .unwrap()
        .service
        .unwrap();
    let updated = client.update_service().service("scale").desired_count(4).send().await.unwrap().service.unwrap();
    assert_eq!(updated.desired_count(), 4);
    assert_eq!(updated.deployments().len(), 1);
    assert_eq!(updated.deployments()[0].id(), created.deployments()[0].id());
    assert_eq!(updated.deployments()[0].desired_count(), 4);
    assert_eq!(describe_one(&client, "default", "scale").await.desired_count(), 4);

    let conf = DeploymentConfiguration::builder().maximum_percent(150).minimum_healthy_percent(50).build();
    let updated =
        client.update_service().service("scale").deployment_configuration(conf).send().await.unwrap().service.unwrap();
    let dc = updated.deployment_configuration().unwrap();
    assert_eq!((dc.maximum_percent(), dc.minimum_healthy_percent()), (Some(150), Some(50)));

    let msg =
        expect_code(client.update_service().service("scale").task_definition("ghost").send().await, "ClientException");
    assert_eq!(msg, "TaskDefinition not found.");
    assert_eq!(describe_one(&client, "default", "scale").await.task_definition(), Some(td_arn("web", 1).as_str()));
}

#[tokio::test]
async fn update_of_an_unknown_service_is_service_not_found() {
    let server = TestServer::start().await;
    let client = server.client();
    expect_code(client.update_service().service("ghost").desired_count(1).send().await, "ServiceNotFoundException");
    expect_code(
        client.update_service().service(service_arn("default", "ghost")).desired_count(1).send().await,
        "ServiceNotFoundException",
    );
    expect_code(client.delete_service().service("ghost").send().await, "ServiceNotFoundException");
}

#[tokio::test]
async fn delete_drains_then_retires_the_service() {
    let server = TestServer::start().await;
    let client = server.client();
    create_cluster(&client, "del").await;
    register_td(&client, "web").await;
    client
        .create_service()
        .cluster("del")
        .service_name("busy")
        .task_definition("web")
        .desired_count(2)
        .send()
        .await
        .unwrap();
    assert_eq!(active_services(&client, "del").await, 1);

    let msg =
        expect_code(client.delete_service().cluster("del").service("busy").send().await, "InvalidParameterException");
    assert!(msg.contains("scaled above 0"), "{msg}");
    assert_eq!(describe_one(&client, "del", "busy").await.status(), Some("ACTIVE"));

    let deleted =
        client.delete_service().cluster("del").service("busy").force(true).send().await.unwrap().service.unwrap();
    assert_eq!(deleted.status(), Some("DRAINING"));
    assert_eq!(deleted.desired_count(), 0);
    // DRAINING or already INACTIVE, the service takes no more updates.
    expect_code(
        client.update_service().cluster("del").service("busy").desired_count(1).send().await,
        "ServiceNotActiveException",
    );
    assert_eq!(active_services(&client, "del").await, 0);

    wait_inactive(&client, "del", "busy").await;
    expect_code(
        client.update_service().cluster("del").service("busy").desired_count(1).send().await,
        "ServiceNotActiveException",
    );
    let listed = client.list_services().cluster("del").send().await.unwrap();
    assert!(listed.service_arns().is_empty(), "{:?}", listed.service_arns());

    // The name is free again once the old service is INACTIVE.
    let again = client
        .create_service()
        .cluster("del")
        .service_name("busy")
        .task_definition("web")
        .desired_count(0)
        .send()
        .await
        .unwrap()
        .service
        .unwrap();
    assert_eq!(again.status(), Some("ACTIVE"));
    assert_eq!(active_services(&client, "del").await, 1);
}

#[tokio::test]
async fn a_service_scaled_to_zero_deletes_without_force() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "web").await;
    client.create_service().service_name("idle").task_definition("web").desired_count(0).send().await.unwrap();
    let deleted = client.delete_service().service("idle").send().await.unwrap().service.unwrap();
    assert_eq!(deleted.status(), Some("DRAINING"));
    wait_inactive(&client, "default", "idle").await;
}

#[tokio::test]
async fn every_service_call_needs_a_known_cluster() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "web").await;
    let c = "no-such-cluster";
    let nf = "ClusterNotFoundException";
    expect_code(client.describe_services().cluster(c).services("x").send().await, nf);
    expect_code(client.list_services().cluster(c).send().await, nf);
    expect_code(client.update_service().cluster(c).service("x").desired_count(1).send().await, nf);
    expect_code(client.delete_service().cluster(c).service("x").send().await, nf);
}

#[tokio::test]
async fn update_refuses_what_ecs_refuses() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "web").await;
    client.create_service().service_name("s").task_definition("web").desired_count(0).send().await.unwrap();
    let msg = expect_code(
        client.update_service().service("s").platform_version("1.4.0").send().await,
        "InvalidParameterException",
    );
    assert_eq!(msg, "The platform version must be null when specifying an EC2 launch type.");
    let no_subnets = NetworkConfiguration::builder()
        .awsvpc_configuration(
            aws_sdk_ecs::types::AwsVpcConfiguration::builder().set_subnets(Some(vec![])).build().unwrap(),
        )
        .build();
    let msg = expect_code(
        client.update_service().service("s").network_configuration(no_subnets).send().await,
        "InvalidParameterException",
    );
    assert_eq!(msg, "subnets can not be empty.");
    // Neither changed the service: still one deployment.
    assert_eq!(describe_one(&client, "default", "s").await.deployments().len(), 1);
}
