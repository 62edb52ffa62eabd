//! One agent session: full sync on connect, pushes as the instance's tasks change, task reports
//! applied and acknowledged once durable, heartbeats both ways; messages from the rest of the
//! control plane (log reads) pass through, and the agent's log batches go back to their readers.
//!
//! Every write to the socket has a deadline ([`SEND_TIMEOUT`]) and the task notices queue for
//! the session is bounded (`Cache::subscribe_instance`): an agent that stops reading is
//! disconnected, instead of holding the session (and a growing queue) forever. The agent
//! reconnects and resyncs, as after any disconnection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use flotilla_model::arn::{short_id, Resource};
use flotilla_protocol::{
    payload_json, AgentMessage, ManifestEntry, RawAssignment, ServerMessage, TaskReport, HEARTBEAT_SECS,
    PEER_TIMEOUT_SECS,
};
use flotilla_store::{Compare, Op, Revision, Txn};
use futures::SinkExt;

use super::logs::{Delivery, Sessions};
use super::presence::{claim, reclaim_if_swept, release};
use super::reports::apply_report;
use super::SessionTarget;
use crate::context::{Ctx, MAX_CAS_ATTEMPTS};
use crate::error::{ApiError, ApiResult};
use crate::state::cache::RESYNC;
use crate::state::codec::encode;
use crate::state::keys;

/// What the session last told the agent about each task: its desired status.
type Sent = HashMap<Arc<str>, String>;

/// The task definitions this session has pushed, as JSON, by key with the revision they were
/// read at: an instance runs few definitions, so each is encoded once rather than per task.
type Definitions = HashMap<String, (Revision, Box<serde_json::value::RawValue>)>;

/// How many of the agent's calls one session answers at once.
const CALLS_IN_FLIGHT: usize = 64;

/// How long a report's acknowledgement may wait for a message to travel with.
const ACK_DELAY: Duration = Duration::from_millis(500);

/// How lately an agent must have spoken on its session for the session to claim its instance
/// back after a sweep: the agent's heartbeat period, and some slack.
const RECENTLY_HEARD: Duration = Duration::from_secs(HEARTBEAT_SECS + 5);

/// How long one write to the agent may wait for the socket: longer means the agent stopped
/// reading (a live agent drains its socket continuously).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one write to the agent's socket under [`SEND_TIMEOUT`]; false ends the session.
async fn timed<E>(instance: &str, write: impl std::future::Future<Output = Result<(), E>>) -> bool {
    match tokio::time::timeout(SEND_TIMEOUT, write).await {
        Ok(r) => r.is_ok(),
        Err(_) => {
            tracing::warn!(
                instance,
                timeout_s = SEND_TIMEOUT.as_secs(),
                "agent stopped reading its session; disconnecting it"
            );
            false
        }
    }
}

fn message_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Every task the instance should know about: those not yet STOPPED.
fn instance_task_keys(ctx: &Ctx, instance_arn: &str) -> Vec<Arc<str>> {
    let ix = ctx.cache.read();
    ix.task_index
        .by_instance
        .get(instance_arn)
        .into_iter()
        .flatten()
        .filter(|k| ix.tasks.get(*k).is_some_and(|t| !t.value.is_stopped()))
        .cloned()
        .collect()
}

async fn send(instance: &str, socket: &mut WebSocket, msg: &ServerMessage) -> bool {
    timed(instance, socket.send(Message::Text(msg.to_json().into()))).await
}

/// Sends the full picture: every live task, then the manifest that names them all.
async fn full_sync(
    ctx: &Ctx,
    socket: &mut WebSocket,
    target: &SessionTarget,
    sent: &mut Sent,
    definitions: &mut Definitions,
    timeline: &mut u64,
) -> bool {
    sent.clear();
    let mut tasks = Vec::new();
    let mut manifest = Vec::new();
    for key in instance_task_keys(ctx, &target.instance_arn) {
        if let Some(p) = assignment(ctx, &target.instance_arn, &key, definitions) {
            sent.insert(key, p.desired.to_string());
            manifest.push(ManifestEntry { task_arn: p.arn, desired_status: p.desired.to_string() });
            tasks.push(p.assignment);
        }
    }
    *timeline += 1;
    let instance = target.instance_arn.as_str();
    timed(instance, socket.send(Message::Text(payload_json(&message_id(), &tasks).into()))).await
        && send(
            instance,
            socket,
            &ServerMessage::TaskManifestMessage { message_id: message_id(), timeline: *timeline, tasks: manifest },
        )
        .await
}

