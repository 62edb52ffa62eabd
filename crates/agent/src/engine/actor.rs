//! The per-task actor: a tokio task with an inbox that owns one task's [`TaskRecord`].
//!
//! Its loop is: do all the work the lifecycle allows now (`drive`, which asks
//! [`next_transition`] what to do and runs it, see `lifecycle.rs`), publish a report if anything
//! visible changed, then sleep until a message (a new desired status, a container event, a stop
//! that finished) or a timer (a retry, a SIGKILL escalation, a periodic re-inspection, the cleanup
//! of a stopped task). Long runtime calls that must not block the inbox, such as stopping a
//! container for up to its stopTimeout, run in spawned tasks that report back by message.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use flotilla_model::ContainerDefinition;
use flotilla_protocol::{TaskAssignment, TaskReport};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::health::container_health;
use super::order::{self, Dependency};
use super::record::TaskRecord;
use super::spec;
use super::status::{next_transition, ContainerStatus, DesiredStatus, TaskStatus, Transition};
use super::{lock, Shared};
use crate::logs::{capture, TaskLog};
use crate::runtime::{labels, ContainerInfo, EventKind, RunState, RuntimeError, RuntimeEvent};

pub(crate) const TASK_FAILED_TO_START: &str = "TaskFailedToStart";
pub(crate) const ESSENTIAL_CONTAINER_EXITED: &str = "EssentialContainerExited";
/// ECS's words for the stop, followed here by the container that caused it.
pub(crate) const ESSENTIAL_EXITED_REASON: &str = "Essential container in task exited";
const OOM_REASON: &str = "OutOfMemoryError: Container killed due to memory usage";
/// Transient runtime failures retried before a starting task gives up.
const MAX_START_ATTEMPTS: u32 = 5;

/// What an actor hears.
#[derive(Debug)]
pub(crate) enum Msg {
    Assign(Box<TaskAssignment>),
    /// The server no longer wants the task.
    Stop,
    Event(RuntimeEvent),
    /// Re-inspect every container (the event stream had a gap).
    Resync,
    /// A spawned stop call returned.
    StopFinished {
        name: String,
        result: Result<(), RuntimeError>,
    },
    /// Re-inspect one container.
    Refresh {
        name: String,
    },
}

/// The result of one piece of lifecycle work.
#[derive(Debug)]
pub(crate) enum Step {
    /// Finished: the task moves to the transition's target.
    Done,
    /// Waiting for an event (a dependency, a container to exit).
    Blocked,
    /// The task failed; the desired status is now STOPPED.
    Failed,
    /// A transient runtime error: try again after a backoff.
    Retry(RuntimeError),
}

pub(crate) struct Actor {
    pub(super) shared: Arc<Shared>,
    pub(super) rec: TaskRecord,
    /// The resolved container definitions, in definition order.
    pub(super) defs: Vec<ContainerDefinition>,
    pub(super) deps: BTreeMap<String, Vec<Dependency>>,
    me: UnboundedSender<Msg>,
    inbox: UnboundedReceiver<Msg>,
    adopted: bool,
    /// The last published report, with seq 0, to publish only changes.
    last_report: Option<TaskReport>,
    /// Containers asked to stop, and when to send SIGKILL if they have not.
    pub(super) kill_at: BTreeMap<String, Instant>,
    pub(super) log: Option<Arc<TaskLog>>,
    /// Each log capture, by the runtime ID of the container it copies.
    pub(super) captures: Vec<(String, JoinHandle<()>)>,
    pub(super) captured: BTreeSet<String>,
    /// Containers that exited and that their restart policy restarts (`restart.rs`).
    pub(super) restarts_due: Vec<String>,
    /// The containers' `awslogs` shippers (`crate::logs::awslogs`).
    awslogs: crate::logs::awslogs::Shippers,
    retry_at: Option<Instant>,
    attempts: u32,
    /// A stop the runtime could not be asked for (the daemon was away): asked again after a
    /// backoff, rather than escalated to SIGKILL.
    pub(super) stop_unreachable: Option<RuntimeError>,
    /// Inspections in a row that failed for a transient reason; each brings the next resync
    /// forward, backing off, so an exit during a daemon hiccup is seen soon after it ends.
    inspect_failures: u32,
    cleanup_at: Option<Instant>,
    resync_at: Instant,
    done: bool,
    /// Whether this actor has put a sandboxed task's CPU quota on its cgroup (`cap_cpu`).
    pub(super) cpu_capped: bool,
    /// The task's secrets and registry credentials (`resources`), in memory only.
    pub(super) resources: Option<Arc<flotilla_protocol::TaskResources>>,
}

