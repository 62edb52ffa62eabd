//! What a load balancer node serves, built whole from one listing of `elbv2/` (load balancers,
//! listeners, rules, target groups, targets and their health) and the control plane's cache
//! (where instance targets live).
//!
//! Addresses: an `ip` target is `IP:PORT`. An `instance` target (`i-...`) names the EC2 instance
//! id of a container instance; its address is, in order:
//! 1. the `bindIP` of a task's network binding on that instance for the target's port, when the
//!    agent published the port on one address (agents started with `--host-ip`, as `flotilla up`
//!    and the `local` host provisioner start them);
//! 2. the address the agent's session came from, as the gateway recorded it (`127.0.0.1` when
//!    it connected over loopback): the port is published on every address of that host;
//! 3. otherwise `127.0.0.1`: no session was seen (or the listener is TLS, which does not tell
//!    the gateway the peer's address); control plane, agents and nodes on one machine is the
//!    case this covers.
//!
//! An instance target whose container instance is unknown (or deregistered) is left out: there
//! is nowhere to send it traffic.

use std::collections::HashMap;

use flotilla_api::{ApiError, ApiResult, Ctx};
use flotilla_endpoints::codec::decode;
use flotilla_endpoints::elb::{
    Listener, LoadBalancer, NodeConfig, NodeTarget, Rule, Target, TargetGroup, TargetHealth, TargetType,
};
use flotilla_endpoints::keys;
use serde::de::DeserializeOwned;

/// The address of an instance target whose port is published on every address.
pub const LOOPBACK: &str = "127.0.0.1";

fn read<T: DeserializeOwned>(key: &str, value: &[u8]) -> ApiResult<T> {
    decode(value).map_err(|e| ApiError::server(format!("The record {key} does not decode: {e}")))
}

/// Builds the configuration every node serves, at the store's current revision.
pub async fn build_config(ctx: &Ctx) -> ApiResult<NodeConfig> {
    let listing = ctx.store.list("elbv2/").await?;
    let mut config = NodeConfig {
        revision: listing.revision as i64,
        load_balancers: Vec::new(),
        listeners: Vec::new(),
        rules: Vec::new(),
        target_groups: Vec::new(),
        targets: Vec::new(),
    };
    let mut targets: Vec<(String, Target)> = Vec::new();
    let mut health: HashMap<String, TargetHealth> = HashMap::new();
    for kv in &listing.kvs {
        let key = kv.key.as_str();
        if let Some(rest) = key.strip_prefix(keys::TARGET_HEALTH) {
            health.insert(rest.to_string(), read(key, &kv.value)?);
        } else if let Some(rest) = key.strip_prefix(keys::TARGET) {
            let group = rest.split('/').next().unwrap_or_default().to_string();
            targets.push((group, read(key, &kv.value)?));
        } else if key.starts_with(keys::LOAD_BALANCER) {
            config.load_balancers.push(read::<LoadBalancer>(key, &kv.value)?);
        } else if key.starts_with(keys::LISTENER) {
            config.listeners.push(read::<Listener>(key, &kv.value)?);
        } else if key.starts_with(keys::RULE) {
            config.rules.push(read::<Rule>(key, &kv.value)?);
        } else if key.starts_with(keys::TARGET_GROUP) {
            config.target_groups.push(read::<TargetGroup>(key, &kv.value)?);
        }
        // Anything else (the nodes' own records under NODE_PREFIX, whatever else the ELBv2 API
        // keeps) is nothing a node serves.
    }
    let kinds: HashMap<&str, TargetType> =
        config.target_groups.iter().map(|g| (g.id.as_str(), g.target_type)).collect();
    let resolver = Resolver::new(ctx);
    for (group, target) in targets {
        let kind = kinds.get(group.as_str()).copied().unwrap_or(TargetType::Ip);
        let address = match kind {
            TargetType::Instance => match resolver.instance(&target.id, target.port) {
                Some(host) => format!("{host}:{}", target.port),
                None => continue,
            },
            TargetType::Ip => format!("{}:{}", target.id, target.port),
            // Lambda and ALB targets are not served by nodes.
            TargetType::Lambda | TargetType::Alb => continue,
        };
        let health_key = format!("{group}/{}:{}", target.id, target.port);
        let health = health.get(&health_key).map(|h| h.state);
        config.targets.push(NodeTarget { target_group_id: group, target, address, health });
    }
    Ok(config)
}

/// Finds the host address of an instance target from the cache's container instances: the
/// address its agent advertises (`flotilla.host-address`), else the one its session came from.
struct Resolver {
    /// Host address by EC2 instance id, registered instances only.
    instances: HashMap<String, String>,
}

impl Resolver {
    fn new(ctx: &Ctx) -> Self {
        let ix = ctx.cache.read();
        let mut instances = HashMap::new();
        for entry in ix.instances.values() {
            let ci = &entry.value.instance;
            if ci.status.as_deref() == Some("INACTIVE") {
                continue;
            }
            let Some(ec2) = ci.ec2_instance_id.clone() else { continue };
            instances.insert(ec2, flotilla_api::domain::hosts::address(&entry.value));
        }
        Resolver { instances }
    }

    /// The host address of the container instance `ec2_instance_id`, if it is known.
    fn instance(&self, ec2_instance_id: &str, _port: u16) -> Option<String> {
        self.instances.get(ec2_instance_id).cloned()
    }
}

/// Whether two configurations serve the same thing (their revisions aside).
pub fn same_content(a: &NodeConfig, b: &NodeConfig) -> bool {
    a.load_balancers == b.load_balancers
        && a.listeners == b.listeners
        && a.rules == b.rules
        && a.target_groups == b.target_groups
        && a.targets == b.targets
}
