//! Reading a task's logs from the agent that ran it, over that agent's session.
//!
//! [`open`] sends the agent a `LogsRequest` under a fresh request id and returns a [`LogRead`];
//! the session loop hands each `LogsBatch` that comes back to [`Sessions::deliver`], which queues it
//! for the read. The queue is bounded: a reader that falls that far behind a follow is failed
//! rather than let the control plane buffer without end (a whole task's stored logs fit in it).
//! A read ends with the agent's `done` batch; it fails if the agent reports an error, its session
//! ends ([`Sessions::session_ended`]), or it does not answer. Dropping an unfinished read (an HTTP
//! client that went away) cancels it on the agent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use flotilla_protocol::logs::{LOGS_NO_SUCH_TASK, LOGS_UNSUPPORTED};
use flotilla_protocol::{LogEntry, LogsBatch, LogsRequest, ServerMessage};
use tokio::sync::mpsc;

use super::links::{Links, SessionLink};
use crate::error::ApiError;
use crate::servers::forward::Peers;

/// Batches that may wait for one reader (each at most ~256 KiB).
const READ_QUEUE: usize = 64;
/// How long the agent has to accept a read.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

struct Pending {
    instance: String,
    session: u64,
    tx: mpsc::Sender<LogsBatch>,
    /// Why the read ended early, for the reader to tell its client.
    failure: Arc<OnceLock<ApiError>>,
}

/// The gateway's live state that the rest of the control plane reaches: the sessions and the log
/// reads under way through them, the id of the server they are recorded under, and the way to
/// the other servers' sessions.
pub struct Sessions {
    pub links: Links,
    reads: Mutex<HashMap<String, Pending>>,
    server_id: Arc<str>,
    peers: Option<Peers>,
    /// What the agents' calls are answered with (`super::calls`).
    services: crate::agent_services::AgentServices,
}

impl Default for Sessions {
    /// Sessions under a fresh server id, reaching no other server.
    fn default() -> Self {
        Sessions::new(uuid::Uuid::new_v4().to_string().into())
    }
}

/// What a delivered batch found.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Nobody reads this request any more: tell the agent to stop.
    Unwanted,
}

impl Sessions {
    /// The sessions of server `server_id` (the id it is registered under in `crate::servers`).
    pub fn new(server_id: Arc<str>) -> Self {
        Sessions {
            links: Links::default(),
            reads: Mutex::default(),
            server_id,
            peers: None,
            services: Default::default(),
        }
    }

    /// Answers the agents' calls with these services (secrets, CloudWatch Logs).
    pub fn with_services(mut self, services: crate::agent_services::AgentServices) -> Self {
        self.services = services;
        self
    }

    /// The services the agents' calls use.
    pub fn services(&self) -> &crate::agent_services::AgentServices {
        &self.services
    }

    /// Reaches the sessions other servers hold through `peers` (log reads are forwarded).
    pub fn with_peers(mut self, peers: Peers) -> Self {
        self.peers = Some(peers);
        self
    }

    /// The id this server's sessions are recorded under.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// How to reach other servers, if this one forwards.
    pub fn peers(&self) -> Option<&Peers> {
        self.peers.as_ref()
    }

