//! RunTask end to end against hollow agents, through the official SDK: a clientToken makes a
//! retried or duplicated request place its tasks once, and concurrent RunTasks never
//! oversubscribe an instance, whatever the placements race for.

mod common;

use std::collections::BTreeSet;

use common::*;
use flotilla_agent::session::{ApiClient, RegistrationConfig};
use flotilla_sigv4::Credentials;

/// Hollow instances offering this much CPU each.
const INSTANCE_CPU: i32 = 1024;
/// CPU per task of the `small` family: four fit on an instance.
const TASK_CPU: i32 = 256;

struct Fleet {
    stop: tokio::sync::watch::Sender<bool>,
    agents: Vec<tokio::task::JoinHandle<Result<(), flotilla_agent::session::ApiClientError>>>,
    _dir: tempfile::TempDir,
}

impl Fleet {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for a in self.agents {
            let _ = a.await;
        }
    }
}

/// `n` hollow instances over three zones, connected, and the `small` task definition.
async fn fleet(server: &TestServer, n: usize) -> Fleet {
    let client = server.client();
    let dir = tempfile::tempdir().unwrap();
    let creds = Credentials::new(&server.credentials.access_key_id, &server.credentials.secret_access_key);
    let api = ApiClient::new(&server.endpoint(), REGION, creds).unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut agents = Vec::new();
    for i in 0..n {
        let base = RegistrationConfig {
            cluster: "default".into(),
            data_dir: dir.path().to_path_buf(),
            availability_zone: format!("us-east-1{}", ['a', 'b', 'c'][i % 3]),
            instance_type: "flotilla.test".into(),
            attributes: vec![],
            cpu: Some(INSTANCE_CPU),
            memory: Some(4096),
            memory_reserved_mib: 0,
            network_modes: vec!["bridge".into()],
            agent_version: "test".into(),
            docker_version: "test".into(),
            state_file: "agent.json".into(),
            ec2_instance_id: None,
            gpus: Vec::new(),
        };
        let cfg = flotilla_agent::hollow::hollow_config(&base, i);
        std::fs::create_dir_all(&cfg.data_dir).unwrap();
        agents.push(tokio::spawn(flotilla_agent::hollow::run_hollow(api.clone(), cfg, stop_rx.clone())));
    }
    eventually("connected agents", || async {
        let arns = client.list_container_instances().send().await.ok()?.container_instance_arns().to_vec();
        let out = client.describe_container_instances().set_container_instances(Some(arns)).send().await.ok()?;
        (out.container_instances().iter().filter(|c| c.agent_connected()).count() == n).then_some(())
    })
    .await;
    let small =
        aws_sdk_ecs::types::ContainerDefinition::builder().name("app").image("x").cpu(TASK_CPU).memory(64).build();
    client.register_task_definition().family("small").container_definitions(small).send().await.unwrap();
    Fleet { stop, agents, _dir: dir }
}

fn arns(tasks: &[aws_sdk_ecs::types::Task]) -> BTreeSet<String> {
    tasks.iter().filter_map(|t| t.task_arn().map(String::from)).collect()
}

