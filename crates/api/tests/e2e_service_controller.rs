//! The service controller end to end: a real server, hollow agents (real sessions, simulated
//! containers) in three zones, and the official SDK as the user. Services reach their desired
//! count spread over zones, replace stopped tasks, roll out new revisions within their bounds,
//! run one DAEMON task per instance, move off draining instances, and replace the tasks of a lost
//! agent.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_ecs::types::{ContainerInstanceStatus, DeploymentConfiguration, DesiredStatus, SchedulingStrategy, Task};
use common::*;
use flotilla_agent::session::ApiClient;
use tokio::sync::watch;

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

struct Fleet {
    api: ApiClient,
    dir: tempfile::TempDir,
    agents: HashMap<usize, (watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Fleet {
    fn new(server: &TestServer) -> Fleet {
        Fleet { api: agent_api(server), dir: tempfile::tempdir().unwrap(), agents: HashMap::new() }
    }

    /// Starts hollow agent `i` (zone by index), or restarts it with the same identity.
    fn start(&mut self, i: usize) {
        let agent = start_hollow_agent(self.api.clone(), self.dir.path(), "default", ZONES[i % 3], i);
        self.agents.insert(i, agent);
    }

    async fn stop(&mut self, i: usize) {
        if let Some((tx, handle)) = self.agents.remove(&i) {
            let _ = tx.send(true);
            let _ = handle.await;
        }
    }

    async fn stop_all(&mut self) {
        let all: Vec<usize> = self.agents.keys().copied().collect();
        for i in all {
            self.stop(i).await;
        }
    }
}

/// Polls for up to 60 s.
async fn within<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..600 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn connected_instances(client: &aws_sdk_ecs::Client) -> Vec<aws_sdk_ecs::types::ContainerInstance> {
    let Ok(list) = client.list_container_instances().send().await else { return vec![] };
    let arns = list.container_instance_arns().to_vec();
    if arns.is_empty() {
        return vec![];
    }
    let out = client.describe_container_instances().set_container_instances(Some(arns)).send().await.unwrap();
    out.container_instances().iter().filter(|c| c.agent_connected()).cloned().collect()
}

async fn wait_connected(client: &aws_sdk_ecs::Client, n: usize) {
    within(&format!("{n} connected agents"), || async { (connected_instances(client).await.len() == n).then_some(()) })
        .await;
}

async fn service(client: &aws_sdk_ecs::Client, name: &str) -> aws_sdk_ecs::types::Service {
    client.describe_services().services(name).send().await.unwrap().services()[0].clone()
}

/// What `aws ecs wait services-stable` checks: one deployment, running == desired.
async fn wait_stable(client: &aws_sdk_ecs::Client, name: &str) -> aws_sdk_ecs::types::Service {
    within(&format!("service {name} is stable"), || async {
        let s = service(client, name).await;
        // A rollout completes once its tasks have run a little while (ten seconds).
        let completed =
            s.deployments().first().and_then(|d| d.rollout_state()).map(|r| r.as_str()) == Some("COMPLETED");
        (s.deployments().len() == 1 && completed && s.running_count() == s.desired_count() && s.pending_count() == 0)
            .then_some(s)
    })
    .await
}

async fn running_tasks(client: &aws_sdk_ecs::Client, name: &str) -> Vec<Task> {
    let arns = client
        .list_tasks()
        .service_name(name)
        .desired_status(DesiredStatus::Running)
        .send()
        .await
        .unwrap()
        .task_arns()
        .to_vec();
    if arns.is_empty() {
        return vec![];
    }
    let out = client.describe_tasks().set_tasks(Some(arns)).send().await.unwrap();
    out.tasks().iter().filter(|t| t.last_status() == Some("RUNNING")).cloned().collect()
}

fn per_zone(tasks: &[Task]) -> Vec<usize> {
    let mut m: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        *m.entry(t.availability_zone().unwrap_or("?").to_string()).or_default() += 1;
    }
    m.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_service_spreads_replaces_and_rolls_out() {
    let server = TestServer::start().await;
    let client = server.client();
    let mut fleet = Fleet::new(&server);
    (0..3).for_each(|i| fleet.start(i));
    wait_connected(&client, 3).await;
    register_td(&client, "web").await;
    client.create_service().service_name("web").task_definition("web").desired_count(3).send().await.unwrap();

    let svc = wait_stable(&client, "web").await;
    assert_eq!(svc.running_count(), 3);
    assert_eq!(svc.deployments()[0].rollout_state().map(|r| r.as_str()), Some("COMPLETED"));
    assert!(svc.events().iter().any(|e| e.message() == Some("(service web) has reached a steady state.")));
    assert!(svc.events().iter().any(|e| e.message().unwrap_or("").starts_with("(service web) has started 3 tasks:")));
    let tasks = running_tasks(&client, "web").await;
    assert_eq!(per_zone(&tasks), vec![1, 1, 1], "spread across zones by default");
    let deployment = svc.deployments()[0].id().unwrap().to_string();
    assert!(tasks.iter().all(|t| t.started_by() == Some(deployment.as_str()) && t.group() == Some("service:web")));

    // StopTask: the task is replaced.
    let victim = tasks[0].task_arn().unwrap().to_string();
    client.stop_task().task(&victim).send().await.unwrap();
    within("the stopped task is replaced", || async {
        let now = running_tasks(&client, "web").await;
        (now.len() == 3 && now.iter().all(|t| t.task_arn() != Some(victim.as_str()))).then_some(())
    })
    .await;
    wait_stable(&client, "web").await;

    // Scale to 5 and back to 2.
    client.update_service().service("web").desired_count(5).send().await.unwrap();
    let svc = wait_stable(&client, "web").await;
    assert_eq!(svc.running_count(), 5);
    client.update_service().service("web").desired_count(2).send().await.unwrap();
    let svc = wait_stable(&client, "web").await;
    assert_eq!(svc.running_count(), 2);
    assert_eq!(running_tasks(&client, "web").await.len(), 2);

    // A rolling update to revision 2 with min 50 / max 200.
    client.update_service().service("web").desired_count(4).send().await.unwrap();
    wait_stable(&client, "web").await;
    register_td(&client, "web").await;
    let config = DeploymentConfiguration::builder().minimum_healthy_percent(50).maximum_percent(200).build();
    client
        .update_service()
        .service("web")
        .task_definition("web:2")
        .deployment_configuration(config)
        .send()
        .await
        .unwrap();
    let lowest = std::sync::atomic::AtomicUsize::new(usize::MAX);
    let svc = within("the rollout completes", || async {
        let running = running_tasks(&client, "web").await.len();
        lowest.fetch_min(running, std::sync::atomic::Ordering::Relaxed);
        let s = service(&client, "web").await;
        let done = s.deployments().len() == 1
            && s.task_definition().unwrap_or("").ends_with("web:2")
            && s.running_count() == 4;
        done.then_some(s)
    })
    .await;
    let lowest = lowest.into_inner();
    assert!(lowest >= 2, "never below 50% of 4 running; saw {lowest}");
    assert_eq!(svc.deployments()[0].rollout_state().map(|r| r.as_str()), Some("COMPLETED"));
    let tasks = running_tasks(&client, "web").await;
    assert_eq!(tasks.len(), 4);
    assert!(tasks.iter().all(|t| t.task_definition_arn().unwrap_or("").ends_with("web:2")));

    // DeleteService with force drains it to INACTIVE, stopping its tasks.
    client.delete_service().service("web").force(true).send().await.unwrap();
    within("the deleted service is INACTIVE", || async {
        (service(&client, "web").await.status() == Some("INACTIVE")).then_some(())
    })
    .await;
    assert!(running_tasks(&client, "web").await.is_empty());
    fleet.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_runs_everywhere_and_a_drained_instance_is_left() {
    let server = TestServer::start().await;
    let client = server.client();
    let mut fleet = Fleet::new(&server);
    (0..3).for_each(|i| fleet.start(i));
    wait_connected(&client, 3).await;
    register_td(&client, "agentd").await;
    register_td(&client, "web").await;
    client
        .create_service()
        .service_name("agentd")
        .task_definition("agentd")
        .scheduling_strategy(SchedulingStrategy::Daemon)
        .send()
        .await
        .unwrap();
    client.create_service().service_name("web").task_definition("web").desired_count(3).send().await.unwrap();
    let svc = wait_stable(&client, "agentd").await;
    assert_eq!(svc.desired_count(), 3);
    wait_stable(&client, "web").await;
    let daemons = running_tasks(&client, "agentd").await;
    let mut on: Vec<String> = daemons.iter().map(|t| t.container_instance_arn().unwrap().to_string()).collect();
    on.sort();
    on.dedup();
    assert_eq!(on.len(), 3, "one per instance");

    // A new instance gets its daemon task.
    fleet.start(3);
    wait_connected(&client, 4).await;
    within("the daemon reaches the new instance", || async {
        let s = service(&client, "agentd").await;
        (s.desired_count() == 4 && s.running_count() == 4 && s.deployments().len() == 1).then_some(())
    })
    .await;

    // Drain the instance that holds a web task: web moves, the daemon leaves it.
    let web = running_tasks(&client, "web").await;
    let drained = web[0].container_instance_arn().unwrap().to_string();
    client
        .update_container_instances_state()
        .container_instances(&drained)
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    within("tasks leave the draining instance", || async {
        let web = running_tasks(&client, "web").await;
        let d = running_tasks(&client, "agentd").await;
        let off = web.iter().chain(d.iter()).all(|t| t.container_instance_arn() != Some(drained.as_str()));
        (off && web.len() == 3 && d.len() == 3).then_some(())
    })
    .await;
    let s = wait_stable(&client, "agentd").await;
    assert_eq!(s.desired_count(), 3);
    wait_stable(&client, "web").await;
    within("the drained instance runs nothing", || async {
        let ci = client.describe_container_instances().container_instances(&drained).send().await.ok()?;
        (ci.container_instances()[0].running_tasks_count() == 0).then_some(())
    })
    .await;
    fleet.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_agent_has_its_tasks_replaced_and_the_surplus_stopped_on_return() {
    let settings = flotilla_api::controller::Settings { lost_grace_ms: 2_000 };
    let server =
        TestServer::start_configured(flotilla_api::AuthMode::Verify, tempfile::tempdir().unwrap(), settings).await;
    let client = server.client();
    let mut fleet = Fleet::new(&server);
    (0..3).for_each(|i| fleet.start(i));
    wait_connected(&client, 3).await;
    register_td(&client, "web").await;
    client.create_service().service_name("web").task_definition("web").desired_count(3).send().await.unwrap();
    wait_stable(&client, "web").await;
    let before = running_tasks(&client, "web").await;

    // Agent 0 goes away; past the grace period its task is replaced on the other two.
    let lost_instance = connected_instances(&client)
        .await
        .into_iter()
        .find(|c| c.attributes().iter().any(|a| a.name() == "ecs.availability-zone" && a.value() == Some(ZONES[0])))
        .and_then(|c| c.container_instance_arn().map(String::from))
        .unwrap();
    fleet.stop(0).await;
    wait_connected(&client, 2).await;
    let lost_task = before.iter().find(|t| t.container_instance_arn() == Some(lost_instance.as_str())).unwrap();
    let lost_arn = lost_task.task_arn().unwrap().to_string();
    within("a replacement runs elsewhere", || async {
        let now = running_tasks(&client, "web").await;
        let elsewhere = now.iter().filter(|t| t.container_instance_arn() != Some(lost_instance.as_str())).count();
        (elsewhere == 3).then_some(())
    })
    .await;
    let svc = wait_stable(&client, "web").await;
    assert_eq!(svc.running_count(), 3);

    // The agent returns: its old task is stopped, and the service runs three, not four.
    fleet.start(0);
    wait_connected(&client, 3).await;
    within("the lost task is stopped on return", || async {
        let t = client.describe_tasks().tasks(&lost_arn).send().await.ok()?;
        (t.tasks()[0].last_status() == Some("STOPPED")).then_some(())
    })
    .await;
    let t = client.describe_tasks().tasks(&lost_arn).send().await.unwrap();
    assert_eq!(t.tasks()[0].stop_code().map(|c| c.as_str()), Some("ServiceSchedulerInitiated"));
    assert!(t.tasks()[0].stopped_reason().unwrap_or("").contains("disconnected"));
    assert_eq!(running_tasks(&client, "web").await.len(), 3);
    fleet.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_cannot_place_says_why_and_others_still_progress() {
    let server = TestServer::start().await;
    let client = server.client();
    register_td(&client, "web").await;
    // No instances at all: nothing can be placed, and the events say so.
    client.create_service().service_name("stuck").task_definition("web").desired_count(2).send().await.unwrap();
    within("the placement failure is reported", || async {
        let s = service(&client, "stuck").await;
        s.events()
            .iter()
            .any(|e| e.message().unwrap_or("").contains("No Container Instances were found in your cluster"))
            .then_some(())
    })
    .await;
    // The controller keeps going: another service is deleted and retired meanwhile.
    client.create_service().service_name("other").task_definition("web").desired_count(0).send().await.unwrap();
    client.delete_service().service("other").send().await.unwrap();
    within("the other service is INACTIVE", || async {
        (service(&client, "other").await.status() == Some("INACTIVE")).then_some(())
    })
    .await;
    let s = service(&client, "stuck").await;
    assert_eq!((s.running_count(), s.desired_count()), (0, 2));
}
