//! CreateService's request-local rules: the service name, REPLICA versus DAEMON scheduling,
//! launch type versus capacity provider strategy, deployment percentages and placement.
//!
//! Rules that need other resources (the task definition's network mode, the cluster's capacity
//! providers, load balancer target groups) belong to the API layer; everything here looks only at
//! the request. ECS reports all of these as InvalidParameterException.

use super::{check_placement, is_valid_name, listed, RuleError};
use crate::{CreateServiceRequest, DeploymentConfiguration, NetworkConfiguration, UpdateServiceRequest};

/// `awsvpcConfiguration` as ECS checks it in every request that carries one (CreateService,
/// UpdateService, RunTask, StartTask): one to 16 subnets.
pub fn check_network_configuration(config: Option<&NetworkConfiguration>) -> Result<(), RuleError> {
    let Some(vpc) = config.and_then(|c| c.awsvpc_configuration.as_ref()) else { return Ok(()) };
    match vpc.subnets.as_deref().map_or(0, <[String]>::len) {
        0 => Err(RuleError::invalid_parameter("subnets can not be empty.")),
        n if n > 16 => Err(RuleError::invalid_parameter(format!("subnets can have at most 16 items; got {n}."))),
        _ => Ok(()),
    }
}

/// A platform version belongs to Fargate: with the EC2 launch type, given or the default (no
/// launch type and no capacity provider strategy), ECS refuses it.
fn check_platform_version(
    launch_type: Option<&str>,
    has_capacity_strategy: bool,
    platform_version: Option<&str>,
) -> Result<(), RuleError> {
    let ec2 = launch_type == Some("EC2") || (launch_type.is_none() && !has_capacity_strategy);
    if ec2 && platform_version.is_some() {
        return Err(RuleError::invalid_parameter(
            "The platform version must be null when specifying an EC2 launch type.",
        ));
    }
    Ok(())
}

/// ECS takes a service `role` only to register the service with a load balancer.
fn check_role(role: Option<&str>, has_load_balancers: bool) -> Result<(), RuleError> {
    if role.is_some_and(|r| !r.is_empty()) && !has_load_balancers {
        return Err(RuleError::invalid_parameter("A role was passed, but no load balancers were present."));
    }
    Ok(())
}

/// UpdateService's request-local rules (the ones CreateService shares).
pub fn check_update_service(req: &UpdateServiceRequest) -> Result<(), RuleError> {
    check_network_configuration(req.network_configuration.as_ref())
}

pub fn check_create_service(req: &CreateServiceRequest) -> Result<(), RuleError> {
    if !req.service_name.as_deref().is_some_and(is_valid_name) {
        return Err(RuleError::invalid_parameter(
            "Invalid service name. Up to 255 letters (uppercase and lowercase), numbers, \
             underscores, and hyphens are allowed.",
        ));
    }
    let strategy = listed(&req.capacity_provider_strategy);
    if req.launch_type.is_some() && strategy.is_some() {
        return Err(RuleError::invalid_parameter(
            "Specifying both a launch type and capacity provider strategy is not supported. Remove \
             one and try again.",
        ));
    }
    let daemon = req.scheduling_strategy.as_deref() == Some("DAEMON");
    if daemon {
        check_daemon(req)?;
    } else {
        match req.desired_count {
            None => return Err(RuleError::invalid_parameter("DesiredCount is missing")),
            Some(n) if n < 0 => return Err(RuleError::invalid_parameter("DesiredCount can not be lesser than 0")),
            Some(_) => {}
        }
    }
    if let Some(config) = &req.deployment_configuration {
        check_deployment_configuration(req, config, daemon)?;
    }
    if req.health_check_grace_period_seconds.is_some_and(|s| s < 0) {
        return Err(RuleError::invalid_parameter("healthCheckGracePeriodSeconds must be greater than or equal to 0."));
    }
    check_platform_version(req.launch_type.as_deref(), strategy.is_some(), req.platform_version.as_deref())?;
    check_role(req.role.as_deref(), listed(&req.load_balancers).is_some())?;
    check_network_configuration(req.network_configuration.as_ref())?;
    if let Some(items) = strategy {
        if items.iter().all(|i| i.weight.unwrap_or(0) == 0) {
            return Err(RuleError::invalid_parameter(
                "There are no capacity providers in the capacity provider strategy with a weight \
                 value greater than zero.",
            ));
        }
        // A base of 0 is what tools send by default; only a positive base counts as defined.
        if items.iter().filter(|i| i.base.unwrap_or(0) > 0).count() > 1 {
            return Err(RuleError::invalid_parameter(
                "There are multiple capacity providers in the specified capacity provider strategy \
                 with a base value defined.",
            ));
        }
    }
    for lb in listed(&req.load_balancers).unwrap_or_default() {
        if lb.target_group_arn.is_some() && lb.load_balancer_name.is_some() {
            return Err(RuleError::invalid_parameter("loadBalancerName and targetGroupArn cannot both be specified."));
        }
    }
    check_placement(
        req.placement_strategy.as_deref().unwrap_or_default(),
        req.placement_constraints.as_deref().unwrap_or_default(),
    )
}

