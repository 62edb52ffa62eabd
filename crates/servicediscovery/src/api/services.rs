//! Services: CreateService (its DNS records, routing policy and health checking), GetService,
//! ListServices, UpdateService (TTLs, description, Route 53 health check) and DeleteService.
//! Creating a service rewrites its namespace in the same transaction, so a concurrent
//! DeleteNamespace (which compares the namespace unchanged) can never orphan it.

use flotilla_api::Ctx;
use flotilla_endpoints::cloudmap::{
    CreatorRequest, DnsConfig, DnsRecord, Instance, Namespace, NamespaceType, OperationType, RecordType, RoutingPolicy,
    Service,
};
use flotilla_endpoints::keys;
use flotilla_store::{Compare, Op, Txn};
use serde_json::{json, Map, Value};

use super::error::{Result, SdError};
use super::input::{int_of, str_of, Input};
use super::store::{self, put, ATTEMPTS};
use super::{filters, paging, shapes, tags};

fn record_type(s: &str, field: &str) -> Result<RecordType> {
    match s {
        "A" => Ok(RecordType::A),
        "AAAA" => Ok(RecordType::Aaaa),
        "SRV" => Ok(RecordType::Srv),
        "CNAME" => Ok(RecordType::Cname),
        _ => Err(SdError::invalid(format!("{field} must be A, AAAA, SRV or CNAME."))),
    }
}

/// `DnsRecords`: a type and TTL each.
fn records(list: Option<&Value>, field: &str) -> Result<Vec<DnsRecord>> {
    let Some(Value::Array(list)) = list else {
        return Err(SdError::invalid(format!("{field} is required and must be a list.")));
    };
    if list.is_empty() {
        return Err(SdError::invalid(format!("{field} must have at least one record.")));
    }
    let mut out: Vec<DnsRecord> = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let kind = str_of(r.get("Type"), &format!("{field}.{i}.Type"))?
            .ok_or_else(|| SdError::invalid(format!("{field}.{i}.Type is required.")))?;
        let kind = record_type(kind, &format!("{field}.{i}.Type"))?;
        let ttl = int_of(r.get("TTL"), &format!("{field}.{i}.TTL"), 0, 2_147_483_647)?
            .ok_or_else(|| SdError::invalid(format!("{field}.{i}.TTL is required.")))?;
        if out.iter().any(|o| o.kind == kind) {
            return Err(SdError::invalid(format!("{field} has two {} records.", shapes::record_type(kind))));
        }
        out.push(DnsRecord { kind, ttl: ttl as u32 });
    }
    Ok(out)
}

/// The record combinations Cloud Map accepts: CNAME alone, else any of A, AAAA and SRV.
pub fn check_combination(records: &[DnsRecord], policy: RoutingPolicy) -> Result<()> {
    let has = |k| records.iter().any(|r: &DnsRecord| r.kind == k);
    if has(RecordType::Cname) {
        if records.len() > 1 {
            return Err(SdError::invalid(
                "DnsConfig.DnsRecords: a CNAME record cannot be combined with other records.",
            ));
        }
        if policy != RoutingPolicy::Weighted {
            return Err(SdError::invalid("DnsConfig.RoutingPolicy must be WEIGHTED for a CNAME record."));
        }
    }
    Ok(())
}

fn dns_config(config: &Map<String, Value>) -> Result<DnsConfig> {
    let routing_policy = match str_of(config.get("RoutingPolicy"), "DnsConfig.RoutingPolicy")? {
        None | Some("MULTIVALUE") => RoutingPolicy::Multivalue,
        Some("WEIGHTED") => RoutingPolicy::Weighted,
        Some(_) => return Err(SdError::invalid("DnsConfig.RoutingPolicy must be MULTIVALUE or WEIGHTED.")),
    };
    let records = records(config.get("DnsRecords"), "DnsConfig.DnsRecords")?;
    check_combination(&records, routing_policy)?;
    Ok(DnsConfig { routing_policy, records })
}

fn health_check_config(input: &Input) -> Result<Option<Value>> {
    let Some(config) = input.object("HealthCheckConfig")? else { return Ok(None) };
    match str_of(config.get("Type"), "HealthCheckConfig.Type")? {
        Some("HTTP" | "HTTPS" | "TCP") => {}
        _ => return Err(SdError::invalid("HealthCheckConfig.Type must be HTTP, HTTPS or TCP.")),
    }
    str_of(config.get("ResourcePath"), "HealthCheckConfig.ResourcePath")?;
    int_of(config.get("FailureThreshold"), "HealthCheckConfig.FailureThreshold", 1, 10)?;
    Ok(Some(Value::Object(config.clone())))
}

/// A service name: a DNS label sequence for DNS services (`_name._tcp` is fine), any printable
/// text for HTTP-only ones.
fn valid_name(name: &str, dns: bool) -> bool {
    if name.len() > 127 {
        return false;
    }
    if dns {
        super::namespaces::valid_dns_name(name) && !name.ends_with('.')
    } else {
        name.bytes().all(|b| (b'!'..=b'~').contains(&b))
    }
}

