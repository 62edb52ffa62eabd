//! What a RUNNING task of a service is registered as (pure): for each of the service's
//! `loadBalancers`, a target (the task's address and container port in awsvpc mode, where the
//! group's type is `ip`; its instance and the host port Docker bound in bridge and host mode,
//! where the type is `instance`); for its `serviceRegistries`, a Cloud Map instance named by the
//! task id with ECS's attributes.

use std::collections::BTreeMap;

use flotilla_endpoints::cloudmap;
use flotilla_model::arn::short_id;
use flotilla_model::{Service, Task};

use super::{registry_service_id, target_group_id, Registered};

/// What is known about a task beyond its ECS shape.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub task: &'a Task,
    pub network_mode: &'a str,
    /// The task's own address (awsvpc).
    pub task_ip: Option<&'a str>,
    /// Its host's EC2 instance id (absent on Fargate).
    pub ec2_instance_id: Option<&'a str>,
    /// Its host's address, for bridge and host mode.
    pub host_address: &'a str,
    pub cluster: &'a str,
    pub region: &'a str,
}

/// One registration to make, with what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub registered: Registered,
    pub zone: Option<String>,
    /// Cloud Map attributes (empty for targets).
    pub attributes: BTreeMap<String, String>,
}

/// The host port Docker bound for `container`'s `port` (the port itself in host mode).
fn bound_port(f: &Facts, container: &str, port: i32) -> Option<u16> {
    if f.network_mode == "host" {
        return u16::try_from(port).ok();
    }
    let c = f.task.containers.iter().flatten().find(|c| c.name.as_deref() == Some(container))?;
    let b = c.network_bindings.iter().flatten().find(|b| b.container_port == Some(port))?;
    b.host_port.and_then(|p| u16::try_from(p).ok())
}

/// The port a registration uses: the container port in awsvpc mode, else the bound host port.
fn port_of(f: &Facts, container: &str, port: i32) -> Option<u16> {
    if f.network_mode == "awsvpc" {
        u16::try_from(port).ok()
    } else {
        bound_port(f, container, port)
    }
}

/// The task's registrations, or `None` while one of them cannot be known yet (a host port not
/// reported).
pub fn endpoints(svc: &Service, f: &Facts) -> Option<Vec<Endpoint>> {
    let awsvpc = f.network_mode == "awsvpc";
    let address = if awsvpc { f.task_ip? } else { f.host_address };
    let zone = f.task.availability_zone.clone();
    let mut out = Vec::new();
    for lb in svc.load_balancers.iter().flatten() {
        let (Some(tg), Some(container), Some(port)) =
            (lb.target_group_arn.as_deref(), lb.container_name.as_deref(), lb.container_port)
        else {
            continue;
        };
        let Some(tg_id) = target_group_id(tg) else { continue };
        let id = if awsvpc { address.to_string() } else { f.ec2_instance_id?.to_string() };
        out.push(Endpoint {
            registered: Registered::Target {
                target_group_arn: tg.to_string(),
                target_group_id: tg_id.to_string(),
                id,
                port: port_of(f, container, port)?,
            },
            zone: zone.clone(),
            attributes: BTreeMap::new(),
        });
    }
    for r in svc.service_registries.iter().flatten() {
        let Some(service_id) = r.registry_arn.as_deref().and_then(registry_service_id) else { continue };
        let port = match (r.port, r.container_name.as_deref(), r.container_port) {
            (Some(p), _, _) => Some(u16::try_from(p).ok()?),
            (None, Some(c), Some(p)) => Some(port_of(f, c, p)?),
            _ => None,
        };
        let mut attributes = BTreeMap::new();
        attributes.insert(cloudmap::IPV4.to_string(), address.to_string());
        if let Some(p) = port {
            attributes.insert(cloudmap::PORT.to_string(), p.to_string());
        }
        if let Some(z) = &zone {
            attributes.insert("AVAILABILITY_ZONE".into(), z.clone());
        }
        attributes.insert("REGION".into(), f.region.to_string());
        attributes.insert("ECS_CLUSTER_NAME".into(), f.cluster.to_string());
        attributes.insert("ECS_SERVICE_NAME".into(), svc.service_name.clone().unwrap_or_default());
        if let Some(family) = f.task.task_definition_arn.as_deref().and_then(family_of) {
            attributes.insert("ECS_TASK_DEFINITION_FAMILY".into(), family.to_string());
        }
        if let Some(ec2) = f.ec2_instance_id {
            attributes.insert("EC2_INSTANCE_ID".into(), ec2.to_string());
        }
        let task_id = short_id(f.task.task_arn.as_deref().unwrap_or_default()).to_string();
        out.push(Endpoint {
            registered: Registered::Instance { service_id: service_id.to_string(), instance_id: task_id },
            zone: zone.clone(),
            attributes,
        });
    }
    Some(out)
}

