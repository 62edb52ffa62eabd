//! Part (a): a 3-task service on a real agent on the local Docker Engine; its containers are
//! killed one at a time (SIGKILL through the Engine API) and each replacement is timed from the
//! container's `die` event to the replacement's `start` event, its ECS `startedAt`, and the moment
//! DescribeTasks first shows it RUNNING. Between kills the service is back at steady state. After
//! every kill, the baseline: plain Docker creating and starting a container of the same image
//! with the same port mapping and memory limit, measured in the same run.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use flotilla_agent::runtime::labels;
use flotilla_images::WORKLOAD_IMAGE;
use flotilla_sigv4::Credentials;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::ecs::{self, ecs_time_ns, now_ns, AgentKind, Ecs};

const SERVICE: &str = "bench-web";
const DESIRED: usize = 3;
const MEMORY_MIB: i64 = 32;
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
const BASELINE_LABEL: &str = "io.flotilla.bench";

/// Every sample in milliseconds.
#[derive(Debug, Default)]
pub struct KillFigures {
    pub kill_to_die: Vec<f64>,
    pub die_to_start_event: Vec<f64>,
    pub die_to_started_at: Vec<f64>,
    pub die_to_observed: Vec<f64>,
    pub baseline_create_start: Vec<f64>,
    /// How long the run waited in all for victims to reach `min_age`.
    pub aged_wait: Duration,
}

/// A container event: which container, what happened, the task label, Docker's time (ns).
#[derive(Debug, Clone)]
struct Event {
    id: String,
    action: String,
    task: Option<String>,
    time_ns: i64,
}

type Log = Arc<Mutex<Vec<Event>>>;

/// Records every container `start` and `die` event from now on.
fn listen(docker: &Docker) -> (Log, tokio::task::JoinHandle<()>) {
    let log: Log = Arc::default();
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("event".to_string(), vec!["start".to_string(), "die".to_string()]),
    ]);
    let mut stream = docker.events(Some(EventsOptionsBuilder::default().filters(&filters).build()));
    let sink = log.clone();
    let handle = tokio::spawn(async move {
        while let Some(Ok(e)) = stream.next().await {
            let (Some(actor), Some(action)) = (e.actor, e.action) else { continue };
            let attrs = actor.attributes.unwrap_or_default();
            let time_ns = e.time_nano.or(e.time.map(|s| s * 1_000_000_000)).unwrap_or(0);
            let event =
                Event { id: actor.id.unwrap_or_default(), action, task: attrs.get(labels::TASK).cloned(), time_ns };
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(event);
        }
    });
    (log, handle)
}

async fn wait_event(log: &Log, what: &str, pred: impl Fn(&Event) -> bool) -> anyhow::Result<Event> {
    ecs::within(what, STEP_TIMEOUT, Duration::from_millis(2), || async {
        Ok(log.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|e| pred(e)).cloned())
    })
    .await
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

