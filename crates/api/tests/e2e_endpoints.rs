//! ECS services registered in target groups and Cloud Map, end to end with a real server, a
//! hollow agent and the official SDK. The target group and Cloud Map service are written straight
//! into the store (their APIs are other crates'), and so is the health a load balancer node would
//! report, so this test sees exactly what ECS's side does: RUNNING tasks registered with their
//! addresses and ECS's attributes, a rollout that waits for healthy targets, a scale-in that
//! deregisters, drains and only then stops the task, and an unhealthy target replaced.

mod common;

use std::time::Duration;

use aws_sdk_ecs::types::{
    AwsVpcConfiguration, ContainerDefinition, LoadBalancer, NetworkConfiguration, NetworkMode, PortMapping,
    ServiceRegistry,
};
use common::*;
use flotilla_endpoints::cloudmap::{self, DnsConfig, DnsRecord, HealthStatus, Instance, RecordType, RoutingPolicy};
use flotilla_endpoints::elb::{
    HealthCheck, HealthState, Registration, Target, TargetGroup, TargetHealth, TargetType, DEREGISTRATION_DELAY,
};
use flotilla_endpoints::{codec, keys};
use flotilla_store::{Op, Txn};

const TG_ID: &str = "00000000000000e1";
const TG_ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/web/00000000000000e1";
const SRV_ID: &str = "srv-00000000000000e1";
const SRV_ARN: &str = "arn:aws:servicediscovery:us-east-1:000000000000:service/srv-00000000000000e1";

fn target_group() -> TargetGroup {
    TargetGroup {
        id: TG_ID.into(),
        arn: TG_ARN.into(),
        name: "web".into(),
        protocol: Some("HTTP".into()),
        protocol_version: Some("HTTP1".into()),
        port: Some(80),
        vpc_id: None,
        target_type: TargetType::Ip,
        health_check: HealthCheck {
            enabled: true,
            protocol: "HTTP".into(),
            port: "traffic-port".into(),
            path: Some("/".into()),
            interval_seconds: 5,
            timeout_seconds: 2,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            matcher: Some("200".into()),
        },
        attributes: [(DEREGISTRATION_DELAY.to_string(), "2".to_string())].into(),
        load_balancer_arns: vec!["arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/lb/1".into()],
        tags: vec![],
        created_at_ms: 0,
    }
}

fn registry() -> cloudmap::Service {
    cloudmap::Service {
        id: SRV_ID.into(),
        arn: SRV_ARN.into(),
        name: "web".into(),
        namespace_id: "ns-00000000000000e1".into(),
        description: None,
        dns_config: Some(DnsConfig {
            routing_policy: RoutingPolicy::Multivalue,
            records: vec![DnsRecord { kind: RecordType::A, ttl: 10 }],
        }),
        custom_health: true,
        health_check_config: None,
        creator_request_id: None,
        tags: vec![],
        created_at_ms: 0,
    }
}

async fn put(ctx: &flotilla_api::Ctx, key: String, value: Vec<u8>) {
    ctx.store.txn(Txn::new().then(Op::put(key, value))).await.expect("store write");
}

async fn list<T: serde::de::DeserializeOwned>(ctx: &flotilla_api::Ctx, prefix: &str) -> Vec<T> {
    let listing = ctx.store.list(prefix).await.expect("list");
    listing.kvs.iter().map(|kv| codec::decode(&kv.value).expect("decodes")).collect()
}

async fn set_health(ctx: &flotilla_api::Ctx, targets: &[Target], state: HealthState) {
    for t in targets {
        let h = TargetHealth {
            state,
            reason: (state == HealthState::Unhealthy).then(|| "Target.ResponseCodeMismatch".into()),
            description: (state == HealthState::Unhealthy)
                .then(|| "Health checks failed with these codes: [503]".into()),
            updated_at_ms: 0,
        };
        put(ctx, keys::target_health(TG_ID, &t.id, t.port), codec::encode(&h)).await;
    }
}

