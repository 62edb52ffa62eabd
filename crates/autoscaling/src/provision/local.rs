//! `--provisioner local`: each host is a real `flotilla agent` process on this machine (the
//! server's own binary), with its own data directory under the server's (`hosts/local/<id>`),
//! its own loopback address for published ports (127.x.y.z from the host's private address), the
//! resources of its instance type, its zone and instance id, and a join token minted by the
//! control plane. Terminating sends SIGTERM, then SIGKILL after a grace. The process id is the
//! host's provisioner handle (`pid:N`), so a restarted server finds its agents again and adopts
//! those still running (or lets the group loop terminate them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_hosts::Host;

use super::{ControlPlane, LaunchSpec, Launched, ProvisionError, Provisioner};

/// How long a new agent must stay up before its launch counts as done (one that cannot reach
/// Docker or the control plane exits within this).
const SETTLE: Duration = Duration::from_secs(2);
/// SIGTERM to SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// The lines of an agent's log quoted when it dies at start.
const LOG_TAIL_LINES: usize = 8;

pub struct Local {
    program: PathBuf,
    cp: ControlPlane,
    /// Agents this server started, by instance id: their pids, until they exit.
    children: Arc<Mutex<HashMap<String, u32>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Local {
    /// Agents from this very binary.
    pub fn new(cp: ControlPlane) -> Self {
        let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("flotilla"));
        Self::with_program(program, cp)
    }

    /// Agents from `program` (a `flotilla` binary): for tests, whose own executable is not one.
    pub fn with_program(program: PathBuf, cp: ControlPlane) -> Self {
        Local { program, cp, children: Arc::default() }
    }

    fn dir(&self, instance_id: &str) -> PathBuf {
        self.cp.data_dir.join("hosts").join("local").join(instance_id)
    }
}

/// The loopback address of a host: 127 and the last three octets of its private address.
pub fn loopback_of(private_ip: &str) -> String {
    let octets: Vec<&str> = private_ip.split('.').collect();
    match octets.as_slice() {
        [_, b, c, d] => format!("127.{b}.{c}.{d}"),
        _ => "127.0.0.1".into(),
    }
}

/// The `flotilla agent` arguments of a host (the join token goes in the environment, not here).
pub fn agent_args(spec: &LaunchSpec, cp: &ControlPlane, data_dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "agent".into(),
        "--server".into(),
        cp.endpoint.clone(),
        "--region".into(),
        cp.region.clone(),
        "--cluster".into(),
        spec.cluster.clone(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--availability-zone".into(),
        spec.availability_zone.clone(),
        "--instance-type".into(),
        spec.instance_type.clone(),
        "--cpu".into(),
        spec.cpu.to_string(),
        "--memory".into(),
        spec.memory.to_string(),
        "--ec2-instance-id".into(),
        spec.instance_id.clone(),
        "--host-ip".into(),
        loopback_of(&spec.private_ip_address),
    ];
    if let Some(ca) = &cp.ca_cert {
        args.extend(["--ca-cert".into(), ca.display().to_string()]);
    }
    if let Some(t) = spec.ecs_config.container_stop_timeout {
        args.extend(["--container-stop-timeout".into(), t.as_secs().to_string()]);
    }
    for (k, v) in &spec.ecs_config.instance_attributes {
        args.extend(["--attribute".into(), format!("{k}={v}")]);
    }
    args
}

fn pid_of(host: &Host) -> Option<u32> {
    host.provisioner_handle.as_deref()?.strip_prefix("pid:")?.parse().ok()
}

/// Whether process `pid` is alive (not gone, not a zombie) and is the agent of `instance_id`.
fn is_agent_of(pid: u32, instance_id: &str) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'));
    !zombie && String::from_utf8_lossy(&cmdline).split('\0').any(|a| a == instance_id)
}

/// The agent process of `instance_id`, found by its command line: for a host whose launch was
/// cut short by a restart before its pid was recorded.
fn find_agent(instance_id: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| is_agent_of(*pid, instance_id))
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

