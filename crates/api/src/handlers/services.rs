//! Services: the record and its validation. CreateService, DescribeServices, ListServices,
//! UpdateService and DeleteService (ACTIVE, then DRAINING, then INACTIVE once its tasks are gone).
//! Keeping tasks running belongs to the service controller; this module owns what is stored.

use flotilla_model::rules::{check_create_service, check_update_service};
use flotilla_model::{
    CapacityProviderStrategyItem, CreateServiceRequest, CreateServiceResponse, DeleteServiceRequest,
    DeleteServiceResponse, Deployment, DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentController,
    DescribeServicesRequest, DescribeServicesResponse, ListServicesRequest, ListServicesResponse, Service,
    UpdateServiceRequest, UpdateServiceResponse,
};
use flotilla_store::{Compare, Op, Txn};
use rand::Rng;

use super::{active_cluster, check_batch, missing, task_definitions};
use crate::context::{Ctx, MAX_CAS_ATTEMPTS};
use crate::domain::capacity::{self, Capacity};
use crate::domain::fargate;
use crate::domain::tags::validate_tags;
use crate::endpoints;
use crate::error::{ApiError, ApiResult};
use crate::idempotency;
use crate::pagination::page;
use crate::state::cache::{range_prefix, Entry};
use crate::state::codec::encode;
use crate::state::keys;

/// The service name a `service` member names: a name, or an ARN of this cluster.
pub fn service_name<'a>(ctx: &Ctx, cluster: &str, given: &'a str) -> Option<&'a str> {
    super::id_in_cluster(ctx, cluster, given, super::Scoped::Service)
}

pub fn lookup(ctx: &Ctx, cluster: &str, given: &str) -> Option<Entry<Service>> {
    let name = service_name(ctx, cluster, given)?;
    ctx.cache.read().services.get(&keys::service(cluster, name)).cloned()
}

fn deployment_id() -> String {
    let n: u64 = rand::thread_rng().gen_range(1_000_000_000_000_000_000..10_000_000_000_000_000_000);
    format!("ecs-svc/{n}")
}

fn new_deployment(ctx: &Ctx, svc: &Service) -> Deployment {
    let id = deployment_id();
    let now = ctx.now();
    Deployment {
        rollout_state_reason: Some(format!("ECS deployment {id} in progress.")),
        id: Some(id),
        status: Some("PRIMARY".into()),
        task_definition: svc.task_definition.clone(),
        desired_count: svc.desired_count,
        pending_count: Some(0),
        running_count: Some(0),
        failed_tasks: Some(0),
        created_at: Some(now),
        updated_at: Some(now),
        launch_type: svc.launch_type.clone(),
        capacity_provider_strategy: svc.capacity_provider_strategy.clone(),
        network_configuration: svc.network_configuration.clone(),
        // A Fargate deployment shows the version it asked for and the one it runs, as ECS does.
        platform_version: svc.platform_version.clone(),
        platform_family: svc.platform_family.clone(),
        rollout_state: Some("IN_PROGRESS".into()),
        ..Default::default()
    }
}

fn default_deployment_configuration(daemon: bool, given: Option<DeploymentConfiguration>) -> DeploymentConfiguration {
    let mut c = given.unwrap_or_default();
    c.maximum_percent.get_or_insert(if daemon { 100 } else { 200 });
    c.minimum_healthy_percent.get_or_insert(if daemon { 0 } else { 100 });
    c.deployment_circuit_breaker.get_or_insert(DeploymentCircuitBreaker {
        enable: Some(false),
        rollback: Some(false),
        ..Default::default()
    });
    c
}

/// The task definition a service request names, which must exist and be ACTIVE; returns its ARN
/// and network mode. ECS words a missing or INACTIVE one as a ClientException, unlike the
/// InvalidParameterException RunTask gives for an INACTIVE one.
fn resolve_task_definition(ctx: &Ctx, given: &str, launch_type: &str) -> ApiResult<(String, String)> {
    let entry = task_definitions::lookup(ctx, given).ok_or_else(|| ApiError::client("TaskDefinition not found."))?;
    let td = &entry.value.definition;
    if td.status.as_deref() != Some("ACTIVE") {
        return Err(ApiError::client("TaskDefinition is inactive."));
    }
    if !td.compatibilities.as_deref().unwrap_or_default().iter().any(|c| c == launch_type) {
        return Err(ApiError::invalid_parameter(format!(
            "Task definition does not support launch_type {launch_type}."
        )));
    }
    Ok((td.task_definition_arn.clone().unwrap_or_default(), td.network_mode.clone().unwrap_or_else(|| "bridge".into())))
}

