//! Crash safety: a writer process is killed with SIGKILL in the middle of a stream of
//! transactions, and everything it had acknowledged must be in the store when it is reopened.
//!
//! The test binary plays both parts. `acknowledged_writes_survive_sigkill` re-executes this same
//! binary with `CRASH_CHILD_ENV` set, which makes `crash_writer_child` (a no-op otherwise) write
//! from several tasks and print `ACK <key> <revision>` after each commit. The parent reads acks,
//! kills the child without warning, reopens the file and checks.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_store::{Op, RedbStore, Revision, Store, Txn, TxnOutcome};

const CRASH_CHILD_ENV: &str = "FLOTILLA_STORE_CRASH_CHILD_DIR";
const WRITERS: usize = 8;
/// Two ack lines per transaction: about 2,000 acknowledged transactions before the kill.
const ACKS_BEFORE_KILL: usize = 4_000;
/// The child stops by itself after this long, should the parent never kill it.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

fn store_path(dir: &str) -> std::path::PathBuf {
    std::path::Path::new(dir).join("store.redb")
}

#[test]
fn crash_writer_child() {
    let Ok(dir) = std::env::var(CRASH_CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let store = std::sync::Arc::new(RedbStore::open(&store_path(&dir)).unwrap());
        let deadline = Instant::now() + CHILD_LIFETIME;
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < deadline {
                    // A fresh key each time, and one key per writer that is overwritten over and
                    // over, whose later revisions must win.
                    let key = format!("w{w}/{i:08}");
                    let counter = format!("counter/{w}");
                    let txn = Txn::new()
                        .then(Op::put(key.clone(), i.to_le_bytes().to_vec()))
                        .then(Op::put(counter.clone(), i.to_le_bytes().to_vec()));
                    let TxnOutcome::Committed { revision } = store.txn(txn).await.unwrap() else {
                        panic!("unconditional txn conflicted");
                    };
                    // The ack goes straight to the pipe, one line per write, as a server's
                    // response would go out only after the commit.
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {key} {revision}\nACK {counter} {revision}").unwrap();
                    out.flush().unwrap();
                    i += 1;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if std::env::var_os(CRASH_CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir_str = dir.path().to_str().unwrap().to_owned();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_writer_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, &dir_str)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    let mut acked: BTreeMap<String, Revision> = BTreeMap::new();
    let mut acks = 0;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acks < ACKS_BEFORE_KILL {
        let line = lines.next().expect("the child stopped before enough acks").unwrap();
        let Some(rest) = line.strip_prefix("ACK ") else {
            continue;
        };
        let (key, revision) = rest.split_once(' ').unwrap();
        let revision: Revision = revision.parse().unwrap();
        let seen = acked.entry(key.to_owned()).or_default();
        *seen = (*seen).max(revision);
        acks += 1;
    }
    child.kill().unwrap(); // SIGKILL: no destructors, no flushing, mid-batch.
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished: {status:?}");
    drop(lines);

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let store = RedbStore::open(&store_path(&dir_str)).unwrap();
        let highest_ack = acked.values().copied().max().unwrap();
        let current = store.revision();
        eprintln!("recovered at revision {current}; highest ack {highest_ack}; {} keys acked", acked.len());
        assert!(current >= highest_ack, "revision {current} is behind an ack of {highest_ack}");
        for (key, revision) in &acked {
            let kv = store.get(key).await.unwrap().unwrap_or_else(|| panic!("acked {key} is missing"));
            assert!(kv.mod_revision >= *revision, "{key} went back from {revision} to {}", kv.mod_revision);
        }

        // Every transaction is all or nothing: each writer's counter names its newest key, and
        // its keys run without a gap up to that one.
        let listing = store.list("").await.unwrap();
        assert_eq!(listing.revision, current);
        let value = |kv: &flotilla_store::KeyValue| u64::from_le_bytes(kv.value[..].try_into().unwrap());
        for w in 0..WRITERS {
            let Some(counter) = listing.kvs.iter().find(|kv| kv.key == format!("counter/{w}")) else { continue };
            let keys: Vec<_> = listing.kvs.iter().filter(|kv| kv.key.starts_with(&format!("w{w}/"))).collect();
            assert_eq!(keys.len() as u64, value(counter) + 1, "writer {w}: one key per committed transaction");
            assert_eq!(keys.last().map(|kv| value(kv)), Some(value(counter)), "writer {w}: the counter's txn");
            assert_eq!(keys.last().unwrap().mod_revision, counter.mod_revision, "writer {w}: one revision");
        }

        // A watch from the recovered revision on sees what comes next.
        let mut watch = store.watch("", current).await.unwrap();
        // And the store takes new writes, right after the recovered revision.
        let outcome = store.txn(Txn::new().then(Op::put("after-crash", b"ok".to_vec()))).await.unwrap();
        assert_eq!(outcome, TxnOutcome::Committed { revision: current + 1 });
        let batch = watch.recv().await.unwrap().unwrap();
        assert_eq!(batch.revision, current + 1);
    });
}
