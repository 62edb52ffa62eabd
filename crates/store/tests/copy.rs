//! Copying a store into another: between any two backends, never into a store that holds keys.

mod support;

use flotilla_store::{copy, leader_key, CopyError, MemoryStore, Op, RedbStore, Store, Txn, COPY_BATCH_KEYS};

/// A source with more keys than one destination transaction takes, some of them large.
async fn fill(store: &impl Store) -> usize {
    let mut keys = 0;
    for chunk in 0..5 {
        let mut txn = Txn::new();
        for i in 0..60 {
            let value = if i % 20 == 0 { vec![chunk as u8; 300_000] } else { format!("{chunk}/{i}").into_bytes() };
            txn = txn.then(Op::put(format!("k/{chunk}/{i:02}"), value));
            keys += 1;
        }
        store.txn(txn).await.unwrap();
    }
    keys
}

async fn same_keys(a: &dyn Store, b: &dyn Store) {
    let (a, b) = (a.list("").await.unwrap().kvs, b.list("").await.unwrap().kvs);
    let pairs = |kvs: Vec<flotilla_store::KeyValue>| kvs.into_iter().map(|kv| (kv.key, kv.value)).collect::<Vec<_>>();
    assert_eq!(pairs(a), pairs(b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_to_redb_copies_every_key_and_refuses_a_second_time() {
    let memory = MemoryStore::new();
    let keys = fill(&memory).await;
    let dir = tempfile::tempdir().unwrap();
    let redb = RedbStore::open(&dir.path().join("s.redb")).unwrap();
    let report = copy(&memory, &redb).await.unwrap();
    assert_eq!(report.keys, keys as u64);
    // The byte bound splits batches the key bound alone would not.
    assert!(report.transactions > keys.div_ceil(COPY_BATCH_KEYS) as u64, "{report:?}");
    assert_eq!(report.source_revision, memory.revision());
    same_keys(&memory, &redb).await;

    match copy(&memory, &redb).await {
        Err(e @ CopyError::DestinationNotEmpty { .. }) => assert!(e.to_string().contains("not empty"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_to_etcd_and_back_within_etcd_limits() {
    let etcd = support::Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let redb = RedbStore::open(&dir.path().join("s.redb")).unwrap();
    let keys = fill(&redb).await;
    // A leader key (as an etcd store would have) is not copied: it would name a leader forever.
    redb.txn(Txn::new().then(Op::put(leader_key("loops"), b"gone".to_vec()))).await.unwrap();

    let store = etcd.store().await;
    let report = copy(&redb, &store).await.unwrap();
    assert_eq!((report.keys, report.skipped), (keys as u64, 1));
    assert!(store.get(&leader_key("loops")).await.unwrap().is_none());
    redb.txn(Txn::new().then(Op::delete(leader_key("loops")))).await.unwrap();
    same_keys(&redb, &store).await;

    let back = MemoryStore::new();
    assert_eq!(copy(&store, &back).await.unwrap().keys, keys as u64);
    same_keys(&store, &back).await;
    assert!(matches!(copy(&back, &store).await, Err(CopyError::DestinationNotEmpty { .. })));
}