fn check_network(network_mode: &str, has_config: bool) -> ApiResult<()> {
    match (network_mode, has_config) {
        ("awsvpc", false) => Err(ApiError::invalid_parameter(
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        )),
        (m, true) if m != "awsvpc" => Err(ApiError::invalid_parameter(
            "Network Configuration is not valid for the given networkMode of this task definition.",
        )),
        _ => Ok(()),
    }
}

fn refuse_service_connect(config: Option<&flotilla_model::ServiceConnectConfiguration>) -> ApiResult<()> {
    match config {
        Some(c) if c.enabled != Some(false) => {
            Err(ApiError::unsupported("Service Connect is not supported by Flotilla yet; use serviceRegistries."))
        }
        _ => Ok(()),
    }
}

/// Checks `loadBalancers` and `serviceRegistries` against the task definition `td_arn`.
async fn check_endpoints(
    ctx: &Ctx,
    td_arn: &str,
    load_balancers: &[flotilla_model::LoadBalancer],
    registries: &[flotilla_model::ServiceRegistry],
) -> ApiResult<()> {
    if load_balancers.is_empty() && registries.is_empty() {
        return Ok(());
    }
    let td = task_definitions::lookup(ctx, td_arn).ok_or_else(|| ApiError::client("TaskDefinition not found."))?;
    let def = &td.value.definition;
    let mode = def.network_mode.clone().unwrap_or_else(|| "bridge".into());
    endpoints::validate::load_balancers(ctx, load_balancers, def, &mode).await?;
    endpoints::validate::registries(ctx, registries, def, &mode).await
}

fn present(svc: &Service, with_tags: bool) -> Service {
    let mut s = svc.clone();
    if !with_tags {
        s.tags = None;
    } else {
        s.tags.get_or_insert_with(Vec::new);
    }
    s
}