pub async fn instance_count(ctx: &Ctx, service_id: &str) -> Result<usize> {
    Ok(ctx.store.list(&keys::instances_of(service_id)).await.map_err(|e| SdError::internal(e.to_string()))?.kvs.len())
}

pub async fn create(ctx: &Ctx, input: &Input) -> Result<Value> {
    let name = input.required_str("Name")?.to_string();
    let dns = input.object("DnsConfig")?;
    let namespace_id = match input.str("NamespaceId")? {
        Some(id) => id.to_string(),
        None => str_of(dns.and_then(|d| d.get("NamespaceId")), "DnsConfig.NamespaceId")?
            .ok_or_else(|| SdError::invalid("NamespaceId is required."))?
            .to_string(),
    };
    let request_id = input.bounded("CreatorRequestId", 64)?;
    let description = input.bounded("Description", 1024)?.map(str::to_string);
    let http_only = match input.str("Type")? {
        None => false,
        Some("HTTP") => true,
        Some(_) => return Err(SdError::invalid("Type must be HTTP.")),
    };
    let health = health_check_config(input)?;
    let custom = input.object("HealthCheckCustomConfig")?.is_some();
    if health.is_some() && custom {
        return Err(SdError::invalid("HealthCheckConfig and HealthCheckCustomConfig cannot both be given."));
    }
    let tags = tags::parse(input, "Tags")?;
    if let Some(earlier) = store::creator_request(ctx, "service", request_id).await? {
        if let Some((svc, _)) = store::get::<Service>(ctx, &keys::service(&earlier.resource_id)).await? {
            let count = instance_count(ctx, &svc.id).await?;
            return Ok(json!({ "Service": shapes::service(&svc, count) }));
        }
    }
    for _ in 0..ATTEMPTS {
        let ns_key = keys::namespace(&namespace_id);
        let (ns, ns_rev) =
            store::get::<Namespace>(ctx, &ns_key).await?.ok_or_else(|| SdError::namespace_not_found(&namespace_id))?;
        let dns_config = match (ns.kind, dns) {
            (NamespaceType::Http, Some(_)) => {
                return Err(SdError::invalid("DnsConfig cannot be given for a service in an HTTP namespace."))
            }
            (_, Some(_)) if http_only => return Err(SdError::invalid("DnsConfig cannot be given with Type HTTP.")),
            (_, Some(config)) => Some(dns_config(config)?),
            (NamespaceType::Http, None) => None,
            (_, None) if http_only => None,
            (_, None) => return Err(SdError::invalid("DnsConfig is required for a service in a DNS namespace.")),
        };
        if health.is_some() && ns.kind == NamespaceType::DnsPrivate {
            return Err(SdError::invalid(
                "HealthCheckConfig is only for services in public DNS or HTTP namespaces; use HealthCheckCustomConfig.",
            ));
        }
        if health.is_some()
            && dns_config.as_ref().is_some_and(|d| d.records.iter().any(|r| r.kind == RecordType::Cname))
        {
            return Err(SdError::invalid("HealthCheckConfig cannot be given for a service with a CNAME record."));
        }
        if !valid_name(&name, dns_config.is_some()) {
            return Err(SdError::invalid(format!("Name {name} is not a valid service name.")));
        }
        let index = keys::service_name(&namespace_id, &name.to_ascii_lowercase());
        if let Some((existing, _)) = store::get::<String>(ctx, &index).await? {
            let crid = store::get::<Service>(ctx, &keys::service(&existing))
                .await?
                .and_then(|(s, _)| s.creator_request_id)
                .unwrap_or_default();
            return Err(SdError::new("ServiceAlreadyExists", format!("Service {name} already exists."))
                .with("CreatorRequestId", crid)
                .with("ServiceId", existing));
        }
        let id = store::new_id("srv-");
        let svc = Service {
            arn: store::arn(ctx, "service", &id),
            id: id.clone(),
            name: name.clone(),
            namespace_id: namespace_id.clone(),
            description: description.clone(),
            dns_config,
            custom_health: custom,
            health_check_config: health.clone(),
            creator_request_id: request_id.map(str::to_string),
            tags: tags.clone(),
            created_at_ms: ctx.clock.now_ms(),
        };
        tags::check_count(&tags, &svc.arn)?;
        let txn = Txn::new()
            .when(Compare::absent(index.clone()))
            .when(Compare::unchanged(ns_key.clone(), ns_rev))
            .then(put(ns_key, &ns))
            .then(put(index, &id))
            .then(put(keys::service(&id), &svc));
        let claim = CreatorRequest { operation_id: None, resource_id: id.clone() };
        let txn = store::claim_request(txn, "service", request_id, &claim);
        if store::commit(ctx, txn).await? {
            return Ok(json!({ "Service": shapes::service(&svc, 0) }));
        }
    }
    Err(store::lost_race(&format!("service {name}")))
}

