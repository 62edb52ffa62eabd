//! Property: any sequence of transactions gives the same outcomes, final state, revisions and
//! change history on `RedbStore` as on `MemoryStore`, so tests written against the in-memory
//! store speak for the durable one; and the same outcomes and final state on `EtcdStore`.

mod support;

use flotilla_store::{Compare, MemoryStore, Op, RedbStore, Revision, Store, StoreError, Txn, TxnOutcome, WatchBatch};
use proptest::prelude::*;
use std::collections::HashMap;
use std::time::Duration;

const KEYS: [&str; 5] = ["a", "b", "a/x", "a/y", "ab"];
const HISTORY: u64 = 8;

#[derive(Debug, Clone)]
enum Expect {
    Absent,
    /// Whatever the key's mod revision is when the transaction is sent: usually succeeds.
    Current,
    Exactly(Revision),
}

#[derive(Debug, Clone)]
enum OpSpec {
    Put(usize, Vec<u8>),
    Delete(usize),
}

#[derive(Debug, Clone)]
struct TxnSpec {
    compares: Vec<(usize, Expect)>,
    ops: Vec<OpSpec>,
}

fn txn_spec() -> impl Strategy<Value = TxnSpec> {
    let key = 0..KEYS.len();
    let expect = prop_oneof![Just(Expect::Absent), Just(Expect::Current), (0u64..12).prop_map(Expect::Exactly)];
    let op = prop_oneof![
        3 => (key.clone(), proptest::collection::vec(any::<u8>(), 0..4)).prop_map(|(k, v)| OpSpec::Put(k, v)),
        1 => key.clone().prop_map(OpSpec::Delete),
    ];
    (proptest::collection::vec((key, expect), 0..3), proptest::collection::vec(op, 0..4))
        .prop_map(|(compares, ops)| TxnSpec { compares, ops })
}

/// Turns a spec into a transaction, resolving `Current` against `store`.
async fn resolve(spec: &TxnSpec, store: &impl Store) -> Txn {
    let mut txn = Txn::new();
    for (key, expect) in &spec.compares {
        let key = KEYS[*key];
        let revision = match expect {
            Expect::Absent => 0,
            Expect::Exactly(r) => *r,
            Expect::Current => store.get(key).await.unwrap().map_or(0, |kv| kv.mod_revision),
        };
        txn = txn.when(Compare::unchanged(key, revision));
    }
    for op in &spec.ops {
        txn = txn.then(match op {
            OpSpec::Put(key, value) => Op::put(KEYS[*key], value.clone()),
            OpSpec::Delete(key) => Op::delete(KEYS[*key]),
        });
    }
    txn
}

/// Everything a store can say about its state, for comparing two of them. Ends by committing a
/// sentinel under every watched prefix, so each watch knows when it has seen all there is.
async fn snapshot(
    store: &impl Store,
) -> (Revision, Vec<flotilla_store::KeyValue>, Vec<Vec<Result<WatchBatch, StoreError>>>) {
    let listing = store.list("").await.unwrap();
    assert_eq!(listing.revision, store.revision());
    let sentinel = match store.txn(Txn::new().then(Op::put("a/~end", vec![]))).await.unwrap() {
        TxnOutcome::Committed { revision } => revision,
        other => panic!("unconditional txn failed: {other:?}"),
    };
    let recent = sentinel.saturating_sub(HISTORY);
    let mut histories = Vec::new();
    for (prefix, after) in [("a", 0), ("a", recent), ("a/", recent), ("", recent)] {
        let mut history = Vec::new();
        match store.watch(prefix, after).await {
            Err(e) => history.push(Err(e)),
            Ok(mut watch) => loop {
                let item = tokio::time::timeout(Duration::from_secs(30), watch.recv()).await;
                let item = item.expect("watch went silent").expect("watch ended");
                let done = item.as_ref().map_or(true, |b| b.revision == sentinel);
                history.push(item);
                if done {
                    break;
                }
            },
        }
        histories.push(history);
    }
    (listing.revision, listing.kvs, histories)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn redb_and_memory_agree(specs in proptest::collection::vec(txn_spec(), 1..24)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let redb = RedbStore::open_with_history(&dir.path().join("s.redb"), HISTORY).unwrap();
            let memory = MemoryStore::with_history(HISTORY);
            let mut last = 0;
            for spec in &specs {
                let txn = resolve(spec, &memory).await;
                let writes = !txn.ops.is_empty();
                let expected = memory.txn(txn.clone()).await.unwrap();
                let actual = redb.txn(txn).await.unwrap();
                assert_eq!(actual, expected, "{spec:?}");
                match actual {
                    TxnOutcome::Committed { revision } if writes => {
                        assert_eq!(revision, last + 1, "revisions are dense");
                        last = revision;
                    }
                    TxnOutcome::Committed { revision } => assert_eq!(revision, last, "no writes, no revision"),
                    TxnOutcome::Conflict { .. } => {}
                }
            }
            assert_eq!(snapshot(&redb).await, snapshot(&memory).await);
        });
    }
}

