//! `fargate-bench`: the FARGATE launch type through the real binaries on the local Docker Engine.
//! A `flotilla server`, one `flotilla agent` in the default cluster and one `flotilla agent
//! --fargate` pool host; then, one task at a time, RunTask until DescribeTasks shows it RUNNING,
//! for the FARGATE launch type (awsvpc, its own address, a gVisor sandbox) and for the EC2 launch
//! type (bridge, runc). Beside each, in the same run, what Docker alone takes to start the same
//! image the same way: `docker run -d --runtime=runsc` on the subnet's network (Fargate's
//! baseline) and a plain `docker run -d` (EC2's). Goal: Fargate at most 1.2x its baseline. Last,
//! the memory a sandbox costs the host: the drop of MemAvailable with `--sandboxes` Fargate tasks
//! running, per task, next to as many plain containers.
//!
//! Needs runsc registered with Docker (`scripts/setup-gvisor.sh`). Build both binaries first:
//! `cargo build --release -p flotilla -p flotilla-bench`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use flotilla_agent::session::ApiClient;
use flotilla_bench::procs::{find_flotilla, start_flotilla, ChildGuard};
use flotilla_bench::seed::REGION;
use flotilla_sigv4::Credentials;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(name = "fargate-bench", about = "Fargate RunTask -> RUNNING against docker run --runtime=runsc")]
struct Args {
    /// The flotilla binary [default: the one next to this binary]
    #[arg(long)]
    flotilla: Option<PathBuf>,
    /// Tasks started one after another, per launch type (and as many `docker run`s per baseline).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Fargate tasks (and plain containers) held at once to measure the memory per sandbox.
    #[arg(long, default_value_t = 8)]
    sandboxes: usize,
    /// Where the data directories and logs go [default: a temporary directory]
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

const FARGATE_FAMILY: &str = "fargate-bench";
const EC2_FAMILY: &str = "fargate-bench-ec2";

struct Bench {
    ecs: ApiClient,
    image: String,
    subnet: String,
    /// Every task the run started, so that their containers go when it ends, however it ends.
    started: Started,
}

/// The tasks a run started. On drop, their containers are removed from the engine: agents leave
/// containers running when they stop, and a sandbox left on the subnet's network would keep its
/// address from the next run's tasks.
#[derive(Default, Clone)]
struct Started(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Drop for Started {
    fn drop(&mut self) {
        if std::sync::Arc::strong_count(&self.0) > 1 {
            return;
        }
        let arns = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        let Ok(listing) = docker(&[
            "ps",
            "-a",
            "--filter",
            "label=com.flotilla.managed",
            "--format",
            "{{.ID}} {{.Label \"com.flotilla.task-arn\"}}",
        ]) else {
            return;
        };
        let ids: Vec<&str> = listing
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, arn)| arns.iter().any(|a| a == arn))
            .map(|(id, _)| id)
            .collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = docker(&args);
        }
    }
}

impl Bench {
    async fn ecs(&self, op: &str, body: Value) -> anyhow::Result<Value> {
        self.ecs.call(op, &body).await.with_context(|| format!("{op} failed"))
    }

    /// RunTask of one task; the time until DescribeTasks shows it RUNNING, and its ARN.
    async fn run_one(&self, fargate: bool) -> anyhow::Result<(Duration, String)> {
        let body = match fargate {
            true => json!({
                "taskDefinition": FARGATE_FAMILY, "launchType": "FARGATE",
                "networkConfiguration": {"awsvpcConfiguration": {"subnets": [self.subnet]}},
            }),
            false => json!({"taskDefinition": EC2_FAMILY, "launchType": "EC2"}),
        };
        let started = Instant::now();
        let out = self.ecs("RunTask", body).await?;
        let arn = out["tasks"][0]["taskArn"].as_str().context("RunTask placed no task")?.to_string();
        self.started.0.lock().unwrap_or_else(|e| e.into_inner()).push(arn.clone());
        loop {
            let d = self.ecs("DescribeTasks", json!({"tasks": [arn]})).await?;
            match d["tasks"][0]["lastStatus"].as_str() {
                Some("RUNNING") => return Ok((started.elapsed(), arn)),
                Some("STOPPED") => bail!("{arn} stopped: {}", d["tasks"][0]["stoppedReason"]),
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("{arn} did not reach RUNNING in 120 s");
            }
        }
    }