/// `FAMILY` of `...:task-definition/FAMILY:REVISION`.
fn family_of(arn: &str) -> Option<&str> {
    let (_, rest) = arn.split_once(":task-definition/")?;
    Some(rest.rsplit_once(':').map_or(rest, |(f, _)| f))
}

#[cfg(test)]
mod tests {
    use flotilla_model::{Container, LoadBalancer, NetworkBinding, ServiceRegistry};

    use super::*;

    const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:0:targetgroup/web/00000000000000aa";
    const SRV: &str = "arn:aws:servicediscovery:us-east-1:0:service/srv-0000000000000001";

    fn service() -> Service {
        Service {
            service_name: Some("web".into()),
            load_balancers: Some(vec![LoadBalancer {
                target_group_arn: Some(TG.into()),
                container_name: Some("app".into()),
                container_port: Some(80),
                ..Default::default()
            }]),
            service_registries: Some(vec![ServiceRegistry {
                registry_arn: Some(SRV.into()),
                container_name: Some("app".into()),
                container_port: Some(80),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    fn task(bound: Option<i32>) -> Task {
        Task {
            task_arn: Some("arn:aws:ecs:us-east-1:0:task/c/0123456789abcdef0123456789abcdef".into()),
            task_definition_arn: Some("arn:aws:ecs:us-east-1:0:task-definition/web-app:3".into()),
            availability_zone: Some("us-east-1a".into()),
            containers: Some(vec![Container {
                name: Some("app".into()),
                network_bindings: bound.map(|p| {
                    vec![NetworkBinding { container_port: Some(80), host_port: Some(p), ..Default::default() }]
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    fn facts<'a>(t: &'a Task, mode: &'a str) -> Facts<'a> {
        Facts {
            task: t,
            network_mode: mode,
            task_ip: Some("10.0.0.7"),
            ec2_instance_id: Some("i-0123456789abcdef0"),
            host_address: "192.168.1.2",
            cluster: "prod",
            region: "us-east-1",
        }
    }

    #[test]
    fn awsvpc_tasks_register_their_own_address_and_container_port() {
        let t = task(None);
        let e = endpoints(&service(), &facts(&t, "awsvpc")).unwrap();
        assert_eq!(
            e[0].registered,
            Registered::Target {
                target_group_arn: TG.into(),
                target_group_id: "00000000000000aa".into(),
                id: "10.0.0.7".into(),
                port: 80
            }
        );
        assert_eq!(e[1].attributes["AWS_INSTANCE_IPV4"], "10.0.0.7");
        assert_eq!(e[1].attributes["AWS_INSTANCE_PORT"], "80");
        assert_eq!(e[1].attributes["ECS_TASK_DEFINITION_FAMILY"], "web-app");
        assert_eq!(
            e[1].registered,
            Registered::Instance {
                service_id: "srv-0000000000000001".into(),
                instance_id: "0123456789abcdef0123456789abcdef".into()
            }
        );
    }

    #[test]
    fn bridge_tasks_register_their_instance_and_bound_host_port_once_known() {
        assert!(endpoints(&service(), &facts(&task(None), "bridge")).is_none());
        let t = task(Some(32768));
        let e = endpoints(&service(), &facts(&t, "bridge")).unwrap();
        assert!(matches!(&e[0].registered, Registered::Target { id, port: 32768, .. } if id == "i-0123456789abcdef0"));
        assert_eq!(e[1].attributes["AWS_INSTANCE_IPV4"], "192.168.1.2");
        assert_eq!(e[1].attributes["AWS_INSTANCE_PORT"], "32768");
        assert_eq!(e[1].attributes["EC2_INSTANCE_ID"], "i-0123456789abcdef0");
    }
}
