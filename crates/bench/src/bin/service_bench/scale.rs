//! Part (b): one service scaled from 0 to `tasks` tasks on hollow instances (`flotilla agent
//! --simulate N`), timed from the UpdateService call to steady state (running == desired == tasks,
//! one deployment, nothing pending). The baseline, in the same run on a cluster of its own with
//! the same number of hollow instances: RunTask for the same number of tasks, count 10 per call,
//! called one after another as a script would, timed until the cluster runs them all.

use std::path::Path;
use std::time::{Duration, Instant};

use flotilla_sigv4::Credentials;
use serde_json::json;

use crate::ecs::{self, AgentKind, Ecs};

const SERVICE: &str = "bench-scale";
const RUNTASK_COUNT: usize = 10;

#[derive(Debug, Default)]
pub struct ScaleFigures {
    pub tasks: usize,
    pub instances: usize,
    /// RunTask calls alone, then until the cluster's runningTasksCount reaches `tasks`.
    pub runtask_calls: Duration,
    pub runtask_running: Duration,
    /// UpdateService to every task placed (running + pending == tasks), then to steady state.
    pub service_placed: Duration,
    pub service_stable: Duration,
}

pub async fn run(
    bin: &Path,
    work: &Path,
    creds: &Credentials,
    tasks: usize,
    instances: usize,
) -> anyhow::Result<ScaleFigures> {
    let server = flotilla_bench::procs::start_flotilla(
        bin,
        &ecs::dir(work, "scale-server")?,
        creds,
        &work.join("scale-server.log"),
    )?;
    let endpoint = format!("http://{}", server.addr);
    // Room for every task on its share of instances several times over.
    let per_instance = tasks.div_ceil(instances.max(1)) as u32;
    let kind =
        AgentKind::Hollow { count: instances, cpu: 10 * per_instance.max(100), memory: 64 * per_instance.max(64) };
    let container = json!({"name": "app", "image": flotilla_images::WORKLOAD_IMAGE, "memory": 32, "cpu": 10,
                           "essential": true, "command": ["sleep", "inf"]});

    let direct = Ecs::new(&endpoint, creds, "svc-bench-runtask")?;
    let service = Ecs::new(&endpoint, creds, "svc-bench-service")?;
    let mut agents = Vec::new();
    for (i, ecs) in [&direct, &service].into_iter().enumerate() {
        ecs.create_cluster().await?;
        let data = ecs::dir(work, &format!("hollow-{i}"))?;
        agents.push(ecs::start_agent(
            bin,
            &endpoint,
            creds,
            &ecs.cluster,
            &kind,
            &data,
            &work.join(format!("hollow-{i}.log")),
        )?);
    }
    for ecs in [&direct, &service] {
        ecs.wait_connected(instances, Duration::from_secs(120)).await?;
    }
    let td = direct.register("bench-hollow", container).await?;
    let mut figures = ScaleFigures { tasks, instances, ..ScaleFigures::default() };

    // Baseline: RunTask, count 10 per call.
    let t0 = Instant::now();
    let mut left = tasks;
    while left > 0 {
        let count = left.min(RUNTASK_COUNT);
        let out =
            direct.call("RunTask", json!({"cluster": direct.cluster, "taskDefinition": td, "count": count})).await?;
        let failures = out["failures"].as_array().map_or(0, |f| f.len());
        anyhow::ensure!(failures == 0, "RunTask could not place every task: {}", out["failures"]);
        left -= count;
    }
    figures.runtask_calls = t0.elapsed();
    ecs::within("every RunTask task RUNNING", Duration::from_secs(300), Duration::from_millis(20), || async {
        let out = direct.call("DescribeClusters", json!({"clusters": [direct.cluster]})).await?;
        Ok((out["clusters"][0]["runningTasksCount"].as_u64() == Some(tasks as u64)).then_some(()))
    })
    .await?;
    figures.runtask_running = t0.elapsed();

    // The service: created at 0, then scaled to `tasks`.
    let create = json!({"cluster": service.cluster, "serviceName": SERVICE, "taskDefinition": td, "desiredCount": 0});
    service.call("CreateService", create).await?;
    service.wait_stable(SERVICE, Duration::from_secs(60)).await?;
    let t0 = Instant::now();
    let update = json!({"cluster": service.cluster, "service": SERVICE, "desiredCount": tasks});
    service.call("UpdateService", update).await?;
    let placed = std::cell::Cell::new(None);
    ecs::within("the scaled service stable", Duration::from_secs(600), Duration::from_millis(20), || async {
        let s = service.service(SERVICE).await?;
        let (running, pending) = (s["runningCount"].as_u64().unwrap_or(0), s["pendingCount"].as_u64().unwrap_or(0));
        if placed.get().is_none() && running + pending >= tasks as u64 {
            placed.set(Some(t0.elapsed()));
        }
        Ok((ecs::is_stable(&s) && s["desiredCount"].as_u64() == Some(tasks as u64)).then_some(()))
    })
    .await?;
    figures.service_stable = t0.elapsed();
    figures.service_placed = placed.get().unwrap_or(figures.service_stable);
    let live = service.list_tasks(Some(SERVICE), "RUNNING").await?.len();
    anyhow::ensure!(live == tasks, "steady with {live} live tasks, not {tasks}");
    drop(agents);
    drop(server);
    Ok(figures)
}
