//! CreateTargetGroup, DescribeTargetGroups, ModifyTargetGroup, DeleteTargetGroup and the target
//! group attributes. Health checks get ELB's defaults (HTTP groups: HTTP on the traffic port,
//! path `/`, every 30 s, 5 s timeout, 5 healthy / 2 unhealthy, matcher 200; TCP groups: TCP
//! checks with a 10 s timeout). A group's `load_balancer_arns` is kept by the listener and rule
//! writes ([`super::routing`]); a group listed there is in use and cannot be deleted.

use flotilla_api::Ctx;
use flotilla_endpoints::elb::{HealthCheck, Target, TargetGroup, TargetHealth, TargetType};
use flotilla_endpoints::keys;
use flotilla_hosts::network::default_vpc;
use flotilla_query::{Params, QueryError, Xml};
use flotilla_store::{Compare, Op, Revision, Txn};

use super::errors::{not_one_of, out_of_range, tg_not_found, unsupported_protocol, validation};
use super::limits::TARGET_GROUPS;
use super::load_balancers::{self, check_name};
use super::{arns, attributes, paging, shapes, store, tags, Result};

const PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "TCP", "TLS", "UDP", "TCP_UDP", "GENEVE"];

fn is_http(protocol: &str) -> bool {
    protocol == "HTTP"
}

fn default_health_check(protocol: &str) -> HealthCheck {
    let http = is_http(protocol);
    HealthCheck {
        enabled: true,
        protocol: if http { "HTTP" } else { "TCP" }.into(),
        port: "traffic-port".into(),
        path: http.then(|| "/".into()),
        interval_seconds: 30,
        timeout_seconds: if http { 5 } else { 10 },
        healthy_threshold: 5,
        unhealthy_threshold: 2,
        matcher: http.then(|| "200".into()),
    }
}

fn ranged(p: &Params, name: &str, min: i64, max: i64) -> Result<Option<u32>> {
    match p.int::<i64>(name)? {
        Some(n) if (min..=max).contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(out_of_range(&lower(name), n, min, max)),
        None => Ok(None),
    }
}

fn lower(name: &str) -> String {
    let mut c = name.chars();
    c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
}

/// `200`, `200,202`, `200-299`: codes within what the group's protocol allows.
fn check_matcher(code: &str, max: u16) -> Result<()> {
    let valid = |s: &str| s.trim().parse::<u16>().is_ok_and(|n| (200..=max).contains(&n));
    let ok = !code.is_empty()
        && code.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => valid(a) && valid(b) && a.trim().parse::<u16>().ok() <= b.trim().parse::<u16>().ok(),
            None => valid(part),
        });
    if !ok {
        return Err(validation(format!(
            "The matcher HTTP code '{code}' must be codes or ranges from 200 to {max} (for example 200, 200,202 or 200-299)"
        )));
    }
    Ok(())
}

