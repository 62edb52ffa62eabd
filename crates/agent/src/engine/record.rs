//! A task's state as its actor keeps it, the report built from it, and its copy on disk.
//!
//! The actor is the only writer of a [`TaskRecord`]. It saves the record under
//! `<data_dir>/tasks/<task id>.json` (write a temporary file, fsync it, rename it, fsync the
//! directory, so a crash leaves the old or the new version, never half of one) whenever what it
//! reports changes; the writing happens off the async runtime ([`RecordStore`]). After an
//! agent restart the records give back each task's definition, statuses, timestamps and stop
//! reason; the containers themselves are found again by their labels.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use flotilla_model::{ContainerDefinition, NetworkBinding};
use flotilla_protocol::{ContainerReport, TaskAssignment, TaskReport};
use serde::{Deserialize, Serialize};

use super::health::{task_health, Member};
use super::order::View;
use super::spec;
use super::status::{ContainerStatus, DesiredStatus, HealthStatus, TaskStatus};
use crate::cgroup::Confinement;
use crate::disk;
use crate::network::{Attachment, NetworkMode};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("task record {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One container of the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    pub name: String,
    pub essential: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    pub status: ContainerStatus,
    /// Whether it ever ran; a container stopped before it started reports no exit code.
    #[serde(default)]
    pub started: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `None` when the container has no health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<NetworkBinding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The kernel killed it for memory; its exit reason says so.
    #[serde(default)]
    pub oom: bool,
    /// Times its `restartPolicy` restarted it in place (`restart.rs`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restart_count: u32,
    /// When it last started or was restarted (engine clock, epoch ms): a restart needs it to
    /// have run for the policy's attempt period since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_started_ms: Option<i64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The task timestamps, epoch ms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timestamps {
    pub pull_started_at: Option<i64>,
    pub pull_stopped_at: Option<i64>,
    pub started_at: Option<i64>,
    pub stopping_at: Option<i64>,
    pub execution_stopped_at: Option<i64>,
    pub stopped_at: Option<i64>,
}

/// Everything the actor knows about its task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    pub assignment: TaskAssignment,
    pub known: TaskStatus,
    pub desired: DesiredStatus,
    pub network_mode: NetworkMode,
    #[serde(default)]
    pub attachment: Attachment,
    pub containers: Vec<ContainerRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    #[serde(default)]
    pub times: Timestamps,
    /// Images are present; the pull step is over.
    #[serde(default)]
    pub images_ready: bool,
    /// How the task's containers are held to its task-level cpu and memory; decided when the
    /// task is provisioned (`None` before that, and in records written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confinement: Option<Confinement>,
}

impl TaskRecord {
    /// A new task at PROVISIONING. An unknown network mode is kept as bridge here and refused
    /// when provisioning, so the refusal is reported like any other failure to start.
    pub fn new(assignment: TaskAssignment) -> TaskRecord {
        let network_mode =
            NetworkMode::parse(assignment.definition.network_mode.as_deref()).unwrap_or(NetworkMode::Bridge);
        let desired = DesiredStatus::parse(assignment.desired_status());
        let containers = assignment
            .definition
            .container_definitions
            .iter()
            .flatten()
            .map(|c| ContainerRecord {
                name: c.name.clone().unwrap_or_default(),
                essential: c.essential.unwrap_or(true),
                runtime_id: None,
                status: ContainerStatus::Pending,
                started: false,
                exit_code: None,
                reason: None,
                health: c.health_check.as_ref().and_then(spec::health_check).map(|_| HealthStatus::Unknown),
                bindings: Vec::new(),
                image_digest: None,
                oom: false,
                restart_count: 0,
                last_started_ms: None,
            })
            .collect();
        TaskRecord {
            assignment,
            known: TaskStatus::Provisioning,
            desired,
            network_mode,
            attachment: Attachment::default(),
            containers,
            stop_code: None,
            stopped_reason: None,
            times: Timestamps::default(),
            images_ready: false,
            confinement: None,
        }
    }

    pub fn arn(&self) -> &str {
        self.assignment.arn()
    }

