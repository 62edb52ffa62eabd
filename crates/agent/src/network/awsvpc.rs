//! `awsvpc` mode: every task in its own network namespace with its own address.
//!
//! ECS gives each awsvpc task an elastic network interface and holds its namespace with a pause
//! container; Flotilla does the same on one Docker bridge network it manages (`flotilla-awsvpc` by
//! default): provisioning creates the network if needed and starts a per-task pause container on
//! it, whose address is the task's `privateIpv4Address`; each of the task's containers then joins
//! the pause container's namespace (`network_mode: container:<pause>`), so they share the address
//! and reach each other on localhost. Deprovisioning removes the pause container; the network is
//! shared by all tasks and stays.

use super::{rt, Attachment, NetworkContext, NetworkError};
use crate::runtime::{labels, ContainerSpec, NetworkSpec, RunState};

/// The runtime name of a task's pause container. The dot keeps it apart from every container
/// name a task definition can use (ECS names are letters, digits, '-' and '_').
pub(super) fn pause_name(task_id: &str) -> String {
    format!("flotilla-{task_id}.pause")
}

pub(super) async fn provision(ctx: &NetworkContext<'_>, att: &mut Attachment) -> Result<(), NetworkError> {
    let network = &ctx.config.awsvpc_network;
    let mut net_labels = std::collections::BTreeMap::new();
    net_labels.insert(labels::MARKER.to_string(), "true".to_string());
    ctx.runtime
        .ensure_network(&NetworkSpec { name: network.clone(), labels: net_labels })
        .await
        .map_err(rt("create the awsvpc network"))?;

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
    let image = &ctx.config.pause_image;
    if !ctx.runtime.image_present(image).await.map_err(rt("look up the pause image"))? {
        ctx.runtime.pull_image(image).await.map_err(rt("provide the pause image"))?;
    }
    let mut pause_labels = ctx.labels.clone();
    pause_labels.insert(labels::CONTAINER.to_string(), labels::PAUSE_NAME.to_string());
    let spec = ContainerSpec {
        name: pause_name(ctx.task_id),
        image: image.clone(),
        labels: pause_labels,
        network_mode: Some(ctx.config.awsvpc_network.clone()),
        // It only holds the namespace; a small CPU weight keeps it out of the way.
        cpu_shares: Some(2),
        cgroup_parent: ctx.cgroup_parent.map(str::to_string),
        ..ContainerSpec::default()
    };
    ctx.runtime.create_container(&spec).await.map_err(rt("create the pause container"))
}

pub(super) fn configure(att: &Attachment, spec: &mut ContainerSpec) -> Result<(), NetworkError> {
    let pause = att.pause_id.as_ref().ok_or(NetworkError::NoAddress { network: "awsvpc".into() })?;
    spec.network_mode = Some(format!("container:{pause}"));
    // Docker refuses these with a `container:` network mode: the namespace owner decides them.
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
            runtime: &runtime,
            config: &config,
            ports: &ports,
            task_id: "t1",
            task_arn: "arn:t1",
            labels: &labels,
            cgroup_parent: Some("/flotilla/t1"),
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
        configure(&att, &mut spec).unwrap();
        assert_eq!(spec.network_mode, Some(format!("container:{}", first.pause_id.unwrap())));
        NetworkMode::Awsvpc.deprovision(&ctx, &mut att).await.unwrap();
        NetworkMode::Awsvpc.deprovision(&ctx, &mut att).await.unwrap();
        assert!(runtime.containers().is_empty());
    }
}
