//! The pure engine's benchmark (`cargo bench -p flotilla-scheduler`): placements per second at
//! 1,000, 5,000 and 10,000 instances for binpack, spread-by-zone, a memberOf constraint and random,
//! with the cluster 0%, 50% and 90% full; each row also runs, on the same snapshot and requests,
//! a baseline: a naive placer that scans every instance for every task with the generic query
//! evaluator (the obvious implementation), and the floor of any scanning placer, one pass reading
//! every instance's cpu and memory. Requests are RunTask-sized: 10 tasks of 256 cpu / 512 MiB.
//!
//! `BENCH_QUICK=1` shortens every measurement (for a smoke run); `BENCH_ONLY=spread` keeps the
//! strategies whose name contains the text, and `BENCH_SIZES=10000` the cluster sizes listed (both
//! for profiling one case); `BENCH_NO_BASELINE=1` skips the naive placer.

use std::hint::black_box;
use std::time::{Duration, Instant};

use flotilla_scheduler::{
    parse, place, place_by_scan, Constraint, Env, Expr, Facts, HostPort, Instance, Request, Resource, Snapshot,
    SpreadField, Strategy,
};

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const TYPES: [&str; 4] = ["m5.xlarge", "m5.2xlarge", "c5.2xlarge", "r5.xlarge"];
const CPU: i64 = 8192;
const MEMORY: i64 = 32768;
const GROUP: &str = "family:web";

/// SplitMix64, for the benchmark's own data.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A cluster like a real ECS fleet: a dozen attributes per instance (zone, type, AMI, capability
/// flags), the agent's reserved ports, and `fill` of every instance's cpu and memory taken (give or
/// take 5%) by tasks of a few groups, ours among them.
fn cluster(n: usize, fill: f64, seed: u64) -> Vec<Instance> {
    let mut g = Gen(seed);
    (0..n)
        .map(|k| {
            let f = (fill + (g.below(101) as f64 - 50.0) / 1000.0).clamp(0.0, 1.0);
            let tasks = ((MEMORY as f64 * f) / 512.0) as u32;
            let ours = if tasks > 0 { g.below(u64::from(tasks) / 4 + 1) as u32 } else { 0 };
            let mut attributes: Vec<(String, Option<String>)> = vec![
                ("ecs.availability-zone".into(), Some(ZONES[k % 3].into())),
                ("ecs.instance-type".into(), Some(TYPES[g.below(4) as usize].into())),
                ("ecs.os-type".into(), Some("linux".into())),
                ("ecs.cpu-architecture".into(), Some("x86_64".into())),
                ("ecs.ami-id".into(), Some(format!("ami-{:08x}", g.below(3)))),
                ("ecs.vpc-id".into(), Some("vpc-0123abcd".into())),
            ];
            for cap in ["docker-remote-api.1.44", "logging-driver.awslogs", "task-eni", "task-iam-role", "efsAuth"] {
                attributes.push((format!("com.amazonaws.ecs.capability.{cap}"), None));
            }
            Instance {
                arn: format!("arn:aws:ecs:us-east-1:000000000000:container-instance/bench/{k:08}"),
                ec2_instance_id: format!("i-{k:017x}"),
                agent_connected: true,
                agent_version: Some("1.80.0".into()),
                registered_at_ms: 1_700_000_000_000 + k as i64,
                attributes,
                remaining_cpu: CPU - (CPU as f64 * f) as i64,
                remaining_memory: MEMORY - (MEMORY as f64 * f) as i64,
                used_ports: [22, 2375, 2376, 51678, 51679].into_iter().map(HostPort::tcp).collect(),
                running_tasks_count: tasks,
                task_groups: vec![(GROUP.into(), ours), ("family:batch".into(), tasks - ours)],
                ..Instance::default()
            }
        })
        .collect()
}

struct Scenario {
    name: &'static str,
    strategies: Vec<Strategy>,
    member_of: Option<&'static str>,
}

fn scenarios() -> Vec<Scenario> {
    let zone = || Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into()));
    vec![
        Scenario { name: "binpack(memory)", strategies: vec![Strategy::Binpack(Resource::Memory)], member_of: None },
        Scenario { name: "spread(zone)", strategies: vec![zone()], member_of: None },
        Scenario {
            name: "spread(zone),binpack(memory)",
            strategies: vec![zone(), Strategy::Binpack(Resource::Memory)],
            member_of: None,
        },
        Scenario {
            name: "memberOf+spread(instanceId)",
            strategies: vec![Strategy::Spread(SpreadField::Instance)],
            member_of: Some("attribute:ecs.instance-type =~ m5.* and attribute:ecs.availability-zone != us-east-1c"),
        },
        Scenario { name: "random", strategies: vec![Strategy::Random], member_of: None },
    ]
}

