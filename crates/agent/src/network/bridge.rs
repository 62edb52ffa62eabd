//! `bridge` mode: containers on Docker's default bridge, port mappings published on the host, and
//! `links` between containers of the task.
//!
//! A mapping with a hostPort publishes exactly that port (the control plane reserved it when it
//! placed the task). A mapping whose hostPort is 0 or absent gets a dynamic port: from the agent's
//! configured range when there is one, else Docker picks from the kernel's ephemeral range. Either
//! way the port actually bound is read back from the runtime after start and reported as the
//! container's networkBindings.

use std::collections::BTreeMap;

use flotilla_model::{ContainerDefinition, NetworkBinding};

use super::{protocol, Attachment, NetworkContext, NetworkError};
use crate::runtime::{ContainerInfo, ContainerSpec, PortBindingSpec};

pub(super) fn configure(
    ctx: &NetworkContext<'_>,
    def: &ContainerDefinition,
    names: &BTreeMap<String, String>,
    att: &mut Attachment,
    spec: &mut ContainerSpec,
) -> Result<(), NetworkError> {
    spec.network_mode = Some("bridge".into());
    spec.port_bindings.clear();
    for m in def.port_mappings.iter().flatten() {
        let Some(container_port) = m.container_port.and_then(|p| u16::try_from(p).ok()) else { continue };
        let proto = protocol(m.protocol.as_deref());
        let host_port = match m.host_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) {
            Some(p) => Some(p),
            None => match ctx.ports.allocate(&proto) {
                Ok(Some(p)) => {
                    att.allocated_ports.push(p);
                    Some(p)
                }
                Ok(None) => None,
                Err(()) => {
                    let r = ctx.ports.range().cloned().unwrap_or(0..=0);
                    return Err(NetworkError::NoFreePort { first: *r.start(), last: *r.end(), container_port });
                }
            },
        };
        let host_ip = ctx.config.host_ip.clone();
        spec.port_bindings.push(PortBindingSpec { container_port, protocol: proto, host_ip, host_port });
    }
    spec.links = def
        .links
        .iter()
        .flatten()
        .map(|link| {
            let (target, alias) = link.split_once(':').unwrap_or((link, link));
            let runtime_name = names
                .get(target)
                .ok_or_else(|| NetworkError::BadLink { link: link.clone(), target: target.to_string() })?;
            Ok(format!("{runtime_name}:{alias}"))
        })
        .collect::<Result<_, _>>()?;
    Ok(())
}

/// The bindings Docker made, one per host address (Docker binds IPv4 and IPv6 separately).
pub(super) fn bindings(info: &ContainerInfo) -> Vec<NetworkBinding> {
    info.ports
        .iter()
        .map(|p| NetworkBinding {
            bind_ip: Some(if p.host_ip.is_empty() { "0.0.0.0".to_string() } else { p.host_ip.clone() }),
            container_port: Some(i32::from(p.container_port)),
            host_port: Some(i32::from(p.host_port)),
            protocol: Some(p.protocol.clone()),
            ..NetworkBinding::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{NetworkConfig, PortAllocator};
    use crate::runtime::fake::FakeRuntime;
    use flotilla_model::PortMapping;

    #[test]
    fn static_dynamic_ports_and_links() {
        let runtime = FakeRuntime::new();
        let config = NetworkConfig::default();
        let ports = PortAllocator::new(None);
        let labels = BTreeMap::new();
        let ctx = NetworkContext::for_test(&runtime, &config, &ports, &labels);
        let def = ContainerDefinition {
            name: Some("web".into()),
            port_mappings: Some(vec![
                PortMapping { container_port: Some(80), host_port: Some(8080), ..Default::default() },
                PortMapping { container_port: Some(81), host_port: Some(0), ..Default::default() },
                PortMapping { container_port: Some(53), protocol: Some("udp".into()), ..Default::default() },
            ]),
            links: Some(vec!["db:database".into(), "cache".into()]),
            ..Default::default()
        };
        let names = BTreeMap::from([
            ("db".to_string(), "flotilla-t1-db".to_string()),
            ("cache".to_string(), "flotilla-t1-cache".to_string()),
        ]);
        let mut att = Attachment::default();
        let mut spec = ContainerSpec::default();
        configure(&ctx, &def, &names, &mut att, &mut spec).unwrap();
        let got: Vec<_> =
            spec.port_bindings.iter().map(|p| (p.container_port, p.protocol.as_str(), p.host_port)).collect();
        assert_eq!(got, vec![(80, "tcp", Some(8080)), (81, "tcp", None), (53, "udp", None)]);
        assert_eq!(spec.links, vec!["flotilla-t1-db:database", "flotilla-t1-cache:cache"]);
        let bad = ContainerDefinition { links: Some(vec!["nope".into()]), ..def };
        assert!(matches!(configure(&ctx, &bad, &names, &mut att, &mut spec), Err(NetworkError::BadLink { .. })));
    }
}
