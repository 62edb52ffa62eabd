//! CreateService's and UpdateService's checks of `loadBalancers` and `serviceRegistries`, in
//! ECS's words: each target group must exist, be used by a load balancer and have the target
//! type the network mode needs; each Cloud Map service must exist and get the port its record
//! types need; the containers and ports named must be in the task definition.

use flotilla_endpoints::cloudmap::{self, RecordType};
use flotilla_endpoints::elb::{TargetGroup, TargetType};
use flotilla_endpoints::keys as ekeys;
use flotilla_model::{LoadBalancer, ServiceRegistry, TaskDefinition};

use super::{get, registry_service_id, target_group_id};
use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};

/// ECS's limit of target groups per service.
pub const MAX_LOAD_BALANCERS: usize = 5;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid_parameter(message)
}

/// Whether `container` of the definition maps `port`.
fn check_container_port(td: &TaskDefinition, container: &str, port: i32) -> ApiResult<()> {
    let c = td
        .container_definitions
        .iter()
        .flatten()
        .find(|c| c.name.as_deref() == Some(container))
        .ok_or_else(|| invalid(format!("The container {container} does not exist in the task definition.")))?;
    if !c.port_mappings.iter().flatten().any(|m| m.container_port == Some(port)) {
        return Err(invalid(format!("The container {container} did not have a container port {port} defined.")));
    }
    Ok(())
}

pub async fn load_balancers(
    ctx: &Ctx,
    given: &[LoadBalancer],
    td: &TaskDefinition,
    network_mode: &str,
) -> ApiResult<()> {
    if given.len() > MAX_LOAD_BALANCERS {
        return Err(invalid(format!("loadBalancers can have at most {MAX_LOAD_BALANCERS} items.")));
    }
    if !given.is_empty() && network_mode == "none" {
        return Err(invalid("Load balancers are not supported with the none network mode."));
    }
    for lb in given {
        let arn = match (lb.target_group_arn.as_deref(), lb.load_balancer_name.as_deref()) {
            (None | Some(""), None | Some("")) => {
                return Err(invalid("Target Group ARN and Load Balancer Name cannot both be blank."))
            }
            (None | Some(""), Some(_)) => {
                return Err(invalid(
                    "loadBalancerName names a Classic Load Balancer, which Flotilla does not support: give the \
                     targetGroupArn of an Application or Network Load Balancer's target group.",
                ))
            }
            (Some(_), Some(n)) if !n.is_empty() => {
                return Err(invalid("loadBalancerName must be omitted when targetGroupArn is given."))
            }
            (Some(arn), _) => arn,
        };
        let id =
            target_group_id(arn).ok_or_else(|| invalid(format!("targetGroupArn {arn} is not a target group ARN.")))?;
        let tg: TargetGroup = get(ctx, &ekeys::target_group(id))
            .await?
            .map(|(g, _)| g)
            .filter(|g: &TargetGroup| g.arn == arn)
            .ok_or_else(|| invalid(format!("The target group with targetGroupArn {arn} does not exist.")))?;
        if tg.load_balancer_arns.is_empty() {
            return Err(invalid(format!(
                "The target group with targetGroupArn {arn} does not have an associated load balancer."
            )));
        }
        let wanted = if network_mode == "awsvpc" { TargetType::Ip } else { TargetType::Instance };
        if tg.target_type != wanted {
            return Err(invalid(format!(
                "The provided target group {arn} has target type {}, which is incompatible with the {network_mode} \
                 network mode specified in the task definition.",
                tg.target_type.as_str()
            )));
        }
        let container = lb.container_name.as_deref().filter(|c| !c.is_empty());
        let (Some(container), Some(port)) = (container, lb.container_port) else {
            return Err(invalid("containerName and containerPort must be given for a target group."));
        };
        check_container_port(td, container, port)?;
    }
    Ok(())
}

pub async fn registries(
    ctx: &Ctx,
    given: &[ServiceRegistry],
    td: &TaskDefinition,
    network_mode: &str,
) -> ApiResult<()> {
    if given.len() > 1 {
        return Err(invalid("serviceRegistries can have at most 1 items."));
    }
    let Some(r) = given.first() else { return Ok(()) };
    if network_mode == "none" {
        return Err(invalid("Service registries are not supported with the none network mode."));
    }
    let arn =
        r.registry_arn.as_deref().filter(|a| !a.is_empty()).ok_or_else(|| invalid("registryArn can not be blank."))?;
    let id = registry_service_id(arn)
        .ok_or_else(|| invalid(format!("registryArn {arn} is not the ARN of a Cloud Map service.")))?;
    let service: cloudmap::Service = get(ctx, &ekeys::service(id))
        .await?
        .map(|(s, _)| s)
        .filter(|s: &cloudmap::Service| s.arn == arn)
        .ok_or_else(|| invalid(format!("The service registry {arn} does not exist.")))?;
    let container = r.container_name.as_deref().filter(|c| !c.is_empty());
    if container.is_some() != r.container_port.is_some() {
        return Err(invalid("containerName and containerPort must be given together in a service registry."));
    }
    if r.port.is_some() && container.is_some() {
        return Err(invalid(
            "A service registry can specify either port or containerName and containerPort, not both.",
        ));
    }
    if let (Some(c), Some(p)) = (container, r.container_port) {
        check_container_port(td, c, p)?;
    }
    let srv = service.has_record(RecordType::Srv);
    if network_mode != "awsvpc" {
        if container.is_none() {
            return Err(invalid(format!(
                "When using the {network_mode} network mode, a service registry must specify a containerName and \
                 containerPort combination from the task definition."
            )));
        }
        if service.has_record(RecordType::A) || service.has_record(RecordType::Aaaa) {
            return Err(invalid(format!(
                "The service registry {arn} has A or AAAA records, which need the awsvpc network mode; use SRV \
                 records with the {network_mode} network mode."
            )));
        }
    }
    if srv && r.port.is_none() && container.is_none() {
        return Err(invalid(
            "The service registry has SRV records: specify either a port or a containerName and containerPort.",
        ));
    }
    Ok(())
}
