//! Task definitions end to end through the official SDK: Register (revisions, the normalized
//! echo, ECS's validation), Describe, List, ListTaskDefinitionFamilies, Deregister and
//! DeleteTaskDefinitions.

mod common;

use aws_sdk_ecs::types::{
    Compatibility, ContainerCondition, ContainerDefinition, ContainerDependency, HealthCheck, MountPoint, NetworkMode,
    PortMapping, SortOrder, Tag, TaskDefinitionFamilyStatus, TaskDefinitionField, TaskDefinitionStatus, Volume,
};
use common::*;

fn td_arn(family: &str, revision: i32) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:{revision}")
}

fn depends(name: &str, on: &str) -> ContainerDefinition {
    ContainerDefinition::builder()
        .name(name)
        .image("busybox")
        .memory(64)
        .depends_on(
            ContainerDependency::builder().container_name(on).condition(ContainerCondition::Start).build().unwrap(),
        )
        .build()
}

/// Registers `containers` in a fresh family and returns the error code and message.
async fn register_err(
    client: &aws_sdk_ecs::Client,
    f: impl FnOnce(
        aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder,
    ) -> aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder,
) -> (String, String) {
    let err = f(client.register_task_definition().family("bad")).send().await.expect_err("registration must fail");
    (code_of(&err), message_of(&err))
}

#[tokio::test]
async fn revisions_count_up_per_family() {
    let server = TestServer::start().await;
    let client = server.client();
    for rev in 1..=3 {
        let td = register_td(&client, "web").await;
        assert_eq!(td.revision(), rev);
        assert_eq!(td.family(), Some("web"));
        assert_eq!(td.task_definition_arn(), Some(td_arn("web", rev).as_str()));
        assert_eq!(td.status(), Some(&TaskDefinitionStatus::Active));
    }
    // Another family starts at 1.
    assert_eq!(register_td(&client, "worker").await.revision(), 1);
    // A deregistered revision is never reused.
    client.deregister_task_definition().task_definition("web:3").send().await.unwrap();
    assert_eq!(register_td(&client, "web").await.revision(), 4);
}

#[tokio::test]
async fn register_echoes_the_definition_with_defaults_made_explicit() {
    let server = TestServer::start().await;
    let client = server.client();
    let out = client
        .register_task_definition()
        .family("shop")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("shop:1.2")
                .memory(256)
                .port_mappings(PortMapping::builder().container_port(8080).build())
                .build(),
        )
        .tags(Tag::builder().key("owner").value("me").build())
        .send()
        .await
        .unwrap();
    let td = out.task_definition().unwrap();
    let c = &td.container_definitions()[0];
    assert_eq!(c.name(), Some("app"));
    assert_eq!(c.image(), Some("shop:1.2"));
    assert_eq!(c.memory(), Some(256));
    assert_eq!(c.essential(), Some(true), "essential defaults to true");
    assert_eq!(c.port_mappings()[0].container_port(), Some(8080));
    assert_eq!(c.port_mappings()[0].protocol(), Some(&aws_sdk_ecs::types::TransportProtocol::Tcp));
    assert!(td.registered_at().is_some());
    assert!(td.compatibilities().contains(&Compatibility::Ec2));
    assert_eq!(out.tags(), [Tag::builder().key("owner").value("me").build()]);
}

#[tokio::test]
async fn awsvpc_port_mappings_echo_the_host_port() {
    let server = TestServer::start().await;
    let client = server.client();
    let td = client
        .register_task_definition()
        .family("vpc")
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("app")
                .port_mappings(PortMapping::builder().container_port(80).build())
                .build(),
        )
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap();
    let pm = &td.container_definitions()[0].port_mappings()[0];
    assert_eq!(pm.host_port(), Some(80));
    assert_eq!(td.network_mode(), Some(&NetworkMode::Awsvpc));
    assert!(td.compatibilities().contains(&Compatibility::Fargate), "{:?}", td.compatibilities());
    assert_eq!(td.cpu(), Some("256"));
    assert_eq!(td.memory(), Some("512"));
}

