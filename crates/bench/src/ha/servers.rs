//! Several `flotilla server` processes over one etcd cluster, each on a fixed loopback port (so a
//! server killed and started again is found where agents and clients expect it), and what their
//! `GET /health` says about leadership.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flotilla_sigv4::Credentials;

use crate::load::Target;
use crate::procs::{self, Server};

/// One server's slot: where it listens and, while it runs, its process.
pub struct Slot {
    pub id: String,
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub log: PathBuf,
    pub process: Option<Server>,
}

/// The servers of one control plane.
pub struct ControlPlane {
    bin: PathBuf,
    store: String,
    credentials: Credentials,
    extra: Vec<String>,
    pub slots: Vec<Slot>,
}

/// What one server's `/health` said.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub leader: bool,
    pub leader_id: Option<String>,
    /// Agent sessions the server holds.
    pub sessions: u64,
}

impl ControlPlane {
    /// Starts `n` servers over the store at `store` (`etcd://...`), with `extra` flags each.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        store: &str,
        credentials: &Credentials,
        n: usize,
        extra: &[&str],
    ) -> anyhow::Result<ControlPlane> {
        std::fs::create_dir_all(dir)?;
        let mut slots = Vec::new();
        for i in 0..n {
            let id = format!("server{i}");
            slots.push(Slot {
                addr: SocketAddr::from(([127, 0, 0, 1], super::etcd::free_port()?)),
                data: dir.join(&id),
                log: dir.join(format!("{id}.log")),
                id,
                process: None,
            });
        }
        let mut cp = ControlPlane {
            bin: bin.to_path_buf(),
            store: store.to_string(),
            credentials: credentials.clone(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            slots,
        };
        for i in 0..n {
            cp.spawn(i)?;
        }
        for i in 0..n {
            cp.wait_healthy(i).await?;
        }
        Ok(cp)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let slot = &self.slots[i];
        let mut args = vec![
            "--listen".to_string(),
            slot.addr.to_string(),
            "--store".to_string(),
            self.store.clone(),
            "--server-id".to_string(),
            slot.id.clone(),
        ];
        args.extend(self.extra.iter().cloned());
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = procs::start_flotilla_args(&self.bin, &slot.data, &self.credentials, &slot.log, &[], &arg_refs)?;
        self.slots[i].process = Some(server);
        Ok(())
    }

    async fn wait_healthy(&self, i: usize) -> anyhow::Result<()> {
        crate::load::wait_healthy(self.slots[i].addr, Duration::from_secs(60)).await.map(|_| ())
    }

    /// Starts server `i` again (after a kill), on the same port.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)?;
        self.wait_healthy(i).await
    }

    /// Kills server `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(s) = self.slots[i].process.take() {
            super::signal(s.guard.pid(), "KILL");
            drop(s);
        }
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.slots[i].process.as_ref().map(|s| s.guard.pid())
    }

    /// `http://A,http://B,...`: what agents and load balancer nodes take as `--server`.
    pub fn urls(&self) -> String {
        self.slots.iter().map(|s| format!("http://{}", s.addr)).collect::<Vec<_>>().join(",")
    }

    /// A client target for server `i`.
    pub fn target(&self, i: usize) -> Target {
        Target {
            addr: self.slots[i].addr,
            credentials: self.credentials.clone(),
            region: crate::seed::REGION.into(),
            pid: self.pid(i),
            tasks: 0,
        }
    }

    /// The indexes of the servers that run now.
    pub fn running(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|&i| self.slots[i].process.is_some()).collect()
    }

    /// What server `i`'s `/health` says, if it answers.
    pub async fn health(&self, i: usize) -> Option<Health> {
        let http = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().ok()?;
        let body: serde_json::Value =
            http.get(format!("http://{}/health", self.slots[i].addr)).send().await.ok()?.json().await.ok()?;
        Some(Health {
            leader: body["leader"].as_bool().unwrap_or(false),
            leader_id: body["leader_id"].as_str().map(str::to_string),
            sessions: body["sessions"].as_u64().unwrap_or(0),
        })
    }

    /// The running server that says it leads, if exactly one does.
    pub async fn leader(&self) -> Option<usize> {
        let mut leaders = Vec::new();
        for i in self.running() {
            if self.health(i).await.is_some_and(|h| h.leader) {
                leaders.push(i);
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    }

    /// Agent sessions held by the running servers together.
    pub async fn sessions(&self) -> u64 {
        let mut n = 0;
        for i in self.running() {
            n += self.health(i).await.map_or(0, |h| h.sessions);
        }
        n
    }

    /// Waits until a running server other than `not` leads; returns it and how long that took
    /// from `since`.
    pub async fn await_leader(
        &self,
        not: Option<usize>,
        since: Instant,
        timeout: Duration,
    ) -> anyhow::Result<(usize, Duration)> {
        loop {
            if let Some(i) = self.leader().await.filter(|i| Some(*i) != not) {
                return Ok((i, since.elapsed()));
            }
            anyhow::ensure!(since.elapsed() < timeout, "no new leader within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}
