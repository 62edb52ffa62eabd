//! The child processes the benchmark runs (the real `flotilla server`, and this binary again as
//! the bare floor server), the guard that kills them however the benchmark ends, and what
//! `/proc` says about them (resident memory, CPU time).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use flotilla_sigv4::Credentials;

/// How long a child has to print the line that says where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A child process that is killed (and reaped) when the guard is dropped: at the end of its
/// row, on an early return, or while a panic unwinds.
pub struct ChildGuard {
    child: Child,
    name: String,
}

impl ChildGuard {
    /// Guards `child`, named `name` in messages.
    pub fn new(child: Child, name: &str) -> Self {
        ChildGuard { child, name: name.to_string() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        if let Err(e) = self.child.wait() {
            eprintln!("could not reap {}: {e}", self.name);
        }
    }
}

/// A started server: its guard, where it listens, and where its stderr goes.
pub struct Server {
    pub guard: ChildGuard,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

/// The `flotilla` binary: `explicit`, else the one next to this binary (`target/release`).
pub fn find_flotilla(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(p.is_file(), "--flotilla {}: no such file", p.display());
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe()?;
    let beside = exe.with_file_name(format!("flotilla{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        beside.is_file(),
        "no flotilla binary at {}; build both first with `cargo build --release -p flotilla -p flotilla-bench`, \
         or pass --flotilla PATH",
        beside.display()
    );
    Ok(beside)
}

/// Reads the child's stdout on a thread until `pick` finds what it waits for in a line (and
/// keeps draining it afterwards so the child never blocks on a full pipe).
fn wait_for_line<T: Send + 'static>(
    stdout: ChildStdout,
    name: &str,
    pick: impl Fn(&str) -> Option<T> + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new().name(format!("{name}-stdout")).spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(found) = pick(&line) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(found);
                }
            }
        }
    })?;
    rx.recv_timeout(START_TIMEOUT)
        .map_err(|_| anyhow::anyhow!("{name} exited or did not say where it listens within {START_TIMEOUT:?}"))
}

/// The address in `AWS_ENDPOINT_URL=http://ADDR` (or the older `AWS_ENDPOINT_URL_ECS=`) on the
/// server's export line.
pub fn endpoint_of(line: &str) -> Option<SocketAddr> {
    let url = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("AWS_ENDPOINT_URL=").or_else(|| w.strip_prefix("AWS_ENDPOINT_URL_ECS=")))?;
    url.strip_prefix("http://")?.trim_end_matches('/').parse().ok()
}

/// Starts `flotilla server` on a loopback port over `data_dir`, signing on, with the key pair
/// given through the environment; its stderr goes to `log`.
pub fn start_flotilla(bin: &Path, data_dir: &Path, creds: &Credentials, log: &Path) -> anyhow::Result<Server> {
    start_flotilla_with(bin, data_dir, creds, log, &[])
}

