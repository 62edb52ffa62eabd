//! The control plane's store: a revisioned key-value store with etcd's semantics.
//!
//! Every committed transaction that changes something gets a higher revision than any before it
//! (the embedded backends count one by one; etcd's revisions skip numbers). Readers can list a prefix and learn
//! the revision the listing reflects, then watch from that revision to see every later change in
//! order, so a cache built from `list` + `watch` misses nothing. Writers use compare-and-swap
//! transactions (create-if-absent, update-if-unchanged) for optimistic concurrency.
//!
//! Three backends implement [`Store`]: [`RedbStore`], the durable embedded default (a write is on
//! disk before `txn` returns; concurrent writers share one fsync through group commit);
//! [`EtcdStore`], for a highly available control plane whose servers share one etcd cluster and
//! elect a leader through it ([`Store::campaign`]); and [`MemoryStore`] for unit tests. Nothing
//! above this crate can tell them apart. [`copy()`] moves a store's keys from one backend to
//! another.

mod apply;
mod codec;
mod copy;
mod etcd;
mod leadership;
mod memory;
mod recent;
mod redb_store;
mod types;
mod watch;

pub use copy::{copy, CopyError, CopyReport, COPY_BATCH_BYTES, COPY_BATCH_KEYS};
pub use etcd::{CompactionPolicy, EtcdOptions, EtcdStore, DEFAULT_LEASE_TTL, DEFAULT_PREFIX};
pub use leadership::{leader_key, Leadership, LEADER_PREFIX};
pub use memory::MemoryStore;
pub use recent::DEFAULT_HISTORY_BYTES;
pub use redb_store::{RedbStore, MAX_BATCH};
pub use types::*;

use async_trait::async_trait;

/// How many of the latest revisions a store keeps in its change history by default, for
/// watchers that start in the past (fewer when their values exceed [`DEFAULT_HISTORY_BYTES`]).
/// A watch from further back fails with [`StoreError::Compacted`].
pub const DEFAULT_HISTORY: u64 = 100_000;

/// How many keys [`Store::scan`] hands over at a time.
pub const SCAN_BATCH: usize = 1024;

/// The store every part of the control plane reads and writes through.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value under `key` at the latest revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Every key starting with `prefix`, in key order, at the latest revision, with that revision.
    /// On etcd that revision is etcd's own and may be ahead of [`Store::revision`] (other
    /// clients' writes outside the prefix); a watch from it misses nothing either way.
    async fn list(&self, prefix: &str) -> Result<Listing, StoreError>;

    /// Visits every key under `prefix` in key order, at one revision, `SCAN_BATCH` keys at a
    /// time, and returns that revision. Unlike [`Store::list`], the whole listing is never in
    /// memory at once, which matters when a cache loads a large store.
    async fn scan(&self, prefix: &str, visit: &mut (dyn FnMut(Vec<KeyValue>) + Send)) -> Result<Revision, StoreError> {
        let listing = self.list(prefix).await?;
        let mut kvs = listing.kvs;
        while !kvs.is_empty() {
            let rest = kvs.split_off(kvs.len().min(SCAN_BATCH));
            visit(std::mem::replace(&mut kvs, rest));
        }
        Ok(listing.revision)
    }

    /// Applies `txn.ops` atomically if every compare holds. The write is durable before this
    /// returns `Committed`. Ops apply in order, so a later op on the same key wins (etcd keeps
    /// only the last op on each key: the same end state, one watch event per key). A committed
    /// transaction that changes something takes a revision higher than any before it; revisions
    /// may skip numbers (on etcd other clients' writes and lease expiries take some). A
    /// transaction without ops, or whose ops change nothing (deletes of absent keys), may take
    /// none: it then answers [`Store::revision`]. A conflict takes none.
    ///
    /// An `Err` (`Io`, `Closed`) leaves the outcome unknown, as with any remote store: the
    /// transaction may or may not have been applied.
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError>;

    /// Every change to keys under `prefix` with a revision greater than `after`, in revision
    /// order, one batch per transaction (transactions with no change under `prefix` are
    /// skipped), then live changes as they commit, with no gap and no repeat between the two.
    /// `after` may be in the future; the watch then waits for it. Fails with `Compacted` when the
    /// history since `after` is no longer kept: list again and re-watch.
    ///
    /// A watcher that reads slowly never slows writers down (on etcd it holds back its own stream,
    /// which etcd then serves from its history). It catches up from the kept history
    /// when it falls behind the live feed; if it falls behind the kept history itself, its stream
    /// yields `Err(Compacted)` and ends. It yields `Err(Closed)` and ends when the store is
    /// dropped.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError>;

    /// The revision of the latest committed transaction (0 for an empty store). A store shared
    /// between processes (etcd) answers the latest revision of a change under its keys that
    /// this process knows of: its own commits, what beat its transactions, what its watches
    /// delivered. It never answers a revision a watch of every key would not reach.
    fn revision(&self) -> Revision;

    /// Waits until `candidate` leads `election` among the processes sharing this store, and
    /// returns its term (see [`Leadership`]). A store only one process can use wins at once.
    async fn campaign(&self, election: &str, candidate: &str) -> Result<Leadership, StoreError> {
        let _ = (election, candidate);
        Ok(Leadership::unopposed())
    }
}
