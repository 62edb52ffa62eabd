//! The `awslogs` log driver: ships a container's captured output to CloudWatch Logs on the
//! control plane, as Docker's awslogs driver does on ECS.
//!
//! It follows the task's log (`TaskLog`, which the capture writes whatever the driver) for one
//! container, gathers lines into batches (at most a second old, [`MAX_EVENTS`] lines or
//! [`MAX_BYTES`]), and sends each through the agent's session (`ControlPlaneCalls::
//! put_log_events`), again and again with a growing pause while the control plane cannot take
//! it. After each stored batch it saves a cursor beside the task's log (the last line shipped and
//! the next batch number), so an agent restart resumes where it stopped: a batch sent but not
//! recorded is sent again under the same number, which the control plane stores once. It ends
//! when the task's log is finished (the task stopped and its output drained).
//!
//! The stream is `prefix/container-name/task-id` with `awslogs-stream-prefix`, else the
//! container's id, as ECS names them. A restarted container keeps its first stream.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flotilla_model::ContainerDefinition;
use flotilla_protocol::{LogEvent, LogEventsBatch};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::{LogLine, TaskLog};
use crate::calls::{CallError, ControlPlaneCalls};

/// A batch is sent once it holds this many lines...
pub const MAX_EVENTS: usize = 1_000;
/// ...or this many bytes as CloudWatch Logs counts them (each line plus 26)...
pub const MAX_BYTES: usize = 768 * 1024;
/// ...or its first line is this old.
pub const MAX_WAIT: Duration = Duration::from_secs(1);
/// CloudWatch Logs' cap on one event.
const MAX_LINE: usize = 262_144 - 26;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where one container's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub container: String,
    pub group: String,
    pub stream: String,
    pub create_group: bool,
}

impl Target {
    /// The target of a container whose `logConfiguration` uses `awslogs`; `runtime_id` names
    /// the stream when no prefix is given.
    pub fn of(def: &ContainerDefinition, task_id: &str, runtime_id: &str) -> Option<Target> {
        let config = def.log_configuration.as_ref()?;
        if config.log_driver.as_deref() != Some("awslogs") {
            return None;
        }
        let options = config.options.clone().unwrap_or_default();
        let container = def.name.clone().unwrap_or_default();
        let stream = match options.get("awslogs-stream-prefix") {
            Some(prefix) if !prefix.is_empty() => format!("{prefix}/{container}/{task_id}"),
            _ => runtime_id.to_string(),
        };
        Some(Target {
            group: options.get("awslogs-group")?.clone(),
            create_group: options.get("awslogs-create-group").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            container,
            stream,
        })
    }
}

/// What has been shipped, saved beside the task's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    /// The task-wide sequence number of the last line stored.
    pub last_seq: Option<u64>,
    /// The number of the next batch.
    pub next_sequence: u64,
    /// The last line of batch `next_sequence`, saved before it is sent: after a restart the same
    /// lines go again under the same number, so the control plane stores them once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_last: Option<u64>,
}

fn cursor_path(dir: &Path, container: &str) -> PathBuf {
    dir.join(format!("awslogs-{container}.json"))
}

