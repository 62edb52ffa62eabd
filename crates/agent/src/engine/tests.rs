//! Actor behaviour against the fake runtime, with tokio's clock paused so scripted delays and
//! stop timeouts run instantly and deterministically.

use std::sync::Arc;
use std::time::Duration;

use flotilla_model::{ContainerDefinition, ContainerDependency, HealthCheck, PortMapping, Task, TaskDefinition};
use flotilla_protocol::{ManifestEntry, TaskAssignment, TaskReport};
use futures::StreamExt;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::*;
use crate::runtime::fake::{Call, FakeRuntime, Script};
use crate::runtime::{labels, ContainerSpec, Health, LogSource, RunState};

/// Daemon hiccups: retries, backoff and the true state afterwards.
mod hiccup;

/// The task metadata endpoint as the engine feeds it.
mod metadata;

/// Fargate tasks: the sandbox, the Fargate rules, the task's own interface, the stop cap.
mod fargate;

/// A task's secrets from the control plane, and tasks whose secrets cannot be had.
mod secrets;

/// Restart policies, start timeouts and process options.
mod restart;

/// The pull step's credentials: the task's, else the host's; one pull per image and credentials.
mod pull;

const CLUSTER: &str = "arn:aws:ecs:local:000000000000:cluster/default";
const INSTANCE: &str = "arn:aws:ecs:local:000000000000:container-instance/default/i-1";
const IMAGE: &str = "flotilla/workload:latest";

fn arn(id: &str) -> String {
    format!("arn:aws:ecs:local:000000000000:task/default/{id}")
}

fn container(name: &str) -> ContainerDefinition {
    ContainerDefinition { name: Some(name.into()), image: Some(IMAGE.into()), ..Default::default() }
}

fn non_essential(name: &str) -> ContainerDefinition {
    ContainerDefinition { essential: Some(false), ..container(name) }
}

fn depends(mut c: ContainerDefinition, on: &str, condition: &str) -> ContainerDefinition {
    c.depends_on
        .get_or_insert_with(Vec::new)
        .push(ContainerDependency { container_name: Some(on.into()), condition: Some(condition.into()) });
    c
}

fn with_health(c: ContainerDefinition) -> ContainerDefinition {
    ContainerDefinition {
        health_check: Some(HealthCheck { command: Some(vec!["CMD".into(), "true".into()]), ..Default::default() }),
        ..c
    }
}

fn assignment(id: &str, containers: Vec<ContainerDefinition>) -> TaskAssignment {
    assignment_in_mode(id, containers, None)
}

fn assignment_in_mode(id: &str, containers: Vec<ContainerDefinition>, mode: Option<&str>) -> TaskAssignment {
    TaskAssignment {
        task: Task { task_arn: Some(arn(id)), desired_status: Some("RUNNING".into()), ..Default::default() },
        definition: TaskDefinition {
            family: Some("fam".into()),
            revision: Some(1),
            network_mode: mode.map(str::to_string),
            container_definitions: Some(containers),
            ..Default::default()
        },
        reserved_ports: Vec::new(),
        network: None,
        stop_timeout_cap_seconds: None,
    }
}

fn stopped(mut a: TaskAssignment) -> TaskAssignment {
    a.task.desired_status = Some("STOPPED".into());
    a
}

