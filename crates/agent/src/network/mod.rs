//! Network modes as lifecycle hooks around a task: `provision` before any container exists,
//! `configure` on each container's spec, `bindings` after a container starts, and `deprovision`
//! once the task's containers have stopped. Every hook is idempotent, so a retried or resumed task
//! (after an agent restart) runs them again safely.
//!
//! - `bridge` (the ECS default): Docker's bridge; port mappings published on the host, a missing
//!   or zero hostPort getting a dynamic port (Docker's pick, or ours from a configured range), and
//!   `links` between the task's containers. See `bridge.rs` and `ports.rs`.
//! - `host` and `none`: the host's namespace, or no network at all. See `host.rs`.
//! - `awsvpc`: each task in its own network namespace with its own address on a Flotilla-managed
//!   bridge network, held by a per-task pause container that the task's containers join, as ECS
//!   does with its ENIs; a task of one container with its own interface in a subnet holds it
//!   itself, without a pause container. See `awsvpc.rs`.
//!
//! With the agent's DNS forwarder running (`--dns-server`), `configure` also gives each container
//! the resolver for its mode, unless the definition names its own (see `crate::dns`).

mod awsvpc;
mod bridge;
mod host;
pub mod ports;

use std::collections::BTreeMap;

use flotilla_model::{ContainerDefinition, NetworkBinding};
use serde::{Deserialize, Serialize};

use crate::runtime::{ContainerInfo, ContainerSpec, Runtime, RuntimeError};
pub use ports::PortAllocator;

/// The name of the Docker network awsvpc tasks get their addresses on, unless configured.
pub const DEFAULT_AWSVPC_NETWORK: &str = "flotilla-awsvpc";
/// The image of the per-task pause container, built locally by `flotilla-images`.
pub const DEFAULT_PAUSE_IMAGE: &str = "flotilla/pause:latest";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NetworkError {
    #[error("network mode {0} is not supported by this agent")]
    Unsupported(String),
    #[error("{step}: {source}")]
    Runtime {
        step: &'static str,
        #[source]
        source: RuntimeError,
    },
    #[error("the task's pause container has no address on network {network}")]
    NoAddress { network: String },
    #[error("no free host port in {first}-{last} for container port {container_port}")]
    NoFreePort { first: u16, last: u16, container_port: u16 },
    #[error("link {link}: no container {target} in this task")]
    BadLink { link: String, target: String },
    #[error("subnet {subnet}: {cidr} is not an IPv4 block with room for a gateway")]
    BadSubnet { subnet: String, cidr: String },
}

fn rt(step: &'static str) -> impl FnOnce(RuntimeError) -> NetworkError {
    move |source| NetworkError::Runtime { step, source }
}

/// Agent-wide network settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    pub awsvpc_network: String,
    pub pause_image: String,
    /// The host address bridge-mode ports are published on; `None` is every address, as in ECS.
    /// A local single-machine setup (and the tests) may keep them on 127.0.0.1.
    pub host_ip: Option<String>,
    /// The resolver task containers are given, per network mode, unless their definition names
    /// its own `dnsServers` (the agent's DNS forwarder; see `crate::dns`). Empty: Docker's default.
    pub dns: crate::dns::TaskResolvers,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            awsvpc_network: DEFAULT_AWSVPC_NETWORK.into(),
            pause_image: DEFAULT_PAUSE_IMAGE.into(),
            host_ip: None,
            dns: crate::dns::TaskResolvers::default(),
        }
    }
}

/// What the hooks set up for one task, kept with the task's state so deprovisioning (even after
/// an agent restart) knows what to undo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// The awsvpc pause container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_id: Option<String>,
    /// The task's own address (awsvpc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ipv4: Option<String>,
    /// Host ports taken from the agent's dynamic range, returned at deprovisioning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocated_ports: Vec<u16>,
}

/// What the hooks need from the engine.
pub struct NetworkContext<'a> {
    pub runtime: &'a dyn Runtime,
    pub config: &'a NetworkConfig,
    pub ports: &'a PortAllocator,
    pub task_id: &'a str,
    pub task_arn: &'a str,
    /// The task's labels (marker, cluster, instance, task) for what the hooks create.
    pub labels: &'a BTreeMap<String, String>,
    /// The task's cgroup, for containers the hooks create (the awsvpc pause container counts
    /// against the task, as in ECS).
    pub cgroup_parent: Option<&'a str>,
    /// The task's own interface in its subnet, when the control plane allocated one.
    pub task_network: Option<&'a flotilla_protocol::TaskNetwork>,
    /// The OCI runtime of a sandboxed (Fargate) task, for the containers the hooks create.
    pub sandbox_runtime: Option<&'a str>,
    /// Whether the task has one container: with its own interface, that container holds the
    /// interface itself, without a pause container (see `awsvpc.rs`).
    pub single_container: bool,
}