pub async fn create(ctx: &Ctx, req: CreateServiceRequest) -> ApiResult<CreateServiceResponse> {
    check_create_service(&req)?;
    validate_tags(req.tags.as_deref().unwrap_or_default())?;
    refuse_service_connect(req.service_connect_configuration.as_ref())?;
    if let Some(c) = &req.deployment_controller {
        if c.r#type.as_deref() != Some("ECS") {
            return Err(ApiError::unsupported("Only the ECS deployment controller is supported by Flotilla."));
        }
    }
    let (cluster, cluster_entry) = active_cluster(ctx, req.cluster.as_deref())?;
    let name = req.service_name.clone().unwrap_or_default();
    let token = req.client_token.clone();
    let hash = idempotency::request_hash(&req);
    if let Some(t) = &token {
        if let Some(earlier) = idempotency::replay::<CreateServiceResponse>(ctx, "CreateService", t, &hash)? {
            return Ok(earlier);
        }
    }
    let daemon = req.scheduling_strategy.as_deref() == Some("DAEMON");
    let capacity = capacity::resolve(
        &ctx.cache.read(),
        &cluster_entry.value,
        req.launch_type.as_deref(),
        req.capacity_provider_strategy.as_deref(),
    )?;
    // A service keeps the strategy it was created with, the cluster's default copied if it gave
    // none: a later change of the default does not move it.
    let strategy = match &capacity {
        Capacity::LaunchType | Capacity::Fargate => None,
        Capacity::Strategy(_) => Some(capacity::filled(
            req.capacity_provider_strategy
                .as_deref()
                .filter(|s| !s.is_empty())
                .or(cluster_entry.value.default_capacity_provider_strategy.as_deref())
                .unwrap_or_default(),
        )),
    };
    if daemon && strategy.is_some() {
        return Err(ApiError::invalid_parameter(
            "The DAEMON scheduling strategy does not support capacity provider strategies; give launchType EC2.",
        ));
    }
    let launch_type = req.launch_type.clone().unwrap_or_else(|| "EC2".into());
    let given_td =
        req.task_definition.clone().ok_or_else(|| ApiError::invalid_parameter("taskDefinition can not be null."))?;
    let (td_arn, network_mode) = resolve_task_definition(ctx, &given_td, capacity.launch_type())?;
    let fargate = capacity.is_fargate();
    if fargate {
        if daemon {
            return Err(ApiError::invalid_parameter(
                "The DAEMON scheduling strategy is not supported with the FARGATE launch type.",
            ));
        }
        if let Some(td) = task_definitions::lookup(ctx, &td_arn) {
            fargate::check_launch(
                &td.value.definition,
                req.placement_strategy.as_deref(),
                req.placement_constraints.as_ref().map_or(0, Vec::len),
                req.network_configuration.is_some(),
            )?;
        }
        fargate::platform_version(req.platform_version.as_deref())?;
    }
    check_network(&network_mode, req.network_configuration.is_some())?;
    let load_balancers = req.load_balancers.clone().unwrap_or_default();
    let registries = req.service_registries.clone().unwrap_or_default();
    check_endpoints(ctx, &td_arn, &load_balancers, &registries).await?;
    let key = keys::service(&cluster, &name);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let existing = ctx.cache.read().services.get(&key).cloned();
        let compare = match &existing {
            Some(e) if e.value.status.as_deref() == Some("DRAINING") => {
                return Err(ApiError::invalid_parameter("Unable to Start a service that is still Draining."))
            }
            Some(e) if e.value.status.as_deref() == Some("ACTIVE") => {
                return Err(ApiError::invalid_parameter("Creation of service was not idempotent."))
            }
            Some(e) => Compare::unchanged(&key, e.revision),
            None => Compare::absent(&key),
        };
        let mut svc = Service {
            service_arn: Some(ctx.arns.service(&cluster, &name)),
            service_name: Some(name.clone()),
            cluster_arn: cluster_entry.value.cluster_arn.clone(),
            load_balancers: Some(load_balancers.clone()),
            service_registries: Some(registries.clone()),
            status: Some("ACTIVE".into()),
            desired_count: Some(if daemon { 0 } else { req.desired_count.unwrap_or(0) }),
            running_count: Some(0),
            pending_count: Some(0),
            launch_type: strategy.is_none().then(|| launch_type.clone()),
            capacity_provider_strategy: strategy.clone(),
            platform_version: fargate.then(|| req.platform_version.clone().unwrap_or_else(|| "LATEST".into())),
            platform_family: fargate.then(|| fargate::PLATFORM_FAMILY.to_string()),
            task_definition: Some(td_arn.clone()),
            deployment_configuration: Some(default_deployment_configuration(
                daemon,
                req.deployment_configuration.clone(),
            )),
            events: Some(Vec::new()),
            created_at: Some(ctx.now()),
            placement_constraints: Some(req.placement_constraints.clone().unwrap_or_default()),
            placement_strategy: Some(req.placement_strategy.clone().unwrap_or_default()),
            network_configuration: req.network_configuration.clone(),
            health_check_grace_period_seconds: req.health_check_grace_period_seconds,
            scheduling_strategy: Some(if daemon { "DAEMON".into() } else { "REPLICA".into() }),
            deployment_controller: Some(DeploymentController { r#type: Some("ECS".into()) }),
            tags: req.tags.clone().filter(|t| !t.is_empty()),
            created_by: Some(format!("arn:aws:iam::{}:root", ctx.arns.account)),
            enable_ecs_managed_tags: Some(req.enable_ecs_managed_tags.unwrap_or(false)),
            propagate_tags: Some(req.propagate_tags.clone().unwrap_or_else(|| "NONE".into())),
            enable_execute_command: Some(req.enable_execute_command.unwrap_or(false)),
            availability_zone_rebalancing: Some(
                req.availability_zone_rebalancing.clone().unwrap_or_else(|| "DISABLED".into()),
            ),
            ..Default::default()
        };
        if daemon {
            svc.desired_count = Some(crate::controller::daemon_desired(ctx, &cluster, &svc));
        }
        let deployment = new_deployment(ctx, &svc);
        svc.deployments = Some(vec![deployment]);
        let response = CreateServiceResponse { service: Some(present(&svc, true)) };
        let mut txn = Txn::new().when(compare).then(Op::put(&key, encode(&svc)));
        if let Some(t) = &token {
            let (c, op) = idempotency::remember(ctx, "CreateService", t, &hash, &response);
            txn = txn.when(c).then(op);
        }
        if ctx.commit(txn).await?.is_some() {
            return Ok(response);
        }
        if let Some(t) = &token {
            if let Some(earlier) = idempotency::replay::<CreateServiceResponse>(ctx, "CreateService", t, &hash)? {
                return Ok(earlier);
            }
        }
    }
    Err(ApiError::server("The service kept changing while it was created; try again."))
}