/// One task as the agent is told of it.
struct Pushed {
    arn: String,
    desired: Arc<str>,
    assignment: RawAssignment,
}

/// The assignment for one task, if it belongs to this instance, as JSON spliced from the JSON
/// the cache keeps (pushing a task that way skips decoding and encoding it).
fn assignment(ctx: &Ctx, instance_arn: &str, key: &str, definitions: &mut Definitions) -> Option<Pushed> {
    #[derive(serde::Deserialize)]
    struct Arns<'a> {
        #[serde(rename = "taskArn", borrow)]
        task: Option<std::borrow::Cow<'a, str>>,
        #[serde(rename = "taskDefinitionArn", borrow)]
        definition: Option<std::borrow::Cow<'a, str>>,
    }
    let ix = ctx.cache.read();
    let entry = ix.tasks.get(key)?;
    let summary = &entry.value.summary;
    if summary.instance.as_deref() != Some(instance_arn) {
        return None;
    }
    let mut task = entry.value.to_json(true);
    // A DEACTIVATING task is asked to stop only once it has drained: until then the agent is
    // told to keep it running.
    let held = entry.value.hidden.as_ref().is_some_and(|h| h.deactivating_since_ms.is_some());
    if held {
        let mut value: serde_json::Value = serde_json::from_str(task.get()).ok()?;
        value["desiredStatus"] = serde_json::Value::String("RUNNING".into());
        task = serde_json::value::to_raw_value(&value).ok()?;
    }
    let arns = serde_json::from_str::<Arns>(task.get()).ok()?;
    let (family, revision) = match ctx.arns.parse(&arns.definition?) {
        Ok(Resource::TaskDefinition { family, revision }) => (family, revision),
        _ => return None,
    };
    let arn = arns.task?.into_owned();
    let td_key = keys::task_definition(&family, revision);
    let td = ix.task_definitions.get(&td_key)?;
    let definition = match definitions.get(&td_key) {
        Some((rev, json)) if *rev == td.revision => json.clone(),
        _ => {
            let json = serde_json::value::to_raw_value(&td.value.definition).ok()?;
            definitions.insert(td_key, (td.revision, json.clone()));
            json
        }
    };
    let reserved_ports = summary.reservation.as_ref().map(|r| r.ports.clone()).unwrap_or_default();
    Some(Pushed {
        arn,
        desired: if held { Arc::from("RUNNING") } else { summary.desired.clone() },
        assignment: RawAssignment {
            task,
            definition,
            reserved_ports,
            network: entry.value.hidden.as_ref().and_then(|h| h.network.clone()),
            stop_timeout_cap_seconds: entry.value.hidden.as_ref().and_then(|h| h.stop_timeout_cap_seconds),
        },
    })
}

/// Pushes the tasks behind `keys` whose desired status the agent has not been told yet.
async fn push_changes(
    ctx: &Ctx,
    socket: &mut WebSocket,
    target: &SessionTarget,
    sent: &mut Sent,
    definitions: &mut Definitions,
    keys: Vec<Arc<str>>,
) -> bool {
    let mut tasks = Vec::new();
    for key in keys {
        // Most notices are reports the agent made itself: the desired status it was told is
        // still the one, and nothing needs building.
        let desired = {
            let ix = ctx.cache.read();
            ix.tasks
                .get(&key)
                .filter(|e| e.value.summary.instance.as_deref() == Some(target.instance_arn.as_str()))
                .map(|e| match e.value.hidden.as_ref().is_some_and(|h| h.deactivating_since_ms.is_some()) {
                    true => Arc::from("RUNNING"),
                    false => e.value.summary.desired.clone(),
                })
        };
        if desired.is_some() && sent.get(&key).map(String::as_str) == desired.as_deref() {
            continue;
        }
        match assignment(ctx, &target.instance_arn, &key, definitions) {
            Some(p) => {
                sent.insert(key, p.desired.to_string());
                tasks.push(p.assignment);
            }
            None => {
                sent.remove(&key);
            }
        }
    }
    tasks.is_empty()
        || timed(&target.instance_arn, socket.send(Message::Text(payload_json(&message_id(), &tasks).into()))).await
}