struct Harness {
    engine: Engine,
    fake: FakeRuntime,
    reports: UnboundedReceiver<TaskReport>,
    seen: Vec<TaskReport>,
    /// Reports of other tasks that came while waiting for one: tasks progress in parallel (file
    /// writes on the blocking pool finish in any order), so a later wait may be for one of them.
    backlog: std::collections::VecDeque<TaskReport>,
    dir: Arc<tempfile::TempDir>,
    /// When the test began, for the injected wall clock.
    start: tokio::time::Instant,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(|_| {})
    }

    fn with(tweak: impl FnOnce(&mut EngineConfig)) -> Harness {
        let fake = FakeRuntime::new();
        fake.add_image(IMAGE);
        fake.add_image(crate::network::DEFAULT_PAUSE_IMAGE);
        Harness::on(fake, Arc::new(tempfile::tempdir().unwrap()), tokio::time::Instant::now(), tweak)
    }

    /// A new engine (an agent restart) on the same runtime and data dir.
    fn on(
        fake: FakeRuntime,
        dir: Arc<tempfile::TempDir>,
        start: tokio::time::Instant,
        tweak: impl FnOnce(&mut EngineConfig),
    ) -> Harness {
        let mut config = EngineConfig::new(dir.path(), CLUSTER, INSTANCE);
        config.clock = Arc::new(move || 1_700_000_000_000 + start.elapsed().as_millis() as i64);
        tweak(&mut config);
        let (tx, reports) = unbounded_channel();
        let engine = Engine::new(config, Arc::new(fake.clone()), tx);
        Harness { engine, fake, reports, seen: Vec::new(), backlog: Default::default(), dir, start }
    }

    /// Waits for a report of `task` that satisfies `pred`.
    async fn until(&mut self, task: &str, what: &str, pred: impl Fn(&TaskReport) -> bool) -> TaskReport {
        // What already came for this task counts as if it came now, in order.
        while let Some(i) = self.backlog.iter().position(|r| r.task_arn == task) {
            let r = self.backlog.remove(i).expect("position is in range");
            if pred(&r) {
                return r;
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        loop {
            let r = tokio::time::timeout_at(deadline, self.reports.recv())
                .await
                .unwrap_or_else(|_| panic!("no report of {task} {what}; saw {:#?}", self.statuses(task)))
                .expect("report channel closed");
            self.seen.push(r.clone());
            if r.task_arn == task && pred(&r) {
                return r;
            }
            if r.task_arn != task {
                self.backlog.push_back(r);
            }
        }
    }

    async fn status(&mut self, task: &str, status: &str) -> TaskReport {
        self.until(task, status, |r| r.status == status).await
    }

    fn statuses(&self, task: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.seen.iter().filter(|r| r.task_arn == task) {
            if out.last().map(String::as_str) != Some(r.status.as_str()) {
                out.push(r.status.as_str().to_string());
            }
        }
        out
    }

    fn created(&self) -> usize {
        self.fake.calls().iter().filter(|c| matches!(c, Call::CreateContainer(_))).count()
    }
}

fn container_report<'a>(r: &'a TaskReport, name: &str) -> &'a flotilla_protocol::ContainerReport {
    r.containers.iter().find(|c| c.name == name).unwrap()
}

fn position(calls: &[Call], call: &Call) -> usize {
    calls.iter().position(|c| c == call).unwrap_or_else(|| panic!("{call:?} not in {calls:#?}"))
}

#[tokio::test(start_paused = true)]
async fn a_task_walks_to_running_with_timestamps_and_increasing_seq() {
    let mut h = Harness::new();
    let task = arn("t1");
    h.engine.apply(assignment("t1", vec![container("web")])).unwrap();
    let r = h.status(&task, "RUNNING").await;
    assert_eq!(h.statuses(&task), vec!["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING"]);
    assert!(r.pull_started_at_ms.is_some() && r.pull_stopped_at_ms.is_some() && r.started_at_ms.is_some());
    assert_eq!(container_report(&r, "web").status, "RUNNING");
    assert!(container_report(&r, "web").runtime_id.is_some());
    assert!(h.seen.windows(2).all(|w| w[1].seq > w[0].seq));
    let spec = &h.fake.task_containers(&task)["web"].spec;
    assert_eq!(spec.labels[labels::CLUSTER], CLUSTER);
    assert_eq!(spec.labels[labels::INSTANCE], INSTANCE);
    assert_eq!(spec.labels[labels::TASK], task);
    assert_eq!(
        h.engine.tasks(),
        vec![TaskSummary {
            task_arn: task.clone(),
            known_status: TaskStatus::Running,
            desired_status: DesiredStatus::Running
        }]
    );

    h.engine.apply(stopped(assignment("t1", vec![container("web")]))).unwrap();
    let r = h.status(&task, "STOPPED").await;
    assert_eq!(h.statuses(&task)[4..], ["DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"]);
    assert!(r.stopping_at_ms.is_some() && r.execution_stopped_at_ms.is_some() && r.stopped_at_ms.is_some());
    // The server asked for the stop, so the agent names no stop code of its own.
    assert_eq!((r.stop_code.clone(), container_report(&r, "web").exit_code), (None, Some(0)));
}

