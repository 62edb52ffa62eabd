//! The printed result: one table with every row side by side (throughput, latency percentiles,
//! the ratio to the floor, the server's CPU per request) and each row's target with a verdict,
//! then the memory figures and how the run was set up.

use std::fmt::Write;
use std::time::Duration;

use crate::load::RowResult;
use crate::procs::Rss;
use crate::workload::Workload;

/// Reads must reach this share of the floor's throughput.
pub const READ_RATIO_TARGET: f64 = 0.5;
/// Reads must answer within this at the 99th percentile.
pub const READ_P99_TARGET: Duration = Duration::from_millis(5);
/// Durable writes per second to reach.
pub const WRITES_TARGET: f64 = 2000.0;
/// Server memory per stored task, beyond the empty server's, to stay under.
pub const BYTES_PER_TASK_TARGET: f64 = 2048.0;

/// One measured row.
pub struct Row {
    pub workload: Workload,
    pub result: RowResult,
}

/// The server's resident memory, empty and with the fleet loaded.
pub struct Memory {
    pub tasks: u64,
    pub empty: Rss,
    pub seeded: Rss,
    /// After every row ran (the writes add a little).
    pub after: Option<Rss>,
}

impl Memory {
    pub fn bytes_per_task(&self) -> f64 {
        (self.seeded.current as f64 - self.empty.current as f64) / self.tasks.max(1) as f64
    }
}