#[tokio::test]
async fn task_definition_rules_answer_client_exceptions_that_name_the_fault() {
    let server = TestServer::start().await;
    let client = server.client();
    let cases: Vec<(&str, (String, String), &str)> = vec![
        (
            "no containers",
            register_err(&client, |r| r.set_container_definitions(Some(vec![]))).await,
            "Container list cannot be empty",
        ),
        (
            "eleven containers",
            register_err(&client, |r| (0..11).fold(r, |r, i| r.container_definitions(container(&format!("c{i}")))))
                .await,
            "Too many containers",
        ),
        (
            "duplicate names",
            register_err(&client, |r| r.container_definitions(container("a")).container_definitions(container("a")))
                .await,
            "Container names must be unique",
        ),
        (
            "no essential container",
            register_err(&client, |r| {
                r.container_definitions(
                    ContainerDefinition::builder().name("a").image("x").memory(64).essential(false).build(),
                )
            })
            .await,
            "essential",
        ),
        (
            "bad family",
            {
                let err = client
                    .register_task_definition()
                    .family("bad family!")
                    .container_definitions(container("a"))
                    .send()
                    .await
                    .unwrap_err();
                (code_of(&err), message_of(&err))
            },
            "Family",
        ),
        (
            "fargate cpu/memory",
            register_err(&client, |r| {
                r.network_mode(NetworkMode::Awsvpc)
                    .requires_compatibilities(Compatibility::Fargate)
                    .cpu("256")
                    .memory("4096")
                    .container_definitions(container("a"))
            })
            .await,
            "No Fargate configuration exists for given values",
        ),
        (
            "fargate bridge",
            register_err(&client, |r| {
                r.network_mode(NetworkMode::Bridge)
                    .requires_compatibilities(Compatibility::Fargate)
                    .cpu("256")
                    .memory("512")
                    .container_definitions(container("a"))
            })
            .await,
            "awsvpc",
        ),
        (
            "links in awsvpc",
            register_err(&client, |r| {
                r.network_mode(NetworkMode::Awsvpc)
                    .container_definitions(
                        ContainerDefinition::builder().name("a").image("x").memory(64).links("b").build(),
                    )
                    .container_definitions(container("b"))
            })
            .await,
            "Links are not supported when networkMode=awsvpc",
        ),
        (
            "dependsOn an unknown container",
            register_err(&client, |r| r.container_definitions(depends("a", "ghost"))).await,
            "'ghost'",
        ),
        (
            "dependsOn cycle",
            register_err(&client, |r| {
                r.container_definitions(depends("a", "b")).container_definitions(depends("b", "a"))
            })
            .await,
            "cycle",
        ),
        (
            "mount of an undeclared volume",
            register_err(&client, |r| {
                r.container_definitions(
                    ContainerDefinition::builder()
                        .name("a")
                        .image("x")
                        .memory(64)
                        .mount_points(MountPoint::builder().source_volume("data").container_path("/data").build())
                        .build(),
                )
            })
            .await,
            "'data'",
        ),
        (
            "healthCheck retries 11",
            register_err(&client, |r| {
                r.container_definitions(
                    ContainerDefinition::builder()
                        .name("checked")
                        .image("x")
                        .memory(64)
                        .health_check(
                            HealthCheck::builder().command("CMD-SHELL").command("true").retries(11).build().unwrap(),
                        )
                        .build(),
                )
            })
            .await,
            "retries",
        ),
    ];
    for (what, (code, message), needle) in cases {
        assert_eq!(code, "ClientException", "{what}: {message}");
        assert!(message.contains(needle), "{what}: message {message:?} should contain {needle:?}");
    }
    // The health check message names the container, the links message the mode.
    let (_, msg) = register_err(&client, |r| {
        r.container_definitions(
            ContainerDefinition::builder()
                .name("checked")
                .image("x")
                .memory(64)
                .health_check(HealthCheck::builder().command("CMD-SHELL").command("true").retries(11).build().unwrap())
                .build(),
        )
    })
    .await;
    assert!(msg.contains("'checked'"), "{msg}");
    // None of the refused registrations created the family.
    let families = client.list_task_definition_families().status(TaskDefinitionFamilyStatus::All).send().await.unwrap();
    assert!(families.families().is_empty(), "{:?}", families.families());
}

