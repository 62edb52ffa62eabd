//! `RedbStore`: the durable embedded backend, one redb file.
//!
//! Writes go through a single writer thread that does group commit: it takes every transaction
//! waiting in its queue (up to [`MAX_BATCH`]), applies them in arrival order inside one redb write
//! transaction (so later ones see earlier ones' effects, and a failed compare costs no revision),
//! commits once with immediate durability, and only then answers the callers and publishes the
//! new revisions to watchers. One fsync is thereby shared by everyone who was waiting for it.
//!
//! Tables: `kv` (key -> entry) and `meta` (the current revision). Watchers that start in the
//! past are served from the history kept in memory (see `recent`: every watcher lives in this
//! process and lists afresh after a restart, so a history on disk would only double the bytes
//! each commit writes). Reads use redb read transactions on the blocking pool, so each one sees a
//! consistent snapshot and the async workers never wait for disk.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use redb::{Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, Table, TableDefinition};
use tokio::sync::{broadcast, oneshot};

use crate::apply::{apply, Applied, Keyspace};
use crate::codec;
use crate::recent::{self, RecentLog, SharedHistory, DEFAULT_HISTORY_BYTES};
use crate::types::{KeyValue, Listing, Revision, StoreError, Txn, TxnOutcome, Watch, WatchBatch};
use crate::watch::{self, Live, LIVE_CAPACITY};
use crate::{Store, DEFAULT_HISTORY};

/// The most transactions one group commit takes, so that one huge queue does not make a single
/// redb transaction (and the callers at its front) wait arbitrarily long.
pub const MAX_BATCH: usize = 1024;

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
/// What files written before the history moved to memory kept: deleted on open.
const OLD_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const OLD_META_OLDEST: &str = "oldest";

/// The durable [`Store`]: a redb database file with a group-committing writer thread.
///
/// Dropping it stops the writer after the batch in flight and closes the file. A `txn` whose
/// future is dropped after it was queued may still commit, as with any remote store.
pub struct RedbStore {
    db: Arc<Database>,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    live: Live,
    revision: Arc<AtomicU64>,
    history: Arc<Mutex<RecentLog>>,
}

struct Request {
    txn: Txn,
    reply: oneshot::Sender<Result<TxnOutcome, StoreError>>,
}

/// What the writer thread knows about the file between batches.
struct WriterState {
    revision: Revision,
}

/// redb's page cache size.
pub const PAGE_CACHE_BYTES: usize = 16 * 1024 * 1024;

fn io(context: &str) -> impl Fn(redb::Error) -> StoreError + '_ {
    move |e| StoreError::Io(format!("{context}: {e}"))
}

impl RedbStore {
    /// Opens (creating if needed) the store at `path`, keeping up to the last
    /// [`DEFAULT_HISTORY`] revisions in memory for watchers (fewer when their values exceed
    /// [`crate::DEFAULT_HISTORY_BYTES`]). A file left by a crash is repaired by redb on open;
    /// every transaction that was acknowledged before the crash is there. The history starts
    /// empty at every open: a watch from before the current revision is `Compacted`.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        RedbStore::open_with_history(path, DEFAULT_HISTORY)
    }

    /// Like [`RedbStore::open`], keeping up to the last `history` (at least 1) revisions.
    pub fn open_with_history(path: &Path, history: u64) -> Result<RedbStore, StoreError> {
        let context = format!("opening store {}", path.display());
        // Reads are served by the control plane's own cache, so redb's page cache only needs to
        // hold the pages writes touch; its 1 GiB default would double the server's memory.
        let db =
            Database::builder().set_cache_size(PAGE_CACHE_BYTES).create(path).map_err(|e| io(&context)(e.into()))?;
        let revision = init_tables(&db).map_err(io(&context))?;
        let db = Arc::new(db);
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let shared_revision = Arc::new(AtomicU64::new(revision));
        let recent = Arc::new(Mutex::new(RecentLog::new(revision + 1, history, DEFAULT_HISTORY_BYTES)));
        let (requests, queue) = mpsc::channel();
        let state = WriterState { revision };
        let writer = {
            let db = db.clone();
            let published =
                Published { live: live.clone(), revision: shared_revision.clone(), history: recent.clone() };
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || run_writer(&db, &queue, &published, state))
                .map_err(|e| StoreError::Io(format!("starting the store writer: {e}")))?
        };
        Ok(RedbStore {
            db,
            requests: Some(requests),
            writer: Some(writer),
            live,
            revision: shared_revision,
            history: recent,
        })
    }

    /// Runs a read on the blocking pool against a snapshot of the database.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        read_db(self.db.clone(), f).await
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer's loop; waiting for it means the file is closed (and
        // can be reopened) once the store is gone.
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

