//! `awsvpc` mode: every task in its own network namespace with its own address.
//!
//! ECS gives each awsvpc task an elastic network interface and holds its namespace with a pause
//! container; Flotilla does the same on one Docker bridge network it manages (`flotilla-awsvpc` by
//! default): provisioning creates the network if needed and starts a per-task pause container on
//! it, whose address is the task's `privateIpv4Address`; each of the task's containers then joins
//! the pause container's namespace (`network_mode: container:<pause>`), so they share the address
//! and reach each other on localhost. Deprovisioning removes the pause container; the network is
//! shared by all tasks and stays.
//!
//! A task whose assignment carries its own interface (`TaskAssignment::network`: the control
//! plane knows its subnet, as for every Fargate task) gets it instead: its pause container joins
//! the Docker network that stands for the subnet (`flotilla-<subnet id>`, the subnet's block with
//! its first address as the gateway, as in a VPC; made on first use by whichever agent of this
//! Docker Engine gets there first) at the address and MAC the control plane allocated. Subnet
//! networks stay too: other tasks, and other agents on the same engine, use them.
//!
//! Such a task with a single container needs no pause container: there is no one to share the
//! namespace with, so the container itself joins the subnet's network at the task's address and
//! MAC (`direct`). For a Fargate task that halves the cost of starting it, since every container
//! of a Fargate task is a gVisor sandbox and the pause container was a second one. A task whose
//! pause container an earlier agent already made (found by label when the task is adopted) keeps
//! it.

use super::{rt, Attachment, NetworkContext, NetworkError};
use crate::runtime::{labels, ContainerSpec, NetworkSpec, RunState};

/// The runtime name of a task's pause container. The dot keeps it apart from every container
/// name a task definition can use (ECS names are letters, digits, '-' and '_').
pub(super) fn pause_name(task_id: &str) -> String {
    format!("flotilla-{task_id}.pause")
}

/// The Docker network the task's pause container joins.
fn network_name(ctx: &NetworkContext<'_>) -> String {
    match ctx.task_network {
        Some(n) => n.docker_network(),
        None => ctx.config.awsvpc_network.clone(),
    }
}

/// The network to ensure: the shared awsvpc one, or the task's subnet with its VPC gateway.
fn network_spec(ctx: &NetworkContext<'_>) -> Result<NetworkSpec, NetworkError> {
    let mut net_labels = std::collections::BTreeMap::new();
    net_labels.insert(labels::MARKER.to_string(), "true".to_string());
    let Some(n) = ctx.task_network else {
        return Ok(NetworkSpec { name: ctx.config.awsvpc_network.clone(), labels: net_labels, ..Default::default() });
    };
    let gateway = crate::metadata::address::first_host(&n.cidr_block)
        .ok_or_else(|| NetworkError::BadSubnet { subnet: n.subnet_id.clone(), cidr: n.cidr_block.clone() })?;
    net_labels.insert(SUBNET_LABEL.to_string(), n.subnet_id.clone());
    Ok(NetworkSpec {
        name: n.docker_network(),
        labels: net_labels,
        subnet: Some(n.cidr_block.clone()),
        gateway: Some(gateway.to_string()),
    })
}

/// The label naming the subnet a Flotilla network stands for.
pub const SUBNET_LABEL: &str = "com.flotilla.subnet-id";

/// The task's interface when its one container holds it itself, without a pause container:
/// a task of one container with its own interface, unless a pause container was made for it
/// already (by an earlier agent, before this path existed).
fn direct<'a>(ctx: &NetworkContext<'a>, att: &Attachment) -> Option<&'a flotilla_protocol::TaskNetwork> {
    ctx.task_network.filter(|_| ctx.single_container && att.pause_id.is_none())
}

pub(super) async fn provision(ctx: &NetworkContext<'_>, att: &mut Attachment) -> Result<(), NetworkError> {
    let network = &network_name(ctx);
    ctx.runtime.ensure_network(&network_spec(ctx)?).await.map_err(rt("create the awsvpc network"))?;
    if let Some(n) = direct(ctx, att) {
        // The container gets the address when it is created (`configure`).
        att.private_ipv4 = Some(n.ipv4_address.clone());
        return Ok(());
    }

    // An earlier attempt (or an earlier agent) may have created the pause container already.
    let existing = ctx
        .runtime
        .list_containers(&[(labels::TASK, Some(ctx.task_arn)), (labels::CONTAINER, Some(labels::PAUSE_NAME))])
        .await
        .map_err(rt("find the pause container"))?;
    let id = match existing.into_iter().next() {
        Some(c) => c.id,
        None => create_pause(ctx).await?,
    };
    let info = ctx.runtime.inspect_container(&id).await.map_err(rt("inspect the pause container"))?;
    if info.state != RunState::Running {
        ctx.runtime.start_container(&id).await.map_err(rt("start the pause container"))?;
    }
    let info = ctx.runtime.inspect_container(&id).await.map_err(rt("inspect the pause container"))?;
    let ip = info.ip_addresses.get(network).cloned().ok_or(NetworkError::NoAddress { network: network.clone() })?;
    att.pause_id = Some(id);
    att.private_ipv4 = Some(ip);
    Ok(())
}