async fn all_task_arns(client: &aws_sdk_ecs::Client) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut token = None;
    loop {
        let page = client.list_tasks().set_next_token(token).send().await.unwrap();
        out.extend(page.task_arns().iter().cloned());
        token = page.next_token().map(String::from);
        if token.is_none() {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_token_places_its_tasks_once() {
    let server = TestServer::start().await;
    let client = server.client();
    let fleet = fleet(&server, 3).await;

    let first = client.run_task().task_definition("small").count(3).client_token("tok-1").send().await.unwrap();
    assert_eq!(first.tasks().len(), 3, "{:?}", first.failures());
    let retry = client.run_task().task_definition("small").count(3).client_token("tok-1").send().await.unwrap();
    assert_eq!(arns(retry.tasks()), arns(first.tasks()), "a retry answers with the same tasks");
    assert_eq!(all_task_arns(&client).await, arns(first.tasks()), "and places nothing more");

    // The same token on another request is refused.
    let other = client.run_task().task_definition("small").count(2).client_token("tok-1").send().await;
    let message = expect_code(other, "InvalidParameterException");
    assert!(message.contains("clientToken"), "{message}");

    // Identical requests racing with one token: one set of tasks, and every caller gets it.
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(
                async move { c.run_task().task_definition("small").count(2).client_token("tok-race").send().await },
            )
        })
        .collect();
    let mut answers = Vec::new();
    for r in racers {
        answers.push(arns(r.await.unwrap().unwrap().tasks()));
    }
    assert_eq!(answers[0].len(), 2);
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(all_task_arns(&client).await.len(), 5, "three from tok-1 and two from tok-race");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_run_tasks_never_oversubscribe() {
    let server = TestServer::start().await;
    let client = server.client();
    let instances = 6;
    let fleet = fleet(&server, instances).await;
    let capacity = instances * (INSTANCE_CPU / TASK_CPU) as usize;

    // 8 requests of 5 tasks for 24 places, all at once.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.run_task().task_definition("small").count(5).send().await })
        })
        .collect();
    let mut placed = BTreeSet::new();
    for r in racers {
        let out = r.await.unwrap().unwrap();
        placed.extend(arns(out.tasks()));
        // A request that placed fewer than it asked for says why (one failure per reason).
        if out.tasks().len() < 5 {
            assert!(!out.failures().is_empty(), "{out:?}");
        }
        for f in out.failures() {
            assert_eq!(f.reason(), Some("RESOURCE:CPU"), "{f:?}");
        }
    }
    assert_eq!(placed.len(), capacity, "the fleet fills up exactly");
    assert_eq!(all_task_arns(&client).await, placed, "no task was lost or duplicated");
    let list = client.list_container_instances().send().await.unwrap();
    let described = client
        .describe_container_instances()
        .set_container_instances(Some(list.container_instance_arns().to_vec()))
        .send()
        .await
        .unwrap();
    for ci in described.container_instances() {
        let cpu = ci.remaining_resources().iter().find(|r| r.name() == Some("CPU")).map(|r| r.integer_value());
        assert_eq!(cpu, Some(0), "every instance is full and none is over: {:?}", ci.container_instance_arn());
    }
    fleet.stop().await;
}

/// DeregisterContainerInstance (without force) racing StartTask on the same instance: never both.
/// Either the task is placed and the deregistration is refused because the instance has tasks, or
/// the instance goes INACTIVE and the task is not placed on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregistering_and_placing_on_one_instance_never_both_succeed() {
    let server = TestServer::start().await;
    let client = server.client();
    let fleet = fleet(&server, 8).await;
    let list = client.list_container_instances().send().await.unwrap();
    for arn in list.container_instance_arns() {
        let (c1, c2, a1, a2) = (client.clone(), client.clone(), arn.clone(), arn.clone());
        let start =
            tokio::spawn(async move { c1.start_task().task_definition("small").container_instances(a1).send().await });
        let deregister =
            tokio::spawn(async move { c2.deregister_container_instance().container_instance(a2).send().await });
        let placed = start.await.unwrap().map(|o| o.tasks().len()).unwrap_or(0);
        let deregistered = match deregister.await.unwrap() {
            Ok(_) => true,
            Err(e) => {
                assert_eq!(code_of(&e), "InvalidParameterException", "{e:?}");
                false
            }
        };
        assert!(placed == 0 || !deregistered, "{arn}: a task was placed on an instance deregistered without force");
        assert!(placed == 1 || deregistered, "{arn}: neither happened");
        let live = client.list_tasks().container_instance(arn).send().await.unwrap();
        assert_eq!(live.task_arns().len(), placed, "{arn}: the tasks on it are the ones StartTask answered");
    }
    fleet.stop().await;
}