async fn read_db<T, F>(db: Arc<Database>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let rtx = db.begin_read().map_err(|e| io("beginning a read")(e.into()))?;
        f(&rtx)
    })
    .await
    .map_err(|e| StoreError::Io(format!("store read task failed: {e}")))?
}

/// Creates the tables of a new file (or drops those an older version kept) and returns its
/// current revision.
fn init_tables(db: &Database) -> Result<Revision, redb::Error> {
    let wtx = db.begin_write()?;
    let (revision, changed) = {
        wtx.open_table(KV)?;
        let mut meta = wtx.open_table(META)?;
        let found = meta.get(META_REVISION)?.map(|g| g.value());
        let dropped_oldest = meta.remove(OLD_META_OLDEST)?.is_some();
        if found.is_none() {
            meta.insert(META_REVISION, 0)?;
        }
        (found.unwrap_or(0), found.is_none() || dropped_oldest)
    };
    let dropped_log = wtx.delete_table(OLD_LOG)?;
    if changed || dropped_log {
        wtx.commit()?;
    } else {
        wtx.abort()?;
    }
    Ok(revision)
}

/// Where the writer announces what it committed.
struct Published {
    live: Live,
    revision: Arc<AtomicU64>,
    history: Arc<Mutex<RecentLog>>,
}

