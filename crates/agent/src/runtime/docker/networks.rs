//! The Docker runtime's networks: a bridge network made once per name (the shared awsvpc network,
//! or a subnet's, with its block and gateway), with the daemon's MTU, tolerating another agent on
//! the same daemon making it at the same moment; and whether the storage driver can bound a
//! container's writable layer.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};

use super::{hashmap, timed, timed_on, DockerRuntime};
use crate::runtime::{NetworkSpec, RuntimeError, RuntimeResult};

/// How long a refused network creation looks for a network another process is making.
const RACE_POLLS: u32 = 20;
const RACE_POLL: Duration = Duration::from_millis(100);

/// The bridge driver's MTU option.
const MTU_OPTION: &str = "com.docker.network.driver.mtu";

impl DockerRuntime {
    /// `Runtime::ensure_network`: check, then create, tolerating a racing creator.
    pub(super) async fn ensure_bridge_network(&self, spec: &NetworkSpec) -> RuntimeResult<String> {
        let _guard = self.network_lock.lock().await;
        if let Some(id) = self.existing_network(spec).await? {
            return Ok(id);
        }
        let mut options = HashMap::new();
        // The daemon's `mtu` setting shapes only its default bridge; a network we create gets
        // the same, or its packets would not fit the host's link.
        if let Some(mtu) = self.bridge_mtu().await {
            options.insert(MTU_OPTION.to_string(), mtu);
        }
        let ipam = spec.subnet.as_ref().map(|subnet| Ipam {
            config: Some(vec![IpamConfig {
                subnet: Some(subnet.clone()),
                gateway: spec.gateway.clone(),
                ..IpamConfig::default()
            }]),
            ..Ipam::default()
        });
        let req = NetworkCreateRequest {
            name: spec.name.clone(),
            driver: Some("bridge".into()),
            labels: Some(hashmap(&spec.labels)),
            options: (!options.is_empty()).then_some(options),
            ipam,
            ..NetworkCreateRequest::default()
        };
        match timed("create_network", self.timeouts.network, self.docker.create_network(req)).await {
            Ok(created) => Ok(created.id),
            // Another agent on this daemon may be creating it at the same moment ("already
            // exists", or for a subnet "Pool overlaps", which the daemon answers while the other
            // network is still being made): take theirs once it shows.
            Err(e) if !e.is_transient() => {
                for _ in 0..RACE_POLLS {
                    if let Some(id) = self.existing_network(spec).await? {
                        return Ok(id);
                    }
                    tokio::time::sleep(RACE_POLL).await;
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The network named in `spec`, if it exists; `Conflict` if it holds another subnet.
    async fn existing_network(&self, spec: &NetworkSpec) -> RuntimeResult<Option<String>> {
        let t = self.timeouts.network;
        let n = match timed_on("inspect_network", &spec.name, t, self.docker.inspect_network(&spec.name, None)).await {
            Ok(n) => n,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(want) = &spec.subnet {
            let has: Vec<String> =
                n.ipam.and_then(|i| i.config).unwrap_or_default().into_iter().filter_map(|c| c.subnet).collect();
            if !has.contains(want) {
                return Err(RuntimeError::Conflict {
                    op: "ensure_network",
                    message: format!(
                        "network {} exists with subnet {} instead of {want}; remove it (docker network rm {})",
                        spec.name,
                        has.join(", "),
                        spec.name
                    ),
                });
            }
        }
        Ok(Some(n.id.unwrap_or_default()))
    }

    /// The MTU of the default bridge (the daemon's `mtu` setting), if it sets one.
    async fn bridge_mtu(&self) -> Option<String> {
        let fut = self.docker.inspect_network("bridge", None);
        let n = timed("inspect_network", self.timeouts.inspect, fut).await.ok()?;
        n.options.and_then(|o| o.get(MTU_OPTION).cloned())
    }

    /// Whether the storage driver enforces `StorageOpt.size` (see `sandbox::storage_quota`),
    /// asked once; a daemon that does not answer counts as not.
    pub(super) async fn storage_quota(&self) -> bool {
        *self
            .storage_quota
            .get_or_init(|| async {
                let info = timed("info", self.timeouts.version, self.docker.info()).await.ok();
                let supported = info.as_ref().is_some_and(crate::runtime::sandbox::storage_quota);
                if !supported {
                    let driver = info.and_then(|i| i.driver).unwrap_or_default();
                    tracing::info!(
                        driver,
                        "the storage driver cannot bound a container's writable layer; Fargate tasks' ephemeral storage is unbounded"
                    );
                }
                supported
            })
            .await
    }
}