/// [`start_flotilla`] with extra environment variables for the server.
pub fn start_flotilla_with(
    bin: &Path,
    data_dir: &Path,
    creds: &Credentials,
    log: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<Server> {
    start_flotilla_args(bin, data_dir, creds, log, env, &["--listen", "127.0.0.1:0"])
}

/// [`start_flotilla_with`] with extra flags (which must include `--listen`).
pub fn start_flotilla_args(
    bin: &Path,
    data_dir: &Path,
    creds: &Credentials,
    log: &Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> anyhow::Result<Server> {
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let mut child = Command::new(bin)
        .envs(env.iter().copied())
        .arg("server")
        .args(args)
        .args(["--region", crate::seed::REGION])
        .args(["--account-id", crate::seed::ACCOUNT])
        .arg("--data-dir")
        .arg(data_dir)
        .env("FLOTILLA_ACCESS_KEY_ID", &creds.access_key_id)
        .env("FLOTILLA_SECRET_ACCESS_KEY", &creds.secret_access_key)
        .env("FLOTILLA_LOG", "warn")
        .env_remove("FLOTILLA_DISABLE_AUTH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let guard = ChildGuard { child, name: "flotilla server".into() };
    let key = creds.access_key_id.clone();
    let found = wait_for_line(stdout, "flotilla", move |line| {
        line.starts_with("export ").then(|| (endpoint_of(line), line.contains(&format!("AWS_ACCESS_KEY_ID={key} "))))
    })
    .map_err(|e| anyhow::anyhow!("{e} (see {})", log.display()))?;
    match found {
        (Some(addr), true) => Ok(Server { guard, addr, log: log.to_path_buf() }),
        (None, _) => anyhow::bail!("the server's export line names no endpoint (see {})", log.display()),
        (_, false) => anyhow::bail!("the server did not take the access key given in FLOTILLA_ACCESS_KEY_ID"),
    }
}

/// Starts `flotilla agent --simulate n` against the server at `addr`: `n` hollow container
/// instances in `zone`, each offering `cpu` units and `memory` MiB, keeping their identities
/// under `data_dir`; its stderr goes to `log`.
pub fn start_hollow(
    bin: &Path,
    addr: SocketAddr,
    creds: &Credentials,
    hollow: &Hollow,
    data_dir: &Path,
    log: &Path,
) -> anyhow::Result<ChildGuard> {
    start_hollow_at(bin, &format!("http://{addr}"), creds, hollow, data_dir, log)
}

/// [`start_hollow`] against `servers`, one URL or several separated by commas.
pub fn start_hollow_at(
    bin: &Path,
    servers: &str,
    creds: &Credentials,
    hollow: &Hollow,
    data_dir: &Path,
    log: &Path,
) -> anyhow::Result<ChildGuard> {
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let child = Command::new(bin)
        .args(["agent", "--simulate", &hollow.count.to_string(), "--server", servers])
        .args(["--region", crate::seed::REGION, "--availability-zone", &hollow.zone])
        .args(["--cpu", &hollow.cpu.to_string(), "--memory", &hollow.memory.to_string()])
        .arg("--data-dir")
        .arg(data_dir)
        .env("FLOTILLA_ACCESS_KEY_ID", &creds.access_key_id)
        .env("FLOTILLA_SECRET_ACCESS_KEY", &creds.secret_access_key)
        .env("FLOTILLA_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {} agent --simulate: {e}", bin.display()))?;
    Ok(ChildGuard { child, name: format!("hollow agents in {}", hollow.zone) })
}

/// One `flotilla agent --simulate` process's share of the fleet.
#[derive(Debug, Clone)]
pub struct Hollow {
    pub count: usize,
    pub zone: String,
    pub cpu: u32,
    pub memory: u32,
}

/// Starts this binary again as the bare floor server (hidden `--floor-server`); it exits by
/// itself when its stdin closes, that is when this process goes away.
pub fn start_floor(log: &Path) -> anyhow::Result<Server> {
    let exe = std::env::current_exe()?;
    let stderr = std::fs::File::create(log)?;
    let mut child = Command::new(&exe)
        .arg("--floor-server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {} --floor-server: {e}", exe.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let guard = ChildGuard { child, name: "floor server".into() };
    let addr = wait_for_line(stdout, "floor", |line| line.strip_prefix("listening ").and_then(|a| a.parse().ok()))?;
    Ok(Server { guard, addr, log: log.to_path_buf() })
}

/// Resident memory of a process, in bytes: (now, peak).
#[derive(Debug, Clone, Copy, Default)]
pub struct Rss {
    pub current: u64,
    pub peak: u64,
}

pub fn rss(pid: u32) -> anyhow::Result<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/status has no {name}"))?;
        let kib: u64 = line.trim().trim_end_matches("kB").trim().parse()?;
        Ok(kib * 1024)
    };
    Ok(Rss { current: field("VmRSS:")?, peak: field("VmHWM:")? })
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// User + system CPU time of a process so far, from `/proc/PID/stat` (clock ticks of 1/100 s,
/// Linux's fixed `USER_HZ`).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: state is the
    // first, utime the 12th and stime the 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_line_endpoint() {
        let line = "export AWS_ACCESS_KEY_ID=A AWS_SECRET_ACCESS_KEY=S AWS_ENDPOINT_URL=http://127.0.0.1:4580 \
                    AWS_DEFAULT_REGION=us-east-1";
        assert_eq!(endpoint_of(line), Some("127.0.0.1:4580".parse().unwrap()));
        assert_eq!(endpoint_of("export X=1"), None);
    }

    #[test]
    fn own_process_has_memory_and_cpu() {
        let me = std::process::id();
        let r = rss(me).unwrap();
        assert!(r.current > 0 && r.peak >= r.current);
        assert!(cpu_time(me).is_some());
    }
}
