//! The websocket session: connect with a SigV4-signed upgrade, pass tasks to the caller, send
//! reports, resend unacknowledged ones after a reconnect, heartbeat, and reconnect with backoff.
//! Log reads the server asks for are answered by streamers (`logs.rs`) over the same socket.
//!
//! With several servers, a session lost or refused moves to the next server and reconnects at
//! once (any server can hold it: they share the store); only a full round of failures waits out
//! the backoff. The agent reconnects as the same instance with the same key pair, and resyncs
//! (manifest, unacknowledged reports) as after any reconnect.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flotilla_protocol::{
    AgentMessage, ManifestEntry, ServerMessage, TaskAssignment, TaskReport, AGENT_WS_PATH, HEARTBEAT_SECS,
    PEER_TIMEOUT_SECS,
};
use flotilla_sigv4::{sign, SigningParams};
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Uri};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::api_client::{ApiClient, CONNECT_TIMEOUT};
use super::logs::{LogReader, Streamers};
use super::registration::AgentIdentity;

/// What the server asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// Run or stop these tasks (idempotent).
    Assign(Vec<TaskAssignment>),
    /// The full list of tasks the instance should know; anything else is to be stopped.
    Manifest(Vec<ManifestEntry>),
    Connected,
    Disconnected(String),
    /// The server no longer knows this instance: register again.
    Rejected(String),
}

#[derive(Clone)]
pub struct SessionConfig {
    pub agent_version: String,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Where the server's log reads are served from; without one they are refused.
    pub logs: Option<Arc<dyn LogReader>>,
    /// The engine's calls to the control plane (`crate::calls`), sent while connected.
    pub calls: Option<crate::calls::CallInbox>,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("agent_version", &self.agent_version)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("logs", &self.logs.is_some())
            .field("calls", &self.calls.is_some())
            .finish()
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            logs: None,
            calls: None,
        }
    }
}

/// The websocket settings of a session: smaller reads than the library's default (see
/// [`flotilla_protocol::SESSION_READ_BUFFER`]), which matters for a process of hollow agents.
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(flotilla_protocol::SESSION_READ_BUFFER)
}

fn encode_query(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The signed upgrade request for the session.
fn upgrade_request(
    client: &ApiClient,
    server: &str,
    identity: &AgentIdentity,
    cfg: &SessionConfig,
) -> Result<http::Request<()>, String> {
    let base = server.replacen("http://", "ws://", 1).replacen("https://", "wss://", 1);
    let url = format!(
        "{base}{AGENT_WS_PATH}?{}={}&{}={}&{}={}",
        flotilla_protocol::query::CLUSTER,
        encode_query(&identity.cluster_arn),
        flotilla_protocol::query::CONTAINER_INSTANCE,
        encode_query(&identity.container_instance_arn),
        flotilla_protocol::query::AGENT_VERSION,
        encode_query(&cfg.agent_version),
    );
    let uri: Uri = url.parse().map_err(|e| format!("bad server URL {url}: {e}"))?;
    let mut headers = HeaderMap::new();
    let params = SigningParams {
        credentials: client.credentials(),
        region: client.region(),
        service: "ecs",
        time: SystemTime::now(),
    };
    sign(&Method::GET, &uri, &mut headers, b"", &params).map_err(|e| e.to_string())?;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.as_str())
        .map_err(|e| e.to_string())?;
    for (k, v) in headers.iter() {
        req.headers_mut().insert(k.clone(), v.clone());
    }
    Ok(req)
}

