//! What both halves of `service-bench` share: the child processes (agents, real or hollow) with a
//! guard that kills them however the run ends, a small signed ECS client over `ApiClient`, the
//! waits on ECS state, and percentiles.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use flotilla_agent::session::ApiClient;
use flotilla_sigv4::Credentials;
use serde_json::{json, Value};

/// How often the waits poll the API.
pub const POLL: Duration = Duration::from_millis(10);

/// A child process killed (and reaped) when dropped.
pub struct Proc {
    child: Child,
    name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        if let Err(e) = self.child.wait() {
            eprintln!("could not reap {}: {e}", self.name);
        }
    }
}

/// How an agent process runs: one real agent on the local Docker Engine, or `n` hollow ones.
pub enum AgentKind {
    Docker,
    Hollow { count: usize, cpu: u32, memory: u32 },
}

/// A join token for `cluster`, minted with `flotilla token create` and the root pair.
fn join_token(bin: &Path, endpoint: &str, creds: &Credentials, cluster: &str) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .args(["token", "create", "--cluster", cluster, "--server", endpoint, "--region", flotilla_bench::seed::REGION])
        .env("FLOTILLA_ACCESS_KEY_ID", &creds.access_key_id)
        .env("FLOTILLA_SECRET_ACCESS_KEY", &creds.secret_access_key)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} token create", bin.display()))?;
    anyhow::ensure!(out.status.success(), "flotilla token create failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Starts `flotilla agent` for `cluster` against `endpoint`, its output going to `log`.
pub fn start_agent(
    bin: &Path,
    endpoint: &str,
    creds: &Credentials,
    cluster: &str,
    kind: &AgentKind,
    data_dir: &Path,
    log: &Path,
) -> anyhow::Result<Proc> {
    let out = std::fs::File::create(log)?;
    let mut cmd = Command::new(bin);
    cmd.args(["agent", "--server", endpoint, "--region", flotilla_bench::seed::REGION, "--cluster", cluster])
        .arg("--data-dir")
        .arg(data_dir);
    cmd.env_remove("FLOTILLA_ACCESS_KEY_ID").env_remove("FLOTILLA_SECRET_ACCESS_KEY");
    match kind {
        // A real agent joins with a token, as an operator's does; it never holds the root pair.
        AgentKind::Docker => {
            cmd.args(["--host-ip", "127.0.0.1", "--token", &join_token(bin, endpoint, creds, cluster)?])
        }
        AgentKind::Hollow { count, cpu, memory } => cmd
            .args(["--simulate", &count.to_string()])
            .args(["--cpu", &cpu.to_string(), "--memory", &memory.to_string()])
            .env("FLOTILLA_ACCESS_KEY_ID", &creds.access_key_id)
            .env("FLOTILLA_SECRET_ACCESS_KEY", &creds.secret_access_key),
    };
    let child = cmd
        .env("FLOTILLA_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {} agent", bin.display()))?;
    Ok(Proc { child, name: format!("agent for {cluster}") })
}

/// A signed ECS client bound to one cluster.
#[derive(Clone)]
pub struct Ecs {
    api: ApiClient,
    pub cluster: String,
}

impl Ecs {
    pub fn new(endpoint: &str, creds: &Credentials, cluster: &str) -> anyhow::Result<Ecs> {
        let api = ApiClient::new(endpoint, flotilla_bench::seed::REGION, creds.clone())?;
        Ok(Ecs { api, cluster: cluster.to_string() })
    }

    pub async fn call(&self, operation: &str, body: Value) -> anyhow::Result<Value> {
        self.api.call(operation, &body).await.with_context(|| format!("{operation} failed"))
    }

    /// Creates the cluster and returns its ARN.
    pub async fn create_cluster(&self) -> anyhow::Result<String> {
        let out = self.call("CreateCluster", json!({"clusterName": self.cluster})).await?;
        Ok(out["cluster"]["clusterArn"].as_str().unwrap_or_default().to_string())
    }

    pub async fn register(&self, family: &str, container: Value) -> anyhow::Result<String> {
        let body = json!({"family": family, "networkMode": "bridge", "containerDefinitions": [container]});
        let out = self.call("RegisterTaskDefinition", body).await?;
        Ok(out["taskDefinition"]["taskDefinitionArn"].as_str().unwrap_or_default().to_string())
    }

