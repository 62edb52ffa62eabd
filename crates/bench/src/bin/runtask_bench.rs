//! `runtask-bench`: RunTask end to end. A real `flotilla server` (release build, durable redb
//! store, SigV4 on) and a fleet of hollow container instances (`flotilla agent --simulate`, one
//! process per availability zone); then RunTask (count 10, spread over zones) from several
//! concurrent clients until the fleet holds `--tasks` tasks. Prints tasks placed per second,
//! RunTask p50/p99 and the server's memory per task, next to a baseline from the same run: the
//! same fleet and requests against a server that builds the scheduler's snapshot afresh for every
//! request (`FLOTILLA_SCHEDULER_SNAPSHOT=per-request`), for `--baseline-tasks` tasks.
//!
//! Build first with `cargo build --release -p flotilla -p flotilla-bench`, then
//! `cargo run --release -p flotilla-bench --bin runtask-bench -- [--instances N] [--tasks N]`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use flotilla_bench::load::{wait_healthy, Target};
use flotilla_bench::procs::{self, ChildGuard, Hollow, Rss};
use flotilla_bench::runtask::{self, Outcome};
use flotilla_bench::seed;
use flotilla_sigv4::Credentials;
use serde_json::json;

const TASKS_PER_SECOND_TARGET: f64 = 5000.0;
const P99_TARGET: Duration = Duration::from_millis(50);
const BYTES_PER_TASK_TARGET: f64 = 2048.0;

#[derive(Parser, Debug)]
#[command(name = "runtask-bench", about = "RunTask throughput and latency against hollow container instances.")]
struct Args {
    /// Hollow container instances, split evenly over the zones.
    #[arg(long, default_value_t = 5000)]
    instances: usize,
    /// Tasks to place in the measured run.
    #[arg(long, default_value_t = 200_000)]
    tasks: u64,
    /// Tasks to place against the per-request-snapshot server first (0: no baseline).
    #[arg(long, default_value_t = 5_000)]
    baseline_tasks: u64,
    /// Concurrent RunTask clients (one keep-alive connection each, one request in flight). Each
    /// request waits for a durable group commit, so it takes several in flight to keep two cores
    /// busy; beyond about eight, more clients add queueing delay rather than throughput.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Availability zones (one `flotilla agent --simulate` process each).
    #[arg(long, default_value_t = 3)]
    zones: usize,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// The flotilla binary [default: the one next to this binary].
    #[arg(long)]
    flotilla: Option<PathBuf>,
    /// Directory for the data dirs and logs [default: a new temporary directory].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the data dirs and logs.
    #[arg(long)]
    keep: bool,
    /// Also place `--tasks` tasks with the cluster's default capacity provider strategy, on a
    /// capacity provider whose Auto Scaling group holds the fleet (hosts launched in the server's
    /// process by `--provisioner simulate`, so their reports count in its CPU).
    #[arg(long)]
    capacity_provider: bool,
}

/// How a run's server places tasks, and where its fleet comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A snapshot built for every request (the baseline).
    PerRequest,
    /// The kept snapshot, RunTask with the EC2 launch type on `flotilla agent --simulate` fleets.
    Kept,
    /// The kept snapshot, RunTask with the cluster's default capacity provider strategy on the
    /// hosts of the provider's group.
    Strategy,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.instances > 0 && args.tasks > 0 && args.clients > 0 && args.zones > 0, "counts must be > 0");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.client_threads.max(1)).enable_all().build()?;
    let text = runtime.block_on(async {
        tokio::select! {
            r = bench(&args) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; the servers and agents were stopped")),
        }
    })?;
    println!("{text}");
    Ok(())
}

/// One run: a server, its fleet, and the load.
struct Run {
    outcome: Outcome,
    fleet_ready: Duration,
    rss_fleet: Rss,
    rss_placed: Rss,
    rss_settled: Option<Rss>,
    /// CPU time the hollow agents spent from the fleet joining until the tasks settled.
    agents_cpu: Duration,
    running: u64,
}