async fn describe(client: &aws_sdk_ecs::Client, arn: &str) -> Option<aws_sdk_ecs::types::Task> {
    let out = client.describe_tasks().tasks(arn).send().await.unwrap();
    match out.tasks().first() {
        Some(t) => Some(t.clone()),
        None => {
            assert_eq!(out.failures()[0].reason(), Some("MISSING"), "{:?}", out.failures());
            None
        }
    }
}

async fn stop_and_wait(client: &aws_sdk_ecs::Client, arn: &str) {
    client.stop_task().task(arn).send().await.unwrap();
    eventually("the task STOPPED", || async {
        describe(client, arn).await.filter(|t| t.last_status() == Some("STOPPED")).map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_stopped_longer_than_the_retention_are_forgotten() {
    let server = TestServer::start_with_retention(std::time::Duration::from_secs(4)).await;
    let client = server.client();
    let fleet = fleet(&server, 1).await;
    let run = client.run_task().task_definition("small").count(3).send().await.unwrap();
    let tasks: Vec<String> = run.tasks().iter().filter_map(|t| t.task_arn().map(String::from)).collect();
    let [old, recent, live] = &tasks[..] else { panic!("three tasks: {:?}", run.failures()) };

    stop_and_wait(&client, old).await;
    eventually("the stopped task forgotten", || async { describe(&client, old).await.is_none().then_some(()) }).await;
    let stopped = client.list_tasks().desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped).send().await.unwrap();
    assert!(!stopped.task_arns().contains(old), "{:?}", stopped.task_arns());

    // Just stopped: still shown, as ECS shows stopped tasks for a while.
    stop_and_wait(&client, recent).await;
    assert!(describe(&client, recent).await.is_some(), "a task stopped a moment ago is still described");
    let stopped = client.list_tasks().desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped).send().await.unwrap();
    assert_eq!(stopped.task_arns(), std::slice::from_ref(recent));
    eventually("the second stopped task forgotten", || async {
        describe(&client, recent).await.is_none().then_some(())
    })
    .await;

    // The running task is kept however old, and still holds its reservation.
    let t = describe(&client, live).await.expect("the running task is kept");
    assert_eq!(t.last_status(), Some("RUNNING"));
    let ci = client.describe_container_instances().container_instances(t.container_instance_arn().unwrap());
    let ci = ci.send().await.unwrap();
    let cpu = ci.container_instances()[0].remaining_resources().iter().find(|r| r.name() == Some("CPU")).cloned();
    assert_eq!(cpu.map(|r| r.integer_value()), Some(INSTANCE_CPU - TASK_CPU));
    assert_eq!(ci.container_instances()[0].running_tasks_count(), 1);
    fleet.stop().await;
}

fn tag_map(t: &aws_sdk_ecs::types::Task) -> std::collections::BTreeMap<String, String> {
    t.tags().iter().map(|t| (t.key().unwrap_or("").to_string(), t.value().unwrap_or("").to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_tags_name_the_cluster_and_the_service_when_asked_for() {
    let server = TestServer::start().await;
    let client = server.client();
    let fleet = fleet(&server, 1).await;
    let tag = aws_sdk_ecs::types::Tag::builder().key("team").value("core").build();

    let managed = client
        .run_task()
        .task_definition("small")
        .enable_ecs_managed_tags(true)
        .tags(tag.clone())
        .send()
        .await
        .unwrap();
    let plain = client.run_task().task_definition("small").tags(tag).send().await.unwrap();
    let arns = [managed.tasks()[0].task_arn().unwrap(), plain.tasks()[0].task_arn().unwrap()];
    let described = client
        .describe_tasks()
        .set_tasks(Some(arns.iter().map(|a| a.to_string()).collect()))
        .include(aws_sdk_ecs::types::TaskField::Tags)
        .send()
        .await
        .unwrap();
    let by_arn = |arn: &str| described.tasks().iter().find(|t| t.task_arn() == Some(arn)).map(tag_map).unwrap();
    let want: std::collections::BTreeMap<String, String> =
        [("aws:ecs:clusterName", "default"), ("team", "core")].map(|(k, v)| (k.into(), v.into())).into();
    assert_eq!(by_arn(arns[0]), want);
    assert_eq!(by_arn(arns[1]), [("team".to_string(), "core".to_string())].into());

    client
        .create_service()
        .service_name("tagged")
        .task_definition("small")
        .desired_count(1)
        .enable_ecs_managed_tags(true)
        .send()
        .await
        .unwrap();
    let task = eventually("the service's task", || async {
        let list = client.list_tasks().service_name("tagged").send().await.ok()?;
        let arn = list.task_arns().first()?.clone();
        let out = client.describe_tasks().tasks(arn).include(aws_sdk_ecs::types::TaskField::Tags).send().await.ok()?;
        out.tasks().first().cloned()
    })
    .await;
    let want: std::collections::BTreeMap<String, String> =
        [("aws:ecs:clusterName", "default"), ("aws:ecs:serviceName", "tagged")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
    assert_eq!(tag_map(&task), want);
    fleet.stop().await;
}

#[tokio::test]
async fn over_long_names_and_client_tokens_are_refused_by_field() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "names").await;
    let long = |n: usize| "x".repeat(n);
    let cases = [
        ("startedBy", client.run_task().task_definition("names").started_by(long(129)).send().await),
        ("group", client.run_task().task_definition("names").group(long(256)).send().await),
        ("clientToken", client.run_task().task_definition("names").client_token(long(65)).send().await),
    ];
    for (field, outcome) in cases {
        let message = expect_code(outcome, "InvalidParameterException");
        assert!(message.contains(field), "{field}: {message}");
    }
    let arn = register_instance(&client, "default").await;
    let start = client.start_task().task_definition("names").container_instances(&arn).started_by(long(129)).send();
    let message = expect_code(start.await, "InvalidParameterException");
    assert!(message.contains("startedBy"), "{message}");
    // At the limits, accepted (the instance's agent is not connected, so the task is not placed).
    let ok = client.run_task().task_definition("names").started_by(long(128)).group(long(255)).client_token(long(64));
    assert!(ok.send().await.is_ok());
}

#[tokio::test]
async fn run_and_start_task_answers_read_as_ecs_writes_them() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "plain").await;
    let arn = register_instance(&client, "default").await;

    // Untagged tasks carry "tags": [], as DescribeTasks shows them.
    let (status, _, body) = signed_raw(
        &server,
        "StartTask",
        format!(r#"{{"taskDefinition":"plain","containerInstances":["{arn}"]}}"#).as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["tasks"][0]["tags"], serde_json::json!([]), "{body}");
    let fleet = fleet(&server, 1).await;
    let (status, _, body) = signed_raw(&server, "RunTask", br#"{"taskDefinition":"small"}"#).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["tasks"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(json["tasks"][0]["tags"], serde_json::json!([]), "{body}");
    fleet.stop().await;

    // launchType and capacityProviderStrategy exclude each other, whatever Flotilla supports.
    let item =
        aws_sdk_ecs::types::CapacityProviderStrategyItem::builder().capacity_provider("FARGATE").build().unwrap();
    let both = client
        .run_task()
        .task_definition("plain")
        .launch_type(aws_sdk_ecs::types::LaunchType::Ec2)
        .capacity_provider_strategy(item)
        .send()
        .await;
    let msg = expect_code(both, "InvalidParameterException");
    assert!(msg.contains("launch type and capacity provider strategy"), "{msg}");

    // An awsvpc configuration needs subnets.
    let (status, _, body) = signed_raw(
        &server,
        "RunTask",
        br#"{"taskDefinition":"plain","networkConfiguration":{"awsvpcConfiguration":{"subnets":[]}}}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("subnets can not be empty."), "{body}");
}