impl Actor {
    pub(crate) fn new(
        shared: Arc<Shared>,
        rec: TaskRecord,
        me: UnboundedSender<Msg>,
        inbox: UnboundedReceiver<Msg>,
        adopted: bool,
    ) -> Actor {
        let defs = rec.definitions();
        let deps = defs.iter().map(|d| (d.name.clone().unwrap_or_default(), order::dependencies(d))).collect();
        let resync_at = Instant::now() + shared.config.resync_interval;
        Actor {
            shared,
            rec,
            defs,
            deps,
            me,
            inbox,
            adopted,
            last_report: None,
            kill_at: BTreeMap::new(),
            log: None,
            captures: Vec::new(),
            captured: BTreeSet::new(),
            restarts_due: Vec::new(),
            awslogs: Default::default(),
            retry_at: None,
            attempts: 0,
            stop_unreachable: None,
            inspect_failures: 0,
            cleanup_at: None,
            resync_at,
            done: false,
            cpu_capped: false,
            resources: None,
        }
    }

    pub(crate) async fn run(mut self) {
        // Opening reads what an earlier run stored: off the async runtime.
        let (shared, task_id) = (self.shared.clone(), self.rec.task_id().to_string());
        match tokio::task::spawn_blocking(move || shared.logs.open(&task_id)).await {
            Ok(Ok(log)) => self.log = Some(log),
            Ok(Err(e)) => tracing::warn!(task = %self.rec.arn(), error = %e, "task logs unavailable"),
            Err(e) => tracing::warn!(task = %self.rec.arn(), error = %e, "task logs unavailable"),
        }
        self.discover().await;
        // The first report says the agent has the task, before any work is done.
        self.publish();
        loop {
            self.drive().await;
            self.publish();
            if self.done {
                return;
            }
            let wake = self.next_wake();
            tokio::select! {
                msg = self.inbox.recv() => match msg {
                    Some(m) => self.handle(m).await,
                    None => return,
                },
                _ = tokio::time::sleep_until(wake) => self.on_wake().await,
            }
        }
    }

    /// Runs lifecycle work until the task has to wait.
    async fn drive(&mut self) {
        loop {
            if self.retry_at.is_some_and(|t| t > Instant::now()) {
                return;
            }
            self.retry_at = None;
            let t = next_transition(self.rec.known, self.rec.desired);
            let step = match t {
                Transition::Provision => self.provision().await,
                Transition::StartContainers => self.start_containers().await,
                Transition::Activate => self.activate().await,
                Transition::Hold | Transition::Done => Step::Blocked,
                Transition::BeginDeactivate | Transition::BeginDeprovision | Transition::Deactivate => Step::Done,
                Transition::StopContainers => self.stop_containers().await,
                Transition::Deprovision => self.deprovision().await,
            };
            match step {
                Step::Done => {
                    self.attempts = 0;
                    if let Some(to) = t.target() {
                        self.enter(to);
                    }
                }
                Step::Failed => self.attempts = 0,
                Step::Blocked => return,
                Step::Retry(e) => {
                    self.attempts += 1;
                    if self.rec.desired == DesiredStatus::Running && self.attempts > MAX_START_ATTEMPTS {
                        self.fail(Some(TASK_FAILED_TO_START), format!("{e}"));
                        self.attempts = 0;
                        continue;
                    }
                    tracing::warn!(task = %self.rec.arn(), error = %e, attempt = self.attempts, "retrying");
                    let backoff = Duration::from_millis(500 << self.attempts.min(6));
                    self.retry_at = Some(Instant::now() + backoff);
                    return;
                }
            }
            // Every status passed through is reported, as ECS shows each one.
            self.publish();
        }
    }

