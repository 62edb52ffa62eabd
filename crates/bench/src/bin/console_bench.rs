//! `console-bench`: how long the web console's pages take with a big cluster in the store, next
//! to the same listings through the ECS API. A real `flotilla server` (durable store, SigV4 on)
//! gets a fleet of hollow container instances (`flotilla agent --simulate`) and, through the API,
//! `--services` services of `--tasks-per-service` tasks each, all RUNNING. Then each page is read
//! `--iterations` times, one signed request at a time on one keep-alive connection: the console's
//! view, its refresh with the ETag (a 304), and the ECS calls that list the same records. The
//! bench prints; it asserts nothing about time.
//!
//! ```text
//! cargo build --release -p flotilla -p flotilla-bench
//! cargo run --release -p flotilla-bench --bin console-bench                # 1,000 services, 10,000 tasks
//! cargo run -p flotilla-bench --bin console-bench -- --quick               # a small check, seconds
//! ```

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use flotilla_bench::console::{self, Listing, Samples, ViewSamples};
use flotilla_bench::load::{wait_healthy, Target};
use flotilla_bench::procs::{self, Hollow};
use flotilla_bench::{runtask, seed};
use flotilla_sigv4::Credentials;

/// The page time the console aims under (the issue's target), printed beside each row.
const TARGET_MS: f64 = 200.0;

#[derive(Parser, Debug)]
#[command(about = "Console pages vs the same listings through the ECS API, on a big cluster")]
struct Args {
    /// Services in the cluster.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Tasks of each service.
    #[arg(long, default_value_t = 10)]
    tasks_per_service: usize,
    /// Hollow container instances the tasks run on.
    #[arg(long, default_value_t = 100)]
    instances: usize,
    /// Readings of each page, each way.
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// A small run (20 services of 2 tasks on 4 instances, 5 readings): checks the bench works.
    #[arg(long)]
    quick: bool,
    /// The `flotilla` binary (default: the one beside this one).
    #[arg(long)]
    flotilla: Option<PathBuf>,
    /// Keep the server's data and logs.
    #[arg(long)]
    keep: bool,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.quick {
        (args.services, args.tasks_per_service, args.instances, args.iterations) = (20, 2, 4, 5);
    }
    anyhow::ensure!(args.services > 0 && args.tasks_per_service > 0 && args.instances > 0, "counts must be > 0");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let text = runtime.block_on(async {
        tokio::select! {
            r = bench(&args) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; the server and agents were stopped")),
        }
    })?;
    println!("{text}");
    Ok(())
}

/// One page: its name, the console path, and the same listing through the API.
struct Page {
    name: &'static str,
    path: String,
    listing: Listing,
}

struct Measured {
    page: Page,
    view: ViewSamples,
    api: Samples,
}

