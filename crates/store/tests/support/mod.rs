//! A real etcd for the store's tests: each [`Etcd`] is an `etcd` process on free loopback ports
//! with its own data directory, killed when dropped. Tests that use it fail (never skip) when
//! etcd is not installed. etcd's limits are left at their defaults, so the store's own batching
//! is exercised against them.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use flotilla_store::{CompactionPolicy, EtcdOptions, EtcdStore};

const ETCD: &str = "/usr/bin/etcd";

pub struct Etcd {
    child: Child,
    dir: tempfile::TempDir,
    pub endpoint: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Etcd {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> Etcd {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: the etcd backend's tests need a real etcd (Debian: apt-get install etcd-server)"
        );
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let (client, peer) = (free_port(), free_port());
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log");
            let child = Command::new(ETCD)
                .arg("--name=test")
                .arg(format!("--data-dir={}", dir.path().join("data").display()))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster=test={peer_url}"))
                .arg("--logger=zap")
                .arg("--log-outputs=stderr")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn etcd");
            let mut etcd = Etcd { child, dir, endpoint: client_url };
            if etcd.ready().await {
                return etcd;
            }
            last_log = std::fs::read_to_string(etcd.dir.path().join("etcd.log")).unwrap_or_default();
        }
        panic!("etcd did not start; its log:\n{last_log}");
    }

    async fn ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false; // exited, e.g. a port was taken meanwhile
            }
            let attempt = async {
                let mut client = etcd_client::Client::connect([&self.endpoint], None).await?;
                client.get("ready", None).await
            };
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), attempt).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Options for a store under a prefix no other store of this process uses.
    pub fn options(&self) -> EtcdOptions {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        EtcdOptions {
            endpoints: vec![self.endpoint.clone()],
            prefix: format!("test-{}-{n}/", std::process::id()),
            ..EtcdOptions::default()
        }
    }

    pub async fn store(&self) -> EtcdStore {
        EtcdStore::connect(self.options()).await.expect("connect to etcd")
    }

    /// A store that compacts every 100 ms down to its last `keep` revisions.
    pub async fn compacting_store(&self, keep: u64) -> EtcdStore {
        let policy =
            CompactionPolicy { interval: Duration::from_millis(100), retention: Duration::ZERO, keep_revisions: keep };
        EtcdStore::connect(EtcdOptions { compaction: Some(policy), ..self.options() }).await.expect("connect")
    }

    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([&self.endpoint], None).await.expect("raw etcd client")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