    fn reads(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        self.reads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a batch the session `session` of `instance` received for its read.
    pub fn deliver(&self, instance: &str, session: u64, batch: LogsBatch) -> Delivery {
        let mut reads = self.reads();
        let Some(p) = reads.get(&batch.request_id) else { return Delivery::Unwanted };
        if p.instance != instance || p.session != session {
            return Delivery::Unwanted;
        }
        let (id, done) = (batch.request_id.clone(), batch.done);
        let outcome = match p.tx.try_send(batch) {
            Ok(()) => Delivery::Delivered,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let _ = p.failure.set(ApiError::client(
                    "The reader fell too far behind the task's output; read again with startAfterSeq.",
                ));
                Delivery::Unwanted
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Unwanted,
        };
        // A finished read's queue still holds its last batches for the reader.
        if done || outcome == Delivery::Unwanted {
            reads.remove(&id);
        }
        outcome
    }

    /// Fails every read that went through the session `session` of `instance`.
    pub fn session_ended(&self, instance: &str, session: u64) {
        self.reads().retain(|_, p| {
            let ours = p.instance == instance && p.session == session;
            if ours {
                let _ = p.failure.set(not_connected(instance, "disconnected while its logs were read"));
            }
            !ours
        });
    }
}

fn not_connected(instance: &str, what: &str) -> ApiError {
    ApiError::client(format!("The agent of container instance {instance} {what}; its logs cannot be read now."))
}

/// A read under way.
pub struct LogRead {
    request_id: String,
    link: SessionLink,
    sessions: Arc<Sessions>,
    rx: mpsc::Receiver<LogsBatch>,
    failure: Arc<OnceLock<ApiError>>,
    instance: String,
    task_arn: String,
    /// Lines that came with the acceptance.
    stash: Vec<LogEntry>,
    finished: bool,
}

/// Asks the agent of `instance` for logs; returns once the agent has accepted the read.
pub async fn open(sessions: &Arc<Sessions>, instance: &str, mut req: LogsRequest) -> Result<LogRead, ApiError> {
    let link = sessions.links.get(instance).ok_or_else(|| not_connected(instance, "is not connected"))?;
    req.request_id = uuid::Uuid::new_v4().to_string();
    let (tx, rx) = mpsc::channel(READ_QUEUE);
    let failure = Arc::new(OnceLock::new());
    sessions.reads().insert(
        req.request_id.clone(),
        Pending { instance: instance.to_string(), session: link.id, tx, failure: failure.clone() },
    );
    let mut read = LogRead {
        request_id: req.request_id.clone(),
        link: link.clone(),
        sessions: sessions.clone(),
        rx,
        failure,
        instance: instance.to_string(),
        task_arn: req.task_arn.clone(),
        stash: Vec::new(),
        finished: false,
    };
    if link.tx.send(ServerMessage::LogsRequest(req)).await.is_err() {
        read.finished = true;
        return Err(not_connected(instance, "is not connected"));
    }
    // The agent answers every request at once: an empty batch, or the error.
    match tokio::time::timeout(ACCEPT_TIMEOUT, read.next_batch()).await {
        Ok(Ok(first)) => {
            read.stash = first.unwrap_or_default();
            Ok(read)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ApiError::server(format!(
            "The agent of container instance {instance} did not answer the log read within {} s.",
            ACCEPT_TIMEOUT.as_secs()
        ))),
    }
}

impl LogRead {
    /// The next lines; `None` once the read is complete (and ever after).
    pub async fn next(&mut self) -> Result<Option<Vec<LogEntry>>, ApiError> {
        if !self.stash.is_empty() {
            return Ok(Some(std::mem::take(&mut self.stash)));
        }
        loop {
            match self.next_batch().await? {
                Some(lines) if lines.is_empty() => continue,
                other => return Ok(other),
            }
        }
    }

    /// The next batch's lines as the agent sent them (possibly none); `None` once complete.
    async fn next_batch(&mut self) -> Result<Option<Vec<LogEntry>>, ApiError> {
        if self.finished {
            return Ok(None);
        }
        let Some(batch) = self.rx.recv().await else {
            self.finished = true;
            return Err(self
                .failure
                .get()
                .cloned()
                .unwrap_or_else(|| not_connected(&self.instance, "disconnected while its logs were read")));
        };
        if let Some(e) = batch.error {
            self.finished = true;
            return Err(match e.code.as_str() {
                LOGS_NO_SUCH_TASK => ApiError::client(format!(
                    "No logs are kept for task {}: they are removed with the task's containers.",
                    self.task_arn
                )),
                LOGS_UNSUPPORTED => ApiError::client(format!(
                    "The agent of container instance {} keeps no container logs.",
                    self.instance
                )),
                _ => ApiError::server(format!("Reading the logs of task {} failed: {}", self.task_arn, e.message)),
            });
        }
        self.finished = batch.done;
        if batch.done && batch.lines.is_empty() {
            return Ok(None);
        }
        Ok(Some(batch.lines))
    }
}

impl Drop for LogRead {
    fn drop(&mut self) {
        let was_pending = self.sessions.reads().remove(&self.request_id).is_some();
        if was_pending && !self.finished {
            // Best effort: if the queue is full, the agent's next batch finds nobody and is
            // cancelled then.
            let _ = self.link.tx.try_send(ServerMessage::LogsCancel { request_id: self.request_id.clone() });
        }
    }
}

#[cfg(test)]
mod tests {
    use flotilla_protocol::LogStream;

    use super::*;

    fn batch(id: &str, seqs: std::ops::Range<u64>, done: bool) -> LogsBatch {
        let lines = seqs.map(|s| LogEntry::new(s, 0, "web".into(), LogStream::Stdout, format!("l{s}"))).collect();
        LogsBatch { request_id: id.into(), lines, done, error: None }
    }

    /// Attaches a session for `i1` and plays its agent: accepts the first request it sees, then
    /// returns its id and the session's queue.
    async fn accepted(sessions: &Arc<Sessions>, follow: bool) -> (LogRead, String, u64, mpsc::Receiver<ServerMessage>) {
        let (session, mut rx) = sessions.links.attach("i1");
        let s = sessions.clone();
        let agent = tokio::spawn(async move {
            let Some(ServerMessage::LogsRequest(req)) = rx.recv().await else { panic!("no request") };
            assert_eq!(s.deliver("i1", session, batch(&req.request_id, 0..0, false)), Delivery::Delivered);
            (req.request_id, rx)
        });
        let req = LogsRequest { task_arn: "t".into(), follow, ..Default::default() };
        let read = open(sessions, "i1", req).await.expect("open");
        let (id, rx) = agent.await.unwrap();
        (read, id, session, rx)
    }