async fn bench(args: &Args) -> anyhow::Result<String> {
    let flotilla = procs::find_flotilla(args.flotilla.as_deref())?;
    let load_at_start = procs::load_average();
    let work = tempfile::Builder::new().prefix("flotilla-console-bench-").tempdir()?;
    let dir = work.path().to_path_buf();
    if args.keep {
        let _kept = work.keep();
        eprintln!("keeping data and logs in {}", dir.display());
    }
    let credentials = Credentials::new("FLTACONSOLEBENCH0001", "consoleBenchSecret000000000000000000000000");
    let server = procs::start_flotilla(&flotilla, &dir.join("server"), &credentials, &dir.join("server.log"))?;
    wait_healthy(server.addr, Duration::from_secs(60)).await?;
    let target = Target {
        addr: server.addr,
        credentials: credentials.clone(),
        region: seed::REGION.into(),
        pid: None,
        tasks: 0,
    };
    let tasks = (args.services * args.tasks_per_service) as u64;
    // Room for every task on every instance's share, twice over, so placement never runs short.
    let per_instance = (tasks as usize).div_ceil(args.instances) * 2;
    let hollow = Hollow {
        count: args.instances,
        zone: seed::zone(0),
        cpu: (per_instance as u32 * runtask::TASK_CPU).max(1024),
        memory: (per_instance as u32 * runtask::TASK_MEMORY).max(2048),
    };
    let _agents = procs::start_hollow(
        &flotilla,
        server.addr,
        &credentials,
        &hollow,
        &dir.join("agents"),
        &dir.join("agents.log"),
    )?;
    eprintln!("waiting for {} hollow instances", args.instances);
    runtask::wait_for_fleet(&target, args.instances, Duration::from_secs(300)).await?;
    runtask::register_definition(&target).await?;
    eprintln!("creating {} services of {} tasks", args.services, args.tasks_per_service);
    console::create_services(&target, args.services, args.tasks_per_service, 8).await?;
    let settled = console::wait_running(&target, args.services, tasks, Duration::from_secs(900)).await?;
    eprintln!("{tasks} tasks running {:.1} s after the last CreateService", settled.as_secs_f64());

    let (task_arn, task_id) = console::some_task(&target).await?;
    let service = console::service_name(0);
    let c = console::CLUSTER;
    let pages = vec![
        Page { name: "clusters", path: "/clusters".into(), listing: Listing::Clusters },
        Page { name: "cluster (all services)", path: format!("/clusters/{c}"), listing: Listing::Services },
        Page {
            name: "service",
            path: format!("/clusters/{c}/services/{service}"),
            listing: Listing::Service(service.clone()),
        },
        Page { name: "tasks (first 100)", path: format!("/clusters/{c}/tasks"), listing: Listing::Tasks },
        Page { name: "task", path: format!("/clusters/{c}/tasks/{task_id}"), listing: Listing::Task(task_arn) },
    ];
    let mut rows = Vec::new();
    for page in pages {
        eprintln!("measuring {}", page.name);
        let api = console::measure_api(&target, &page.listing, args.iterations).await?;
        let view = console::measure_view(&target, &page.path, args.iterations).await?;
        rows.push(Measured { page, view, api });
    }
    drop(server);
    Ok(render(args, &rows, (load_at_start, procs::load_average())))
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn kib(bytes: usize) -> String {
    format!("{:.1}", bytes as f64 / 1024.0)
}

fn render(args: &Args, rows: &[Measured], load: (String, String)) -> String {
    let mut out = format!(
        "console-bench: {} services x {} tasks = {} tasks on {} hollow instances, {} readings each way \
         (load average {} at start, {} at end)\n\n",
        args.services,
        args.tasks_per_service,
        args.services * args.tasks_per_service,
        args.instances,
        args.iterations,
        load.0,
        load.1
    );
    out.push_str(
        "| page | console p50 ms | p99 ms | KiB | 304 refresh p50/p99 ms | API calls | API p50 ms | p99 ms | API KiB |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} / {} | {} ({}) | {} | {} | {} |\n",
            r.page.name,
            ms(r.view.full.percentile(0.5)),
            ms(r.view.full.percentile(0.99)),
            kib(r.view.full.bytes),
            ms(r.view.refresh.percentile(0.5)),
            ms(r.view.refresh.percentile(0.99)),
            r.api.calls,
            r.page.listing.describe(),
            ms(r.api.percentile(0.5)),
            ms(r.api.percentile(0.99)),
            kib(r.api.bytes),
        ));
    }
    // The server renders a page and hashes it to answer a refresh: a 304 saves bytes, not work.
    out.push_str("\nA 304 refresh renders and hashes the page like a full read; it saves the bytes, not the work.\n");
    let slowest = rows.iter().map(|r| r.view.full.percentile(0.99)).max().unwrap_or_default();
    out.push_str(&format!(
        "\nslowest console page p99: {} ms (target: under {TARGET_MS:.0} ms: {})\n",
        ms(slowest),
        if slowest.as_secs_f64() * 1e3 < TARGET_MS { "met" } else { "NOT met" }
    ));
    out
}