fn request(s: &Scenario, count: u32) -> Request {
    Request {
        count,
        cpu: 256,
        memory: 512,
        strategies: s.strategies.clone(),
        constraints: s.member_of.map(|e| Constraint::MemberOf(parse(e).unwrap())).into_iter().collect(),
        group: GROUP.into(),
        ..Request::default()
    }
}

/// Runs `f` (one request, returning the tasks it placed) in five windows sharing `budget` and
/// returns (placements, elapsed) of the fastest window. The machine is shared (two cores, other
/// builds running), so the best window is the figure least disturbed by neighbours; the engine and
/// its baselines are measured the same way.
fn measure(budget: Duration, mut f: impl FnMut(u64) -> usize) -> (u64, Duration) {
    for seed in 0..3 {
        black_box(f(seed));
    }
    let mut best: Option<(u64, Duration)> = None;
    let mut seed = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let (mut requests, mut placed) = (0u64, 0u64);
        while start.elapsed() < budget / 5 || requests < 3 {
            placed += f(seed) as u64;
            seed += 1;
            requests += 1;
        }
        let window = (placed.max(1), start.elapsed());
        if best.is_none_or(|(p, t)| window.0 as f64 / window.1.as_secs_f64() > p as f64 / t.as_secs_f64()) {
            best = Some(window);
        }
    }
    best.unwrap_or((1, Duration::from_secs(1)))
}

