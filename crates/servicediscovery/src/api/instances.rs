//! Instances: RegisterInstance (create or update, attributes checked against the service's
//! records), DeregisterInstance, GetInstance, ListInstances, GetInstancesHealthStatus and
//! UpdateInstanceCustomHealthStatus. Registering and deregistering rewrite the service in the
//! same transaction: DeleteService compares it unchanged, and its revision is the service's
//! `InstancesRevision`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use flotilla_api::Ctx;
use flotilla_endpoints::cloudmap::{
    self as cm, CreatorRequest, HealthStatus, Instance, Namespace, NamespaceType, OperationType, RecordType, Service,
};
use flotilla_endpoints::keys;
use flotilla_store::{Compare, Op, Revision, Txn};
use serde_json::{json, Map, Value};

use super::error::{Result, SdError};
use super::input::Input;
use super::store::{self, put, ATTEMPTS};
use super::{paging, shapes};

/// Route 53's quota of instances per service.
pub const MAX_INSTANCES: usize = 1000;
const MAX_CUSTOM_ATTRIBUTES: usize = 30;

/// Checks `attributes` against what the service's records need.
pub fn check_attributes(attributes: &BTreeMap<String, String>, svc: &Service, ns_kind: NamespaceType) -> Result<()> {
    let mut total = 0;
    let mut custom = 0;
    for (k, v) in attributes {
        if k.is_empty() || k.len() > 255 {
            return Err(SdError::invalid(format!("Attributes key {k:?} must be 1 to 255 characters long.")));
        }
        if v.len() > 1024 {
            return Err(SdError::invalid(format!("Attributes.{k} must be at most 1024 characters long.")));
        }
        total += k.len() + v.len();
        if !k.starts_with("AWS_") {
            custom += 1;
        }
    }
    if custom > MAX_CUSTOM_ATTRIBUTES {
        return Err(SdError::invalid(format!(
            "Attributes may have at most {MAX_CUSTOM_ATTRIBUTES} custom attributes."
        )));
    }
    if total > 5000 {
        return Err(SdError::invalid("Attributes may total at most 5000 characters."));
    }
    let get = |k: &str| attributes.get(k).map(String::as_str);
    if let Some(ip) = get(cm::IPV4) {
        ip.parse::<Ipv4Addr>().map_err(|_| SdError::invalid(format!("{} {ip} is not an IPv4 address.", cm::IPV4)))?;
    }
    if let Some(ip) = get(cm::IPV6) {
        ip.parse::<Ipv6Addr>().map_err(|_| SdError::invalid(format!("{} {ip} is not an IPv6 address.", cm::IPV6)))?;
    }
    if let Some(port) = get(cm::PORT) {
        port.parse::<u16>()
            .map_err(|_| SdError::invalid(format!("{} {port} is not a port (0 to 65535).", cm::PORT)))?;
    }
    let (a, aaaa) = (svc.has_record(RecordType::A), svc.has_record(RecordType::Aaaa));
    let (v4, v6) = (get(cm::IPV4).is_some(), get(cm::IPV6).is_some());
    if a && aaaa && !v4 && !v6 {
        return Err(SdError::invalid(format!(
            "{} or {} is required: the service has A and AAAA records.",
            cm::IPV4,
            cm::IPV6
        )));
    }
    if a && !aaaa && !v4 {
        return Err(SdError::invalid(format!("{} is required: the service has an A record.", cm::IPV4)));
    }
    if aaaa && !a && !v6 {
        return Err(SdError::invalid(format!("{} is required: the service has an AAAA record.", cm::IPV6)));
    }
    if svc.has_record(RecordType::Srv) {
        if get(cm::PORT).is_none() {
            return Err(SdError::invalid(format!("{} is required: the service has an SRV record.", cm::PORT)));
        }
        if !v4 && !v6 {
            return Err(SdError::invalid(format!(
                "{} or {} is required: the service has an SRV record.",
                cm::IPV4,
                cm::IPV6
            )));
        }
    }
    if svc.has_record(RecordType::Cname) && get(cm::CNAME).is_none() {
        return Err(SdError::invalid(format!("{} is required: the service has a CNAME record.", cm::CNAME)));
    }
    if svc.health_check_config.is_some() && get(cm::PORT).is_none() && get(cm::IPV4).is_some() {
        return Err(SdError::invalid(format!("{} is required: the service has a health check.", cm::PORT)));
    }
    if get("AWS_ALIAS_DNS_NAME").is_some() {
        return Err(SdError::invalid("AWS_ALIAS_DNS_NAME is not supported by Flotilla (no Route 53 alias records)."));
    }
    if get("AWS_EC2_INSTANCE_ID").is_some() && ns_kind != NamespaceType::Http {
        return Err(SdError::invalid("AWS_EC2_INSTANCE_ID is only allowed in HTTP namespaces."));
    }
    match get(cm::INIT_HEALTH_STATUS) {
        None => {}
        Some(_) if !svc.custom_health => {
            return Err(SdError::invalid(format!(
                "{} is only allowed for services with a custom health check.",
                cm::INIT_HEALTH_STATUS
            )))
        }
        Some("HEALTHY" | "UNHEALTHY") => {}
        Some(_) => return Err(SdError::invalid(format!("{} must be HEALTHY or UNHEALTHY.", cm::INIT_HEALTH_STATUS))),
    }
    Ok(())
}

