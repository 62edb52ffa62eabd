//! CreateListener, DescribeListeners, ModifyListener and DeleteListener. Listeners take HTTP
//! (application load balancers) or TCP (network load balancers); HTTPS, TLS and UDP are refused
//! as unsupported. Every write goes through [`super::routing`], which keeps the forwarded-to
//! groups' `load_balancer_arns` in the same transaction.

use flotilla_api::Ctx;
use flotilla_endpoints::elb::{Action, Listener, LoadBalancer, LoadBalancerType};
use flotilla_endpoints::keys;
use flotilla_query::{Params, QueryError, Xml};

use super::errors::{
    incompatible, lb_not_found, listener_not_found, not_one_of, out_of_range, unsupported_protocol, validation,
};
use super::limits::LISTENERS_PER_LOAD_BALANCER;
use super::routing::{self, Change};
use super::{actions, arns, load_balancers, paging, shapes, store, tags, Result};

const PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "TCP", "TLS", "UDP", "TCP_UDP", "GENEVE"];

/// The listener protocol a request asks for, checked against the load balancer's type.
fn protocol(p: &Params, lb: &LoadBalancer) -> Result<Option<String>> {
    let Some(protocol) = p.get("Protocol") else { return Ok(None) };
    match protocol {
        "HTTP" | "TCP" => {}
        other if PROTOCOLS.contains(&other) => return Err(unsupported_protocol("listeners", other)),
        other => return Err(not_one_of("protocol", other, PROTOCOLS)),
    }
    let fits =
        matches!((lb.kind, protocol), (LoadBalancerType::Application, "HTTP") | (LoadBalancerType::Network, "TCP"));
    if !fits {
        return Err(incompatible(format!(
            "A {} load balancer cannot have a {protocol} listener: use {}",
            shapes::lb_type(lb.kind),
            if lb.kind == LoadBalancerType::Application { "HTTP" } else { "TCP" }
        )));
    }
    Ok(Some(protocol.to_string()))
}

fn port(p: &Params) -> Result<Option<u16>> {
    match p.int::<i64>("Port")? {
        Some(n) if (1..=65535).contains(&n) => Ok(Some(n as u16)),
        Some(n) => Err(out_of_range("port", n, 1, 65535)),
        None => Ok(None),
    }
}

fn refuse_tls(p: &Params) -> Result<()> {
    if p.has("Certificates") || p.get("SslPolicy").is_some() || p.has("AlpnPolicy") {
        return Err(validation("Certificates, SSL policies and ALPN policies apply to HTTPS and TLS listeners only"));
    }
    if p.has("MutualAuthentication") {
        return Err(validation("Mutual authentication applies to HTTPS listeners only"));
    }
    Ok(())
}

/// Network load balancers only forward.
pub fn check_actions_for(lb: &LoadBalancer, actions: &[Action]) -> Result<()> {
    if lb.kind == LoadBalancerType::Network && actions.iter().any(|a| !matches!(a, Action::Forward { .. })) {
        return Err(QueryError::new(
            "InvalidLoadBalancerAction",
            "Listeners of network load balancers can only forward",
        ));
    }
    Ok(())
}

fn duplicate_port(r: &routing::Routing, port: u16, except: Option<&str>) -> Result<()> {
    if r.listeners.iter().any(|(l, _)| l.port == port && Some(l.id.as_str()) != except) {
        return Err(QueryError::new(
            "DuplicateListener",
            format!("A listener already exists on port {port} of this load balancer"),
        ));
    }
    Ok(())
}

fn answer(listeners: &[Listener]) -> Xml {
    let mut x = Xml::new();
    x.list("Listeners", "member", listeners, shapes::listener);
    x
}