    #[tokio::test]
    async fn batches_reach_the_reader_in_order_and_the_read_ends_with_done() {
        let sessions = Arc::new(Sessions::default());
        let (mut read, id, session, _rx) = accepted(&sessions, false).await;
        assert_eq!(sessions.deliver("i1", session, batch(&id, 0..3, false)), Delivery::Delivered);
        assert_eq!(sessions.deliver("i1", session, batch(&id, 3..4, true)), Delivery::Delivered);
        // The finished read is no longer pending; a late duplicate is unwanted.
        assert_eq!(sessions.deliver("i1", session, batch(&id, 4..5, true)), Delivery::Unwanted);
        let seqs: Vec<u64> = read.next().await.unwrap().unwrap().iter().map(|l| l.seq).collect();
        assert_eq!(seqs, vec![0, 1, 2]);
        assert_eq!(read.next().await.unwrap().unwrap()[0].seq, 3);
        assert!(read.next().await.unwrap().is_none());
        assert!(read.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_batch_from_another_session_is_refused() {
        let sessions = Arc::new(Sessions::default());
        let (_read, id, session, _rx) = accepted(&sessions, true).await;
        assert_eq!(sessions.deliver("i2", session, batch(&id, 0..1, false)), Delivery::Unwanted);
        assert_eq!(sessions.deliver("i1", session + 1, batch(&id, 0..1, false)), Delivery::Unwanted);
    }

    #[tokio::test]
    async fn without_a_session_the_read_is_refused_naming_the_instance() {
        let sessions = Arc::new(Sessions::default());
        let e = open(&sessions, "arn:i9", LogsRequest::default()).await.err().expect("refused");
        assert_eq!(e.code, "ClientException");
        assert_eq!(e.message, "The agent of container instance arn:i9 is not connected; its logs cannot be read now.");
    }

    #[tokio::test]
    async fn the_agents_error_becomes_the_answer() {
        let sessions = Arc::new(Sessions::default());
        let (session, mut rx) = sessions.links.attach("i1");
        let s = sessions.clone();
        tokio::spawn(async move {
            let Some(ServerMessage::LogsRequest(req)) = rx.recv().await else { panic!("no request") };
            s.deliver("i1", session, LogsBatch::failed(&req.request_id, LOGS_NO_SUCH_TASK, "none"));
        });
        let req = LogsRequest { task_arn: "arn:t1".into(), ..Default::default() };
        let e = open(&sessions, "i1", req).await.err().expect("refused");
        assert_eq!(e.code, "ClientException");
        assert!(e.message.contains("arn:t1"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_session_that_ends_fails_its_reads() {
        let sessions = Arc::new(Sessions::default());
        let (mut read, _id, session, _rx) = accepted(&sessions, true).await;
        sessions.session_ended("i1", session);
        let e = read.next().await.expect_err("failed");
        assert!(e.message.contains("disconnected"), "{}", e.message);
    }

    #[tokio::test]
    async fn dropping_an_unfinished_read_cancels_it_on_the_agent() {
        let sessions = Arc::new(Sessions::default());
        let (read, id, session, mut rx) = accepted(&sessions, true).await;
        drop(read);
        assert_eq!(rx.recv().await, Some(ServerMessage::LogsCancel { request_id: id.clone() }));
        assert_eq!(sessions.deliver("i1", session, batch(&id, 0..1, false)), Delivery::Unwanted);
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_is_failed_not_buffered_for() {
        let sessions = Arc::new(Sessions::default());
        let (mut read, id, session, _rx) = accepted(&sessions, true).await;
        let mut outcomes = Vec::new();
        for i in 0..(READ_QUEUE as u64 + 1) {
            outcomes.push(sessions.deliver("i1", session, batch(&id, i..i + 1, false)));
        }
        assert_eq!(outcomes.last(), Some(&Delivery::Unwanted));
        assert!(outcomes[..READ_QUEUE].iter().all(|d| *d == Delivery::Delivered));
        // What was queued is still read, then the failure.
        let mut seen = 0;
        let e = loop {
            match read.next().await {
                Ok(Some(lines)) => seen += lines.len(),
                Ok(None) => panic!("the read should fail"),
                Err(e) => break e,
            }
        };
        assert_eq!(seen, READ_QUEUE);
        assert!(e.message.contains("fell too far behind"), "{}", e.message);
    }
}
