//! Container instances end to end through the official SDK, registered as the agent registers
//! them: Register (and re-register), Describe, List, UpdateContainerInstancesState, Deregister,
//! and the attribute calls PutAttributes, DeleteAttributes and ListAttributes.

mod common;

use aws_sdk_ecs::types::{Attribute, ContainerInstanceStatus, Resource, TargetType};
use common::*;

fn custom(name: &str, value: &str, target: &str) -> Attribute {
    Attribute::builder().name(name).value(value).target_id(target).build().unwrap()
}

fn resource<'a>(list: &'a [Resource], name: &str) -> &'a Resource {
    list.iter().find(|r| r.name() == Some(name)).unwrap_or_else(|| panic!("no {name} in {list:?}"))
}

fn ports(r: &Resource) -> Vec<String> {
    let mut p = r.string_set_value().to_vec();
    p.sort();
    p
}

async fn instance_count(client: &aws_sdk_ecs::Client, cluster: &str) -> i32 {
    let out = client.describe_clusters().clusters(cluster).send().await.unwrap();
    out.clusters()[0].registered_container_instances_count()
}

#[tokio::test]
async fn register_echoes_attributes_and_resources() {
    let server = TestServer::start().await;
    let client = server.client();
    create_cluster(&client, "hosts").await;
    let out = client
        .register_container_instance()
        .cluster("hosts")
        .set_total_resources(Some(instance_resources()))
        .set_attributes(Some(instance_attributes()))
        .version_info(
            aws_sdk_ecs::types::VersionInfo::builder().agent_version("1.80.0").docker_version("24.0.5").build(),
        )
        .send()
        .await
        .unwrap();
    let ci = out.container_instance().unwrap();
    let arn = ci.container_instance_arn().unwrap();
    assert!(arn.starts_with(&format!("arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/hosts/")), "{arn}");
    assert_eq!(ci.status(), Some("ACTIVE"));
    assert_eq!(ci.running_tasks_count(), 0);
    assert_eq!(ci.pending_tasks_count(), 0);
    assert_eq!(ci.version_info().and_then(|v| v.agent_version()), Some("1.80.0"));
    // The agent checks that every attribute it sent comes back.
    for sent in instance_attributes() {
        assert!(
            ci.attributes().iter().any(|a| a.name() == sent.name() && a.value() == sent.value()),
            "attribute {sent:?} not echoed in {:?}",
            ci.attributes()
        );
    }
    let registered = ci.registered_resources();
    assert_eq!(resource(registered, "CPU").integer_value(), 2048);
    assert_eq!(resource(registered, "MEMORY").integer_value(), 4096);
    assert_eq!(ports(resource(registered, "PORTS")), ["22", "2375", "2376", "51678"]);
    // With no tasks, what remains is what was registered.
    let remaining = ci.remaining_resources();
    assert_eq!(resource(remaining, "CPU").integer_value(), 2048);
    assert_eq!(resource(remaining, "MEMORY").integer_value(), 4096);
    assert_eq!(ports(resource(remaining, "PORTS")), ["22", "2375", "2376", "51678"]);
    assert!(resource(remaining, "PORTS_UDP").string_set_value().is_empty());

    let described =
        client.describe_container_instances().cluster("hosts").container_instances(arn).send().await.unwrap();
    let d = &described.container_instances()[0];
    assert_eq!(d.container_instance_arn(), Some(arn));
    assert_eq!(d.registered_resources(), ci.registered_resources());
    assert_eq!(resource(d.remaining_resources(), "CPU").integer_value(), 2048);
    assert_eq!(instance_count(&client, "hosts").await, 1);
}

#[tokio::test]
async fn invalid_resources_are_invalid_parameters() {
    let server = TestServer::start().await;
    let client = server.client();
    let bad = Resource::builder().name("CPU").r#type("INTEGER").integer_value(-5).build();
    expect_code(client.register_container_instance().total_resources(bad).send().await, "InvalidParameterException");
    let bad_ports = Resource::builder().name("PORTS").r#type("STRINGSET").string_set_value("not-a-port").build();
    expect_code(
        client.register_container_instance().total_resources(bad_ports).send().await,
        "InvalidParameterException",
    );
    assert!(client.list_container_instances().send().await.unwrap().container_instance_arns().is_empty());
}