/// `base` with the request's health check settings applied.
fn health_check(p: &Params, protocol: &str, mut hc: HealthCheck) -> Result<HealthCheck> {
    if let Some(enabled) = p.bool("HealthCheckEnabled")? {
        if !enabled {
            return Err(validation("Health checks cannot be disabled for target groups with instance or ip targets"));
        }
        hc.enabled = enabled;
    }
    if let Some(check) = p.get("HealthCheckProtocol") {
        match check {
            "HTTPS" => return Err(unsupported_protocol("health checks", check)),
            "TCP" if is_http(protocol) => {
                return Err(validation(format!(
                    "Health check protocol TCP is not supported for target groups with the {protocol} protocol"
                )))
            }
            "HTTP" if hc.protocol != "HTTP" => {
                hc.path = Some("/".into());
                hc.matcher = Some("200-399".into());
                hc.timeout_seconds = 6;
            }
            "TCP" if hc.protocol != "TCP" => {
                hc.path = None;
                hc.matcher = None;
                hc.timeout_seconds = 10;
            }
            "HTTP" | "TCP" => {}
            other => return Err(not_one_of("healthCheckProtocol", other, &["HTTP", "HTTPS", "TCP"])),
        }
        hc.protocol = check.to_string();
    }
    let http_check = hc.protocol == "HTTP";
    if let Some(path) = p.get("HealthCheckPath") {
        if !http_check {
            return Err(validation("A health check path can only be given for HTTP health checks"));
        }
        if !path.starts_with('/') || path.len() > 1024 {
            return Err(validation(format!(
                "The health check path '{path}' must start with '/' and be at most 1024 characters long"
            )));
        }
        hc.path = Some(path.to_string());
    }
    if let Some(port) = p.get("HealthCheckPort") {
        if port != "traffic-port" && !port.parse::<u16>().is_ok_and(|n| n > 0) {
            return Err(validation(format!(
                "The health check port '{port}' must be 'traffic-port' or a port from 1 to 65535"
            )));
        }
        hc.port = port.to_string();
    }
    if let Some(n) = ranged(p, "HealthCheckIntervalSeconds", 5, 300)? {
        hc.interval_seconds = n;
    }
    if let Some(n) = ranged(p, "HealthCheckTimeoutSeconds", 2, 120)? {
        hc.timeout_seconds = n;
    }
    if let Some(n) = ranged(p, "HealthyThresholdCount", 2, 10)? {
        hc.healthy_threshold = n;
    }
    if let Some(n) = ranged(p, "UnhealthyThresholdCount", 2, 10)? {
        hc.unhealthy_threshold = n;
    }
    let matcher = p.sub("Matcher");
    if matcher.get("GrpcCode").is_some() {
        return Err(validation("gRPC health checks are not supported by Flotilla"));
    }
    if let Some(code) = matcher.get("HttpCode") {
        if !http_check {
            return Err(validation("A matcher can only be given for HTTP health checks"));
        }
        check_matcher(code, if is_http(protocol) { 499 } else { 599 })?;
        hc.matcher = Some(code.to_string());
    }
    if hc.timeout_seconds >= hc.interval_seconds {
        return Err(validation(format!(
            "The health check timeout ({} s) must be smaller than the interval ({} s)",
            hc.timeout_seconds, hc.interval_seconds
        )));
    }
    Ok(hc)
}

fn same_settings(a: &TargetGroup, b: &TargetGroup) -> bool {
    a.protocol == b.protocol
        && a.port == b.port
        && a.vpc_id == b.vpc_id
        && a.target_type == b.target_type
        && a.health_check == b.health_check
        && a.protocol_version == b.protocol_version
}

fn answer(groups: &[TargetGroup]) -> Xml {
    let mut x = Xml::new();
    x.list("TargetGroups", "member", groups, shapes::target_group);
    x
}

pub async fn create(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let name = p.required("Name")?.to_string();
    check_name(&name, "target group")?;
    let target_type = match p.get("TargetType").unwrap_or("instance") {
        "instance" => TargetType::Instance,
        "ip" => TargetType::Ip,
        t @ ("lambda" | "alb") => {
            return Err(validation(format!("Target type '{t}' is not supported by Flotilla: use instance or ip")))
        }
        other => return Err(not_one_of("targetType", other, &["instance", "ip", "lambda", "alb"])),
    };
    let protocol = p.required("Protocol")?.to_string();
    match protocol.as_str() {
        "HTTP" | "TCP" => {}
        p if PROTOCOLS.contains(&p) => return Err(unsupported_protocol("target groups", p)),
        other => return Err(not_one_of("protocol", other, PROTOCOLS)),
    }
    let protocol_version = match (is_http(&protocol), p.get("ProtocolVersion")) {
        (true, None | Some("HTTP1")) => Some("HTTP1".to_string()),
        (true, Some(v)) => {
            return Err(validation(format!("Protocol version '{v}' is not supported by Flotilla: use HTTP1")))
        }
        (false, None) => None,
        (false, Some(_)) => return Err(validation("A protocol version can only be given for HTTP target groups")),
    };
    let port = match p.required_int::<i64>("Port")? {
        n if (1..=65535).contains(&n) => n as u16,
        n => return Err(out_of_range("port", n, 1, 65535)),
    };
    let vpc = default_vpc(&ctx.arns.region);
    let vpc_id = p.get("VpcId").unwrap_or(&vpc.vpc_id).to_string();
    if vpc_id != vpc.vpc_id {
        return Err(validation(format!("The VPC ID '{vpc_id}' is not found")));
    }
    if p.get("IpAddressType").is_some_and(|t| t != "ipv4") {
        return Err(validation("Flotilla's target groups are IPv4 only"));
    }
    let health_check = health_check(p, &protocol, default_health_check(&protocol))?;
    let tags = tags::parse(p)?;
    let now = ctx.clock.now_ms();
    for _ in 0..store::ATTEMPTS {
        let id = store::new_id();
        let tg = TargetGroup {
            arn: arns::target_group_arn(&ctx.arns, &name, &id),
            id,
            name: name.clone(),
            protocol: Some(protocol.clone()),
            protocol_version: protocol_version.clone(),
            port: Some(port),
            vpc_id: Some(vpc_id.clone()),
            target_type,
            health_check: health_check.clone(),
            attributes: attributes::target_group_defaults(&protocol, target_type),
            load_balancer_arns: Vec::new(),
            tags: tags.clone(),
            created_at_ms: now,
        };
        let name_key = store::target_group_name(&name);
        if let Some((existing_id, _)) = store::get::<String>(ctx, &name_key).await? {
            match store::get::<TargetGroup>(ctx, &keys::target_group(&existing_id)).await? {
                Some((existing, _)) if same_settings(&existing, &tg) => return Ok(answer(&[existing])),
                Some(_) => {
                    return Err(QueryError::new(
                        "DuplicateTargetGroupName",
                        format!("A target group with the same name '{name}' exists, but with different settings"),
                    ))
                }
                None => continue,
            }
        }
        let count = ctx.store.list(keys::TARGET_GROUP).await.map_err(|e| store::internal(e.to_string()))?.kvs.len();
        if count >= TARGET_GROUPS {
            return Err(QueryError::new(
                "TooManyTargetGroups",
                format!("You've reached the limit of {TARGET_GROUPS} target groups"),
            ));
        }
        let key = keys::target_group(&tg.id);
        let txn = Txn::new()
            .when(Compare::absent(name_key.as_str()))
            .when(Compare::absent(key.as_str()))
            .then(store::put(&name_key, &tg.id))
            .then(store::put(&key, &tg));
        if store::commit(ctx, txn).await? {
            return Ok(answer(&[tg]));
        }
    }
    Err(store::contended("the target group name"))
}