    pub async fn service(&self, name: &str) -> anyhow::Result<Value> {
        let out = self.call("DescribeServices", json!({"cluster": self.cluster, "services": [name]})).await?;
        out["services"].get(0).cloned().with_context(|| format!("no service {name}"))
    }

    /// Task ARNs of a service (or of the cluster) with the given desiredStatus, every page.
    pub async fn list_tasks(&self, service: Option<&str>, desired: &str) -> anyhow::Result<Vec<String>> {
        let mut arns = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"cluster": self.cluster, "desiredStatus": desired, "maxResults": 100});
            if let Some(s) = service {
                body["serviceName"] = json!(s);
            }
            if let Some(t) = &token {
                body["nextToken"] = json!(t);
            }
            let out = self.call("ListTasks", body).await?;
            arns.extend(out["taskArns"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(String::from)));
            match out["nextToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(arns),
            }
        }
    }

    pub async fn describe_tasks(&self, arns: &[String]) -> anyhow::Result<Vec<Value>> {
        let mut tasks = Vec::new();
        for chunk in arns.chunks(100) {
            let out = self.call("DescribeTasks", json!({"cluster": self.cluster, "tasks": chunk})).await?;
            tasks.extend(out["tasks"].as_array().cloned().unwrap_or_default());
        }
        Ok(tasks)
    }

    /// The cluster's instances that are connected.
    pub async fn connected_instances(&self) -> anyhow::Result<usize> {
        let mut arns = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"cluster": self.cluster, "maxResults": 100});
            if let Some(t) = &token {
                body["nextToken"] = json!(t);
            }
            let out = self.call("ListContainerInstances", body).await?;
            arns.extend(
                out["containerInstanceArns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(String::from)),
            );
            match out["nextToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        let mut connected = 0;
        for chunk in arns.chunks(100) {
            let body = json!({"cluster": self.cluster, "containerInstances": chunk});
            let out = self.call("DescribeContainerInstances", body).await?;
            connected += out["containerInstances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["agentConnected"].as_bool() == Some(true))
                .count();
        }
        Ok(connected)
    }

    pub async fn wait_connected(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let what = format!("{n} connected instances in {}", self.cluster);
        within(&what, timeout, Duration::from_millis(200), || async {
            Ok((self.connected_instances().await? >= n).then_some(()))
        })
        .await
    }

    /// Waits until the service is stable as `aws ecs wait services-stable` sees it (one
    /// deployment, running == desired) with nothing pending either.
    pub async fn wait_stable(&self, name: &str, timeout: Duration) -> anyhow::Result<Value> {
        within(&format!("service {name} stable"), timeout, POLL, || async {
            let s = self.service(name).await?;
            Ok(is_stable(&s).then_some(s))
        })
        .await
    }
}

pub fn is_stable(s: &Value) -> bool {
    s["deployments"].as_array().map_or(0, |d| d.len()) == 1
        && s["runningCount"] == s["desiredCount"]
        && s["pendingCount"].as_i64() == Some(0)
}

/// Calls `probe` every `every` until it gives a value; fails after `timeout`.
pub async fn within<T, F, Fut>(what: &str, timeout: Duration, every: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await? {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// An ECS timestamp (epoch seconds, fractional) as nanoseconds.
pub fn ecs_time_ns(v: &Value) -> Option<i64> {
    v.as_f64().map(|s| (s * 1e9) as i64)
}

/// The nearest-rank percentile `p` (0..=100) of samples in milliseconds.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

/// A fresh directory under `base`.
pub fn dir(base: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let d = base.join(name);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&s, 50.0), 10.0);
        assert_eq!(percentile(&s, 99.0), 20.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn stable_means_one_deployment_and_running_equals_desired() {
        let s = json!({"deployments": [{}], "runningCount": 3, "desiredCount": 3, "pendingCount": 0});
        assert!(is_stable(&s));
        let two = json!({"deployments": [{}, {}], "runningCount": 3, "desiredCount": 3, "pendingCount": 0});
        assert!(!is_stable(&two));
        let short = json!({"deployments": [{}], "runningCount": 2, "desiredCount": 3, "pendingCount": 1});
        assert!(!is_stable(&short));
    }
}
