//! The load balancers pages: every ELBv2 load balancer with its listeners; one load balancer's
//! page shows its listeners and rules, the target groups they forward to (with the ECS services
//! registering into them) and every target's health as DescribeTargetHealth gives it (the
//! `flotilla-elbv2` crate's own judgement of the nodes' reports).
//!
//! ELBv2 keeps no cache: its records are read from the store (`flotilla_endpoints`), then the ECS
//! cache is read once, without awaiting, for the services.

use std::collections::BTreeMap;

use flotilla_api::state::cache::Indexes;
use flotilla_api::{ApiError, Ctx};
use flotilla_elbv2::api::{targets_with_health, DescribedTarget};
use flotilla_endpoints::elb::{
    Action, Condition, Listener, LoadBalancer, LoadBalancerType, Registration, Rule, TargetGroup,
};
use flotilla_endpoints::{codec, keys};
use serde::de::DeserializeOwned;

use super::{View, ViewRequest};
use crate::html::{badge, crumbs, esc, href, link, table, time_ms};

/// Every record under `prefix` of the endpoints' store, in key order.
pub(super) async fn records<T: DeserializeOwned>(ctx: &Ctx, prefix: &str) -> Result<Vec<T>, ApiError> {
    let listing = ctx.store.list(prefix).await.map_err(|e| ApiError::server(e.to_string()))?;
    listing
        .kvs
        .iter()
        .map(|kv| {
            codec::decode(&kv.value)
                .map_err(|e| ApiError::server(format!("the record {} could not be read: {e}", kv.key)))
        })
        .collect()
}

/// `1 thing`, `2 things`.
pub(super) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A link to the task page of `task_arn` (`...:task/CLUSTER/ID`), or the ARN as text.
pub(super) fn task_link(task_arn: &str) -> String {
    match task_arn.rsplit_once(":task/").and_then(|(_, rest)| rest.split_once('/')) {
        Some((cluster, id)) => link(&href(&["clusters", cluster, "tasks", id]), &format!("{cluster}/{id}")),
        None => esc(task_arn),
    }
}

fn kind(lb: &LoadBalancer) -> &'static str {
    match lb.kind {
        LoadBalancerType::Application => "application",
        LoadBalancerType::Network => "network",
    }
}

/// What an action does, with the target groups it forwards to by name.
fn action(a: &Action, groups: &BTreeMap<String, TargetGroup>) -> String {
    match a {
        Action::Forward { groups: to, .. } => {
            let names: Vec<String> = to
                .iter()
                .map(|g| {
                    let name = groups.get(&g.target_group_arn).map_or(g.target_group_arn.as_str(), |t| t.name.as_str());
                    let weight = if to.len() > 1 { format!(" (weight {})", g.weight) } else { String::new() };
                    format!("{}{}", esc(name), esc(&weight))
                })
                .collect();
            format!("forward → {}", names.join(", "))
        }
        Action::FixedResponse { status_code, .. } => format!("fixed response {}", esc(status_code)),
        Action::Redirect { status_code, protocol, host, port, path, .. } => {
            let to = [protocol, host, port, path].iter().filter_map(|v| v.as_deref()).collect::<Vec<_>>().join(" ");
            format!("redirect {} {}", esc(status_code), esc(&to))
        }
    }
}

fn actions(list: &[Action], groups: &BTreeMap<String, TargetGroup>) -> String {
    list.iter().map(|a| action(a, groups)).collect::<Vec<_>>().join("<br>")
}

fn condition(c: &Condition) -> String {
    let text = match c {
        Condition::PathPattern { values } => format!("path is {}", values.join(" or ")),
        Condition::HostHeader { values } => format!("host is {}", values.join(" or ")),
        Condition::HttpHeader { name, values } => format!("header {name} is {}", values.join(" or ")),
        Condition::HttpRequestMethod { values } => format!("method is {}", values.join(" or ")),
        Condition::QueryString { values } => {
            let pairs: Vec<String> =
                values.iter().map(|(k, v)| k.as_ref().map_or(v.clone(), |k| format!("{k}={v}"))).collect();
            format!("query has {}", pairs.join(" or "))
        }
        Condition::SourceIp { values } => format!("source IP in {}", values.join(" or ")),
    };
    esc(&text)
}

