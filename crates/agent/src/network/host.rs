//! `host` and `none` modes.
//!
//! In `host` mode a container shares the host's network namespace: a port mapping is the
//! container listening on that same port of the host, so the binding is reported with
//! hostPort = containerPort and nothing is published. In `none` mode a container has only a
//! loopback interface, and there is nothing to report.

use flotilla_model::{ContainerDefinition, NetworkBinding};

use super::{protocol, NetworkError};
use crate::runtime::ContainerSpec;

pub(super) fn configure_host(spec: &mut ContainerSpec) -> Result<(), NetworkError> {
    spec.network_mode = Some("host".into());
    spec.port_bindings.clear();
    spec.links.clear();
    // Docker refuses a hostname in host mode; the host's own is what the container sees.
    spec.hostname = None;
    Ok(())
}

pub(super) fn configure_none(spec: &mut ContainerSpec) -> Result<(), NetworkError> {
    spec.network_mode = Some("none".into());
    spec.port_bindings.clear();
    spec.links.clear();
    Ok(())
}

pub(super) fn bindings(def: &ContainerDefinition) -> Vec<NetworkBinding> {
    def.port_mappings
        .iter()
        .flatten()
        .filter_map(|m| {
            let port = m.container_port?;
            Some(NetworkBinding {
                bind_ip: Some("0.0.0.0".into()),
                container_port: Some(port),
                host_port: Some(port),
                protocol: Some(protocol(m.protocol.as_deref())),
                ..NetworkBinding::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::PortMapping;

    #[test]
    fn host_mode_reports_the_container_port_on_the_host() {
        let def = ContainerDefinition {
            port_mappings: Some(vec![PortMapping { container_port: Some(9000), ..Default::default() }]),
            ..Default::default()
        };
        let b = bindings(&def);
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].container_port, b[0].host_port), (Some(9000), Some(9000)));
        let mut spec = ContainerSpec { hostname: Some("h".into()), ..ContainerSpec::default() };
        configure_host(&mut spec).unwrap();
        assert_eq!((spec.network_mode.as_deref(), spec.hostname), (Some("host"), None));
    }
}
