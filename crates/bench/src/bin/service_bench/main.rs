//! `service-bench`: the service controller measured through real processes.
//!
//! (a) Replacement latency: a 3-task service on a real `flotilla agent` on the local Docker
//! Engine; `--kills` times, a container of the service is SIGKILLed and the time from its `die`
//! event to its replacement running is measured, next to plain Docker creating and starting a
//! container of the same image (the baseline), sampled after every kill in the same run.
//! Target: p99 of die -> replacement RUNNING (its ECS `startedAt`) under 2 s.
//!
//! (b) Scale-out: one service scaled from 0 to `--tasks` tasks on `--instances` hollow instances
//! (`flotilla agent --simulate`), timed to steady state, next to RunTask placing as many tasks
//! directly (count 10 per call) on as many hollow instances of another cluster.
//!
//! Build both binaries first: `cargo build --release -p flotilla -p flotilla-bench`.

mod ecs;
mod kill;
mod scale;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use flotilla_sigv4::Credentials;

#[derive(Parser, Debug)]
#[command(name = "service-bench", about = "Service replacement latency and scale-out against baselines")]
struct Args {
    /// The flotilla binary [default: the one next to this binary]
    #[arg(long)]
    flotilla: Option<PathBuf>,
    /// Containers to kill in part (a) (at least 20 for the report).
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// A container is killed only once its task has run this long (ms): a task that dies sooner
    /// counts as one that failed to start, and two of those in a row make the controller back off
    /// on purpose, which is not what this measures.
    #[arg(long, default_value_t = 10_500)]
    min_age_ms: u64,
    /// Tasks to scale to in part (b).
    #[arg(long, default_value_t = 1000)]
    tasks: usize,
    /// Hollow instances per cluster in part (b).
    #[arg(long, default_value_t = 50)]
    instances: usize,
    /// Run only one part: `kill` or `scale`.
    #[arg(long)]
    only: Option<String>,
    /// Where the data directories and logs go [default: a temporary directory]
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work directory afterwards.
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = flotilla_bench::procs::find_flotilla(args.flotilla.as_deref())?;
    let tmp = tempfile::Builder::new().prefix("service-bench-").tempdir()?;
    let work = args.work_dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&work)?;
    let creds = Credentials::new("FLTABENCH00000000002", "serviceBenchSecret000000000000000000000000");
    println!("service-bench: {} (load average {})", bin.display(), flotilla_bench::procs::load_average());

    let part = args.only.as_deref();
    anyhow::ensure!(matches!(part, None | Some("kill") | Some("scale")), "--only takes `kill` or `scale`");
    // Stop (and so clean up) on SIGINT/SIGTERM as on an error: the guards kill the children.
    let run = async {
        if part != Some("scale") {
            let min_age = Duration::from_millis(args.min_age_ms);
            println!("\n(a) {} kills of a 3-task service on a real agent (Docker)", args.kills);
            let f = kill::run(&bin, &work, &creds, args.kills, min_age).await?;
            print_kills(&f, min_age);
        }
        if part != Some("kill") {
            println!("\n(b) scale one service 0 -> {} tasks on {} hollow instances", args.tasks, args.instances);
            let f = scale::run(&bin, &work, &creds, args.tasks, args.instances).await?;
            print_scale(&f);
        }
        anyhow::Ok(())
    };
    let outcome = tokio::select! {
        r = run => r,
        _ = shutdown() => Err(anyhow::anyhow!("interrupted")),
    };
    if args.keep || args.work_dir.is_some() {
        println!("\nwork directory kept: {}", work.display());
        let _ = tmp.keep();
    }
    outcome
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn row(label: &str, samples: &[f64], baseline: Option<&[f64]>) {
    let (p50, p99) = (ecs::percentile(samples, 50.0), ecs::percentile(samples, 99.0));
    let max = samples.iter().copied().fold(f64::NAN, f64::max);
    let vs = baseline
        .map(|b| format!("{:>6.1}x {:>6.1}x", p50 / ecs::percentile(b, 50.0), p99 / ecs::percentile(b, 99.0)))
        .unwrap_or_default();
    println!("  {label:<46} {:>4} {p50:>9.1} {p99:>9.1} {max:>9.1}  {vs}", samples.len());
}

fn print_kills(f: &kill::KillFigures, min_age: Duration) {
    println!("  {:<46} {:>4} {:>9} {:>9} {:>9}  {:>7} {:>7}", "ms", "n", "p50", "p99", "max", "p50/bl", "p99/bl");
    let bl = Some(f.baseline_create_start.as_slice());
    row("baseline: plain Docker create + start", &f.baseline_create_start, None);
    row("die -> replacement container start event", &f.die_to_start_event, bl);
    row("die -> replacement task startedAt (ECS)", &f.die_to_started_at, bl);
    row("die -> DescribeTasks shows it RUNNING", &f.die_to_observed, bl);
    row("(kill call -> die event)", &f.kill_to_die, None);
    let p99 = ecs::percentile(&f.die_to_started_at, 99.0);
    let verdict = if p99 < 2000.0 { "ok" } else { "MISSED" };
    println!("  target: p99 die -> replacement RUNNING (startedAt) < 2000 ms: {p99:.1} ms, {verdict}");
    println!(
        "  (victims were the oldest task once it had run {:.1} s; waiting for that took {:.1} s in all)",
        min_age.as_secs_f64(),
        f.aged_wait.as_secs_f64()
    );
}

fn print_scale(f: &scale::ScaleFigures) {
    let per_s = |d: Duration| f.tasks as f64 / d.as_secs_f64().max(1e-9);
    println!("  {:<58} {:>9} {:>11}", "", "seconds", "tasks/s");
    let line = |label: &str, d: Duration| println!("  {label:<58} {:>9.2} {:>11.0}", d.as_secs_f64(), per_s(d));
    line(&format!("baseline: {} RunTask calls (count 10), the calls alone", f.tasks.div_ceil(10)), f.runtask_calls);
    line("baseline: RunTask until the cluster runs them all", f.runtask_running);
    line("service: UpdateService -> every task placed", f.service_placed);
    line("service: UpdateService -> steady state", f.service_stable);
    println!(
        "  service / RunTask baseline: {:.2}x the time ({} tasks on {} hollow instances per cluster)",
        f.service_stable.as_secs_f64() / f.runtask_running.as_secs_f64().max(1e-9),
        f.tasks,
        f.instances
    );
}
