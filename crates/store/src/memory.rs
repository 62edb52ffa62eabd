//! `MemoryStore`: the store kept entirely in memory, for unit tests of the layers above.
//!
//! It has the same semantics as the durable backend (the transaction logic and the bounded
//! change history are shared, see `apply` and `recent`), so watches replay history and report
//! `Compacted` the same way. Nothing survives the process.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::apply::{apply, Applied, Keyspace};
use crate::recent::{self, RecentLog, SharedHistory, DEFAULT_HISTORY_BYTES};
use crate::types::{KeyValue, Listing, Revision, StoreError, Txn, TxnOutcome, Watch, WatchBatch};
use crate::watch::{self, Live, LIVE_CAPACITY};
use crate::{Store, DEFAULT_HISTORY};

/// An in-memory [`Store`]. Cheap to create; clones share the same data.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    live: Live,
    revision: AtomicU64,
    /// Pushed to under the state lock, so batches enter it in revision order.
    history: Arc<Mutex<RecentLog>>,
}

struct State {
    kv: BTreeMap<String, KeyValue>,
    revision: Revision,
}

impl MemoryStore {
    /// An empty store keeping the last [`DEFAULT_HISTORY`] revisions for watchers.
    pub fn new() -> Self {
        MemoryStore::with_history(DEFAULT_HISTORY)
    }

    /// An empty store keeping the last `history` (at least 1) revisions for watchers.
    pub fn with_history(history: u64) -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        MemoryStore {
            inner: Arc::new(Inner {
                state: Mutex::new(State { kv: BTreeMap::new(), revision: 0 }),
                live,
                revision: AtomicU64::new(0),
                history: Arc::new(Mutex::new(RecentLog::new(1, history, DEFAULT_HISTORY_BYTES))),
            }),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-updated in a way later
        // callers would trip over (every mutation is a single insert or remove), so a poisoned
        // lock is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Keyspace for BTreeMap<String, KeyValue> {
    fn revisions(&mut self, key: &str) -> Result<Option<(Revision, Revision)>, StoreError> {
        Ok(self.get(key).map(|kv| (kv.create_revision, kv.mod_revision)))
    }

    fn put(&mut self, kv: &KeyValue) -> Result<(), StoreError> {
        self.insert(kv.key.clone(), kv.clone());
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<bool, StoreError> {
        Ok(self.remove(key).is_some())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.inner.lock().kv.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let state = self.inner.lock();
        let kvs = state
            .kv
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Ok(Listing { revision: state.revision, kvs })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        let inner = &self.inner;
        let mut state = inner.lock();
        let revision = state.revision + 1;
        let events = match apply(&txn, revision, &mut state.kv)? {
            Applied::Conflict(key) => return Ok(TxnOutcome::Conflict { key }),
            // Writes nothing: no revision, as on etcd (see the redb store).
            Applied::Committed(_) if txn.ops.is_empty() => {
                return Ok(TxnOutcome::Committed { revision: state.revision })
            }
            Applied::Committed(events) => events,
        };
        let batch = Arc::new(WatchBatch { revision, events });
        state.revision = revision;
        recent::locked(&inner.history).push(batch.clone());
        inner.revision.store(revision, Ordering::Release);
        // Published under the lock so that live batches go out in revision order.
        let _ = inner.live.send(batch);
        Ok(TxnOutcome::Committed { revision })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
        let live = self.inner.live.subscribe();
        let history = SharedHistory(Arc::downgrade(&self.inner.history));
        watch::start(history, live, prefix.to_owned(), after).await
    }

    fn revision(&self) -> Revision {
        self.inner.revision.load(Ordering::Acquire)
    }
}
