//! The store's contract, checked against every backend: each scenario is a generic function over
//! `impl Store`, and `both!` runs it on a `MemoryStore`, on a `RedbStore` in a temporary
//! directory and on an `EtcdStore` on an etcd of its own (see `support`). Revisions are compared
//! with each other, never with fixed numbers: etcd's start at 1 and may skip.
//!
//! Two scenarios depend on the embedded stores' in-memory history bound (`both!(name, history)`)
//! and run on those only; `etcd.rs` checks the same on etcd with its compaction.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use flotilla_store::{
    Compare, Event, KeyValue, MemoryStore, Op, RedbStore, Revision, Store, StoreError, Txn, TxnOutcome, Watch,
    WatchBatch,
};

/// Generous bound on any single wait, so a broken watch fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

macro_rules! both {
    ($name:ident) => {
        both!(@mod $name, flotilla_store::DEFAULT_HISTORY, {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn etcd() {
                let etcd = crate::support::Etcd::start().await;
                super::$name(etcd.store().await).await;
            }
        });
    };
    ($name:ident, $history:expr) => {
        both!(@mod $name, $history, {});
    };
    (@mod $name:ident, $history:expr, { $($etcd:tt)* }) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(flotilla_store::MemoryStore::with_history($history)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redb() {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("store.redb");
                let store = flotilla_store::RedbStore::open_with_history(&path, $history).unwrap();
                super::$name(store).await;
            }

            $($etcd)*
        }
    };
}

fn put(key: &str, value: &str) -> Op {
    Op::put(key, value.as_bytes().to_vec())
}

async fn committed(store: &impl Store, txn: Txn) -> Revision {
    match store.txn(txn).await.unwrap() {
        TxnOutcome::Committed { revision } => revision,
        other => panic!("expected a commit, got {other:?}"),
    }
}

async fn next(watch: &mut Watch) -> Option<Result<WatchBatch, StoreError>> {
    tokio::time::timeout(PATIENCE, watch.recv()).await.expect("watch went silent")
}

/// Collects batches until one reaches `until`.
async fn collect_until(watch: &mut Watch, until: Revision) -> Vec<WatchBatch> {
    let mut batches = Vec::new();
    while batches.last().is_none_or(|b: &WatchBatch| b.revision < until) {
        batches.push(next(watch).await.expect("watch ended").expect("watch failed"));
    }
    batches
}

both!(create_if_absent);
async fn create_if_absent(store: impl Store) {
    let create = || Txn::new().when(Compare::absent("a")).then(put("a", "1"));
    let r1 = committed(&store, create()).await;
    assert!(r1 > 0);
    assert_eq!(store.txn(create()).await.unwrap(), TxnOutcome::Conflict { key: "a".into() });
    let kv = store.get("a").await.unwrap().unwrap();
    assert_eq!(kv, KeyValue { key: "a".into(), value: Arc::from(&b"1"[..]), create_revision: r1, mod_revision: r1 });
    assert_eq!(store.get("b").await.unwrap(), None);
}

both!(update_if_unchanged);
async fn update_if_unchanged(store: impl Store) {
    let r1 = committed(&store, Txn::new().then(put("a", "1"))).await;
    let r2 = committed(&store, Txn::new().when(Compare::unchanged("a", r1)).then(put("a", "2"))).await;
    assert!(r2 > r1);
    let kv = store.get("a").await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, &*kv.value), (r1, r2, &b"2"[..]));

    // A writer holding the old revision loses, and nothing it asked for is applied.
    let stale = Txn::new().when(Compare::unchanged("a", r1)).then(put("a", "3")).then(put("b", "x"));
    assert_eq!(store.txn(stale).await.unwrap(), TxnOutcome::Conflict { key: "a".into() });
    assert_eq!(store.get("b").await.unwrap(), None);

    // Every compare must hold; the failing key is named.
    let two = Txn::new().when(Compare::unchanged("a", r2)).when(Compare::absent("a")).then(put("c", "x"));
    assert_eq!(store.txn(two).await.unwrap(), TxnOutcome::Conflict { key: "a".into() });

    let r3 = committed(&store, Txn::new().when(Compare::unchanged("a", r2)).then(Op::delete("a"))).await;
    assert!(r3 > r2);
    assert_eq!(store.get("a").await.unwrap(), None);
    // Recreated after a delete, the key starts a new life.
    let r4 = committed(&store, Txn::new().when(Compare::absent("a")).then(put("a", "new"))).await;
    assert!(r4 > r3);
    let kv = store.get("a").await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (r4, r4));
}

