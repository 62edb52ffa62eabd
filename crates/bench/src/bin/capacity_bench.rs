//! `capacity-bench`: managed scaling measured through the real binaries. A service of `--tasks`
//! tasks is created on a capacity provider whose Auto Scaling group starts at 0 hosts (hollow
//! hosts of `--instance-type` from `flotilla server --provisioner simulate`); the run times it to
//! steady state (every task RUNNING, nothing waiting in PROVISIONING, the group's hosts all
//! registered) in scaling periods, and counts the hosts launched against the fewest that fit the
//! tasks. Beside it, in the same run: RunTask placing as many tasks (10 per call) on that fewest
//! number of hollow instances that already exist, in another cluster of the same server.
//! Goals: steady within 3 scaling periods; at most one host above the fewest that fit.
//!
//! Build both binaries first: `cargo build --release -p flotilla -p flotilla-bench`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use flotilla_agent::session::ApiClient;
use flotilla_bench::procs::{find_flotilla, start_flotilla_with, start_hollow, Hollow};
use flotilla_bench::seed::REGION;
use flotilla_sigv4::Credentials;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(name = "capacity-bench", about = "Managed scaling from zero hosts against RunTask on existing hosts")]
struct Args {
    /// The flotilla binary [default: the one next to this binary]
    #[arg(long)]
    flotilla: Option<PathBuf>,
    /// Tasks in the service.
    #[arg(long, default_value_t = 1000)]
    tasks: u32,
    #[arg(long, default_value = "m5.large")]
    instance_type: String,
    /// CPU units and MiB of memory each task reserves.
    #[arg(long, default_value_t = 256)]
    task_cpu: u32,
    #[arg(long, default_value_t = 512)]
    task_memory: u32,
    /// Managed scaling's period (`flotilla server --scaling-period-seconds`).
    #[arg(long, default_value_t = 5)]
    period_seconds: u64,
    /// Where the data directories and logs go [default: a temporary directory]
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// A signed client for ECS (JSON) and the query APIs (Auto Scaling, EC2) of one server.
struct Aws {
    ecs: ApiClient,
    http: reqwest::Client,
    endpoint: String,
    creds: Credentials,
}

impl Aws {
    async fn ecs(&self, op: &str, body: Value) -> anyhow::Result<Value> {
        self.ecs.call(op, &body).await.with_context(|| format!("{op} failed"))
    }