#[tokio::test]
async fn reregistering_with_the_arn_keeps_the_instance() {
    let server = TestServer::start().await;
    let client = server.client();
    let arn = register_instance(&client, "default").await;
    let before = client.describe_container_instances().container_instances(&arn).send().await.unwrap();
    let version_before = before.container_instances()[0].version();

    let more_memory = vec![
        Resource::builder().name("CPU").r#type("INTEGER").integer_value(2048).build(),
        Resource::builder().name("MEMORY").r#type("INTEGER").integer_value(8192).build(),
    ];
    let out = client
        .register_container_instance()
        .container_instance_arn(&arn)
        .set_total_resources(Some(more_memory))
        .set_attributes(Some(instance_attributes()))
        .send()
        .await
        .unwrap();
    let ci = out.container_instance().unwrap();
    assert_eq!(ci.container_instance_arn(), Some(arn.as_str()));
    assert_eq!(resource(ci.registered_resources(), "MEMORY").integer_value(), 8192);
    assert!(ci.version() > version_before, "version {} should grow past {version_before}", ci.version());
    let listed = client.list_container_instances().send().await.unwrap();
    assert_eq!(listed.container_instance_arns(), std::slice::from_ref(&arn), "no second instance");
    assert_eq!(instance_count(&client, "default").await, 1);
}

#[tokio::test]
async fn a_deregistered_instance_cannot_register_again_under_its_arn() {
    let server = TestServer::start().await;
    let client = server.client();
    let arn = register_instance(&client, "default").await;
    client.deregister_container_instance().container_instance(&arn).send().await.unwrap();
    // What the agent sees when its checkpointed instance was deregistered meanwhile.
    let msg = expect_code(
        client
            .register_container_instance()
            .container_instance_arn(&arn)
            .set_total_resources(Some(instance_resources()))
            .send()
            .await,
        "ClientException",
    );
    assert!(msg.contains("is inactive"), "{msg}");
    let d = client.describe_container_instances().container_instances(&arn).send().await.unwrap();
    assert_eq!(d.container_instances()[0].status(), Some("INACTIVE"));
    assert_eq!(instance_count(&client, "default").await, 0);
}