    pub fn task_id(&self) -> &str {
        spec::task_id(self.arn())
    }

    /// The container definitions with the task's overrides applied, in definition order.
    pub fn definitions(&self) -> Vec<ContainerDefinition> {
        let overrides = self.assignment.task.overrides.as_ref().and_then(|o| o.container_overrides.as_ref());
        self.assignment
            .definition
            .container_definitions
            .iter()
            .flatten()
            .map(|d| {
                let o = overrides.and_then(|os| os.iter().find(|o| o.name.is_some() && o.name == d.name));
                spec::resolve(d, o)
            })
            .collect()
    }

    pub fn container(&self, name: &str) -> Option<&ContainerRecord> {
        self.containers.iter().find(|c| c.name == name)
    }

    pub fn container_mut(&mut self, name: &str) -> Option<&mut ContainerRecord> {
        self.containers.iter_mut().find(|c| c.name == name)
    }

    /// The ordering views of every container.
    pub fn views(&self) -> std::collections::BTreeMap<String, View> {
        self.containers
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    View { status: c.status, started: c.started, exit_code: c.exit_code, health: c.health },
                )
            })
            .collect()
    }

    pub fn health(&self) -> HealthStatus {
        task_health(self.containers.iter().map(|c| Member { essential: c.essential, health: c.health }))
    }

    /// The report of the current state, numbered `seq`.
    pub fn report(&self, seq: u64) -> TaskReport {
        TaskReport {
            task_arn: self.arn().to_string(),
            status: self.known,
            seq,
            containers: self
                .containers
                .iter()
                .map(|c| ContainerReport {
                    name: c.name.clone(),
                    status: c.status.wire(),
                    runtime_id: c.runtime_id.clone(),
                    image_digest: c.image_digest.clone(),
                    exit_code: c.exit_code,
                    reason: c.reason.clone(),
                    network_bindings: c.bindings.clone(),
                    health_status: c.health.map(|h| h.as_str().to_string()),
                })
                .collect(),
            stop_code: self.stop_code.clone(),
            stopped_reason: self.stopped_reason.clone(),
            health_status: Some(self.health().as_str().to_string()),
            private_ipv4: self.attachment.private_ipv4.clone(),
            pull_started_at_ms: self.times.pull_started_at,
            pull_stopped_at_ms: self.times.pull_stopped_at,
            started_at_ms: self.times.started_at,
            stopping_at_ms: self.times.stopping_at,
            execution_stopped_at_ms: self.times.execution_stopped_at,
            stopped_at_ms: self.times.stopped_at,
        }
    }
}

/// What is waiting to reach a task's record file.
#[derive(Debug)]
enum Pending {
    Save(Vec<u8>),
    Remove,
}

#[derive(Debug, Default)]
struct Queue {
    /// The latest change of each task not yet written; an older one it replaced needs no writing.
    pending: Mutex<BTreeMap<String, Pending>>,
    /// Held while writing, so writes of one task never overtake each other.
    writer: Mutex<()>,
    /// A drain is scheduled and has not yet taken `pending`.
    scheduled: AtomicBool,
}

