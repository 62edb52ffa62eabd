//! The task engine: one actor per ECS task, and the face the agent's session drives.
//!
//! [`Engine::apply`] hands a task assignment to its actor (creating it on first sight; a second
//! apply only updates the desired status, so duplicates are harmless). Each actor (`actor.rs`) is
//! a tokio task with an inbox and the only writer of its task's state; it walks the lifecycle with
//! the pure [`status::next_transition`], runs the work of each status (`lifecycle.rs`), and reports
//! every visible change as a [`TaskReport`] numbered from one per-agent sequence. A single event
//! pump subscribes to the runtime's container events and routes them to actors by the task label;
//! each actor also re-inspects its containers periodically, so a missed event only delays news.
//! [`Engine::adopt`] rebuilds actors after an agent restart from the records on disk, and each
//! actor finds its containers again by their labels; [`Engine::reap`] removes containers no task
//! owns; [`Engine::reconcile`] stops what the server no longer lists.

mod actor;
pub mod gpu;
pub mod health;
mod lifecycle;
pub mod namespaces;
pub mod options;
pub mod order;
pub mod policy;
mod pull;
pub mod record;
pub mod resources;
pub mod restart;
pub mod spec;
pub mod status;
pub mod volumes;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use flotilla_protocol::{ManifestEntry, TaskAssignment, TaskReport};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::task::JoinHandle;

use crate::logs::{LogError, LogLine, LogStore};
use crate::network::{NetworkConfig, PortAllocator};
use crate::runtime::{labels, Runtime, RuntimeError};
use actor::{Actor, Msg};
use record::{RecordError, RecordStore, TaskRecord};
use status::{DesiredStatus, TaskStatus};

/// Wall-clock milliseconds since the epoch; injected so tests control timestamps.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64))
}

/// When to pull an image, after ECS's `ECS_IMAGE_PULL_BEHAVIOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullBehavior {
    /// Pull only when the image is not present ("prefer-cached", also "once").
    #[default]
    IfNotPresent,
    /// Always pull; a failed pull fails the task ("always").
    Always,
    /// Always try to pull, and use the local image if that fails ("default" in ECS).
    AlwaysFallBackToCache,
    /// Never pull: an absent image fails the task. For hosts without any registry.
    Never,
}

impl FromStr for PullBehavior {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "prefer-cached" | "once" | "if-not-present" => Ok(PullBehavior::IfNotPresent),
            "always" => Ok(PullBehavior::Always),
            "default" => Ok(PullBehavior::AlwaysFallBackToCache),
            "never" => Ok(PullBehavior::Never),
            other => Err(format!("unknown pull behaviour {other:?} (prefer-cached, always, default, never)")),
        }
    }
}

