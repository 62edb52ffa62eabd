//! A real etcd for the store's tests: each [`Etcd`] is an `etcd` process on free loopback ports
//! with its own data directory, killed when dropped. Tests that use it fail (never skip) when
//! etcd is not installed. etcd's limits are left at their defaults, so the store's own batching
//! is exercised against them.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use flotilla_store::{CompactionPolicy, EtcdOptions, EtcdStore};

const ETCD: &str = "/usr/bin/etcd";

pub struct Etcd {
    child: Child,
    dir: tempfile::TempDir,
    pub endpoint: String,
    /// For an etcd that speaks only mutual TLS: the CA, and a client certificate and key it trusts.
    pub tls: Option<ClientTls>,
}

#[derive(Clone)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes a CA, a server certificate for 127.0.0.1 and a client certificate into `dir`.
fn make_certificates(dir: &Path) -> (ClientTls, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write a certificate");
        path
    };
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = write("ca.pem", ca_cert.pem());
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |cn: &str, sans: Vec<SanType>| {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        (write(&format!("{cn}.pem"), cert.pem()), write(&format!("{cn}-key.pem"), key.serialize_pem()))
    };
    let (server_cert, server_key) = leaf("server", vec![SanType::IpAddress([127, 0, 0, 1].into())]);
    let (cert, key) = leaf("client", vec![]);
    (ClientTls { ca, cert, key }, server_cert, server_key)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Etcd {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> Etcd {
        Etcd::start_with(false).await
    }

    /// Starts an etcd that serves clients only over TLS and wants their certificates.
    pub async fn start_tls() -> Etcd {
        Etcd::start_with(true).await
    }

    async fn start_with(tls: bool) -> Etcd {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: the etcd backend's tests need a real etcd (Debian: apt-get install etcd-server)"
        );
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let (client, peer) = (free_port(), free_port());
            let client_url = format!("{}://127.0.0.1:{client}", if tls { "https" } else { "http" });
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log");
            let mut command = Command::new(ETCD);
            let client_tls = tls.then(|| {
                let (client_tls, cert, key) = make_certificates(dir.path());
                command
                    .arg(format!("--cert-file={}", cert.display()))
                    .arg(format!("--key-file={}", key.display()))
                    .arg(format!("--trusted-ca-file={}", client_tls.ca.display()))
                    .arg("--client-cert-auth");
                client_tls
            });
            let child = command
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
            let mut etcd = Etcd { child, dir, endpoint: client_url, tls: client_tls };
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
            if self.tls.is_some() {
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(1), EtcdStore::connect(self.options())).await
                {
                    return true;
                }
            } else {
                let attempt = async {
                    let mut client = etcd_client::Client::connect([&self.endpoint], None).await?;
                    client.get("ready", None).await
                };
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), attempt).await {
                    return true;
                }
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
            ca_cert: self.tls.as_ref().map(|t| t.ca.clone()),
            client_cert: self.tls.as_ref().map(|t| t.cert.clone()),
            client_key: self.tls.as_ref().map(|t| t.key.clone()),
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

impl Etcd {
    /// Freezes (SIGSTOP) or thaws (SIGCONT) the etcd process: a member that stops answering
    /// without closing its connections, as a hung or partitioned one does.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} etcd");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
