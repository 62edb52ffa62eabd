//! The fault-test bed: three etcd members, three `flotilla server`s on them, hollow container
//! instances (`flotilla agent --simulate`, one process per zone, given every server's URL), a
//! task definition and a REPLICA service.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flotilla_sigv4::Credentials;
use serde_json::json;

use super::client::MultiClient;
use super::etcd::EtcdCluster;
use super::servers::ControlPlane;
use crate::procs::{self, ChildGuard, Hollow};
use crate::runtask;

/// The service the bed runs.
pub const SERVICE: &str = "web";

/// How a bed is laid out.
#[derive(Debug, Clone)]
pub struct Layout {
    pub etcd_members: usize,
    pub servers: usize,
    pub zones: usize,
    pub instances_per_zone: usize,
    /// CPU units each hollow instance offers (tasks reserve [`runtask::TASK_CPU`]).
    pub instance_cpu: u32,
    pub service_desired: u32,
    /// Extra flags for every server.
    pub server_flags: Vec<String>,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            etcd_members: 3,
            servers: 3,
            zones: 3,
            instances_per_zone: 4,
            instance_cpu: 1024,
            service_desired: 6,
            server_flags: Vec::new(),
        }
    }
}

pub struct Bed {
    pub etcd: EtcdCluster,
    pub cp: ControlPlane,
    pub agents: Vec<ChildGuard>,
    pub client: std::sync::Arc<MultiClient>,
    pub layout: Layout,
    pub dir: PathBuf,
}

/// `instances` hollow container instances split evenly over `zones` zones, one `flotilla agent
/// --simulate` process per zone given `servers` (one URL or several), each instance offering
/// `cpu` units and 16 GiB; their identities and logs under `dir`.
pub fn start_fleet(
    bin: &Path,
    servers: &str,
    credentials: &Credentials,
    dir: &Path,
    zones: usize,
    instances: usize,
    cpu: u32,
) -> anyhow::Result<Vec<ChildGuard>> {
    std::fs::create_dir_all(dir.join("agents"))?;
    let mut agents = Vec::new();
    for z in 0..zones {
        let count = instances / zones + usize::from(z < instances % zones);
        let zone = crate::seed::zone(z);
        let hollow = Hollow { count, zone: zone.clone(), cpu, memory: 16384 };
        let log = dir.join(format!("agents-{zone}.log"));
        agents.push(procs::start_hollow_at(bin, servers, credentials, &hollow, &dir.join("agents").join(&zone), &log)?);
    }
    Ok(agents)
}

impl Bed {
    pub async fn start(bin: &Path, dir: &Path, layout: Layout) -> anyhow::Result<Bed> {
        let credentials = Credentials::new("FLTAHATEST0000000001", "haSecretKey00000000000000000000000000000");
        let etcd = EtcdCluster::start(&dir.join("etcd"), layout.etcd_members).await?;
        let flags: Vec<&str> = layout.server_flags.iter().map(String::as_str).collect();
        let cp =
            ControlPlane::start(bin, &dir.join("servers"), &etcd.store_url(), &credentials, layout.servers, &flags)
                .await?;
        let client = std::sync::Arc::new(MultiClient::new((0..layout.servers).map(|i| cp.target(i)).collect()));
        let mut bed = Bed { etcd, cp, agents: Vec::new(), client, layout, dir: dir.to_path_buf() };
        let (zones, instances, cpu) = (bed.layout.zones, bed.instances(), bed.layout.instance_cpu);
        bed.agents = start_fleet(bin, &bed.cp.urls(), &credentials, dir, zones, instances, cpu)?;
        bed.await_fleet(Duration::from_secs(60)).await?;
        runtask::register_definition(&bed.cp.target(0)).await?;
        bed.client
            .ok(
                "CreateService",
                &json!({"serviceName": SERVICE, "taskDefinition": runtask::FAMILY, "desiredCount": bed.layout.service_desired,
                        "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 100}}),
            )
            .await?;
        bed.await_service(bed.layout.service_desired, Instant::now(), Duration::from_secs(30)).await?;
        Ok(bed)
    }

    pub fn instances(&self) -> usize {
        self.layout.zones * self.layout.instances_per_zone
    }

    /// How many instances have their agent connected, as a server sees it.
    pub async fn connected(&self) -> anyhow::Result<usize> {
        let page = self
            .client
            .ok("ListContainerInstances", &json!({"filter": "agentConnected == true", "maxResults": 100}))
            .await?;
        Ok(page["containerInstanceArns"].as_array().map_or(0, Vec::len))
    }

    /// Waits until every instance's agent is connected; returns how long that took.
    pub async fn await_fleet(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            if self.connected().await.unwrap_or(0) >= self.instances() {
                return Ok(started.elapsed());
            }
            anyhow::ensure!(started.elapsed() < timeout, "the fleet did not connect within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the running servers hold a session of every agent again; returns the time
    /// since `since`.
    pub async fn await_sessions(&self, since: Instant, timeout: Duration) -> anyhow::Result<Duration> {
        loop {
            if self.cp.sessions().await >= self.instances() as u64 {
                return Ok(since.elapsed());
            }
            anyhow::ensure!(since.elapsed() < timeout, "the agents did not all reconnect within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The service's (desired, running, pending).
    pub async fn service_counts(&self) -> anyhow::Result<(u64, u64, u64)> {
        let out = self.client.ok("DescribeServices", &json!({"services": [SERVICE]})).await?;
        let s = &out["services"][0];
        let n = |f: &str| s[f].as_u64().unwrap_or(0);
        Ok((n("desiredCount"), n("runningCount"), n("pendingCount")))
    }

    /// Waits until the service runs `desired` tasks and has none pending; returns the time since
    /// `since`.
    pub async fn await_service(&self, desired: u32, since: Instant, timeout: Duration) -> anyhow::Result<Duration> {
        loop {
            if let Ok((d, r, p)) = self.service_counts().await {
                if d == u64::from(desired) && r == d && p == 0 {
                    return Ok(since.elapsed());
                }
            }
            anyhow::ensure!(since.elapsed() < timeout, "service {SERVICE} not at {desired} within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
