//! Namespaces: CreatePrivateDnsNamespace, CreateHttpNamespace (CreatePublicDnsNamespace is
//! refused: Flotilla serves no public DNS), GetNamespace, ListNamespaces, DeleteNamespace and the
//! Update calls. Each change commits with its operation record, so the operation is SUCCESS as
//! soon as the client sees its id.

use flotilla_api::Ctx;
use flotilla_endpoints::cloudmap::{CreatorRequest, Namespace, NamespaceType, OperationType, Service};
use flotilla_endpoints::keys;
use flotilla_store::{Compare, Op, Txn};
use serde_json::{json, Map, Value};

use super::error::{Result, SdError};
use super::filters::{self, Filter};
use super::input::{int_of, str_of, Input};
use super::store::{self, put, ATTEMPTS};
use super::{paging, shapes, tags};

/// Default negative-caching TTL of a private namespace's SOA (Route 53's default for Cloud Map).
const DEFAULT_SOA_TTL: u32 = 15;

/// A DNS namespace name: dot-separated labels of letters, digits, `-` and `_`.
pub fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn soa_ttl(properties: Option<&Map<String, Value>>, field: &str) -> Result<Option<u32>> {
    let soa = properties.and_then(|p| p.get("DnsProperties")).and_then(|d| d.get("SOA"));
    let Some(soa) = soa else { return Ok(None) };
    let ttl = int_of(soa.get("TTL"), &format!("{field}.DnsProperties.SOA.TTL"), 0, 2_147_483_647)?
        .ok_or_else(|| SdError::invalid(format!("{field}.DnsProperties.SOA.TTL is required.")))?;
    Ok(Some(ttl as u32))
}

pub async fn create(ctx: &Ctx, input: &Input, kind: NamespaceType) -> Result<Value> {
    if kind == NamespaceType::DnsPublic {
        return Err(SdError::invalid(
            "Public DNS namespaces are not supported by Flotilla: it serves no public DNS. \
             Use CreatePrivateDnsNamespace or CreateHttpNamespace.",
        ));
    }
    let name = input.required_str("Name")?;
    let name = if kind == NamespaceType::Http {
        if name.len() > 1024 || !name.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
            return Err(SdError::invalid("Name must be 1 to 1024 printable characters without spaces."));
        }
        name.to_string()
    } else {
        if !valid_dns_name(name) {
            return Err(SdError::invalid(format!("Name {name} is not a valid DNS domain name.")));
        }
        name.strip_suffix('.').unwrap_or(name).to_string()
    };
    let request_id = input.bounded("CreatorRequestId", 64)?;
    let description = input.bounded("Description", 1024)?.map(str::to_string);
    let vpc = match kind {
        NamespaceType::DnsPrivate => Some(input.required_str("Vpc")?.to_string()),
        _ => None,
    };
    let soa = match kind {
        NamespaceType::DnsPrivate => {
            Some(soa_ttl(input.object("Properties")?, "Properties")?.unwrap_or(DEFAULT_SOA_TTL))
        }
        _ => None,
    };
    let tags = tags::parse(input, "Tags")?;
    tags::check_count(&tags, &name)?;
    let index = keys::namespace_name(&name.to_ascii_lowercase());
    for _ in 0..ATTEMPTS {
        if let Some(earlier) = store::creator_request(ctx, "namespace", request_id).await? {
            return Ok(json!({ "OperationId": earlier.operation_id }));
        }
        if let Some((existing_id, _)) = store::get::<String>(ctx, &index).await? {
            let existing = store::get::<Namespace>(ctx, &keys::namespace(&existing_id)).await?;
            let crid = existing.and_then(|(n, _)| n.creator_request_id).unwrap_or_default();
            return Err(SdError::new("NamespaceAlreadyExists", format!("Namespace {name} already exists."))
                .with("CreatorRequestId", crid)
                .with("NamespaceId", existing_id));
        }
        let id = store::new_id("ns-");
        let ns = Namespace {
            arn: store::arn(ctx, "namespace", &id),
            id: id.clone(),
            name: name.clone(),
            kind,
            description: description.clone(),
            soa_ttl: soa,
            vpc: vpc.clone(),
            creator_request_id: request_id.map(str::to_string),
            tags: tags.clone(),
            created_at_ms: ctx.clock.now_ms(),
        };
        let (op, op_write) = store::operation(ctx, OperationType::CreateNamespace, &[("NAMESPACE", &id)]);
        let txn = Txn::new()
            .when(Compare::absent(index.clone()))
            .then(put(index.clone(), &id))
            .then(put(keys::namespace(&id), &ns))
            .then(op_write);
        let claim = CreatorRequest { operation_id: Some(op.id.clone()), resource_id: id.clone() };
        let txn = store::claim_request(txn, "namespace", request_id, &claim);
        if store::commit(ctx, txn).await? {
            return Ok(json!({ "OperationId": op.id }));
        }
    }
    Err(store::lost_race(&format!("namespace {name}")))
}