pub async fn get(ctx: &Ctx, input: &Input) -> Result<Value> {
    let id = input.required_str("Id")?;
    let (svc, _) =
        store::get::<Service>(ctx, &keys::service(id)).await?.ok_or_else(|| SdError::service_not_found(id))?;
    let count = instance_count(ctx, id).await?;
    Ok(json!({ "Service": shapes::service(&svc, count) }))
}

pub async fn list(ctx: &Ctx, input: &Input) -> Result<Value> {
    let (start, limit) = input.paging(100)?;
    let filters = filters::parse(input, &["NAMESPACE_ID"])?;
    let mut services: Vec<Service> =
        store::list::<Service>(ctx, keys::SERVICE).await?.into_iter().map(|(s, _)| s).collect();
    services.retain(|s| filters.iter().all(|f| f.matches(&s.namespace_id)));
    let mut counts = std::collections::HashMap::new();
    for (i, _) in store::list::<Instance>(ctx, keys::INSTANCE).await? {
        *counts.entry(i.service_id).or_insert(0usize) += 1;
    }
    let (page, next) = paging::page(services, start, limit);
    let items: Vec<Value> = page.iter().map(|s| shapes::service(s, counts.get(&s.id).copied().unwrap_or(0))).collect();
    let mut out = json!({ "Services": items });
    if let Some(n) = next {
        out["NextToken"] = n.into();
    }
    Ok(out)
}

pub async fn update(ctx: &Ctx, input: &Input) -> Result<Value> {
    let id = input.required_str("Id")?;
    let change = input.object("Service")?.ok_or_else(|| SdError::invalid("Service is required."))?;
    let description = str_of(change.get("Description"), "Service.Description")?.map(str::to_string);
    let new_records = match change.get("DnsConfig") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => Some(records(d.get("DnsRecords"), "Service.DnsConfig.DnsRecords")?),
        Some(_) => return Err(SdError::invalid("Service.DnsConfig must be an object.")),
    };
    let health = match change.get("HealthCheckConfig") {
        None | Some(Value::Null) => None,
        Some(h) => Some(health_check_config(&Input(Map::from_iter([("HealthCheckConfig".to_string(), h.clone())])))?),
    };
    for _ in 0..ATTEMPTS {
        let key = keys::service(id);
        let (mut svc, rev) = store::get::<Service>(ctx, &key).await?.ok_or_else(|| SdError::service_not_found(id))?;
        if let Some(d) = &description {
            svc.description = Some(d.clone());
        }
        if let Some(records) = &new_records {
            let Some(config) = svc.dns_config.as_mut() else {
                return Err(SdError::invalid(format!("Service {id} has no DNS records to update.")));
            };
            let mut old: Vec<_> = config.records.iter().map(|r| shapes::record_type(r.kind)).collect();
            let mut new: Vec<_> = records.iter().map(|r| shapes::record_type(r.kind)).collect();
            old.sort_unstable();
            new.sort_unstable();
            if old != new {
                return Err(SdError::invalid(
                    "Service.DnsConfig.DnsRecords must list the service's record types; only their TTLs can change.",
                ));
            }
            config.records = records.clone();
        }
        if let Some(h) = &health {
            if svc.health_check_config.is_none() {
                return Err(SdError::invalid("Service.HealthCheckConfig can only change a service that has one."));
            }
            svc.health_check_config = h.clone();
        }
        let (op, op_write) = store::operation(ctx, OperationType::UpdateService, &[("SERVICE", id)]);
        let txn = Txn::new().when(Compare::unchanged(key.clone(), rev)).then(put(key, &svc)).then(op_write);
        if store::commit(ctx, txn).await? {
            return Ok(json!({ "OperationId": op.id }));
        }
    }
    Err(store::lost_race(id))
}

pub async fn delete(ctx: &Ctx, input: &Input) -> Result<Value> {
    let id = input.required_str("Id")?;
    for _ in 0..ATTEMPTS {
        let key = keys::service(id);
        let (svc, rev) = store::get::<Service>(ctx, &key).await?.ok_or_else(|| SdError::service_not_found(id))?;
        if instance_count(ctx, id).await? > 0 {
            return Err(SdError::new(
                "ResourceInUse",
                format!("Service {id} has registered instances; deregister them first."),
            ));
        }
        // Registering an instance rewrites its service, so this compare catches one registered
        // after the count above.
        let txn = Txn::new()
            .when(Compare::unchanged(key.clone(), rev))
            .then(Op::delete(key))
            .then(Op::delete(keys::service_name(&svc.namespace_id, &svc.name.to_ascii_lowercase())));
        if store::commit(ctx, txn).await? {
            return Ok(json!({}));
        }
    }
    Err(store::lost_race(id))
}
