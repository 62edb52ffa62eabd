//! CreateLoadBalancer, DescribeLoadBalancers, DeleteLoadBalancer and the load balancer
//! attributes. A load balancer is created `provisioning`; the data plane flips its record's
//! `state` to `active` once a node serves it, and Describe reads the record. Its subnets are
//! the default VPC's (all of them, when none are named) or ones made with CreateSubnet, read
//! where the EC2 API keeps them; its name is unique through a name key created in the same
//! transaction as the record.

use flotilla_api::Ctx;
use flotilla_endpoints::elb::{LoadBalancer, LoadBalancerType};
use flotilla_endpoints::keys;
use flotilla_hosts::network::{default_vpc, Subnet};
use flotilla_query::{Params, QueryError, Xml};
use flotilla_store::{Compare, Txn};

use super::errors::{invalid_config, lb_not_found, not_one_of, validation};
use super::limits::{APPLICATION_LOAD_BALANCERS, NETWORK_LOAD_BALANCERS};
use super::store;
use super::{arns, attributes, paging, routing, shapes, tags, Result};

/// A load balancer or target group name: 1-32 letters, digits and hyphens, no hyphen at either
/// end.
pub fn check_name(name: &str, what: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        return Err(validation(format!(
            "The {what} name '{name}' must be 1-32 characters long, contain only letters, digits and hyphens, and not begin or end with a hyphen"
        )));
    }
    Ok(())
}

/// The subnet with this id: one of the default VPC's, or one made with CreateSubnet.
async fn subnet(ctx: &Ctx, id: &str) -> Result<Subnet> {
    if let Some(s) = default_vpc(&ctx.arns.region).subnet(id) {
        return Ok(s.clone());
    }
    match ctx.store.get(&flotilla_hosts::keys::subnet(id)).await.map_err(|e| store::internal(e.to_string()))? {
        Some(kv) => flotilla_hosts::codec::decode(&kv.value)
            .map_err(|e| store::internal(format!("the subnet {id} could not be read: {e}"))),
        None => Err(QueryError::new("SubnetNotFound", format!("The subnet ID '{id}' is not valid"))),
    }
}

