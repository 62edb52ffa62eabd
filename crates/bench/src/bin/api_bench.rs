//! `api-bench`: DescribeTasks, ListTasks and RegisterTaskDefinition against a real `flotilla
//! server` holding a seeded fleet (100,000 tasks by default), side by side with the floor (a bare
//! HTTP server in a child process) and with each figure's target, plus the server's memory per
//! stored task. Build first with `cargo build --release -p flotilla -p flotilla-bench`, then
//! `cargo run --release -p flotilla-bench --bin api-bench -- [--tasks N] [--seconds S]
//! [--connections C]`. Every child process is killed when the benchmark ends, however it ends.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use flotilla_bench::load::{self, Shape, Target};
use flotilla_bench::procs::{self, Rss};
use flotilla_bench::report::{self, Memory, Row, Setup};
use flotilla_bench::seed;
use flotilla_bench::workload::Workload;
use flotilla_sigv4::Credentials;

/// Unmeasured time at the start of every slice after the first warm-up (connections open).
const SLICE_WARMUP: f64 = 0.2;

/// How long a server may take to load its store and answer `/health`.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Parser, Debug)]
#[command(name = "api-bench", about = "Throughput and latency of the Flotilla ECS API against a bare-HTTP floor.")]
struct Args {
    /// Tasks to seed the store with.
    #[arg(long, default_value_t = 100_000)]
    tasks: u64,
    /// Measured seconds per row (in total over its slices).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Warm-up seconds per row, before its first measured slice.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Slices each row's measured seconds are split into; the rows take turns slice by slice.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Concurrent keep-alive connections (one request in flight on each).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// The flotilla binary [default: the one next to this binary].
    #[arg(long)]
    flotilla: Option<PathBuf>,
    /// Directory for the data dirs and server logs [default: a new temporary directory].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the data dirs and server logs instead of deleting them at the end.
    #[arg(long)]
    keep: bool,
    /// Internal: run as the floor server.
    #[arg(long, hide = true)]
    floor_server: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.floor_server {
        return flotilla_bench::floor::run();
    }
    anyhow::ensure!(args.connections > 0 && args.client_threads > 0, "--connections and --client-threads must be > 0");
    anyhow::ensure!(args.seconds > 0.0 && args.warmup >= 0.0, "--seconds must be > 0 and --warmup >= 0");
    anyhow::ensure!(args.tasks > 0, "--tasks must be > 0");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.client_threads).enable_all().build()?;
    // On SIGINT or SIGTERM the bench future is dropped, and with it the guards of the servers.
    let text = runtime.block_on(async {
        tokio::select! {
            r = bench(&args) => r,
            _ = interrupted() => Err(anyhow::anyhow!("interrupted; the servers were stopped")),
        }
    })?;
    println!("{text}");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

/// The reads every server gets once before its memory is read, and each row is checked with.
fn read_rows() -> Vec<Workload> {
    vec![
        Workload::Describe { per_request: 1 },
        Workload::Describe { per_request: 10 },
        Workload::ListByFamily,
        Workload::ListByStartedBy,
    ]
}

/// One request of each read row, each of which must answer 200.
async fn warm_up(target: &Target) -> anyhow::Result<()> {
    for w in read_rows() {
        let (status, body) = load::one_request(target, &w).await?;
        anyhow::ensure!(status == 200, "{} answered {status}: {}", w.label(), String::from_utf8_lossy(&body));
    }
    Ok(())
}