async fn create_pause(ctx: &NetworkContext<'_>) -> Result<String, NetworkError> {
    let network = network_name(ctx);
    let image = &ctx.config.pause_image;
    if !ctx.runtime.image_present(image).await.map_err(rt("look up the pause image"))? {
        ctx.runtime.pull_image(image, None).await.map_err(rt("provide the pause image"))?;
    }
    let mut pause_labels = ctx.labels.clone();
    pause_labels.insert(labels::CONTAINER.to_string(), labels::PAUSE_NAME.to_string());
    let mut spec = ContainerSpec {
        name: pause_name(ctx.task_id),
        image: image.clone(),
        labels: pause_labels,
        network_mode: Some(network),
        ipv4_address: ctx.task_network.map(|n| n.ipv4_address.clone()),
        mac_address: ctx.task_network.map(|n| n.mac_address.clone()),
        // A sandboxed task's namespace is held from inside its sandbox runtime too.
        runtime: ctx.sandbox_runtime.map(str::to_string),
        // It only holds the namespace; a small CPU weight keeps it out of the way.
        cpu_shares: Some(2),
        cgroup_parent: ctx.cgroup_parent.map(str::to_string),
        ..ContainerSpec::default()
    };
    // The task's containers share its resolv.conf (see `crate::dns`).
    super::give_resolver(ctx, super::NetworkMode::Awsvpc, &mut spec);
    ctx.runtime.create_container(&spec).await.map_err(rt("create the pause container"))
}

pub(super) fn configure(
    ctx: &NetworkContext<'_>,
    att: &Attachment,
    spec: &mut ContainerSpec,
) -> Result<(), NetworkError> {
    if let Some(n) = direct(ctx, att) {
        // The task's interface on the container itself, as the pause container would have it.
        spec.network_mode = Some(n.docker_network());
        spec.ipv4_address = Some(n.ipv4_address.clone());
        spec.mac_address = Some(n.mac_address.clone());
    } else {
        let pause = att.pause_id.as_ref().ok_or(NetworkError::NoAddress { network: "awsvpc".into() })?;
        spec.network_mode = Some(format!("container:{pause}"));
    }
    // Docker refuses these with a `container:` network mode: the namespace owner decides them.
    // A container holding the interface itself gets none either, as ECS has none in awsvpc mode
    // (no host ports: the task is reached at its own address).
    spec.port_bindings.clear();
    spec.links.clear();
    spec.hostname = None;
    spec.dns_servers.clear();
    spec.dns_search.clear();
    spec.extra_hosts.clear();
    Ok(())
}

