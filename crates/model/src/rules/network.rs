//! Networking rules: what each network mode allows in a container (port mappings, links,
//! hostname, DNS, extra hosts) and port mappings that are well formed and do not collide.
//!
//! In `awsvpc` and `host` mode a container's ports are the task's (or the instance's) ports, so a
//! host port can only repeat the container port; in `bridge` mode a host port of 0 or none asks
//! for a dynamic one. Fixed host ports may appear only once per protocol in a task definition.

use std::collections::HashSet;

use super::{is_valid_name, listed, name_of, RuleError, TaskDef};
use crate::{ContainerDefinition, PortMapping};

pub(crate) fn check(td: &TaskDef<'_>) -> Result<(), RuleError> {
    let mut fixed_ports = HashSet::new();
    for c in td.containers {
        check_mode_restrictions(td, c)?;
        for mapping in listed(&c.port_mappings).unwrap_or_default() {
            if let Some(port) = check_port_mapping(td, name_of(c), mapping)? {
                let protocol = mapping.protocol.as_deref().unwrap_or("tcp").to_ascii_uppercase();
                if !fixed_ports.insert((protocol.clone(), port)) {
                    return Err(RuleError::client(format!(
                        "{protocol} host port '{port}' is mapped multiple times in task."
                    )));
                }
            }
        }
        check_links(td, c)?;
    }
    Ok(())
}

fn check_mode_restrictions(td: &TaskDef<'_>, c: &ContainerDefinition) -> Result<(), RuleError> {
    let mode = td.network_mode;
    if mode == "awsvpc" {
        if c.hostname.as_deref().is_some_and(|h| !h.is_empty()) {
            return Err(RuleError::client("hostname is not supported on container when networkMode=awsvpc."));
        }
        if listed(&c.dns_servers).is_some() {
            return Err(RuleError::client("DNS servers are not supported on container when networkMode=awsvpc."));
        }
        if listed(&c.extra_hosts).is_some() {
            return Err(RuleError::client("Extra hosts are not supported on container when networkMode=awsvpc."));
        }
    }
    if mode == "none" && listed(&c.port_mappings).is_some() {
        return Err(RuleError::client("portMappings are not supported on container when networkMode=none."));
    }
    // Docker links only exist between containers on the default bridge network.
    if mode != "bridge" && listed(&c.links).is_some() {
        return Err(RuleError::client(format!("Links are not supported when networkMode={mode}.")));
    }
    Ok(())
}

/// Checks one mapping; returns the host port it fixes, if any, for the collision check.
fn check_port_mapping(td: &TaskDef<'_>, name: &str, m: &PortMapping) -> Result<Option<i32>, RuleError> {
    let mode = td.network_mode;
    if let Some(range) = m.container_port_range.as_deref() {
        if m.container_port.is_some() || m.host_port.is_some() {
            return Err(RuleError::client(format!(
                "Invalid 'portMappings' setting for container '{name}': cannot specify both single \
                 port and port range."
            )));
        }
        if parse_port_range(range).is_none() {
            return Err(RuleError::client(format!("Invalid 'containerPortRange' setting for container '{name}'.")));
        }
        if mode != "awsvpc" && mode != "bridge" {
            return Err(RuleError::client(format!(
                "Invalid 'containerPortRange' setting for container '{name}'. Port ranges are only \
                 supported when networkMode is awsvpc or bridge."
            )));
        }
        // Range host ports are assigned by ECS, so they never collide with fixed ones here.
        return Ok(None);
    }
    let container_port = match m.container_port {
        Some(p) if (1..=65535).contains(&p) => p,
        _ => return Err(RuleError::client(format!("Invalid 'containerPort' setting for container '{name}'."))),
    };
    if m.host_port.is_some_and(|h| !(0..=65535).contains(&h)) {
        return Err(RuleError::client(format!("Invalid 'hostPort' setting for container '{name}'.")));
    }
    match mode {
        "awsvpc" | "host" => {
            if m.host_port.is_some_and(|h| h != container_port) {
                return Err(RuleError::client(format!(
                    "When networkMode={mode}, the host ports and container ports in port mappings \
                     must match."
                )));
            }
            Ok(Some(container_port))
        }
        // In bridge mode 0 (or nothing) asks Docker for an ephemeral host port.
        _ => Ok(m.host_port.filter(|&h| h > 0)),
    }
}

/// "low-high" with 1 <= low < high <= 65535.
fn parse_port_range(range: &str) -> Option<(u16, u16)> {
    let (low, high) = range.split_once('-')?;
    let port = |s: &str| s.trim().parse::<u16>().ok().filter(|&p| p >= 1);
    let (low, high) = (port(low)?, port(high)?);
    (low < high).then_some((low, high))
}

