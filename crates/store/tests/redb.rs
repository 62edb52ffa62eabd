//! What only the durable backend promises: everything acknowledged survives closing and
//! reopening the file, including the revision counter. The watch history does not: it is kept
//! in memory, and a reopened store serves watches from its current revision on.

use flotilla_store::{Compare, Op, RedbStore, Store, StoreError, Txn, TxnOutcome};

fn put(key: &str, value: &str) -> Op {
    Op::put(key, value.as_bytes().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_writes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let store = RedbStore::open(&path).unwrap();
        for i in 0..20 {
            store.txn(Txn::new().then(put(&format!("k/{i:02}"), &i.to_string()))).await.unwrap();
        }
        store.txn(Txn::new().then(Op::delete("k/00"))).await.unwrap();
        store.txn(Txn::new().then(put("k/01", "updated"))).await.unwrap();
        assert_eq!(store.revision(), 22);
    }
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.revision(), 22);
    let listing = store.list("k/").await.unwrap();
    assert_eq!(listing.revision, 22);
    assert_eq!(listing.kvs.len(), 19);
    let k1 = store.get("k/01").await.unwrap().unwrap();
    assert_eq!((&*k1.value, k1.create_revision, k1.mod_revision), (&b"updated"[..], 2, 22));
    assert_eq!(store.get("k/00").await.unwrap(), None);

    // Compares see the reopened state, and revisions carry on from where they were.
    let stale = Txn::new().when(Compare::unchanged("k/01", 2)).then(put("k/01", "lost"));
    assert_eq!(store.txn(stale).await.unwrap(), TxnOutcome::Conflict { key: "k/01".into() });
    let fresh = Txn::new().when(Compare::unchanged("k/01", 22)).then(put("k/01", "won"));
    assert_eq!(store.txn(fresh).await.unwrap(), TxnOutcome::Committed { revision: 23 });

    // The history began at the reopen: a watcher from before it lists again.
    match store.watch("k/", 0).await {
        Err(StoreError::Compacted { requested: 0, oldest: 23 }) => {}
        other => panic!("expected Compacted, got {:?}", other.map(|_| ())),
    }
    let mut watch = store.watch("k/", 22).await.unwrap();
    assert_eq!(watch.recv().await.unwrap().unwrap().revision, 23);
}

/// Opens the store again once the previous handle has let go of the file: a watcher's background
/// read may still hold the database for a moment after the store and the watch are dropped.
async fn reopen(path: &std::path::Path, history: u64) -> RedbStore {
    for _ in 0..100 {
        match RedbStore::open_with_history(path, history) {
            Ok(store) => return store,
            Err(e) if e.to_string().contains("already open") => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
    panic!("the store file stayed locked after its store was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_bounded_and_starts_afresh_at_each_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let store = RedbStore::open_with_history(&path, 5).unwrap();
        for i in 0..12 {
            store.txn(Txn::new().then(put(&format!("k{i}"), "x"))).await.unwrap();
        }
        assert!(matches!(store.watch("", 6).await, Err(StoreError::Compacted { requested: 6, oldest: 8 })));
        let mut watch = store.watch("", 7).await.unwrap();
        assert_eq!(watch.recv().await.unwrap().unwrap().revision, 8);
    }
    let store = reopen(&path, 100).await;
    assert!(matches!(store.watch("", 11).await, Err(StoreError::Compacted { requested: 11, oldest: 13 })));
    let mut watch = store.watch("", 12).await.unwrap();
    store.txn(Txn::new().then(put("last", "x"))).await.unwrap();
    assert_eq!(watch.recv().await.unwrap().unwrap().revision, 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let _store = RedbStore::open(&path).unwrap();
    assert!(matches!(RedbStore::open(&path), Err(StoreError::Io(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_store_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    std::fs::write(&path, b"definitely not a redb file, just some text").unwrap();
    assert!(matches!(RedbStore::open(&path), Err(StoreError::Io(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_visits_every_key_once_in_order_at_one_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("s.redb")).unwrap();
    let n = flotilla_store::SCAN_BATCH * 2 + 7;
    let mut txn = Txn::new();
    for i in 0..n {
        txn = txn.then(put(&format!("a/{i:06}"), "v"));
    }
    store.txn(txn.then(put("b/outside", "v"))).await.unwrap();
    let mut seen = Vec::new();
    let mut batches = 0;
    let revision = store
        .scan("a/", &mut |batch| {
            batches += 1;
            seen.extend(batch.into_iter().map(|kv| kv.key));
        })
        .await
        .unwrap();
    assert_eq!(revision, store.revision());
    assert_eq!(batches, 3);
    let expected: Vec<String> = (0..n).map(|i| format!("a/{i:06}")).collect();
    assert_eq!(seen, expected);
}
