//! The values, transactions and events that cross the [`crate::Store`] trait.

use std::sync::Arc;

/// A store revision: 0 before the first write, then higher with each committed transaction that
/// changes something (one more each on the embedded backends; etcd's may skip numbers).
pub type Revision = u64;

/// One key and its value, with the revisions that created and last modified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Arc<[u8]>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

/// The result of a prefix listing: the keys, and the revision they reflect.
#[derive(Debug, Clone)]
pub struct Listing {
    pub revision: Revision,
    pub kvs: Vec<KeyValue>,
}

/// A condition a transaction checks before it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's mod revision equals this one; 0 means the key must be absent.
    ModRevision { key: String, revision: Revision },
    /// The key's create revision equals this one; 0 means the key must be absent. A key that is
    /// rewritten keeps its create revision, so this holds for as long as the key is not deleted
    /// and created again: what fences a leader's writes on its term (see [`crate::Leadership`]).
    CreateRevision { key: String, revision: Revision },
}

impl Compare {
    pub fn absent(key: impl Into<String>) -> Self {
        Compare::ModRevision { key: key.into(), revision: 0 }
    }
    pub fn unchanged(key: impl Into<String>, revision: Revision) -> Self {
        Compare::ModRevision { key: key.into(), revision }
    }
    pub fn created(key: impl Into<String>, revision: Revision) -> Self {
        Compare::CreateRevision { key: key.into(), revision }
    }
    pub fn key(&self) -> &str {
        match self {
            Compare::ModRevision { key, .. } | Compare::CreateRevision { key, .. } => key,
        }
    }
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Arc<[u8]> },
    Delete { key: String },
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Arc<[u8]>>) -> Self {
        Op::Put { key: key.into(), value: value.into() }
    }
    pub fn delete(key: impl Into<String>) -> Self {
        Op::Delete { key: key.into() }
    }
}

/// Compare-and-swap: if every compare holds, apply every op, all under one new revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Txn::default()
    }
    pub fn when(mut self, c: Compare) -> Self {
        self.compares.push(c);
        self
    }
    pub fn then(mut self, op: Op) -> Self {
        self.ops.push(op);
        self
    }
}

/// What became of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Applied and durable under this revision.
    Committed { revision: Revision },
    /// Not applied: this key's compare failed.
    Conflict { key: String },
}

/// One change seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put(KeyValue),
    /// The key was deleted at the batch's revision.
    Delete {
        key: String,
    },
}

impl Event {
    pub fn key(&self) -> &str {
        match self {
            Event::Put(kv) => &kv.key,
            Event::Delete { key } => key,
        }
    }
}

/// The changes of one transaction that fall under a watcher's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchBatch {
    pub revision: Revision,
    pub events: Vec<Event>,
}

/// A live watch: batches in revision order. An `Err` (e.g. the watcher fell too far behind)
/// ends the watch; the receiver lists again and re-watches.
pub type Watch = tokio::sync::mpsc::Receiver<Result<WatchBatch, StoreError>>;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("revision {requested} has been compacted (oldest kept: {oldest})")]
    Compacted { requested: Revision, oldest: Revision },
    #[error("store I/O failed: {0}")]
    Io(String),
    #[error("store is closed")]
    Closed,
}