pub(super) async fn deprovision(ctx: &NetworkContext<'_>, att: &mut Attachment) -> Result<(), NetworkError> {
    // Found by label too, in case the ID was never recorded (a crash right after create).
    let existing = ctx
        .runtime
        .list_containers(&[(labels::TASK, Some(ctx.task_arn)), (labels::CONTAINER, Some(labels::PAUSE_NAME))])
        .await
        .map_err(rt("find the pause container"))?;
    for c in existing {
        ctx.runtime.remove_container(&c.id).await.map_err(rt("remove the pause container"))?;
    }
    att.pause_id = None;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{NetworkConfig, NetworkMode, PortAllocator};
    use crate::runtime::fake::FakeRuntime;
    use flotilla_protocol::TaskNetwork;
    use std::collections::BTreeMap;

    #[tokio::test]
    async fn provisioning_is_idempotent_and_deprovisioning_removes_the_pause_container() {
        let runtime = FakeRuntime::new();
        let config = NetworkConfig::default();
        runtime.add_image(&config.pause_image);
        let ports = PortAllocator::new(None);
        let labels = BTreeMap::from([
            (labels::MARKER.to_string(), "true".to_string()),
            (labels::TASK.to_string(), "arn:t1".to_string()),
        ]);
        let ctx = NetworkContext {
            cgroup_parent: Some("/flotilla/t1"),
            ..NetworkContext::for_test(&runtime, &config, &ports, &labels)
        };
        let mut att = Attachment::default();
        NetworkMode::Awsvpc.provision(&ctx, &mut att).await.unwrap();
        let first = att.clone();
        assert!(first.private_ipv4.is_some());
        NetworkMode::Awsvpc.provision(&ctx, &mut att).await.unwrap();
        assert_eq!(att, first);
        assert_eq!(runtime.containers().len(), 1);
        // The pause container sits in the task's cgroup with the task's containers.
        assert_eq!(runtime.containers()[0].spec.cgroup_parent.as_deref(), Some("/flotilla/t1"));
        let mut spec = ContainerSpec { hostname: Some("x".into()), ..ContainerSpec::default() };
        configure(&ctx, &att, &mut spec).unwrap();
        assert_eq!(spec.network_mode, Some(format!("container:{}", first.pause_id.unwrap())));
        NetworkMode::Awsvpc.deprovision(&ctx, &mut att).await.unwrap();
        NetworkMode::Awsvpc.deprovision(&ctx, &mut att).await.unwrap();
        assert!(runtime.containers().is_empty());
    }

    #[tokio::test]
    async fn a_task_with_its_own_interface_joins_its_subnet_at_its_address() {
        let runtime = FakeRuntime::new();
        let config = NetworkConfig::default();
        runtime.add_image(&config.pause_image);
        let ports = PortAllocator::new(None);
        let labels = BTreeMap::from([(labels::TASK.to_string(), "arn:t1".to_string())]);
        let eni = TaskNetwork {
            subnet_id: "subnet-0a1".into(),
            cidr_block: "10.213.0.0/24".into(),
            ipv4_address: "10.213.0.9".into(),
            mac_address: "02:00:0a:d5:00:09".into(),
            interface_id: "eni-1".into(),
        };
        let ctx = NetworkContext {
            task_network: Some(&eni),
            sandbox_runtime: Some("runsc"),
            ..NetworkContext::for_test(&runtime, &config, &ports, &labels)
        };
        let spec = network_spec(&ctx).unwrap();
        assert_eq!(spec.name, "flotilla-subnet-0a1");
        assert_eq!((spec.subnet.as_deref(), spec.gateway.as_deref()), (Some("10.213.0.0/24"), Some("10.213.0.1")));
        let mut att = Attachment::default();
        NetworkMode::Awsvpc.provision(&ctx, &mut att).await.unwrap();
        assert_eq!(att.private_ipv4.as_deref(), Some("10.213.0.9"));
        let pause = &runtime.containers()[0].spec;
        assert_eq!(pause.network_mode.as_deref(), Some("flotilla-subnet-0a1"));
        assert_eq!(pause.mac_address.as_deref(), Some("02:00:0a:d5:00:09"));
        assert_eq!(pause.runtime.as_deref(), Some("runsc"));
        // A task of one container holds the interface itself: no pause container.
        let one = FakeRuntime::new();
        let ctx1 = NetworkContext { runtime: &one, single_container: true, ..ctx };
        let mut att = Attachment::default();
        NetworkMode::Awsvpc.provision(&ctx1, &mut att).await.unwrap();
        NetworkMode::Awsvpc.provision(&ctx1, &mut att).await.unwrap();
        assert_eq!((att.private_ipv4.as_deref(), att.pause_id.as_deref()), (Some("10.213.0.9"), None));
        assert!(one.containers().is_empty());
        assert_eq!(one.networks(), vec!["flotilla-subnet-0a1".to_string()]);
        let mut spec = ContainerSpec { hostname: Some("x".into()), ..ContainerSpec::default() };
        configure(&ctx1, &att, &mut spec).unwrap();
        assert_eq!(spec.network_mode.as_deref(), Some("flotilla-subnet-0a1"));
        // Holding the interface itself, it holds the agent's resolver too (see `crate::dns`).
        let with_dns = NetworkConfig {
            dns: crate::dns::TaskResolvers { bridge: Some("172.17.0.1".parse().unwrap()), ..Default::default() },
            ..config.clone()
        };
        let ctx_dns = NetworkContext { config: &with_dns, ..ctx1 };
        let mut resolved = ContainerSpec { dns_servers: vec!["10.0.0.2".into()], ..ContainerSpec::default() };
        let def = flotilla_model::ContainerDefinition::default();
        NetworkMode::Awsvpc.configure(&ctx_dns, &def, &BTreeMap::new(), &mut att.clone(), &mut resolved).unwrap();
        assert_eq!(resolved.dns_servers, vec!["172.17.0.1"]);
        assert_eq!(
            (spec.ipv4_address.as_deref(), spec.mac_address.as_deref(), spec.hostname.as_deref()),
            (Some("10.213.0.9"), Some("02:00:0a:d5:00:09"), None)
        );
        NetworkMode::Awsvpc.deprovision(&ctx1, &mut att).await.unwrap();
        let bad = TaskNetwork { cidr_block: "nonsense".into(), ..eni.clone() };
        let ctx = NetworkContext { task_network: Some(&bad), ..ctx };
        assert!(matches!(network_spec(&ctx), Err(NetworkError::BadSubnet { .. })));
    }
}
