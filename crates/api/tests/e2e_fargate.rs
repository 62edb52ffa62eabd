//! The FARGATE launch type end to end with the AWS SDK, on hollow pool hosts (the agent's real
//! registration and session, simulated containers): tasks with no container instance, placed on
//! the pool by the zones of their subnets, each with its own address from its subnet and an ENI
//! attachment; tasks that find no room wait in PROVISIONING; FARGATE/FARGATE_SPOT strategies
//! split by weight; Spot interruptions; and every refusal ECS gives a Fargate launch.

mod common;

use std::time::Duration;

use aws_sdk_ecs::types::{
    AwsVpcConfiguration, CapacityProviderStrategyItem, Compatibility, NetworkConfiguration, NetworkMode,
    PlacementStrategy, PlacementStrategyType, Task,
};
use common::*;
use flotilla_api::domain::fargate;

fn settings() -> flotilla_api::capacity::Settings {
    flotilla_api::capacity::Settings {
        scaling_period: Duration::from_secs(3600),
        provisioning_timeout: Duration::from_secs(1800),
    }
}

/// The default VPC's subnet in `zone` (a, b or c).
fn subnet(zone: char) -> String {
    let vpc = flotilla_hosts::network::default_vpc(REGION);
    vpc.subnet_in_zone(&format!("{REGION}{zone}")).expect("default subnet").subnet_id.clone()
}

fn network(subnets: &[String]) -> NetworkConfiguration {
    NetworkConfiguration::builder()
        .awsvpc_configuration(
            AwsVpcConfiguration::builder().set_subnets(Some(subnets.to_vec())).build().expect("awsvpc configuration"),
        )
        .build()
}

/// RunTask of `fg-app` in cluster `fg` with the FARGATE launch type in `subnets`.
fn run_fargate(
    client: &aws_sdk_ecs::Client,
    subnets: &[String],
) -> aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder {
    client
        .run_task()
        .cluster("fg")
        .task_definition("fg-app")
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .network_configuration(network(subnets))
}

fn item(provider: &str, weight: i32) -> CapacityProviderStrategyItem {
    CapacityProviderStrategyItem::builder().capacity_provider(provider).weight(weight).build().unwrap()
}

async fn register_fargate_td(client: &aws_sdk_ecs::Client, family: &str) {
    client
        .register_task_definition()
        .family(family)
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu("256")
        .memory("512")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder().name("app").image("flotilla/workload:latest").build(),
        )
        .send()
        .await
        .expect("register a Fargate task definition");
}

async fn describe(client: &aws_sdk_ecs::Client, cluster: &str, arns: &[String]) -> Vec<Task> {
    let out = client.describe_tasks().cluster(cluster).set_tasks(Some(arns.to_vec())).send().await.expect("describe");
    out.tasks.unwrap_or_default()
}