/// The naive placer: for every task, scan every instance, check it with strings and the generic
/// query evaluator, and keep the best by the strategies (spread counts recomputed per task).
fn naive(instances: &[Instance], req: &Request, seed: u64) -> usize {
    struct View<'a>(&'a Instance, u32);
    impl Facts for View<'_> {
        fn attribute(&self, name: &str) -> Option<&str> {
            self.0.attribute(name)
        }
        fn ec2_instance_id(&self) -> &str {
            &self.0.ec2_instance_id
        }
        fn agent_connected(&self) -> bool {
            self.0.agent_connected
        }
        fn agent_version(&self) -> Option<&str> {
            self.0.agent_version.as_deref()
        }
        fn registered_at_ms(&self) -> i64 {
            self.0.registered_at_ms
        }
        fn running_tasks_count(&self) -> u64 {
            u64::from(self.0.running_tasks_count + self.1)
        }
        fn any_task_group(&self, test: &mut dyn FnMut(&str) -> bool) -> bool {
            (self.1 > 0 && test(GROUP)) || self.0.any_task_group(test)
        }
    }
    let exprs: Vec<&Expr> =
        req.constraints.iter().filter_map(|c| if let Constraint::MemberOf(e) = c { Some(e) } else { None }).collect();
    let n = instances.len();
    let mut placed = vec![0u32; n];
    let group_of = |i: usize| instances[i].task_groups.iter().find(|(g, _)| g == GROUP).map_or(0, |e| e.1);
    let mut g = Gen(seed);
    let mut done = 0;
    for _ in 0..req.count {
        let mut zone_counts = std::collections::HashMap::<&str, u32>::new();
        for i in 0..n {
            let z = instances[i].attribute("ecs.availability-zone").unwrap_or("");
            *zone_counts.entry(z).or_default() += group_of(i) + placed[i];
        }
        let mut best: Option<(Vec<i64>, usize)> = None;
        for i in 0..n {
            let inst = &instances[i];
            let cpu = inst.remaining_cpu - i64::from(placed[i] * req.cpu);
            let mem = inst.remaining_memory - i64::from(placed[i] * req.memory);
            let fits = inst.agent_connected
                && exprs.iter().all(|e| e.eval(&View(inst, placed[i])))
                && cpu >= i64::from(req.cpu)
                && mem >= i64::from(req.memory);
            if !fits {
                continue;
            }
            let mut key: Vec<i64> = req
                .strategies
                .iter()
                .take_while(|s| **s != Strategy::Random)
                .map(|s| match s {
                    Strategy::Binpack(Resource::Cpu) => cpu,
                    Strategy::Binpack(Resource::Memory) => mem,
                    Strategy::Spread(SpreadField::Instance) => i64::from(group_of(i) + placed[i]),
                    Strategy::Spread(SpreadField::Attribute(a)) => {
                        i64::from(zone_counts[inst.attribute(a).unwrap_or("")])
                    }
                    Strategy::Random => 0,
                })
                .collect();
            key.push(g.below(1 << 20) as i64);
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                best = Some((key, i));
            }
        }
        let Some((_, i)) = best else { break };
        placed[i] += 1;
        done += 1;
    }
    done
}

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let budget = Duration::from_millis(if quick { 60 } else { 700 });
    let naive_budget = Duration::from_millis(if quick { 30 } else { 300 });
    println!("flotilla-scheduler placement benchmark: requests of 10 tasks (256 cpu, 512 MiB); figures per placement");
    println!("  engine: place(); scan: the same without sampling (place_by_scan); naive: a scan per task with");
    println!("  strings and the generic evaluator; pass: one read of every instance's memory (the floor of a scan)");
    println!(
        "{:<30} {:>9} {:>5} | {:>11} {:>8} | {:>11} {:>8} | {:>10} {:>8} {:>8} | {:>8}",
        "strategy",
        "instances",
        "full",
        "engine pl/s",
        "us/pl",
        "scan pl/s",
        "us/pl",
        "naive pl/s",
        "us/pl",
        "x naive",
        "pass us"
    );
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let skip_naive = std::env::var_os("BENCH_NO_BASELINE").is_some();
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 5_000, 10_000]);
    for &n in &sizes {
        for fill in [0.0, 0.5, 0.9] {
            let instances = cluster(n, fill, 42);
            let snapshot = Snapshot::new(instances.clone());
            // The floor of any scanning placer: one read of every instance's cpu and memory.
            let (reqs, pass) = measure(Duration::from_millis(if quick { 10 } else { 50 }), |_| {
                black_box((0..snapshot.len()).filter(|i| snapshot.remaining(*i).1 >= 512).count());
                1
            });
            let pass_us = pass.as_secs_f64() * 1e6 / reqs as f64;
            for s in scenarios().into_iter().filter(|s| s.name.contains(only.as_str())) {
                let req = request(&s, 10);
                let (placed, t) =
                    measure(budget, |seed| place(&snapshot, &req, &Env { seed }).unwrap().placements.len());
                let (scan_placed, st) =
                    measure(budget, |seed| place_by_scan(&snapshot, &req, &Env { seed }).unwrap().placements.len());
                let (naive_placed, nt) = if skip_naive {
                    (1, Duration::from_secs(1))
                } else {
                    measure(naive_budget, |seed| naive(&instances, &req, seed))
                };
                let rate = placed as f64 / t.as_secs_f64();
                let scan_rate = scan_placed as f64 / st.as_secs_f64();
                let naive_rate = naive_placed as f64 / nt.as_secs_f64();
                println!(
                    "{:<30} {:>9} {:>4.0}% | {:>11.0} {:>8.2} | {:>11.0} {:>8.2} | {:>10.0} {:>8.1} {:>7.0}x | {:>8.1}",
                    s.name,
                    n,
                    fill * 100.0,
                    rate,
                    1e6 / rate,
                    scan_rate,
                    1e6 / scan_rate,
                    naive_rate,
                    1e6 / naive_rate,
                    rate / naive_rate,
                    pass_us
                );
            }
        }
    }

    // Filling a cluster for real: 10,000 empty instances, binpack(memory) requests of 10 applied to
    // the snapshot one after another, with the cost per placement reported as the cluster fills.
    println!();
    println!("filling 10,000 instances with binpack(memory), plans applied as they come:");
    let mut snapshot = Snapshot::new(cluster(10_000, 0.0, 7));
    let req = request(&scenarios()[0], 10);
    let capacity = 10_000 * (CPU as u64 / 256).min(MEMORY as u64 / 512);
    let mut placed = 0u64;
    let mut next_mark = 0.0;
    // Per request: microseconds per placement. Each 10% of fill reports the median request, which
    // a neighbour's burst on the shared machine does not move.
    let mut window: Vec<f64> = Vec::new();
    let mut seed = 0;
    loop {
        let start = Instant::now();
        let plan = place(&snapshot, &req, &Env { seed }).unwrap();
        let took = start.elapsed();
        seed += 1;
        if !plan.placements.is_empty() {
            window.push(took.as_secs_f64() * 1e6 / plan.placements.len() as f64);
        }
        snapshot.apply(&plan, &req);
        placed += plan.placements.len() as u64;
        let full = placed as f64 / capacity as f64;
        if full >= next_mark || plan.unplaced > 0 {
            window.sort_by(f64::total_cmp);
            let median = window.get(window.len() / 2).copied().unwrap_or(f64::NAN);
            println!(
                "  {:>5.1}% full: {:>10.0} placements/s, {:>6.2} us/placement",
                full * 100.0,
                1e6 / median,
                median
            );
            window.clear();
            next_mark += 0.1;
        }
        if plan.unplaced > 0 || (quick && full > 0.2) {
            break;
        }
    }

    // And the API's side of the bargain: building a snapshot from instance descriptions.
    let instances = cluster(10_000, 0.5, 1);
    let start = Instant::now();
    black_box(Snapshot::new(instances));
    println!();
    println!("Snapshot::new over 10,000 instances: {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
}