both!(conflicts_consume_no_revision);
async fn conflicts_consume_no_revision(store: impl Store) {
    assert_eq!(store.revision(), 0);
    let r1 = committed(&store, Txn::new().then(put("a", "1"))).await;
    let mut watch = store.watch("", r1).await.unwrap();
    for _ in 0..5 {
        let outcome = store.txn(Txn::new().when(Compare::absent("a")).then(put("a", "2"))).await;
        assert_eq!(outcome.unwrap(), TxnOutcome::Conflict { key: "a".into() });
    }
    assert_eq!(store.revision(), r1);
    let r2 = committed(&store, Txn::new().then(put("b", "1"))).await;
    assert!(r2 > r1);
    assert_eq!(store.revision(), r2);
    // Nothing happened between the two commits.
    assert_eq!(next(&mut watch).await.unwrap().unwrap().revision, r2);
}

both!(a_txn_without_writes_checks_its_compares_and_takes_no_revision);
async fn a_txn_without_writes_checks_its_compares_and_takes_no_revision(store: impl Store) {
    let r1 = committed(&store, Txn::new().then(put("a", "1"))).await;
    let mut watch = store.watch("", r1).await.unwrap();
    let ok = store.txn(Txn::new().when(Compare::unchanged("a", r1))).await.unwrap();
    assert_eq!(ok, TxnOutcome::Committed { revision: r1 }, "the current revision, not a new one");
    let empty = store.txn(Txn::new()).await.unwrap();
    assert_eq!(empty, TxnOutcome::Committed { revision: r1 });
    let stale = store.txn(Txn::new().when(Compare::absent("a"))).await.unwrap();
    assert_eq!(stale, TxnOutcome::Conflict { key: "a".into() });
    assert_eq!(store.revision(), r1);
    // The next write is the first thing a watcher sees.
    let r2 = committed(&store, Txn::new().then(put("b", "1"))).await;
    assert!(r2 > r1);
    let seen = tokio::time::timeout(PATIENCE, next(&mut watch)).await.unwrap().unwrap().unwrap();
    assert_eq!(seen.revision, r2);
}

both!(txn_applies_all_ops_under_one_revision);
async fn txn_applies_all_ops_under_one_revision(store: impl Store) {
    let r1 = committed(&store, Txn::new().then(put("gone", "x"))).await;
    let r2 = committed(
        &store,
        Txn::new().then(put("x", "1")).then(put("y", "1")).then(Op::delete("gone")).then(Op::delete("never")),
    )
    .await;
    assert!(r2 > r1);
    let listing = store.list("").await.unwrap();
    let keys: Vec<_> = listing.kvs.iter().map(|kv| (kv.key.as_str(), kv.mod_revision)).collect();
    assert_eq!(keys, [("x", r2), ("y", r2)]);
    // Deleting an absent key changes nothing, yet the transaction still commits (with a new
    // revision or, on etcd, the current one).
    assert!(committed(&store, Txn::new().then(Op::delete("never"))).await >= r2);
    let mut watch = store.watch("", 0).await.unwrap();
    let batches = collect_until(&mut watch, r2).await;
    assert_eq!(batches.iter().map(|b| b.revision).collect::<Vec<_>>(), [r1, r2]);
    assert_eq!(batches[1].events.len(), 3, "{batches:?}");
    assert!(matches!(&batches[1].events[2], Event::Delete { key } if key == "gone"));
    // The delete of an absent key has no events, so the watcher never hears of it.
    let r4 = committed(&store, Txn::new().then(put("z", "1"))).await;
    assert_eq!(next(&mut watch).await.unwrap().unwrap().revision, r4);
}

both!(concurrent_writers_get_distinct_increasing_revisions);
async fn concurrent_writers_get_distinct_increasing_revisions(store: impl Store) {
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..40 {
                let txn = Txn::new().then(put(&format!("w{writer}/{i}"), "v"));
                revisions.push(committed(&*store, txn).await);
            }
            revisions
        }));
    }
    let mut all = BTreeSet::new();
    for task in tasks {
        let revisions = task.await.unwrap();
        assert!(revisions.windows(2).all(|w| w[0] < w[1]), "one writer's revisions go up");
        all.extend(revisions);
    }
    assert_eq!(all.len(), 320, "every commit has a revision of its own");
    assert_eq!(store.revision(), *all.last().unwrap());
    // And they are the revisions a watcher sees.
    let mut watch = store.watch("", 0).await.unwrap();
    let seen: BTreeSet<_> = collect_until(&mut watch, store.revision()).await.iter().map(|b| b.revision).collect();
    assert_eq!(seen, all);
}