async fn service(ctx: &Ctx, id: &str) -> Result<(Service, Revision)> {
    store::get::<Service>(ctx, &keys::service(id)).await?.ok_or_else(|| SdError::service_not_found(id))
}

pub async fn register(ctx: &Ctx, input: &Input) -> Result<Value> {
    let service_id = input.required_str("ServiceId")?;
    let instance_id = input.required_str("InstanceId")?;
    if instance_id.len() > 64 || !instance_id.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        return Err(SdError::invalid("InstanceId must be 1 to 64 printable characters without spaces."));
    }
    let request_id = input.bounded("CreatorRequestId", 64)?;
    if input.get("Attributes").is_none() {
        return Err(SdError::invalid("Attributes is required."));
    }
    let attributes: BTreeMap<String, String> = input.string_map("Attributes")?.into_iter().collect();
    let request_kind = format!("instance/{service_id}");
    for _ in 0..ATTEMPTS {
        if let Some(earlier) = store::creator_request(ctx, &request_kind, request_id).await? {
            return Ok(json!({ "OperationId": earlier.operation_id }));
        }
        let (svc, svc_rev) = service(ctx, service_id).await?;
        let ns_kind = store::get::<Namespace>(ctx, &keys::namespace(&svc.namespace_id))
            .await?
            .map(|(n, _)| n.kind)
            .unwrap_or(NamespaceType::DnsPrivate);
        check_attributes(&attributes, &svc, ns_kind)?;
        let key = keys::instance(service_id, instance_id);
        let existing = store::get::<Instance>(ctx, &key).await?;
        if existing.is_none() && super::services::instance_count(ctx, service_id).await? >= MAX_INSTANCES {
            return Err(SdError::new(
                "ResourceLimitExceeded",
                format!("Service {service_id} already has {MAX_INSTANCES} instances."),
            ));
        }
        let now = ctx.clock.now_ms();
        let health = match (&existing, attributes.get(cm::INIT_HEALTH_STATUS).map(String::as_str)) {
            (Some((old, _)), _) => old.health,
            (None, Some("UNHEALTHY")) => HealthStatus::Unhealthy,
            (None, _) => HealthStatus::Healthy,
        };
        let instance = Instance {
            id: instance_id.to_string(),
            service_id: service_id.to_string(),
            attributes: attributes.clone(),
            health,
            creator_request_id: request_id.map(str::to_string),
            task_arn: existing.as_ref().and_then(|(i, _)| i.task_arn.clone()),
            registered_at_ms: existing.as_ref().map(|(i, _)| i.registered_at_ms).unwrap_or(now),
            updated_at_ms: now,
        };
        let (op, op_write) = store::operation(
            ctx,
            OperationType::RegisterInstance,
            &[("SERVICE", service_id), ("INSTANCE", instance_id)],
        );
        let instance_compare = Compare::unchanged(key.clone(), existing.as_ref().map(|(_, r)| *r).unwrap_or(0));
        let svc_key = keys::service(service_id);
        let txn = Txn::new()
            .when(Compare::unchanged(svc_key.clone(), svc_rev))
            .when(instance_compare)
            .then(put(svc_key, &svc))
            .then(put(key, &instance))
            .then(op_write);
        let claim = CreatorRequest { operation_id: Some(op.id.clone()), resource_id: instance_id.to_string() };
        let txn = store::claim_request(txn, &request_kind, request_id, &claim);
        if store::commit(ctx, txn).await? {
            return Ok(json!({ "OperationId": op.id }));
        }
    }
    Err(store::lost_race(instance_id))
}