    fn enter(&mut self, to: TaskStatus) {
        let now = self.shared.now_ms();
        let times = &mut self.rec.times;
        match to {
            TaskStatus::Running => {
                times.started_at.get_or_insert(now);
            }
            TaskStatus::Deprovisioning => {
                times.execution_stopped_at.get_or_insert(now);
            }
            TaskStatus::Stopped => {
                times.stopped_at.get_or_insert(now);
            }
            _ => {}
        }
        self.rec.known = to;
        if to == TaskStatus::Stopped {
            self.on_stopped();
        }
    }

    /// Schedules cleanup and ends log followers once the captures have drained.
    fn on_stopped(&mut self) {
        let stopped_at = self.rec.times.stopped_at.unwrap_or_else(|| self.shared.now_ms());
        let elapsed = Duration::from_millis(u64::try_from(self.shared.now_ms() - stopped_at).unwrap_or(0));
        self.cleanup_at = Some(Instant::now() + self.shared.config.task_cleanup_wait.saturating_sub(elapsed));
        // Containers whose output is still to ship (an adopted task, say) drain it now.
        for c in self.rec.containers.clone() {
            if let Some(id) = &c.runtime_id {
                self.ship_awslogs(&c.name, id);
            }
        }
        if let Some(log) = self.log.clone() {
            let captures = std::mem::take(&mut self.captures);
            tokio::spawn(async move {
                for (_, c) in captures {
                    // A capture that cannot finish (a wedged daemon) must not keep followers open.
                    let _ = tokio::time::timeout(Duration::from_secs(10), c).await;
                }
                log.finish();
            });
        }
    }

    /// Publishes a report if what it says changed, and saves the record with it.
    pub(super) fn publish(&mut self) {
        if self.done {
            return;
        }
        let arn = self.rec.arn().to_string();
        let view = self.rec.report(0);
        if self.last_report.as_ref() == Some(&view) {
            if let Some(entry) = lock(&self.shared.latest).get_mut(&arn) {
                entry.1 = self.rec.desired;
            }
            // The metadata endpoint shows the desired status, which a report does not carry.
            let mut snapshots = lock(&self.shared.snapshots);
            if snapshots.get(&arn).is_some_and(|r| r.desired != self.rec.desired) {
                snapshots.insert(arn, std::sync::Arc::new(self.rec.clone()));
            }
            return;
        }
        self.last_report = Some(view.clone());
        if let Err(e) = self.shared.records.save(&self.rec) {
            tracing::warn!(task = %arn, error = %e, "cannot save the task record");
        }
        let mut report = view;
        report.seq = self.shared.next_seq();
        tracing::debug!(task = %arn, status = %report.status, seq = report.seq, "task report");
        // Only the metadata endpoint reads the copies; without it they would be dead weight.
        if self.shared.config.metadata.is_some() {
            lock(&self.shared.snapshots).insert(arn.clone(), std::sync::Arc::new(self.rec.clone()));
        }
        lock(&self.shared.latest).insert(arn, (report.clone(), self.rec.desired));
        // The receiver is gone only when the agent is shutting down.
        let _ = self.shared.reports.send(report);
    }

    /// Saves the record and refreshes the metadata endpoint's copy for a change no report
    /// carries (a restart count).
    pub(super) fn save_unreported(&mut self) {
        if let Err(e) = self.shared.records.save(&self.rec) {
            tracing::warn!(task = %self.rec.arn(), error = %e, "cannot save the task record");
        }
        if self.shared.config.metadata.is_some() {
            lock(&self.shared.snapshots).insert(self.rec.arn().to_string(), Arc::new(self.rec.clone()));
        }
    }