/// The target group an ARN names and its revision, or `TargetGroupNotFound`.
pub async fn find(ctx: &Ctx, arn: &str) -> Result<(TargetGroup, Revision)> {
    let id = arns::target_group_id(arn)?;
    match store::get::<TargetGroup>(ctx, &keys::target_group(&id)).await? {
        Some((tg, rev)) if tg.arn == arn => Ok((tg, rev)),
        _ => Err(tg_not_found()),
    }
}

pub async fn describe(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arns = p.list("TargetGroupArns")?;
    let names = p.list("Names")?;
    let lb_arn = p.get("LoadBalancerArn");
    if [!arns.is_empty(), !names.is_empty(), lb_arn.is_some()].iter().filter(|b| **b).count() > 1 {
        return Err(validation("Specify at most one of target group ARNs, names, or a load balancer ARN"));
    }
    let mut all: Vec<TargetGroup> =
        store::list::<TargetGroup>(ctx, keys::TARGET_GROUP).await?.into_iter().map(|(_, tg, _)| tg).collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let chosen: Vec<TargetGroup> = if !arns.is_empty() {
        for a in &arns {
            arns::target_group_id(a)?;
        }
        let found: Vec<TargetGroup> = arns.iter().filter_map(|a| all.iter().find(|t| t.arn == *a).cloned()).collect();
        if found.len() < arns.len() {
            return Err(tg_not_found());
        }
        found
    } else if !names.is_empty() {
        let found: Vec<TargetGroup> = names.iter().filter_map(|n| all.iter().find(|t| t.name == *n).cloned()).collect();
        if found.len() < names.len() {
            return Err(tg_not_found());
        }
        found
    } else if let Some(lb_arn) = lb_arn {
        load_balancers::find(ctx, lb_arn).await?;
        all.into_iter().filter(|t| t.load_balancer_arns.iter().any(|a| a == lb_arn)).collect()
    } else {
        all
    };
    let (page, next) = paging::page(p, chosen, |tg| tg.arn.clone())?;
    let mut x = answer(&page);
    x.opt_leaf("NextMarker", next);
    Ok(x)
}

pub async fn modify(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arn = p.required("TargetGroupArn")?;
    let id = arns::target_group_id(arn)?;
    let updated = store::update::<TargetGroup, _>(ctx, &keys::target_group(&id), |tg| {
        if tg.arn != arn {
            return Err(tg_not_found());
        }
        let protocol = tg.protocol.clone().unwrap_or_default();
        tg.health_check = health_check(p, &protocol, tg.health_check.clone())?;
        Ok(())
    })
    .await?
    .ok_or_else(tg_not_found)?;
    Ok(answer(&[updated]))
}