async fn bench(args: &Args) -> anyhow::Result<String> {
    let flotilla = procs::find_flotilla(args.flotilla.as_deref())?;
    let load_at_start = procs::load_average();
    let mut builder = tempfile::Builder::new();
    builder.prefix("flotilla-bench-");
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
    let credentials = Credentials::new("FLTABENCH00000000001", "benchSecretKey0000000000000000000000000000");
    let target = |addr, pid, tasks| Target {
        addr,
        credentials: credentials.clone(),
        region: seed::REGION.to_string(),
        pid: Some(pid),
        tasks,
    };
    let rounds = args.rounds.max(1);
    let slice = Shape {
        connections: args.connections,
        warmup: Duration::from_secs_f64(args.warmup.min(SLICE_WARMUP)),
        measure: Duration::from_secs_f64(args.seconds / rounds as f64),
    };
    let first_warmup = Shape { measure: Duration::ZERO, warmup: Duration::from_secs_f64(args.warmup), ..slice };

    eprintln!("floor: starting the bare server ({} --floor-server)", std::env::current_exe()?.display());
    let floor_answer_bytes = seed::describe_answer(1).len();
    let floor = procs::start_floor(&work_path.join("floor.log"))?;
    let floor_target = target(floor.addr, floor.guard.pid(), args.tasks);
    let (status, _) = load::one_request(&floor_target, &Workload::Floor).await?;
    anyhow::ensure!(status == 200, "the floor answered {status}");

    eprintln!("empty server: {}", flotilla.display());
    let (empty_rss, startup_empty) = {
        let server =
            procs::start_flotilla(&flotilla, &work_path.join("empty"), &credentials, &work_path.join("empty.log"))?;
        let ready = load::wait_healthy(server.addr, READY_TIMEOUT).await?;
        // Task names resolve to nothing here; DescribeTasks still answers 200 (with failures).
        warm_up(&target(server.addr, server.guard.pid(), args.tasks)).await?;
        (procs::rss(server.guard.pid())?, ready)
    };

    eprintln!("seeding {} tasks", args.tasks);
    let seeded_dir = work_path.join("seeded");
    std::fs::create_dir_all(&seeded_dir)?;
    let seeded = seed::seed(&seeded_dir.join("store.redb"), args.tasks).await?;
    eprintln!("seeded {} tasks in {:.2} s", seeded.tasks, seeded.elapsed.as_secs_f64());

    let server = procs::start_flotilla(&flotilla, &seeded_dir, &credentials, &work_path.join("seeded.log"))?;
    let startup_seeded = load::wait_healthy(server.addr, READY_TIMEOUT).await?;
    eprintln!("seeded server ready in {:.2} s at {}", startup_seeded.as_secs_f64(), server.addr);
    let api_target = target(server.addr, server.guard.pid(), args.tasks);
    warm_up(&api_target).await?;
    let seeded_rss: Rss = procs::rss(server.guard.pid())?;

    // Every row runs in `rounds` slices, taken in turn, so that whatever else the machine does
    // during the run weighs on every row alike rather than on whichever row it coincides with.
    let mut rows: Vec<Row> = std::iter::once(Workload::Floor)
        .chain(read_rows())
        .chain([Workload::Register])
        .map(|workload| Row { workload, result: Default::default() })
        .collect();
    for row in &rows {
        let t = if row.workload == Workload::Floor { &floor_target } else { &api_target };
        eprintln!("warming up {}", row.workload.label());
        load::run(t, &row.workload, first_warmup).await;
    }
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        for row in &mut rows {
            let t = if row.workload == Workload::Floor { &floor_target } else { &api_target };
            row.result.absorb(load::run(t, &row.workload, slice).await);
        }
    }
    for row in &mut rows {
        row.result.latencies.sort_unstable();
        if row.result.requests == 0 {
            eprintln!("{}: no request succeeded (server log: {})", row.workload.label(), server.log.display());
        }
    }
    let after = procs::rss(server.guard.pid()).ok();
    drop(server);
    drop(floor);

    let setup = Setup {
        tasks: args.tasks,
        connections: args.connections,
        client_threads: args.client_threads,
        warmup: first_warmup.warmup,
        measure: Duration::from_secs_f64(args.seconds),
        rounds,
        seed_time: seeded.elapsed,
        seed_bytes: seeded.bytes,
        startup_empty,
        startup_seeded,
        floor_answer_bytes,
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        load: (load_at_start, procs::load_average()),
    };
    let memory = Memory { tasks: args.tasks, empty: empty_rss, seeded: seeded_rss, after };
    Ok(report::render(&setup, &rows, Some(&memory)))
}
