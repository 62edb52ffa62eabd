//! Container output kept by the agent: each task's stdout and stderr lines in a bounded file under
//! the data dir, readable after the containers exit (and after an agent restart), with a follow
//! mode that streams new lines as they arrive.
//!
//! A task's log is two segment files, `current.log` and `previous.log`, of JSON lines. When the
//! current one would pass half the task's limit it becomes the previous one (replacing the older
//! previous), so the oldest lines are dropped a segment at a time and a task's logs never take
//! more than its limit. Every line carries a per-task sequence number, so a follower that reads
//! the files and then the live feed neither misses nor repeats a line. `capture.rs` feeds lines
//! from the runtime.
//!
//! Everything here blocks on the file system: async callers go through
//! `tokio::task::spawn_blocking` (the capture appends a batch of lines at a time), and the files
//! are private to the agent's user (`crate::disk`).

pub mod awslogs;
pub mod capture;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::disk;
pub use crate::runtime::LogSource;

const CURRENT: &str = "current.log";
const PREVIOUS: &str = "previous.log";
/// How many lines a follower may fall behind before it re-reads the file. The feed exists only
/// while someone follows: its slots (and the last lines they hold) cost about 120 bytes each plus
/// the text, for every task, where most tasks are never followed.
const FOLLOW_BUFFER: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("no logs for task {task_id}")]
    NoSuchTask { task_id: String },
    #[error("log file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.to_path_buf(), source }
}

/// What the agent's own lines in a task's log start with (a pull's start and end): shown by
/// `flotilla logs` beside the container's output, never shipped as the container's (`awslogs`).
pub const AGENT_LINE_PREFIX: &str = "[flotilla-agent] ";

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// Increases by one per line within a task.
    pub seq: u64,
    /// When the agent received it (epoch ms).
    pub timestamp_ms: i64,
    pub container: String,
    pub source: LogSource,
    pub line: String,
    /// The runtime's timestamp, used to resume capture after a restart without duplicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_ns: Option<i64>,
}

impl LogLine {
    /// Whether the agent wrote this line (it has no runtime timestamp and carries the agent's
    /// prefix) rather than the container.
    pub fn is_agents(&self) -> bool {
        self.runtime_ns.is_none() && self.line.starts_with(AGENT_LINE_PREFIX)
    }
}

/// All tasks' logs under one directory.
pub struct LogStore {
    dir: PathBuf,
    limit_bytes: u64,
    open: Mutex<HashMap<String, Arc<TaskLog>>>,
}

impl LogStore {
    pub fn new(dir: PathBuf, limit_bytes: u64) -> Self {
        LogStore { dir, limit_bytes: limit_bytes.max(1024), open: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<TaskLog>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The task's log, created if needed.
    pub fn open(&self, task_id: &str) -> Result<Arc<TaskLog>, LogError> {
        let mut open = self.lock();
        if let Some(log) = open.get(task_id) {
            return Ok(log.clone());
        }
        let log = Arc::new(TaskLog::open(self.dir.join(task_id), self.limit_bytes)?);
        open.insert(task_id.to_string(), log.clone());
        Ok(log)
    }

    /// The task's log if it has one (in memory or on disk).
    pub fn existing(&self, task_id: &str) -> Result<Arc<TaskLog>, LogError> {
        if self.lock().contains_key(task_id) || self.dir.join(task_id).is_dir() {
            self.open(task_id)
        } else {
            Err(LogError::NoSuchTask { task_id: task_id.to_string() })
        }
    }

    /// Deletes a task's logs, ending its followers.
    pub fn remove(&self, task_id: &str) -> Result<(), LogError> {
        if let Some(log) = self.lock().remove(task_id) {
            log.finish();
        }
        let dir = self.dir.join(task_id);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&dir)(e)),
            _ => Ok(()),
        }
    }
}

struct Writer {
    file: File,
    len: u64,
    next_seq: u64,
    /// The last runtime timestamp written per container.
    last_ns: BTreeMap<String, i64>,
    /// The feed to followers; made by the first one, dropped when the last one has gone.
    live: Option<broadcast::Sender<LogLine>>,
    /// The task is done: no line will come, and dropping `live` ended every follower.
    finished: bool,
}

/// One task's log.
pub struct TaskLog {
    dir: PathBuf,
    limit_bytes: u64,
    writer: Mutex<Writer>,
}