#[tokio::test]
async fn malformed_members_are_invalid_parameters() {
    let server = TestServer::start().await;
    let client = server.client();
    let err = client
        .register_task_definition()
        .family("web")
        .network_mode(NetworkMode::from("bridged"))
        .container_definitions(container("a"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "InvalidParameterException");
    assert!(message_of(&err).contains("networkMode"), "{}", message_of(&err));
}

#[tokio::test]
async fn describe_by_family_revision_and_arn() {
    let server = TestServer::start().await;
    let client = server.client();
    for _ in 0..3 {
        register_td(&client, "api").await;
    }
    let latest = client.describe_task_definition().task_definition("api").send().await.unwrap();
    assert_eq!(latest.task_definition().unwrap().revision(), 3);
    let two = client.describe_task_definition().task_definition("api:2").send().await.unwrap();
    assert_eq!(two.task_definition().unwrap().revision(), 2);
    let one = client.describe_task_definition().task_definition(td_arn("api", 1)).send().await.unwrap();
    assert_eq!(one.task_definition().unwrap().revision(), 1);
    assert_eq!(one.task_definition().unwrap().container_definitions()[0].name(), Some("web"));

    for unknown in ["nope", "api:9", &td_arn("nope", 1)] {
        let msg =
            expect_code(client.describe_task_definition().task_definition(unknown).send().await, "ClientException");
        assert_eq!(msg, "Unable to describe task definition.");
    }
}

#[tokio::test]
async fn describe_shows_tags_only_when_asked() {
    let server = TestServer::start().await;
    let client = server.client();
    client
        .register_task_definition()
        .family("tagged")
        .container_definitions(container("a"))
        .tags(Tag::builder().key("env").value("prod").build())
        .send()
        .await
        .unwrap();
    let plain = client.describe_task_definition().task_definition("tagged").send().await.unwrap();
    assert!(plain.tags().is_empty());
    let with = client
        .describe_task_definition()
        .task_definition("tagged")
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(with.tags(), [Tag::builder().key("env").value("prod").build()]);
}

#[tokio::test]
async fn list_filters_by_family_and_status_and_sorts() {
    let server = TestServer::start().await;
    let client = server.client();
    for f in ["web", "web-x", "api"] {
        for _ in 0..2 {
            register_td(&client, f).await;
        }
    }
    client.deregister_task_definition().task_definition("web:1").send().await.unwrap();

    let all = client.list_task_definitions().send().await.unwrap();
    assert_eq!(
        all.task_definition_arns(),
        [td_arn("api", 1), td_arn("api", 2), td_arn("web", 2), td_arn("web-x", 1), td_arn("web-x", 2)],
        "ACTIVE only, by family name then revision"
    );
    let desc = client.list_task_definitions().sort(SortOrder::Desc).send().await.unwrap();
    assert_eq!(
        desc.task_definition_arns(),
        [td_arn("web-x", 2), td_arn("web-x", 1), td_arn("web", 2), td_arn("api", 2), td_arn("api", 1)]
    );
    // familyPrefix is the full family name: "web" does not list "web-x".
    let web = client.list_task_definitions().family_prefix("web").send().await.unwrap();
    assert_eq!(web.task_definition_arns(), [td_arn("web", 2)]);
    let inactive = client.list_task_definitions().status(TaskDefinitionStatus::Inactive).send().await.unwrap();
    assert_eq!(inactive.task_definition_arns(), [td_arn("web", 1)]);
}

#[tokio::test]
async fn list_pages_with_the_sdk_paginator_in_both_orders() {
    let server = TestServer::start().await;
    let client = server.client();
    for _ in 0..5 {
        register_td(&client, "many").await;
    }
    let first = client.list_task_definitions().max_results(2).send().await.unwrap();
    assert_eq!(first.task_definition_arns().len(), 2);
    assert!(first.next_token().is_some());
    let asc: Vec<String> = client
        .list_task_definitions()
        .family_prefix("many")
        .into_paginator()
        .page_size(2)
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(asc, (1..=5).map(|r| td_arn("many", r)).collect::<Vec<_>>());
    let desc: Vec<String> = client
        .list_task_definitions()
        .family_prefix("many")
        .sort(SortOrder::Desc)
        .into_paginator()
        .page_size(2)
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(desc, (1..=5).rev().map(|r| td_arn("many", r)).collect::<Vec<_>>());
}

#[tokio::test]
async fn list_families_by_status_and_prefix() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "alpha").await;
    register_td(&client, "alpine").await;
    register_td(&client, "beta").await;
    register_td(&client, "beta").await;
    client.deregister_task_definition().task_definition("alpine:1").send().await.unwrap();
    client.deregister_task_definition().task_definition("beta:1").send().await.unwrap();

    let families = |s: Option<TaskDefinitionFamilyStatus>, prefix: Option<&str>| {
        let client = client.clone();
        let prefix = prefix.map(String::from);
        async move {
            client
                .list_task_definition_families()
                .set_status(s)
                .set_family_prefix(prefix)
                .send()
                .await
                .unwrap()
                .families()
                .to_vec()
        }
    };
    // By default both ACTIVE and INACTIVE families are listed.
    assert_eq!(families(None, None).await, ["alpha", "alpine", "beta"]);
    assert_eq!(families(Some(TaskDefinitionFamilyStatus::All), None).await, ["alpha", "alpine", "beta"]);
    // ACTIVE: families with an ACTIVE revision; INACTIVE: families with none.
    assert_eq!(families(Some(TaskDefinitionFamilyStatus::Active), None).await, ["alpha", "beta"]);
    assert_eq!(families(Some(TaskDefinitionFamilyStatus::Inactive), None).await, ["alpine"]);
    // familyPrefix is a real prefix here.
    assert_eq!(families(None, Some("alp")).await, ["alpha", "alpine"]);
    assert_eq!(families(Some(TaskDefinitionFamilyStatus::Active), Some("alp")).await, ["alpha"]);

    let paged: Vec<String> = client
        .list_task_definition_families()
        .into_paginator()
        .page_size(1)
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(paged, ["alpha", "alpine", "beta"]);
}