both!(concurrent_compare_and_swap_loses_no_update);
async fn concurrent_compare_and_swap_loses_no_update(store: impl Store) {
    // Many writers increment one counter with read-modify-write; the ones that meet in a group
    // commit must see each other's effects, or increments would be lost.
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..15 {
                loop {
                    let current = store.get("counter").await.unwrap();
                    let (n, rev) = current.map_or((0, 0), |kv| {
                        (String::from_utf8(kv.value.to_vec()).unwrap().parse::<u64>().unwrap(), kv.mod_revision)
                    });
                    let txn =
                        Txn::new().when(Compare::unchanged("counter", rev)).then(put("counter", &(n + 1).to_string()));
                    match store.txn(txn).await.unwrap() {
                        TxnOutcome::Committed { .. } => break,
                        TxnOutcome::Conflict { .. } => conflicts += 1,
                    }
                }
            }
            conflicts
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let kv = store.get("counter").await.unwrap().unwrap();
    assert_eq!(&*kv.value, b"120");
    assert_eq!(store.revision(), kv.mod_revision);
    let mut watch = store.watch("", 0).await.unwrap();
    let batches = collect_until(&mut watch, kv.mod_revision).await;
    assert_eq!(batches.len(), 120, "only successful swaps consume revisions");
}

both!(list_by_prefix_in_key_order);
async fn list_by_prefix_in_key_order(store: impl Store) {
    let mut last = 0;
    for key in ["b/2", "a/1", "b/1", "b", "b0", "c/1", "b/10"] {
        last = committed(&store, Txn::new().then(put(key, key))).await;
    }
    let listing = store.list("b/").await.unwrap();
    let keys: Vec<_> = listing.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["b/1", "b/10", "b/2"]);
    // The listing reflects the store's revision, which etcd may have moved on outside our keys.
    assert!(listing.revision >= last);
    assert_eq!(store.list("").await.unwrap().kvs.len(), 7);
    assert!(store.list("zzz").await.unwrap().kvs.is_empty());
}

both!(list_is_a_consistent_snapshot);
async fn list_is_a_consistent_snapshot(store: impl Store) {
    // A writer keeps rewriting two keys together; every listing must show them equal and must
    // report a revision that covers what it shows.
    let store = Arc::new(store);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for i in 0..150 {
                let v = i.to_string();
                last = committed(&*store, Txn::new().then(put("pair/a", &v)).then(put("pair/b", &v))).await;
            }
            last
        })
    };
    let mut checked = 0;
    while !writer.is_finished() || checked == 0 {
        let listing = store.list("pair/").await.unwrap();
        if let [a, b] = &listing.kvs[..] {
            assert_eq!((&a.value, a.mod_revision), (&b.value, b.mod_revision));
            assert!(a.mod_revision <= listing.revision, "the listing covers what it shows");
            checked += 1;
        }
        tokio::task::yield_now().await;
    }
    let last = writer.await.unwrap();
    assert!(checked > 0);
    assert!(store.list("pair/").await.unwrap().revision >= last);
}

both!(watch_replays_then_follows_live_without_gap_or_duplicate);
async fn watch_replays_then_follows_live_without_gap_or_duplicate(store: impl Store) {
    let store = Arc::new(store);
    let mut all = BTreeSet::new();
    for i in 0..50 {
        all.insert(committed(&*store, Txn::new().then(put(&format!("k/{i}"), "before"))).await);
    }
    // Writers keep committing while the watch subscribes and replays, to hit the hand-over.
    let mut writers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..100 {
                revisions.push(committed(&*store, Txn::new().then(put(&format!("w{w}/{i}"), "during"))).await);
            }
            revisions
        }));
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut watch = store.watch("", 0).await.unwrap();
    for writer in writers {
        all.extend(writer.await.unwrap());
    }
    let batches = collect_until(&mut watch, *all.last().unwrap()).await;
    let revisions: Vec<_> = batches.iter().map(|b| b.revision).collect();
    assert_eq!(revisions, all.into_iter().collect::<Vec<_>>());
    for batch in &batches {
        assert_eq!(batch.events.len(), 1);
        let Event::Put(kv) = &batch.events[0] else { panic!("expected a put") };
        assert_eq!(kv.mod_revision, batch.revision);
        assert_eq!(store.get(&kv.key).await.unwrap().as_ref(), Some(kv));
    }
    // And it keeps going.
    let rev = committed(&*store, Txn::new().then(Op::delete("k/0"))).await;
    let batch = next(&mut watch).await.unwrap().unwrap();
    assert_eq!(batch, WatchBatch { revision: rev, events: vec![Event::Delete { key: "k/0".into() }] });
}