impl TaskLog {
    fn open(dir: PathBuf, limit_bytes: u64) -> Result<TaskLog, LogError> {
        if let Some(root) = dir.parent() {
            disk::ensure_own_dir(root).map_err(io(root))?;
        }
        disk::ensure_own_dir(&dir).map_err(io(&dir))?;
        // Resume numbering and capture positions from what is on disk.
        let mut next_seq = 0;
        let mut last_ns = BTreeMap::new();
        for line in read_lines(&dir)? {
            next_seq = line.seq + 1;
            if let Some(ns) = line.runtime_ns {
                last_ns.insert(line.container.clone(), ns);
            }
        }
        let path = dir.join(CURRENT);
        let file = disk::private_file().create(true).append(true).open(&path).map_err(io(&path))?;
        let len = file.metadata().map_err(io(&path))?.len();
        let writer = Writer { file, len, next_seq, last_ns, live: None, finished: false };
        Ok(TaskLog { dir, limit_bytes, writer: Mutex::new(writer) })
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The task's log directory (the awslogs shipper keeps its cursor there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The runtime timestamp of the last line captured from `container`.
    pub fn last_runtime_ns(&self, container: &str) -> Option<i64> {
        self.lock().last_ns.get(container).copied()
    }

    /// Appends one line, rotating segments to stay within the limit.
    pub fn append(
        &self,
        container: &str,
        source: LogSource,
        line: String,
        runtime_ns: Option<i64>,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let mut w = self.lock();
        let entry = LogLine {
            seq: w.next_seq,
            timestamp_ms: now_ms,
            container: container.to_string(),
            source,
            line,
            runtime_ns,
        };
        let mut bytes = serde_json::to_vec(&entry).unwrap_or_default();
        bytes.push(b'\n');
        if w.len > 0 && w.len + bytes.len() as u64 > self.limit_bytes / 2 {
            let (cur, prev) = (self.dir.join(CURRENT), self.dir.join(PREVIOUS));
            fs::rename(&cur, &prev).map_err(io(&cur))?;
            w.file = disk::private_file().create(true).append(true).open(&cur).map_err(io(&cur))?;
            w.len = 0;
        }
        let path = self.dir.join(CURRENT);
        w.file.write_all(&bytes).map_err(io(&path))?;
        w.len += bytes.len() as u64;
        w.next_seq += 1;
        if let Some(ns) = runtime_ns {
            w.last_ns.insert(container.to_string(), ns);
        }
        if let Some(live) = &w.live {
            if live.receiver_count() == 0 {
                // The last follower went: free the feed and the lines it holds.
                w.live = None;
            } else {
                let _ = live.send(entry);
            }
        }
        Ok(())
    }

    /// Marks the log complete: followers drain and end.
    pub fn finish(&self) {
        let mut w = self.lock();
        w.live = None;
        w.finished = true;
    }

    /// Every stored line (oldest first), optionally of one container.
    pub fn read(&self, container: Option<&str>) -> Result<Vec<LogLine>, LogError> {
        let _w = self.lock();
        Ok(read_lines(&self.dir)?.into_iter().filter(|l| container.is_none_or(|c| l.container == c)).collect())
    }

    /// The stored lines, then (with `follow`) new lines as they come, until the task is done.
    /// Reads the stored lines before it returns (blocking).
    pub fn stream(self: &Arc<Self>, container: Option<String>, follow: bool) -> BoxStream<'static, LogLine> {
        // Subscribe before reading, so nothing written in between is lost; sequence numbers drop
        // what both the file and the feed carry.
        let rx = if follow {
            let mut w = self.lock();
            match (&w.live, w.finished) {
                (_, true) => None,
                (Some(live), false) => Some(live.subscribe()),
                (None, false) => {
                    let (live, rx) = broadcast::channel(FOLLOW_BUFFER);
                    w.live = Some(live);
                    Some(rx)
                }
            }
        } else {
            None
        };
        let stored = self.read(container.as_deref()).unwrap_or_default();
        let last = stored.last().map(|l| l.seq);
        let head = stream::iter(stored);
        let Some(rx) = rx else { return head.boxed() };
        let this = self.clone();
        let tail = stream::unfold((rx, last, Vec::<LogLine>::new()), move |(mut rx, mut last, mut pending)| {
            let this = this.clone();
            let container = container.clone();
            async move {
                loop {
                    if !pending.is_empty() {
                        let line = pending.remove(0);
                        return Some((line, (rx, last, pending)));
                    }
                    match rx.recv().await {
                        Ok(line) => {
                            if last.is_some_and(|l| line.seq <= l) {
                                continue;
                            }
                            last = Some(line.seq);
                            if container.as_ref().is_none_or(|c| *c == line.container) {
                                return Some((line, (rx, last, pending)));
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            // Fell behind the feed: catch up from the files, off the runtime.
                            let reader = this.clone();
                            let stored = tokio::task::spawn_blocking(move || reader.read(None))
                                .await
                                .ok()
                                .and_then(Result::ok)
                                .unwrap_or_default();
                            let missed: Vec<LogLine> =
                                stored.into_iter().filter(|l| last.is_none_or(|s| l.seq > s)).collect();
                            if let Some(l) = missed.last() {
                                last = Some(l.seq);
                            }
                            pending = missed
                                .into_iter()
                                .filter(|l| container.as_ref().is_none_or(|c| *c == l.container))
                                .collect();
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        head.chain(tail).boxed()
    }
}

fn read_lines(dir: &Path) -> Result<Vec<LogLine>, LogError> {
    let mut out = Vec::new();
    for name in [PREVIOUS, CURRENT] {
        let path = dir.join(name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&path)(e)),
        };
        for line in BufReader::new(file).lines() {
            let line = line.map_err(io(&path))?;
            // A torn last line (a crash mid-write) is skipped rather than failing the read.
            if let Ok(l) = serde_json::from_str::<LogLine>(&line) {
                out.push(l);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_agents_notes_are_told_from_the_containers_output() {
        let line = |text: &str, runtime_ns| LogLine {
            seq: 1,
            timestamp_ms: 0,
            container: "web".into(),
            source: LogSource::Stderr,
            line: text.into(),
            runtime_ns,
        };
        assert!(line("[flotilla-agent] pulling image x", None).is_agents());
        // A container that prints the same words is still the container.
        assert!(!line("[flotilla-agent] pulling image x", Some(5)).is_agents());
        assert!(!line("hello", None).is_agents());
    }
    use super::*;

    #[tokio::test]
    async fn lines_are_kept_bounded_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path().to_path_buf(), 4096);
        let log = store.open("t1").unwrap();
        for i in 0..200 {
            log.append("web", LogSource::Stdout, format!("line {i}"), Some(i), 0).unwrap();
        }
        let lines = log.read(None).unwrap();
        // The oldest lines went; the newest are all there, in order.
        assert!(lines.len() < 200 && lines.len() > 10, "{}", lines.len());
        assert_eq!(lines.last().unwrap().line, "line 199");
        assert!(lines.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        let total: u64 =
            fs::read_dir(dir.path().join("t1")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(total <= 4096 + 200, "{total}");
        // Only the agent's user reads what containers printed.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(dir.path()), mode(&dir.path().join("t1"))), (0o700, 0o700));
        assert_eq!(mode(&dir.path().join("t1").join(CURRENT)), 0o600);

        // A new store (an agent restart) continues the numbering and knows where capture was.
        drop(store);
        let store = LogStore::new(dir.path().to_path_buf(), 4096);
        let log = store.existing("t1").unwrap();
        assert_eq!(log.last_runtime_ns("web"), Some(199));
        log.append("web", LogSource::Stderr, "after".into(), None, 0).unwrap();
        assert_eq!(log.read(None).unwrap().last().unwrap().seq, 200);
        assert!(matches!(store.existing("nope"), Err(LogError::NoSuchTask { .. })));
    }

    #[tokio::test]
    async fn followers_get_stored_then_new_lines_and_end_when_the_task_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path().to_path_buf(), 1 << 20);
        let log = store.open("t1").unwrap();
        log.append("web", LogSource::Stdout, "one".into(), None, 0).unwrap();
        log.append("side", LogSource::Stdout, "other".into(), None, 0).unwrap();
        let mut follow = log.stream(Some("web".into()), true);
        assert_eq!(follow.next().await.unwrap().line, "one");
        log.append("web", LogSource::Stderr, "two".into(), None, 0).unwrap();
        assert_eq!(follow.next().await.unwrap().line, "two");
        log.finish();
        assert!(follow.next().await.is_none());
        let all: Vec<_> = log.stream(None, false).map(|l| l.line).collect().await;
        assert_eq!(all, vec!["one", "other", "two"]);
    }

    #[tokio::test]
    async fn the_follow_feed_exists_only_while_someone_follows() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path().to_path_buf(), 1 << 20);
        let log = store.open("t1").unwrap();
        log.append("web", LogSource::Stdout, "one".into(), None, 0).unwrap();
        assert!(log.lock().live.is_none(), "a feed nobody follows");
        let mut follow = log.stream(None, true);
        assert_eq!(follow.next().await.unwrap().line, "one");
        log.append("web", LogSource::Stdout, "two".into(), None, 0).unwrap();
        assert_eq!(follow.next().await.unwrap().line, "two");
        drop(follow);
        log.append("web", LogSource::Stdout, "three".into(), None, 0).unwrap();
        assert!(log.lock().live.is_none(), "the feed outlived its last follower");
        // A new follower gets a new feed; once the task is done, a follow is a plain read.
        let mut again = log.stream(None, true);
        assert_eq!(again.next().await.unwrap().line, "one");
        log.finish();
        let rest: Vec<_> = again.map(|l| l.line).collect().await;
        assert_eq!(rest, vec!["two", "three"]);
        let done: Vec<_> = log.stream(None, true).map(|l| l.line).collect().await;
        assert_eq!(done, vec!["one", "two", "three"]);
    }
}