pub async fn service_counts(ctx: &Ctx) -> Result<std::collections::HashMap<String, usize>> {
    let mut counts = std::collections::HashMap::new();
    for (svc, _) in store::list::<Service>(ctx, keys::SERVICE).await? {
        *counts.entry(svc.namespace_id).or_insert(0) += 1;
    }
    Ok(counts)
}

pub async fn get(ctx: &Ctx, input: &Input) -> Result<Value> {
    let id = input.required_str("Id")?;
    let (ns, _) =
        store::get::<Namespace>(ctx, &keys::namespace(id)).await?.ok_or_else(|| SdError::namespace_not_found(id))?;
    let count = service_counts(ctx).await?.get(id).copied().unwrap_or(0);
    Ok(json!({ "Namespace": shapes::namespace(&ns, count) }))
}

pub async fn list(ctx: &Ctx, input: &Input) -> Result<Value> {
    let (start, limit) = input.paging(100)?;
    let filters = filters::parse(input, &["TYPE", "NAME", "HTTP_NAME"])?;
    let counts = service_counts(ctx).await?;
    let mut namespaces: Vec<Namespace> =
        store::list::<Namespace>(ctx, keys::NAMESPACE).await?.into_iter().map(|(n, _)| n).collect();
    namespaces.retain(|ns| {
        filters.iter().all(|f: &Filter| match f.name.as_str() {
            "TYPE" => f.matches(shapes::namespace_type(ns.kind)),
            _ => f.matches(&ns.name),
        })
    });
    let (page, next) = paging::page(namespaces, start, limit);
    let items: Vec<Value> =
        page.iter().map(|ns| shapes::namespace(ns, counts.get(&ns.id).copied().unwrap_or(0))).collect();
    let mut out = json!({ "Namespaces": items });
    if let Some(n) = next {
        out["NextToken"] = n.into();
    }
    Ok(out)
}

pub async fn delete(ctx: &Ctx, input: &Input) -> Result<Value> {
    let id = input.required_str("Id")?;
    for _ in 0..ATTEMPTS {
        let key = keys::namespace(id);
        let (ns, rev) = store::get::<Namespace>(ctx, &key).await?.ok_or_else(|| SdError::namespace_not_found(id))?;
        if service_counts(ctx).await?.get(id).copied().unwrap_or(0) > 0 {
            return Err(SdError::new("ResourceInUse", format!("Namespace {id} has services; delete them first.")));
        }
        let (op, op_write) = store::operation(ctx, OperationType::DeleteNamespace, &[("NAMESPACE", id)]);
        // Creating a service rewrites its namespace, so this compare also fails when a service
        // was created after the count above.
        let txn = Txn::new()
            .when(Compare::unchanged(key.clone(), rev))
            .then(Op::delete(key))
            .then(Op::delete(keys::namespace_name(&ns.name.to_ascii_lowercase())))
            .then(op_write);
        if store::commit(ctx, txn).await? {
            return Ok(json!({ "OperationId": op.id }));
        }
    }
    Err(store::lost_race(id))
}

pub async fn update(ctx: &Ctx, input: &Input, kind: NamespaceType) -> Result<Value> {
    let id = input.required_str("Id")?;
    input.bounded("UpdaterRequestId", 64)?;
    let change = input.object("Namespace")?.ok_or_else(|| SdError::invalid("Namespace is required."))?;
    let description = str_of(change.get("Description"), "Namespace.Description")?.map(str::to_string);
    if description.as_ref().is_some_and(|d| d.chars().count() > 1024) {
        return Err(SdError::invalid("Namespace.Description must be at most 1024 characters long."));
    }
    let properties = match change.get("Properties") {
        None | Some(Value::Null) => None,
        Some(Value::Object(p)) => Some(p),
        Some(_) => return Err(SdError::invalid("Namespace.Properties must be an object.")),
    };
    let soa = soa_ttl(properties, "Namespace.Properties")?;
    if kind == NamespaceType::Http && description.is_none() {
        return Err(SdError::invalid("Namespace.Description is required."));
    }
    if kind == NamespaceType::DnsPrivate && description.is_none() && soa.is_none() {
        return Err(SdError::invalid("Namespace must change its Description or its Properties."));
    }
    for _ in 0..ATTEMPTS {
        let key = keys::namespace(id);
        let (mut ns, rev) =
            store::get::<Namespace>(ctx, &key).await?.ok_or_else(|| SdError::namespace_not_found(id))?;
        if ns.kind != kind {
            return Err(SdError::invalid(format!(
                "Namespace {id} is not a {} namespace.",
                shapes::namespace_type(kind)
            )));
        }
        if description.is_some() {
            ns.description = description.clone();
        }
        if soa.is_some() {
            ns.soa_ttl = soa;
        }
        let (op, op_write) = store::operation(ctx, OperationType::UpdateNamespace, &[("NAMESPACE", id)]);
        let txn = Txn::new().when(Compare::unchanged(key.clone(), rev)).then(put(key, &ns)).then(op_write);
        if store::commit(ctx, txn).await? {
            return Ok(json!({ "OperationId": op.id }));
        }
    }
    Err(store::lost_race(id))
}