/// Runs the session until `reports` closes: reconnecting with backoff, handing the server's
/// requests to `events`, and delivering every report at least once.
pub async fn run_session(
    client: ApiClient,
    identity: AgentIdentity,
    cfg: SessionConfig,
    events: mpsc::UnboundedSender<SessionEvent>,
    mut reports: mpsc::UnboundedReceiver<TaskReport>,
) {
    // Reports not yet acknowledged, by (task, seq); resent in seq order after a reconnect.
    let mut unacked: BTreeMap<u64, TaskReport> = BTreeMap::new();
    let mut backoff = cfg.min_backoff;
    let mut last_timeline = 0u64;
    let mut round = client.endpoints().round();
    // Held for the session's life: this session is the only reader of the engine's calls.
    let mut calls = match &cfg.calls {
        Some(inbox) => Some(inbox.clone().lock_owned().await),
        None => None,
    };
    loop {
        let Some(attempt) = round.next() else {
            // Every server failed in a row: wait before the next round.
            let jitter = rand::random::<u64>() % (backoff.as_millis() as u64 / 2 + 1);
            if !wait_keeping_reports(backoff + Duration::from_millis(jitter), &mut reports, &mut unacked).await {
                return;
            }
            backoff = (backoff * 2).min(cfg.max_backoff);
            round.restart();
            continue;
        };
        let outcome = match upgrade_request(&client, &attempt.url, &identity, &cfg) {
            Ok(req) => {
                // The connector only for wss://: a plain server in a list with https:// ones is
                // reached without TLS.
                let tls = if attempt.url.starts_with("https://") { client.tls() } else { None };
                let connecting = tokio_tungstenite::connect_async_tls_with_config(
                    req,
                    Some(ws_config()),
                    false,
                    tls.map(tokio_tungstenite::Connector::Rustls),
                );
                match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                    Err(_) => Outcome::Lost(format!("could not connect within {CONNECT_TIMEOUT:?}")),
                    Ok(Ok((ws, _))) => {
                        backoff = cfg.min_backoff;
                        round.succeeded();
                        tracing::info!(server = %attempt.url, "agent session up");
                        let _ = events.send(SessionEvent::Connected);
                        connected(
                            ws,
                            &events,
                            &mut reports,
                            &mut unacked,
                            &mut last_timeline,
                            cfg.logs.clone(),
                            calls.as_deref_mut(),
                        )
                        .await
                    }
                    Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
                        let body =
                            resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
                        // Retrying cannot help an unknown instance, nor credentials that were
                        // revoked (the instance deregistered) or that belong to another instance:
                        // the servers share one store, so every other one would say the same.
                        if ["InvalidInstanceException", "InactiveInstanceException", "AccessDeniedException"]
                            .iter()
                            .any(|code| body.contains(code))
                        {
                            let _ = events.send(SessionEvent::Rejected(body));
                            return;
                        }
                        Outcome::Lost(format!("the server refused the session ({}): {body}", resp.status()))
                    }
                    Ok(Err(e)) => Outcome::Lost(format!("could not connect: {e}")),
                }
            }
            Err(e) => Outcome::Lost(e),
        };
        match outcome {
            Outcome::Finished => return,
            Outcome::Lost(why) => {
                round.failed(&attempt);
                if round.exhausted() {
                    tracing::warn!(server = %attempt.url, reason = %why, retry_in_ms = backoff.as_millis() as u64, "agent session lost");
                } else {
                    let next = client.endpoints().current().url;
                    tracing::warn!(server = %attempt.url, reason = %why, %next, "agent session lost; moving to the next server");
                }
                let _ = events.send(SessionEvent::Disconnected(why));
            }
        }
    }
}

/// Waits out a reconnect delay while keeping the reports that come meanwhile for the next
/// connection. False when the caller closed the report channel: the agent is shutting down, and
/// waiting for a server that may never come back would keep it from exiting.
async fn wait_keeping_reports(
    delay: Duration,
    reports: &mut mpsc::UnboundedReceiver<TaskReport>,
    unacked: &mut BTreeMap<u64, TaskReport>,
) -> bool {
    let until = tokio::time::sleep(delay);
    tokio::pin!(until);
    loop {
        tokio::select! {
            () = &mut until => return true,
            report = reports.recv() => match report {
                Some(report) => {
                    unacked.insert(report.seq, report);
                }
                None => return false,
            },
        }
    }
}