/// The records on disk. Saving and removing only queue the change and return; the writes happen
/// on tokio's blocking pool (never on an async worker), one drain at a time, so the file of a task
/// always ends at its latest change.
#[derive(Debug, Clone)]
pub struct RecordStore {
    dir: PathBuf,
    queue: Arc<Queue>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecordError + '_ {
    move |source| RecordError::Io { path: path.to_path_buf(), source }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RecordStore {
    pub fn new(dir: PathBuf) -> RecordStore {
        RecordStore { dir, queue: Arc::default() }
    }

    fn path(&self, task_id: &str) -> PathBuf {
        self.dir.join(format!("{task_id}.json"))
    }

    /// Queues the record to be written (crash-atomically, see [`disk::write_atomic`]).
    pub fn save(&self, record: &TaskRecord) -> Result<(), RecordError> {
        let path = self.path(record.task_id());
        let bytes = serde_json::to_vec(record).map_err(|e| io(&path)(e.into()))?;
        self.enqueue(record.task_id(), Pending::Save(bytes));
        Ok(())
    }

    /// Queues the record's removal.
    pub fn remove(&self, task_id: &str) {
        self.enqueue(task_id, Pending::Remove);
    }

    fn enqueue(&self, task_id: &str, change: Pending) {
        locked(&self.queue.pending).insert(task_id.to_string(), change);
        if self.queue.scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let this = self.clone();
                rt.spawn_blocking(move || this.drain());
            }
            // Outside a runtime (a tool, a test) blocking is what the caller does anyway.
            Err(_) => self.drain(),
        }
    }

    /// Writes everything queued. Failures are logged: the next change of the task writes the
    /// whole record again.
    fn drain(&self) {
        let _writer = locked(&self.queue.writer);
        // A change queued from here on schedules another drain, which waits for this one.
        self.queue.scheduled.store(false, Ordering::SeqCst);
        let pending = std::mem::take(&mut *locked(&self.queue.pending));
        if pending.is_empty() {
            return;
        }
        if let Err(e) = disk::ensure_own_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot create the task record directory");
            return;
        }
        for (task_id, change) in pending {
            let path = self.path(&task_id);
            let result = match change {
                Pending::Save(bytes) => disk::write_atomic(&path, &bytes),
                Pending::Remove => match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                },
            };
            if let Err(e) = result {
                tracing::warn!(task = %task_id, path = %path.display(), error = %e, "cannot write the task record");
            }
        }
    }

    /// Waits until every change queued so far is on disk (an agent shutting down).
    pub async fn flush(&self) {
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || this.drain()).await;
    }

    /// Every readable record, read on the blocking pool. A record that does not parse (written by
    /// an incompatible version) is skipped; its containers are then unowned and the reaper
    /// removes them.
    pub async fn load_all(&self) -> Result<Vec<TaskRecord>, RecordError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || load_all(&dir))
            .await
            .map_err(|e| RecordError::Io { path: self.dir.clone(), source: std::io::Error::other(e) })?
    }
}

fn load_all(dir: &Path) -> Result<Vec<TaskRecord>, RecordError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let bytes = fs::read(&path).map_err(io(&path))?;
        match serde_json::from_slice::<TaskRecord>(&bytes) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable task record"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::{ContainerDefinition, Task, TaskDefinition};
    use std::os::unix::fs::PermissionsExt;

    fn record(id: &str, desired: &str) -> TaskRecord {
        TaskRecord::new(TaskAssignment {
            task: Task {
                task_arn: Some(format!("arn:aws:ecs:r:1:task/c/{id}")),
                desired_status: Some(desired.into()),
                ..Default::default()
            },
            definition: TaskDefinition {
                container_definitions: Some(vec![ContainerDefinition {
                    name: Some("web".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            reserved_ports: vec![],
            network: None,
            stop_timeout_cap_seconds: None,
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_reach_the_disk_privately_and_the_latest_change_wins() {
        let root = tempfile::tempdir().unwrap();
        let store = RecordStore::new(root.path().join("tasks"));
        for i in 0..50 {
            let mut r = record("t1", "RUNNING");
            r.times.started_at = Some(i);
            store.save(&r).unwrap();
        }
        store.save(&record("t2", "RUNNING")).unwrap();
        store.save(&record("t3", "RUNNING")).unwrap();
        store.remove("t3");
        store.flush().await;
        let mut all = store.load_all().await.unwrap();
        all.sort_by(|a, b| a.arn().cmp(b.arn()));
        assert_eq!(all.iter().map(|r| r.task_id().to_string()).collect::<Vec<_>>(), vec!["t1", "t2"]);
        assert_eq!(all[0].times.started_at, Some(49));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root.path().join("tasks")), 0o700);
        assert_eq!(mode(&root.path().join("tasks/t1.json")), 0o600);
        // No temporary file is left.
        assert_eq!(fs::read_dir(root.path().join("tasks")).unwrap().count(), 2);
    }
}