both!(watch_filters_by_prefix);
async fn watch_filters_by_prefix(store: impl Store) {
    let r1 = committed(&store, Txn::new().then(put("a/1", "x")).then(put("b/1", "x"))).await;
    committed(&store, Txn::new().then(put("b/2", "x"))).await;
    let mut watch = store.watch("a/", 0).await.unwrap();
    committed(&store, Txn::new().then(put("ab", "x"))).await; // "ab" is not under "a/"
    let r4 = committed(&store, Txn::new().then(Op::delete("a/1")).then(Op::delete("b/1"))).await;
    let first = next(&mut watch).await.unwrap().unwrap();
    assert_eq!(first.revision, r1);
    assert_eq!(first.events.iter().map(Event::key).collect::<Vec<_>>(), ["a/1"]);
    let second = next(&mut watch).await.unwrap().unwrap();
    assert_eq!(second, WatchBatch { revision: r4, events: vec![Event::Delete { key: "a/1".into() }] });
}

both!(watch_from_current_revision_sees_only_new_changes);
async fn watch_from_current_revision_sees_only_new_changes(store: impl Store) {
    for i in 0..5 {
        committed(&store, Txn::new().then(put(&format!("k{i}"), "x"))).await;
    }
    let listing = store.list("").await.unwrap();
    let mut watch = store.watch("", listing.revision).await.unwrap();
    let rev = committed(&store, Txn::new().then(put("new", "x"))).await;
    assert_eq!(next(&mut watch).await.unwrap().unwrap().revision, rev);
    // A watch from the future waits for it.
    let mut future = store.watch("", rev + 2).await.unwrap();
    let mut beyond = rev;
    for i in 1.. {
        beyond = committed(&store, Txn::new().then(put(&format!("r+{i}"), "x"))).await;
        if beyond > rev + 2 {
            break;
        }
    }
    assert_eq!(next(&mut future).await.unwrap().unwrap().revision, beyond);
    // The far future is not an overflow.
    let mut never = store.watch("", Revision::MAX).await.unwrap();
    committed(&store, Txn::new().then(put("r+4", "x"))).await;
    let quiet = tokio::time::timeout(Duration::from_millis(50), never.recv()).await;
    assert!(quiet.is_err(), "nothing is after the last revision");
}

both!(watch_from_compacted_revision_fails, 10);
async fn watch_from_compacted_revision_fails(store: impl Store) {
    for i in 0..30 {
        committed(&store, Txn::new().then(put(&format!("k{i}"), "x"))).await;
    }
    // Revisions 21..=30 are kept.
    match store.watch("", 5).await {
        Err(StoreError::Compacted { requested: 5, oldest: 21 }) => {}
        other => panic!("expected Compacted, got {:?}", other.map(|_| ())),
    }
    assert!(matches!(store.watch("", 19).await, Err(StoreError::Compacted { .. })));
    let mut watch = store.watch("", 20).await.unwrap();
    let revisions: Vec<_> = collect_until(&mut watch, 30).await.iter().map(|b| b.revision).collect();
    assert_eq!(revisions, (21..=30).collect::<Vec<_>>());
}

both!(slow_watcher_is_cut_off_not_waited_for, 50);
async fn slow_watcher_is_cut_off_not_waited_for(store: impl Store) {
    let store = Arc::new(store);
    let mut watch = store.watch("", 0).await.unwrap();
    // Nobody reads the watch while far more commits than any buffer holds go by; the writers
    // must not stall on it.
    let mut writers = Vec::new();
    for w in 0..32 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..200 {
                committed(&*store, Txn::new().then(put(&format!("w{w}/{i}"), "x"))).await;
            }
        }));
    }
    for writer in writers {
        tokio::time::timeout(PATIENCE, writer).await.expect("writers stalled").unwrap();
    }
    let mut last = 0;
    loop {
        match next(&mut watch).await {
            Some(Ok(batch)) => {
                assert_eq!(batch.revision, last + 1, "no gap before the cut-off");
                last = batch.revision;
            }
            Some(Err(StoreError::Compacted { .. })) => break,
            other => panic!("expected Compacted, got {other:?}"),
        }
    }
    assert!(next(&mut watch).await.is_none(), "the stream ends after the error");
    assert!(last < 6400);
}

#[tokio::test]
async fn memory_store_clones_share_data() {
    let a = MemoryStore::new();
    let b = a.clone();
    committed(&a, Txn::new().then(put("k", "v"))).await;
    assert!(b.get("k").await.unwrap().is_some());
    assert_eq!(b.revision(), 1);
}

#[tokio::test]
async fn dropped_redb_store_ends_its_watches() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("s.redb")).unwrap();
    let mut watch = store.watch("", 0).await.unwrap();
    drop(store);
    assert_eq!(next(&mut watch).await, Some(Err(StoreError::Closed)));
    assert_eq!(next(&mut watch).await, None);
}