async fn run(args: &Args, flotilla: &Path, dir: &Path, tasks: u64, mode: Mode) -> anyhow::Result<Run> {
    std::fs::create_dir_all(dir)?;
    let credentials = Credentials::new("FLTABENCH00000000001", "benchSecretKey0000000000000000000000000000");
    let env: &[(&str, &str)] = match mode {
        Mode::PerRequest => &[("FLOTILLA_SCHEDULER_SNAPSHOT", "per-request")],
        Mode::Kept => &[],
        Mode::Strategy => &[("FLOTILLA_PROVISIONER", "simulate")],
    };
    let server = procs::start_flotilla_with(flotilla, &dir.join("server"), &credentials, &dir.join("server.log"), env)?;
    wait_healthy(server.addr, Duration::from_secs(60)).await?;
    let target = Target {
        addr: server.addr,
        credentials: credentials.clone(),
        region: seed::REGION.into(),
        pid: Some(server.guard.pid()),
        tasks: 0,
    };
    let mut agents: Vec<ChildGuard> = Vec::new();
    if mode == Mode::Strategy {
        provider_fleet(args, server.addr, &credentials).await?;
    }
    for z in (0..args.zones).filter(|_| mode != Mode::Strategy) {
        let count = args.instances / args.zones + usize::from(z < args.instances % args.zones);
        let zone = seed::zone(z);
        let hollow = Hollow { count, zone: zone.clone(), cpu: 4096, memory: 16384 };
        let log = dir.join(format!("agents-{zone}.log"));
        agents.push(procs::start_hollow(flotilla, server.addr, &credentials, &hollow, &dir.join(&zone), &log)?);
    }
    eprintln!("  waiting for {} hollow instances in {} zones", args.instances, args.zones);
    let fleet_ready = runtask::wait_for_fleet(&target, args.instances, Duration::from_secs(600)).await?;
    runtask::register_definition(&target).await?;
    let rss_fleet = procs::rss(server.guard.pid())?;
    let agents_cpu = || agents.iter().filter_map(|a| procs::cpu_time(a.pid())).sum::<Duration>();
    let agents_before = agents_cpu();
    eprintln!(
        "  fleet ready in {:.1} s; placing {tasks} tasks from {} clients",
        fleet_ready.as_secs_f64(),
        args.clients
    );
    let outcome = runtask::drive(&target, args.clients, tasks).await;
    let rss_placed = procs::rss(server.guard.pid())?;
    // Let the agents' reports (every task goes RUNNING) land before the settled reading.
    let mut running = 0;
    let mut rss_settled = None;
    for _ in 0..120 {
        running = runtask::running_tasks(&target).await.unwrap_or(running);
        if running >= outcome.placed {
            rss_settled = procs::rss(server.guard.pid()).ok();
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let agents_cpu = agents_cpu().saturating_sub(agents_before);
    drop(agents);
    drop(server);
    Ok(Run { outcome, fleet_ready, rss_fleet, rss_placed, rss_settled, running, agents_cpu })
}

/// The fleet of a strategy run: an Auto Scaling group of `--instances` m5.xlarge hosts (4,096 CPU
/// units and 15,360 MiB, as the `--simulate` fleets offer) behind a capacity provider that is the
/// default cluster's default strategy.
async fn provider_fleet(args: &Args, addr: std::net::SocketAddr, creds: &Credentials) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let endpoint = format!("http://{addr}");
    let n = args.instances as u32;
    flotilla_bench::query::create_group(&http, &endpoint, creds, "bench-fleet", "m5.xlarge", "default", (n, n)).await?;
    let target = Target { addr, credentials: creds.clone(), region: seed::REGION.into(), pid: None, tasks: 0 };
    let provider = json!({"name": "bench-fleet", "autoScalingGroupProvider": {"autoScalingGroupArn": "bench-fleet"}});
    runtask::call(&target, "CreateCapacityProvider", &provider).await?;
    let association = json!({"cluster": "default", "capacityProviders": ["bench-fleet"],
        "defaultCapacityProviderStrategy": [{"capacityProvider": "bench-fleet", "weight": 1}]});
    runtask::call(&target, "PutClusterCapacityProviders", &association).await?;
    Ok(())
}

async fn bench(args: &Args) -> anyhow::Result<String> {
    let flotilla = procs::find_flotilla(args.flotilla.as_deref())?;
    let load_at_start = procs::load_average();
    let mut builder = tempfile::Builder::new();
    builder.prefix("flotilla-runtask-bench-");
    let work = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            builder.tempdir_in(dir)?
        }
        None => builder.tempdir()?,
    };
    let work_path = work.path().to_path_buf();
    if args.keep {
        let _kept = work.keep();
        eprintln!("keeping data and logs in {}", work_path.display());
    }
    let baseline = if args.baseline_tasks > 0 {
        eprintln!("baseline: a snapshot built for every request");
        Some(run(args, &flotilla, &work_path.join("baseline"), args.baseline_tasks, Mode::PerRequest).await?)
    } else {
        None
    };
    eprintln!("kept snapshots");
    let main = run(args, &flotilla, &work_path.join("kept"), args.tasks, Mode::Kept).await?;
    let strategy = if args.capacity_provider {
        eprintln!("capacity provider strategy");
        Some(run(args, &flotilla, &work_path.join("strategy"), args.tasks, Mode::Strategy).await?)
    } else {
        None
    };
    Ok(render(args, baseline.as_ref(), &main, strategy.as_ref(), (load_at_start, procs::load_average())))
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn per_task(run: &Run) -> f64 {
    let after = run.rss_settled.unwrap_or(run.rss_placed).current as f64;
    (after - run.rss_fleet.current as f64) / run.outcome.placed.max(1) as f64
}

