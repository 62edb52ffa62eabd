//! Keeps the DNS table current: lists the Cloud Map records once, then follows the store's watch
//! on `servicediscovery/`, patching [`Records`] and swapping in a rebuilt [`Table`] after each
//! burst of changes. Queries read the swapped table without locks, so a change is visible as soon
//! as its watch batch arrives.

use std::sync::Arc;

use arc_swap::ArcSwap;
use flotilla_api::supervisor::{LoopError, LoopHandle};
use flotilla_api::Ctx;

use super::table::{Records, Table};

/// Every Cloud Map key starts with this.
pub const ROOT: &str = "servicediscovery/";

pub type Shared = Arc<ArcSwap<Table>>;

/// Lists the records and builds the first table.
pub async fn load(ctx: &Ctx) -> Result<(Records, u64), LoopError> {
    let listing = ctx.store.list(ROOT).await?;
    let mut records = Records::default();
    for kv in &listing.kvs {
        records.apply(&kv.key, Some(&kv.value));
    }
    Ok((records, listing.revision))
}

async fn run(ctx: Ctx, shared: Shared) -> Result<(), LoopError> {
    let (mut records, revision) = load(&ctx).await?;
    shared.store(Arc::new(Table::build(&records, revision)));
    let mut watch = ctx.store.watch(ROOT, revision).await?;
    loop {
        let Some(batch) = watch.recv().await else { return Err("the store's watch ended".into()) };
        let mut last = batch?;
        let apply = |records: &mut Records, batch: &flotilla_store::WatchBatch| {
            for event in &batch.events {
                match event {
                    flotilla_store::Event::Put(kv) => records.apply(&kv.key, Some(&kv.value)),
                    flotilla_store::Event::Delete { key } => records.apply(key, None),
                }
            }
        };
        apply(&mut records, &last);
        // Fold a burst of batches into one rebuild.
        while let Ok(next) = watch.try_recv() {
            last = next?;
            apply(&mut records, &last);
        }
        shared.store(Arc::new(Table::build(&records, last.revision)));
    }
}

/// The shared table, loaded now, and the loop that keeps it current under `ctx.loops`.
pub async fn start(ctx: &Ctx) -> Result<(Shared, LoopHandle), LoopError> {
    let (records, revision) = load(ctx).await?;
    let shared: Shared = Arc::new(ArcSwap::from_pointee(Table::build(&records, revision)));
    let (c, s) = (ctx.clone(), shared.clone());
    let handle = ctx.loops.spawn("cloudmap-dns-table", move || run(c.clone(), s.clone()));
    Ok((shared, handle))
}