async fn events(client: &aws_sdk_ecs::Client) -> Vec<String> {
    let out = client.describe_services().services("web").send().await.unwrap();
    out.services()[0].events().iter().filter_map(|e| e.message().map(String::from)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_register_drain_and_replace_their_tasks_as_ecs_does() {
    let (server, ctx) = TestServer::start_with_ctx(Default::default()).await;
    let client = server.client();
    put(&ctx, keys::target_group(TG_ID), codec::encode(&target_group())).await;
    put(&ctx, keys::service(SRV_ID), codec::encode(&registry())).await;
    let dir = tempfile::tempdir().unwrap();
    let (stop_agent, agent) = start_hollow_agent(agent_api(&server), dir.path(), "default", "us-east-1a", 0);
    eventually("the agent registered", || async {
        let l = client.list_container_instances().send().await.ok()?;
        (!l.container_instance_arns().is_empty()).then_some(())
    })
    .await;

    client
        .register_task_definition()
        .family("web")
        .network_mode(NetworkMode::Awsvpc)
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("nginx")
                .memory(64)
                .port_mappings(PortMapping::builder().container_port(8080).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let subnet = flotilla_hosts::network::default_vpc(REGION).subnets[0].subnet_id.clone();
    let network = NetworkConfiguration::builder()
        .awsvpc_configuration(AwsVpcConfiguration::builder().subnets(subnet).build().unwrap())
        .build();
    // A container port the definition does not map is refused, and nothing is written.
    let refused = client
        .create_service()
        .service_name("web")
        .task_definition("web")
        .desired_count(2)
        .network_configuration(network.clone())
        .load_balancers(
            LoadBalancer::builder().target_group_arn(TG_ARN).container_name("app").container_port(81).build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(message_of(&refused), "The container app did not have a container port 81 defined.");
    client
        .create_service()
        .service_name("web")
        .task_definition("web")
        .desired_count(2)
        .network_configuration(network)
        .load_balancers(
            LoadBalancer::builder().target_group_arn(TG_ARN).container_name("app").container_port(8080).build(),
        )
        .service_registries(ServiceRegistry::builder().registry_arn(SRV_ARN).build())
        .send()
        .await
        .unwrap();

    // Registered as RUNNING: targets are the tasks' own addresses on the container port.
    let targets: Vec<Target> = eventually("two targets registered", || async {
        let t: Vec<Target> = list(&ctx, &keys::targets_of(TG_ID)).await;
        (t.len() == 2).then_some(t)
    })
    .await;
    let instances: Vec<Instance> = eventually("two Cloud Map instances", || async {
        let i: Vec<Instance> = list(&ctx, &keys::instances_of(SRV_ID)).await;
        (i.len() == 2).then_some(i)
    })
    .await;
    let tasks = client.list_tasks().service_name("web").send().await.unwrap().task_arns().to_vec();
    let described = client.describe_tasks().set_tasks(Some(tasks)).send().await.unwrap();
    let mut ips: Vec<String> = described
        .tasks()
        .iter()
        .flat_map(|t| t.attachments()[0].details())
        .filter(|d| d.name() == Some("privateIPv4Address"))
        .filter_map(|d| d.value().map(String::from))
        .collect();
    ips.sort();
    let mut target_ips: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
    target_ips.sort();
    assert_eq!(target_ips, ips);
    assert!(targets
        .iter()
        .all(|t| t.port == 8080 && t.registration == Registration::Registered && t.task_arn.is_some()));
    let mut instance_ips: Vec<String> = instances.iter().map(|i| i.attributes[cloudmap::IPV4].clone()).collect();
    instance_ips.sort();
    assert_eq!(instance_ips, ips);
    let attrs = &instances[0].attributes;
    assert_eq!(attrs["ECS_SERVICE_NAME"], "web");
    assert_eq!(attrs["ECS_CLUSTER_NAME"], "default");
    assert_eq!(attrs["ECS_TASK_DEFINITION_FAMILY"], "web");
    assert_eq!(attrs["AVAILABILITY_ZONE"], "us-east-1a");
    assert!(attrs.contains_key("EC2_INSTANCE_ID"));
    assert!(instances.iter().all(|i| i.health == HealthStatus::Healthy));
    eventually("the registration event", || async {
        events(&client).await.iter().any(|e| e.contains(&format!("targets in (target-group {TG_ARN})"))).then_some(())
    })
    .await;

    // The rollout waits for its targets to pass their health checks.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let svc = client.describe_services().services("web").send().await.unwrap().services()[0].clone();
    assert_eq!(svc.deployments()[0].rollout_state().map(|s| s.as_str()), Some("IN_PROGRESS"));
    set_health(&ctx, &targets, HealthState::Healthy).await;
    eventually("the rollout completed", || async {
        let svc = client.describe_services().services("web").send().await.ok()?.services()[0].clone();
        (svc.deployments()[0].rollout_state().map(|s| s.as_str()) == Some("COMPLETED")).then_some(())
    })
    .await;

    // Scale-in: the task goes DEACTIVATING, its instance is deregistered and its target drains for
    // the group's delay before the agent is told to stop it.
    client.update_service().service("web").desired_count(1).send().await.unwrap();
    let draining = eventually("a target draining", || async {
        let t: Vec<Target> = list(&ctx, &keys::targets_of(TG_ID)).await;
        t.into_iter().find(|t| matches!(t.registration, Registration::Draining { .. }))
    })
    .await;
    let task_arn = draining.task_arn.clone().unwrap();
    let t = client.describe_tasks().tasks(&task_arn).send().await.unwrap().tasks()[0].clone();
    assert_eq!((t.last_status(), t.desired_status()), (Some("DEACTIVATING"), Some("STOPPED")));
    let left: Vec<Instance> = list(&ctx, &keys::instances_of(SRV_ID)).await;
    assert_eq!(left.len(), 1, "the stopping task's Cloud Map instance is gone first");
    eventually("the drained task stopped", || async {
        let t = client.describe_tasks().tasks(&task_arn).send().await.ok()?.tasks()[0].clone();
        (t.last_status() == Some("STOPPED")).then_some(())
    })
    .await;
    let remaining: Vec<Target> = list(&ctx, &keys::targets_of(TG_ID)).await;
    assert_eq!(remaining.len(), 1);
    let said = events(&client).await;
    assert!(said.iter().any(|e| e == "(service web) has begun draining connections on 1 tasks."), "{said:?}");
    assert!(said.iter().any(|e| e == &format!("(service web) deregistered 1 targets in (target-group {TG_ARN})")));

    // An unhealthy target gets its task replaced, with ECS's event and stop reason.
    set_health(&ctx, &remaining, HealthState::Unhealthy).await;
    let sick = remaining[0].task_arn.clone().unwrap();
    eventually("the unhealthy task stopped", || async {
        let t = client.describe_tasks().tasks(&sick).send().await.ok()?.tasks()[0].clone();
        (t.desired_status() == Some("STOPPED")).then_some(t)
    })
    .await;
    let t = client.describe_tasks().tasks(&sick).send().await.unwrap().tasks()[0].clone();
    assert_eq!(t.stopped_reason(), Some(format!("Task failed ELB health checks in (target-group {TG_ARN})").as_str()));
    let said = events(&client).await;
    let id = sick.rsplit('/').next().unwrap();
    let port = remaining[0].port;
    assert!(
        said.iter().any(|e| e
            == &format!(
                "(service web) (task {id}) (port {port}) is unhealthy in (target-group {TG_ARN}) due to (reason Health checks failed with these codes: [503])."
            )),
        "{said:?}"
    );
    eventually("a replacement registered", || async {
        let t: Vec<Target> = list(&ctx, &keys::targets_of(TG_ID)).await;
        t.iter()
            .any(|t| t.task_arn.as_deref() != Some(sick.as_str()) && t.registration == Registration::Registered)
            .then_some(())
    })
    .await;

    let _ = stop_agent.send(true);
    let _ = agent.await;
    server.stop().await;
}