pub async fn delete(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arn = p.required("TargetGroupArn")?;
    let id = arns::target_group_id(arn)?;
    for _ in 0..store::ATTEMPTS {
        let Some((tg, rev)) = store::get::<TargetGroup>(ctx, &keys::target_group(&id)).await? else {
            return Ok(Xml::new()); // already gone
        };
        if tg.arn != arn {
            return Ok(Xml::new());
        }
        if let Some(lb) = tg.load_balancer_arns.first() {
            return Err(QueryError::new(
                "ResourceInUse",
                format!("Target group '{arn}' is currently in use by a listener or a rule of load balancer '{lb}'"),
            ));
        }
        let mut txn = Txn::new()
            .when(Compare::unchanged(keys::target_group(&id), rev))
            .then(Op::delete(keys::target_group(&id)))
            .then(Op::delete(store::target_group_name(&tg.name)));
        for (key, _, _) in store::list::<Target>(ctx, &keys::targets_of(&id)).await? {
            txn = txn.then(Op::delete(key));
        }
        for (key, _, _) in store::list::<TargetHealth>(ctx, &keys::target_health_of(&id)).await? {
            txn = txn.then(Op::delete(key));
        }
        if store::commit(ctx, txn).await? {
            return Ok(Xml::new());
        }
    }
    Err(store::contended("the target group"))
}

pub async fn describe_attributes(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let (tg, _) = find(ctx, p.required("TargetGroupArn")?).await?;
    let mut x = Xml::new();
    shapes::attributes(&mut x, &tg.attributes);
    Ok(x)
}

pub async fn modify_attributes(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arn = p.required("TargetGroupArn")?;
    let id = arns::target_group_id(arn)?;
    let updated = store::update::<TargetGroup, _>(ctx, &keys::target_group(&id), |tg| {
        if tg.arn != arn {
            return Err(tg_not_found());
        }
        attributes::modify_target_group(tg.protocol.as_deref().unwrap_or(""), &mut tg.attributes, p)
    })
    .await?
    .ok_or_else(tg_not_found)?;
    let mut x = Xml::new();
    shapes::attributes(&mut x, &updated.attributes);
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DIALECT;

    fn hc(pairs: &[(&str, &str)], protocol: &str) -> Result<HealthCheck> {
        health_check(&Params::from_pairs(DIALECT, pairs.iter().copied()), protocol, default_health_check(protocol))
    }

    #[test]
    fn health_checks_default_as_elb_and_take_changes() {
        let d = hc(&[], "HTTP").unwrap();
        assert_eq!((d.interval_seconds, d.timeout_seconds, d.healthy_threshold, d.unhealthy_threshold), (30, 5, 5, 2));
        assert_eq!(
            (d.path.as_deref(), d.matcher.as_deref(), d.port.as_str()),
            (Some("/"), Some("200"), "traffic-port")
        );
        let t = hc(&[], "TCP").unwrap();
        assert_eq!((t.protocol.as_str(), t.timeout_seconds, t.path.is_none()), ("TCP", 10, true));
        let c = hc(
            &[
                ("HealthCheckPath", "/health"),
                ("Matcher.HttpCode", "200-299"),
                ("HealthCheckIntervalSeconds", "5"),
                ("HealthCheckTimeoutSeconds", "2"),
            ],
            "HTTP",
        )
        .unwrap();
        assert_eq!(
            (c.path.as_deref(), c.matcher.as_deref(), c.interval_seconds),
            (Some("/health"), Some("200-299"), 5)
        );
    }

    #[test]
    fn bad_health_checks_are_refused() {
        for bad in [
            vec![("HealthCheckIntervalSeconds", "4")],
            vec![("HealthCheckTimeoutSeconds", "30")],
            vec![("Matcher.HttpCode", "600")],
            vec![("HealthCheckPath", "health")],
            vec![("HealthCheckProtocol", "TCP")],
            vec![("HealthCheckPort", "0")],
        ] {
            assert_eq!(hc(&bad, "HTTP").unwrap_err().code, "ValidationError", "{bad:?}");
        }
        assert_eq!(hc(&[("HealthCheckProtocol", "HTTPS")], "HTTP").unwrap_err().code, "UnsupportedProtocol");
        assert_eq!(hc(&[("HealthCheckPath", "/x")], "TCP").unwrap_err().code, "ValidationError");
        let http_on_tcp = hc(&[("HealthCheckProtocol", "HTTP"), ("Matcher.HttpCode", "200-599")], "TCP").unwrap();
        assert_eq!(http_on_tcp.path.as_deref(), Some("/"));
    }
}