/// `PROTOCOL:port → action` of each listener, one per line.
fn listeners_cell(listeners: &[&Listener], groups: &BTreeMap<String, TargetGroup>) -> String {
    if listeners.is_empty() {
        return "none".into();
    }
    listeners
        .iter()
        .map(|l| format!("<div>{}:{} {}</div>", esc(&l.protocol), l.port, actions(&l.default_actions, groups)))
        .collect()
}

/// What every page of this module reads from the store.
struct Elb {
    load_balancers: Vec<LoadBalancer>,
    listeners: Vec<Listener>,
    groups: BTreeMap<String, TargetGroup>,
}

impl Elb {
    async fn read(ctx: &Ctx) -> Result<Elb, ApiError> {
        let mut load_balancers: Vec<LoadBalancer> = records(ctx, keys::LOAD_BALANCER).await?;
        load_balancers.sort_by(|a, b| a.name.cmp(&b.name));
        let mut listeners: Vec<Listener> = records(ctx, keys::LISTENER).await?;
        listeners.sort_by_key(|l| l.port);
        let groups =
            records::<TargetGroup>(ctx, keys::TARGET_GROUP).await?.into_iter().map(|g| (g.arn.clone(), g)).collect();
        Ok(Elb { load_balancers, listeners, groups })
    }

    fn listeners_of(&self, lb: &LoadBalancer) -> Vec<&Listener> {
        self.listeners.iter().filter(|l| l.load_balancer_arn == lb.arn).collect()
    }
}

/// Every load balancer, with its listeners.
pub async fn index(req: &ViewRequest<'_>) -> Result<View, ApiError> {
    let elb = Elb::read(req.ctx).await?;
    let trail = crumbs(&[("Load balancers", &href(&["load-balancers"]))]);
    if elb.load_balancers.is_empty() {
        let body = format!(
            "{trail}<h1>Load balancers</h1><p class=\"empty\">No load balancers. Create one with \
             <code>aws elbv2 create-load-balancer</code>.</p>"
        );
        return Ok(View { body });
    }
    let rows = elb.load_balancers.iter().map(|lb| {
        vec![
            link(&href(&["load-balancers", &lb.name]), &lb.name),
            esc(&lb.dns_name),
            esc(&lb.scheme),
            esc(kind(lb)),
            badge(&lb.state),
            listeners_cell(&elb.listeners_of(lb), &elb.groups),
        ]
    });
    let body = format!(
        "{trail}<h1>Load balancers</h1><p class=\"summary\">{}</p>{}",
        count(elb.load_balancers.len(), "load balancer", "load balancers"),
        table("load-balancers", &["Load balancer", "DNS name", "Scheme", "Type", "State", "Listeners"], rows)
    );
    Ok(View { body })
}

/// The ECS services that register into `tg`, linked.
fn services_of(ix: &Indexes, tg: &str) -> String {
    super::service_links(ix, |s| s.load_balancers.iter().flatten().any(|l| l.target_group_arn.as_deref() == Some(tg)))
}

fn health_check(tg: &TargetGroup) -> String {
    let hc = &tg.health_check;
    if !hc.enabled {
        return "disabled".into();
    }
    let mut text = format!("{}:{}", hc.protocol, hc.port);
    if let Some(path) = &hc.path {
        text.push_str(&format!(" {path}"));
    }
    if let Some(m) = &hc.matcher {
        text.push_str(&format!(" expects {m}"));
    }
    text.push_str(&format!(
        ", every {} s (timeout {} s), healthy after {}, unhealthy after {}",
        hc.interval_seconds, hc.timeout_seconds, hc.healthy_threshold, hc.unhealthy_threshold
    ));
    esc(&text)
}

fn target_row(t: &DescribedTarget) -> Vec<String> {
    let reason = [t.reason.as_deref(), t.description.as_deref()].into_iter().flatten().collect::<Vec<_>>();
    let draining = match t.target.registration {
        Registration::Draining { until_ms, .. } => format!(" (until {})", time_ms(Some(until_ms))),
        Registration::Registered => String::new(),
    };
    vec![
        esc(&format!("{}:{}", t.target.id, t.target.port)),
        esc(t.target.availability_zone.as_deref().unwrap_or("-")),
        badge(t.state.as_str()) + &esc(&draining),
        esc(&reason.join(": ")),
        t.target.task_arn.as_deref().map(task_link).unwrap_or_else(|| "-".into()),
    ]
}