pub async fn create(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let lb_arn = p.required("LoadBalancerArn")?.to_string();
    let lb_id = arns::load_balancer_id(&lb_arn)?;
    let port = port(p)?.ok_or_else(|| QueryError::missing(p.dialect(), "Port"))?;
    refuse_tls(p)?;
    let default_actions = actions::parse(p, "DefaultActions")?;
    let tags = tags::parse(p)?;
    let mut made = None;
    routing::write(ctx, &lb_id, |r| {
        if r.lb.arn != lb_arn {
            return Err(lb_not_found());
        }
        let protocol = protocol(p, &r.lb)?
            .unwrap_or_else(|| if r.lb.kind == LoadBalancerType::Application { "HTTP" } else { "TCP" }.to_string());
        check_actions_for(&r.lb, &default_actions)?;
        duplicate_port(r, port, None)?;
        if r.listeners.len() >= LISTENERS_PER_LOAD_BALANCER {
            return Err(QueryError::new(
                "TooManyListeners",
                format!("A load balancer can have at most {LISTENERS_PER_LOAD_BALANCER} listeners"),
            ));
        }
        let id = store::new_id();
        let listener = Listener {
            arn: arns::listener_arn(&r.lb.arn, &id),
            id,
            load_balancer_arn: r.lb.arn.clone(),
            protocol,
            port,
            default_actions: default_actions.clone(),
            tags: tags.clone(),
        };
        made = Some(listener.clone());
        Ok(Change { put_listeners: vec![listener], ..Default::default() })
    })
    .await?
    .ok_or_else(lb_not_found)?;
    Ok(answer(&made.into_iter().collect::<Vec<_>>()))
}

/// The listener an ARN names, or `ListenerNotFound`.
pub async fn find(ctx: &Ctx, arn: &str) -> Result<Listener> {
    let (lb, id) = arns::listener_ids(arn)?;
    match store::get::<Listener>(ctx, &keys::listener(&lb, &id)).await? {
        Some((l, _)) if l.arn == arn => Ok(l),
        _ => Err(listener_not_found()),
    }
}

pub async fn describe(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arns = p.list("ListenerArns")?;
    let listeners: Vec<Listener> = match (p.get("LoadBalancerArn"), arns.is_empty()) {
        (Some(_), false) => {
            return Err(validation("Listener ARNs and a load balancer ARN cannot be specified at the same time"))
        }
        (None, true) => return Err(validation("You must specify either listener ARNs or a load balancer ARN")),
        (Some(lb_arn), true) => {
            let lb = load_balancers::find(ctx, lb_arn).await?;
            let mut all: Vec<Listener> = store::list::<Listener>(ctx, &keys::listeners_of(&lb.id))
                .await?
                .into_iter()
                .map(|(_, l, _)| l)
                .collect();
            all.sort_by_key(|l| l.port);
            all
        }
        (None, false) => {
            let mut out = Vec::new();
            for a in &arns {
                out.push(find(ctx, a).await?);
            }
            out
        }
    };
    let (page, next) = paging::page(p, listeners, |l| l.arn.clone())?;
    let mut x = answer(&page);
    x.opt_leaf("NextMarker", next);
    Ok(x)
}

pub async fn modify(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arn = p.required("ListenerArn")?.to_string();
    let (lb_id, id) = arns::listener_ids(&arn)?;
    let port = port(p)?;
    refuse_tls(p)?;
    let default_actions = if p.has("DefaultActions") { Some(actions::parse(p, "DefaultActions")?) } else { None };
    let mut made = None;
    routing::write(ctx, &lb_id, |r| {
        let mut l = r.listener(&id).filter(|l| l.arn == arn).cloned().ok_or_else(listener_not_found)?;
        if let Some(protocol) = protocol(p, &r.lb)? {
            l.protocol = protocol;
        }
        if let Some(port) = port {
            duplicate_port(r, port, Some(&id))?;
            l.port = port;
        }
        if let Some(actions) = &default_actions {
            check_actions_for(&r.lb, actions)?;
            l.default_actions = actions.clone();
        }
        made = Some(l.clone());
        Ok(Change { put_listeners: vec![l], ..Default::default() })
    })
    .await?
    .ok_or_else(listener_not_found)?;
    Ok(answer(&made.into_iter().collect::<Vec<_>>()))
}

pub async fn delete(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arn = p.required("ListenerArn")?.to_string();
    let (lb_id, id) = arns::listener_ids(&arn)?;
    routing::write(ctx, &lb_id, |r| {
        r.listener(&id).filter(|l| l.arn == arn).ok_or_else(listener_not_found)?;
        let rules = r.rules_of(&id).map(|rule| (id.clone(), rule.id.clone())).collect();
        Ok(Change { delete_listeners: vec![id.clone()], delete_rules: rules, ..Default::default() })
    })
    .await?
    .ok_or_else(listener_not_found)?;
    Ok(Xml::new())
}
