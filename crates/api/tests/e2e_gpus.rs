//! GPUs end to end through the official SDK, on hollow instances that register GPUs (no GPU is
//! needed: the hollow agent's registration is the real one, its containers simulated): a GPU task
//! goes only to an instance with enough free GPUs and is given specific ones (`gpuIds`), the
//! instance's remainingResources shows what is left, a task that finds too few fails with
//! `RESOURCE:GPU`, and a stopped task gives its GPUs back.

mod common;

use aws_sdk_ecs::types::{ContainerDefinition, ContainerInstance, ResourceRequirement, ResourceType};
use common::*;
use flotilla_agent::session::{ApiClient, RegistrationConfig};
use flotilla_sigv4::Credentials;

/// Hollow instance `i` offering `gpus`; it runs until `true` is sent on `stop`.
fn hollow(
    server: &TestServer,
    dir: &std::path::Path,
    i: usize,
    gpus: &[&str],
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Result<(), flotilla_agent::session::ApiClientError>> {
    let creds = Credentials::new(&server.credentials.access_key_id, &server.credentials.secret_access_key);
    let api = ApiClient::new(&server.endpoint(), REGION, creds).unwrap();
    let base = RegistrationConfig {
        cluster: "default".into(),
        data_dir: dir.to_path_buf(),
        availability_zone: "us-east-1a".into(),
        instance_type: "flotilla.test".into(),
        attributes: vec![],
        cpu: Some(4096),
        memory: Some(8192),
        memory_reserved_mib: 0,
        network_modes: vec!["bridge".into()],
        agent_version: "test".into(),
        docker_version: "test".into(),
        state_file: "agent.json".into(),
        ec2_instance_id: None,
        gpus: gpus.iter().map(|g| g.to_string()).collect(),
    };
    let cfg = flotilla_agent::hollow::hollow_config(&base, i);
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    tokio::spawn(flotilla_agent::hollow::run_hollow(api, cfg, stop))
}

fn gpu(n: &str) -> ResourceRequirement {
    ResourceRequirement::builder().r#type(ResourceType::Gpu).value(n).build().unwrap()
}

async fn instances(client: &aws_sdk_ecs::Client) -> Vec<ContainerInstance> {
    let arns = client.list_container_instances().send().await.unwrap().container_instance_arns().to_vec();
    // DescribeContainerInstances refuses an empty list: none registered yet.
    if arns.is_empty() {
        return Vec::new();
    }
    let out = client.describe_container_instances().set_container_instances(Some(arns)).send().await.unwrap();
    out.container_instances().to_vec()
}

/// An instance's `GPU` resource among `resources`, as its ids; `None` without one.
fn gpu_ids(resources: &[aws_sdk_ecs::types::Resource]) -> Option<Vec<String>> {
    let r = resources.iter().find(|r| r.name() == Some("GPU"))?;
    assert_eq!(r.r#type(), Some("STRINGSET"));
    Some(r.string_set_value().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_tasks_are_placed_on_free_gpus_and_give_them_back() {
    let server = TestServer::start().await;
    let client = server.client();
    let dir = tempfile::tempdir().unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let agents = vec![
        hollow(&server, dir.path(), 0, &[], stop_rx.clone()),
        hollow(&server, dir.path(), 1, &["0", "1", "2"], stop_rx.clone()),
    ];
    eventually("two connected agents", || async {
        let list = instances(&client).await;
        (list.iter().filter(|c| c.agent_connected()).count() == 2).then_some(())
    })
    .await;
    let with_gpus = instances(&client)
        .await
        .into_iter()
        .find(|c| gpu_ids(c.registered_resources()).is_some())
        .expect("the instance registered its GPUs");
    let gpu_arn = with_gpus.container_instance_arn().unwrap().to_string();
    assert_eq!(gpu_ids(with_gpus.registered_resources()), Some(vec!["0".into(), "1".into(), "2".into()]));
    assert_eq!(gpu_ids(with_gpus.remaining_resources()), Some(vec!["0".into(), "1".into(), "2".into()]));

    let train =
        ContainerDefinition::builder().name("train").image("x").memory(64).resource_requirements(gpu("2")).build();
    let side = ContainerDefinition::builder().name("side").image("x").memory(64).build();
    client
        .register_task_definition()
        .family("train")
        .container_definitions(train)
        .container_definitions(side)
        .send()
        .await
        .unwrap();

    // Placed on the GPU instance, whichever strategy would have preferred the other.
    let run = client.run_task().task_definition("train").count(1).send().await.unwrap();
    assert_eq!(run.tasks().len(), 1, "{:?}", run.failures());
    let task = &run.tasks()[0];
    assert_eq!(task.container_instance_arn(), Some(gpu_arn.as_str()));
    let train_ids = |t: &aws_sdk_ecs::types::Task| {
        let c = t.containers().iter().find(|c| c.name() == Some("train")).unwrap();
        c.gpu_ids().to_vec()
    };
    assert_eq!(train_ids(task), vec!["0".to_string(), "1".to_string()]);
    let side = task.containers().iter().find(|c| c.name() == Some("side")).unwrap();
    assert!(side.gpu_ids().is_empty(), "a container without a GPU requirement gets none");
    let described = client.describe_tasks().tasks(task.task_arn().unwrap()).send().await.unwrap();
    assert_eq!(train_ids(&described.tasks()[0]), vec!["0".to_string(), "1".to_string()]);
    let after = instances(&client).await.into_iter().find(|c| c.container_instance_arn() == Some(&gpu_arn)).unwrap();
    assert_eq!(gpu_ids(after.remaining_resources()), Some(vec!["2".into()]));

    // One GPU left: a second task does not fit anywhere.
    let second = client.run_task().task_definition("train").count(1).send().await.unwrap();
    assert!(second.tasks().is_empty());
    let reasons: Vec<&str> = second.failures().iter().filter_map(|f| f.reason()).collect();
    assert!(reasons.contains(&"RESOURCE:GPU"), "{:?}", second.failures());

    // Stopping the first gives its GPUs back, and the next task may have them.
    client.stop_task().task(task.task_arn().unwrap()).send().await.unwrap();
    eventually("the GPUs back", || async {
        let c = instances(&client).await.into_iter().find(|c| c.container_instance_arn() == Some(&gpu_arn))?;
        (gpu_ids(c.remaining_resources())?.len() == 3).then_some(())
    })
    .await;
    let third = client.run_task().task_definition("train").count(1).send().await.unwrap();
    assert_eq!(third.tasks().len(), 1, "{:?}", third.failures());
    assert_eq!(third.tasks()[0].container_instance_arn(), Some(gpu_arn.as_str()));

    // A definition with a GPU value that is no count of GPUs is refused, naming the field.
    let bad = ContainerDefinition::builder().name("bad").image("x").memory(64).resource_requirements(gpu("0")).build();
    let err = client.register_task_definition().family("bad").container_definitions(bad).send().await;
    let message = expect_code(err, "ClientException");
    assert!(message.contains("resourceRequirements type GPU"), "{message}");

    let _ = stop.send(true);
    for a in agents {
        let _ = a.await;
    }
}
