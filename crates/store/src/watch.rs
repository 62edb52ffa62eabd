//! Watch delivery shared by both backends.
//!
//! Each watcher gets a small forwarding task. It first replays the store's recent history (see
//! `recent`) after the requested revision, then follows the live broadcast that the committer
//! publishes to after every commit. The live subscription is taken before the history is read,
//! so a commit is either in the history or arrives live (or both; duplicates are dropped by
//! revision). When the task falls behind the broadcast (a slow consumer), it goes back to the
//! history and catches up from there, so the committer never waits for a watcher and memory stays
//! bounded. Only a watcher that falls behind the kept history gets `Compacted`, after which its
//! stream ends.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use crate::apply::filter_events;
use crate::recent::SharedHistory;
use crate::types::{Revision, StoreError, Watch, WatchBatch};

/// How many batches a watcher's channel holds before its forwarder waits for the consumer.
const WATCH_CHANNEL: usize = 256;
/// How many batches of history one catch-up read looks at.
const HISTORY_CHUNK: usize = 1024;
/// How many committed batches the live broadcast keeps for forwarders that are briefly behind.
pub(crate) const LIVE_CAPACITY: usize = 4096;

/// Commits as the committer publishes them: every committed revision, in order, unfiltered.
pub(crate) type Live = broadcast::Sender<Arc<WatchBatch>>;

/// A run of the change history, already filtered to one prefix.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// The matching batches, each non-empty, in revision order.
    pub batches: Vec<WatchBatch>,
    /// The last revision this read looked at; the `after` it was given when there was nothing new.
    pub scanned_to: Revision,
}

/// Starts a watch. `live` must have been subscribed before this is called, which is what makes
/// the hand-over from history to live gap-free. Reads the first chunk of the history before
/// returning so that a compacted `after` fails the call itself rather than the stream.
pub(crate) async fn start(
    history: SharedHistory,
    live: broadcast::Receiver<Arc<WatchBatch>>,
    prefix: String,
    after: Revision,
) -> Result<Watch, StoreError> {
    let first = history.read_after(after, &prefix, HISTORY_CHUNK)?;
    let (tx, rx) = mpsc::channel(WATCH_CHANNEL);
    tokio::spawn(forward(history, live, prefix, after, first, tx));
    Ok(rx)
}

async fn forward(
    history: SharedHistory,
    mut live: broadcast::Receiver<Arc<WatchBatch>>,
    prefix: String,
    mut last: Revision,
    first: Chunk,
    tx: mpsc::Sender<Result<WatchBatch, StoreError>>,
) {
    let mut pending = Some(first);
    loop {
        // Catch up from the history until a read finds nothing newer.
        loop {
            let chunk = match pending.take() {
                Some(chunk) => chunk,
                None => match history.read_after(last, &prefix, HISTORY_CHUNK) {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                },
            };
            for batch in chunk.batches {
                if tx.send(Ok(batch)).await.is_err() {
                    return;
                }
            }
            if chunk.scanned_to <= last {
                break;
            }
            last = chunk.scanned_to;
        }
        // Follow live commits until we miss one.
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                () = tx.closed() => return,
            };
            match received {
                Ok(batch) if batch.revision <= last => {}
                Ok(batch) if Some(batch.revision) == last.checked_add(1) => {
                    last = batch.revision;
                    if let Some(events) = filter_events(&batch.events, &prefix) {
                        let out = WatchBatch { revision: batch.revision, events };
                        if tx.send(Ok(out)).await.is_err() {
                            return;
                        }
                    }
                }
                // A revision was skipped, or the broadcast moved on without us: the history has it.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => {
                    // The store is gone. If the consumer's channel is full it is not listening
                    // closely anyway; the stream ends either way.
                    let _ = tx.try_send(Err(StoreError::Closed));
                    return;
                }
            }
        }
    }
}

/// The `Compacted` error for a read after `after` when the oldest kept entry is `oldest`, if
/// that read would need history that is gone.
pub(crate) fn compacted(after: Revision, oldest: Revision) -> Option<StoreError> {
    (after.saturating_add(1) < oldest).then_some(StoreError::Compacted { requested: after, oldest })
}