    async fn query(
        &self,
        service: &str,
        version: &str,
        action: &str,
        params: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        flotilla_bench::query::call(&self.http, &self.endpoint, &self.creds, service, version, action, params).await
    }
}

/// How many tasks of `cpu`/`memory` one host of `instance_type` holds, as its agent registers it.
fn per_host(instance_type: &str, cpu: u32, memory: u32) -> anyhow::Result<(u32, i32, i32)> {
    let t = flotilla_hosts::instance_types::lookup(instance_type).context("unknown instance type")?;
    let (c, m) = (t.ecs_cpu(), t.ecs_memory(0));
    let n = (c as u32 / cpu.max(1)).min(m as u32 / memory.max(1));
    anyhow::ensure!(n > 0, "a task does not fit on a {instance_type}");
    Ok((n, c, m))
}

async fn running_of(aws: &Aws, cluster: &str, service: &str) -> anyhow::Result<(i64, i64)> {
    let out = aws.ecs("DescribeServices", json!({"cluster": cluster, "services": [service]})).await?;
    let s = &out["services"][0];
    Ok((s["runningCount"].as_i64().unwrap_or(0), s["pendingCount"].as_i64().unwrap_or(0)))
}

async fn count_instances(aws: &Aws, cluster: &str) -> anyhow::Result<usize> {
    let mut n = 0;
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"cluster": cluster, "maxResults": 100});
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let out = aws.ecs("ListContainerInstances", body).await?;
        n += out["containerInstanceArns"].as_array().map_or(0, Vec::len);
        match out["nextToken"].as_str() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(n),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = find_flotilla(args.flotilla.as_deref())?;
    let tmp = tempfile::Builder::new().prefix("capacity-bench-").tempdir()?;
    let dir = args.work_dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let creds = Credentials::new("AKIDCAPACITYBENCH", "capacity-bench-secret-0123456789abcdef");
    let period = args.period_seconds.to_string();
    let server = start_flotilla_with(
        &bin,
        &dir.join("server"),
        &creds,
        &dir.join("server.log"),
        &[("FLOTILLA_PROVISIONER", "simulate"), ("FLOTILLA_SCALING_PERIOD_SECONDS", &period)],
    )?;
    let endpoint = format!("http://{}", server.addr);
    let aws = Aws {
        ecs: ApiClient::new(&endpoint, REGION, creds.clone())?,
        http: reqwest::Client::new(),
        endpoint: endpoint.clone(),
        creds: creds.clone(),
    };
    let (fit, cpu, memory) = per_host(&args.instance_type, args.task_cpu, args.task_memory)?;
    let fewest = args.tasks.div_ceil(fit);

    // The group, empty, and a capacity provider with managed scaling on it.
    let group = (0, fewest * 2);
    flotilla_bench::query::create_group(
        &aws.http,
        &endpoint,
        &creds,
        "bench-asg",
        &args.instance_type,
        "scaled",
        group,
    )
    .await?;
    aws.ecs("CreateCluster", json!({"clusterName": "scaled"})).await?;
    aws.ecs(
        "CreateCapacityProvider",
        json!({"name": "bench-cp", "autoScalingGroupProvider": {
            "autoScalingGroupArn": "bench-asg",
            "managedScaling": {"status": "ENABLED", "targetCapacity": 100, "instanceWarmupPeriod": 0},
            "managedTerminationProtection": "ENABLED"}}),
    )
    .await?;
    aws.ecs(
        "PutClusterCapacityProviders",
        json!({"cluster": "scaled", "capacityProviders": ["bench-cp"],
               "defaultCapacityProviderStrategy": [{"capacityProvider": "bench-cp", "weight": 1}]}),
    )
    .await?;
    let container =
        json!({"name": "app", "image": "flotilla/workload:latest", "cpu": args.task_cpu, "memory": args.task_memory});
    let td = aws.ecs("RegisterTaskDefinition", json!({"family": "bench", "containerDefinitions": [container]})).await?;
    let td = td["taskDefinition"]["taskDefinitionArn"].as_str().unwrap_or_default().to_string();

    // Scale from zero.
    let started = Instant::now();
    aws.ecs(
        "CreateService",
        json!({"cluster": "scaled", "serviceName": "scaled", "taskDefinition": td, "desiredCount": args.tasks}),
    )
    .await?;
    let deadline = started + Duration::from_secs(args.period_seconds * 20 + 60);
    let (steady, hosts) = loop {
        let (running, pending) = match running_of(&aws, "scaled", "scaled").await {
            Ok(counts) => counts,
            Err(e) => {
                eprintln!("  DescribeServices: {e:#}; polling again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let asg = aws
            .query(
                "autoscaling",
                "2011-01-01",
                "DescribeAutoScalingGroups",
                &[("AutoScalingGroupNames.member.1", "bench-asg")],
            )
            .await?;
        let desired: u32 =
            flotilla_bench::query::text(&asg, "DesiredCapacity").and_then(|d| d.parse().ok()).unwrap_or(0);
        let registered = count_instances(&aws, "scaled").await? as u32;
        if running == i64::from(args.tasks) && pending == 0 && registered == desired {
            break (started.elapsed(), registered);
        }
        if Instant::now() > deadline {
            bail!(
                "not steady after {:?}: {running} running, {pending} pending, {registered}/{desired} hosts",
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The baseline: the same tasks placed by RunTask on that many hosts that already exist.
    aws.ecs("CreateCluster", json!({"clusterName": "default"})).await?;
    let hollow = Hollow { count: fewest as usize, zone: "us-east-1a".into(), cpu: cpu as u32, memory: memory as u32 };
    let _agents = start_hollow(&bin, server.addr, &creds, &hollow, &dir.join("hollow"), &dir.join("hollow.log"))?;
    while count_instances(&aws, "default").await? < fewest as usize {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let base_started = Instant::now();
    let mut left = args.tasks;
    while left > 0 {
        let n = left.min(10);
        let out = aws
            .ecs("RunTask", json!({"cluster": "default", "taskDefinition": td, "count": n, "launchType": "EC2"}))
            .await?;
        let placed = out["tasks"].as_array().map_or(0, Vec::len) as u32;
        anyhow::ensure!(placed == n, "RunTask placed {placed} of {n}: {}", out["failures"]);
        left -= n;
    }
    let placed = base_started.elapsed();

    let periods = steady.as_secs_f64() / args.period_seconds as f64;
    println!(
        "capacity-bench: {} tasks of {} CPU / {} MiB on {} ({fit} per host)",
        args.tasks, args.task_cpu, args.task_memory, args.instance_type
    );
    println!("{:<46} {:>12} {:>10} {:>8}", "", "time", "periods", "hosts");
    println!(
        "{:<46} {:>10.1} s {:>10.2} {:>8}",
        format!("service from 0 hosts (scaling period {} s)", args.period_seconds),
        steady.as_secs_f64(),
        periods,
        hosts
    );
    println!(
        "{:<46} {:>10.1} s {:>10} {:>8}",
        "baseline: RunTask on hosts that exist",
        placed.as_secs_f64(),
        "-",
        fewest
    );
    println!(
        "goals: steady within 3 periods: {}; hosts at most one above the fewest that fit ({fewest}): {}",
        if periods <= 3.0 { "met" } else { "missed" },
        if hosts <= fewest + 1 { "met" } else { "missed" }
    );
    drop(server);
    Ok(())
}