fn run_writer(db: &Database, queue: &mpsc::Receiver<Request>, published: &Published, mut state: WriterState) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        match commit_batch(db, &mut state, &batch) {
            Ok((outcomes, committed)) => {
                tracing::trace!(txns = batch.len(), revision = state.revision, "group commit");
                // Order matters: the history, the revision and the watchers learn of the commit
                // before any caller does, so a caller that reads or watches right after sees its
                // own write; and a batch is in the history before it goes live, so a watcher
                // that subscribes in between finds it in one or the other.
                {
                    let mut history = recent::locked(&published.history);
                    for batch in &committed {
                        history.push(batch.clone());
                    }
                }
                published.revision.store(state.revision, Ordering::Release);
                for batch in committed {
                    let _ = published.live.send(batch);
                }
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = request.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                // The callers learn of the failure; after a failed commit redb refuses further
                // writes until the file is reopened, so later batches fail the same way.
                for request in batch {
                    let _ = request.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Applies one group of transactions in one durable redb commit. Returns each transaction's
/// outcome and the watch batches of those that committed.
fn commit_batch(
    db: &Database,
    state: &mut WriterState,
    batch: &[Request],
) -> Result<(Vec<TxnOutcome>, Vec<Arc<WatchBatch>>), StoreError> {
    let err = io("committing transactions");
    let mut wtx = db.begin_write().map_err(|e| err(e.into()))?;
    wtx.set_durability(Durability::Immediate).map_err(|e| err(e.into()))?;
    let mut revision = state.revision;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut committed = Vec::new();
    {
        let mut kv = wtx.open_table(KV).map_err(|e| err(e.into()))?;
        let mut meta = wtx.open_table(META).map_err(|e| err(e.into()))?;
        for request in batch {
            match apply(&request.txn, revision + 1, &mut RedbKeyspace(&mut kv))? {
                Applied::Conflict(key) => outcomes.push(TxnOutcome::Conflict { key }),
                // A transaction that writes nothing only checks its compares: it takes no
                // revision, as on etcd, since no watch event would ever announce one.
                Applied::Committed(_) if request.txn.ops.is_empty() => {
                    outcomes.push(TxnOutcome::Committed { revision })
                }
                Applied::Committed(events) => {
                    revision += 1;
                    outcomes.push(TxnOutcome::Committed { revision });
                    committed.push(Arc::new(WatchBatch { revision, events }));
                }
            }
        }
        if revision == state.revision {
            // Every transaction conflicted: nothing to write, so no fsync to wait for.
            drop((kv, meta));
            wtx.abort().map_err(|e| err(e.into()))?;
            return Ok((outcomes, committed));
        }
        meta.insert(META_REVISION, revision).map_err(|e| err(e.into()))?;
    }
    wtx.commit().map_err(|e| err(e.into()))?;
    state.revision = revision;
    Ok((outcomes, committed))
}

/// The `kv` table inside the writer's transaction, as the shared transaction logic sees it.
struct RedbKeyspace<'a, 'txn>(&'a mut Table<'txn, &'static str, &'static [u8]>);

impl Keyspace for RedbKeyspace<'_, '_> {
    fn revisions(&mut self, key: &str) -> Result<Option<(Revision, Revision)>, StoreError> {
        let entry = self.0.get(key).map_err(|e| io("reading a key")(e.into()))?;
        entry.map(|g| codec::decode_entry_revisions(key, g.value())).transpose()
    }

    fn put(&mut self, kv: &KeyValue) -> Result<(), StoreError> {
        let entry = codec::encode_entry(kv);
        self.0.insert(kv.key.as_str(), entry.as_slice()).map_err(|e| io("writing a key")(e.into()))?;
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<bool, StoreError> {
        let removed = self.0.remove(key).map_err(|e| io("deleting a key")(e.into()))?;
        Ok(removed.is_some())
    }
}

/// The current revision as recorded in the snapshot `rtx` reads.
fn snapshot_revision(rtx: &ReadTransaction) -> Result<Revision, StoreError> {
    let err = io("reading the store's revision");
    let meta = rtx.open_table(META).map_err(|e| err(e.into()))?;
    let value = meta.get(META_REVISION).map_err(|e| err(e.into()))?;
    value.map(|g| g.value()).ok_or_else(|| StoreError::Io(format!("store meta lacks {META_REVISION}")))
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.read(move |rtx| {
            let err = io("reading a key");
            let kv = rtx.open_table(KV).map_err(|e| err(e.into()))?;
            let entry = kv.get(key.as_str()).map_err(|e| err(e.into()))?;
            entry.map(|g| codec::decode_entry(&key, g.value())).transpose()
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |rtx| {
            let err = io("listing keys");
            let revision = snapshot_revision(rtx)?;
            let kv = rtx.open_table(KV).map_err(|e| err(e.into()))?;
            let mut kvs = Vec::new();
            for entry in kv.range::<&str>(prefix.as_str()..).map_err(|e| err(e.into()))? {
                let (key, value) = entry.map_err(|e| err(e.into()))?;
                let key = key.value();
                if !key.starts_with(&prefix) {
                    break;
                }
                kvs.push(codec::decode_entry(key, value.value())?);
            }
            Ok(Listing { revision, kvs })
        })
        .await
    }

    async fn scan(&self, prefix: &str, visit: &mut (dyn FnMut(Vec<KeyValue>) + Send)) -> Result<Revision, StoreError> {
        // One read transaction on a blocking thread streams batches through a short channel, so
        // the reader stays at most two batches ahead of the visitor.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<KeyValue>, StoreError>>(2);
        let prefix = prefix.to_owned();
        let revision = self.read(move |rtx| {
            let err = io("scanning keys");
            let revision = snapshot_revision(rtx)?;
            let kv = rtx.open_table(KV).map_err(|e| err(e.into()))?;
            let mut batch = Vec::with_capacity(crate::SCAN_BATCH);
            for entry in kv.range::<&str>(prefix.as_str()..).map_err(|e| err(e.into()))? {
                let (key, value) = entry.map_err(|e| err(e.into()))?;
                let key = key.value();
                if !key.starts_with(&prefix) {
                    break;
                }
                batch.push(codec::decode_entry(key, value.value())?);
                if batch.len() == crate::SCAN_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(crate::SCAN_BATCH));
                    if tx.blocking_send(Ok(full)).is_err() {
                        return Ok(revision);
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.blocking_send(Ok(batch));
            }
            Ok(revision)
        });
        let mut revision = std::pin::pin!(revision);
        let mut result = None;
        loop {
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(Ok(b)) => visit(b),
                    Some(Err(e)) => return Err(e),
                    None => break,
                },
                r = &mut revision, if result.is_none() => result = Some(r),
            }
        }
        match result {
            Some(r) => r,
            None => revision.await,
        }
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or(StoreError::Closed)?;
        requests.send(Request { txn, reply }).map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
        let live = self.live.subscribe();
        let history = SharedHistory(Arc::downgrade(&self.history));
        watch::start(history, live, prefix.to_owned(), after).await
    }

    fn revision(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Compare, Op};

    fn request(txn: Txn) -> Request {
        Request { txn, reply: oneshot::channel().0 }
    }

    fn open(dir: &tempfile::TempDir) -> (Database, WriterState) {
        let db = Database::create(dir.path().join("s.redb")).unwrap();
        let revision = init_tables(&db).unwrap();
        (db, WriterState { revision })
    }

    #[test]
    fn one_batch_sees_its_own_earlier_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut state) = open(&dir);
        let create = || Txn::new().when(Compare::absent("k")).then(Op::put("k", b"v".to_vec()));
        let batch = [
            request(create()),
            request(create()), // loses to the first: same batch, same compare
            request(Txn::new().when(Compare::unchanged("k", 1)).then(Op::delete("k"))),
            request(create()), // the key is absent again
        ];
        let (outcomes, committed) = commit_batch(&db, &mut state, &batch).unwrap();
        assert_eq!(
            outcomes,
            [
                TxnOutcome::Committed { revision: 1 },
                TxnOutcome::Conflict { key: "k".into() },
                TxnOutcome::Committed { revision: 2 },
                TxnOutcome::Committed { revision: 3 },
            ]
        );
        let revisions: Vec<_> = committed.iter().map(|b| b.revision).collect();
        assert_eq!(revisions, [1, 2, 3]);
        assert_eq!(state.revision, 3);
        let rtx = db.begin_read().unwrap();
        assert_eq!(snapshot_revision(&rtx).unwrap(), 3);
    }

    #[test]
    fn a_batch_of_conflicts_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut state) = open(&dir);
        let stale = Txn::new().when(Compare::unchanged("k", 7)).then(Op::put("k", b"v".to_vec()));
        let (outcomes, committed) = commit_batch(&db, &mut state, &[request(stale)]).unwrap();
        assert_eq!(outcomes, [TxnOutcome::Conflict { key: "k".into() }]);
        assert!(committed.is_empty());
        assert_eq!(state.revision, 0);
    }

    #[test]
    fn a_file_with_the_old_on_disk_log_loses_it_and_keeps_its_revision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let db = Database::create(&path).unwrap();
            let wtx = db.begin_write().unwrap();
            {
                wtx.open_table(KV).unwrap();
                let mut log = wtx.open_table(OLD_LOG).unwrap();
                log.insert(7, b"old".as_slice()).unwrap();
                let mut meta = wtx.open_table(META).unwrap();
                meta.insert(META_REVISION, 7).unwrap();
                meta.insert(OLD_META_OLDEST, 1).unwrap();
            }
            wtx.commit().unwrap();
        }
        let db = Database::create(&path).unwrap();
        assert_eq!(init_tables(&db).unwrap(), 7);
        let rtx = db.begin_read().unwrap();
        assert!(rtx.open_table(OLD_LOG).is_err(), "the old log is gone");
        let meta = rtx.open_table(META).unwrap();
        assert!(meta.get(OLD_META_OLDEST).unwrap().is_none());
    }
}