/// The next call from the engine; never, without an inbox.
async fn next_call(
    calls: &mut Option<&mut mpsc::Receiver<crate::calls::PendingCall>>,
) -> Option<crate::calls::PendingCall> {
    match calls {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// How long a reply to the server may wait for a report to travel with.
const REPLY_DELAY: Duration = Duration::from_millis(2);

enum Outcome {
    /// The caller closed the report channel: the agent is shutting down.
    Finished,
    Lost(String),
}

async fn connected<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    events: &mpsc::UnboundedSender<SessionEvent>,
    reports: &mut mpsc::UnboundedReceiver<TaskReport>,
    unacked: &mut BTreeMap<u64, TaskReport>,
    last_timeline: &mut u64,
    logs: Option<Arc<dyn LogReader>>,
    mut calls: Option<&mut mpsc::Receiver<crate::calls::PendingCall>>,
) -> Outcome
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut tx, mut rx) = ws.split();
    for report in unacked.values() {
        let msg = AgentMessage::TaskStateChange(Box::new(report.clone()));
        if tx.send(Message::Text(msg.to_json().into())).await.is_err() {
            return Outcome::Lost("send failed while resending reports".into());
        }
    }
    let mut heartbeat = tokio::time::interval(Duration::from_secs(HEARTBEAT_SECS));
    let mut last_heard = tokio::time::Instant::now();
    // Replies to the server's messages (acknowledgements) are queued, not sent at once: the
    // report an assignment causes usually follows within microseconds and carries them in the
    // same write; otherwise they go out on their own after REPLY_DELAY.
    let mut unflushed = false;
    let flush_at = tokio::time::sleep(REPLY_DELAY);
    tokio::pin!(flush_at);
    // Log batches wait here for the socket; the bound holds streamers back, not the session.
    let (log_tx, mut log_rx) = mpsc::channel::<AgentMessage>(16);
    let mut streamers = Streamers::default();
    // Calls sent on this connection and waiting for their reply; dropped with it, which fails
    // them (the engine makes them again).
    let mut waiting: std::collections::HashMap<String, tokio::sync::oneshot::Sender<flotilla_protocol::CallReply>> =
        std::collections::HashMap::new();
    loop {
        tokio::select! {
            frame = rx.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => return Outcome::Lost("the server closed the session".into()),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Outcome::Lost(format!("session error: {e}")),
                };
                last_heard = tokio::time::Instant::now();
                let reply = match serde_json::from_str::<ServerMessage>(&text) {
                    Ok(ServerMessage::PayloadMessage { message_id, tasks }) => {
                        let _ = events.send(SessionEvent::Assign(tasks));
                        Some(AgentMessage::AckRequest { message_id })
                    }
                    Ok(ServerMessage::TaskManifestMessage { message_id, timeline, tasks }) => {
                        if timeline > *last_timeline {
                            *last_timeline = timeline;
                            let _ = events.send(SessionEvent::Manifest(tasks));
                        }
                        Some(AgentMessage::AckRequest { message_id })
                    }
                    Ok(ServerMessage::ReportAck { seq, .. }) => {
                        unacked.remove(&seq);
                        None
                    }
                    Ok(ServerMessage::HeartbeatMessage { message_id }) => Some(AgentMessage::HeartbeatAckRequest { message_id }),
                    Ok(ServerMessage::CloseMessage { reason }) => return Outcome::Lost(format!("server closed: {reason}")),
                    Ok(ServerMessage::ErrorMessage { code, message }) => {
                        tracing::warn!(%code, %message, "the server reported an error");
                        None
                    }
                    Ok(ServerMessage::LogsRequest(req)) => {
                        streamers.start(logs.clone(), req, log_tx.clone());
                        None
                    }
                    Ok(ServerMessage::LogsCancel { request_id }) => {
                        streamers.cancel(&request_id);
                        None
                    }
                    Ok(ServerMessage::Reply { request_id, reply }) => {
                        if let Some(caller) = waiting.remove(&request_id) {
                            let _ = caller.send(reply);
                        }
                        None
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable message from the server");
                        None
                    }
                };
                if let Some(reply) = reply {
                    if tx.feed(Message::Text(reply.to_json().into())).await.is_err() {
                        return Outcome::Lost("send failed".into());
                    }
                    if !unflushed {
                        unflushed = true;
                        flush_at.as_mut().reset(tokio::time::Instant::now() + REPLY_DELAY);
                    }
                }
            }
            () = &mut flush_at, if unflushed => {
                unflushed = false;
                if tx.flush().await.is_err() {
                    return Outcome::Lost("send failed".into());
                }
            }
            Some(call) = next_call(&mut calls) => {
                let msg = AgentMessage::Call { request_id: call.request_id.clone(), call: call.call };
                waiting.retain(|_, caller| !caller.is_closed());
                waiting.insert(call.request_id, call.reply);
                unflushed = false;
                if tx.send(Message::Text(msg.to_json().into())).await.is_err() {
                    return Outcome::Lost("send failed".into());
                }
            }
            Some(batch) = log_rx.recv() => {
                unflushed = false;
                if tx.send(Message::Text(batch.to_json().into())).await.is_err() {
                    return Outcome::Lost("send failed".into());
                }
            }
            report = reports.recv() => {
                let Some(report) = report else {
                    let _ = tx.send(Message::Close(None)).await;
                    return Outcome::Finished;
                };
                unacked.insert(report.seq, report.clone());
                let msg = AgentMessage::TaskStateChange(Box::new(report));
                // Sending flushes the queued replies too.
                unflushed = false;
                if tx.send(Message::Text(msg.to_json().into())).await.is_err() {
                    return Outcome::Lost("send failed".into());
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > Duration::from_secs(PEER_TIMEOUT_SECS) {
                    return Outcome::Lost("the server went silent".into());
                }
                let msg = AgentMessage::HeartbeatRequest { message_id: uuid::Uuid::new_v4().to_string() };
                unflushed = false;
                if tx.send(Message::Text(msg.to_json().into())).await.is_err() {
                    return Outcome::Lost("send failed".into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_protocol::TaskStatus;
    use flotilla_sigv4::Credentials;

    fn report(seq: u64) -> TaskReport {
        TaskReport { task_arn: format!("task-{seq}"), status: TaskStatus::Running, seq, ..Default::default() }
    }

    #[tokio::test]
    async fn a_session_that_cannot_connect_ends_when_its_reports_close() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client =
            ApiClient::new(&format!("http://127.0.0.1:{port}"), "us-east-1", Credentials::new("AK", "SK")).unwrap();
        let identity = AgentIdentity { cluster_arn: "c".into(), container_instance_arn: "i".into() };
        // Far longer than the test's bound below: only closing the reports can end the wait.
        let cfg = SessionConfig {
            min_backoff: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(3600),
            ..SessionConfig::default()
        };
        let (ev_tx, mut events) = mpsc::unbounded_channel();
        let (report_tx, reports) = mpsc::unbounded_channel();
        let session = tokio::spawn(run_session(client, identity, cfg, ev_tx, reports));
        assert!(matches!(events.recv().await, Some(SessionEvent::Disconnected(_))));
        drop(report_tx);
        tokio::time::timeout(Duration::from_secs(60), session)
            .await
            .expect("the session ended when its report channel closed")
            .unwrap();
    }

    #[tokio::test]
    async fn a_lost_server_is_followed_by_the_next_at_once_and_a_full_round_waits() {
        let closed = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let list = format!("http://127.0.0.1:{},http://127.0.0.1:{},http://127.0.0.1:{}", closed(), closed(), closed());
        let client = ApiClient::new(&list, "us-east-1", Credentials::new("AK", "SK")).unwrap();
        let start = client.endpoint();
        let identity = AgentIdentity { cluster_arn: "c".into(), container_instance_arn: "i".into() };
        // A wait far longer than the test: a third attempt after the round would never come.
        let cfg = SessionConfig {
            min_backoff: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(3600),
            ..SessionConfig::default()
        };
        let (ev_tx, mut events) = mpsc::unbounded_channel();
        let (report_tx, reports) = mpsc::unbounded_channel();
        let session = tokio::spawn(run_session(client.clone(), identity, cfg, ev_tx, reports));
        // Every server tried once, one after the other, with no wait between them.
        for _ in 0..3 {
            let ev = tokio::time::timeout(Duration::from_secs(60), events.recv()).await.expect("a failed attempt");
            assert!(matches!(ev, Some(SessionEvent::Disconnected(_))), "{ev:?}");
        }
        // Round robin brought the client back where it started; now it waits out the backoff.
        assert_eq!(client.endpoint(), start);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(events.try_recv().is_err(), "no attempt before the backoff after a full round");
        drop(report_tx);
        tokio::time::timeout(Duration::from_secs(60), session).await.expect("the session ended").unwrap();
    }

    #[tokio::test]
    async fn reports_made_while_waiting_to_reconnect_are_kept_for_the_next_connection() {
        let (report_tx, mut reports) = mpsc::unbounded_channel();
        let mut unacked = BTreeMap::from([(1, report(1))]);
        report_tx.send(report(2)).unwrap();
        report_tx.send(report(3)).unwrap();
        assert!(wait_keeping_reports(Duration::from_millis(50), &mut reports, &mut unacked).await);
        assert_eq!(unacked.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        drop(report_tx);
        assert!(!wait_keeping_reports(Duration::from_secs(3600), &mut reports, &mut unacked).await);
        assert_eq!(unacked.len(), 3);
    }
}
