//! Durable write throughput of `RedbStore`, next to the baseline it exists to beat: raw redb with
//! one immediate-durability commit (one fsync) per write, measured in the same run on the same
//! disk. Group commit lets concurrent writers share fsyncs, so throughput should grow with the
//! number of writers while the baseline cannot.
//!
//! `cargo run --release -p flotilla-store --example store_bench [seconds per row, default 3]`
//! (`STORE_BENCH_DIR` chooses where the files go; the default is the system temp dir).

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_store::{Compare, Op, RedbStore, Store, Txn, TxnOutcome};
use redb::{Database, Durability, TableDefinition};

const VALUE: [u8; 128] = [7; 128];

struct Row {
    name: String,
    txns: u64,
    elapsed: Duration,
    /// Per-transaction latencies, sorted.
    latencies: Vec<Duration>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.txns as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let last = self.latencies.len().saturating_sub(1);
        self.latencies.get((last as f64 * p).round() as usize).copied().unwrap_or_default()
    }
}

fn baseline(dir: &std::path::Path, run_for: Duration) -> Row {
    const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
    let db = Database::create(dir.join("baseline.redb")).expect("create baseline db");
    let mut latencies = Vec::new();
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < run_for {
        let began = Instant::now();
        let mut wtx = db.begin_write().expect("begin");
        wtx.set_durability(Durability::Immediate).expect("durability");
        {
            let mut table = wtx.open_table(TABLE).expect("table");
            table.insert(format!("bench/{i}").as_str(), &VALUE[..]).expect("insert");
        }
        wtx.commit().expect("commit");
        latencies.push(began.elapsed());
        i += 1;
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Row { name: "raw redb, 1 commit per write".into(), txns: i, elapsed, latencies }
}

async fn store_row(dir: &std::path::Path, writers: usize, run_for: Duration) -> Row {
    let store = Arc::new(RedbStore::open(&dir.join(format!("store-{writers}.redb"))).expect("open store"));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while start.elapsed() < run_for {
                let key = format!("bench/w{w}/{i}");
                let txn = Txn::new().when(Compare::absent(key.clone())).then(Op::put(key, VALUE.to_vec()));
                let began = Instant::now();
                let outcome = store.txn(txn).await.expect("txn");
                assert!(matches!(outcome, TxnOutcome::Committed { .. }));
                latencies.push(began.elapsed());
                i += 1;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("writer task"));
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let plural = if writers == 1 { "" } else { "s" };
    Row { name: format!("RedbStore, {writers} writer{plural}"), txns: latencies.len() as u64, elapsed, latencies }
}

#[tokio::main]
async fn main() {
    let seconds: f64 = std::env::args().nth(1).map_or(3.0, |s| s.parse().expect("seconds per row"));
    let run_for = Duration::from_secs_f64(seconds);
    // fsync costs what the disk under the files makes it cost: a tmpfs makes it free, so point
    // STORE_BENCH_DIR at the disk the server will use.
    let parent = std::env::var_os("STORE_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(parent).expect("temp dir");
    println!(
        "durable transactions, {seconds} s per row, files in {} (set STORE_BENCH_DIR to move them)",
        dir.path().display()
    );

    let base = baseline(dir.path(), run_for);
    let mut rows = Vec::new();
    for writers in [1, 8, 64] {
        rows.push(store_row(dir.path(), writers, run_for).await);
    }

    println!();
    println!("{:<32} {:>8} {:>10} {:>12} {:>10} {:>10}", "setup", "txns", "txns/s", "vs baseline", "p50 ms", "p99 ms");
    for row in std::iter::once(&base).chain(&rows) {
        println!(
            "{:<32} {:>8} {:>10.0} {:>11.2}x {:>10.2} {:>10.2}",
            row.name,
            row.txns,
            row.rate(),
            row.rate() / base.rate(),
            row.percentile(0.50).as_secs_f64() * 1e3,
            row.percentile(0.99).as_secs_f64() * 1e3,
        );
    }
}