#[tokio::test(start_paused = true)]
async fn an_essential_container_exit_stops_the_task() {
    let mut h = Harness::new();
    h.fake.script("web", Script { exit_after: Some((Duration::from_secs(2), 3)), ..Script::default() });
    let task = arn("t1");
    h.engine.apply(assignment("t1", vec![container("web"), non_essential("side")])).unwrap();
    let r = h.status(&task, "STOPPED").await;
    assert_eq!(r.stop_code.as_deref(), Some("EssentialContainerExited"));
    let reason = r.stopped_reason.clone().unwrap();
    assert!(reason.starts_with("Essential container in task exited") && reason.contains("web"), "{reason}");
    assert_eq!(container_report(&r, "web").exit_code, Some(3));
    assert_eq!(container_report(&r, "side").status, "STOPPED");
    assert!(h.statuses(&task).contains(&"RUNNING".to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_non_essential_exit_leaves_the_task_running() {
    let mut h = Harness::new();
    h.fake.script("side", Script { exit_after: Some((Duration::from_secs(1), 1)), ..Script::default() });
    let task = arn("t1");
    h.engine.apply(assignment("t1", vec![container("web"), non_essential("side")])).unwrap();
    let r = h.until(&task, "side exited", |r| container_report(r, "side").status == "STOPPED").await;
    assert_eq!(r.status, "RUNNING");
    assert_eq!(container_report(&r, "side").exit_code, Some(1));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.engine.report(&task).unwrap().status, "RUNNING");
}

#[tokio::test(start_paused = true)]
async fn depends_on_orders_starts_through_success_and_healthy() {
    let mut h = Harness::new();
    h.fake.script("init", Script { exit_after: Some((Duration::from_secs(1), 0)), ..Script::default() });
    h.fake.script("db", Script { health_after: Some((Duration::from_secs(5), Health::Healthy)), ..Script::default() });
    let task = arn("t1");
    let defs = vec![
        depends(container("web"), "db", "HEALTHY"),
        with_health(depends(container("db"), "init", "SUCCESS")),
        non_essential("init"),
    ];
    h.engine.apply(assignment("t1", defs)).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = h.fake.calls();
    assert!(calls.contains(&Call::StartContainer("flotilla-t1-db".into())));
    assert!(!calls.contains(&Call::StartContainer("flotilla-t1-web".into())), "web started before db was healthy");
    let r = h.status(&task, "RUNNING").await;
    let calls = h.fake.calls();
    let init = position(&calls, &Call::StartContainer("flotilla-t1-init".into()));
    let db = position(&calls, &Call::StartContainer("flotilla-t1-db".into()));
    let web = position(&calls, &Call::StartContainer("flotilla-t1-web".into()));
    assert!(init < db && db < web, "{calls:#?}");
    assert_eq!(r.health_status.as_deref(), Some("HEALTHY"));
    assert_eq!(container_report(&r, "init").exit_code, Some(0));
}

#[tokio::test(start_paused = true)]
async fn a_failed_success_dependency_fails_the_task_to_start() {
    let mut h = Harness::new();
    h.fake.script("init", Script { exit_after: Some((Duration::from_secs(1), 2)), ..Script::default() });
    let task = arn("t1");
    h.engine
        .apply(assignment("t1", vec![depends(container("web"), "init", "SUCCESS"), non_essential("init")]))
        .unwrap();
    let r = h.status(&task, "STOPPED").await;
    assert_eq!(r.stop_code.as_deref(), Some("TaskFailedToStart"));
    assert!(r.stopped_reason.as_deref().unwrap().contains("DependencyConditionFailed"), "{r:?}");
    assert!(!h.fake.calls().contains(&Call::StartContainer("flotilla-t1-web".into())));
    assert!(!h.statuses(&task).contains(&"RUNNING".to_string()));
}

#[tokio::test(start_paused = true)]
async fn stop_timeout_escalates_from_sigterm_to_sigkill() {
    let mut h = Harness::new();
    h.fake.script("web", Script { on_sigterm: None, ..Script::default() });
    let task = arn("t1");
    let web = ContainerDefinition { stop_timeout: Some(5), ..container("web") };
    h.engine.apply(assignment("t1", vec![web.clone(), non_essential("side")])).unwrap();
    h.status(&task, "RUNNING").await;
    let asked = tokio::time::Instant::now();
    h.engine.apply(stopped(assignment("t1", vec![web, non_essential("side")]))).unwrap();
    let r = h.status(&task, "STOPPED").await;
    assert!(asked.elapsed() >= Duration::from_secs(5), "{:?}", asked.elapsed());
    assert_eq!(container_report(&r, "web").exit_code, Some(137));
    let calls = h.fake.calls();
    assert!(calls.contains(&Call::StopContainer("flotilla-t1-web".into(), Duration::from_secs(5))));
    // No stopTimeout: the agent default, 30 s.
    assert!(calls.contains(&Call::StopContainer("flotilla-t1-side".into(), Duration::from_secs(30))));
}

#[tokio::test(start_paused = true)]
async fn a_stop_that_hangs_is_followed_by_sigkill() {
    let mut h = Harness::new();
    let task = arn("t1");
    let web = ContainerDefinition { stop_timeout: Some(2), ..container("web") };
    h.engine.apply(assignment("t1", vec![web.clone()])).unwrap();
    h.status(&task, "RUNNING").await;
    h.fake.set_stop_hangs(true);
    h.engine.apply(stopped(assignment("t1", vec![web]))).unwrap();
    let r = h.status(&task, "STOPPED").await;
    assert!(h.fake.calls().contains(&Call::KillContainer("flotilla-t1-web".into(), "SIGKILL".into())));
    assert_eq!(container_report(&r, "web").exit_code, Some(137));
}

#[tokio::test(start_paused = true)]
async fn dependents_are_stopped_before_their_dependencies() {
    let mut h = Harness::new();
    let task = arn("t1");
    let defs = vec![depends(container("web"), "db", "START"), container("db")];
    h.engine.apply(assignment("t1", defs.clone())).unwrap();
    h.status(&task, "RUNNING").await;
    h.engine.apply(stopped(assignment("t1", defs))).unwrap();
    h.status(&task, "STOPPED").await;
    let calls = h.fake.calls();
    let web = position(&calls, &Call::StopContainer("flotilla-t1-web".into(), Duration::from_secs(30)));
    let db = position(&calls, &Call::StopContainer("flotilla-t1-db".into(), Duration::from_secs(30)));
    assert!(web < db);
}

#[tokio::test(start_paused = true)]
async fn a_missing_image_stops_the_task_with_cannot_pull() {
    let mut h = Harness::new();
    let task = arn("t1");
    let web = ContainerDefinition { image: Some("nosuch/image:1".into()), ..container("web") };
    h.engine.apply(assignment("t1", vec![web])).unwrap();
    let r = h.status(&task, "STOPPED").await;
    assert_eq!(r.stop_code.as_deref(), Some("TaskFailedToStart"));
    let reason = r.stopped_reason.clone().unwrap();
    assert!(reason.starts_with("CannotPullContainerError: "), "{reason}");
    assert_eq!(container_report(&r, "web").reason.as_deref(), Some(reason.as_str()));
    assert!(r.pull_started_at_ms.is_some() && r.pull_stopped_at_ms.is_some());
    assert_eq!(h.created(), 0);
    assert!(h.fake.calls().contains(&Call::PullImage("nosuch/image:1".into())));
}

#[tokio::test(start_paused = true)]
async fn images_are_pulled_only_when_absent_and_never_pulled_when_told_not_to() {
    let mut h = Harness::new();
    h.fake.add_pullable("app:2");
    let app = |n: &str| ContainerDefinition { image: Some("app:2".into()), ..container(n) };
    h.engine.apply(assignment("t1", vec![app("a"), app("b")])).unwrap();
    h.engine.apply(assignment("t2", vec![app("a")])).unwrap();
    h.status(&arn("t1"), "RUNNING").await;
    h.status(&arn("t2"), "RUNNING").await;
    let pulls: Vec<_> = h.fake.calls().into_iter().filter(|c| matches!(c, Call::PullImage(_))).collect();
    assert_eq!(pulls, vec![Call::PullImage("app:2".into())]);

    let mut h = Harness::with(|c| c.pull_behavior = PullBehavior::Never);
    h.fake.add_pullable("app:2");
    h.engine.apply(assignment("t3", vec![app("a")])).unwrap();
    let r = h.status(&arn("t3"), "STOPPED").await;
    assert!(r.stopped_reason.unwrap().starts_with("CannotPullContainerError"));
    assert!(!h.fake.calls().iter().any(|c| matches!(c, Call::PullImage(_))));
}

#[tokio::test(start_paused = true)]
async fn privileged_containers_are_refused_unless_allowed() {
    let mut h = Harness::new();
    let p = ContainerDefinition { privileged: Some(true), ..container("p") };
    h.engine.apply(assignment("t1", vec![p.clone()])).unwrap();
    let r = h.status(&arn("t1"), "STOPPED").await;
    assert_eq!(r.stop_code.as_deref(), Some("TaskFailedToStart"));
    assert!(r.stopped_reason.unwrap().contains("privileged"));
    assert_eq!(h.created(), 0);

    let mut h = Harness::with(|c| c.allow_privileged = true);
    h.engine.apply(assignment("t1", vec![p])).unwrap();
    h.status(&arn("t1"), "RUNNING").await;
    assert!(h.fake.task_containers(&arn("t1"))["p"].spec.privileged);
}

#[tokio::test(start_paused = true)]
async fn applying_twice_creates_no_duplicate_containers() {
    let mut h = Harness::new();
    let a = assignment("t1", vec![container("web"), container("side")]);
    h.engine.apply(a.clone()).unwrap();
    h.engine.apply(a.clone()).unwrap();
    h.status(&arn("t1"), "RUNNING").await;
    h.engine.apply(a).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.created(), 2);
    assert_eq!(h.fake.containers().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_apply_after_lost_state_takes_over_the_labelled_containers() {
    let mut h = Harness::new();
    let a = assignment("t1", vec![container("web")]);
    h.engine.apply(a.clone()).unwrap();
    let before = h.status(&arn("t1"), "RUNNING").await;
    h.engine.shutdown().await;
    // The data dir is lost; the server sends the task again.
    let mut h = Harness::on(h.fake.clone(), Arc::new(tempfile::tempdir().unwrap()), h.start, |_| {});
    h.engine.apply(a).unwrap();
    let after = h.status(&arn("t1"), "RUNNING").await;
    assert_eq!(container_report(&after, "web").runtime_id, container_report(&before, "web").runtime_id);
    assert_eq!(h.fake.containers().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agent_adopts_its_running_tasks() {
    let mut h = Harness::new();
    h.engine.apply(assignment("t1", vec![container("web")])).unwrap();
    h.engine.apply(assignment("t2", vec![container("web")])).unwrap();
    let before = h.status(&arn("t1"), "RUNNING").await;
    h.status(&arn("t2"), "RUNNING").await;
    h.engine.shutdown().await;
    // While the agent is away, t2's container exits.
    h.fake.exit(&arn("t2"), "web", 4);
    // Restarting takes a while; the report numbering rests on the clock moving on.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut h2 = Harness::on(h.fake.clone(), h.dir.clone(), h.start, |_| {});
    let mut adopted = h2.engine.adopt().await.unwrap();
    adopted.sort();
    assert_eq!(adopted, vec![arn("t1"), arn("t2")]);
    let r1 = h2.status(&arn("t1"), "RUNNING").await;
    assert_eq!(container_report(&r1, "web").runtime_id, container_report(&before, "web").runtime_id);
    assert_eq!(r1.started_at_ms, before.started_at_ms);
    assert!(r1.seq > before.seq);
    let r2 = h2.status(&arn("t2"), "STOPPED").await;
    assert_eq!(r2.stop_code.as_deref(), Some("EssentialContainerExited"));
    assert_eq!(container_report(&r2, "web").exit_code, Some(4));
    assert_eq!(h2.created(), 2, "adoption created containers");

    // Events reach the adopted actor.
    h2.fake.exit(&arn("t1"), "web", 3);
    let r1 = h2.status(&arn("t1"), "STOPPED").await;
    assert_eq!(container_report(&r1, "web").exit_code, Some(3));
}

#[tokio::test(start_paused = true)]
async fn a_manifest_stops_the_tasks_it_does_not_list() {
    let mut h = Harness::new();
    h.engine.apply(assignment("keep", vec![container("web")])).unwrap();
    h.engine.apply(assignment("drop", vec![container("web")])).unwrap();
    h.engine.apply(assignment("told", vec![container("web")])).unwrap();
    for t in ["keep", "drop", "told"] {
        h.status(&arn(t), "RUNNING").await;
    }
    let entry = |t: &str, d: &str| ManifestEntry { task_arn: arn(t), desired_status: d.into() };
    let mut out = h.engine.reconcile(&[entry("keep", "RUNNING"), entry("told", "STOPPED"), entry("new", "RUNNING")]);
    out.stopping.sort();
    assert_eq!(out.stopping, vec![arn("drop"), arn("told")]);
    assert_eq!(out.unknown, vec![arn("new")]);
    h.status(&arn("drop"), "STOPPED").await;
    h.status(&arn("told"), "STOPPED").await;
    assert_eq!(h.engine.report(&arn("keep")).unwrap().status, "RUNNING");
}

#[tokio::test(start_paused = true)]
async fn the_reaper_removes_only_unowned_containers_of_this_agent() {
    let mut h = Harness::new();
    h.engine.apply(assignment("t1", vec![container("web")])).unwrap();
    h.status(&arn("t1"), "RUNNING").await;
    let orphan = |instance: &str, name: &str| ContainerSpec {
        name: name.into(),
        image: IMAGE.into(),
        labels: [
            (labels::MARKER, "true"),
            (labels::INSTANCE, instance),
            (labels::TASK, "arn:gone"),
            (labels::CONTAINER, "web"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        ..ContainerSpec::default()
    };
    h.fake.insert_container(orphan(INSTANCE, "orphan"), RunState::Running);
    h.fake.insert_container(orphan("another-agent", "theirs"), RunState::Running);
    assert_eq!(h.engine.reap().await.unwrap(), vec!["orphan".to_string()]);
    let names: Vec<String> = h.fake.containers().into_iter().map(|c| c.spec.name).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"theirs".to_string()) && names.contains(&"flotilla-t1-web".to_string()));
}

#[tokio::test(start_paused = true)]
async fn awsvpc_tasks_get_their_own_address_and_lose_it_when_stopped() {
    let mut h = Harness::new();
    h.engine.apply(assignment_in_mode("a", vec![container("web")], Some("awsvpc"))).unwrap();
    h.engine.apply(assignment_in_mode("b", vec![container("web")], Some("awsvpc"))).unwrap();
    let ra = h.status(&arn("a"), "RUNNING").await;
    let rb = h.status(&arn("b"), "RUNNING").await;
    let (ia, ib) = (ra.private_ipv4.unwrap(), rb.private_ipv4.unwrap());
    assert_ne!(ia, ib);
    assert_eq!(h.fake.networks(), vec![crate::network::DEFAULT_AWSVPC_NETWORK.to_string()]);
    let web = &h.fake.task_containers(&arn("a"))["web"];
    let pause = &h.fake.task_containers(&arn("a"))[labels::PAUSE_NAME];
    assert_eq!(web.spec.network_mode, Some(format!("container:{}", pause.id)));
    h.engine.apply(stopped(assignment_in_mode("a", vec![container("web")], Some("awsvpc")))).unwrap();
    h.status(&arn("a"), "STOPPED").await;
    assert!(!h.fake.task_containers(&arn("a")).contains_key(labels::PAUSE_NAME));
}

#[tokio::test(start_paused = true)]
async fn bridge_ports_are_reported_as_network_bindings() {
    let mut h = Harness::new();
    let web = ContainerDefinition {
        port_mappings: Some(vec![
            PortMapping { container_port: Some(8080), ..Default::default() },
            PortMapping { container_port: Some(9090), host_port: Some(19090), ..Default::default() },
        ]),
        ..container("web")
    };
    h.engine.apply(assignment("t1", vec![web])).unwrap();
    let r = h.status(&arn("t1"), "RUNNING").await;
    let b: Vec<_> =
        container_report(&r, "web").network_bindings.iter().map(|b| (b.container_port, b.host_port)).collect();
    assert_eq!(b.len(), 2);
    assert!(b[0].0 == Some(8080) && b[0].1.is_some_and(|p| p > 0));
    assert_eq!(b[1], (Some(9090), Some(19090)));
}

#[tokio::test(start_paused = true)]
async fn health_rolls_up_to_the_task() {
    let mut h = Harness::new();
    h.fake.script("web", Script { health_on_start: Health::Healthy, ..Script::default() });
    let task = arn("t1");
    h.engine.apply(assignment("t1", vec![with_health(container("web")), non_essential("side")])).unwrap();
    let r = h.until(&task, "healthy", |r| r.health_status.as_deref() == Some("HEALTHY")).await;
    assert_eq!(container_report(&r, "web").health_status.as_deref(), Some("HEALTHY"));
    assert_eq!(container_report(&r, "side").health_status, None);
    h.fake.set_health(&task, "web", Health::Unhealthy);
    let r = h.until(&task, "unhealthy", |r| r.health_status.as_deref() == Some("UNHEALTHY")).await;
    // An unhealthy task keeps running: replacing it is the service scheduler's call.
    assert_eq!(r.status, "RUNNING");
}

#[tokio::test(start_paused = true)]
async fn logs_are_kept_after_exit_and_followers_end_with_the_task() {
    let mut h = Harness::new();
    let output = vec![(LogSource::Stdout, "hello".to_string()), (LogSource::Stderr, "oops".to_string())];
    h.fake.script("web", Script { output, exit_after: Some((Duration::from_secs(1), 0)), ..Script::default() });
    let task = arn("t1");
    h.engine.apply(assignment("t1", vec![container("web")])).unwrap();
    let mut follow = h.engine.logs(&task, Some("web"), true).unwrap();
    h.status(&task, "STOPPED").await;
    let lines: Vec<(LogSource, String)> =
        h.engine.logs(&task, None, false).unwrap().map(|l| (l.source, l.line)).collect().await;
    assert_eq!(lines, vec![(LogSource::Stdout, "hello".into()), (LogSource::Stderr, "oops".into())]);
    let followed: Vec<String> = tokio::time::timeout(Duration::from_secs(60), (&mut follow).map(|l| l.line).collect())
        .await
        .expect("the follower ends when the task stops");
    assert_eq!(followed, vec!["hello", "oops"]);
    assert!(matches!(h.engine.logs(&arn("nope"), None, false), Err(EngineError::UnknownTask(_))));
}

#[tokio::test(start_paused = true)]
async fn stopped_tasks_are_cleaned_up_after_the_wait() {
    let mut h = Harness::with(|c| c.task_cleanup_wait = Duration::from_secs(600));
    let defs = vec![container("web")];
    h.engine.apply(assignment("t1", defs.clone())).unwrap();
    h.status(&arn("t1"), "RUNNING").await;
    h.engine.apply(stopped(assignment("t1", defs))).unwrap();
    h.status(&arn("t1"), "STOPPED").await;
    assert_eq!(h.fake.containers().len(), 1, "stopped containers stay until cleanup");
    tokio::time::sleep(Duration::from_secs(601)).await;
    assert!(h.fake.containers().is_empty());
    assert!(h.engine.tasks().is_empty());
    assert!(h.engine.logs(&arn("t1"), None, false).is_err());
    assert!(h.engine.adopt().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_task_stopped_before_it_starts_goes_straight_to_stopped() {
    let mut h = Harness::new();
    h.engine.apply(stopped(assignment("t1", vec![container("web")]))).unwrap();
    h.status(&arn("t1"), "STOPPED").await;
    assert_eq!(h.statuses(&arn("t1")), vec!["PROVISIONING", "DEPROVISIONING", "STOPPED"]);
    assert_eq!(h.created(), 0);
    let mut no_arn = assignment("x", vec![container("web")]);
    no_arn.task.task_arn = None;
    assert!(matches!(h.engine.apply(no_arn), Err(EngineError::InvalidAssignment(_))));
    assert!(matches!(h.engine.apply(assignment("y", vec![])), Err(EngineError::InvalidAssignment(_))));
}

// Task-level cpu and memory: one task cgroup, made before any container, shared by all of them.

fn sized(mut a: TaskAssignment, cpu: &str, memory: &str) -> TaskAssignment {
    a.definition.cpu = Some(cpu.into());
    a.definition.memory = Some(memory.into());
    a
}

#[tokio::test(start_paused = true)]
async fn a_sized_task_runs_its_containers_and_pause_container_in_one_cgroup() {
    let mut h = Harness::new();
    let task = arn("t1");
    let defs = vec![ContainerDefinition { memory: Some(64), ..container("web") }, container("side")];
    let a = sized(assignment_in_mode("t1", defs, Some("awsvpc")), "0.25 vCPU", "128");
    h.engine.apply(a.clone()).unwrap();
    h.status(&task, "RUNNING").await;
    let limits = crate::cgroup::TaskLimits { cpu_units: Some(256), memory_mib: Some(128) };
    let calls = h.fake.calls();
    // The cgroup exists before the first container (the pause container) is created.
    let ensured = position(&calls, &Call::EnsureTaskCgroup("t1".into(), limits));
    let first_create = calls.iter().position(|c| matches!(c, Call::CreateContainer(_))).unwrap();
    assert!(ensured < first_create, "{calls:#?}");
    assert_eq!(h.fake.task_cgroups().get("t1"), Some(&limits));
    let all = h.fake.containers();
    assert_eq!(all.len(), 3, "web, side and the pause container");
    for c in &all {
        assert_eq!(c.spec.cgroup_parent.as_deref(), Some("/flotilla/t1"), "{}", c.spec.name);
        // The cgroup holds the task's cpu: no container carries a cpu cap of its own.
        assert_eq!(c.spec.nano_cpus, None, "{}", c.spec.name);
    }
    let mine = h.fake.task_containers(&task);
    // A container's own hard limit still applies inside the cgroup; one without stays unbounded.
    assert_eq!((mine["web"].spec.memory_bytes, mine["side"].spec.memory_bytes), (Some(64 << 20), None));

    h.engine.apply(stopped(a)).unwrap();
    h.status(&task, "STOPPED").await;
    let calls = h.fake.calls();
    // Removed after the pause container, which lives in it.
    let pause_removed = calls.iter().rposition(|c| matches!(c, Call::RemoveContainer(_))).unwrap();
    assert!(position(&calls, &Call::RemoveTaskCgroup("t1".into())) > pause_removed, "{calls:#?}");
    assert!(h.fake.task_cgroups().is_empty());
}

#[tokio::test(start_paused = true)]
async fn without_task_cgroups_each_container_is_capped_by_the_task_size() {
    let mut h = Harness::new();
    h.fake.refuse_task_cgroups("/sys/fs/cgroup: read-only file system");
    let task = arn("t1");
    let defs = vec![ContainerDefinition { memory: Some(64), ..container("web") }, container("side")];
    let a = sized(assignment("t1", defs), "512", "1GB");
    h.engine.apply(a.clone()).unwrap();
    h.status(&task, "RUNNING").await;
    let mine = h.fake.task_containers(&task);
    for c in mine.values() {
        assert_eq!((c.spec.cgroup_parent.as_deref(), c.spec.nano_cpus), (None, Some(500_000_000)));
    }
    assert_eq!((mine["web"].spec.memory_bytes, mine["side"].spec.memory_bytes), (Some(64 << 20), Some(1 << 30)));
    h.engine.apply(stopped(a)).unwrap();
    h.status(&task, "STOPPED").await;
    // There is nothing to remove, so nothing is asked.
    assert!(!h.fake.calls().iter().any(|c| matches!(c, Call::RemoveTaskCgroup(_))));
}

#[tokio::test(start_paused = true)]
async fn a_task_without_a_task_size_gets_no_cgroup_even_with_a_resolved_cpu() {
    let mut h = Harness::new();
    let task = arn("t1");
    let mut a = assignment("t1", vec![ContainerDefinition { cpu: Some(128), ..container("web") }]);
    // What the control plane writes for a definition without task cpu: the containers' sum.
    a.task.cpu = Some("128".into());
    a.task.memory = Some("64".into());
    h.engine.apply(a).unwrap();
    h.status(&task, "RUNNING").await;
    assert!(!h.fake.calls().iter().any(|c| matches!(c, Call::EnsureTaskCgroup(..))));
    let spec = &h.fake.task_containers(&task)["web"].spec;
    assert_eq!((spec.cgroup_parent.as_deref(), spec.nano_cpus, spec.memory_bytes), (None, None, None));
}

#[tokio::test(start_paused = true)]
async fn overrides_size_the_task_cgroup_and_a_restart_keeps_it() {
    let mut h = Harness::new();
    let task = arn("t1");
    let mut a = sized(assignment("t1", vec![container("web")]), "1024", "2048");
    a.task.overrides = Some(flotilla_model::TaskOverride {
        cpu: Some("256".into()),
        memory: Some("512".into()),
        ..Default::default()
    });
    h.engine.apply(a.clone()).unwrap();
    h.status(&task, "RUNNING").await;
    let limits = crate::cgroup::TaskLimits { cpu_units: Some(256), memory_mib: Some(512) };
    assert_eq!(h.fake.task_cgroups().get("t1"), Some(&limits));

    // A restarted agent finds the decision in the record and still removes the cgroup.
    h.engine.shutdown().await;
    let mut h = Harness::on(h.fake.clone(), h.dir.clone(), h.start, |_| {});
    h.engine.adopt().await.unwrap();
    h.engine.apply(stopped(a)).unwrap();
    h.status(&task, "STOPPED").await;
    assert!(h.fake.task_cgroups().is_empty());
}