    /// Whether a start step that failed for a transient reason may be tried again.
    pub(super) fn start_attempts_left(&self) -> bool {
        self.attempts < MAX_START_ATTEMPTS
    }

    /// Moves the desired status to STOPPED (never back).
    pub(super) fn set_desired(&mut self, desired: DesiredStatus) {
        if desired == DesiredStatus::Stopped && self.rec.desired == DesiredStatus::Running {
            self.rec.desired = DesiredStatus::Stopped;
            self.rec.times.stopping_at.get_or_insert(self.shared.now_ms());
        }
    }

    /// Stops the task for a reason of the agent's own; the first reason wins.
    pub(super) fn fail(&mut self, code: Option<&str>, reason: String) {
        if self.rec.desired == DesiredStatus::Running && self.rec.stopped_reason.is_none() {
            tracing::info!(task = %self.rec.arn(), reason = %reason, "stopping the task");
            self.rec.stop_code = code.map(str::to_string);
            self.rec.stopped_reason = Some(reason);
        }
        self.set_desired(DesiredStatus::Stopped);
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Assign(a) => self.set_desired(DesiredStatus::parse(a.desired_status())),
            Msg::Stop => self.set_desired(DesiredStatus::Stopped),
            Msg::Event(e) => self.on_event(e).await,
            Msg::Resync => self.resync().await,
            Msg::Refresh { name } => self.refresh(&name).await,
            Msg::StopFinished { name, result } => {
                match result {
                    Ok(()) => {}
                    // The SIGTERM may never have reached the container: ask again once the
                    // daemon is back (STOPPING retries with backoff), keeping the grace period.
                    Err(e @ RuntimeError::Unavailable { .. }) => {
                        tracing::warn!(task = %self.rec.arn(), container = %name, error = %e, "stop not delivered; asking again");
                        self.kill_at.remove(&name);
                        self.stop_unreachable = Some(e);
                    }
                    Err(e) => {
                        tracing::warn!(task = %self.rec.arn(), container = %name, error = %e, "stop failed; killing");
                        self.spawn_kill(&name);
                    }
                }
                self.refresh(&name).await;
            }
        }
    }

    async fn on_event(&mut self, e: RuntimeEvent) {
        if self.rec.attachment.pause_id.as_deref() == Some(e.container_id.as_str()) {
            if matches!(e.kind, EventKind::Die { .. } | EventKind::Destroy) {
                self.fail(None, "The task's network namespace (its pause container) exited".into());
            }
            return;
        }
        let Some(name) = self
            .rec
            .containers
            .iter()
            .find(|c| c.runtime_id.as_deref() == Some(&e.container_id))
            .map(|c| c.name.clone())
        else {
            return;
        };
        match e.kind {
            EventKind::Health(h) => {
                if let Some(c) = self.rec.container_mut(&name) {
                    if c.status == ContainerStatus::Running && c.health.is_some() {
                        c.health = Some(container_health(h));
                    }
                }
            }
            EventKind::Oom => {
                if let Some(c) = self.rec.container_mut(&name) {
                    c.oom = true;
                }
            }
            EventKind::Start | EventKind::Die { .. } | EventKind::Destroy => self.refresh(&name).await,
        }
    }

    /// Re-inspects every container that may still be live, and the pause container.
    async fn resync(&mut self) {
        let names: Vec<String> = self
            .rec
            .containers
            .iter()
            .filter(|c| c.runtime_id.is_some() && c.status != ContainerStatus::Stopped)
            .map(|c| c.name.clone())
            .collect();
        for name in names {
            self.refresh(&name).await;
        }
        let holds_network =
            matches!(self.rec.known, TaskStatus::Pending | TaskStatus::Activating | TaskStatus::Running);
        if let (Some(pause), true) = (self.rec.attachment.pause_id.clone(), holds_network) {
            match self.shared.runtime.inspect_container(&pause).await {
                Ok(info) if info.state.is_live() => {}
                Err(e) if !e.is_not_found() => {}
                _ => self.fail(None, "The task's network namespace (its pause container) exited".into()),
            }
        }
    }

    /// Inspects one container and takes in what the runtime says.
    pub(super) async fn refresh(&mut self, name: &str) {
        let Some(id) = self.rec.container(name).and_then(|c| c.runtime_id.clone()) else { return };
        match self.shared.runtime.inspect_container(&id).await {
            Ok(info) => {
                self.inspect_failures = 0;
                self.observe(name, &info);
                self.run_due_restarts().await;
            }
            Err(e) if e.is_not_found() => self.mark_gone(name),
            Err(e) => {
                // The container's state is unknown, not changed: keep it, and look again soon.
                tracing::warn!(task = %self.rec.arn(), container = %name, error = %e, "inspect failed");
                if e.is_transient() {
                    self.inspect_failures = self.inspect_failures.saturating_add(1);
                    let backoff = Duration::from_millis(250 << self.inspect_failures.min(6));
                    let soon = Instant::now() + backoff.min(self.shared.config.resync_interval);
                    self.resync_at = self.resync_at.min(soon);
                }
            }
        }
    }

    /// Takes in a container's runtime state.
    pub(super) fn observe(&mut self, name: &str, info: &ContainerInfo) {
        let mode = self.rec.network_mode;
        let def = self.defs.iter().find(|d| d.name.as_deref() == Some(name)).cloned().unwrap_or_default();
        let Some(c) = self.rec.container_mut(name) else { return };
        if info.image_id.is_some() {
            c.image_digest = info.image_id.clone();
        }
        match info.state {
            RunState::Running | RunState::Paused | RunState::Restarting => {
                if c.status != ContainerStatus::Running {
                    c.status = ContainerStatus::Running;
                    c.started = true;
                    c.last_started_ms.get_or_insert(self.shared.now_ms());
                }
                if c.bindings.is_empty() {
                    c.bindings = mode.bindings(&def, info);
                }
                if let (Some(_), Some(h)) = (c.health, info.health) {
                    c.health = Some(container_health(h));
                }
                self.start_capture(name, &info.id);
            }
            RunState::Created => {
                if c.status == ContainerStatus::Pending {
                    c.status = ContainerStatus::Created;
                }
            }
            RunState::Exited | RunState::Dead | RunState::Removing => {
                // An exited container ran, unless Docker recorded a start error.
                let ran = c.started || info.error.is_none();
                c.started = ran;
                let oom = info.oom_killed;
                let code = if ran { info.exit_code.and_then(|c| i32::try_from(c).ok()) } else { None };
                self.start_capture(name, &info.id);
                if self.restart_due(name, code) {
                    return;
                }
                self.mark_stopped(name, code, oom, None);
            }
        }
    }

    /// Records a container's exit and stops the task if it was essential.
    pub(super) fn mark_stopped(&mut self, name: &str, exit_code: Option<i32>, oom: bool, reason: Option<String>) {
        let desired = self.rec.desired;
        let Some(c) = self.rec.container_mut(name) else { return };
        if c.status == ContainerStatus::Stopped {
            return;
        }
        c.status = ContainerStatus::Stopped;
        c.exit_code = exit_code;
        c.oom |= oom;
        if c.reason.is_none() {
            c.reason = if c.oom { Some(OOM_REASON.to_string()) } else { reason };
        }
        let essential = c.essential;
        self.kill_at.remove(name);
        if essential && desired == DesiredStatus::Running {
            let how = exit_code.map_or_else(|| "stopped".to_string(), |code| format!("exit code {code}"));
            self.fail(Some(ESSENTIAL_CONTAINER_EXITED), format!("{ESSENTIAL_EXITED_REASON}: {name} ({how})"));
        }
    }

    /// A container vanished from the runtime (removed behind the agent's back).
    fn mark_gone(&mut self, name: &str) {
        let running = self.rec.container(name).is_some_and(|c| c.status != ContainerStatus::Stopped);
        if running {
            self.mark_stopped(name, None, false, Some("The container was removed outside the agent".into()));
        }
    }

    fn start_capture(&mut self, name: &str, runtime_id: &str) {
        let Some(log) = self.log.clone() else { return };
        if !self.captured.insert(runtime_id.to_string()) {
            return;
        }
        let handle = capture::spawn(
            self.shared.runtime.clone(),
            log,
            name.to_string(),
            runtime_id.to_string(),
            self.shared.config.clock.clone(),
        );
        self.captures.retain(|(_, h)| !h.is_finished());
        self.captures.push((runtime_id.to_string(), handle));
        self.ship_awslogs(name, runtime_id);
    }

    fn ship_awslogs(&mut self, name: &str, runtime_id: &str) {
        let def = self.defs.iter().find(|d| d.name.as_deref() == Some(name));
        let (arn, id) = (self.rec.arn(), self.rec.task_id());
        self.awslogs.ensure(self.shared.config.calls.as_ref(), self.log.as_ref(), arn, id, def, runtime_id);
    }

    /// Asks the runtime to stop a container (SIGTERM, SIGKILL after its stopTimeout) without
    /// blocking the inbox; the engine sends SIGKILL itself if the stop overruns by `stop_grace`.
    pub(super) fn spawn_stop(&mut self, name: &str) {
        let Some(id) = self.rec.container(name).and_then(|c| c.runtime_id.clone()) else { return };
        let def = self.defs.iter().find(|d| d.name.as_deref() == Some(name));
        let default = self.shared.config.default_stop_timeout;
        let cap = self.rec.assignment.stop_timeout_cap_seconds.map(Duration::from_secs);
        let timeout = def.map_or(cap.map_or(default, |c| default.min(c)), |d| spec::stop_timeout(d, default, cap));
        self.kill_at.insert(name.to_string(), Instant::now() + timeout + self.shared.config.stop_grace);
        let runtime = self.shared.runtime.clone();
        let tx = self.me.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let result = runtime.stop_container(&id, timeout).await;
            let _ = tx.send(Msg::StopFinished { name, result });
        });
    }

    fn spawn_kill(&mut self, name: &str) {
        let Some(id) = self.rec.container(name).and_then(|c| c.runtime_id.clone()) else { return };
        self.kill_at.insert(name.to_string(), Instant::now() + self.shared.config.stop_grace);
        let runtime = self.shared.runtime.clone();
        let tx = self.me.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            if let Err(e) = runtime.kill_container(&id, "SIGKILL").await {
                tracing::warn!(container = %name, error = %e, "SIGKILL failed");
            }
            let _ = tx.send(Msg::Refresh { name });
        });
    }

    fn next_wake(&self) -> Instant {
        let live = self.rec.containers.iter().any(|c| c.status == ContainerStatus::Running);
        [self.retry_at, self.cleanup_at, self.kill_at.values().min().copied(), live.then_some(self.resync_at)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    async fn on_wake(&mut self) {
        let now = Instant::now();
        if self.cleanup_at.is_some_and(|t| t <= now) {
            self.cleanup().await;
            return;
        }
        if self.resync_at <= now {
            self.resync_at = now + self.shared.config.resync_interval;
            self.resync().await;
        }
        let overdue: Vec<String> = self.kill_at.iter().filter(|(_, t)| **t <= now).map(|(n, _)| n.clone()).collect();
        for name in overdue {
            tracing::warn!(task = %self.rec.arn(), container = %name, "stop overran its timeout; sending SIGKILL");
            self.spawn_kill(&name);
        }
    }

    /// Finds the task's containers by label: after a restart, or when an apply repeats.
    async fn discover(&mut self) {
        let arn = self.rec.arn().to_string();
        let instance = self.shared.config.container_instance_arn.clone();
        let found = match self
            .shared
            .runtime
            .list_containers(&[(labels::TASK, Some(arn.as_str())), (labels::INSTANCE, Some(instance.as_str()))])
            .await
        {
            Ok(found) => found,
            Err(e) => {
                // Creation finds an existing container by its name anyway, and resyncs inspect
                // the recorded ones; until then the recorded state stands.
                tracing::warn!(task = %arn, error = %e, "cannot list the task's containers");
                self.adopted_as_recorded();
                return;
            }
        };
        let mut seen = BTreeSet::new();
        for c in &found {
            let name = c.labels.get(labels::CONTAINER).cloned().unwrap_or_default();
            if name == labels::PAUSE_NAME {
                self.rec.attachment.pause_id = Some(c.id.clone());
                continue;
            }
            let recorded = self.rec.container(&name).map(|r| r.runtime_id.clone());
            match recorded {
                // Not a container of this definition: leave it to the reaper's judgement? It
                // carries our task label, so it can only be a leftover; remove it now.
                None => self.remove_quietly(&c.id).await,
                Some(None) => {
                    if let Some(r) = self.rec.container_mut(&name) {
                        r.runtime_id = Some(c.id.clone());
                        r.status = ContainerStatus::Created;
                    }
                    seen.insert(c.id.clone());
                }
                Some(Some(id)) if id == c.id => {
                    seen.insert(id);
                }
                Some(Some(id)) => {
                    // Two containers for one name: keep the recorded one if it still exists.
                    if found.iter().any(|f| f.id == id) {
                        self.remove_quietly(&c.id).await;
                    } else if let Some(r) = self.rec.container_mut(&name) {
                        r.runtime_id = Some(c.id.clone());
                        seen.insert(c.id.clone());
                    }
                }
            }
        }
        let names: Vec<(String, Option<String>)> =
            self.rec.containers.iter().map(|c| (c.name.clone(), c.runtime_id.clone())).collect();
        for (name, id) in names {
            match id {
                Some(id) if seen.contains(&id) => self.refresh(&name).await,
                Some(_) => self.mark_gone(&name),
                None => {}
            }
        }
        self.adopted_as_recorded();
    }

    /// An adopted task that had already stopped only waits for its cleanup.
    fn adopted_as_recorded(&mut self) {
        if self.adopted {
            tracing::info!(task = %self.rec.arn(), status = %self.rec.known, "adopted");
            if self.rec.known == TaskStatus::Stopped {
                self.on_stopped();
            }
        }
    }

    pub(super) async fn remove_quietly(&self, id: &str) {
        if let Err(e) = self.shared.runtime.remove_container(id).await {
            tracing::warn!(task = %self.rec.arn(), container = %id, error = %e, "cannot remove a container");
        }
    }

    /// Forgets a stopped task: its containers, volumes, record and logs go.
    async fn cleanup(&mut self) {
        let arn = self.rec.arn().to_string();
        let ids: Vec<String> = self.rec.containers.iter().filter_map(|c| c.runtime_id.clone()).collect();
        for id in ids {
            self.remove_quietly(&id).await;
        }
        let volumes = self.rec.assignment.definition.volumes.clone().unwrap_or_default();
        if let Err(e) = super::volumes::remove_task_volumes(&*self.shared.runtime, self.rec.task_id(), &volumes).await {
            tracing::warn!(task = %arn, error = %e, "cannot remove the task's volumes");
        }
        // Deprovisioning removed the task cgroup unless it was busy then; nothing runs in it now.
        self.remove_cgroup().await;
        self.shared.records.remove(self.rec.task_id());
        let (shared, task_id) = (self.shared.clone(), self.rec.task_id().to_string());
        match tokio::task::spawn_blocking(move || shared.logs.remove(&task_id)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(task = %arn, error = %e, "cannot remove the task's logs"),
            Err(e) => tracing::warn!(task = %arn, error = %e, "cannot remove the task's logs"),
        }
        self.shared.forget(&arn);
        self.done = true;
        tracing::info!(task = %arn, "cleaned up");
    }
}
