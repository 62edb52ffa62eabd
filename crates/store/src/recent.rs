//! The change history both backends keep for watchers that start in the past: the latest
//! committed batches, in memory, bounded by a count of revisions and by the bytes their keys and
//! values hold (whichever bound is reached first trims the oldest).
//!
//! Why memory and not the store file: every watcher of an embedded store lives in the server
//! process that owns the file, and after a restart each one lists afresh before it watches. A
//! history written to disk would double the bytes every commit writes (each value once in the
//! keyspace and once in the log) for readers that can never need it. What the history serves is
//! the short gap between a listing and its watch, and a watcher that falls briefly behind the
//! live feed; a watcher further behind than the history gets `Compacted` and lists again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::apply::filter_events;
use crate::types::{Event, Revision, StoreError, WatchBatch};
use crate::watch::{self, Chunk};

/// How many bytes of keys and values the history holds at most by default: at about 1.5 KiB per
/// task record that is some ten thousand changes, seconds of the busiest cluster's commits.
pub const DEFAULT_HISTORY_BYTES: usize = 16 * 1024 * 1024;

/// The latest committed batches, `oldest..=oldest + len - 1`.
#[derive(Debug)]
pub(crate) struct RecentLog {
    batches: VecDeque<Arc<WatchBatch>>,
    oldest: Revision,
    bytes: usize,
    max_revisions: u64,
    max_bytes: usize,
}

/// What one batch counts against the byte bound.
fn weight(batch: &WatchBatch) -> usize {
    batch
        .events
        .iter()
        .map(|e| match e {
            Event::Put(kv) => kv.key.len() + kv.value.len(),
            Event::Delete { key } => key.len(),
        })
        .sum()
}

impl RecentLog {
    /// An empty history whose first batch will be revision `next`: a watch from `next - 1` or
    /// later is served, one from further back is `Compacted`.
    pub fn new(next: Revision, max_revisions: u64, max_bytes: usize) -> Self {
        RecentLog { batches: VecDeque::new(), oldest: next, bytes: 0, max_revisions: max_revisions.max(1), max_bytes }
    }

    /// Appends the next committed batch and trims the oldest ones past either bound. The newest
    /// batch is always kept, however large.
    pub fn push(&mut self, batch: Arc<WatchBatch>) {
        debug_assert_eq!(batch.revision, self.oldest + self.batches.len() as u64, "batches arrive in order");
        self.bytes += weight(&batch);
        self.batches.push_back(batch);
        while self.batches.len() > 1 && (self.batches.len() as u64 > self.max_revisions || self.bytes > self.max_bytes)
        {
            let old = self.batches.pop_front().expect("more than one batch");
            self.bytes -= weight(&old);
            self.oldest += 1;
        }
    }

    /// Up to `limit` batches after `after`, filtered to `prefix`.
    pub fn read_after(&self, after: Revision, prefix: &str, limit: usize) -> Result<Chunk, StoreError> {
        if let Some(e) = watch::compacted(after, self.oldest) {
            return Err(e);
        }
        let skip = usize::try_from(after.saturating_add(1).saturating_sub(self.oldest)).unwrap_or(usize::MAX);
        let mut chunk = Chunk { batches: Vec::new(), scanned_to: after };
        for batch in self.batches.iter().skip(skip).take(limit) {
            chunk.scanned_to = batch.revision;
            if let Some(events) = filter_events(&batch.events, prefix) {
                chunk.batches.push(WatchBatch { revision: batch.revision, events });
            }
        }
        Ok(chunk)
    }

    #[cfg(test)]
    fn oldest(&self) -> Revision {
        self.oldest
    }
}

/// Locks a shared history. A poisoned lock is taken as it is: a batch enters the history in one
/// step, so a panic elsewhere cannot leave it half-written.
pub(crate) fn locked(history: &Mutex<RecentLog>) -> MutexGuard<'_, RecentLog> {
    history.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A [`RecentLog`] shared between a store's committer and its watchers. Weak, so that a watcher
/// nobody reads keeps neither the history nor the store alive.
pub(crate) struct SharedHistory(pub Weak<Mutex<RecentLog>>);

impl SharedHistory {
    /// [`RecentLog::read_after`], or `Closed` once the store is gone.
    pub fn read_after(&self, after: Revision, prefix: &str, limit: usize) -> Result<Chunk, StoreError> {
        let history = self.0.upgrade().ok_or(StoreError::Closed)?;
        let chunk = locked(&history).read_after(after, prefix, limit);
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::KeyValue;

    fn batch(revision: Revision, key: &str, value_len: usize) -> Arc<WatchBatch> {
        let kv = KeyValue { key: key.into(), value: vec![0u8; value_len].into(), create_revision: 1, mod_revision: 1 };
        Arc::new(WatchBatch { revision, events: vec![Event::Put(kv)] })
    }

    #[test]
    fn trims_by_revisions_and_by_bytes() {
        let mut log = RecentLog::new(1, 3, usize::MAX);
        for r in 1..=5 {
            log.push(batch(r, "k", 10));
        }
        assert_eq!(log.oldest(), 3);
        assert!(matches!(log.read_after(1, "", 10), Err(StoreError::Compacted { requested: 1, oldest: 3 })));
        let revisions: Vec<_> = log.read_after(2, "", 10).unwrap().batches.iter().map(|b| b.revision).collect();
        assert_eq!(revisions, [3, 4, 5]);

        // Each batch weighs 1 + 99 bytes: 250 bytes hold two of them.
        let mut log = RecentLog::new(1, 100, 250);
        for r in 1..=4 {
            log.push(batch(r, "k", 99));
        }
        assert_eq!(log.oldest(), 3);
        // A single batch larger than the bound is still kept.
        log.push(batch(5, "k", 1000));
        assert_eq!(log.oldest(), 5);
        assert_eq!(log.read_after(4, "", 10).unwrap().scanned_to, 5);
    }

    #[test]
    fn a_new_history_serves_watches_from_its_start_on() {
        let log = RecentLog::new(8, 10, 1000);
        let chunk = log.read_after(7, "", 10).unwrap();
        assert!(chunk.batches.is_empty());
        assert_eq!(chunk.scanned_to, 7);
        assert!(log.read_after(100, "", 10).unwrap().batches.is_empty(), "a future revision waits");
        assert!(matches!(log.read_after(6, "", 10), Err(StoreError::Compacted { requested: 6, oldest: 8 })));
    }

    #[test]
    fn reads_filter_by_prefix_and_respect_the_limit() {
        let mut log = RecentLog::new(1, 10, usize::MAX);
        log.push(batch(1, "a/1", 1));
        log.push(batch(2, "b/1", 1));
        log.push(batch(3, "a/2", 1));
        let chunk = log.read_after(0, "a/", 2).unwrap();
        assert_eq!(chunk.batches.iter().map(|b| b.revision).collect::<Vec<_>>(), [1]);
        assert_eq!(chunk.scanned_to, 2, "the filtered-out batch was looked at");
    }
}