#[tokio::test]
async fn describe_reports_unknown_instances_as_missing() {
    let server = TestServer::start().await;
    let client = server.client();
    let arn = register_instance(&client, "default").await;
    let id = arn.rsplit('/').next().unwrap().to_string();
    let ghost_arn =
        format!("arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/default/0123456789abcdef0123456789abcdef");
    let out = client
        .describe_container_instances()
        .container_instances(&id)
        .container_instances("ffffffffffffffffffffffffffffffff")
        .container_instances(&ghost_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(out.container_instances().len(), 1);
    assert_eq!(out.container_instances()[0].container_instance_arn(), Some(arn.as_str()));
    assert_eq!(out.failures().len(), 2);
    assert!(out.failures().iter().all(|f| f.reason() == Some("MISSING")));
    // A short ID comes back as an ARN (ECS's exact ARN form for a missing ID is not documented).
    let missing = out.failures()[0].arn().unwrap_or("");
    assert!(missing.starts_with(&format!("arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/")), "{missing}");
    assert!(missing.ends_with("/ffffffffffffffffffffffffffffffff"), "{missing}");
    assert_eq!(out.failures()[1].arn(), Some(ghost_arn.as_str()));
    // An instance of another cluster is missing from this one.
    create_cluster(&client, "other").await;
    let out = client.describe_container_instances().cluster("other").container_instances(&id).send().await.unwrap();
    assert!(out.container_instances().is_empty());
    assert_eq!(out.failures()[0].reason(), Some("MISSING"));
}

#[tokio::test]
async fn state_changes_between_active_and_draining() {
    let server = TestServer::start().await;
    let client = server.client();
    let a = register_instance(&client, "default").await;
    let b = register_instance(&client, "default").await;

    let out = client
        .update_container_instances_state()
        .container_instances(&a)
        .container_instances("00000000000000000000000000000000")
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    assert_eq!(out.container_instances().len(), 1);
    assert_eq!(out.container_instances()[0].status(), Some("DRAINING"));
    assert_eq!(out.failures().len(), 1);
    assert_eq!(out.failures()[0].reason(), Some("MISSING"));

    let draining = client.list_container_instances().status(ContainerInstanceStatus::Draining).send().await.unwrap();
    assert_eq!(draining.container_instance_arns(), std::slice::from_ref(&a));
    let active = client.list_container_instances().status(ContainerInstanceStatus::Active).send().await.unwrap();
    assert_eq!(active.container_instance_arns(), std::slice::from_ref(&b));
    let mut all = client.list_container_instances().send().await.unwrap().container_instance_arns().to_vec();
    all.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(all, expected, "the default listing holds ACTIVE and DRAINING instances");
    assert_eq!(instance_count(&client, "default").await, 2, "DRAINING instances are still registered");

    let back = client
        .update_container_instances_state()
        .container_instances(&a)
        .status(ContainerInstanceStatus::Active)
        .send()
        .await
        .unwrap();
    assert_eq!(back.container_instances()[0].status(), Some("ACTIVE"));

    for bad in ["REGISTERING", "INACTIVE", "sideways"] {
        let msg = expect_code(
            client
                .update_container_instances_state()
                .container_instances(&a)
                .status(ContainerInstanceStatus::from(bad))
                .send()
                .await,
            "InvalidParameterException",
        );
        assert!(msg.contains("status"), "{msg}");
    }
    let d = client.describe_container_instances().container_instances(&a).send().await.unwrap();
    assert_eq!(d.container_instances()[0].status(), Some("ACTIVE"));
}

#[tokio::test]
async fn deregister_makes_the_instance_inactive() {
    let server = TestServer::start().await;
    let client = server.client();
    let a = register_instance(&client, "default").await;
    let b = register_instance(&client, "default").await;
    assert_eq!(instance_count(&client, "default").await, 2);

    let out = client.deregister_container_instance().container_instance(&a).send().await.unwrap();
    assert_eq!(out.container_instance().unwrap().status(), Some("INACTIVE"));
    assert_eq!(instance_count(&client, "default").await, 1);
    let listed = client.list_container_instances().send().await.unwrap();
    assert_eq!(listed.container_instance_arns(), std::slice::from_ref(&b));
    let d = client.describe_container_instances().container_instances(&a).send().await.unwrap();
    assert_eq!(d.container_instances()[0].status(), Some("INACTIVE"));

    client.deregister_container_instance().container_instance(&b).force(true).send().await.unwrap();
    assert_eq!(instance_count(&client, "default").await, 0);
    assert!(client.list_container_instances().send().await.unwrap().container_instance_arns().is_empty());
}

#[tokio::test]
async fn list_pages_with_the_sdk_paginator() {
    let server = TestServer::start().await;
    let client = server.client();
    let mut arns = Vec::new();
    for _ in 0..5 {
        arns.push(register_instance(&client, "default").await);
    }
    let mut listed: Vec<String> = client
        .list_container_instances()
        .into_paginator()
        .page_size(2)
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    listed.sort();
    arns.sort();
    assert_eq!(listed, arns);
}

#[tokio::test]
async fn attributes_can_be_put_listed_and_deleted() {
    let server = TestServer::start().await;
    let client = server.client();
    let a = register_instance(&client, "default").await;
    let b = register_instance(&client, "default").await;

    let put = client
        .put_attributes()
        .attributes(custom("stack", "prod", &a))
        .attributes(custom("stack", "dev", &b))
        .send()
        .await
        .unwrap();
    assert_eq!(put.attributes().len(), 2);
    assert_eq!(put.attributes()[0].target_type(), Some(&TargetType::ContainerInstance));
    assert_eq!(put.attributes()[0].target_id(), Some(a.as_str()));

    let d = client.describe_container_instances().container_instances(&a).send().await.unwrap();
    assert!(d.container_instances()[0].attributes().iter().any(|x| x.name() == "stack" && x.value() == Some("prod")));

    let by_name = client
        .list_attributes()
        .target_type(TargetType::ContainerInstance)
        .attribute_name("stack")
        .send()
        .await
        .unwrap();
    assert_eq!(by_name.attributes().len(), 2);
    let by_value = client
        .list_attributes()
        .target_type(TargetType::ContainerInstance)
        .attribute_name("stack")
        .attribute_value("prod")
        .send()
        .await
        .unwrap();
    assert_eq!(by_value.attributes().len(), 1);
    assert_eq!(by_value.attributes()[0].target_id(), Some(a.as_str()));
    // Unfiltered, the registered ecs.* attributes are listed too.
    let all = client.list_attributes().target_type(TargetType::ContainerInstance).send().await.unwrap();
    assert!(all.attributes().iter().any(|x| x.name() == "ecs.os-type"));

    // Putting a name again replaces its value.
    client.put_attributes().attributes(custom("stack", "staging", &a)).send().await.unwrap();
    let d = client.describe_container_instances().container_instances(&a).send().await.unwrap();
    let stacks: Vec<_> = d.container_instances()[0].attributes().iter().filter(|x| x.name() == "stack").collect();
    assert_eq!(stacks.len(), 1);
    assert_eq!(stacks[0].value(), Some("staging"));

    let deleted = client
        .delete_attributes()
        .attributes(Attribute::builder().name("stack").target_id(&a).build().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.attributes()[0].name(), "stack");
    let left = client
        .list_attributes()
        .target_type(TargetType::ContainerInstance)
        .attribute_name("stack")
        .send()
        .await
        .unwrap();
    assert_eq!(left.attributes().len(), 1);
    assert_eq!(left.attributes()[0].target_id(), Some(b.as_str()));
}

#[tokio::test]
async fn attributes_on_unknown_targets_are_target_not_found() {
    let server = TestServer::start().await;
    let client = server.client();
    let a = register_instance(&client, "default").await;
    let ghost = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/default/0123456789abcdef0123456789abcdef");
    expect_code(
        client.put_attributes().attributes(custom("ok", "1", &a)).attributes(custom("x", "1", &ghost)).send().await,
        "TargetNotFoundException",
    );
    // A refused batch writes nothing, not even for the target that exists.
    let d = client.describe_container_instances().container_instances(&a).send().await.unwrap();
    assert!(!d.container_instances()[0].attributes().iter().any(|x| x.name() == "ok"));
    expect_code(
        client
            .delete_attributes()
            .attributes(Attribute::builder().name("x").target_id(&ghost).build().unwrap())
            .send()
            .await,
        "TargetNotFoundException",
    );
    expect_code(
        client.put_attributes().cluster("nowhere").attributes(custom("x", "1", &a)).send().await,
        "ClusterNotFoundException",
    );
}

#[tokio::test]
async fn at_most_ten_custom_attributes_per_instance() {
    let server = TestServer::start().await;
    let client = server.client();
    let a = register_instance(&client, "default").await;
    let ten = (0..10).fold(client.put_attributes(), |r, i| r.attributes(custom(&format!("custom{i}"), "v", &a)));
    ten.send().await.unwrap();
    let msg = expect_code(
        client.put_attributes().attributes(custom("custom10", "v", &a)).send().await,
        "AttributeLimitExceededException",
    );
    assert!(msg.contains("10"), "{msg}");
    let d = client.describe_container_instances().container_instances(&a).send().await.unwrap();
    assert!(!d.container_instances()[0].attributes().iter().any(|x| x.name() == "custom10"));
    // Replacing the value of an existing custom attribute is still allowed.
    client.put_attributes().attributes(custom("custom3", "w", &a)).send().await.unwrap();
}

#[tokio::test]
async fn malformed_attributes_are_invalid_parameters() {
    let server = TestServer::start().await;
    let client = server.client();
    let a = register_instance(&client, "default").await;
    for (name, value) in [("bad name!", "v"), ("ok", "bad*value")] {
        expect_code(
            client.put_attributes().attributes(custom(name, value, &a)).send().await,
            "InvalidParameterException",
        );
    }
}

#[tokio::test]
async fn every_instance_call_needs_a_known_cluster() {
    let server = TestServer::start().await;
    let client = server.client();
    let c = "no-such-cluster";
    let nf = "ClusterNotFoundException";
    expect_code(client.register_container_instance().cluster(c).send().await, nf);
    expect_code(client.deregister_container_instance().cluster(c).container_instance("x").send().await, nf);
    expect_code(client.describe_container_instances().cluster(c).container_instances("x").send().await, nf);
    expect_code(client.list_container_instances().cluster(c).send().await, nf);
    expect_code(
        client
            .update_container_instances_state()
            .cluster(c)
            .container_instances("x")
            .status(ContainerInstanceStatus::Draining)
            .send()
            .await,
        nf,
    );
    expect_code(client.list_attributes().cluster(c).target_type(TargetType::ContainerInstance).send().await, nf);
    expect_code(client.delete_attributes().cluster(c).attributes(custom("a", "b", "x")).send().await, nf);
}

#[tokio::test]
async fn list_filters_with_the_cluster_query_language() {
    use aws_sdk_ecs::types::Attribute;
    let server = TestServer::start().await;
    let client = server.client();
    let zone = |z: &str| {
        let mut a = instance_attributes();
        a.retain(|x| x.name() != "ecs.availability-zone");
        a.push(Attribute::builder().name("ecs.availability-zone").value(z).build().unwrap());
        a
    };
    let a = register_instance_with(&client, "default", zone("us-east-1a")).await;
    let b = register_instance_with(&client, "default", zone("us-east-1b")).await;
    let listed = client
        .list_container_instances()
        .filter("attribute:ecs.availability-zone == us-east-1b")
        .send()
        .await
        .expect("filtered list");
    assert_eq!(listed.container_instance_arns(), std::slice::from_ref(&b));
    let listed = client
        .list_container_instances()
        .filter("attribute:ecs.availability-zone in [us-east-1a, us-east-1b] and not attribute:missing exists")
        .send()
        .await
        .expect("filtered list");
    let mut got = listed.container_instance_arns().to_vec();
    got.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(got, want);
    let msg = expect_code(
        client.list_container_instances().filter("attribute:ecs.availability-zone === x").send().await,
        "InvalidParameterException",
    );
    assert!(msg.contains("column"), "{msg}");
}
