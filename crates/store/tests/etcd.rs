//! What only the etcd backend has to show: elections, compaction, prefixes sharing one etcd,
//! revisions that skip because of other clients, etcd's limits, and connecting to nothing.
//! The contract every backend keeps is in `semantics.rs`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use flotilla_store::{
    leader_key, Compare, EtcdOptions, EtcdStore, Event, Op, Revision, Store, StoreError, Txn, TxnOutcome, Watch,
    WatchBatch,
};
use support::Etcd;

const PATIENCE: Duration = Duration::from_secs(30);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_candidate_leads_and_the_next_takes_over_with_a_new_fence() {
    let etcd = Etcd::start().await;
    let options = etcd.options();
    let a = EtcdStore::connect(options.clone()).await.unwrap();
    let b = EtcdStore::connect(options).await.unwrap();

    let first = tokio::time::timeout(PATIENCE, a.campaign("loops", "server-a")).await.unwrap().unwrap();
    assert!(first.is_held());
    let fence = first.fence().cloned().expect("etcd terms are fenced");
    assert_eq!(fence.key(), leader_key("loops"));
    assert_eq!(&*a.get(&leader_key("loops")).await.unwrap().unwrap().value, b"server-a");

    // b waits while a leads.
    let b2 = b.clone();
    let mut second = tokio::spawn(async move { b2.campaign("loops", "server-b").await });
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut second).await.is_err(), "b must wait");
    // a's fenced writes go through meanwhile.
    committed(&a, Txn::new().when(fence.clone()).then(put("work", "by a"))).await;

    // a steps down (a clean shutdown drops its term): b takes over.
    drop(first);
    let second = tokio::time::timeout(PATIENCE, second).await.expect("b never took over").unwrap().unwrap();
    assert!(second.is_held());
    let new_fence = second.fence().cloned().unwrap();
    assert_ne!(new_fence, fence);
    assert_eq!(&*b.get(&leader_key("loops")).await.unwrap().unwrap().value, b"server-b");

    // A write a still makes under its old term is refused.
    let late = a.txn(Txn::new().when(fence).then(put("work", "late"))).await.unwrap();
    assert_eq!(late, TxnOutcome::Conflict { key: leader_key("loops") });
    committed(&b, Txn::new().when(new_fence).then(put("work", "by b"))).await;
    assert_eq!(&*a.get("work").await.unwrap().unwrap().value, b"by b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_gone_learns_its_term_ended_and_another_leads() {
    let etcd = Etcd::start().await;
    let options = etcd.options();
    let a = EtcdStore::connect(options.clone()).await.unwrap();
    let b = EtcdStore::connect(options.clone()).await.unwrap();
    let term = a.campaign("loops", "a").await.unwrap();
    let b2 = b.clone();
    let waiting = tokio::spawn(async move { b2.campaign("loops", "b").await });

    // What a crashed or partitioned leader looks like to etcd: its lease ends.
    let mut raw = etcd.client().await;
    let leader = raw.get(format!("{}{}", options.prefix, leader_key("loops")), None).await.unwrap();
    let lease = leader.kvs()[0].lease();
    raw.lease_revoke(lease).await.unwrap();

    tokio::time::timeout(PATIENCE, term.lost()).await.expect("the old leader never learned");
    assert!(!term.is_held());
    let next_term = tokio::time::timeout(PATIENCE, waiting).await.unwrap().unwrap().unwrap();
    assert!(next_term.is_held());
    let outcome = a.txn(Txn::new().when(term.fence().cloned().unwrap()).then(put("x", "1"))).await.unwrap();
    assert!(matches!(outcome, TxnOutcome::Conflict { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_reach_etcd_ends_its_term_on_its_own() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;
    let term = store.campaign("loops", "a").await.unwrap();
    assert!(term.is_held());
    // etcd stops answering: keep-alives go unconfirmed, so within the lease's TTL the leader must
    // assume another may have taken over.
    etcd.signal("STOP");
    tokio::time::timeout(PATIENCE, term.lost()).await.expect("the term outlived its lease");
    assert!(!term.is_held());
    // Connecting to a member that accepts connections but never answers fails, and says so.
    match EtcdStore::connect(etcd.options()).await {
        Err(StoreError::Io(e)) => assert!(e.contains("no etcd endpoint answered"), "{e}"),
        other => panic!("expected a clear failure, got {:?}", other.map(|_| ())),
    }
    etcd.signal("CONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_trims_history_and_old_watches_get_compacted() {
    let etcd = Etcd::start().await;
    let store = etcd.compacting_store(5).await;
    let mut first = 0;
    for i in 0..30 {
        let r = committed(&store, Txn::new().then(put(&format!("k{i}"), "x"))).await;
        first = if first == 0 { r } else { first };
    }
    // The compactor runs every 100 ms; wait until it has caught up with the writes.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let oldest = loop {
        match store.watch("", first).await {
            Err(StoreError::Compacted { requested, oldest }) => {
                assert_eq!(requested, first);
                break oldest;
            }
            Ok(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("expected Compacted, got {:?}", other.map(|_| ())),
        }
    };
    assert!(oldest > first + 1, "oldest kept {oldest}");
    // From the oldest kept revision on, the history is whole.
    let mut watch = store.watch("", oldest - 1).await.unwrap();
    let batch = next(&mut watch).await.unwrap().unwrap();
    assert!(batch.revision >= oldest && batch.revision <= store.revision());
    // Everything is still there to list.
    assert_eq!(store.list("").await.unwrap().kvs.len(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_etcd_cancels_for_compaction_yields_compacted_and_ends() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;
    let r1 = committed(&store, Txn::new().then(put("a", "1"))).await;
    // Nobody reads this watch while etcd compacts past it.
    let mut watch = store.watch("", r1 - 1).await.unwrap();
    let mut last = r1;
    for i in 0..20 {
        last = committed(&store, Txn::new().then(put(&format!("k{i}"), "x"))).await;
    }
    let mut raw = etcd.client().await;
    raw.compact(i64::try_from(last).unwrap(), None).await.unwrap();
    // What it delivers is gap-free; it either got everything before the compaction reached it,
    // or ends with Compacted.
    let mut seen = Vec::new();
    loop {
        match next(&mut watch).await {
            Some(Ok(batch)) => {
                seen.push(batch.revision);
                if batch.revision == last {
                    break;
                }
            }
            Some(Err(StoreError::Compacted { .. })) => {
                assert!(next(&mut watch).await.is_none(), "the stream ends after the error");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    // A new watch from before the compaction fails at once.
    assert!(matches!(store.watch("", r1).await, Err(StoreError::Compacted { oldest, .. }) if oldest == last));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_keep_two_stores_apart_on_one_etcd() {
    let etcd = Etcd::start().await;
    let a = etcd.store().await;
    let b = etcd.store().await;
    assert_ne!(a.prefix(), b.prefix());
    let mut b_watch = b.watch("", 0).await.unwrap();
    committed(&a, Txn::new().then(put("k", "from a"))).await;
    assert_eq!(b.get("k").await.unwrap(), None);
    // The same key name lives separately in each.
    assert!(matches!(
        b.txn(Txn::new().when(Compare::absent("k")).then(put("k", "from b"))).await.unwrap(),
        TxnOutcome::Committed { .. }
    ));
    assert_eq!(&*a.get("k").await.unwrap().unwrap().value, b"from a");
    assert_eq!(a.list("").await.unwrap().kvs.len(), 1);
    let batch = next(&mut b_watch).await.unwrap().unwrap();
    assert_eq!(batch.events.len(), 1);
    assert!(matches!(&batch.events[0], Event::Put(kv) if kv.key == "k" && &*kv.value == b"from b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_never_runs_ahead_of_what_a_watch_delivers() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;
    let mut raw = etcd.client().await;
    let outside = |i: i32| format!("elsewhere/{i}");
    let r1 = committed(&store, Txn::new().then(put("a", "1"))).await;
    for i in 0..5 {
        raw.put(outside(i), "x", None).await.unwrap();
    }
    // etcd's revision moved on; ours did not.
    let listing = store.list("").await.unwrap();
    assert!(listing.revision > r1);
    assert_eq!(store.revision(), r1);
    // A transaction that changes nothing answers our revision, not etcd's.
    assert_eq!(store.txn(Txn::new().then(Op::delete("absent"))).await.unwrap(), TxnOutcome::Committed { revision: r1 });
    assert_eq!(
        store.txn(Txn::new().when(Compare::unchanged("a", r1))).await.unwrap(),
        TxnOutcome::Committed { revision: r1 }
    );

    // Another client beats us on a key of ours: the conflict teaches us its revision.
    let ours = format!("{}a", store.prefix());
    let theirs = raw.put(ours.clone(), "2", None).await.unwrap().header().unwrap().revision();
    for i in 5..10 {
        raw.put(outside(i), "x", None).await.unwrap();
    }
    let lost = store.txn(Txn::new().when(Compare::unchanged("a", r1)).then(put("a", "3"))).await.unwrap();
    assert_eq!(lost, TxnOutcome::Conflict { key: "a".into() });
    assert_eq!(store.revision(), theirs as Revision);

    // A delete by another client reaches it too (through the store's delete watcher).
    let deleted = raw.delete(ours, None).await.unwrap().header().unwrap().revision() as Revision;
    raw.put(outside(11), "x", None).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while store.revision() < deleted {
        assert!(tokio::time::Instant::now() < deadline, "the delete never raised the revision");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.revision(), deleted);

    // And a watch from the start reaches exactly that revision: waiting for it never hangs.
    let mut watch = store.watch("", 0).await.unwrap();
    let mut reached = 0;
    while reached < store.revision() {
        reached = next(&mut watch).await.unwrap().unwrap().revision;
    }
    assert_eq!(reached, deleted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_on_one_key_coalesce_and_etcd_limits_are_named() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;
    let r =
        committed(&store, Txn::new().then(put("a", "1")).then(Op::delete("a")).then(put("a", "2")).then(put("b", "1")))
            .await;
    let a = store.get("a").await.unwrap().unwrap();
    assert_eq!((&*a.value, a.mod_revision), (&b"2"[..], r));
    committed(&store, Txn::new().then(put("b", "2")).then(Op::delete("b"))).await;
    assert_eq!(store.get("b").await.unwrap(), None);

    let mut many = Txn::new();
    for i in 0..200 {
        many = many.then(put(&format!("many/{i}"), "x"));
    }
    match store.txn(many).await {
        Err(StoreError::Io(e)) => assert!(e.contains("--max-txn-ops"), "{e}"),
        other => panic!("expected an error naming the limit, got {other:?}"),
    }
    let big = Txn::new().then(Op::put("big", vec![7u8; 2 * 1024 * 1024]));
    match store.txn(big).await {
        Err(StoreError::Io(e)) => assert!(e.contains("--max-request-bytes"), "{e}"),
        other => panic!("expected an error naming the limit, got {other:?}"),
    }
    assert!(store.list("many/").await.unwrap().kvs.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_holds_back_only_itself() {
    let etcd = Etcd::start().await;
    let store = Arc::new(etcd.store().await);
    let mut watch = store.watch("", 0).await.unwrap();
    let value = "v".repeat(2048);
    let mut writers = Vec::new();
    for w in 0..16 {
        let (store, value) = (store.clone(), value.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..40 {
                committed(&*store, Txn::new().then(put(&format!("w{w}/{i}"), &value))).await;
            }
        }));
    }
    for writer in writers {
        tokio::time::timeout(PATIENCE, writer).await.expect("writers stalled").unwrap();
    }
    // Nothing was read meanwhile; now every revision arrives, in order, none lost.
    let last = store.revision();
    let mut revisions = Vec::new();
    while revisions.last().is_none_or(|r| *r < last) {
        revisions.push(next(&mut watch).await.unwrap().unwrap().revision);
    }
    assert_eq!(revisions.len(), 640);
    assert!(revisions.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_pages_through_many_keys_at_one_revision() {
    let etcd = Etcd::start().await;
    let store = Arc::new(etcd.store().await);
    let total = 2 * flotilla_store::SCAN_BATCH + 100;
    for chunk in 0..total.div_ceil(100) {
        let mut txn = Txn::new();
        for i in chunk * 100..((chunk + 1) * 100).min(total) {
            txn = txn.then(put(&format!("scan/{i:05}"), "x"));
        }
        committed(&*store, txn).await;
    }
    // A writer adds keys (sorting after the rest) while the scan pages through.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                committed(&*store, Txn::new().then(put(&format!("scan/~{i:03}"), "late"))).await;
            }
        })
    };
    let mut pages = Vec::new();
    let revision = store.scan("scan/", &mut |page| pages.push(page)).await.unwrap();
    writer.await.unwrap();
    assert!(pages.len() >= 3 && pages.iter().all(|p| p.len() <= flotilla_store::SCAN_BATCH));
    let kvs: Vec<_> = pages.into_iter().flatten().collect();
    assert!(kvs.windows(2).all(|w| w[0].key < w[1].key), "key order, no repeats");
    assert!(kvs.iter().all(|kv| kv.mod_revision <= revision), "nothing newer than the scan's revision");
    let late = kvs.iter().filter(|kv| kv.key.starts_with("scan/~")).count();
    assert_eq!(kvs.len(), total + late);
    assert_eq!(store.list("scan/").await.unwrap().kvs.len(), total + 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_store_ends_its_watches() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;
    let mut watch = store.watch("", 0).await.unwrap();
    drop(store);
    assert_eq!(next(&mut watch).await, Some(Err(StoreError::Closed)));
    assert_eq!(next(&mut watch).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_no_etcd_fails_clearly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options = EtcdOptions::parse(&format!("etcd://127.0.0.1:{port}")).unwrap();
    let outcome = tokio::time::timeout(PATIENCE, EtcdStore::connect(options)).await.expect("connect hung");
    match outcome {
        Err(StoreError::Io(e)) => assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}"),
        other => panic!("expected an error, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_private_ca() {
    let etcd = Etcd::start_tls().await;
    let url = etcd.endpoint.replace("https://", "etcds://");
    let tls = etcd.tls.clone().unwrap();
    let options = EtcdOptions {
        ca_cert: Some(tls.ca.clone()),
        client_cert: Some(tls.cert.clone()),
        client_key: Some(tls.key.clone()),
        ..EtcdOptions::parse(&url).unwrap()
    };
    let store = EtcdStore::connect(options.clone()).await.unwrap();
    let r = committed(&store, Txn::new().then(put("k", "over tls"))).await;
    let mut watch = store.watch("", r - 1).await.unwrap();
    assert_eq!(next(&mut watch).await.unwrap().unwrap().revision, r);

    // Without a client certificate etcd turns us away, and connect says so.
    let anonymous = EtcdOptions { client_cert: None, client_key: None, ..options };
    assert!(matches!(EtcdStore::connect(anonymous).await, Err(StoreError::Io(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_and_password_when_etcd_wants_them() {
    let etcd = Etcd::start().await;
    let mut raw = etcd.client().await;
    raw.user_add("root", "secret", None).await.unwrap();
    raw.user_grant_role("root", "root").await.unwrap();
    raw.auth_enable().await.unwrap();

    let options = etcd.options();
    let store = EtcdStore::connect(EtcdOptions {
        user: Some("root".into()),
        password: Some("secret".into()),
        ..options.clone()
    })
    .await
    .unwrap();
    let r = committed(&store, Txn::new().then(put("k", "v"))).await;
    let mut watch = store.watch("", r - 1).await.unwrap();
    assert_eq!(next(&mut watch).await.unwrap().unwrap().revision, r);
    let term = store.campaign("loops", "a").await.unwrap();
    assert!(term.is_held());

    let wrong = EtcdOptions { user: Some("root".into()), password: Some("guess".into()), ..options.clone() };
    assert!(matches!(EtcdStore::connect(wrong).await, Err(StoreError::Io(_))));
    assert!(matches!(EtcdStore::connect(options).await, Err(StoreError::Io(_))), "anonymous reads are refused");
}

/// Not a check but a measurement, printed (run with `--nocapture` to see it): how long a put
/// takes on one local etcd, one at a time and 64 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_latency_on_a_local_etcd() {
    let etcd = Etcd::start().await;
    let store = Arc::new(etcd.store().await);
    let started = std::time::Instant::now();
    for i in 0..1000 {
        committed(&*store, Txn::new().then(put(&format!("seq/{i}"), "value"))).await;
    }
    let sequential = started.elapsed();
    let started = std::time::Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (store, gate) = (store.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            committed(&*store, Txn::new().then(put(&format!("par/{i}"), "value"))).await
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let concurrent = started.elapsed();
    println!(
        "etcd txn latency: 1000 sequential puts in {sequential:?} ({:?} each); 1000 puts 64 in flight in {concurrent:?} ({:.0}/s)",
        sequential / 1000,
        1000.0 / concurrent.as_secs_f64()
    );
    assert_eq!(store.list("seq/").await.unwrap().kvs.len() + store.list("par/").await.unwrap().kvs.len(), 2000);
}
