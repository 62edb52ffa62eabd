//! Stopping a task: StopTask and the service controller ask a task to stop through here, so a
//! stop reads the same whoever asked.

use flotilla_model::Task;
use flotilla_store::{Compare, Op, Txn};

use crate::context::{Ctx, MAX_CAS_ATTEMPTS};
use crate::error::{ApiError, ApiResult};
use crate::state::codec::encode;

/// Asks the task under `key` to stop, unless it already was: the task as it now reads and
/// whether this call changed it, or `None` if there is no such task. StopTask and the service
/// controller both stop tasks through here.
pub async fn stop_by_key(ctx: &Ctx, key: &str, stop_code: &str, reason: &str) -> ApiResult<Option<(Task, bool)>> {
    stop_capped(ctx, key, stop_code, reason, None).await
}

/// [`stop_by_key`], with the containers' stop grace capped at `cap` seconds (a Spot
/// interruption's warning time).
pub async fn stop_capped(
    ctx: &Ctx,
    key: &str,
    stop_code: &str,
    reason: &str,
    cap: Option<u64>,
) -> ApiResult<Option<(Task, bool)>> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some(entry) = ctx.cache.read().tasks.get(key).cloned() else { return Ok(None) };
        let mut rec = entry.value.record();
        if rec.task.desired_status.as_deref() == Some("STOPPED") {
            return Ok(Some((rec.task, false)));
        }
        let placed = rec.host().is_some();
        if let Some(cap) = cap {
            rec.hidden.get_or_insert_with(Default::default).stop_timeout_cap_seconds = Some(cap);
        }
        request_stop(&mut rec.task, placed, stop_code, reason, ctx.now());
        hold_while_draining(&mut rec, ctx.clock.now_ms());
        let txn = Txn::new().when(Compare::unchanged(key, entry.revision)).then(Op::put(key, encode(&rec)));
        if ctx.commit(txn).await?.is_some() {
            return Ok(Some((rec.task, true)));
        }
    }
    Err(ApiError::server("The task kept changing while it was stopped; try again."))
}

/// A running task registered in target groups or Cloud Map goes DEACTIVATING: its agent is not
/// told to stop it until the registrar has deregistered it and its targets have drained.
fn hold_while_draining(rec: &mut crate::state::records::TaskRecord, now_ms: i64) {
    let running = rec.task.last_status.as_deref() == Some("RUNNING");
    if let Some(h) = rec.hidden.as_mut().filter(|h| running && !h.endpoints.is_empty()) {
        h.deactivating_since_ms = Some(now_ms);
        rec.task.last_status = Some("DEACTIVATING".into());
    }
}

/// Marks a task to stop. A task no host holds yet (`placed` false) stops at once; one on a host
/// is stopped by its agent, which reports the rest of the way down.
pub fn request_stop(t: &mut Task, placed: bool, stop_code: &str, reason: &str, now: flotilla_model::Timestamp) {
    t.desired_status = Some("STOPPED".into());
    t.stop_code = Some(stop_code.into());
    t.stopped_reason = Some(reason.into());
    t.stopping_at.get_or_insert(now);
    if !placed {
        t.last_status = Some("STOPPED".into());
        t.stopped_at = Some(now);
        t.execution_stopped_at = Some(now);
    }
    t.version = Some(t.version.unwrap_or(0) + 1);
}