pub async fn describe(ctx: &Ctx, req: DescribeServicesRequest) -> ApiResult<DescribeServicesResponse> {
    let (cluster, _) = active_cluster(ctx, req.cluster.as_deref())?;
    let list = req.services.unwrap_or_default();
    check_batch("services", list.len(), 10)?;
    let with_tags = req.include.unwrap_or_default().iter().any(|i| i == "TAGS");
    let mut services = Vec::new();
    let mut failures = Vec::new();
    for given in list {
        match lookup(ctx, &cluster, &given) {
            Some(e) => services.push(present(&e.value, with_tags)),
            None => failures.push(missing(if given.starts_with("arn:") {
                given
            } else {
                ctx.arns.service(&cluster, &given)
            })),
        }
    }
    Ok(DescribeServicesResponse { services: Some(services), failures: Some(failures) })
}

pub async fn list(ctx: &Ctx, req: ListServicesRequest) -> ApiResult<ListServicesResponse> {
    let (cluster, _) = active_cluster(ctx, req.cluster.as_deref())?;
    let launch_type = req.launch_type.clone();
    let strategy = req.scheduling_strategy.clone();
    if req.resource_management_type.is_some() {
        return Err(ApiError::unsupported("resourceManagementType filters are not supported by Flotilla yet."));
    }
    let scope = format!(
        "ListServices\0{cluster}\0{}\0{}",
        launch_type.as_deref().unwrap_or(""),
        strategy.as_deref().unwrap_or("")
    );
    let pr = ctx.pager.request(&scope, req.next_token.as_deref(), req.max_results, 10, 100)?;
    let prefix = format!("{}{cluster}/", keys::SERVICE);
    let ix = ctx.cache.read();
    let matching = range_prefix(&ix.services, &prefix)
        .filter(|(_, e)| e.value.status.as_deref() != Some("INACTIVE"))
        .filter(|(_, e)| launch_type.as_ref().is_none_or(|l| e.value.launch_type.as_ref() == Some(l)))
        .filter(|(_, e)| strategy.as_ref().is_none_or(|s| e.value.scheduling_strategy.as_ref() == Some(s)));
    let (items, next) = page(&ctx.pager, &scope, &pr, matching, |(k, _)| k.as_str());
    Ok(ListServicesResponse {
        service_arns: Some(items.into_iter().map(|(_, e)| e.value.service_arn.clone().unwrap_or_default()).collect()),
        next_token: next,
    })
}

/// UpdateService's `capacityProviderStrategy`: a new strategy, or `[]` to go back to the EC2
/// launch type.
fn set_strategy(ctx: &Ctx, cluster: &str, svc: &mut Service, given: &[CapacityProviderStrategyItem]) -> ApiResult<()> {
    if given.is_empty() {
        svc.capacity_provider_strategy = None;
        svc.launch_type = Some("EC2".into());
        return Ok(());
    }
    if svc.scheduling_strategy.as_deref() == Some("DAEMON") {
        return Err(ApiError::invalid_parameter(
            "The DAEMON scheduling strategy does not support capacity provider strategies.",
        ));
    }
    let ix = ctx.cache.read();
    let entry = ix.clusters.get(&keys::cluster(cluster)).ok_or_else(ApiError::cluster_not_found)?;
    capacity::resolve(&ix, &entry.value, None, Some(given))?;
    svc.capacity_provider_strategy = Some(capacity::filled(given));
    svc.launch_type = None;
    Ok(())
}

