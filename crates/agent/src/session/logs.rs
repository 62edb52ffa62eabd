//! Serving the control plane's log reads over the session.
//!
//! The session stays ignorant of containers: whoever runs it hands it a [`LogReader`] (the task
//! engine implements one over its bounded per-task log files), and for each `LogsRequest` the
//! session starts one streamer here. A streamer opens the task's lines with the reader and at once
//! answers an empty batch (or a `done` one with the error), so the server knows the read is under
//! way; then it drops lines at or before `startAfterSeq`, stops at `limit`, cuts the rest into
//! bounded batches and queues them for the socket; the last batch says `done`.
//! [`Streamers`] keeps the running ones by request id, so a duplicate request is ignored, a
//! `LogsCancel` stops its streamer, and a lost connection stops them all (the server fails those
//! reads itself).

use std::collections::HashMap;
use std::sync::Arc;

use flotilla_protocol::logs::{LogBatcher, LOGS_NO_SUCH_TASK, LOGS_READ_FAILED, LOGS_UNSUPPORTED};
use flotilla_protocol::{AgentMessage, LogEntry, LogStream, LogsBatch, LogsError, LogsRequest};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::engine::{Engine, EngineError};
use crate::runtime::LogSource;

/// Where a session reads the logs it is asked for.
pub trait LogReader: Send + Sync {
    /// The task's stored lines, oldest first, optionally of one container; with `follow`, then new
    /// lines as they come, ending once the task is done. It may block on the file system; the
    /// session calls it on the blocking pool.
    fn read(
        &self,
        task_arn: &str,
        container: Option<&str>,
        follow: bool,
    ) -> Result<BoxStream<'static, LogEntry>, LogsError>;
}

impl LogReader for Engine {
    fn read(
        &self,
        task_arn: &str,
        container: Option<&str>,
        follow: bool,
    ) -> Result<BoxStream<'static, LogEntry>, LogsError> {
        // Only a task the engine holds can still produce lines, and its actor ends the followers
        // once the task has stopped and its output is drained; logs left on disk without an actor
        // are complete, so a follow of them is a plain read.
        let follow = follow && self.report(task_arn).is_some();
        let lines = self.logs(task_arn, container, follow).map_err(|e| match e {
            EngineError::UnknownTask(_) => LogsError {
                code: LOGS_NO_SUCH_TASK.into(),
                message: format!("This agent holds no logs for task {task_arn}."),
            },
            e => LogsError { code: LOGS_READ_FAILED.into(), message: e.to_string() },
        })?;
        Ok(lines
            .map(|l| {
                let stream = match l.source {
                    LogSource::Stdout => LogStream::Stdout,
                    LogSource::Stderr => LogStream::Stderr,
                };
                LogEntry::new(l.seq, l.timestamp_ms, l.container, stream, l.line)
            })
            .boxed())
    }
}

/// The streamers of one connection, by request id. Dropping it stops them all.
#[derive(Default)]
pub(crate) struct Streamers {
    running: HashMap<String, AbortHandle>,
}

impl Streamers {
    /// Starts answering `req`, unless a streamer for the same request id is still running.
    pub(crate) fn start(
        &mut self,
        reader: Option<Arc<dyn LogReader>>,
        req: LogsRequest,
        out: mpsc::Sender<AgentMessage>,
    ) {
        self.running.retain(|_, h| !h.is_finished());
        if self.running.contains_key(&req.request_id) {
            return;
        }
        let id = req.request_id.clone();
        let handle = tokio::spawn(stream_logs(reader, req, out));
        self.running.insert(id, handle.abort_handle());
    }

    /// Stops a streamer; nothing more is sent for its request.
    pub(crate) fn cancel(&mut self, request_id: &str) {
        if let Some(h) = self.running.remove(request_id) {
            h.abort();
        }
    }

    #[cfg(test)]
    fn running(&self) -> usize {
        self.running.values().filter(|h| !h.is_finished()).count()
    }
}

impl Drop for Streamers {
    fn drop(&mut self) {
        for h in self.running.values() {
            h.abort();
        }
    }
}