/// The `(zone, subnet)` pairs of `Subnets` or `SubnetMappings`, and their VPC.
pub(super) async fn zones(ctx: &Ctx, p: &Params, kind: LoadBalancerType) -> Result<(Vec<(String, String)>, String)> {
    let named = p.list("Subnets")?;
    let mappings = p.structs("SubnetMappings")?;
    if !named.is_empty() && !mappings.is_empty() {
        return Err(validation("You can specify subnets or subnet mappings, not both"));
    }
    let mut ids = named;
    for m in &mappings {
        for unsupported in ["AllocationId", "PrivateIPv4Address", "IPv6Address", "SourceNatIpv6Prefix"] {
            if m.get(unsupported).is_some_and(|v| !v.is_empty()) {
                return Err(validation(format!(
                    "'{}' is not supported: Flotilla's load balancers take their addresses from the nodes that serve them",
                    m.name_of(unsupported)
                )));
            }
        }
        ids.push(m.required("SubnetId")?.to_string());
    }
    let vpc = default_vpc(&ctx.arns.region);
    let subnets: Vec<Subnet> = if ids.is_empty() {
        vpc.subnets.clone()
    } else {
        let mut out = Vec::new();
        for id in &ids {
            out.push(subnet(ctx, id).await?);
        }
        out
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    for s in &subnets {
        if pairs.iter().any(|(z, _)| *z == s.availability_zone) {
            return Err(invalid_config(
                "A load balancer cannot be attached to multiple subnets in the same Availability Zone",
            ));
        }
        if s.vpc_id != subnets[0].vpc_id {
            return Err(invalid_config("The subnets of a load balancer must all be in the same VPC"));
        }
        pairs.push((s.availability_zone.clone(), s.subnet_id.clone()));
    }
    if kind == LoadBalancerType::Application && pairs.len() < 2 {
        return Err(validation("At least two subnets in two different Availability Zones must be specified"));
    }
    pairs.sort();
    Ok((pairs, subnets[0].vpc_id.clone()))
}

pub(super) fn security_groups(ctx: &Ctx, p: &Params, kind: LoadBalancerType) -> Result<Vec<String>> {
    let vpc = default_vpc(&ctx.arns.region);
    let given = p.list("SecurityGroups")?;
    if let Some(bad) = given.iter().find(|g| **g != vpc.security_group_id) {
        return Err(QueryError::new("InvalidSecurityGroup", format!("Security group '{bad}' does not exist")));
    }
    Ok(match (given.is_empty(), kind) {
        (true, LoadBalancerType::Application) => vec![vpc.security_group_id],
        _ => given,
    })
}

/// Whether `existing` was made with the same settings as `wanted` (CreateLoadBalancer is
/// idempotent for those).
fn same_settings(existing: &LoadBalancer, wanted: &LoadBalancer) -> bool {
    existing.kind == wanted.kind
        && existing.scheme == wanted.scheme
        && existing.zones == wanted.zones
        && existing.security_groups == wanted.security_groups
        && existing.ip_address_type == wanted.ip_address_type
}

pub async fn create(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let name = p.required("Name")?.to_string();
    check_name(&name, "load balancer")?;
    if name.starts_with("internal-") {
        return Err(validation(format!("The load balancer name '{name}' cannot begin with 'internal-'")));
    }
    let kind = match p.get("Type").unwrap_or("application") {
        "application" => LoadBalancerType::Application,
        "network" => LoadBalancerType::Network,
        "gateway" => return Err(validation("Gateway load balancers are not supported by Flotilla")),
        other => return Err(not_one_of("type", other, &["application", "network", "gateway"])),
    };
    let scheme = p.get("Scheme").unwrap_or("internet-facing").to_string();
    if !["internet-facing", "internal"].contains(&scheme.as_str()) {
        return Err(not_one_of("scheme", &scheme, &["internet-facing", "internal"]));
    }
    let ip_address_type = p.get("IpAddressType").unwrap_or("ipv4").to_string();
    if ip_address_type != "ipv4" {
        return Err(validation(format!(
            "IP address type '{ip_address_type}' is not supported: Flotilla's load balancers are IPv4 only"
        )));
    }
    if p.get("CustomerOwnedIpv4Pool").is_some() {
        return Err(validation("Customer-owned IPv4 pools are not supported by Flotilla"));
    }
    let (zones, vpc_id) = zones(ctx, p, kind).await?;
    let security_groups = security_groups(ctx, p, kind)?;
    let tags = tags::parse(p)?;
    let now = ctx.clock.now_ms();
    let region = ctx.arns.region.clone();
    for _ in 0..store::ATTEMPTS {
        let id = store::new_id();
        let lb = LoadBalancer {
            arn: arns::load_balancer_arn(&ctx.arns, kind, &name, &id),
            dns_name: format!("{name}-{id}.{region}.elb.localhost"),
            id,
            name: name.clone(),
            kind,
            scheme: scheme.clone(),
            vpc_id: Some(vpc_id.clone()),
            zones: zones.clone(),
            security_groups: security_groups.clone(),
            ip_address_type: ip_address_type.clone(),
            state: "provisioning".into(),
            attributes: attributes::load_balancer_defaults(kind),
            tags: tags.clone(),
            created_at_ms: now,
        };
        let name_key = store::load_balancer_name(&name);
        if let Some((existing_id, _)) = store::get::<String>(ctx, &name_key).await? {
            match store::get::<LoadBalancer>(ctx, &keys::load_balancer(&existing_id)).await? {
                Some((existing, _)) if same_settings(&existing, &lb) => return Ok(answer(&[existing], &region)),
                Some(_) => {
                    return Err(QueryError::new(
                        "DuplicateLoadBalancerName",
                        format!("A load balancer with the same name '{name}' exists, but with different settings"),
                    ))
                }
                // The name key of a load balancer being deleted: read again.
                None => continue,
            }
        }
        let all = store::list::<LoadBalancer>(ctx, keys::LOAD_BALANCER).await?;
        let limit =
            if kind == LoadBalancerType::Application { APPLICATION_LOAD_BALANCERS } else { NETWORK_LOAD_BALANCERS };
        if all.iter().filter(|(_, l, _)| l.kind == kind).count() >= limit {
            return Err(QueryError::new(
                "TooManyLoadBalancers",
                format!("You've reached the limit of {limit} {} load balancers", shapes::lb_type(kind)),
            ));
        }
        let lb_key = keys::load_balancer(&lb.id);
        let txn = Txn::new()
            .when(Compare::absent(name_key.as_str()))
            .when(Compare::absent(lb_key.as_str()))
            .then(store::put(&name_key, &lb.id))
            .then(store::put(&lb_key, &lb))
            .then(store::put(&store::routing(&lb.id), &serde_json::json!({ "load_balancer_arn": lb.arn })));
        if store::commit(ctx, txn).await? {
            return Ok(answer(&[lb], &region));
        }
    }
    Err(store::contended("the load balancer name"))
}

fn answer(lbs: &[LoadBalancer], region: &str) -> Xml {
    let mut x = Xml::new();
    x.list("LoadBalancers", "member", lbs, |x, lb| shapes::load_balancer(x, lb, region));
    x
}

/// The load balancer an ARN names, or `LoadBalancerNotFound`.
pub async fn find(ctx: &Ctx, arn: &str) -> Result<LoadBalancer> {
    let id = arns::load_balancer_id(arn)?;
    match store::get::<LoadBalancer>(ctx, &keys::load_balancer(&id)).await? {
        Some((lb, _)) if lb.arn == arn => Ok(lb),
        _ => Err(lb_not_found()),
    }
}

pub async fn describe(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arns = p.list("LoadBalancerArns")?;
    let names = p.list("Names")?;
    if !arns.is_empty() && !names.is_empty() {
        return Err(validation("Load balancer names and load balancer ARNs cannot be specified at the same time"));
    }
    let mut all: Vec<LoadBalancer> =
        store::list::<LoadBalancer>(ctx, keys::LOAD_BALANCER).await?.into_iter().map(|(_, lb, _)| lb).collect();
    all.sort_by(|a, b| (a.created_at_ms, &a.name).cmp(&(b.created_at_ms, &b.name)));
    let chosen: Vec<LoadBalancer> = if !arns.is_empty() {
        for a in &arns {
            arns::load_balancer_id(a)?;
        }
        let found: Vec<LoadBalancer> =
            arns.iter().filter_map(|a| all.iter().find(|lb| lb.arn == *a).cloned()).collect();
        if found.len() < arns.len() {
            return Err(lb_not_found());
        }
        found
    } else if !names.is_empty() {
        let missing: Vec<&String> = names.iter().filter(|n| !all.iter().any(|lb| lb.name == **n)).collect();
        if !missing.is_empty() {
            let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Err(QueryError::new(
                "LoadBalancerNotFound",
                format!("Load balancers '[{}]' not found", list.join(", ")),
            ));
        }
        names.iter().filter_map(|n| all.iter().find(|lb| lb.name == *n).cloned()).collect()
    } else {
        all
    };
    let (page, next) = paging::page(p, chosen, |lb| lb.arn.clone())?;
    let mut x = answer(&page, &ctx.arns.region);
    x.opt_leaf("NextMarker", next);
    Ok(x)
}

pub async fn delete(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arn = p.required("LoadBalancerArn")?.to_string();
    let id = arns::load_balancer_id(&arn)?;
    let done = routing::write(ctx, &id, |r| {
        if r.lb.arn != arn {
            // Another load balancer with this id cannot exist; nothing of this one is left.
            return Err(lb_not_found());
        }
        if r.lb.attributes.get("deletion_protection.enabled").is_some_and(|v| v == "true") {
            return Err(QueryError::new(
                "OperationNotPermitted",
                format!("Load balancer '{arn}' cannot be deleted because deletion protection is enabled"),
            ));
        }
        Ok(routing::Change { delete_load_balancer: true, ..Default::default() })
    })
    .await;
    match done {
        // Deleting a load balancer that is already gone succeeds, as on AWS.
        Ok(_) => Ok(Xml::new()),
        Err(e) if e.code == "LoadBalancerNotFound" => Ok(Xml::new()),
        Err(e) => Err(e),
    }
}

pub async fn describe_attributes(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let lb = find(ctx, p.required("LoadBalancerArn")?).await?;
    let mut x = Xml::new();
    shapes::attributes(&mut x, &lb.attributes);
    Ok(x)
}

pub async fn modify_attributes(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arn = p.required("LoadBalancerArn")?;
    let id = arns::load_balancer_id(arn)?;
    let updated = store::update::<LoadBalancer, _>(ctx, &keys::load_balancer(&id), |lb| {
        if lb.arn != arn {
            return Err(lb_not_found());
        }
        attributes::modify_load_balancer(lb.kind, &mut lb.attributes, p)
    })
    .await?
    .ok_or_else(lb_not_found)?;
    let mut x = Xml::new();
    shapes::attributes(&mut x, &updated.attributes);
    Ok(x)
}