/// The engine's settings.
#[derive(Clone)]
pub struct EngineConfig {
    /// Task records under `tasks/`, logs under `logs/`.
    pub data_dir: PathBuf,
    pub cluster_arn: String,
    pub container_instance_arn: String,
    /// Privileged containers, and with them every host path and capability (see `policy`).
    pub allow_privileged: bool,
    /// Prefixes of the host paths tasks may bind-mount (`--allow-host-path`).
    pub allowed_host_paths: Vec<PathBuf>,
    /// Capabilities tasks may add (`--allow-capability`).
    pub allowed_capabilities: Vec<String>,
    pub pull_behavior: PullBehavior,
    /// Bound on each task's stored logs.
    pub log_limit_bytes: u64,
    /// Bound on Docker's own json-file copy of each container's output.
    pub docker_log_max_bytes: Option<u64>,
    pub network: NetworkConfig,
    /// Host ports for dynamic mappings; `None` lets Docker pick from the ephemeral range.
    pub dynamic_host_ports: Option<RangeInclusive<u16>>,
    /// SIGTERM-to-SIGKILL grace for containers without `stopTimeout`.
    pub default_stop_timeout: Duration,
    /// How long after the grace a stop may take before the engine sends SIGKILL itself.
    pub stop_grace: Duration,
    /// How long a stopped task's containers, record and logs are kept.
    pub task_cleanup_wait: Duration,
    /// How often an actor re-inspects its containers, in case an event was missed.
    pub resync_interval: Duration,
    /// The task metadata endpoint each container is told about; `None` tells them nothing.
    pub metadata: Option<crate::metadata::MetadataEndpoint>,
    /// The OCI runtime Fargate tasks run under (`runsc`, on a Fargate pool host); `None` refuses
    /// them.
    pub sandbox_runtime: Option<String>,
    /// The control plane, for tasks' secrets and `awslogs` output (`crate::calls`); without it
    /// a task that needs either cannot start.
    pub calls: Option<Arc<dyn crate::calls::ControlPlaneCalls>>,
    /// The host's Docker config credentials, for images whose container names no
    /// `repositoryCredentials` (`crate::registry_auth`).
    pub host_registry_auth: Arc<crate::registry_auth::HostCredentials>,
    pub clock: Clock,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>, cluster_arn: &str, container_instance_arn: &str) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            cluster_arn: cluster_arn.to_string(),
            container_instance_arn: container_instance_arn.to_string(),
            allow_privileged: false,
            allowed_host_paths: Vec::new(),
            allowed_capabilities: Vec::new(),
            pull_behavior: PullBehavior::default(),
            log_limit_bytes: 10 << 20,
            docker_log_max_bytes: Some(10 << 20),
            network: NetworkConfig::default(),
            dynamic_host_ports: None,
            default_stop_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(10),
            task_cleanup_wait: Duration::from_secs(3 * 3600),
            resync_interval: Duration::from_secs(15),
            metadata: None,
            sandbox_runtime: None,
            calls: None,
            host_registry_auth: Arc::default(),
            clock: system_clock(),
        }
    }

    /// What tasks may ask of this host.
    pub fn host_policy(&self) -> policy::HostPolicy {
        policy::HostPolicy::new(
            self.allow_privileged,
            &self.allowed_host_paths,
            &self.allowed_capabilities,
            &self.data_dir,
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid task assignment: {0}")]
    InvalidAssignment(String),
    #[error("unknown task {0}")]
    UnknownTask(String),
    #[error(transparent)]
    Logs(#[from] LogError),
    #[error(transparent)]
    Records(#[from] RecordError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// A task as `tasks()` lists it, for reconciliation after a reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSummary {
    pub task_arn: String,
    pub known_status: TaskStatus,
    pub desired_status: DesiredStatus,
}

/// What `reconcile` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Tasks told to stop: missing from the manifest, or listed as STOPPED.
    pub stopping: Vec<String>,
    /// Tasks the manifest lists as RUNNING that this agent does not have (the server should
    /// send them again).
    pub unknown: Vec<String>,
}

struct ActorHandle {
    tx: UnboundedSender<Msg>,
    join: JoinHandle<()>,
}

/// What the actors share.
pub(crate) struct Shared {
    config: EngineConfig,
    runtime: Arc<dyn Runtime>,
    reports: UnboundedSender<TaskReport>,
    seq: AtomicU64,
    actors: Mutex<BTreeMap<String, ActorHandle>>,
    /// The latest report of every task, kept by its actor.
    latest: Mutex<BTreeMap<String, (TaskReport, DesiredStatus)>>,
    /// A copy of every task's record as of its latest report, for the metadata endpoint.
    snapshots: Mutex<BTreeMap<String, Arc<TaskRecord>>>,
    logs: LogStore,
    ports: PortAllocator,
    records: RecordStore,
    image_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pump: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicked actor must not take the engine down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    fn now_ms(&self) -> i64 {
        (self.config.clock)()
    }

    /// One lock per image, so that tasks starting together pull an image once.
    fn image_lock(&self, image: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.image_locks).entry(image.to_string()).or_default().clone()
    }

    fn send(&self, task_arn: &str, msg: Msg) -> bool {
        lock(&self.actors).get(task_arn).is_some_and(|a| a.tx.send(msg).is_ok())
    }

    fn forget(&self, task_arn: &str) {
        lock(&self.actors).remove(task_arn);
        lock(&self.latest).remove(task_arn);
        lock(&self.snapshots).remove(task_arn);
    }
}

/// The task engine. Cheap to clone; clones share the engine.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

impl Engine {
    /// Creates the engine and starts its event pump. Reports go to `reports`.
    pub fn new(config: EngineConfig, runtime: Arc<dyn Runtime>, reports: UnboundedSender<TaskReport>) -> Engine {
        // Numbering continues across restarts without a file: the clock only moves on, and a
        // thousand reports per millisecond is far more than any agent sends.
        let seq = AtomicU64::new(u64::try_from((config.clock)()).unwrap_or(0).saturating_mul(1000).max(1));
        let shared = Arc::new(Shared {
            logs: LogStore::new(config.data_dir.join("logs"), config.log_limit_bytes),
            ports: PortAllocator::new(config.dynamic_host_ports.clone()),
            records: RecordStore::new(config.data_dir.join("tasks")),
            config,
            runtime,
            reports,
            seq,
            actors: Mutex::new(BTreeMap::new()),
            latest: Mutex::new(BTreeMap::new()),
            snapshots: Mutex::new(BTreeMap::new()),
            image_locks: Mutex::new(HashMap::new()),
            pump: Mutex::new(None),
        });
        let pump = tokio::spawn(event_pump(Arc::downgrade(&shared)));
        *lock(&shared.pump) = Some(pump);
        Engine { shared }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.shared.runtime
    }

    /// Runs or updates a task. Idempotent: the actor is created once, later calls only carry
    /// the desired status.
    pub fn apply(&self, assignment: TaskAssignment) -> Result<(), EngineError> {
        let arn = assignment.arn().to_string();
        if arn.is_empty() {
            return Err(EngineError::InvalidAssignment("the task has no taskArn".into()));
        }
        if assignment.definition.container_definitions.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(EngineError::InvalidAssignment(format!("task {arn}: the definition has no containers")));
        }
        let mut actors = lock(&self.shared.actors);
        if let Some(a) = actors.get(&arn) {
            if a.tx.send(Msg::Assign(Box::new(assignment.clone()))).is_ok() {
                return Ok(());
            }
        }
        let record = TaskRecord::new(assignment);
        actors.insert(arn, self.spawn(record, false));
        Ok(())
    }

    fn spawn(&self, record: TaskRecord, adopted: bool) -> ActorHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let actor = Actor::new(self.shared.clone(), record, tx.clone(), rx, adopted);
        let join = tokio::spawn(actor.run());
        ActorHandle { tx, join }
    }

    /// Applies a manifest: every task not listed, or listed as STOPPED, is stopped.
    pub fn reconcile(&self, manifest: &[ManifestEntry]) -> Reconciled {
        let listed: BTreeMap<&str, DesiredStatus> =
            manifest.iter().map(|e| (e.task_arn.as_str(), DesiredStatus::parse(&e.desired_status))).collect();
        let mut out = Reconciled::default();
        let actors = lock(&self.shared.actors);
        for (arn, a) in actors.iter() {
            if listed.get(arn.as_str()).is_none_or(|d| *d == DesiredStatus::Stopped) && a.tx.send(Msg::Stop).is_ok() {
                out.stopping.push(arn.clone());
            }
        }
        for (arn, desired) in listed {
            if desired == DesiredStatus::Running && !actors.contains_key(arn) {
                out.unknown.push(arn.to_string());
            }
        }
        out
    }

    /// Rebuilds actors from the task records on disk (after an agent restart). Each actor finds
    /// its containers by label and resumes where the task was. Returns the adopted task ARNs.
    pub async fn adopt(&self) -> Result<Vec<String>, EngineError> {
        let records = self.shared.records.load_all().await?;
        let mut adopted = Vec::new();
        let mut actors = lock(&self.shared.actors);
        for record in records {
            let arn = record.arn().to_string();
            if arn.is_empty() || actors.contains_key(&arn) {
                continue;
            }
            if record.known != TaskStatus::Stopped {
                self.shared.ports.claim(&record.attachment.allocated_ports);
            }
            actors.insert(arn.clone(), self.spawn(record, true));
            adopted.push(arn);
        }
        Ok(adopted)
    }

    /// Removes this agent's containers that no task owns. Call it after `adopt` and the first
    /// manifest, so every live task has its actor. Returns the removed container names.
    pub async fn reap(&self) -> Result<Vec<String>, EngineError> {
        let instance = self.shared.config.container_instance_arn.as_str();
        let ours =
            self.shared.runtime.list_containers(&[(labels::MARKER, None), (labels::INSTANCE, Some(instance))]).await?;
        let mut removed = Vec::new();
        for c in ours {
            let owned = c.labels.get(labels::TASK).is_some_and(|t| lock(&self.shared.actors).contains_key(t));
            if !owned {
                self.shared.runtime.remove_container(&c.id).await?;
                tracing::info!(container = %c.name, "removed a container no task owns");
                removed.push(c.name);
            }
        }
        Ok(removed)
    }

    /// Every task the engine holds, with its known and desired status.
    pub fn tasks(&self) -> Vec<TaskSummary> {
        lock(&self.shared.latest)
            .iter()
            .map(|(arn, (r, desired))| TaskSummary {
                task_arn: arn.clone(),
                known_status: r.status,
                desired_status: *desired,
            })
            .collect()
    }

    /// The latest report of every task, to resend after a reconnect (reports are idempotent).
    pub fn latest_reports(&self) -> Vec<TaskReport> {
        lock(&self.shared.latest).values().map(|(r, _)| r.clone()).collect()
    }

    /// The record of one task as of its latest report; kept only while a metadata endpoint is
    /// configured (`EngineConfig::metadata`), its one reader.
    pub fn record(&self, task_arn: &str) -> Option<TaskRecord> {
        lock(&self.shared.snapshots).get(task_arn).map(|r| TaskRecord::clone(r))
    }

    /// The latest report of one task.
    pub fn report(&self, task_arn: &str) -> Option<TaskReport> {
        lock(&self.shared.latest).get(task_arn).map(|(r, _)| r.clone())
    }

    /// A task's stored container output, optionally of one container; with `follow`, new lines
    /// too until the task stops.
    pub fn logs(
        &self,
        task_arn: &str,
        container: Option<&str>,
        follow: bool,
    ) -> Result<BoxStream<'static, LogLine>, EngineError> {
        let task_id = spec::task_id(task_arn);
        // A task the engine holds has logs even before its first line (or its actor) arrives.
        let known = lock(&self.shared.actors).contains_key(task_arn);
        let log = if known { self.shared.logs.open(task_id) } else { self.shared.logs.existing(task_id) };
        let log = log.map_err(|e| match e {
            LogError::NoSuchTask { .. } => EngineError::UnknownTask(task_arn.to_string()),
            e => EngineError::Logs(e),
        })?;
        Ok(log.stream(container.map(str::to_string), follow))
    }

    /// Stops the actors and the event pump, leaving containers running (an agent shutting down
    /// or restarting); `adopt` on a new engine picks the tasks up again.
    pub async fn shutdown(&self) {
        if let Some(pump) = lock(&self.shared.pump).take() {
            pump.abort();
        }
        let handles: Vec<ActorHandle> = std::mem::take(&mut *lock(&self.shared.actors)).into_values().collect();
        for h in handles {
            h.join.abort();
            let _ = h.join.await;
        }
        // What the actors saved last must be on disk for the next start to adopt.
        self.shared.records.flush().await;
    }
}

/// Routes runtime events to actors, resubscribing with backoff when the stream breaks and asking
/// every actor to re-inspect its containers after each gap.
async fn event_pump(shared: Weak<Shared>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let Some((runtime, instance)) =
            shared.upgrade().map(|s| (s.runtime.clone(), s.config.container_instance_arn.clone()))
        else {
            return;
        };
        let mut events = runtime.events();
        drop(runtime);
        while let Some(event) = events.next().await {
            let Some(s) = shared.upgrade() else { return };
            match event {
                Ok(e) => {
                    backoff = Duration::from_millis(250);
                    // Several agents may share one Docker host; only our containers matter.
                    if e.labels.get(labels::INSTANCE) != Some(&instance) {
                        continue;
                    }
                    if let Some(task) = e.labels.get(labels::TASK).cloned() {
                        s.send(&task, Msg::Event(e));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "container event stream broke");
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
        let Some(s) = shared.upgrade() else { return };
        for a in lock(&s.actors).values() {
            let _ = a.tx.send(Msg::Resync);
        }
    }
}
