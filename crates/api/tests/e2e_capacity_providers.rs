//! Capacity providers end to end with the AWS SDK: their rules and errors, associating them with
//! a cluster, strategies split by base and weight into tasks that wait in PROVISIONING, a
//! service keeping the strategy it was created with, and managed scaling raising its groups'
//! desired capacity with the policy, tag and metric ECS keeps. The Auto Scaling groups are
//! written into the store as the Auto Scaling service writes them.

mod common;

use std::time::Duration;

use aws_sdk_ecs::types::{AutoScalingGroupProvider, CapacityProviderStrategyItem, ManagedScaling};
use common::*;
use flotilla_hosts::{keys, AutoScalingGroup, LaunchTemplate, LaunchTemplateRef, LaunchTemplateVersion};
use flotilla_store::{Op, Txn};

fn settings(period_secs: u64) -> flotilla_api::capacity::Settings {
    flotilla_api::capacity::Settings {
        scaling_period: Duration::from_secs(period_secs),
        provisioning_timeout: Duration::from_secs(1800),
    }
}

fn template() -> LaunchTemplate {
    LaunchTemplate {
        id: "lt-0123456789abcdef0".into(),
        name: "workshop".into(),
        created_at_ms: 0,
        default_version: 1,
        versions: vec![LaunchTemplateVersion {
            number: 1,
            description: None,
            created_at_ms: 0,
            instance_type: Some("m5.large".into()),
            user_data: None,
            image_id: None,
            security_group_ids: vec![],
            other: Default::default(),
        }],
        tags: vec![],
    }
}

fn group(name: &str, protects: bool) -> AutoScalingGroup {
    AutoScalingGroup {
        name: name.into(),
        arn: format!("arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:11111111-2222-3333-4444-555555555555:autoScalingGroupName/{name}"),
        created_at_ms: 0,
        launch_template: Some(LaunchTemplateRef { id: template().id, name: template().name, version: None }),
        mixed_instances_policy: None,
        min_size: 0,
        max_size: 10,
        desired_capacity: 0,
        subnet_ids: vec![],
        availability_zones: vec![format!("{REGION}a")],
        new_instances_protected_from_scale_in: protects,
        default_cooldown: 300,
        health_check_type: "EC2".into(),
        health_check_grace_period: 0,
        capacity_rebalance: false,
        tags: vec![],
        status: None,
        policies: vec![],
    }
}

async fn put<T: serde::Serialize>(ctx: &flotilla_api::Ctx, key: &str, value: &T) {
    let bytes = flotilla_hosts::codec::encode(value);
    ctx.store.txn(Txn::new().then(Op::put(key, bytes))).await.expect("write");
}

async fn read_group(ctx: &flotilla_api::Ctx, name: &str) -> AutoScalingGroup {
    flotilla_api::domain::hosts::group(ctx, name).await.unwrap().expect("group").value
}

fn scaling(target: i32) -> ManagedScaling {
    ManagedScaling::builder().status("ENABLED".into()).target_capacity(target).instance_warmup_period(0).build()
}