#[async_trait]
impl Provisioner for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn wants_join_token(&self) -> bool {
        true
    }

    async fn launch(&self, spec: &LaunchSpec, join_token: Option<&str>) -> Result<Launched, ProvisionError> {
        let dir = self.dir(&spec.instance_id);
        let fail = |what: &str, e: std::io::Error| ProvisionError::Failed(format!("{what} {}: {e}", dir.display()));
        flotilla_agent::disk::create_private_dir(&dir).map_err(|e| fail("cannot create", e))?;
        let log_path = dir.join("agent.log");
        let log = std::fs::File::create(&log_path).map_err(|e| fail("cannot create the log in", e))?;
        let log2 = log.try_clone().map_err(|e| fail("cannot open the log in", e))?;
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(agent_args(spec, &self.cp, &dir))
            .env_remove("FLOTILLA_ACCESS_KEY_ID")
            .env_remove("FLOTILLA_SECRET_ACCESS_KEY")
            .env_remove("FLOTILLA_JOIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group: a ^C at the server's terminal does not take the hosts down
            // with it; a restarted server adopts them.
            .process_group(0);
        if let Some(t) = join_token {
            cmd.env("FLOTILLA_JOIN_TOKEN", t);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| ProvisionError::Failed(format!("cannot start {} agent: {e}", self.program.display())))?;
        let pid = child.id().unwrap_or(0);
        if let Ok(status) = tokio::time::timeout(SETTLE, child.wait()).await {
            let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            return Err(ProvisionError::Failed(format!(
                "the agent exited at start ({status}): {}",
                log_tail(&log_path)
            )));
        }
        lock(&self.children).insert(spec.instance_id.clone(), pid);
        // Reap it when it exits, whoever ends it.
        let (children, id) = (self.children.clone(), spec.instance_id.clone());
        tokio::spawn(async move {
            let status = child.wait().await;
            tracing::info!(instance = %id, ?status, "a local host's agent exited");
            lock(&children).remove(&id);
        });
        Ok(Launched { handle: Some(format!("pid:{pid}")) })
    }

    async fn terminate(&self, host: &Host) -> Result<(), ProvisionError> {
        let pid = pid_of(host).filter(|p| is_agent_of(*p, &host.instance_id)).or_else(|| find_agent(&host.instance_id));
        if let Some(pid) = pid {
            signal(pid, rustix::process::Signal::TERM);
            let deadline = tokio::time::Instant::now() + STOP_GRACE;
            while is_agent_of(pid, &host.instance_id) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if is_agent_of(pid, &host.instance_id) {
                signal(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = std::fs::remove_dir_all(self.dir(&host.instance_id));
        Ok(())
    }

    async fn alive(&self, host: &Host) -> bool {
        pid_of(host).is_some_and(|p| is_agent_of(p, &host.instance_id))
    }

    async fn adopt(&self, host: &Host) -> bool {
        self.alive(host).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_found_by_its_instance_id_when_its_pid_was_not_recorded() {
        // A `sleep` whose argument is unique to this run stands in for an agent.
        let arg = format!("1000.{}", std::process::id());
        let mut child = std::process::Command::new("sleep").arg(&arg).spawn().unwrap();
        let mut found = None;
        for _ in 0..100 {
            found = find_agent(&arg);
            if found.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, Some(child.id()));
        assert_eq!(find_agent(&arg), None);
    }

    #[test]
    fn each_host_gets_its_own_loopback_address() {
        assert_eq!(loopback_of("172.31.16.5"), "127.31.16.5");
        assert_eq!(loopback_of("bogus"), "127.0.0.1");
    }

    #[test]
    fn the_agent_is_told_who_it_is() {
        let cp = ControlPlane {
            endpoint: "http://127.0.0.1:4580".into(),
            region: "us-east-1".into(),
            access_key_id: "a".into(),
            secret_access_key: "s".into(),
            ca_cert: None,
            data_dir: "/tmp/x".into(),
        };
        let mut spec = LaunchSpec {
            instance_id: "i-0123456789abcdef0".into(),
            instance_type: "t3.small".into(),
            cpu: 2048,
            memory: 1920,
            availability_zone: "us-east-1b".into(),
            subnet_id: "subnet-1".into(),
            private_ip_address: "172.31.16.4".into(),
            spot: false,
            cluster: "demo".into(),
            ecs_config: Default::default(),
        };
        spec.ecs_config.container_stop_timeout = Some(Duration::from_secs(90));
        spec.ecs_config.instance_attributes.insert("stack".into(), "blue".into());
        let a = agent_args(&spec, &cp, Path::new("/tmp/x/hosts/local/i-1")).join(" ");
        for want in [
            "--ec2-instance-id i-0123456789abcdef0",
            "--cpu 2048",
            "--memory 1920",
            "--host-ip 127.31.16.4",
            "--container-stop-timeout 90",
            "--attribute stack=blue",
            "--cluster demo",
        ] {
            assert!(a.contains(want), "{want} missing in {a}");
        }
        assert!(!a.contains("FLTJ1"), "the token stays out of the command line");
    }
}
