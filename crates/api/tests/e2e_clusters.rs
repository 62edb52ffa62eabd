//! Clusters end to end through the official SDK: CreateCluster, DescribeClusters, ListClusters,
//! DeleteCluster, UpdateCluster and UpdateClusterSettings, asserting what ECS documents.

mod common;

use aws_sdk_ecs::types::{ClusterField, ClusterSetting, ClusterSettingName, Tag};
use common::*;

fn insights(value: &str) -> ClusterSetting {
    ClusterSetting::builder().name(ClusterSettingName::ContainerInsights).value(value).build()
}

fn setting_value(settings: &[ClusterSetting]) -> Option<&str> {
    settings.iter().find(|s| s.name() == Some(&ClusterSettingName::ContainerInsights)).and_then(|s| s.value())
}

#[tokio::test]
async fn default_cluster_exists_from_the_start() {
    let server = TestServer::start().await;
    let client = server.client();
    let out = client.describe_clusters().send().await.unwrap();
    assert!(out.failures().is_empty(), "{:?}", out.failures());
    let c = &out.clusters()[0];
    assert_eq!(c.cluster_name(), Some("default"));
    assert_eq!(c.status(), Some("ACTIVE"));
    assert_eq!(c.cluster_arn(), Some(format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/default").as_str()));
    let arns = client.list_clusters().send().await.unwrap();
    assert_eq!(arns.cluster_arns(), [format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/default")]);
}

#[tokio::test]
async fn create_echoes_the_cluster_and_is_idempotent_for_an_active_name() {
    let server = TestServer::start().await;
    let client = server.client();
    let created = client
        .create_cluster()
        .cluster_name("prod")
        .tags(Tag::builder().key("team").value("web").build())
        .settings(insights("enabled"))
        .send()
        .await
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(created.cluster_name(), Some("prod"));
    assert_eq!(created.cluster_arn(), Some(format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/prod").as_str()));
    assert_eq!(created.status(), Some("ACTIVE"));
    assert_eq!(created.registered_container_instances_count(), 0);
    assert_eq!(created.running_tasks_count(), 0);
    assert_eq!(created.pending_tasks_count(), 0);
    assert_eq!(created.active_services_count(), 0);
    assert_eq!(created.tags(), [Tag::builder().key("team").value("web").build()]);
    assert_eq!(setting_value(created.settings()), Some("enabled"));

    // Creating it again answers the existing cluster rather than failing or resetting it.
    let again = client.create_cluster().cluster_name("prod").send().await.unwrap().cluster.unwrap();
    assert_eq!(again.cluster_arn(), created.cluster_arn());
    assert_eq!(again.status(), Some("ACTIVE"));
    let tags = client.list_tags_for_resource().resource_arn(created.cluster_arn().unwrap()).send().await.unwrap();
    assert_eq!(tags.tags(), [Tag::builder().key("team").value("web").build()]);
    let listed = client.list_clusters().send().await.unwrap();
    assert_eq!(listed.cluster_arns().iter().filter(|a| a.ends_with("/prod")).count(), 1);
}

#[tokio::test]
async fn create_without_a_name_answers_the_default_cluster() {
    let server = TestServer::start().await;
    let client = server.client();
    let c = client.create_cluster().send().await.unwrap().cluster.unwrap();
    assert_eq!(c.cluster_name(), Some("default"));
    assert_eq!(client.list_clusters().send().await.unwrap().cluster_arns().len(), 1);
}

#[tokio::test]
async fn invalid_cluster_names_are_invalid_parameters() {
    let server = TestServer::start().await;
    let client = server.client();
    for name in ["bad name", "semi;colon", "dots.not.allowed", &"x".repeat(256)] {
        let r = client.create_cluster().cluster_name(name).send().await;
        let msg = expect_code(r, "InvalidParameterException");
        assert!(msg.to_lowercase().contains("name"), "message should name the field: {msg}");
    }
    // Nothing was half-created.
    assert_eq!(client.list_clusters().send().await.unwrap().cluster_arns().len(), 1);
}

#[tokio::test]
async fn describe_includes_statistics_tags_and_settings_only_when_asked() {
    let server = TestServer::start().await;
    let client = server.client();
    client.create_cluster().cluster_name("c1").tags(Tag::builder().key("k").value("v").build()).send().await.unwrap();

    let plain = client.describe_clusters().clusters("c1").send().await.unwrap();
    let c = &plain.clusters()[0];
    assert!(c.tags().is_empty(), "tags only with include TAGS: {:?}", c.tags());
    assert!(c.statistics().is_empty(), "statistics only with include STATISTICS");
    assert!(c.settings().is_empty(), "settings only with include SETTINGS");

    let full = client
        .describe_clusters()
        .clusters("c1")
        .include(ClusterField::Statistics)
        .include(ClusterField::Tags)
        .include(ClusterField::Settings)
        .send()
        .await
        .unwrap();
    let c = &full.clusters()[0];
    assert_eq!(c.tags(), [Tag::builder().key("k").value("v").build()]);
    assert_eq!(setting_value(c.settings()), Some("disabled"), "containerInsights defaults to disabled");
    let names: Vec<&str> = c.statistics().iter().filter_map(|s| s.name()).collect();
    for expected in [
        "runningEC2TasksCount",
        "runningFargateTasksCount",
        "pendingEC2TasksCount",
        "pendingFargateTasksCount",
        "activeEC2ServiceCount",
        "activeFargateServiceCount",
        "drainingEC2ServiceCount",
        "drainingFargateServiceCount",
    ] {
        assert!(names.contains(&expected), "statistics lack {expected}: {names:?}");
    }
    assert!(c.statistics().iter().all(|s| s.value() == Some("0")));
}

#[tokio::test]
async fn statistics_count_services_by_launch_type() {
    let server = TestServer::start().await;
    let client = server.client();
    create_cluster(&client, "stats").await;
    register_td(&client, "ec2web").await;
    client
        .register_task_definition()
        .family("fgweb")
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(container("web"))
        .send()
        .await
        .unwrap();
    client
        .create_service()
        .cluster("stats")
        .service_name("a")
        .task_definition("ec2web")
        .desired_count(0)
        .send()
        .await
        .unwrap();
    client
        .create_service()
        .cluster("stats")
        .service_name("b")
        .task_definition("fgweb")
        .desired_count(0)
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .network_configuration(
            aws_sdk_ecs::types::NetworkConfiguration::builder()
                .awsvpc_configuration(
                    aws_sdk_ecs::types::AwsVpcConfiguration::builder().subnets("subnet-1").build().unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let out = client.describe_clusters().clusters("stats").include(ClusterField::Statistics).send().await.unwrap();
    let c = &out.clusters()[0];
    assert_eq!(c.active_services_count(), 2);
    let stat = |n: &str| c.statistics().iter().find(|s| s.name() == Some(n)).and_then(|s| s.value()).map(String::from);
    assert_eq!(stat("activeEC2ServiceCount").as_deref(), Some("1"));
    assert_eq!(stat("activeFargateServiceCount").as_deref(), Some("1"));
}

#[tokio::test]
async fn describe_reports_unknown_clusters_as_missing_failures() {
    let server = TestServer::start().await;
    let client = server.client();
    let arn_of_ghost = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/ghost-arn");
    let out =
        client.describe_clusters().clusters("default").clusters("ghost").clusters(&arn_of_ghost).send().await.unwrap();
    assert_eq!(out.clusters().len(), 1);
    assert_eq!(out.failures().len(), 2);
    for f in out.failures() {
        assert_eq!(f.reason(), Some("MISSING"));
    }
    assert_eq!(out.failures()[0].arn(), Some(format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/ghost").as_str()));
    assert_eq!(out.failures()[1].arn(), Some(arn_of_ghost.as_str()));
}

#[tokio::test]
async fn list_pages_through_every_cluster_with_the_sdk_paginator() {
    let server = TestServer::start().await;
    let client = server.client();
    for i in 0..7 {
        create_cluster(&client, &format!("page-{i}")).await;
    }
    let first = client.list_clusters().max_results(3).send().await.unwrap();
    assert_eq!(first.cluster_arns().len(), 3);
    assert!(first.next_token().is_some());

    let all: Vec<String> = client
        .list_clusters()
        .into_paginator()
        .page_size(3)
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(all.len(), 8, "7 created plus default: {all:?}");
    let mut dedup = all.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 8, "no cluster twice: {all:?}");
    for i in 0..7 {
        assert!(all.contains(&format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/page-{i}")));
    }
    let pages: Vec<_> = client.list_clusters().into_paginator().page_size(3).send().collect::<Vec<_>>().await;
    assert_eq!(pages.len(), 3);
    assert!(pages.last().unwrap().as_ref().unwrap().next_token().is_none());
}

#[tokio::test]
async fn delete_makes_the_cluster_inactive_and_hides_it_from_list() {
    let server = TestServer::start().await;
    let client = server.client();
    create_cluster(&client, "gone").await;
    let deleted = client.delete_cluster().cluster("gone").send().await.unwrap().cluster.unwrap();
    assert_eq!(deleted.status(), Some("INACTIVE"));
    assert_eq!(deleted.cluster_name(), Some("gone"));

    let out = client.describe_clusters().clusters("gone").send().await.unwrap();
    assert!(out.failures().is_empty());
    assert_eq!(out.clusters()[0].status(), Some("INACTIVE"));
    let listed = client.list_clusters().send().await.unwrap();
    assert!(!listed.cluster_arns().iter().any(|a| a.ends_with("/gone")), "{:?}", listed.cluster_arns());

    // An INACTIVE cluster takes no more work. Which error ECS words this with is not documented
    // (ClusterNotFoundException, or InvalidParameterException "The specified cluster is
    // inactive..." as its tagging calls answer), so either is accepted.
    for err in [
        code_of(&client.delete_cluster().cluster("gone").send().await.unwrap_err()),
        code_of(&client.list_services().cluster("gone").send().await.unwrap_err()),
    ] {
        assert!(["ClusterNotFoundException", "InvalidParameterException"].contains(&err.as_str()), "{err}");
    }

    // The name can be used again, for a fresh ACTIVE cluster.
    let again = client.create_cluster().cluster_name("gone").send().await.unwrap().cluster.unwrap();
    assert_eq!(again.status(), Some("ACTIVE"));
}

#[tokio::test]
async fn delete_of_an_unknown_cluster_is_cluster_not_found() {
    let server = TestServer::start().await;
    let client = server.client();
    expect_code(client.delete_cluster().cluster("never-was").send().await, "ClusterNotFoundException");
}

#[tokio::test]
async fn delete_is_refused_while_the_cluster_holds_container_instances() {
    let server = TestServer::start().await;
    let client = server.client();
    create_cluster(&client, "busy").await;
    let arn = register_instance(&client, "busy").await;
    let msg =
        expect_code(client.delete_cluster().cluster("busy").send().await, "ClusterContainsContainerInstancesException");
    assert!(msg.contains("Container Instances"), "{msg}");
    // Draining instances hold the cluster too.
    client
        .update_container_instances_state()
        .cluster("busy")
        .container_instances(&arn)
        .status(aws_sdk_ecs::types::ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    expect_code(client.delete_cluster().cluster("busy").send().await, "ClusterContainsContainerInstancesException");
    client.deregister_container_instance().cluster("busy").container_instance(&arn).send().await.unwrap();
    let c = client.delete_cluster().cluster("busy").send().await.unwrap().cluster.unwrap();
    assert_eq!(c.status(), Some("INACTIVE"));
}

#[tokio::test]
async fn delete_is_refused_while_the_cluster_holds_services() {
    let server = TestServer::start().await;
    let client = server.client();
    create_cluster(&client, "svc").await;
    register_td(&client, "web").await;
    client
        .create_service()
        .cluster("svc")
        .service_name("api")
        .task_definition("web")
        .desired_count(0)
        .send()
        .await
        .unwrap();
    let msg = expect_code(client.delete_cluster().cluster("svc").send().await, "ClusterContainsServicesException");
    assert!(msg.contains("Services"), "{msg}");
    client.delete_service().cluster("svc").service("api").send().await.unwrap();
    eventually("the service is INACTIVE", || {
        let client = client.clone();
        async move {
            let out = client.describe_services().cluster("svc").services("api").send().await.unwrap();
            (out.services()[0].status() == Some("INACTIVE")).then_some(())
        }
    })
    .await;
    let c = client.delete_cluster().cluster("svc").send().await.unwrap().cluster.unwrap();
    assert_eq!(c.status(), Some("INACTIVE"));
}

#[tokio::test]
async fn update_cluster_settings_merges_settings() {
    let server = TestServer::start().await;
    let client = server.client();
    create_cluster(&client, "ins").await;
    let c = client.update_cluster_settings().cluster("ins").settings(insights("enabled")).send().await.unwrap();
    assert_eq!(setting_value(c.cluster().unwrap().settings()), Some("enabled"));
    let d = client.describe_clusters().clusters("ins").include(ClusterField::Settings).send().await.unwrap();
    assert_eq!(setting_value(d.clusters()[0].settings()), Some("enabled"));

    let c = client.update_cluster().cluster("ins").settings(insights("enhanced")).send().await.unwrap();
    assert_eq!(setting_value(c.cluster().unwrap().settings()), Some("enhanced"));
    assert_eq!(c.cluster().unwrap().settings().len(), 1, "the setting is replaced, not repeated");

    let msg = expect_code(
        client.update_cluster_settings().cluster("ins").settings(insights("sometimes")).send().await,
        "InvalidParameterException",
    );
    assert!(msg.contains("sometimes"), "{msg}");
    expect_code(
        client.update_cluster_settings().cluster("nope").settings(insights("enabled")).send().await,
        "ClusterNotFoundException",
    );
    expect_code(
        client.update_cluster().cluster("nope").settings(insights("enabled")).send().await,
        "ClusterNotFoundException",
    );
}

#[tokio::test]
async fn update_cluster_sets_the_execute_command_configuration() {
    use aws_sdk_ecs::types::{ClusterConfiguration, ExecuteCommandConfiguration, ExecuteCommandLogging};
    let server = TestServer::start().await;
    let client = server.client();
    create_cluster(&client, "exec").await;
    let conf = ClusterConfiguration::builder()
        .execute_command_configuration(
            ExecuteCommandConfiguration::builder().logging(ExecuteCommandLogging::Default).build(),
        )
        .build();
    let c = client.update_cluster().cluster("exec").configuration(conf).send().await.unwrap().cluster.unwrap();
    let logging = c.configuration().and_then(|c| c.execute_command_configuration()).and_then(|e| e.logging());
    assert_eq!(logging, Some(&ExecuteCommandLogging::Default));
    let d = client.describe_clusters().clusters("exec").include(ClusterField::Configurations).send().await.unwrap();
    let logging =
        d.clusters()[0].configuration().and_then(|c| c.execute_command_configuration()).and_then(|e| e.logging());
    assert_eq!(logging, Some(&ExecuteCommandLogging::Default));
}

#[tokio::test]
async fn clusters_are_named_by_arn_as_well_as_by_name() {
    let server = TestServer::start().await;
    let client = server.client();
    create_cluster(&client, "byarn").await;
    let arn = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/byarn");
    let out = client.describe_clusters().clusters(&arn).send().await.unwrap();
    assert_eq!(out.clusters()[0].cluster_name(), Some("byarn"));
    client.list_services().cluster(&arn).send().await.unwrap();
    let c = client.delete_cluster().cluster(&arn).send().await.unwrap().cluster.unwrap();
    assert_eq!(c.status(), Some("INACTIVE"));
}