fn detail(t: &Task, name: &str) -> Option<String> {
    let eni = t.attachments().iter().find(|a| a.r#type() == Some("ElasticNetworkInterface"))?;
    eni.details().iter().find(|d| d.name() == Some(name)).and_then(|d| d.value().map(String::from))
}

fn eni_status(t: &Task) -> Option<String> {
    t.attachments().iter().find(|a| a.r#type() == Some("ElasticNetworkInterface")).and_then(|a| a.status.clone())
}

#[tokio::test]
async fn fargate_tasks_run_on_the_pool_with_their_own_addresses() {
    let (server, ctx) = TestServer::start_with_ctx(settings()).await;
    let client = server.client();
    client
        .create_cluster()
        .cluster_name("fg")
        .capacity_providers("FARGATE")
        .capacity_providers("FARGATE_SPOT")
        .send()
        .await
        .expect("create cluster");
    register_fargate_td(&client, "fg-app").await;
    let all = vec![subnet('a'), subnet('b'), subnet('c')];

    // No pool host yet: the task waits in PROVISIONING, with no instance, as on ECS.
    let run = run_fargate(&client, &all).send().await.expect("run a Fargate task");
    let first = run.tasks()[0].clone();
    assert_eq!(first.last_status(), Some("PROVISIONING"));
    assert_eq!(first.container_instance_arn(), None);
    assert_eq!(first.launch_type(), Some(&aws_sdk_ecs::types::LaunchType::Fargate));
    assert_eq!(first.platform_version(), Some("1.4.0"));
    assert_eq!(first.capacity_provider_name(), None, "a launch type shows no provider");
    let first_arn = first.task_arn().unwrap().to_string();

    // One pool host in us-east-1a joins; the waiting task moves onto it.
    fargate::ensure_pool(&ctx).await.expect("pool");
    let dir = tempfile::tempdir().unwrap();
    let (_stop, _agent) = start_hollow_agent(agent_api(&server), dir.path(), fargate::FARGATE_POOL, "us-east-1a", 0);
    let running = eventually("the waiting Fargate task runs", || async {
        let t = describe(&client, "fg", std::slice::from_ref(&first_arn)).await.pop()?;
        (t.last_status() == Some("RUNNING")).then_some(t)
    })
    .await;
    assert_eq!(running.container_instance_arn(), None, "Fargate tasks show no container instance");
    assert_eq!(running.availability_zone(), Some("us-east-1a"));
    assert_eq!(detail(&running, "subnetId"), Some(subnet('a')));
    let ip = detail(&running, "privateIPv4Address").expect("an address");
    assert!(ip.starts_with("172.31.") && ip.parse::<std::net::Ipv4Addr>().unwrap().octets()[2] < 16, "{ip}");
    assert_eq!(eni_status(&running).as_deref(), Some("ATTACHED"));
    assert!(detail(&running, "macAddress").is_some_and(|m| m.starts_with("02:")));
    assert_eq!(detail(&running, "privateDnsName"), Some(format!("ip-{}.ec2.internal", ip.replace('.', "-"))));
    assert_eq!(running.ephemeral_storage().map(|e| e.size_in_gib), Some(20));
    let ni = &running.containers()[0].network_interfaces()[0];
    assert_eq!(ni.private_ipv4_address(), Some(ip.as_str()));

    // The pool host is no container instance of any cluster, and the pool is no cluster.
    let listed = client.list_container_instances().cluster("fg").send().await.unwrap();
    assert!(listed.container_instance_arns().is_empty());
    let clusters = client.list_clusters().send().await.unwrap();
    assert!(clusters.cluster_arns().iter().all(|a| !a.contains(fargate::FARGATE_POOL)), "{clusters:?}");
    let msg = expect_code(
        client.list_container_instances().cluster(fargate::FARGATE_POOL).send().await,
        "ClusterNotFoundException",
    );
    assert!(!msg.is_empty());
    let fg = client.describe_clusters().clusters("fg").send().await.unwrap();
    assert_eq!(fg.clusters()[0].running_tasks_count(), 1);

    // A strategy of FARGATE weight 3 and FARGATE_SPOT weight 1 splits four tasks 3/1, each task
    // with its own address.
    let run = client
        .run_task()
        .cluster("fg")
        .task_definition("fg-app")
        .count(4)
        .capacity_provider_strategy(item("FARGATE", 3))
        .capacity_provider_strategy(item("FARGATE_SPOT", 1))
        .network_configuration(network(&all))
        .send()
        .await
        .expect("run with a Fargate strategy");
    assert!(run.failures().is_empty(), "{:?}", run.failures());
    let arns: Vec<String> = run.tasks().iter().filter_map(|t| t.task_arn.clone()).collect();
    let providers: Vec<&str> = run.tasks().iter().filter_map(|t| t.capacity_provider_name()).collect();
    assert_eq!(providers.iter().filter(|p| **p == "FARGATE").count(), 3, "{providers:?}");
    assert_eq!(providers.iter().filter(|p| **p == "FARGATE_SPOT").count(), 1, "{providers:?}");
    let tasks = eventually("four Fargate tasks run", || async {
        let ts = describe(&client, "fg", &arns).await;
        ts.iter().all(|t| t.last_status() == Some("RUNNING")).then_some(ts)
    })
    .await;
    let mut addresses: Vec<String> = tasks.iter().filter_map(|t| detail(t, "privateIPv4Address")).collect();
    addresses.push(ip.clone());
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 5, "every task has its own address: {addresses:?}");

    // A task whose only subnet is in a zone with no pool host waits.
    let run = run_fargate(&client, &[subnet('c')]).send().await.expect("run in zone c");
    let waiting_arn = run.tasks()[0].task_arn().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let waiting = describe(&client, "fg", std::slice::from_ref(&waiting_arn)).await.pop().unwrap();
    assert_eq!(waiting.last_status(), Some("PROVISIONING"), "no room in us-east-1c: it waits");
    client.stop_task().cluster("fg").task(&waiting_arn).send().await.expect("stop the waiting task");
    let stopped = describe(&client, "fg", std::slice::from_ref(&waiting_arn)).await.pop().unwrap();
    assert_eq!(stopped.last_status(), Some("STOPPED"), "a task no host holds stops at once");

    // A Spot interruption: the FARGATE_SPOT task is told to stop while still RUNNING, and stops.
    let spot = tasks.iter().find(|t| t.capacity_provider_name() == Some("FARGATE_SPOT")).unwrap();
    let spot_arn = spot.task_arn().unwrap().to_string();
    let interrupted = fargate::interrupt(&ctx, fargate::SpotTarget::Task(&spot_arn), 120).await.expect("interrupt");
    assert_eq!(interrupted, vec![spot_arn.clone()]);
    let on_demand = tasks.iter().find(|t| t.capacity_provider_name() == Some("FARGATE")).unwrap();
    let refused = fargate::interrupt(&ctx, fargate::SpotTarget::Task(on_demand.task_arn().unwrap()), 120).await;
    assert!(refused.unwrap_err().message.contains("only Fargate Spot tasks"));
    let gone = eventually("the Spot task stops", || async {
        let t = describe(&client, "fg", std::slice::from_ref(&spot_arn)).await.pop()?;
        (t.last_status() == Some("STOPPED")).then_some(t)
    })
    .await;
    assert_eq!(gone.stop_code(), Some(&aws_sdk_ecs::types::TaskStopCode::SpotInterruption));
    assert_eq!(gone.stopped_reason(), Some(fargate::SPOT_REASON));
    assert_eq!(eni_status(&gone).as_deref(), Some("DELETED"));

    // The address of a stopped task is free again: the next task may take it.
    let spot_ip = detail(&gone, "privateIPv4Address").unwrap();
    let again = run_fargate(&client, &[subnet('a')]).send().await.expect("run again");
    assert_eq!(detail(&again.tasks()[0], "privateIPv4Address"), Some(spot_ip));

    // A subnet created with EC2's CreateSubnet (stored as the EC2 API stores it) gives addresses
    // from its own block.
    let created = flotilla_hosts::network::Subnet {
        subnet_id: "subnet-0created00000000a".into(),
        availability_zone: "us-east-1a".into(),
        availability_zone_id: "use1-az1".into(),
        cidr_block: "172.31.64.0/24".into(),
        first_host: [172, 31, 64, 4],
        vpc_id: flotilla_hosts::network::default_vpc(REGION).vpc_id,
        default_for_az: false,
        tags: Vec::new(),
    };
    let bytes = flotilla_hosts::codec::encode(&created);
    let put = flotilla_store::Txn::new()
        .then(flotilla_store::Op::put(flotilla_hosts::keys::subnet(&created.subnet_id), bytes));
    ctx.store.txn(put).await.expect("store the subnet");
    let in_created =
        run_fargate(&client, std::slice::from_ref(&created.subnet_id)).send().await.expect("run in a created subnet");
    assert_eq!(detail(&in_created.tasks()[0], "privateIPv4Address").as_deref(), Some("172.31.64.4"));
    assert_eq!(detail(&in_created.tasks()[0], "subnetId"), Some(created.subnet_id.clone()));

    // A whole pool host interrupted: each of its FARGATE_SPOT tasks goes, its FARGATE tasks stay.
    let run = client
        .run_task()
        .cluster("fg")
        .task_definition("fg-app")
        .count(2)
        .capacity_provider_strategy(item("FARGATE_SPOT", 1))
        .network_configuration(network(&all))
        .send()
        .await
        .expect("run two Spot tasks");
    let spot_arns: Vec<String> = run.tasks().iter().filter_map(|t| t.task_arn.clone()).collect();
    eventually("the Spot tasks run", || async {
        describe(&client, "fg", &spot_arns).await.iter().all(|t| t.last_status() == Some("RUNNING")).then_some(())
    })
    .await;
    let host_id = {
        let ix = ctx.cache.read();
        let prefix = format!("instance/{}/", fargate::FARGATE_POOL);
        let (_, e) = ix.instances.range(prefix.clone()..).next().expect("the pool host");
        e.value.instance.ec2_instance_id.clone().expect("an instance id")
    };
    let mut interrupted =
        fargate::interrupt(&ctx, fargate::SpotTarget::PoolHost(&host_id), 30).await.expect("interrupt the host");
    interrupted.sort();
    let mut expected = spot_arns.clone();
    expected.sort();
    assert_eq!(interrupted, expected, "only the host's FARGATE_SPOT tasks");
    let on_demand_arn = on_demand.task_arn().unwrap().to_string();
    let still = describe(&client, "fg", std::slice::from_ref(&on_demand_arn)).await.pop().unwrap();
    assert_eq!(still.desired_status(), Some("RUNNING"));
    let unknown = fargate::interrupt(&ctx, fargate::SpotTarget::PoolHost("i-00000000000000000"), 30).await;
    assert!(unknown.unwrap_err().message.contains("is not a Fargate pool host"));

    // A service of Fargate tasks keeps its count.
    client
        .create_service()
        .cluster("fg")
        .service_name("web")
        .task_definition("fg-app")
        .desired_count(2)
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .network_configuration(network(&all))
        .send()
        .await
        .expect("create a Fargate service");
    eventually("the Fargate service runs two tasks", || async {
        let s = client.describe_services().cluster("fg").services("web").send().await.ok()?;
        let svc = s.services().first()?.clone();
        (svc.running_count() == 2).then_some(())
    })
    .await;
    let svc = client.describe_services().cluster("fg").services("web").send().await.unwrap();
    assert_eq!(svc.services()[0].platform_version(), Some("LATEST"));
    server.stop().await;
}

#[tokio::test]
async fn fargate_launches_are_refused_as_ecs_refuses_them() {
    let (server, _ctx) = TestServer::start_with_ctx(settings()).await;
    let client = server.client();
    create_cluster(&client, "plain").await;
    register_fargate_td(&client, "fg-app").await;
    register_td(&client, "ec2-only").await;
    let fargate_run = |td: &str| {
        client
            .run_task()
            .cluster("plain")
            .task_definition(td)
            .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
            .network_configuration(network(&[subnet('a')]))
    };

    let msg = expect_code(fargate_run("ec2-only").send().await, "InvalidParameterException");
    assert_eq!(msg, "Task definition does not support launch_type FARGATE.");
    let spread = PlacementStrategy::builder().r#type(PlacementStrategyType::Spread).field("instanceId").build();
    let msg = expect_code(fargate_run("fg-app").placement_strategy(spread).send().await, "InvalidParameterException");
    assert_eq!(msg, "Placement strategies are not supported with FARGATE launch type.");
    let big = aws_sdk_ecs::types::TaskOverride::builder().memory("4096").build();
    let msg = expect_code(fargate_run("fg-app").overrides(big).send().await, "ClientException");
    assert!(msg.starts_with("No Fargate configuration exists for given values: 256 CPU, 4096 memory."), "{msg}");
    let msg = expect_code(fargate_run("fg-app").platform_version("0.9.0").send().await, "PlatformUnknownException");
    assert_eq!(msg, "The specified platform version doesn't exist.");
    let msg = expect_code(
        client
            .run_task()
            .cluster("plain")
            .task_definition("fg-app")
            .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
            .send()
            .await,
        "InvalidParameterException",
    );
    assert!(msg.contains("Network Configuration must be provided"), "{msg}");
    let msg = expect_code(
        client
            .run_task()
            .cluster("plain")
            .task_definition("fg-app")
            .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
            .network_configuration(network(&["subnet-0000000000000000".into()]))
            .send()
            .await,
        "InvalidParameterException",
    );
    assert!(msg.contains("The subnet ID 'subnet-0000000000000000' does not exist"), "{msg}");
    // FARGATE in a strategy must be associated with the cluster first.
    let msg = expect_code(
        client
            .run_task()
            .cluster("plain")
            .task_definition("fg-app")
            .capacity_provider_strategy(item("FARGATE", 1))
            .network_configuration(network(&[subnet('a')]))
            .send()
            .await,
        "InvalidParameterException",
    );
    assert!(msg.contains("not associated with the cluster"), "{msg}");
    let msg = expect_code(
        client
            .create_service()
            .cluster("plain")
            .service_name("d")
            .task_definition("fg-app")
            .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
            .scheduling_strategy(aws_sdk_ecs::types::SchedulingStrategy::Daemon)
            .network_configuration(network(&[subnet('a')]))
            .send()
            .await,
        "InvalidParameterException",
    );
    assert!(msg.contains("daemon scheduling strategy does not support the FARGATE launch type"), "{msg}");
    server.stop().await;
}