/// Links are `name` or `name:alias`, and `name` must be another container of the task.
fn check_links(td: &TaskDef<'_>, c: &ContainerDefinition) -> Result<(), RuleError> {
    let name = name_of(c);
    for link in listed(&c.links).unwrap_or_default() {
        let (target, alias) = match link.split_once(':') {
            Some((target, alias)) => (target, Some(alias)),
            None => (link.as_str(), None),
        };
        if !is_valid_name(target) || alias.is_some_and(|a| !is_valid_name(a)) {
            return Err(RuleError::client(format!("Invalid 'links' setting. '{link}' is not a valid link.")));
        }
        if target == name {
            return Err(RuleError::client(format!(
                "Invalid 'links' setting. Container '{name}' cannot link to itself."
            )));
        }
        if !td.has_container(target) {
            return Err(RuleError::client(format!("Invalid 'links' setting. Unknown container: '{target}'")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::{HostEntry, RegisterTaskDefinitionRequest};

    fn port(container: Option<i32>, host: Option<i32>) -> PortMapping {
        PortMapping { container_port: container, host_port: host, ..Default::default() }
    }

    fn in_mode(mode: Option<&str>, containers: Vec<ContainerDefinition>) -> RegisterTaskDefinitionRequest {
        let mut req = ec2_task(containers);
        req.network_mode = mode.map(Into::into);
        req
    }

    fn mapped(name: &str, mappings: Vec<PortMapping>) -> ContainerDefinition {
        ContainerDefinition { port_mappings: Some(mappings), ..container(name) }
    }

    #[test]
    fn container_and_host_port_values() {
        let bad_container = "Invalid 'containerPort' setting for container 'web'.";
        let bad_host = "Invalid 'hostPort' setting for container 'web'.";
        let cases: &[(Option<i32>, Option<i32>, Option<&str>)] = &[
            (Some(80), None, None),
            (Some(1), Some(0), None),
            (Some(65535), Some(65535), None),
            (Some(3000), Some(8080), None),
            (None, None, Some(bad_container)),
            (None, Some(80), Some(bad_container)),
            (Some(0), None, Some(bad_container)),
            (Some(65536), None, Some(bad_container)),
            (Some(-1), None, Some(bad_container)),
            (Some(80), Some(-1), Some(bad_host)),
            (Some(80), Some(70000), Some(bad_host)),
        ];
        for (container_port, host_port, expected) in cases {
            let req = in_mode(None, vec![mapped("web", vec![port(*container_port, *host_port)])]);
            match expected {
                None => assert_ok(&req),
                Some(msg) => assert_client(&req, msg),
            }
        }
    }

    #[test]
    fn host_ports_must_equal_container_ports_in_awsvpc_and_host_modes() {
        for mode in ["awsvpc", "host"] {
            let mismatch = format!(
                "When networkMode={mode}, the host ports and container ports in port mappings must \
                 match."
            );
            let cases: &[(Option<i32>, Option<&str>)] =
                &[(None, None), (Some(80), None), (Some(8080), Some(&mismatch)), (Some(0), Some(&mismatch))];
            for (host, expected) in cases {
                let req = in_mode(Some(mode), vec![mapped("web", vec![port(Some(80), *host)])]);
                match expected {
                    None => assert_ok(&req),
                    Some(msg) => assert_client(&req, msg),
                }
            }
        }
    }

    #[test]
    fn fixed_host_ports_are_unique_per_protocol() {
        let udp = |c: i32, h: Option<i32>| PortMapping { protocol: Some("udp".into()), ..port(Some(c), h) };
        let cases: Vec<(Option<&str>, Vec<ContainerDefinition>, Option<&str>)> = vec![
            // Dynamic bridge ports never collide.
            (None, vec![mapped("a", vec![port(Some(80), None)]), mapped("b", vec![port(Some(80), Some(0))])], None),
            (None, vec![mapped("a", vec![port(Some(80), Some(8080))]), mapped("b", vec![udp(80, Some(8080))])], None),
            (
                None,
                vec![mapped("a", vec![port(Some(80), Some(3000))]), mapped("b", vec![port(Some(81), Some(3000))])],
                Some("TCP host port '3000' is mapped multiple times in task."),
            ),
            (
                None,
                vec![mapped("a", vec![udp(53, Some(53)), udp(54, Some(53))])],
                Some("UDP host port '53' is mapped multiple times in task."),
            ),
            // In awsvpc the container port is the host port.
            (
                Some("awsvpc"),
                vec![mapped("a", vec![port(Some(80), None)]), mapped("b", vec![port(Some(80), Some(80))])],
                Some("TCP host port '80' is mapped multiple times in task."),
            ),
        ];
        for (mode, containers, expected) in cases {
            let req = in_mode(mode, containers);
            match expected {
                None => assert_ok(&req),
                Some(msg) => assert_client(&req, msg),
            }
        }
    }

    #[test]
    fn container_port_ranges() {
        let range = |r: &str| PortMapping { container_port_range: Some(r.into()), ..Default::default() };
        let both = "Invalid 'portMappings' setting for container 'web': cannot specify both single port \
             and port range.";
        let bad = "Invalid 'containerPortRange' setting for container 'web'.";
        let cases: Vec<(&str, PortMapping, Option<&str>)> = vec![
            ("awsvpc", range("8000-8010"), None),
            ("bridge", range("1-65535"), None),
            ("awsvpc", PortMapping { container_port: Some(8000), ..range("8000-8010") }, Some(both)),
            ("bridge", PortMapping { host_port: Some(8000), ..range("8000-8010") }, Some(both)),
            ("awsvpc", range("8010-8000"), Some(bad)),
            ("awsvpc", range("8000-8000"), Some(bad)),
            ("awsvpc", range("0-10"), Some(bad)),
            ("awsvpc", range("8000-70000"), Some(bad)),
            ("awsvpc", range("8000"), Some(bad)),
            ("awsvpc", range("a-b"), Some(bad)),
            (
                "host",
                range("8000-8010"),
                Some(
                    "Invalid 'containerPortRange' setting for container 'web'. Port ranges are \
                     only supported when networkMode is awsvpc or bridge.",
                ),
            ),
        ];
        for (mode, mapping, expected) in cases {
            let req = in_mode(Some(mode), vec![mapped("web", vec![mapping])]);
            match expected {
                None => assert_ok(&req),
                Some(msg) => assert_client(&req, msg),
            }
        }
    }

    #[test]
    fn network_mode_none_takes_no_port_mappings() {
        assert_ok(&in_mode(Some("none"), vec![mapped("web", vec![])]));
        assert_client(
            &in_mode(Some("none"), vec![mapped("web", vec![port(Some(80), None)])]),
            "portMappings are not supported on container when networkMode=none.",
        );
    }

    #[test]
    fn awsvpc_takes_no_hostname_dns_servers_or_extra_hosts() {
        let cases: Vec<(ContainerDefinition, &str)> = vec![
            (
                ContainerDefinition { hostname: Some("web".into()), ..container("web") },
                "hostname is not supported on container when networkMode=awsvpc.",
            ),
            (
                ContainerDefinition { dns_servers: Some(vec!["10.0.0.2".into()]), ..container("web") },
                "DNS servers are not supported on container when networkMode=awsvpc.",
            ),
            (
                ContainerDefinition {
                    extra_hosts: Some(vec![HostEntry {
                        hostname: Some("db".into()),
                        ip_address: Some("10.0.0.5".into()),
                    }]),
                    ..container("web")
                },
                "Extra hosts are not supported on container when networkMode=awsvpc.",
            ),
        ];
        for (c, msg) in cases {
            assert_ok(&in_mode(Some("bridge"), vec![c.clone()]));
            assert_client(&in_mode(Some("awsvpc"), vec![c]), msg);
        }
    }

    #[test]
    fn links_only_in_bridge_mode_and_only_to_other_containers() {
        let linking = |links: &[&str]| ContainerDefinition {
            links: Some(links.iter().map(|s| s.to_string()).collect()),
            ..container("web")
        };
        let cases: Vec<(Option<&str>, &[&str], Option<String>)> = vec![
            (None, &["db"], None),
            (Some("bridge"), &["db:database", "cache"], None),
            (Some("awsvpc"), &["db"], Some("Links are not supported when networkMode=awsvpc.".into())),
            (Some("host"), &["db"], Some("Links are not supported when networkMode=host.".into())),
            (Some("none"), &["db"], Some("Links are not supported when networkMode=none.".into())),
            (None, &["ghost"], Some("Invalid 'links' setting. Unknown container: 'ghost'".into())),
            (None, &["web"], Some("Invalid 'links' setting. Container 'web' cannot link to itself.".into())),
            (None, &["db:"], Some("Invalid 'links' setting. 'db:' is not a valid link.".into())),
            (None, &["db:a:b"], Some("Invalid 'links' setting. 'db:a:b' is not a valid link.".into())),
            (None, &[":alias"], Some("Invalid 'links' setting. ':alias' is not a valid link.".into())),
        ];
        for (mode, links, expected) in cases {
            let req = in_mode(mode, vec![linking(links), container("db"), container("cache")]);
            match expected {
                None => assert_ok(&req),
                Some(msg) => assert_client(&req, &msg),
            }
        }
        // An empty list is how DescribeTaskDefinition spells "no links": fine in any mode.
        assert_ok(&in_mode(Some("awsvpc"), vec![linking(&[])]));
    }
}