    async fn stop(&self, arns: &[String]) -> anyhow::Result<()> {
        for arn in arns {
            self.ecs("StopTask", json!({"task": arn, "reason": "fargate-bench"})).await?;
        }
        for arn in arns {
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                let d = self.ecs("DescribeTasks", json!({"tasks": [arn]})).await?;
                if d["tasks"][0]["lastStatus"].as_str() == Some("STOPPED") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }
}

fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker").args(args).stderr(Stdio::piped()).output().context("running docker")?;
    if !out.status.success() {
        bail!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `docker run -d` of the image, timed until it returns (the container has started), then removed.
fn docker_run(extra: &[&str], image: &str) -> anyhow::Result<(Duration, String)> {
    let mut args = vec!["run", "-d", "--label", "com.flotilla.bench=fargate"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[image, "serve", "8080"]);
    let started = Instant::now();
    let id = docker(&args)?;
    Ok((started.elapsed(), id))
}

fn mem_available_kib() -> anyhow::Result<i64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:")).context("no MemAvailable in /proc/meminfo")?;
    Ok(line.split_whitespace().nth(1).context("MemAvailable value")?.parse()?)
}

/// Memory settles a moment after containers start (page cache, lazy allocations).
async fn settled_mem() -> anyhow::Result<i64> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    mem_available_kib()
}