fn row(name: &str, r: &Run) -> String {
    let o = &r.outcome;
    let cpu = o.server_cpu.map(|c| format!("{:.0}", c.as_secs_f64() * 1e6 / o.placed.max(1) as f64));
    let agents_us = r.agents_cpu.as_secs_f64() * 1e6 / o.placed.max(1) as f64;
    format!(
        "{:<28} {:>9} {:>9.0} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9.0} {:>7} {:>7.0}",
        name,
        o.placed,
        o.tasks_per_second(),
        ms(o.percentile(0.5)),
        ms(o.percentile(0.99)),
        ms(o.percentile(1.0)),
        o.failed,
        o.errors,
        per_task(r),
        cpu.unwrap_or_else(|| "-".into()),
        agents_us,
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn render(args: &Args, baseline: Option<&Run>, main: &Run, strategy: Option<&Run>, load: (String, String)) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let _ = writeln!(
        out,
        "\nFlotilla RunTask benchmark: {} hollow instances in {} zones, RunTask count 10 spread by zone from {} \
         clients, durable redb store, SigV4 on, {cores} cores",
        args.instances, args.zones, args.clients
    );
    let _ = writeln!(out, "machine load (1/5/15 min): {} at the start, {} at the end\n", load.0, load.1);
    let header = format!(
        "{:<28} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9} {:>7} {:>7}",
        "run", "placed", "tasks/s", "p50 ms", "p99 ms", "max ms", "failures", "errors", "B/task", "srv us", "agt us"
    );
    let _ = writeln!(out, "{header}\n{}", "-".repeat(header.len()));
    if let Some(b) = baseline {
        let _ = writeln!(out, "{}", row("baseline: per-request build", b));
    }
    let _ = writeln!(out, "{}", row("kept snapshot", main));
    if let Some(s) = strategy {
        let _ = writeln!(out, "{}", row("capacity provider strategy", s));
    }
    let o = &main.outcome;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "targets: >= {TASKS_PER_SECOND_TARGET:.0} tasks/s {}; p99 < {} ms {}; < {BYTES_PER_TASK_TARGET:.0} B of \
         server memory per task {}",
        verdict(o.tasks_per_second() >= TASKS_PER_SECOND_TARGET),
        P99_TARGET.as_millis(),
        verdict(o.percentile(0.99) < P99_TARGET),
        verdict(per_task(main) < BYTES_PER_TASK_TARGET),
    );
    if let Some(s) = strategy {
        let _ = writeln!(
            out,
            "capacity provider strategy: >= {TASKS_PER_SECOND_TARGET:.0} tasks/s {} (its hosts run in the server's \
             process, so their reports count in its srv us)",
            verdict(s.outcome.tasks_per_second() >= TASKS_PER_SECOND_TARGET),
        );
    }
    if let Some(b) = baseline {
        let _ = writeln!(
            out,
            "vs baseline: {:.2}x tasks/s, p99 {:.2}x",
            o.tasks_per_second() / b.outcome.tasks_per_second().max(1e-9),
            o.percentile(0.99).as_secs_f64() / b.outcome.percentile(0.99).as_secs_f64().max(1e-9)
        );
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let _ = writeln!(
        out,
        "server RSS: {:.1} MiB with the fleet, {:.1} MiB when the tasks were placed, {} once {} of them reported \
         RUNNING (peak {:.1} MiB); fleet joined in {:.1} s; {} RunTask requests in {:.1} s",
        mib(main.rss_fleet.current),
        mib(main.rss_placed.current),
        main.rss_settled.map(|r| format!("{:.1} MiB", mib(r.current))).unwrap_or_else(|| "-".into()),
        main.running,
        mib(main.rss_settled.unwrap_or(main.rss_placed).peak),
        main.fleet_ready.as_secs_f64(),
        o.requests,
        o.elapsed.as_secs_f64(),
    );
    let _ = writeln!(
        out,
        "B/task = server RSS growth from the joined fleet to the settled run, per placed task; srv us = server CPU \
         (user+sys) per placed task, agents' reports included; agt us = the hollow agents' CPU per placed task \
         (they share the machine's cores with the server)"
    );
    for (name, r) in baseline.map(|b| ("baseline", b)).into_iter().chain([("kept", main)]) {
        if let Some(e) = &r.outcome.first_error {
            let _ = writeln!(out, "first error ({name}): {}", e.chars().take(300).collect::<String>());
        }
        if let Some(f) = &r.outcome.first_failure {
            let _ = writeln!(out, "first failure ({name}): {}", f.chars().take(300).collect::<String>());
        }
    }
    out
}
