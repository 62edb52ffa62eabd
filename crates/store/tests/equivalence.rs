//! Property: any sequence of transactions gives the same outcomes, final state, revisions and
//! change history on `RedbStore` as on `MemoryStore`, so tests written against the in-memory
//! store speak for the durable one.

use flotilla_store::{Compare, MemoryStore, Op, RedbStore, Revision, Store, StoreError, Txn, TxnOutcome, WatchBatch};
use proptest::prelude::*;
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