pub async fn run(
    bin: &Path,
    work: &Path,
    creds: &Credentials,
    kills: usize,
    min_age: Duration,
) -> anyhow::Result<KillFigures> {
    let docker = flotilla_images::connect().await.context("connecting to Docker")?;
    flotilla_images::ensure_image(&docker, WORKLOAD_IMAGE).await.context("building the workload image")?;

    let server = flotilla_bench::procs::start_flotilla(
        bin,
        &ecs::dir(work, "kill-server")?,
        creds,
        &work.join("kill-server.log"),
    )?;
    let endpoint = format!("http://{}", server.addr);
    let ecs = Ecs::new(&endpoint, creds, "svc-bench-kill")?;
    let cluster_arn = ecs.create_cluster().await?;
    let _agent = ecs::start_agent(
        bin,
        &endpoint,
        creds,
        &ecs.cluster,
        &AgentKind::Docker,
        &ecs::dir(work, "kill-agent")?,
        &work.join("kill-agent.log"),
    )?;
    ecs.wait_connected(1, Duration::from_secs(60)).await?;

    let td = ecs
        .register(
            SERVICE,
            json!({"name": "web", "image": WORKLOAD_IMAGE, "memory": MEMORY_MIB, "essential": true,
                   "command": ["serve", "8080"], "portMappings": [{"containerPort": 8080, "hostPort": 0}]}),
        )
        .await?;
    ecs.call(
        "CreateService",
        json!({"cluster": ecs.cluster, "serviceName": SERVICE, "taskDefinition": td, "desiredCount": DESIRED}),
    )
    .await?;
    ecs.wait_stable(SERVICE, STEP_TIMEOUT).await?;

    let (events, listener) = listen(&docker);
    let mut figures = KillFigures::default();
    let mut known: HashSet<String> = HashSet::new();
    let result = async {
        for i in 0..kills {
            let live = running(&ecs).await?;
            anyhow::ensure!(live.len() == DESIRED, "expected {DESIRED} running tasks, found {}", live.len());
            known.extend(live.iter().map(|t| t["taskArn"].as_str().unwrap_or_default().to_string()));
            // The oldest task, once it has run `min_age`: a task that dies sooner counts as one
            // that failed to start, and the controller backs off after two of those in a row.
            let victim = live.iter().min_by_key(|t| ecs_time_ns(&t["startedAt"]).unwrap_or(i64::MAX)).expect("3 tasks");
            let age = Duration::from_nanos((now_ns() - ecs_time_ns(&victim["startedAt"]).unwrap_or(0)).max(0) as u64);
            if age < min_age {
                figures.aged_wait += min_age - age;
                tokio::time::sleep(min_age - age).await;
            }
            let victim_arn = victim["taskArn"].as_str().unwrap_or_default().to_string();
            let container = web_container(&docker, &victim_arn).await?;

            let kill_ns = now_ns();
            let options = KillContainerOptionsBuilder::default().signal("SIGKILL").build();
            docker.kill_container(&container, Some(options)).await.context("docker kill")?;
            let died = wait_event(&events, "the die event", |e| e.action == "die" && e.id == container).await?;
            let started = wait_event(&events, "the replacement's start event", |e| {
                e.action == "start" && e.time_ns >= died.time_ns && e.task.as_ref().is_some_and(|t| !known.contains(t))
            })
            .await?;
            let new_arn = started.task.clone().unwrap_or_default();
            let task = ecs::within("the replacement RUNNING", STEP_TIMEOUT, ecs::POLL, || async {
                let t = ecs.describe_tasks(std::slice::from_ref(&new_arn)).await?;
                Ok(t.into_iter().next().filter(|t| t["lastStatus"] == "RUNNING").map(|t| (t, now_ns())))
            })
            .await?;
            let (task, observed_ns) = task;
            let started_at = ecs_time_ns(&task["startedAt"]).context("the replacement has no startedAt")?;

            figures.kill_to_die.push(ms(died.time_ns - kill_ns));
            figures.die_to_start_event.push(ms(started.time_ns - died.time_ns));
            figures.die_to_started_at.push(ms(started_at - died.time_ns));
            figures.die_to_observed.push(ms(observed_ns - died.time_ns));

            // Steady again, and the killed task is recorded as stopped, before the next kill.
            ecs.wait_stable(SERVICE, STEP_TIMEOUT).await?;
            ecs::within("the killed task STOPPED", STEP_TIMEOUT, ecs::POLL, || async {
                let t = ecs.describe_tasks(std::slice::from_ref(&victim_arn)).await?;
                Ok(t.first().is_some_and(|t| t["lastStatus"] == "STOPPED").then_some(()))
            })
            .await?;

            figures.baseline_create_start.push(baseline(&docker, i).await?);
            eprint!(".");
        }
        eprintln!();
        anyhow::Ok(())
    }
    .await;
    listener.abort();
    // The service's containers go with the agent's; remove them so nothing outlives the run.
    let _ = ecs.call("DeleteService", json!({"cluster": ecs.cluster, "service": SERVICE, "force": true})).await;
    let _ = ecs::within("the service's tasks stopped", Duration::from_secs(60), Duration::from_millis(200), || async {
        Ok(ecs.list_tasks(Some(SERVICE), "RUNNING").await?.is_empty().then_some(()))
    })
    .await;
    remove_labelled(&docker, &format!("{}={cluster_arn}", labels::CLUSTER)).await;
    result?;
    Ok(figures)
}

/// The service's tasks that are RUNNING and meant to stay so.
async fn running(ecs: &Ecs) -> anyhow::Result<Vec<Value>> {
    let arns = ecs.list_tasks(Some(SERVICE), "RUNNING").await?;
    Ok(ecs.describe_tasks(&arns).await?.into_iter().filter(|t| t["lastStatus"] == "RUNNING").collect())
}

async fn web_container(docker: &Docker, task_arn: &str) -> anyhow::Result<String> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{}={task_arn}", labels::TASK), format!("{}=web", labels::CONTAINER)],
    )]);
    let list = docker.list_containers(Some(ListContainersOptionsBuilder::default().filters(&filters).build())).await?;
    list.into_iter().find_map(|c| c.id).with_context(|| format!("no running container for {task_arn}"))
}

/// Plain Docker: create and start a container of the same image, port mapping and memory
/// limit; returns the milliseconds both calls took. The container is removed afterwards.
async fn baseline(docker: &Docker, i: usize) -> anyhow::Result<f64> {
    let name = format!("flotilla-service-bench-{}-{i}", std::process::id());
    let body = ContainerCreateBody {
        image: Some(WORKLOAD_IMAGE.into()),
        cmd: Some(vec!["serve".into(), "8080".into()]),
        labels: Some(HashMap::from([(BASELINE_LABEL.to_string(), "baseline".to_string())])),
        exposed_ports: Some(vec!["8080/tcp".into()]),
        host_config: Some(HostConfig {
            memory: Some(MEMORY_MIB * 1024 * 1024),
            port_bindings: Some(HashMap::from([(
                "8080/tcp".to_string(),
                Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) }]),
            )])),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    let t0 = Instant::now();
    let created =
        docker.create_container(Some(CreateContainerOptionsBuilder::default().name(&name).build()), body).await?;
    docker.start_container(&created.id, None).await?;
    let took = t0.elapsed().as_secs_f64() * 1e3;
    let _ =
        docker.remove_container(&created.id, Some(RemoveContainerOptionsBuilder::default().force(true).build())).await;
    Ok(took)
}

async fn remove_labelled(docker: &Docker, label: &str) {
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    for c in docker.list_containers(Some(options)).await.unwrap_or_default() {
        if let Some(id) = c.id {
            let _ =
                docker.remove_container(&id, Some(RemoveContainerOptionsBuilder::default().force(true).build())).await;
        }
    }
}
