//! A local etcd cluster of real `etcd` processes (Debian's `etcd-server`) on loopback ports, for
//! the high-availability fault tests and benchmarks: start N members, kill one with SIGKILL,
//! start it again on its data, and say which endpoints to give `flotilla server --store`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::procs::ChildGuard;

/// The etcd binary: `$FLOTILLA_ETCD_BIN`, else `etcd` on the PATH.
pub fn etcd_bin() -> PathBuf {
    std::env::var_os("FLOTILLA_ETCD_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("etcd"))
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    data: PathBuf,
    log: PathBuf,
    process: Option<ChildGuard>,
}

/// A running etcd cluster; every member is killed when it is dropped.
pub struct EtcdCluster {
    members: Vec<Member>,
    token: String,
}

impl EtcdCluster {
    /// Starts `n` members with their data and logs under `dir`, and waits until they serve.
    pub async fn start(dir: &Path, n: usize) -> anyhow::Result<EtcdCluster> {
        anyhow::ensure!(n > 0, "an etcd cluster needs at least one member");
        std::fs::create_dir_all(dir)?;
        let mut members = Vec::new();
        for i in 0..n {
            let name = format!("etcd{i}");
            members.push(Member {
                data: dir.join(&name),
                log: dir.join(format!("{name}.log")),
                name,
                client: free_port()?,
                peer: free_port()?,
                process: None,
            });
        }
        let token = format!("flotilla-{}", std::process::id());
        let mut cluster = EtcdCluster { members, token };
        for i in 0..n {
            cluster.spawn(i, "new")?;
        }
        cluster.wait_ready(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    fn initial_cluster(&self) -> String {
        self.members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer)).collect::<Vec<_>>().join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) -> anyhow::Result<()> {
        let initial = self.initial_cluster();
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&m.log)?;
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let child = Command::new(etcd_bin())
            .args(["--name", &m.name, "--data-dir"])
            .arg(&m.data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial, "--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", state])
            // Flotilla's launch transactions and batched deletes carry more than etcd's default
            // 128 operations; the README's recipe sets the same.
            .args(["--max-txn-ops", "10000", "--max-request-bytes", "10485760"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {} (install Debian's etcd-server): {e}", etcd_bin().display()))?;
        m.process = Some(ChildGuard::new(child, &m.name));
        Ok(())
    }

    /// `etcd://127.0.0.1:P1,127.0.0.1:P2,...`, what `flotilla server --store` takes.
    pub fn store_url(&self) -> String {
        let hosts: Vec<String> = self.members.iter().map(|m| format!("127.0.0.1:{}", m.client)).collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// The client URLs of the members, for etcdctl.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("http://127.0.0.1:{}", m.client)).collect()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The member process's pid, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].process.as_ref().map(ChildGuard::pid)
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(p) = self.members[i].process.take() {
            crate::ha::signal(p.pid(), "KILL");
            drop(p);
        }
    }

    /// Starts member `i` again on its data (after [`EtcdCluster::kill`]).
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i, "existing")?;
        self.wait_ready(Duration::from_secs(30)).await
    }

    /// Waits until every running member answers `/health` with `"health":"true"`.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build()?;
        let started = Instant::now();
        for m in self.members.iter().filter(|m| m.process.is_some()) {
            let url = format!("http://127.0.0.1:{}/health", m.client);
            loop {
                let ok = match http.get(&url).send().await {
                    Ok(r) => r.text().await.unwrap_or_default().contains("\"true\""),
                    Err(_) => false,
                };
                if ok {
                    break;
                }
                anyhow::ensure!(
                    started.elapsed() < timeout,
                    "etcd member {} did not become healthy within {timeout:?} (see {})",
                    m.name,
                    m.log.display()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}