impl<'a> NetworkContext<'a> {
    /// Task `t1` (`arn:t1`) with no cgroup, interface or sandbox: what the unit tests start from.
    #[cfg(test)]
    pub(crate) fn for_test(
        runtime: &'a dyn Runtime,
        config: &'a NetworkConfig,
        ports: &'a PortAllocator,
        labels: &'a BTreeMap<String, String>,
    ) -> Self {
        NetworkContext {
            runtime,
            config,
            ports,
            task_id: "t1",
            task_arn: "arn:t1",
            labels,
            cgroup_parent: None,
            task_network: None,
            sandbox_runtime: None,
            single_container: false,
        }
    }
}

/// A task definition's network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Bridge,
    Host,
    None,
    Awsvpc,
}

impl NetworkMode {
    /// Parses `networkMode`; an absent one is `bridge`, as ECS defaults it on Linux.
    pub fn parse(mode: Option<&str>) -> Result<NetworkMode, NetworkError> {
        match mode.unwrap_or("bridge") {
            "bridge" => Ok(NetworkMode::Bridge),
            "host" => Ok(NetworkMode::Host),
            "none" => Ok(NetworkMode::None),
            "awsvpc" => Ok(NetworkMode::Awsvpc),
            other => Err(NetworkError::Unsupported(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
            NetworkMode::Awsvpc => "awsvpc",
        }
    }

    /// Sets up what the task's containers will join. Idempotent.
    pub async fn provision(self, ctx: &NetworkContext<'_>, att: &mut Attachment) -> Result<(), NetworkError> {
        match self {
            NetworkMode::Awsvpc => awsvpc::provision(ctx, att).await,
            NetworkMode::Bridge | NetworkMode::Host | NetworkMode::None => Ok(()),
        }
    }

    /// Shapes one container's spec. `names` maps the task's container names to runtime names,
    /// for links.
    pub fn configure(
        self,
        ctx: &NetworkContext<'_>,
        def: &ContainerDefinition,
        names: &BTreeMap<String, String>,
        att: &mut Attachment,
        spec: &mut ContainerSpec,
    ) -> Result<(), NetworkError> {
        match self {
            NetworkMode::Bridge => bridge::configure(ctx, def, names, att, spec)?,
            NetworkMode::Host => host::configure_host(spec)?,
            NetworkMode::None => host::configure_none(spec)?,
            NetworkMode::Awsvpc => awsvpc::configure(ctx, att, spec)?,
        }
        give_resolver(ctx, self, spec);
        Ok(())
    }

    /// The container's networkBindings once it runs.
    pub fn bindings(self, def: &ContainerDefinition, info: &ContainerInfo) -> Vec<NetworkBinding> {
        match self {
            NetworkMode::Bridge => bridge::bindings(info),
            NetworkMode::Host => host::bindings(def),
            // ECS reports no bindings for these: awsvpc tasks are reached on their own address.
            NetworkMode::None | NetworkMode::Awsvpc => Vec::new(),
        }
    }

    /// Undoes `provision` and returns dynamic ports. Idempotent.
    pub async fn deprovision(self, ctx: &NetworkContext<'_>, att: &mut Attachment) -> Result<(), NetworkError> {
        if self == NetworkMode::Awsvpc {
            awsvpc::deprovision(ctx, att).await?;
        }
        ctx.ports.release(&att.allocated_ports);
        att.allocated_ports.clear();
        Ok(())
    }
}

/// Gives a container the agent's resolver for `mode` (see `crate::dns`), unless its definition
/// named its own servers or mounts its own /etc/resolv.conf: awsvpc containers the agent's
/// resolv.conf, mounted (or, without one, `Dns`, which their network's embedded DNS forwards
/// to); the others `Dns`, from which Docker writes their resolv.conf.
fn give_resolver(ctx: &NetworkContext<'_>, mode: NetworkMode, spec: &mut ContainerSpec) {
    const TARGET: &str = "/etc/resolv.conf";
    let Some(ip) = ctx.config.dns.for_mode(mode) else { return };
    let mounts_own = spec.binds.iter().any(|b| b.split(':').nth(1) == Some(TARGET));
    if mounts_own || !spec.dns_servers.is_empty() {
        return;
    }
    if let (NetworkMode::Awsvpc, Some(file)) = (mode, &ctx.config.dns.resolv_conf) {
        spec.binds.push(format!("{}:{TARGET}:ro", file.display()));
        return;
    }
    // Docker refuses `Dns` on a container in another's namespace (awsvpc's pause container's);
    // that one's resolver is theirs.
    if !spec.network_mode.as_deref().is_some_and(|m| m.starts_with("container:")) {
        spec.dns_servers.push(ip.to_string());
    }
}

/// The protocol of a port mapping, lower-cased as Docker wants it.
fn protocol(p: Option<&str>) -> String {
    p.unwrap_or("tcp").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_with_bridge_as_the_default() {
        assert_eq!(NetworkMode::parse(None).unwrap(), NetworkMode::Bridge);
        assert_eq!(NetworkMode::parse(Some("awsvpc")).unwrap(), NetworkMode::Awsvpc);
        assert!(matches!(NetworkMode::parse(Some("nat")), Err(NetworkError::Unsupported(_))));
    }

    /// Every mode's containers get the agent's resolver for that mode, except where the
    /// definition names its own or the namespace is another container's.
    #[tokio::test]
    async fn containers_get_the_agents_resolver_for_their_mode() {
        use crate::runtime::fake::FakeRuntime;
        let runtime = FakeRuntime::new();
        let resolvers = crate::dns::TaskResolvers {
            bridge: Some("172.17.0.1".parse().unwrap()),
            host: Some("127.0.0.153".parse().unwrap()),
            resolv_conf: None,
        };
        let config = NetworkConfig { dns: resolvers.clone(), ..NetworkConfig::default() };
        runtime.add_image(&config.pause_image);
        let ports = PortAllocator::new(None);
        let labels = BTreeMap::new();
        let ctx = NetworkContext::for_test(&runtime, &config, &ports, &labels);
        let def = ContainerDefinition::default();
        let names = BTreeMap::new();
        let servers = |mode: NetworkMode, given: &[&str], att: &mut Attachment| {
            let mut spec =
                ContainerSpec { dns_servers: given.iter().map(|s| s.to_string()).collect(), ..Default::default() };
            mode.configure(&ctx, &def, &names, att, &mut spec).unwrap();
            spec.dns_servers
        };
        let mut att = Attachment::default();
        assert_eq!(servers(NetworkMode::Bridge, &[], &mut att), vec!["172.17.0.1"]);
        assert_eq!(servers(NetworkMode::Bridge, &["10.0.0.2"], &mut att), vec!["10.0.0.2"], "the definition wins");
        assert_eq!(servers(NetworkMode::Host, &[], &mut att), vec!["127.0.0.153"]);
        assert!(servers(NetworkMode::None, &[], &mut att).is_empty());
        // awsvpc: the pause container holds the resolver; the task's containers join it.
        NetworkMode::Awsvpc.provision(&ctx, &mut att).await.unwrap();
        assert_eq!(runtime.containers()[0].spec.dns_servers, vec!["172.17.0.1"]);
        assert!(servers(NetworkMode::Awsvpc, &["10.0.0.2"], &mut att).is_empty());
        // With the agent's resolv.conf, every awsvpc container mounts it instead (the pause
        // container's resolver is Docker's embedded DNS, which a sandbox may not reach).
        let with_file = NetworkConfig {
            dns: crate::dns::TaskResolvers { resolv_conf: Some("/data/resolv.conf".into()), ..resolvers.clone() },
            ..config.clone()
        };
        let ctx_file = NetworkContext { config: &with_file, ..ctx };
        let mut spec = ContainerSpec::default();
        NetworkMode::Awsvpc.configure(&ctx_file, &def, &names, &mut att, &mut spec).unwrap();
        assert_eq!((spec.binds, spec.dns_servers), (vec!["/data/resolv.conf:/etc/resolv.conf:ro".to_string()], vec![]));
        // A task mounting its own keeps it.
        let own = vec!["vol:/etc/resolv.conf".to_string()];
        let mut spec = ContainerSpec { binds: own.clone(), ..Default::default() };
        NetworkMode::Awsvpc.configure(&ctx_file, &def, &names, &mut att, &mut spec).unwrap();
        assert_eq!(spec.binds, own);
        let mut spec = ContainerSpec { binds: own.clone(), ..Default::default() };
        NetworkMode::Bridge.configure(&ctx_file, &def, &names, &mut att, &mut spec).unwrap();
        assert!(spec.dns_servers.is_empty());
        // Without a forwarder, nothing changes.
        let plain = NetworkConfig::default();
        let ctx = NetworkContext { config: &plain, ..ctx };
        let mut spec = ContainerSpec::default();
        NetworkMode::Bridge.configure(&ctx, &def, &names, &mut att, &mut spec).unwrap();
        assert!(spec.dns_servers.is_empty());
    }
}