pub async fn deregister(ctx: &Ctx, input: &Input) -> Result<Value> {
    let service_id = input.required_str("ServiceId")?;
    let instance_id = input.required_str("InstanceId")?;
    for _ in 0..ATTEMPTS {
        let (svc, svc_rev) = service(ctx, service_id).await?;
        let key = keys::instance(service_id, instance_id);
        let (_, rev) =
            store::get::<Instance>(ctx, &key).await?.ok_or_else(|| SdError::instance_not_found(instance_id))?;
        let (op, op_write) = store::operation(
            ctx,
            OperationType::DeregisterInstance,
            &[("SERVICE", service_id), ("INSTANCE", instance_id)],
        );
        let svc_key = keys::service(service_id);
        let txn = Txn::new()
            .when(Compare::unchanged(svc_key.clone(), svc_rev))
            .when(Compare::unchanged(key.clone(), rev))
            .then(put(svc_key, &svc))
            .then(Op::delete(key))
            .then(op_write);
        if store::commit(ctx, txn).await? {
            return Ok(json!({ "OperationId": op.id }));
        }
    }
    Err(store::lost_race(instance_id))
}

pub async fn get(ctx: &Ctx, input: &Input) -> Result<Value> {
    let service_id = input.required_str("ServiceId")?;
    let instance_id = input.required_str("InstanceId")?;
    let (svc, _) = service(ctx, service_id).await?;
    let (i, _) = store::get::<Instance>(ctx, &keys::instance(service_id, instance_id))
        .await?
        .ok_or_else(|| SdError::instance_not_found(instance_id))?;
    let _ = svc;
    Ok(json!({ "Instance": shapes::instance(&i) }))
}

pub async fn list_of(ctx: &Ctx, service_id: &str) -> Result<Vec<Instance>> {
    Ok(store::list::<Instance>(ctx, &keys::instances_of(service_id)).await?.into_iter().map(|(i, _)| i).collect())
}

pub async fn list(ctx: &Ctx, input: &Input) -> Result<Value> {
    let service_id = input.required_str("ServiceId")?;
    let (start, limit) = input.paging(100)?;
    service(ctx, service_id).await?;
    let (page, next) = paging::page(list_of(ctx, service_id).await?, start, limit);
    let mut out = json!({ "Instances": page.iter().map(shapes::instance).collect::<Vec<_>>() });
    if let Some(n) = next {
        out["NextToken"] = n.into();
    }
    Ok(out)
}

pub fn health_name(h: HealthStatus) -> &'static str {
    match h {
        HealthStatus::Healthy => "HEALTHY",
        HealthStatus::Unhealthy => "UNHEALTHY",
        HealthStatus::Unknown => "UNKNOWN",
    }
}

pub async fn health_status(ctx: &Ctx, input: &Input) -> Result<Value> {
    let service_id = input.required_str("ServiceId")?;
    let (start, limit) = input.paging(100)?;
    let mut wanted = Vec::new();
    for (i, v) in input.list("Instances")?.iter().enumerate() {
        wanted.push(super::input::str_of(Some(v), &format!("Instances.{i}"))?.unwrap_or_default().to_string());
    }
    service(ctx, service_id).await?;
    let mut instances = list_of(ctx, service_id).await?;
    if !wanted.is_empty() {
        if let Some(missing) = wanted.iter().find(|w| !instances.iter().any(|i| &&i.id == w)) {
            return Err(SdError::instance_not_found(missing));
        }
        instances.retain(|i| wanted.contains(&i.id));
    }
    let (page, next) = paging::page(instances, start, limit);
    let status: Map<String, Value> = page.iter().map(|i| (i.id.clone(), health_name(i.health).into())).collect();
    let mut out = json!({ "Status": status });
    if let Some(n) = next {
        out["NextToken"] = n.into();
    }
    Ok(out)
}

/// Applied at once (Cloud Map waits about 30 s): ECS and DNS clients see the change sooner.
pub async fn update_custom_health(ctx: &Ctx, input: &Input) -> Result<Value> {
    let service_id = input.required_str("ServiceId")?;
    let instance_id = input.required_str("InstanceId")?;
    let status = match input.required_str("Status")? {
        "HEALTHY" => HealthStatus::Healthy,
        "UNHEALTHY" => HealthStatus::Unhealthy,
        _ => return Err(SdError::invalid("Status must be HEALTHY or UNHEALTHY.")),
    };
    let (svc, _) = service(ctx, service_id).await?;
    if !svc.custom_health {
        return Err(SdError::new(
            "CustomHealthNotFound",
            format!("Service {service_id} has no HealthCheckCustomConfig."),
        ));
    }
    for _ in 0..ATTEMPTS {
        let key = keys::instance(service_id, instance_id);
        let (mut i, rev) =
            store::get::<Instance>(ctx, &key).await?.ok_or_else(|| SdError::instance_not_found(instance_id))?;
        if i.health == status {
            return Ok(json!({}));
        }
        i.health = status;
        i.updated_at_ms = ctx.clock.now_ms();
        if store::commit(ctx, Txn::new().when(Compare::unchanged(key.clone(), rev)).then(put(key, &i))).await? {
            return Ok(json!({}));
        }
    }
    Err(store::lost_race(instance_id))
}