pub async fn update(ctx: &Ctx, req: UpdateServiceRequest) -> ApiResult<UpdateServiceResponse> {
    let (cluster, _) = active_cluster(ctx, req.cluster.as_deref())?;
    let given = req.service.clone().unwrap_or_default();
    check_update_service(&req)?;
    refuse_service_connect(req.service_connect_configuration.as_ref())?;
    if req.desired_count.is_some_and(|d| d < 0) {
        return Err(ApiError::invalid_parameter("desiredCount must be 0 or greater."));
    }
    flotilla_model::rules::check_placement(
        req.placement_strategy.as_deref().unwrap_or_default(),
        req.placement_constraints.as_deref().unwrap_or_default(),
    )?;
    for _ in 0..MAX_CAS_ATTEMPTS {
        let entry = lookup(ctx, &cluster, &given).ok_or_else(ApiError::service_not_found)?;
        let old = &entry.value;
        if old.status.as_deref() != Some("ACTIVE") {
            return Err(ApiError::service_not_active());
        }
        let daemon = old.scheduling_strategy.as_deref() == Some("DAEMON");
        if daemon && req.desired_count.is_some() {
            return Err(ApiError::invalid_parameter("The desiredCount of a DAEMON service can not be set."));
        }
        if daemon && req.placement_strategy.as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(ApiError::invalid_parameter(
                "Placement strategies are not supported with the DAEMON scheduling strategy.",
            ));
        }
        let mut svc = (**old).clone();
        if let Some(given) = &req.capacity_provider_strategy {
            // ECS: a new strategy applies to the tasks launched from now on; it starts no deployment.
            set_strategy(ctx, &cluster, &mut svc, given)?;
        }
        let fargate = fargate::is_fargate_service(&svc);
        let launch_type = if fargate { fargate::FARGATE } else { "EC2" };
        if !fargate && req.platform_version.is_some() {
            return Err(ApiError::invalid_parameter(
                "The platform version must be null when specifying an EC2 launch type.",
            ));
        }
        let mut new_revision = false;
        if fargate {
            if req.placement_strategy.as_ref().is_some_and(|p| !p.is_empty()) {
                return Err(ApiError::invalid_parameter(
                    "Placement strategies are not supported with FARGATE launch type.",
                ));
            }
            if req.placement_constraints.as_ref().is_some_and(|p| !p.is_empty()) {
                return Err(ApiError::invalid_parameter(
                    "Placement constraints are not supported with FARGATE launch type.",
                ));
            }
            if let Some(v) = &req.platform_version {
                fargate::platform_version(Some(v))?;
                // A new platform version rolls the tasks onto it: a new deployment, as on ECS.
                new_revision |= svc.platform_version.as_deref() != Some(v.as_str());
                svc.platform_version = Some(v.clone());
            }
        }
        if let Some(td) = &req.task_definition {
            let (arn, mode) = resolve_task_definition(ctx, td, launch_type)?;
            check_network(&mode, req.network_configuration.is_some() || svc.network_configuration.is_some())?;
            new_revision |= svc.task_definition.as_deref() != Some(arn.as_str());
            svc.task_definition = Some(arn);
        }
        if req.load_balancers.is_some() || req.service_registries.is_some() || req.task_definition.is_some() {
            let load_balancers = req.load_balancers.clone().or(svc.load_balancers.clone()).unwrap_or_default();
            let registries = req.service_registries.clone().or(svc.service_registries.clone()).unwrap_or_default();
            check_endpoints(ctx, svc.task_definition.as_deref().unwrap_or_default(), &load_balancers, &registries)
                .await?;
            // New tasks carry the new configuration: a change starts a deployment, as on ECS.
            new_revision |= svc.load_balancers.as_ref() != Some(&load_balancers)
                || svc.service_registries.as_ref() != Some(&registries);
            svc.load_balancers = Some(load_balancers);
            svc.service_registries = Some(registries);
        }
        if let Some(d) = req.desired_count {
            svc.desired_count = Some(d);
        }
        if let Some(c) = &req.deployment_configuration {
            let merged = DeploymentConfiguration {
                maximum_percent: c
                    .maximum_percent
                    .or(svc.deployment_configuration.as_ref().and_then(|d| d.maximum_percent)),
                minimum_healthy_percent: c
                    .minimum_healthy_percent
                    .or(svc.deployment_configuration.as_ref().and_then(|d| d.minimum_healthy_percent)),
                deployment_circuit_breaker: c
                    .deployment_circuit_breaker
                    .clone()
                    .or(svc.deployment_configuration.as_ref().and_then(|d| d.deployment_circuit_breaker.clone())),
                ..c.clone()
            };
            svc.deployment_configuration = Some(default_deployment_configuration(daemon, Some(merged)));
        }
        if let Some(p) = &req.placement_constraints {
            svc.placement_constraints = Some(p.clone());
        }
        if let Some(p) = &req.placement_strategy {
            svc.placement_strategy = Some(p.clone());
        }
        if let Some(n) = &req.network_configuration {
            svc.network_configuration = Some(n.clone());
        }
        if let Some(h) = req.health_check_grace_period_seconds {
            svc.health_check_grace_period_seconds = Some(h);
        }
        if let Some(e) = req.enable_execute_command {
            svc.enable_execute_command = Some(e);
        }
        if let Some(p) = &req.propagate_tags {
            svc.propagate_tags = Some(p.clone());
        }
        if let Some(e) = req.enable_ecs_managed_tags {
            svc.enable_ecs_managed_tags = Some(e);
        }
        if let Some(a) = &req.availability_zone_rebalancing {
            svc.availability_zone_rebalancing = Some(a.clone());
        }
        let deployments = svc.deployments.get_or_insert_with(Vec::new);
        if new_revision || req.force_new_deployment.unwrap_or(false) || req.network_configuration.is_some() {
            for d in deployments.iter_mut() {
                if d.status.as_deref() == Some("PRIMARY") {
                    d.status = Some("ACTIVE".into());
                    d.updated_at = Some(ctx.now());
                }
            }
            let fresh = new_deployment(ctx, &svc);
            svc.deployments.get_or_insert_with(Vec::new).insert(0, fresh);
        } else if let Some(primary) = deployments.iter_mut().find(|d| d.status.as_deref() == Some("PRIMARY")) {
            primary.desired_count = svc.desired_count;
            primary.updated_at = Some(ctx.now());
        }
        let key = keys::service(&cluster, svc.service_name.as_deref().unwrap_or_default());
        let txn = Txn::new().when(Compare::unchanged(&key, entry.revision)).then(Op::put(&key, encode(&svc)));
        if ctx.commit(txn).await?.is_some() {
            return Ok(UpdateServiceResponse { service: Some(present(&svc, false)) });
        }
    }
    Err(ApiError::server("The service kept changing while it was updated; try again."))
}

