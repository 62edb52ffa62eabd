//! Retention: a loop on the leader that drops the batches of streams older than their group's
//! `retentionInDays`, from the front of each stream (the oldest batches), each with a
//! compare-and-swap on the stream record so a concurrent append is never lost.

use std::time::Duration;

use flotilla_api::Ctx;
use flotilla_store::{Compare, Op, Txn};

use crate::error::Result;
use crate::records::{self, GroupRecord, StreamRecord};
use crate::store;

pub const LOOP: &str = "logs-retention";
/// How often the loop looks for expired batches.
pub const PERIOD: Duration = Duration::from_secs(60);
const DAY_MS: i64 = 86_400_000;

pub fn start(ctx: &Ctx) -> flotilla_api::supervisor::LoopHandle {
    let c = ctx.clone();
    ctx.loops.spawn_leader(LOOP, move |fence| {
        let ctx = c.fenced(fence);
        async move {
            loop {
                sweep(&ctx).await?;
                tokio::time::sleep(PERIOD).await;
            }
        }
    })
}

/// One pass over every group with a retention; returns how many batches it deleted.
pub async fn sweep(ctx: &Ctx) -> Result<usize> {
    let now = ctx.clock.now_ms();
    let mut deleted = 0;
    for (g, _) in store::list::<GroupRecord>(ctx, records::GROUP).await? {
        let Some(days) = g.retention_in_days else { continue };
        let cutoff = now - days * DAY_MS;
        for (s, _) in store::list::<StreamRecord>(ctx, &records::streams_of(&g.name)).await? {
            deleted += expire(ctx, &g.name, &s.name, cutoff).await?;
        }
    }
    Ok(deleted)
}

/// Drops the stream's front batches whose newest event is older than `cutoff`.
async fn expire(ctx: &Ctx, group: &str, stream: &str, cutoff: i64) -> Result<usize> {
    let key = records::stream_key(group, stream);
    let mut deleted = 0;
    loop {
        let Some((mut s, rev)) = store::get::<StreamRecord>(ctx, &key).await? else { return Ok(deleted) };
        if s.first_batch >= s.next_batch {
            return Ok(deleted);
        }
        let seq = s.first_batch;
        let size = match store::batch(ctx, s.id, seq).await? {
            Some(b) if b.max_timestamp().is_some_and(|t| t >= cutoff) => return Ok(deleted),
            Some(b) => b.size(),
            None => 0,
        };
        s.first_batch += 1;
        s.stored_bytes = s.stored_bytes.saturating_sub(size);
        if s.first_batch == s.next_batch {
            s.first_event_timestamp = None;
            s.last_event_timestamp = None;
        }
        let txn = Txn::new()
            .when(Compare::unchanged(key.clone(), rev))
            .then(store::put(key.clone(), &s))
            .then(Op::delete(records::batch_key(s.id, seq)));
        if store::commit(ctx, txn).await? {
            deleted += 1;
        }
    }
}