/// How the run was set up, for the header.
pub struct Setup {
    pub tasks: u64,
    pub connections: usize,
    pub client_threads: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub rounds: usize,
    pub seed_time: Duration,
    pub seed_bytes: u64,
    pub startup_empty: Duration,
    pub startup_seeded: Duration,
    pub floor_answer_bytes: usize,
    pub cores: usize,
    /// `/proc/loadavg` at the start and at the end: other work on the machine skews every row.
    pub load: (String, String),
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The target text and verdict of a row (`None` for the floor itself).
fn target_of(row: &Row, floor_rate: Option<f64>) -> Option<(String, bool)> {
    let r = &row.result;
    match row.workload {
        Workload::Floor => None,
        Workload::Register => Some((format!(">= {WRITES_TARGET:.0} writes/s"), r.rate() >= WRITES_TARGET)),
        _ => {
            let ratio_ok = floor_rate.is_some_and(|f| f > 0.0 && r.rate() / f >= READ_RATIO_TARGET);
            let p99_ok = r.percentile(0.99) < READ_P99_TARGET;
            let text = format!(">= {:.0}% floor, p99 < {} ms", READ_RATIO_TARGET * 100.0, READ_P99_TARGET.as_millis());
            Some((text, ratio_ok && p99_ok && r.requests > 0))
        }
    }
}

/// The whole report as text.
pub fn render(setup: &Setup, rows: &[Row], memory: Option<&Memory>) -> String {
    let mut out = String::new();
    let floor_rate = rows.iter().find(|r| r.workload == Workload::Floor).map(|r| r.result.rate());
    let _ = writeln!(
        out,
        "\nFlotilla API benchmark: {} seeded tasks, {} connections, {} client thread(s), {} cores; \
         {:.1} s warm-up + {:.1} s measured per row, in {} interleaved slices; SigV4 signing on",
        setup.tasks,
        setup.connections,
        setup.client_threads,
        setup.cores,
        setup.warmup.as_secs_f64(),
        setup.measure.as_secs_f64(),
        setup.rounds,
    );
    let _ = writeln!(
        out,
        "seeding: {:.2} s for {} of records; server ready in {:.2} s empty, {:.2} s with the tasks",
        setup.seed_time.as_secs_f64(),
        mib(setup.seed_bytes),
        setup.startup_empty.as_secs_f64(),
        setup.startup_seeded.as_secs_f64(),
    );
    let _ = writeln!(out, "machine load (1/5/15 min): {} at the start, {} at the end\n", setup.load.0, setup.load.1);
    let header = format!(
        "{:<34} {:>10} {:>8} {:>8} {:>8} {:>9} {:>10} {:>7} {:>6}  {:<28} {}",
        "row", "req/s", "p50 ms", "p99 ms", "max ms", "vs floor", "srv us/req", "resp B", "errors", "target", "ok"
    );
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "{}", "-".repeat(header.len()));
    for row in rows {
        let r = &row.result;
        let ratio = match (floor_rate, &row.workload) {
            (_, Workload::Floor) => "1.00x".to_string(),
            (Some(f), _) if f > 0.0 => format!("{:.2}x", r.rate() / f),
            _ => "-".to_string(),
        };
        let cpu = r.server_cpu_per_request_us().map(|us| format!("{us:.1}")).unwrap_or_else(|| "-".into());
        let (target, ok) = match target_of(row, floor_rate) {
            Some((t, ok)) => (t, verdict(ok)),
            None => ("(the floor)".to_string(), ""),
        };
        let _ = writeln!(
            out,
            "{:<34} {:>10.0} {:>8} {:>8} {:>8} {:>9} {:>10} {:>7} {:>6}  {:<28} {}",
            row.workload.label(),
            r.rate(),
            ms(r.percentile(0.5)),
            ms(r.percentile(0.99)),
            ms(r.percentile(1.0)),
            ratio,
            cpu,
            r.mean_response_bytes(),
            r.errors,
            target,
            ok
        );
    }
    if let Some(m) = memory {
        let per_task = m.bytes_per_task();
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "server memory: RSS {} empty, {} with {} tasks (peak {}{}); {:.0} B per task beyond the empty \
             server, target < {:.0} B: {}",
            mib(m.empty.current),
            mib(m.seeded.current),
            m.tasks,
            mib(m.seeded.peak),
            m.after.map(|a| format!(", {} after the rows", mib(a.current))).unwrap_or_default(),
            per_task,
            BYTES_PER_TASK_TARGET,
            verdict(per_task < BYTES_PER_TASK_TARGET)
        );
    }
    let _ = writeln!(
        out,
        "\nvs floor = row req/s / floor req/s; srv us/req = server process CPU (user+sys) per answered request; \
         resp B = mean answer size (the floor answers a fixed {} B body)",
        setup.floor_answer_bytes
    );
    for row in rows {
        if let Some(e) = &row.result.first_error {
            let short: String = e.chars().take(300).collect();
            let _ = writeln!(out, "first error in '{}': {short}", row.workload.label());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(requests: u64, p99_ms: u64) -> RowResult {
        RowResult {
            requests,
            elapsed: Duration::from_secs(1),
            latencies: vec![p99_ms * 1_000_000; 10],
            ..Default::default()
        }
    }

    #[test]
    fn verdicts_follow_the_targets() {
        let floor = Some(1000.0);
        let fast = Row { workload: Workload::ListByFamily, result: result(600, 1) };
        assert!(target_of(&fast, floor).unwrap().1);
        let slow = Row { workload: Workload::ListByFamily, result: result(600, 9) };
        assert!(!target_of(&slow, floor).unwrap().1);
        let few = Row { workload: Workload::Describe { per_request: 1 }, result: result(400, 1) };
        assert!(!target_of(&few, floor).unwrap().1);
        let writes = Row { workload: Workload::Register, result: result(2500, 9) };
        assert!(target_of(&writes, floor).unwrap().1);
        let setup = Setup {
            tasks: 1,
            connections: 1,
            client_threads: 1,
            warmup: Duration::ZERO,
            measure: Duration::from_secs(1),
            rounds: 1,
            seed_time: Duration::ZERO,
            seed_bytes: 0,
            startup_empty: Duration::ZERO,
            startup_seeded: Duration::ZERO,
            floor_answer_bytes: 10,
            cores: 2,
            load: ("0.00 0.00 0.00".into(), "0.00 0.00 0.00".into()),
        };
        let text = render(&setup, &[fast, writes], None);
        assert!(text.contains("ListTasks family+desiredStatus") && text.contains("PASS"));
    }
}