/// DAEMON runs one task per container instance: no count, no spreading, no Fargate.
fn check_daemon(req: &CreateServiceRequest) -> Result<(), RuleError> {
    if req.desired_count.is_some() {
        // Even 0: ECS rejects the member's presence.
        return Err(RuleError::invalid_parameter(
            "The daemon scheduling strategy does not support a desired count for services. Remove \
             the desired count value and try again",
        ));
    }
    if req.launch_type.as_deref() == Some("FARGATE") {
        return Err(RuleError::invalid_parameter(
            "The daemon scheduling strategy does not support the FARGATE launch type. Change the \
             launch type and try again",
        ));
    }
    if listed(&req.capacity_provider_strategy).is_some() {
        return Err(RuleError::invalid_parameter(
            "Specifying a capacity provider strategy is not supported when you create a service \
             using the DAEMON scheduling strategy.",
        ));
    }
    if let Some(controller @ ("CODE_DEPLOY" | "EXTERNAL")) =
        req.deployment_controller.as_ref().and_then(|d| d.r#type.as_deref())
    {
        return Err(RuleError::invalid_parameter(format!(
            "The daemon scheduling strategy does not support the {controller} deployment \
             controller. Use the ECS deployment controller and try again"
        )));
    }
    if listed(&req.placement_strategy).is_some() {
        return Err(RuleError::invalid_parameter(
            "The daemon scheduling strategy does not support placement strategies. Remove the \
             placement strategy and try again",
        ));
    }
    Ok(())
}

fn check_deployment_configuration(
    req: &CreateServiceRequest,
    config: &DeploymentConfiguration,
    daemon: bool,
) -> Result<(), RuleError> {
    match config.minimum_healthy_percent {
        Some(p) if p < 0 => return Err(RuleError::invalid_parameter("minimumHealthyPercent must be at least 0")),
        Some(p) if p > 100 => return Err(RuleError::invalid_parameter("minimumHealthyPercent must be at most 100")),
        _ => {}
    }
    let Some(max) = config.maximum_percent else {
        return Ok(());
    };
    if daemon && max > 100 {
        return Err(RuleError::invalid_parameter(
            "The daemon scheduling strategy does not support values above 100 for maximumPercent \
             on a deployment configuration. Change the maximumPercent value to 100, and try again",
        ));
    }
    // A rolling update (ECS controller) can only replace tasks if it may run at least the desired
    // count; blue/green and external controllers interpret the percentages themselves.
    let rolling = req.deployment_controller.as_ref().and_then(|d| d.r#type.as_deref()).unwrap_or("ECS") == "ECS";
    let min = if !daemon && rolling { 100 } else { 0 };
    if max < min {
        return Err(RuleError::invalid_parameter(format!("maximumPercent must be at least {min}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CapacityProviderStrategyItem, DeploymentController, LoadBalancer, PlacementStrategy};

    fn replica() -> CreateServiceRequest {
        CreateServiceRequest {
            service_name: Some("web".into()),
            task_definition: Some("web:1".into()),
            desired_count: Some(2),
            ..Default::default()
        }
    }

    fn daemon() -> CreateServiceRequest {
        CreateServiceRequest {
            service_name: Some("agent".into()),
            task_definition: Some("agent:1".into()),
            scheduling_strategy: Some("DAEMON".into()),
            launch_type: Some("EC2".into()),
            ..Default::default()
        }
    }

    fn item(provider: &str, weight: Option<i32>, base: Option<i32>) -> CapacityProviderStrategyItem {
        CapacityProviderStrategyItem { capacity_provider: Some(provider.into()), weight, base }
    }

    fn deploy(min: Option<i32>, max: Option<i32>) -> Option<DeploymentConfiguration> {
        Some(DeploymentConfiguration { minimum_healthy_percent: min, maximum_percent: max, ..Default::default() })
    }

    fn controller(kind: &str) -> Option<DeploymentController> {
        Some(DeploymentController { r#type: Some(kind.into()) })
    }

    fn check(cases: Vec<(CreateServiceRequest, Option<&str>)>) {
        for (req, expected) in cases {
            let result = check_create_service(&req);
            match expected {
                None => assert_eq!(result, Ok(()), "{req:#?}"),
                Some(msg) => assert_eq!(result, Err(RuleError::invalid_parameter(msg)), "{req:#?}"),
            }
        }
    }

    #[test]
    fn service_names() {
        let bad = "Invalid service name. Up to 255 letters (uppercase and lowercase), numbers, \
                   underscores, and hyphens are allowed.";
        check(vec![
            (CreateServiceRequest { service_name: Some("Web_api-2".into()), ..replica() }, None),
            (CreateServiceRequest { service_name: Some("a".repeat(255)), ..replica() }, None),
            (CreateServiceRequest { service_name: Some("a".repeat(256)), ..replica() }, Some(bad)),
            (CreateServiceRequest { service_name: Some("web api".into()), ..replica() }, Some(bad)),
            (CreateServiceRequest { service_name: Some("".into()), ..replica() }, Some(bad)),
            (CreateServiceRequest { service_name: None, ..replica() }, Some(bad)),
        ]);
    }

    #[test]
    fn replica_desired_count() {
        check(vec![
            (CreateServiceRequest { desired_count: Some(0), ..replica() }, None),
            (CreateServiceRequest { scheduling_strategy: Some("REPLICA".into()), ..replica() }, None),
            (CreateServiceRequest { desired_count: None, ..replica() }, Some("DesiredCount is missing")),
            (
                CreateServiceRequest { desired_count: Some(-1), ..replica() },
                Some("DesiredCount can not be lesser than 0"),
            ),
        ]);
    }

    #[test]
    fn launch_type_and_capacity_provider_strategy_are_exclusive() {
        let strategy = Some(vec![item("FARGATE_SPOT", Some(1), None)]);
        check(vec![
            (CreateServiceRequest { launch_type: Some("FARGATE".into()), ..replica() }, None),
            (CreateServiceRequest { capacity_provider_strategy: strategy.clone(), ..replica() }, None),
            // An empty strategy is no strategy.
            (
                CreateServiceRequest {
                    launch_type: Some("EC2".into()),
                    capacity_provider_strategy: Some(vec![]),
                    ..replica()
                },
                None,
            ),
            (
                CreateServiceRequest {
                    launch_type: Some("EC2".into()),
                    capacity_provider_strategy: strategy,
                    ..replica()
                },
                Some(
                    "Specifying both a launch type and capacity provider strategy is not \
                     supported. Remove one and try again.",
                ),
            ),
        ]);
    }

    #[test]
    fn daemon_rules() {
        let spread = Some(vec![PlacementStrategy { r#type: Some("spread".into()), field: Some("host".into()) }]);
        check(vec![
            (daemon(), None),
            (CreateServiceRequest { launch_type: None, ..daemon() }, None),
            (CreateServiceRequest { deployment_configuration: deploy(Some(0), Some(100)), ..daemon() }, None),
            (CreateServiceRequest { deployment_controller: controller("ECS"), ..daemon() }, None),
            (
                CreateServiceRequest { desired_count: Some(0), ..daemon() },
                Some(
                    "The daemon scheduling strategy does not support a desired count for services. \
                     Remove the desired count value and try again",
                ),
            ),
            (
                CreateServiceRequest { launch_type: Some("FARGATE".into()), ..daemon() },
                Some(
                    "The daemon scheduling strategy does not support the FARGATE launch type. \
                     Change the launch type and try again",
                ),
            ),
            (
                CreateServiceRequest {
                    launch_type: None,
                    capacity_provider_strategy: Some(vec![item("cp", Some(1), None)]),
                    ..daemon()
                },
                Some(
                    "Specifying a capacity provider strategy is not supported when you create a \
                     service using the DAEMON scheduling strategy.",
                ),
            ),
            (
                CreateServiceRequest { deployment_controller: controller("CODE_DEPLOY"), ..daemon() },
                Some(
                    "The daemon scheduling strategy does not support the CODE_DEPLOY deployment \
                     controller. Use the ECS deployment controller and try again",
                ),
            ),
            (
                CreateServiceRequest { deployment_controller: controller("EXTERNAL"), ..daemon() },
                Some(
                    "The daemon scheduling strategy does not support the EXTERNAL deployment \
                     controller. Use the ECS deployment controller and try again",
                ),
            ),
            (
                CreateServiceRequest { placement_strategy: spread, ..daemon() },
                Some(
                    "The daemon scheduling strategy does not support placement strategies. Remove \
                     the placement strategy and try again",
                ),
            ),
            (
                CreateServiceRequest { deployment_configuration: deploy(None, Some(200)), ..daemon() },
                Some(
                    "The daemon scheduling strategy does not support values above 100 for \
                     maximumPercent on a deployment configuration. Change the maximumPercent value \
                     to 100, and try again",
                ),
            ),
        ]);
    }

    #[test]
    fn deployment_percentages() {
        check(vec![
            (CreateServiceRequest { deployment_configuration: deploy(Some(0), Some(100)), ..replica() }, None),
            (CreateServiceRequest { deployment_configuration: deploy(Some(100), Some(200)), ..replica() }, None),
            (CreateServiceRequest { deployment_configuration: deploy(Some(50), None), ..replica() }, None),
            (
                CreateServiceRequest { deployment_configuration: deploy(Some(101), None), ..replica() },
                Some("minimumHealthyPercent must be at most 100"),
            ),
            (
                CreateServiceRequest { deployment_configuration: deploy(Some(-1), None), ..replica() },
                Some("minimumHealthyPercent must be at least 0"),
            ),
            (
                CreateServiceRequest { deployment_configuration: deploy(Some(0), Some(99)), ..replica() },
                Some("maximumPercent must be at least 100"),
            ),
            // Blue/green services ignore the rolling-update floor.
            (
                CreateServiceRequest {
                    deployment_configuration: deploy(Some(0), Some(50)),
                    deployment_controller: controller("CODE_DEPLOY"),
                    ..replica()
                },
                None,
            ),
            (
                CreateServiceRequest { deployment_configuration: deploy(None, Some(-1)), ..daemon() },
                Some("maximumPercent must be at least 0"),
            ),
        ]);
    }

    #[test]
    fn grace_period_platform_version_capacity_and_load_balancers() {
        let lb = |tg: Option<&str>, name: Option<&str>| LoadBalancer {
            target_group_arn: tg.map(Into::into),
            load_balancer_name: name.map(Into::into),
            container_name: Some("web".into()),
            container_port: Some(80),
            advanced_configuration: None,
        };
        check(vec![
            (CreateServiceRequest { health_check_grace_period_seconds: Some(0), ..replica() }, None),
            // A grace period needs no load balancer: it also covers container health checks.
            (CreateServiceRequest { health_check_grace_period_seconds: Some(i32::MAX), ..replica() }, None),
            (
                CreateServiceRequest { health_check_grace_period_seconds: Some(-1), ..replica() },
                Some("healthCheckGracePeriodSeconds must be greater than or equal to 0."),
            ),
            (
                CreateServiceRequest {
                    launch_type: Some("FARGATE".into()),
                    platform_version: Some("1.4.0".into()),
                    ..replica()
                },
                None,
            ),
            (
                CreateServiceRequest {
                    launch_type: Some("EC2".into()),
                    platform_version: Some("LATEST".into()),
                    ..replica()
                },
                Some("The platform version must be null when specifying an EC2 launch type."),
            ),
            (
                CreateServiceRequest {
                    capacity_provider_strategy: Some(vec![item("a", Some(1), Some(2)), item("b", Some(3), Some(0))]),
                    ..replica()
                },
                None,
            ),
            (
                CreateServiceRequest {
                    capacity_provider_strategy: Some(vec![item("a", Some(0), None), item("b", None, None)]),
                    ..replica()
                },
                Some(
                    "There are no capacity providers in the capacity provider strategy with a \
                     weight value greater than zero.",
                ),
            ),
            (
                CreateServiceRequest {
                    capacity_provider_strategy: Some(vec![item("a", Some(1), Some(1)), item("b", Some(1), Some(2))]),
                    ..replica()
                },
                Some(
                    "There are multiple capacity providers in the specified capacity provider \
                     strategy with a base value defined.",
                ),
            ),
            (CreateServiceRequest { load_balancers: Some(vec![lb(Some("arn:tg"), None)]), ..replica() }, None),
            (CreateServiceRequest { load_balancers: Some(vec![lb(None, Some("classic"))]), ..replica() }, None),
            (
                CreateServiceRequest { load_balancers: Some(vec![lb(Some("arn:tg"), Some("classic"))]), ..replica() },
                Some("loadBalancerName and targetGroupArn cannot both be specified."),
            ),
        ]);
    }

    #[test]
    fn default_launch_type_role_and_subnets() {
        let lb = LoadBalancer {
            target_group_arn: Some("arn:tg".into()),
            container_name: Some("web".into()),
            container_port: Some(80),
            ..Default::default()
        };
        let vpc = |subnets: Vec<&str>| {
            Some(NetworkConfiguration {
                awsvpc_configuration: Some(crate::AwsVpcConfiguration {
                    subnets: Some(subnets.into_iter().map(Into::into).collect()),
                    ..Default::default()
                }),
            })
        };
        check(vec![
            // No launch type and no strategy means EC2, so a platform version is refused as with EC2.
            (
                CreateServiceRequest { launch_type: None, platform_version: Some("LATEST".into()), ..replica() },
                Some("The platform version must be null when specifying an EC2 launch type."),
            ),
            (
                CreateServiceRequest {
                    launch_type: None,
                    capacity_provider_strategy: Some(vec![item("a", Some(1), None)]),
                    platform_version: Some("LATEST".into()),
                    ..replica()
                },
                None,
            ),
            (
                CreateServiceRequest { role: Some("ecsServiceRole".into()), ..replica() },
                Some("A role was passed, but no load balancers were present."),
            ),
            (
                CreateServiceRequest {
                    role: Some("ecsServiceRole".into()),
                    load_balancers: Some(vec![lb]),
                    ..replica()
                },
                None,
            ),
            (
                CreateServiceRequest { network_configuration: vpc(vec![]), ..replica() },
                Some("subnets can not be empty."),
            ),
            (CreateServiceRequest { network_configuration: vpc(vec!["subnet-1"]), ..replica() }, None),
        ]);
        let update = |subnets| UpdateServiceRequest { network_configuration: vpc(subnets), ..Default::default() };
        assert_eq!(check_update_service(&update(vec![])).unwrap_err().message, "subnets can not be empty.");
        assert!(check_update_service(&update(vec!["subnet-1"])).is_ok());
    }

    #[test]
    fn placement_is_checked_with_the_shared_rules() {
        let binpack = Some(vec![PlacementStrategy { r#type: Some("binpack".into()), field: Some("disk".into()) }]);
        check(vec![(
            CreateServiceRequest { placement_strategy: binpack, ..replica() },
            Some("binpack field 'disk' is invalid"),
        )]);
    }
}
