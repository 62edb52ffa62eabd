//! `ha-bench`: the highly available control plane, measured in one run on one machine.
//! - RunTask (count 10, spread over zones) from concurrent clients until the hollow fleet holds
//!   `--tasks` tasks: first on one server over the embedded store (the baseline), then on three
//!   servers over three etcd members, the clients split over the three servers.
//! - API reads (ListTasks of the placed tasks, first page of 100) on each server at once, next to
//!   the same read on the single embedded server.
//! - Failover: `--kills` times, kill -9 the leading server and time until another leads (then
//!   start the killed one again); p50, p99 and max.
//!
//! Build first with `cargo build --release -p flotilla -p flotilla-bench`, then
//! `cargo run --release -p flotilla-bench --bin ha-bench -- [--instances N] [--tasks N] [--kills N]`.
//! Needs Debian's `etcd-server`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use flotilla_bench::ha::bed::start_fleet;
use flotilla_bench::ha::etcd::EtcdCluster;
use flotilla_bench::ha::servers::ControlPlane;
use flotilla_bench::load::{self, Shape, Target};
use flotilla_bench::procs::{self, ChildGuard};
use flotilla_bench::runtask::{self, Outcome};
use flotilla_bench::seed;
use flotilla_bench::workload::Workload;
use flotilla_sigv4::Credentials;

const TASKS_PER_SECOND_GOAL: f64 = 2000.0;
const FAILOVER_GOAL: Duration = Duration::from_secs(5);

#[derive(Parser, Debug)]
#[command(name = "ha-bench", about = "Three servers over three etcd members against the embedded store.")]
struct Args {
    /// Hollow container instances, split evenly over three zones.
    #[arg(long, default_value_t = 600)]
    instances: usize,
    /// Tasks to place in each RunTask run.
    #[arg(long, default_value_t = 30_000)]
    tasks: u64,
    /// Concurrent RunTask clients in all (split over the servers).
    #[arg(long, default_value_t = 12)]
    clients: usize,
    /// Leader kills for the failover figures.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Seconds each read row is measured.
    #[arg(long, default_value_t = 5)]
    read_seconds: u64,
    /// The flotilla binary [default: the one next to this binary].
    #[arg(long)]
    flotilla: Option<PathBuf>,
    /// Keep the data dirs and logs.
    #[arg(long)]
    keep: bool,
}

const ZONES: usize = 3;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let text = runtime.block_on(async {
        tokio::select! {
            r = bench(&args) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    })?;
    println!("{text}");
    Ok(())
}

fn credentials() -> Credentials {
    Credentials::new("FLTAHABENCH000000001", "haBenchSecretKey000000000000000000000000")
}

fn fleet(bin: &Path, servers: &str, dir: &Path, instances: usize) -> anyhow::Result<Vec<ChildGuard>> {
    start_fleet(bin, servers, &credentials(), dir, ZONES, instances, 4096)
}

/// RunTask from `clients` split over `targets` until `tasks` are placed; one merged outcome.
async fn drive(targets: &[Target], clients: usize, tasks: u64) -> Outcome {
    let share = tasks / targets.len() as u64;
    let per = (clients / targets.len()).max(1);
    let runs = targets.iter().map(|t| runtask::drive(t, per, share));
    let outcomes = futures::future::join_all(runs).await;
    let mut all = Outcome::default();
    for o in outcomes {
        all.requests += o.requests;
        all.placed += o.placed;
        all.failed += o.failed;
        all.errors += o.errors;
        all.first_error = all.first_error.or(o.first_error);
        all.latencies.extend(o.latencies);
        all.elapsed = all.elapsed.max(o.elapsed);
    }
    all.latencies.sort_unstable();
    all
}

/// Reads on every target at once; requests per second of each.
async fn reads(targets: &[Target], seconds: u64) -> Vec<load::RowResult> {
    let shape = Shape { connections: 4, warmup: Duration::from_secs(1), measure: Duration::from_secs(seconds) };
    let rows = targets.iter().map(|t| load::run(t, &Workload::ListRunning, shape));
    futures::future::join_all(rows).await
}

struct Figures {
    runtask: Outcome,
    reads: Vec<load::RowResult>,
}

async fn embedded(args: &Args, bin: &Path, dir: &Path) -> anyhow::Result<Figures> {
    std::fs::create_dir_all(dir)?;
    let server = procs::start_flotilla(bin, &dir.join("server"), &credentials(), &dir.join("server.log"))?;
    load::wait_healthy(server.addr, Duration::from_secs(60)).await?;
    let target = Target {
        addr: server.addr,
        credentials: credentials(),
        region: seed::REGION.into(),
        pid: Some(server.guard.pid()),
        tasks: 0,
    };
    let _agents = fleet(bin, &format!("http://{}", server.addr), dir, args.instances)?;
    runtask::wait_for_fleet(&target, args.instances, Duration::from_secs(600)).await?;
    runtask::register_definition(&target).await?;
    let runtask = drive(std::slice::from_ref(&target), args.clients, args.tasks).await;
    let reads = reads(std::slice::from_ref(&target), args.read_seconds).await;
    Ok(Figures { runtask, reads })
}