/// Applies a report to its task and waits until it is durable.
async fn record_report(ctx: &Ctx, target: &SessionTarget, report: &TaskReport) -> ApiResult<()> {
    let (cluster, id) = match ctx.arns.parse(&report.task_arn) {
        Ok(Resource::Task { cluster: Some(c), id }) => (c, id),
        _ => return Err(ApiError::invalid_parameter(format!("taskArn '{}' is not valid.", report.task_arn))),
    };
    let key = keys::task(&cluster, short_id(&id));
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some(entry) = ctx.cache.read().tasks.get(key.as_str()).cloned() else { return Ok(()) };
        if entry.value.summary.instance.as_deref() != Some(target.instance_arn.as_str()) {
            return Ok(());
        }
        let mut rec = entry.value.record();
        let Some(task) = apply_report(&rec.task, report) else { return Ok(()) };
        rec.task = task;
        let txn = Txn::new().when(Compare::unchanged(&key, entry.revision));
        let txn = crate::endpoints::registrar::deregister_instances_on_stop(ctx, &mut rec, txn).await?;
        let txn = txn.then(Op::put(&key, encode(&rec)));
        if ctx.commit(txn).await?.is_some() {
            return Ok(());
        }
    }
    Err(ApiError::server("the task kept changing while a report was applied"))
}

