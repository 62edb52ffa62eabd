//! The agent's calls to the control plane (`flotilla_protocol::calls`), as the task engine makes
//! them: a task's resources at start, and batches of `awslogs` output.
//!
//! The engine sees the [`ControlPlaneCalls`] trait; [`SessionCalls`] carries the calls over the
//! agent's session (`crate::session`), which sends each and hands back the reply of the same
//! request id. A call made while the session is down waits for the next one, up to
//! [`CALL_TIMEOUT`]; a call whose session ends before the reply fails as
//! [`CallError::Unavailable`], and the caller makes it again later.

use std::sync::Arc;
use std::time::Duration;

use flotilla_protocol::{AgentCall, CallReply, LogEventsBatch, TaskResources};
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, Mutex};

/// How long a call may wait for its reply, the wait for a session included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How many calls may wait for a session at once.
const QUEUE: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer (no session, the session ended, the server could not read its store): the same
    /// call may succeed later.
    #[error("the control plane did not answer: {0}")]
    Unavailable(String),
    /// The control plane refused the call; making it again will not help.
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
}

/// What the engine asks of the control plane.
pub trait ControlPlaneCalls: Send + Sync + 'static {
    /// The task's secrets, registry credentials and log secret options. A task whose resources
    /// cannot be resolved gets `Ok` with `failure` set.
    fn task_resources(&self, task_arn: &str) -> BoxFuture<'_, Result<TaskResources, CallError>>;
    /// Stores a batch of a container's output (idempotent per stream and sequence).
    fn put_log_events(&self, batch: LogEventsBatch) -> BoxFuture<'_, Result<(), CallError>>;
}

/// A call on its way to the session, with where its reply goes.
pub struct PendingCall {
    pub request_id: String,
    pub call: AgentCall,
    pub reply: oneshot::Sender<CallReply>,
}

/// The session's end of the calls: it takes them one by one while connected.
pub type CallInbox = Arc<Mutex<mpsc::Receiver<PendingCall>>>;

/// [`ControlPlaneCalls`] over the agent's session.
#[derive(Clone)]
pub struct SessionCalls {
    tx: mpsc::Sender<PendingCall>,
}

impl SessionCalls {
    /// The calls and the inbox the session reads them from (`SessionConfig::calls`).
    pub fn new() -> (SessionCalls, CallInbox) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (SessionCalls { tx }, Arc::new(Mutex::new(rx)))
    }

    async fn call(&self, call: AgentCall) -> Result<CallReply, CallError> {
        let (reply, answer) = oneshot::channel();
        let request_id = uuid::Uuid::new_v4().to_string();
        let pending = PendingCall { request_id, call, reply };
        let sent = tokio::time::timeout(CALL_TIMEOUT, async {
            self.tx.send(pending).await.map_err(|_| CallError::Unavailable("the agent's session has ended".into()))?;
            answer.await.map_err(|_| CallError::Unavailable("the session ended before the reply".into()))
        });
        let reply = sent
            .await
            .map_err(|_| CallError::Unavailable(format!("no reply within {}s", CALL_TIMEOUT.as_secs())))??;
        match reply {
            CallReply::Failed { message, transient: true, .. } => Err(CallError::Unavailable(message)),
            CallReply::Failed { code, message, transient: false } => Err(CallError::Refused { code, message }),
            other => Ok(other),
        }
    }
}

fn unexpected(reply: &CallReply) -> CallError {
    CallError::Unavailable(format!("unexpected reply {reply:?}"))
}

impl ControlPlaneCalls for SessionCalls {
    fn task_resources(&self, task_arn: &str) -> BoxFuture<'_, Result<TaskResources, CallError>> {
        let call = AgentCall::TaskResources { task_arn: task_arn.to_string() };
        Box::pin(async move {
            match self.call(call).await? {
                CallReply::TaskResources(r) => Ok(r),
                other => Err(unexpected(&other)),
            }
        })
    }

    fn put_log_events(&self, batch: LogEventsBatch) -> BoxFuture<'_, Result<(), CallError>> {
        Box::pin(async move {
            match self.call(AgentCall::PutLogEvents(batch)).await? {
                CallReply::LogEventsStored => Ok(()),
                other => Err(unexpected(&other)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reply_reaches_its_caller_and_failures_keep_their_kind() {
        let (calls, inbox) = SessionCalls::new();
        let server = tokio::spawn(async move {
            let mut inbox = inbox.lock().await;
            for reply in [
                CallReply::TaskResources(TaskResources::default()),
                CallReply::Failed { code: "X".into(), message: "later".into(), transient: true },
                CallReply::Failed { code: "AccessDeniedException".into(), message: "no".into(), transient: false },
            ] {
                let p = inbox.recv().await.unwrap();
                assert!(matches!(p.call, AgentCall::TaskResources { .. }));
                p.reply.send(reply).unwrap();
            }
            // The session ends with a call in flight.
            drop(inbox.recv().await.unwrap());
        });
        assert_eq!(calls.task_resources("t").await.unwrap(), TaskResources::default());
        assert!(matches!(calls.task_resources("t").await, Err(CallError::Unavailable(m)) if m == "later"));
        assert!(
            matches!(calls.task_resources("t").await, Err(CallError::Refused { code, .. }) if code == "AccessDeniedException")
        );
        assert!(matches!(calls.task_resources("t").await, Err(CallError::Unavailable(_))));
        server.await.unwrap();
    }
}