fn rules_table(l: &Listener, rules: &[Rule], groups: &BTreeMap<String, TargetGroup>) -> String {
    let mut sorted: Vec<&Rule> = rules.iter().filter(|r| r.listener_arn == l.arn).collect();
    sorted.sort_by_key(|r| r.priority);
    let mut rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|r| {
            let when = r.conditions.iter().map(condition).collect::<Vec<_>>().join(" and ");
            vec![r.priority.to_string(), when, actions(&r.actions, groups)]
        })
        .collect();
    rows.push(vec!["default".into(), "otherwise".into(), actions(&l.default_actions, groups)]);
    table("rules", &["Priority", "Conditions", "Actions"], rows)
}

/// One load balancer: listeners and rules, target groups, targets and their health.
pub async fn show(req: &ViewRequest<'_>, name: &str) -> Result<View, ApiError> {
    let ctx = req.ctx;
    let elb = Elb::read(ctx).await?;
    let Some(lb) = elb.load_balancers.iter().find(|lb| lb.name == name || lb.arn == name) else {
        return Err(ApiError::new("LoadBalancerNotFound", format!("Load balancers '[{name}]' not found")));
    };
    let listeners = elb.listeners_of(lb);
    let mut rules: Vec<Rule> = Vec::new();
    for l in &listeners {
        rules.extend(records::<Rule>(ctx, &keys::rules_of(&l.id)).await?);
    }
    // The groups this load balancer forwards to, from its actions and the groups' own list.
    let mut forwarded: Vec<&TargetGroup> = elb
        .groups
        .values()
        .filter(|g| {
            g.load_balancer_arns.contains(&lb.arn)
                || listeners
                    .iter()
                    .any(|l| l.default_actions.iter().any(|a| a.target_group_arns().contains(&g.arn.as_str())))
                || rules.iter().any(|r| r.actions.iter().any(|a| a.target_group_arns().contains(&g.arn.as_str())))
        })
        .collect();
    forwarded.sort_by(|a, b| a.name.cmp(&b.name));
    let mut targets = Vec::new();
    for g in &forwarded {
        let mut list = targets_with_health(ctx, g).await.map_err(|e| ApiError::server(e.message))?;
        list.sort_by(|a, b| (&a.target.id, a.target.port).cmp(&(&b.target.id, b.target.port)));
        targets.push(list);
    }

    let mut out =
        crumbs(&[("Load balancers", &href(&["load-balancers"])), (&lb.name, &href(&["load-balancers", &lb.name]))]);
    out.push_str(&format!("<h1>Load balancer {}</h1>", esc(&lb.name)));
    let zones: Vec<String> = lb.zones.iter().map(|(z, s)| format!("{z} ({s})")).collect();
    let details = [
        ("ARN", esc(&lb.arn)),
        ("DNS name", esc(&lb.dns_name)),
        ("State", badge(&lb.state)),
        ("Type", esc(kind(lb))),
        ("Scheme", esc(&lb.scheme)),
        ("Zones", esc(&zones.join(", "))),
        ("Created", esc(&time_ms(Some(lb.created_at_ms)))),
    ];
    out.push_str("<dl class=\"details\">");
    for (k, v) in details {
        out.push_str(&format!("<dt>{}</dt><dd>{v}</dd>", esc(k)));
    }
    out.push_str("</dl><h2>Listeners</h2>");
    if listeners.is_empty() {
        out.push_str("<p class=\"empty\">No listeners. Add one with <code>aws elbv2 create-listener</code>.</p>");
    }
    for l in &listeners {
        out.push_str(&format!("<h3>{}:{}</h3>", esc(&l.protocol), l.port));
        out.push_str(&rules_table(l, &rules, &elb.groups));
    }
    out.push_str("<h2>Target groups</h2>");
    if forwarded.is_empty() {
        out.push_str("<p class=\"empty\">No target group receives traffic from this load balancer.</p>");
    }
    let ix = ctx.cache.read();
    for (g, list) in forwarded.iter().zip(&targets) {
        let port = g.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "<h3 class=\"target-group\">{}</h3><dl class=\"details\"><dt>Protocol</dt><dd>{}</dd><dt>Target type</dt><dd>{}</dd>\
             <dt>Health check</dt><dd>{}</dd><dt>ECS services</dt><dd>{}</dd></dl>",
            esc(&g.name),
            esc(&format!("{}:{port}", g.protocol.as_deref().unwrap_or("-"))),
            esc(g.target_type.as_str()),
            health_check(g),
            services_of(&ix, &g.arn)
        ));
        out.push_str(&table("targets", &["Target", "Zone", "Health", "Reason", "Task"], list.iter().map(target_row)));
    }
    Ok(View { body: out })
}