/// Runs a session until the agent leaves, goes silent, or a newer session replaces it.
pub async fn run_session(ctx: Ctx, sessions: Arc<Sessions>, mut socket: WebSocket, target: SessionTarget) {
    tracing::info!(instance = %target.instance_arn, "agent connected");
    let instance = target.instance_arn.clone();
    let mut notices = ctx.cache.subscribe_instance(&target.instance_arn);
    let (link_id, mut outbox) = sessions.links.attach(&target.instance_arn);
    let me = sessions.server_id().to_string();
    if let Err(e) = claim(&ctx, &target.instance_key, &me).await {
        tracing::warn!(error = %e, "could not mark the agent connected");
    }
    if let Some(peer) = target.peer {
        if let Err(e) = super::presence::set_agent_address(&ctx, &target.instance_key, peer).await {
            tracing::warn!(error = %e, "could not record the agent's address");
        }
    }
    let mut sent = Sent::new();
    let mut definitions = Definitions::new();
    let mut timeline = ctx.clock.now_ms().max(0) as u64 * 1000;
    let mut heartbeat = tokio::time::interval(Duration::from_secs(HEARTBEAT_SECS));
    let mut last_heard = Instant::now();
    // Report acknowledgements wait in the socket's buffer for the next message to the agent, or
    // go alone after ACK_DELAY: the agent needs them only to stop keeping the reports for a
    // resend, and an assignment usually follows soon enough to carry them.
    let mut acks_waiting = false;
    let ack_flush = tokio::time::sleep(ACK_DELAY);
    tokio::pin!(ack_flush);
    // Answers to the agent's calls, computed off the session's loop; the bound is how many calls
    // may be in flight at once (the agent waits for each answer, so it makes few).
    let (replies_tx, mut replies) = tokio::sync::mpsc::channel::<ServerMessage>(CALLS_IN_FLIGHT);
    let mut alive = full_sync(&ctx, &mut socket, &target, &mut sent, &mut definitions, &mut timeline).await;
    while alive {
        tokio::select! {
            frame = socket.recv() => {
                let Some(Ok(frame)) = frame else { break };
                last_heard = Instant::now();
                let text = match frame {
                    Message::Text(t) => t,
                    Message::Close(_) => break,
                    _ => continue,
                };
                match serde_json::from_str::<AgentMessage>(&text) {
                    Ok(AgentMessage::TaskStateChange(report)) => {
                        match record_report(&ctx, &target, &report).await {
                            Ok(()) => {
                                let ack = ServerMessage::ReportAck { task_arn: report.task_arn.clone(), seq: report.seq };
                                alive = timed(&instance, socket.feed(Message::Text(ack.to_json().into()))).await;
                                if !acks_waiting {
                                    acks_waiting = true;
                                    ack_flush.as_mut().reset(tokio::time::Instant::now() + ACK_DELAY);
                                }
                            }
                            Err(e) => {
                                let err = ServerMessage::ErrorMessage { code: e.code.into(), message: e.message };
                                alive = send(&instance, &mut socket, &err).await;
                            }
                        }
                    }
                    Ok(AgentMessage::HeartbeatRequest { message_id }) => {
                        alive = send(&instance, &mut socket, &ServerMessage::HeartbeatMessage { message_id }).await;
                    }
                    Ok(AgentMessage::LogsBatch(batch)) => {
                        let request_id = batch.request_id.clone();
                        if sessions.deliver(&target.instance_arn, link_id, batch) == Delivery::Unwanted {
                            alive = send(&instance, &mut socket, &ServerMessage::LogsCancel { request_id }).await;
                        }
                    }
                    Ok(AgentMessage::Call { request_id, call }) => match replies_tx.clone().try_reserve_owned() {
                        Ok(permit) => {
                            let (ctx, sessions, target) = (ctx.clone(), sessions.clone(), target.clone());
                            tokio::spawn(async move {
                                let reply = super::calls::answer(&ctx, sessions.services(), &target, &call).await;
                                permit.send(ServerMessage::Reply { request_id, reply });
                            });
                        }
                        Err(_) => {
                            let reply = flotilla_protocol::CallReply::Failed {
                                code: "ThrottlingException".into(),
                                message: format!("more than {CALLS_IN_FLIGHT} calls in flight on this session"),
                                transient: true,
                            };
                            alive = send(&instance, &mut socket, &ServerMessage::Reply { request_id, reply }).await;
                        }
                    },
                    Ok(AgentMessage::AckRequest { .. }) | Ok(AgentMessage::HeartbeatAckRequest { .. }) => {}
                    Err(e) => {
                        let err = ServerMessage::ErrorMessage { code: "BadRequestException".into(), message: e.to_string() };
                        alive = send(&instance, &mut socket, &err).await;
                    }
                }
            }
            notice = notices.recv() => {
                // A newer session took over, or this one fell too far behind (see NOTICE_QUEUE).
                let Some(first) = notice else { break };
                let mut keys = vec![first];
                while let Ok(k) = notices.try_recv() {
                    keys.push(k);
                }
                alive = if keys.iter().any(|k| &**k == RESYNC) {
                    full_sync(&ctx, &mut socket, &target, &mut sent, &mut definitions, &mut timeline).await
                } else {
                    push_changes(&ctx, &mut socket, &target, &mut sent, &mut definitions, keys).await
                };
            }
            Some(msg) = outbox.recv() => {
                alive = send(&instance, &mut socket, &msg).await;
            }
            Some(reply) = replies.recv() => {
                alive = send(&instance, &mut socket, &reply).await;
            }
            // Any send since flushed them too; flushing an empty buffer writes nothing.
            () = &mut ack_flush, if acks_waiting => {
                acks_waiting = false;
                alive = timed(&instance, socket.flush()).await;
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > Duration::from_secs(PEER_TIMEOUT_SECS) {
                    tracing::warn!(instance = %target.instance_arn, "agent went silent; closing its session");
                    break;
                }
                // This server may have been judged dead (a stall) while the agent stayed with it;
                // only an agent heard from lately is still here, not one that moved elsewhere.
                if last_heard.elapsed() < RECENTLY_HEARD {
                    match reclaim_if_swept(&ctx, &target.instance_key, &me).await {
                        Ok(true) => tracing::info!(instance = %target.instance_arn, "agent marked connected again"),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "could not mark the agent connected again"),
                    }
                }
                alive = send(&instance, &mut socket, &ServerMessage::HeartbeatMessage { message_id: message_id() }).await;
            }
        }
    }
    drop(notices);
    sessions.links.detach(&target.instance_arn, link_id);
    sessions.session_ended(&target.instance_arn, link_id);
    // A courtesy: the session may have ended because the agent stopped reading.
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(None))).await;
    // A newer session of this agent on this server, or one on another server, has taken over.
    if ctx.cache.unsubscribe_instance(&target.instance_arn) {
        match release(&ctx, &target.instance_key, &me).await {
            Ok(true) => tracing::info!(instance = %target.instance_arn, "agent disconnected"),
            Ok(false) => {
                tracing::info!(instance = %target.instance_arn, "agent session ended; its agent is with another server")
            }
            Err(e) => tracing::warn!(error = %e, "could not mark the agent disconnected"),
        }
    }
}