struct Stats {
    median: Duration,
    p90: Duration,
    mean: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    let mean = v.iter().sum::<Duration>() / v.len().max(1) as u32;
    Stats { median: at(0.5), p90: at(0.9), mean }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn mint(bin: &Path, endpoint: &str, creds: &Credentials, target: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .args(["token", "create"])
        .args(target)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", &creds.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &creds.secret_access_key)
        .env("AWS_REGION", REGION)
        .output()?;
    anyhow::ensure!(out.status.success(), "token create: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn start_agent(bin: &Path, endpoint: &str, token: &str, dir: &Path, fargate: bool) -> anyhow::Result<ChildGuard> {
    let log = std::fs::File::create(dir.with_extension("log"))?;
    let mut cmd = Command::new(bin);
    cmd.args(["agent", "--server", endpoint, "--token", token, "--region", REGION])
        .arg("--data-dir")
        .arg(dir)
        .env("FLOTILLA_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if fargate {
        // The two agents share this host: the pool host's metadata endpoint takes another port.
        cmd.args(["--fargate", "--metadata-listen", "gateway:0"]);
    }
    let child = cmd.spawn().context("starting flotilla agent")?;
    Ok(ChildGuard::new(child, if fargate { "flotilla agent --fargate" } else { "flotilla agent" }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.runs >= 2 && args.sandboxes >= 1, "--runs must be at least 2 and --sandboxes at least 1");
    let bin = find_flotilla(args.flotilla.as_deref())?;
    let runtimes = docker(&["info", "--format", "{{json .Runtimes}}"])?;
    anyhow::ensure!(runtimes.contains("runsc"), "Docker has no runsc runtime: run scripts/setup-gvisor.sh first");
    let tmp = tempfile::Builder::new().prefix("fargate-bench-").tempdir()?;
    let dir = args.work_dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;

    let docker_api = flotilla_images::connect().await?;
    let image = flotilla_images::ensure_image(&docker_api, flotilla_images::WORKLOAD_IMAGE).await?.tag;
    flotilla_images::ensure_standard_images(&docker_api).await?;

    let creds = Credentials::new("AKIDFARGATEBENCH", "fargate-bench-secret-0123456789abcdef");
    let server = start_flotilla(&bin, &dir.join("server"), &creds, &dir.join("server.log"))?;
    let endpoint = format!("http://{}", server.addr);
    let ecs = ApiClient::new(&endpoint, REGION, creds.clone())?;
    let subnet = flotilla_hosts::network::default_vpc(REGION).subnets[0].subnet_id.clone();
    let started = Started::default();
    let bench = Bench { ecs, image: image.clone(), subnet: subnet.clone(), started: started.clone() };

    let ec2_token = mint(&bin, &endpoint, &creds, &["--cluster", "default"])?;
    let pool_token = mint(&bin, &endpoint, &creds, &["--fargate"])?;
    let _ec2_agent = start_agent(&bin, &endpoint, &ec2_token, &dir.join("agent"), false)?;
    let _pool_agent = start_agent(&bin, &endpoint, &pool_token, &dir.join("fargate-agent"), true)?;

    let container = json!({"name": "app", "image": bench.image, "command": ["serve", "8080"], "essential": true});
    bench
        .ecs(
            "RegisterTaskDefinition",
            json!({
                "family": FARGATE_FAMILY, "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc",
                "cpu": "256", "memory": "512", "containerDefinitions": [container],
            }),
        )
        .await?;
    let mut ec2_container = container.clone();
    ec2_container["memory"] = json!(128);
    bench
        .ecs(
            "RegisterTaskDefinition",
            json!({"family": EC2_FAMILY, "networkMode": "bridge", "containerDefinitions": [ec2_container]}),
        )
        .await?;

    // Warm up both paths (both hosts joined, images and networks exist).
    for fargate in [false, true] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match bench.run_one(fargate).await {
                Ok((_, arn)) => {
                    bench.stop(&[arn]).await?;
                    break;
                }
                Err(e) if Instant::now() > deadline => {
                    bail!("no warm-up task ran in 60 s: {e:#} (logs in {})", dir.display())
                }
                // A task placed nowhere yet (the host is still joining) is tried again.
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
    let network = format!("flotilla-{subnet}");

    let mut rows: Vec<(&str, Vec<Duration>)> = Vec::new();
    for (name, fargate) in [("Fargate RunTask -> RUNNING", true), ("EC2 RunTask -> RUNNING", false)] {
        let mut times = Vec::new();
        for _ in 0..args.runs {
            let (t, arn) = bench.run_one(fargate).await?;
            times.push(t);
            bench.stop(&[arn]).await?;
        }
        rows.push((name, times));
    }
    for (name, extra) in [
        ("docker run --runtime=runsc (subnet network)", vec!["--runtime=runsc", "--network", network.as_str()]),
        ("docker run (bridge)", vec![]),
    ] {
        let mut times = Vec::new();
        for _ in 0..args.runs {
            let (t, id) = docker_run(&extra, &image)?;
            times.push(t);
            docker(&["rm", "-f", &id])?;
        }
        rows.push((name, times));
    }

    // Memory per sandbox: K Fargate tasks at once, then K plain containers.
    let before = settled_mem().await?;
    let mut held = Vec::new();
    for _ in 0..args.sandboxes {
        held.push(bench.run_one(true).await?.1);
    }
    let with_sandboxes = settled_mem().await?;
    bench.stop(&held).await?;
    let before_plain = settled_mem().await?;
    let mut plain = Vec::new();
    for _ in 0..args.sandboxes {
        plain.push(docker_run(&[], &image)?.1);
    }
    let with_plain = settled_mem().await?;
    for id in &plain {
        docker(&["rm", "-f", id])?;
    }
    let per = |a: i64, b: i64| (a - b) as f64 / 1024.0 / args.sandboxes as f64;

    println!("fargate-bench: {} runs each, one task at a time, on this host", args.runs);
    println!("{:<46} {:>9} {:>9} {:>9}", "", "median", "p90", "mean");
    for (name, times) in &rows {
        let s = stats(times.clone());
        println!("{name:<46} {:>9} {:>9} {:>9}", ms(s.median), ms(s.p90), ms(s.mean));
    }
    let median = |i: usize| stats(rows[i].1.clone()).median.as_secs_f64();
    println!(
        "Fargate vs its baseline (medians): {:.2}x (goal: at most 1.2x); EC2 vs plain docker run: {:.2}x",
        median(0) / median(2),
        median(1) / median(3)
    );
    println!(
        "memory per task, {} at once: Fargate sandbox {:.1} MiB, plain container {:.1} MiB (MemAvailable drop)",
        args.sandboxes,
        per(before, with_sandboxes),
        per(before_plain, with_plain)
    );
    drop(bench);
    drop(started);
    drop(server);
    Ok(())
}