/// The same transactions on etcd give the same outcomes and the same keys and values as on
/// `MemoryStore`, with revisions translated: etcd numbers them its own way, takes none for a
/// transaction that changes nothing (deletes of absent keys), and coalesces ops on one key (so a
/// key deleted and put again in one transaction keeps its create revision; create revisions are
/// not compared). One etcd serves every case, each under its own prefix.
#[test]
fn etcd_and_memory_agree() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let etcd = runtime.block_on(support::Etcd::start());
    let config = ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = proptest::collection::vec(txn_spec(), 1..24);
    let result = runner.run(&strategy, |specs| {
        runtime.block_on(async {
            let store = etcd.store().await;
            let memory = MemoryStore::new();
            // Memory revision -> etcd revision, for every memory commit that etcd also numbered.
            let mut revisions: HashMap<Revision, Revision> = HashMap::from([(0, 0)]);
            for spec in &specs {
                let txn = resolve(spec, &memory).await;
                let translated = translate(&txn, &revisions);
                let expected = memory.txn(txn).await.unwrap();
                let before = store.revision();
                let actual = store.txn(translated).await.unwrap();
                match (&expected, &actual) {
                    (TxnOutcome::Committed { revision: m }, TxnOutcome::Committed { revision: e }) => {
                        if *e > before {
                            revisions.insert(*m, *e);
                        }
                    }
                    (TxnOutcome::Conflict { key: m }, TxnOutcome::Conflict { key: e }) => assert_eq!(m, e, "{spec:?}"),
                    _ => panic!("{spec:?}: memory {expected:?}, etcd {actual:?}"),
                }
            }
            let on_memory: Vec<_> = memory
                .list("")
                .await
                .unwrap()
                .kvs
                .into_iter()
                .map(|kv| (kv.key, kv.value, revisions.get(&kv.mod_revision).copied()))
                .collect();
            let on_etcd: Vec<_> = store
                .list("")
                .await
                .unwrap()
                .kvs
                .into_iter()
                .map(|kv| (kv.key, kv.value, Some(kv.mod_revision)))
                .collect();
            assert_eq!(on_etcd, on_memory);
        });
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// `txn` with its compares' memory revisions as etcd's; one etcd never numbered stands for a
/// revision that no key of etcd's can have (as no key of memory's has it).
fn translate(txn: &Txn, revisions: &HashMap<Revision, Revision>) -> Txn {
    let mut out = Txn { compares: Vec::new(), ops: txn.ops.clone() };
    for compare in &txn.compares {
        let Compare::ModRevision { key, revision } = compare else { unreachable!("the specs compare mod revisions") };
        let revision = revisions.get(revision).copied().unwrap_or(i64::MAX as Revision - 1);
        out.compares.push(Compare::unchanged(key.clone(), revision));
    }
    out
}
