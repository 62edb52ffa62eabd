//! Keeps the DNS table current: lists the Cloud Map records, the load balancers and the load
//! balancer nodes once, then follows the store's watch on each of those prefixes, patching
//! [`Records`] and swapping in a rebuilt [`Table`] after each burst of changes that touches an
//! answer (a node's heartbeat or a Cloud Map operation does not). Queries read the swapped table
//! without locks, so a change is visible as soon as its watch batch arrives; the responders'
//! answer caches follow the swap (see [`super::fast`]).

use std::sync::Arc;

use arc_swap::ArcSwap;
use flotilla_api::supervisor::{LoopError, LoopHandle};
use flotilla_api::Ctx;
use flotilla_endpoints::keys;
use flotilla_store::{Event, Watch, WatchBatch};

use super::elb;
use super::table::{Records, Table};

/// Every Cloud Map key starts with this.
pub const ROOT: &str = "servicediscovery/";

/// The prefixes the table is built from, each listed and watched on its own (watching all of
/// `elbv2/` would wake the loop for every target health report).
pub const PREFIXES: [&str; 3] = [ROOT, keys::LOAD_BALANCER, elb::NODE];

pub type Shared = Arc<ArcSwap<Table>>;

/// Lists the records and the revision each prefix's listing reflects (its watch starts there).
pub async fn load(ctx: &Ctx) -> Result<(Records, [u64; 3]), LoopError> {
    let mut records = Records::default();
    let mut revisions = [0; 3];
    for (prefix, revision) in PREFIXES.iter().zip(revisions.iter_mut()) {
        let listing = ctx.store.list(prefix).await?;
        for kv in &listing.kvs {
            records.apply(&kv.key, Some(&kv.value));
        }
        *revision = listing.revision;
    }
    Ok((records, revisions))
}

/// Applies a batch; whether anything an answer depends on changed.
fn apply(records: &mut Records, batch: &WatchBatch) -> bool {
    let mut changed = false;
    for event in &batch.events {
        changed |= match event {
            Event::Put(kv) => records.apply(&kv.key, Some(&kv.value)),
            Event::Delete { key } => records.apply(key, None),
        };
    }
    changed
}

async fn run(ctx: Ctx, shared: Shared) -> Result<(), LoopError> {
    let (mut records, revisions) = load(&ctx).await?;
    let mut revision = revisions.iter().copied().max().unwrap_or(0);
    shared.store(Arc::new(Table::build(&records, revision)));
    let mut watches: Vec<Watch> = Vec::with_capacity(PREFIXES.len());
    for (prefix, from) in PREFIXES.iter().zip(revisions) {
        watches.push(ctx.store.watch(prefix, from).await?);
    }
    let ended = || LoopError::from("the store's watch ended");
    loop {
        // The first batch from any watch, then whatever else is already waiting on all of them,
        // folded into one rebuild.
        let first = std::future::poll_fn(|cx| {
            for w in watches.iter_mut() {
                if let std::task::Poll::Ready(got) = w.poll_recv(cx) {
                    return std::task::Poll::Ready(got);
                }
            }
            std::task::Poll::Pending
        })
        .await;
        let batch = first.ok_or_else(ended)??;
        revision = revision.max(batch.revision);
        let mut changed = apply(&mut records, &batch);
        for w in watches.iter_mut() {
            loop {
                match w.try_recv() {
                    Ok(next) => {
                        let next = next?;
                        revision = revision.max(next.revision);
                        changed |= apply(&mut records, &next);
                    }
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return Err(ended()),
                }
            }
        }
        if changed {
            shared.store(Arc::new(Table::build(&records, revision)));
        }
    }
}

/// The shared table, loaded now, and the loop that keeps it current under `ctx.loops`.
pub async fn start(ctx: &Ctx) -> Result<(Shared, LoopHandle), LoopError> {
    let (records, revisions) = load(ctx).await?;
    let revision = revisions.iter().copied().max().unwrap_or(0);
    let shared: Shared = Arc::new(ArcSwap::from_pointee(Table::build(&records, revision)));
    let (c, s) = (ctx.clone(), shared.clone());
    let handle = ctx.loops.spawn("cloudmap-dns-table", move || run(c.clone(), s.clone()));
    Ok((shared, handle))
}