/// Answers one request through `out`, ending with a `done` batch.
async fn stream_logs(reader: Option<Arc<dyn LogReader>>, req: LogsRequest, out: mpsc::Sender<AgentMessage>) {
    let id = req.request_id.clone();
    let send = |batch: LogsBatch| {
        let out = out.clone();
        async move { out.send(AgentMessage::LogsBatch(batch)).await.is_ok() }
    };
    let Some(reader) = reader else {
        send(LogsBatch::failed(&id, LOGS_UNSUPPORTED, "This agent keeps no container logs.")).await;
        return;
    };
    // Reading stored lines blocks on the file system: off the async runtime.
    let (task, container, follow) = (req.task_arn.clone(), req.container.clone(), req.follow);
    let read = tokio::task::spawn_blocking(move || reader.read(&task, container.as_deref(), follow)).await;
    let lines = match read.unwrap_or_else(|e| Err(LogsError { code: LOGS_READ_FAILED.into(), message: e.to_string() }))
    {
        Ok(lines) => lines,
        Err(e) => {
            send(LogsBatch { request_id: id, lines: Vec::new(), done: true, error: Some(e) }).await;
            return;
        }
    };
    // The read is under way: the server may now answer its client.
    if !send(LogsBatch { request_id: id.clone(), lines: Vec::new(), done: false, error: None }).await {
        return;
    }
    let after = req.start_after_seq;
    let limit = req.limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let mut chunks = lines
        .filter(move |l| std::future::ready(after.is_none_or(|a| l.seq > a)))
        .take(limit)
        .ready_chunks(flotilla_protocol::logs::MAX_BATCH_LINES);
    let mut batcher = LogBatcher::new();
    // Whatever is ready goes out at once, in as few bounded batches as it takes; a follower then
    // waits for the next lines.
    while let Some(chunk) = chunks.next().await {
        for line in chunk {
            if let Some(lines) = batcher.push(line) {
                if !send(LogsBatch { request_id: id.clone(), lines, done: false, error: None }).await {
                    return;
                }
            }
        }
        if !batcher.is_empty() {
            let lines = batcher.take();
            if !send(LogsBatch { request_id: id.clone(), lines, done: false, error: None }).await {
                return;
            }
        }
    }
    send(LogsBatch { request_id: id, lines: Vec::new(), done: true, error: None }).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A reader over fixed lines, optionally followed by lines from a channel.
    struct Fixed {
        lines: Vec<LogEntry>,
        live: std::sync::Mutex<Option<mpsc::UnboundedReceiver<LogEntry>>>,
    }

    impl LogReader for Fixed {
        fn read(
            &self,
            task: &str,
            container: Option<&str>,
            follow: bool,
        ) -> Result<BoxStream<'static, LogEntry>, LogsError> {
            if task != "t1" {
                return Err(LogsError { code: LOGS_NO_SUCH_TASK.into(), message: format!("no logs for {task}") });
            }
            let container = container.map(str::to_string);
            let stored = futures::stream::iter(self.lines.clone());
            let s = match self.live.lock().unwrap().take().filter(|_| follow) {
                Some(rx) => stored.chain(tokio_stream::wrappers::UnboundedReceiverStream::new(rx)).boxed(),
                None => stored.boxed(),
            };
            Ok(s.filter(move |l| std::future::ready(container.as_ref().is_none_or(|c| *c == l.container))).boxed())
        }
    }

    fn line(seq: u64, container: &str) -> LogEntry {
        LogEntry::new(seq, 0, container.into(), LogStream::Stdout, format!("line {seq}"))
    }

    fn reader(n: u64) -> (Arc<dyn LogReader>, mpsc::UnboundedSender<LogEntry>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let lines = (0..n).map(|i| line(i, if i % 2 == 0 { "web" } else { "side" })).collect();
        (Arc::new(Fixed { lines, live: std::sync::Mutex::new(Some(rx)) }), tx)
    }

    fn request(follow: bool) -> LogsRequest {
        LogsRequest { request_id: "r1".into(), task_arn: "t1".into(), follow, ..Default::default() }
    }

    /// Every batch until the `done` one.
    async fn answer(rx: &mut mpsc::Receiver<AgentMessage>) -> Vec<LogsBatch> {
        let mut out = Vec::new();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("an answer").expect("open");
            let AgentMessage::LogsBatch(b) = msg else { panic!("not a batch: {msg:?}") };
            let done = b.done;
            out.push(b);
            if done {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn a_read_is_bounded_batches_honouring_start_limit_and_container() {
        let (r, _live) = reader(2500);
        let (tx, mut rx) = mpsc::channel(4);
        let mut s = Streamers::default();
        s.start(Some(r.clone()), request(false), tx.clone());
        let batches = answer(&mut rx).await;
        assert!(batches.iter().all(|b| b.request_id == "r1" && b.lines.len() <= 1000));
        let seqs: Vec<u64> = batches.iter().flat_map(|b| b.lines.iter().map(|l| l.seq)).collect();
        assert_eq!(seqs, (0..2500).collect::<Vec<_>>());
        assert!(batches.last().unwrap().error.is_none());

        let req = LogsRequest {
            request_id: "r2".into(),
            container: Some("web".into()),
            start_after_seq: Some(10),
            limit: Some(3),
            ..request(false)
        };
        s.start(Some(r), req, tx);
        let seqs: Vec<u64> = answer(&mut rx).await.iter().flat_map(|b| b.lines.iter().map(|l| l.seq)).collect();
        assert_eq!(seqs, vec![12, 14, 16]);
    }

    #[tokio::test]
    async fn unknown_tasks_and_agents_without_logs_answer_an_error() {
        let (r, _live) = reader(1);
        let (tx, mut rx) = mpsc::channel(4);
        let mut s = Streamers::default();
        s.start(Some(r), LogsRequest { task_arn: "nope".into(), ..request(false) }, tx.clone());
        let b = answer(&mut rx).await;
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].error.as_ref().map(|e| e.code.as_str()), Some(LOGS_NO_SUCH_TASK));
        s.start(None, LogsRequest { request_id: "r2".into(), ..request(false) }, tx);
        let b = answer(&mut rx).await;
        assert_eq!(b[0].error.as_ref().map(|e| e.code.as_str()), Some(LOGS_UNSUPPORTED));
    }

    #[tokio::test]
    async fn a_follower_sends_new_lines_and_stops_when_cancelled_or_the_lines_end() {
        let (r, live) = reader(2);
        let (tx, mut rx) = mpsc::channel(4);
        let mut s = Streamers::default();
        s.start(Some(r.clone()), request(true), tx.clone());
        let accepted = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        assert!(matches!(&accepted, AgentMessage::LogsBatch(b) if b.lines.is_empty() && !b.done), "{accepted:?}");
        let first = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        assert!(matches!(&first, AgentMessage::LogsBatch(b) if b.lines.len() == 2 && !b.done), "{first:?}");
        // A duplicate of a running request is ignored.
        s.start(Some(r), request(true), tx);
        live.send(line(2, "web")).unwrap();
        let next = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        assert!(matches!(&next, AgentMessage::LogsBatch(b) if b.lines[0].seq == 2 && !b.done), "{next:?}");
        assert_eq!(s.running(), 1);
        s.cancel("r1");
        live.send(line(3, "web")).ok();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(rx.try_recv().is_err(), "a cancelled follower sends nothing more");
        assert_eq!(s.running(), 0);
    }

    #[tokio::test]
    async fn a_follower_ends_with_done_when_its_lines_end() {
        let (r, live) = reader(1);
        let (tx, mut rx) = mpsc::channel(4);
        let mut s = Streamers::default();
        s.start(Some(r), request(true), tx);
        live.send(line(1, "web")).unwrap();
        drop(live); // The task is done.
        let batches = answer(&mut rx).await;
        let seqs: Vec<u64> = batches.iter().flat_map(|b| b.lines.iter().map(|l| l.seq)).collect();
        assert_eq!(seqs, vec![0, 1]);
        assert!(batches.last().unwrap().done);
    }
}