pub fn load_cursor(dir: &Path, container: &str) -> Cursor {
    std::fs::read(cursor_path(dir, container)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn save_cursor(dir: &Path, container: &str, cursor: &Cursor) -> std::io::Result<()> {
    crate::disk::write_atomic(&cursor_path(dir, container), &serde_json::to_vec(cursor).unwrap_or_default())
}

/// Gathers lines into batches: `push` answers a full batch, `take` what is pending.
#[derive(Default)]
pub struct Batcher {
    lines: Vec<LogLine>,
    bytes: usize,
}

impl Batcher {
    pub fn push(&mut self, mut line: LogLine) -> Option<Vec<LogLine>> {
        if line.line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.line.truncate(cut);
        }
        let size = line.line.len() + 26;
        let mut full = None;
        if !self.lines.is_empty() && self.bytes + size > MAX_BYTES {
            full = self.take();
        }
        self.bytes += size;
        self.lines.push(line);
        if self.lines.len() >= MAX_EVENTS {
            return self.take().or(full);
        }
        full
    }

    pub fn take(&mut self) -> Option<Vec<LogLine>> {
        self.bytes = 0;
        (!self.lines.is_empty()).then(|| std::mem::take(&mut self.lines))
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// The shippers of one task, one per container, started once each.
#[derive(Default)]
pub struct Shippers {
    started: BTreeSet<String>,
    handles: Vec<JoinHandle<()>>,
}

impl Shippers {
    /// Starts shipping `def`'s output if it uses `awslogs` and is not shipped yet.
    pub fn ensure(
        &mut self,
        calls: Option<&Arc<dyn ControlPlaneCalls>>,
        log: Option<&Arc<TaskLog>>,
        task_arn: &str,
        task_id: &str,
        def: Option<&ContainerDefinition>,
        runtime_id: &str,
    ) {
        let (Some(calls), Some(log), Some(def)) = (calls, log, def) else { return };
        let Some(target) = Target::of(def, task_id, runtime_id) else { return };
        if !self.started.insert(target.container.clone()) {
            return;
        }
        self.handles.retain(|h| !h.is_finished());
        self.handles.push(tokio::spawn(ship(calls.clone(), log.clone(), task_arn.to_string(), target)));
    }
}

/// Ships the container's lines until the task's log is finished.
pub async fn ship(calls: Arc<dyn ControlPlaneCalls>, log: Arc<TaskLog>, task_arn: String, target: Target) {
    let dir = log.dir().to_path_buf();
    let mut cursor = load_cursor(&dir, &target.container);
    let (reader, container) = (log.clone(), target.container.clone());
    let Ok(mut lines) = tokio::task::spawn_blocking(move || reader.stream(Some(container), true)).await else {
        return;
    };
    let mut batcher = Batcher::default();
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut refused = false;
    loop {
        let wait = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let full = tokio::select! {
            next = lines.next() => match next {
                Some(line) if cursor.last_seq.is_some_and(|s| line.seq <= s) => None,
                // The agent's own notes (a pull's start and end) are not the container's output.
                Some(line) if line.is_agents() => None,
                Some(line) => match cursor.pending_last {
                    // Rebuild the batch an earlier run sent but may not have seen stored.
                    Some(last) => {
                        let seq = line.seq;
                        let full = batcher.push(line);
                        if seq >= last { batcher.take().or(full) } else { full }
                    }
                    None => {
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + MAX_WAIT);
                        batcher.push(line)
                    }
                },
                None => {
                    if let Some(rest) = batcher.take() {
                        send(&*calls, &dir, &task_arn, &target, &mut cursor, rest, &mut refused).await;
                    }
                    return;
                }
            },
            _ = wait => batcher.take(),
        };
        if let Some(batch) = full {
            deadline = (!batcher.is_empty()).then(|| tokio::time::Instant::now() + MAX_WAIT);
            if !send(&*calls, &dir, &task_arn, &target, &mut cursor, batch, &mut refused).await {
                return;
            }
        }
    }
}

/// Sends one batch until it is stored or refused; `false` when the task's log is gone.
async fn send(
    calls: &dyn ControlPlaneCalls,
    dir: &Path,
    task_arn: &str,
    target: &Target,
    cursor: &mut Cursor,
    lines: Vec<LogLine>,
    refused: &mut bool,
) -> bool {
    let last_seq = lines.last().map(|l| l.seq);
    let batch = LogEventsBatch {
        task_arn: task_arn.to_string(),
        log_group: target.group.clone(),
        log_stream: target.stream.clone(),
        create_group: target.create_group,
        sequence: cursor.next_sequence,
        events: lines
            .into_iter()
            .map(|l| LogEvent { timestamp: l.runtime_ns.map_or(l.timestamp_ms, |ns| ns / 1_000_000), message: l.line })
            .collect(),
    };
    if cursor.pending_last != last_seq {
        cursor.pending_last = last_seq;
        if let Err(e) = save_cursor(dir, &target.container, cursor) {
            tracing::warn!(task = %task_arn, error = %e, "awslogs: cannot save the shipping cursor");
        }
    }
    let mut backoff = FIRST_BACKOFF;
    loop {
        match calls.put_log_events(batch.clone()).await {
            Ok(()) => break,
            Err(CallError::Refused { code, message }) => {
                // Retrying will not help: these lines are dropped, as Docker's driver drops what
                // CloudWatch refuses; said once per container.
                if !std::mem::replace(refused, true) {
                    tracing::warn!(task = %task_arn, container = %target.container, group = %target.group,
                        %code, %message, "awslogs: CloudWatch Logs refused the container's output");
                }
                break;
            }
            Err(e @ CallError::Unavailable(_)) => {
                if !dir.is_dir() {
                    return false;
                }
                tracing::debug!(task = %task_arn, error = %e, "awslogs: batch not stored yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    *cursor =
        Cursor { last_seq: last_seq.or(cursor.last_seq), next_sequence: cursor.next_sequence + 1, pending_last: None };
    if let Err(e) = save_cursor(dir, &target.container, cursor) {
        tracing::warn!(task = %task_arn, error = %e, "awslogs: cannot save the shipping cursor");
    }
    true
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use flotilla_model::LogConfiguration;
    use flotilla_protocol::TaskResources;
    use futures::future::BoxFuture;

    use super::*;
    use crate::logs::{LogSource, LogStore};

    /// Stores batches like the control plane (once per sequence); fails the first `outages`.
    #[derive(Default)]
    struct FakeCalls {
        stored: Mutex<BTreeMap<u64, LogEventsBatch>>,
        outages: Mutex<u32>,
    }

    impl ControlPlaneCalls for FakeCalls {
        fn task_resources(&self, _: &str) -> BoxFuture<'_, Result<TaskResources, CallError>> {
            Box::pin(async { Err(CallError::Unavailable("unused".into())) })
        }
        fn put_log_events(&self, batch: LogEventsBatch) -> BoxFuture<'_, Result<(), CallError>> {
            Box::pin(async move {
                let mut outages = self.outages.lock().unwrap();
                if *outages > 0 {
                    *outages -= 1;
                    return Err(CallError::Unavailable("down".into()));
                }
                self.stored.lock().unwrap().entry(batch.sequence).or_insert(batch);
                Ok(())
            })
        }
    }

    fn def(options: &[(&str, &str)]) -> ContainerDefinition {
        ContainerDefinition {
            name: Some("web".into()),
            log_configuration: Some(LogConfiguration {
                log_driver: Some("awslogs".into()),
                options: Some(options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                secret_options: None,
            }),
            ..Default::default()
        }
    }

    fn line(seq: u64, text: &str) -> LogLine {
        LogLine {
            seq,
            timestamp_ms: 1,
            container: "web".into(),
            source: LogSource::Stdout,
            line: text.into(),
            runtime_ns: None,
        }
    }

    #[test]
    fn streams_are_named_as_ecs_names_them() {
        let t = Target::of(
            &def(&[("awslogs-group", "/g"), ("awslogs-stream-prefix", "p"), ("awslogs-create-group", "true")]),
            "t1",
            "abc",
        )
        .unwrap();
        assert_eq!((t.stream.as_str(), t.create_group), ("p/web/t1", true));
        let t = Target::of(&def(&[("awslogs-group", "/g")]), "t1", "abc").unwrap();
        assert_eq!((t.stream.as_str(), t.create_group), ("abc", false));
        let mut other = def(&[]);
        other.log_configuration.as_mut().unwrap().log_driver = Some("json-file".into());
        assert_eq!(Target::of(&other, "t1", "abc"), None);
    }

    #[test]
    fn batches_close_at_the_line_and_byte_caps() {
        let mut b = Batcher::default();
        let full: Vec<_> = (0..MAX_EVENTS as u64).filter_map(|i| b.push(line(i, "x"))).collect();
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].len(), MAX_EVENTS);
        assert!(b.is_empty());
        let big = "y".repeat(300_000);
        assert!(b.push(line(1, &big)).is_none());
        assert_eq!(b.lines[0].line.len(), MAX_LINE, "an over-long line is cut to CloudWatch's cap");
        assert!(b.push(line(2, &big)).is_none());
        assert!(b.push(line(3, &big)).is_none());
        let closed = b.push(line(4, &big)).expect("the bytes cap closes a batch");
        assert_eq!(closed.len(), 3);
        assert_eq!(b.take().map(|l| l.len()), Some(1));
    }

    #[tokio::test]
    async fn a_restarted_shipper_resumes_without_loss_or_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path().to_path_buf(), 1 << 20);
        let log = store.open("t1").unwrap();
        for i in 0..3 {
            log.append("web", LogSource::Stdout, format!("first {i}"), None, 10).unwrap();
            log.append("other", LogSource::Stdout, "not mine".into(), None, 10).unwrap();
        }
        let calls = Arc::new(FakeCalls { outages: Mutex::new(2), ..Default::default() });
        let target = Target::of(&def(&[("awslogs-group", "/g")]), "t1", "cid").unwrap();
        // The first run ships what is there, through two outages, then "the agent restarts".
        let first = tokio::spawn(ship(calls.clone(), log.clone(), "arn:t1".into(), target.clone()));
        tokio::time::timeout(Duration::from_secs(20), async {
            while calls.stored.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the first batch is stored");
        first.abort();
        let shipped = Cursor { last_seq: Some(4), next_sequence: 1, pending_last: None };
        assert_eq!(load_cursor(log.dir(), "web"), shipped);
        // A batch stored but not recorded is sent again, the same lines under the same number.
        save_cursor(log.dir(), "web", &Cursor { last_seq: None, next_sequence: 0, pending_last: Some(4) }).unwrap();
        let mut resent = calls.stored.lock().unwrap().clone();
        log.append("web", LogSource::Stdout, "second".into(), None, 11).unwrap();
        log.finish();
        ship(calls.clone(), log.clone(), "arn:t1".into(), target).await;
        let stored = calls.stored.lock().unwrap().clone();
        resent.insert(1, stored[&1].clone());
        assert_eq!(stored, resent, "batch 0 was stored once");
        let lines: Vec<String> = stored.values().flat_map(|b| b.events.iter().map(|e| e.message.clone())).collect();
        assert_eq!(lines, ["first 0", "first 1", "first 2", "second"]);
        assert_eq!(stored[&1].log_stream, "cid");
    }
}