async fn replicated(args: &Args, bin: &Path, dir: &Path) -> anyhow::Result<(Figures, Vec<Duration>)> {
    std::fs::create_dir_all(dir)?;
    let etcd = EtcdCluster::start(&dir.join("etcd"), 3).await?;
    let mut cp = ControlPlane::start(bin, &dir.join("servers"), &etcd.store_url(), &credentials(), 3, &[]).await?;
    let _agents = fleet(bin, &cp.urls(), dir, args.instances)?;
    let targets: Vec<Target> = (0..3).map(|i| cp.target(i)).collect();
    runtask::wait_for_fleet(&targets[0], args.instances, Duration::from_secs(600)).await?;
    runtask::register_definition(&targets[0]).await?;
    let runtask = drive(&targets, args.clients, args.tasks).await;
    let reads = reads(&targets, args.read_seconds).await;
    let mut failovers = Vec::new();
    for k in 0..args.kills {
        let leader = cp.await_leader(None, Instant::now(), Duration::from_secs(30)).await?.0;
        let killed = Instant::now();
        cp.kill(leader);
        let (_, took) = cp.await_leader(Some(leader), killed, Duration::from_secs(30)).await?;
        eprintln!("  kill {}: server{leader} -> new leader after {:.2} s", k + 1, took.as_secs_f64());
        failovers.push(took);
        cp.restart(leader).await?;
    }
    failovers.sort();
    Ok((Figures { runtask, reads }, failovers))
}

fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

async fn bench(args: &Args) -> anyhow::Result<String> {
    let bin = procs::find_flotilla(args.flotilla.as_deref())?;
    let work = tempfile::Builder::new().prefix("flotilla-ha-bench-").tempdir()?;
    let path = work.path().to_path_buf();
    if args.keep {
        let _ = work.keep();
        eprintln!("keeping data and logs in {}", path.display());
    }
    let load_at_start = procs::load_average();
    eprintln!("baseline: one server, embedded store");
    let base = embedded(args, &bin, &path.join("embedded")).await?;
    eprintln!("three servers over three etcd members");
    let (ha, failovers) = replicated(args, &bin, &path.join("etcd")).await?;
    let mut out = String::new();
    out.push_str(&format!(
        "ha-bench: {} hollow instances in {ZONES} zones, {} tasks per run (RunTask count 10), {} clients; load {} -> {}\n\n",
        args.instances,
        args.tasks,
        args.clients,
        load_at_start,
        procs::load_average()
    ));
    out.push_str("| RunTask | tasks/s | p50 ms | p99 ms | errors | goal |\n|---|---|---|---|---|---|\n");
    for (name, o) in
        [("1 server, embedded store (baseline)", &base.runtask), ("3 servers, 3 etcd members", &ha.runtask)]
    {
        out.push_str(&format!(
            "| {name} | {:.0} | {} | {} | {} | {} |\n",
            o.tasks_per_second(),
            ms(o.percentile(0.5)),
            ms(o.percentile(0.99)),
            o.errors,
            if std::ptr::eq(o, &ha.runtask) {
                format!(
                    ">= {TASKS_PER_SECOND_GOAL:.0}/s: {}",
                    if o.tasks_per_second() >= TASKS_PER_SECOND_GOAL { "met" } else { "missed" }
                )
            } else {
                "-".into()
            }
        ));
    }
    out.push_str(
        "\n| reads (ListTasks, 4 connections per server) | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|\n",
    );
    let rows = base.reads.iter().enumerate().map(|(i, r)| ("embedded", i, r));
    for (name, i, r) in rows.chain(ha.reads.iter().enumerate().map(|(i, r)| ("etcd", i, r))) {
        out.push_str(&format!(
            "| {name} server {i} | {:.0} | {} | {} | {} |\n",
            r.rate(),
            ms(r.percentile(0.5)),
            ms(r.percentile(0.99)),
            r.errors
        ));
    }
    let total: f64 = ha.reads.iter().map(|r| r.rate()).sum();
    out.push_str(&format!("| etcd, all three servers | {total:.0} | | | |\n"));
    let p99 = quantile(&failovers, 0.99);
    out.push_str(&format!(
        "\nfailover over {} leader kills (kill -9 until another server leads): p50 {} ms, p99 {} ms, max {} ms; goal < {} s: {}\n",
        failovers.len(),
        ms(quantile(&failovers, 0.5)),
        ms(p99),
        ms(failovers.last().copied().unwrap_or_default()),
        FAILOVER_GOAL.as_secs(),
        if !failovers.is_empty() && p99 < FAILOVER_GOAL { "met" } else { "missed" }
    ));
    Ok(out)
}
