//! Forgets tasks that have been STOPPED for longer than the retention period. ECS keeps a stopped
//! task visible to DescribeTasks and ListTasks for at least an hour and then drops it; without
//! this the store, the cache and every controller pass over a service's tasks would grow with
//! history rather than with live work.
//!
//! Level-triggered: each sweep reads which tasks are past the retention and deletes them, every
//! delete comparing the revision it read, so a task that changed in between is simply looked at
//! again by the next sweep. Tasks whose agent never reported them STOPPED are kept: they may
//! still hold containers and resources.
//!
//! The same loop forgets `clientToken` records older than their retention
//! ([`crate::idempotency::RETENTION`]), with the same compare-and-swap deletes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_store::Revision;

use crate::context::Ctx;
use crate::error::ApiResult;
use flotilla_protocol::TaskStatus;

/// How long a STOPPED task stays visible by default: ECS's "at least an hour".
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);

/// How many cached tasks one read of the cache decodes, so a sweep over many stopped tasks never
/// holds the cache's lock for long.
const SCAN_CHUNK: usize = 2_000;

/// When each stopped task stopped, by key, with the revision that was read: a sweep decodes
/// only the tasks that stopped (or changed) since the last one.
#[derive(Default)]
pub struct StopTimes(HashMap<Arc<str>, (Revision, Option<i64>)>);

/// The reaper's name among the supervised loops.
pub const LOOP: &str = "reaper";

/// Sweeps until the task is aborted; `retention` of zero keeps stopped tasks forever.
pub async fn run(ctx: Ctx, retention: Duration) -> Result<(), crate::supervisor::LoopError> {
    let every = match retention.is_zero() {
        true => Duration::from_secs(60),
        false => (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)),
    };
    let mut seen = StopTimes::default();
    loop {
        tokio::time::sleep(every).await;
        if !retention.is_zero() {
            match sweep(&ctx, retention, &mut seen).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(forgotten = n, "forgot tasks stopped longer than the retention"),
                Err(e) => tracing::warn!(error = %e, "could not forget stopped tasks"),
            }
        }
        match crate::idempotency::forget_expired(&ctx, crate::idempotency::RETENTION).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(forgotten = n, "forgot clientToken records older than their retention"),
            Err(e) => tracing::warn!(error = %e, "could not forget expired clientToken records"),
        }
    }
}

/// Deletes every task STOPPED for longer than `retention`; returns how many were deleted.
pub async fn sweep(ctx: &Ctx, retention: Duration, seen: &mut StopTimes) -> ApiResult<usize> {
    let cutoff_ms = ctx.clock.now_ms().saturating_sub(retention.as_millis() as i64);
    let stopped: Vec<(Arc<str>, Revision)> = {
        let ix = ctx.cache.read();
        ix.tasks
            .iter()
            .filter(|(_, e)| e.value.summary.last_status == Some(TaskStatus::Stopped))
            .map(|(k, e)| (k.clone(), e.revision))
            .collect()
    };
    let mut times = HashMap::with_capacity(stopped.len());
    let mut expired: Vec<(Arc<str>, Revision)> = Vec::new();
    for chunk in stopped.chunks(SCAN_CHUNK) {
        let ix = ctx.cache.read();
        for (key, revision) in chunk {
            let stopped_at = match seen.0.get(key) {
                Some((r, at)) if r == revision => *at,
                _ => {
                    let Some(e) = ix.tasks.get(key).filter(|e| e.revision == *revision) else { continue };
                    let t = e.value.task();
                    t.stopped_at.or(t.execution_stopped_at).or(t.stopping_at).or(t.created_at).map(|at| at.as_millis())
                }
            };
            times.insert(key.clone(), (*revision, stopped_at));
            if stopped_at.is_some_and(|at| at <= cutoff_ms) {
                expired.push((key.clone(), *revision));
            }
        }
    }
    seen.0 = times;
    ctx.delete_unchanged(&expired).await
}