#[tokio::test]
async fn deregister_makes_a_revision_inactive_but_still_describable() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "svc").await;
    register_td(&client, "svc").await;
    let out = client.deregister_task_definition().task_definition("svc:2").send().await.unwrap();
    let td = out.task_definition().unwrap();
    assert_eq!(td.status(), Some(&TaskDefinitionStatus::Inactive));
    assert!(td.deregistered_at().is_some());

    let by_rev = client.describe_task_definition().task_definition("svc:2").send().await.unwrap();
    assert_eq!(by_rev.task_definition().unwrap().status(), Some(&TaskDefinitionStatus::Inactive));
    // The family alone names its latest ACTIVE revision, skipping the INACTIVE one.
    let by_family = client.describe_task_definition().task_definition("svc").send().await.unwrap();
    assert_eq!(by_family.task_definition().unwrap().revision(), 1);

    client.deregister_task_definition().task_definition(td_arn("svc", 1)).send().await.unwrap();
    expect_code(client.describe_task_definition().task_definition("svc").send().await, "ClientException");
    expect_code(client.deregister_task_definition().task_definition("svc:7").send().await, "ClientException");
}

#[tokio::test]
async fn delete_refuses_active_revisions_and_starts_deleting_inactive_ones() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "old").await;
    register_td(&client, "old").await;
    client.deregister_task_definition().task_definition("old:1").send().await.unwrap();

    let out =
        client.delete_task_definitions().task_definitions("old:1").task_definitions("old:2").send().await.unwrap();
    assert_eq!(out.task_definitions().len(), 1);
    let deleted = &out.task_definitions()[0];
    assert_eq!(deleted.revision(), 1);
    assert_eq!(deleted.status(), Some(&TaskDefinitionStatus::DeleteInProgress));
    assert!(deleted.delete_requested_at().is_some());
    assert_eq!(out.failures().len(), 1);
    assert_eq!(out.failures()[0].arn(), Some(td_arn("old", 2).as_str()));
    assert!(out.failures()[0].reason().unwrap_or("").contains("ACTIVE"), "{:?}", out.failures()[0]);

    let listed = client.list_task_definitions().status(TaskDefinitionStatus::DeleteInProgress).send().await.unwrap();
    assert_eq!(listed.task_definition_arns(), [td_arn("old", 1)]);
    let still_active = client.describe_task_definition().task_definition("old:2").send().await.unwrap();
    assert_eq!(still_active.task_definition().unwrap().status(), Some(&TaskDefinitionStatus::Active));

    let unknown = client.delete_task_definitions().task_definitions("nope:1").send().await.unwrap();
    assert!(unknown.task_definitions().is_empty());
    assert_eq!(unknown.failures().len(), 1);
    assert_eq!(unknown.failures()[0].arn(), Some(td_arn("nope", 1).as_str()));
}

#[tokio::test]
async fn volumes_and_mount_points_round_trip() {
    let server = TestServer::start().await;
    let client = server.client();
    let td = client
        .register_task_definition()
        .family("vol")
        .volumes(Volume::builder().name("data").build())
        .container_definitions(
            ContainerDefinition::builder()
                .name("a")
                .image("x")
                .memory(64)
                .mount_points(MountPoint::builder().source_volume("data").container_path("/data").build())
                .build(),
        )
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap();
    assert_eq!(td.volumes()[0].name(), Some("data"));
    assert_eq!(td.container_definitions()[0].mount_points()[0].source_volume(), Some("data"));

    // An EFS volume without rootDirectory mounts the file system's root, and says so.
    let efs = aws_sdk_ecs::types::EfsVolumeConfiguration::builder().file_system_id("fs-1234").build().unwrap();
    let td = client
        .register_task_definition()
        .family("efs")
        .volumes(Volume::builder().name("shared").efs_volume_configuration(efs).build())
        .container_definitions(ContainerDefinition::builder().name("a").image("x").memory(64).build())
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap();
    let stored = td.volumes()[0].efs_volume_configuration().expect("the EFS volume");
    assert_eq!(stored.root_directory(), Some("/"));
    let described = client.describe_task_definition().task_definition("efs").send().await.unwrap();
    let again = described.task_definition().unwrap().volumes()[0].efs_volume_configuration().unwrap();
    assert_eq!(again.root_directory(), Some("/"));
}