async fn create_provider(client: &aws_sdk_ecs::Client, name: &str, asg: &str) {
    client
        .create_capacity_provider()
        .name(name)
        .auto_scaling_group_provider(
            AutoScalingGroupProvider::builder()
                .auto_scaling_group_arn(asg)
                .managed_scaling(scaling(100))
                .managed_termination_protection("ENABLED".into())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create capacity provider");
}

fn item(provider: &str, weight: i32, base: i32) -> CapacityProviderStrategyItem {
    CapacityProviderStrategyItem::builder().capacity_provider(provider).weight(weight).base(base).build().unwrap()
}

#[tokio::test]
async fn capacity_providers_follow_ecs_rules() {
    let (server, ctx) = TestServer::start_with_ctx(settings(3600)).await;
    let client = server.client();
    put(&ctx, &keys::launch_template(&template().id), &template()).await;
    put(&ctx, &keys::group("asg-plain"), &group("asg-plain", false)).await;
    put(&ctx, &keys::group("asg-od"), &group("asg-od", true)).await;

    let asg = |name: &str| AutoScalingGroupProvider::builder().auto_scaling_group_arn(name).build().unwrap();
    for bad in ["ecs-cp", "AWS_cp", "fargate1", "has space", ""] {
        let msg = expect_code(
            client.create_capacity_provider().name(bad).auto_scaling_group_provider(asg("asg-od")).send().await,
            "ClientException",
        );
        assert!(msg.contains("capacity provider name is invalid"), "{bad}: {msg}");
    }
    let msg = expect_code(
        client.create_capacity_provider().name("cp").auto_scaling_group_provider(asg("asg-none")).send().await,
        "ClientException",
    );
    assert!(msg.contains("asg-none"), "{msg}");
    let protected_without_group = AutoScalingGroupProvider::builder()
        .auto_scaling_group_arn("asg-plain")
        .managed_scaling(scaling(100))
        .managed_termination_protection("ENABLED".into())
        .build()
        .unwrap();
    let msg = expect_code(
        client.create_capacity_provider().name("cp").auto_scaling_group_provider(protected_without_group).send().await,
        "ClientException",
    );
    assert!(msg.contains("instance protection from scale in"), "{msg}");
    let bad_target = AutoScalingGroupProvider::builder()
        .auto_scaling_group_arn("asg-plain")
        .managed_scaling(ManagedScaling::builder().target_capacity(101).build())
        .build()
        .unwrap();
    let msg = expect_code(
        client.create_capacity_provider().name("cp").auto_scaling_group_provider(bad_target).send().await,
        "InvalidParameterException",
    );
    assert!(msg.contains("targetCapacity"), "{msg}");

    // Created with ECS's defaults filled in.
    let created = client
        .create_capacity_provider()
        .name("CP-OD")
        .auto_scaling_group_provider(asg("asg-od"))
        .send()
        .await
        .unwrap()
        .capacity_provider
        .unwrap();
    assert_eq!(created.status.as_ref().map(|s| s.as_str()), Some("ACTIVE"));
    let p = created.auto_scaling_group_provider.unwrap();
    assert!(p.auto_scaling_group_arn.contains(":autoScalingGroupName/asg-od"));
    let ms = p.managed_scaling.unwrap();
    assert_eq!(
        (ms.target_capacity, ms.minimum_scaling_step_size, ms.maximum_scaling_step_size, ms.instance_warmup_period),
        (Some(100), Some(1), Some(10000), Some(300))
    );
    assert_eq!(p.managed_termination_protection.as_ref().map(|s| s.as_str()), Some("DISABLED"));
    expect_code(
        client.create_capacity_provider().name("CP-OD").auto_scaling_group_provider(asg("asg-plain")).send().await,
        "ClientException",
    );
    let msg = expect_code(
        client.create_capacity_provider().name("CP-TWO").auto_scaling_group_provider(asg("asg-od")).send().await,
        "ClientException",
    );
    assert!(msg.contains("already being used"), "{msg}");
    let d = client
        .describe_capacity_providers()
        .capacity_providers("CP-OD")
        .capacity_providers("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(d.capacity_providers().len(), 1);
    assert_eq!(d.failures()[0].reason.as_deref(), Some("MISSING"));
    // Every account has the reserved Fargate providers, listed among its own in name order.
    let all = client.describe_capacity_providers().send().await.unwrap();
    let names: Vec<_> = all.capacity_providers().iter().filter_map(|p| p.name.clone()).collect();
    assert_eq!(names, ["CP-OD", "FARGATE", "FARGATE_SPOT"]);
    let fargate = &all.capacity_providers()[1];
    assert!(fargate.auto_scaling_group_provider.is_none());
    assert_eq!(fargate.status.as_ref().map(|s| s.as_str()), Some("ACTIVE"));
    let page = client.describe_capacity_providers().max_results(2).send().await.unwrap();
    assert_eq!(page.capacity_providers().len(), 2);
    let rest = client.describe_capacity_providers().next_token(page.next_token().unwrap()).send().await.unwrap();
    assert_eq!(rest.capacity_providers()[0].name.as_deref(), Some("FARGATE_SPOT"));
    expect_code(client.delete_capacity_provider().capacity_provider("FARGATE").send().await, "ClientException");

    // Associating: the whole list each time, with a default strategy of providers in the list.
    expect_code(
        client
            .put_cluster_capacity_providers()
            .cluster("default")
            .capacity_providers("nope")
            .set_default_capacity_provider_strategy(Some(vec![]))
            .send()
            .await,
        "InvalidParameterException",
    );
    let msg = expect_code(
        client
            .put_cluster_capacity_providers()
            .cluster("default")
            .set_capacity_providers(Some(vec![]))
            .default_capacity_provider_strategy(item("CP-OD", 1, 0))
            .send()
            .await,
        "InvalidParameterException",
    );
    assert!(msg.contains("not associated with the cluster"), "{msg}");
    let put = client
        .put_cluster_capacity_providers()
        .cluster("default")
        .capacity_providers("CP-OD")
        .default_capacity_provider_strategy(
            CapacityProviderStrategyItem::builder().capacity_provider("CP-OD").build().unwrap(),
        )
        .send()
        .await
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(put.capacity_providers(), ["CP-OD"]);
    let s = &put.default_capacity_provider_strategy()[0];
    assert_eq!((s.weight, s.base), (0, 0));

    // A strategy and a launch type exclude each other; tasks of a provider with no hosts and no
    // managed scaling fail to place.
    let td = register_td(&client, "web").await;
    let arn = td.task_definition_arn.unwrap();
    let msg = expect_code(
        client
            .run_task()
            .task_definition(&arn)
            .launch_type("EC2".into())
            .capacity_provider_strategy(item("CP-OD", 1, 0))
            .send()
            .await,
        "InvalidParameterException",
    );
    assert!(msg.contains("Specifying both a launch type and capacity provider strategy"), "{msg}");
    let run = client.run_task().task_definition(&arn).send().await.unwrap();
    assert!(run.tasks().is_empty());
    assert!(!run.failures().is_empty());

    // The reserved Fargate providers may be associated (the ECS Spot workshop does); an EC2
    // definition cannot run on them, and a strategy cannot mix them with group providers.
    client
        .put_cluster_capacity_providers()
        .cluster("default")
        .capacity_providers("FARGATE")
        .capacity_providers("CP-OD")
        .default_capacity_provider_strategy(item("CP-OD", 1, 0))
        .send()
        .await
        .unwrap();
    let msg = expect_code(
        client.run_task().task_definition(&arn).capacity_provider_strategy(item("FARGATE", 1, 0)).send().await,
        "InvalidParameterException",
    );
    assert_eq!(msg, "Task definition does not support launch_type FARGATE.");
    let msg = expect_code(
        client
            .run_task()
            .task_definition(&arn)
            .capacity_provider_strategy(item("FARGATE", 1, 0))
            .capacity_provider_strategy(item("CP-OD", 1, 0))
            .send()
            .await,
        "InvalidParameterException",
    );
    assert!(msg.contains("not both"), "{msg}");

    // Deleting needs the provider out of every cluster.
    let msg = expect_code(client.delete_capacity_provider().capacity_provider("CP-OD").send().await, "ClientException");
    assert!(msg.contains("associated with cluster default"), "{msg}");
    let updated = client
        .update_capacity_provider()
        .name("CP-OD")
        .auto_scaling_group_provider(
            aws_sdk_ecs::types::AutoScalingGroupProviderUpdate::builder().managed_scaling(scaling(90)).build(),
        )
        .send()
        .await
        .unwrap()
        .capacity_provider
        .unwrap();
    assert_eq!(updated.update_status.as_ref().map(|s| s.as_str()), Some("UPDATE_IN_PROGRESS"));
    client
        .put_cluster_capacity_providers()
        .cluster("default")
        .set_capacity_providers(Some(vec![]))
        .set_default_capacity_provider_strategy(Some(vec![]))
        .send()
        .await
        .unwrap();
    let deleted = client.delete_capacity_provider().capacity_provider("CP-OD").send().await.unwrap();
    assert_eq!(
        deleted.capacity_provider.unwrap().update_status.as_ref().map(|s| s.as_str()),
        Some("DELETE_IN_PROGRESS")
    );
    let d = client.describe_capacity_providers().capacity_providers("CP-OD").send().await.unwrap();
    let p = &d.capacity_providers()[0];
    assert_eq!(p.status.as_ref().map(|s| s.as_str()), Some("INACTIVE"));
    assert_eq!(p.update_status.as_ref().map(|s| s.as_str()), Some("DELETE_COMPLETE"));
    assert_eq!(
        p.auto_scaling_group_provider.as_ref().unwrap().managed_scaling.as_ref().unwrap().target_capacity,
        Some(90)
    );
}

#[tokio::test]
async fn a_service_splits_by_base_and_weight_and_managed_scaling_raises_its_groups() {
    let (server, ctx) = TestServer::start_with_ctx(settings(1)).await;
    let client = server.client();
    put(&ctx, &keys::launch_template(&template().id), &template()).await;
    put(&ctx, &keys::group("asg-od"), &group("asg-od", true)).await;
    put(&ctx, &keys::group("asg-spot"), &group("asg-spot", true)).await;
    create_provider(&client, "CP-OD", "asg-od").await;
    create_provider(&client, "CP-SPOT", "asg-spot").await;
    let cluster = create_cluster(&client, "workshop").await;
    let put = client
        .put_cluster_capacity_providers()
        .cluster(&cluster)
        .capacity_providers("CP-OD")
        .capacity_providers("CP-SPOT")
        .default_capacity_provider_strategy(item("CP-OD", 1, 2))
        .default_capacity_provider_strategy(item("CP-SPOT", 3, 0))
        .send()
        .await
        .unwrap()
        .cluster
        .unwrap();
    let policies: Vec<_> = put
        .attachments()
        .iter()
        .filter(|a| a.r#type.as_deref() == Some("as_policy"))
        .flat_map(|a| a.details().iter().filter(|d| d.name.as_deref() == Some("scalingPolicyName")))
        .filter_map(|d| d.value.clone())
        .collect();
    assert_eq!(policies.len(), 2, "{put:?}");
    assert!(policies.iter().all(|p| p.starts_with("ECSManagedAutoScalingPolicy-")));

    let td = register_td(&client, "web").await.task_definition_arn.unwrap();
    let svc = client
        .create_service()
        .cluster(&cluster)
        .service_name("web")
        .task_definition(&td)
        .desired_count(10)
        .send()
        .await
        .unwrap()
        .service
        .unwrap();
    assert_eq!(svc.launch_type, None);
    let copied: Vec<_> =
        svc.capacity_provider_strategy().iter().map(|i| (i.capacity_provider.clone(), i.weight, i.base)).collect();
    assert_eq!(copied, vec![("CP-OD".to_string(), 1, 2), ("CP-SPOT".to_string(), 3, 0)]);

    // The service's tasks wait for hosts, split 4 / 6.
    let split = eventually("ten provisioning tasks", || async {
        let arns = client.list_tasks().cluster(&cluster).send().await.ok()?.task_arns;
        let arns = arns.filter(|a| a.len() == 10)?;
        let tasks = client.describe_tasks().cluster(&cluster).set_tasks(Some(arns)).send().await.ok()?.tasks?;
        let od = tasks.iter().filter(|t| t.capacity_provider_name.as_deref() == Some("CP-OD")).count();
        let spot = tasks.iter().filter(|t| t.capacity_provider_name.as_deref() == Some("CP-SPOT")).count();
        let waiting = tasks
            .iter()
            .all(|t| t.last_status.as_deref() == Some("PROVISIONING") && t.container_instance_arn.is_none());
        waiting.then_some((od, spot))
    })
    .await;
    assert_eq!(split, (4, 6));

    // A new cluster default does not move the service.
    client
        .put_cluster_capacity_providers()
        .cluster(&cluster)
        .capacity_providers("CP-OD")
        .capacity_providers("CP-SPOT")
        .default_capacity_provider_strategy(item("CP-SPOT", 1, 0))
        .send()
        .await
        .unwrap();
    let svc =
        client.describe_services().cluster(&cluster).services("web").send().await.unwrap().services.unwrap().remove(0);
    assert_eq!(svc.capacity_provider_strategy().len(), 2);

    // Managed scaling: with no hosts and tasks waiting the metric reads 200, and each group is
    // asked for two hosts, with ECS's managed policy and tag.
    let od = eventually("CP-OD's group scaled out", || async {
        let g = read_group(&ctx, "asg-od").await;
        (g.desired_capacity >= 2).then_some(g)
    })
    .await;
    assert_eq!(od.desired_capacity, 2);
    assert!(od.tags.iter().any(|t| t.key == "AmazonECSManaged"));
    let policy = od.policies.iter().find(|p| policies.contains(&p.name)).expect("managed policy");
    assert_eq!(policy.policy_type, "TargetTrackingScaling");
    assert_eq!(policy.metric_name, "CapacityProviderReservation");
    let metrics = reqwest::get(format!("{}/metrics", server.endpoint())).await.unwrap().text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("flotilla_capacity_provider_reservation{") && l.contains("CP-SPOT"))
        .unwrap_or_else(|| panic!("no reservation metric in {metrics}"));
    assert!(line.contains("cluster=\"workshop\"") && line.ends_with(" 200.0"), "{line}");

    // Scaled to 22, the twelve new tasks split 3 / 9 (7 / 15 in all).
    client.update_service().cluster(&cluster).service("web").desired_count(22).send().await.unwrap();
    let split = eventually("twenty-two tasks", || async {
        let arns = client.list_tasks().cluster(&cluster).max_results(100).send().await.ok()?.task_arns?;
        if arns.len() != 22 {
            return None;
        }
        let mut tasks = Vec::new();
        for chunk in arns.chunks(100) {
            tasks.extend(
                client.describe_tasks().cluster(&cluster).set_tasks(Some(chunk.to_vec())).send().await.ok()?.tasks?,
            );
        }
        let od = tasks.iter().filter(|t| t.capacity_provider_name.as_deref() == Some("CP-OD")).count();
        Some((od, tasks.len() - od))
    })
    .await;
    assert_eq!(split, (7, 15));

    // The provider is in use: it cannot leave the cluster.
    let msg = expect_code(
        client
            .put_cluster_capacity_providers()
            .cluster(&cluster)
            .capacity_providers("CP-OD")
            .default_capacity_provider_strategy(item("CP-OD", 1, 0))
            .send()
            .await,
        "ResourceInUseException",
    );
    assert!(msg.contains("CP-SPOT"), "{msg}");
}