pub async fn delete(ctx: &Ctx, req: DeleteServiceRequest) -> ApiResult<DeleteServiceResponse> {
    let (cluster, _) = active_cluster(ctx, req.cluster.as_deref())?;
    let given = req.service.clone().unwrap_or_default();
    let force = req.force.unwrap_or(false);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let entry = lookup(ctx, &cluster, &given).ok_or_else(ApiError::service_not_found)?;
        let old = &entry.value;
        match old.status.as_deref() {
            Some("ACTIVE") => {}
            Some("DRAINING") => return Ok(DeleteServiceResponse { service: Some(present(old, false)) }),
            _ => return Err(ApiError::service_not_active()),
        }
        let replica = old.scheduling_strategy.as_deref() != Some("DAEMON");
        if replica && old.desired_count.unwrap_or(0) > 0 && !force {
            return Err(ApiError::invalid_parameter("The service cannot be stopped while it is scaled above 0."));
        }
        let mut svc = (**old).clone();
        svc.status = Some("DRAINING".into());
        svc.desired_count = Some(0);
        for d in svc.deployments.iter_mut().flatten() {
            d.desired_count = Some(0);
            d.updated_at = Some(ctx.now());
        }
        let key = keys::service(&cluster, svc.service_name.as_deref().unwrap_or_default());
        let txn = Txn::new().when(Compare::unchanged(&key, entry.revision)).then(Op::put(&key, encode(&svc)));
        if ctx.commit(txn).await?.is_some() {
            return Ok(DeleteServiceResponse { service: Some(present(&svc, false)) });
        }
    }
    Err(ApiError::server("The service kept changing while it was deleted; try again."))
}
