//! The routing table: a `NodeConfig` compiled for serving (listeners by port, their rules in
//! priority order with the default actions last, target groups with their targets' slots, and
//! the health checks to run). Built whole at each configuration change and swapped in at once.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flotilla_endpoints::elb::{Action, HealthCheck, HealthState, LoadBalancerType, NodeConfig, Registration};
use http::{HeaderValue, StatusCode};

use crate::metrics::{GroupMetrics, ListenerMetrics, Metrics};
use crate::rules::{Matcher, Redirect, RequestView, RouteAction};
use crate::targets::{Algorithm, Chooser, RouteTarget, SlotBook, TargetKey, TargetSlot};

/// ALB's `idle_timeout.timeout_seconds` default: also how long a target may take to answer.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    Tcp,
}

/// A target group as requests use it.
#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub chooser: Chooser,
    pub metrics: GroupMetrics,
}

impl std::fmt::Debug for GroupMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupMetrics")
    }
}

#[derive(Debug)]
pub struct Rule {
    pub matchers: Vec<Matcher>,
    pub action: RouteAction,
}

/// One listener: its rules by priority, its default action last (a rule without matchers).
pub struct ListenerRoute {
    pub port: u16,
    pub protocol: Protocol,
    pub rules: Vec<Rule>,
    /// How long a target may stay silent before the client gets a 504.
    pub idle_timeout: Duration,
    pub metrics: ListenerMetrics,
}

impl ListenerRoute {
    /// The action of the first rule whose conditions all match.
    pub fn route(&self, req: &RequestView<'_>) -> Option<&RouteAction> {
        self.rules.iter().find(|r| r.matchers.iter().all(|m| m.matches(req))).map(|r| &r.action)
    }
}

/// A health check to run against one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    pub key: TargetKey,
    /// Where to send the check (the health check port may differ from the traffic port).
    pub addr: SocketAddr,
    pub check: HealthCheck,
}

pub struct Table {
    pub revision: i64,
    pub listeners: HashMap<u16, Arc<ListenerRoute>>,
    /// Checks for the registered targets of the groups some listener uses.
    pub checks: Vec<(CheckSpec, Arc<TargetSlot>)>,
    /// Draining targets, whose open connections the node reports.
    pub draining: Vec<Arc<TargetSlot>>,
}

impl Table {
    pub fn empty() -> Table {
        Table { revision: 0, listeners: HashMap::new(), checks: Vec::new(), draining: Vec::new() }
    }

    /// The listener ports and protocols to have open.
    pub fn ports(&self) -> HashMap<u16, Protocol> {
        self.listeners.iter().map(|(p, l)| (*p, l.protocol)).collect()
    }
}

fn slot_initial(health: Option<HealthState>) -> HealthState {
    match health {
        Some(HealthState::Healthy) => HealthState::Healthy,
        Some(HealthState::Unhealthy) => HealthState::Unhealthy,
        _ => HealthState::Initial,
    }
}

/// Compiles `config`, reusing `slots` for targets seen before. Parts that cannot be served (an
/// unparsable address, a bad condition) are logged and left out rather than failing the rest.
pub fn compile(config: &NodeConfig, slots: &SlotBook, metrics: &Metrics) -> Table {
    let mut keep = HashSet::new();
    let mut groups: HashMap<&str, Arc<Group>> = HashMap::new();
    let mut draining = Vec::new();
    let mut group_targets: HashMap<&str, Vec<(Arc<RouteTarget>, CheckSpec)>> = HashMap::new();
    for nt in &config.targets {
        let key =
            TargetKey { group_id: nt.target_group_id.clone(), target_id: nt.target.id.clone(), port: nt.target.port };
        let Ok(addr) = nt.address.parse::<SocketAddr>() else {
            tracing::warn!(address = %nt.address, target = %nt.target.id, "target address is not IP:PORT; left out");
            continue;
        };
        keep.insert(key.clone());
        let slot = slots.slot(&key, slot_initial(nt.health));
        if matches!(nt.target.registration, Registration::Draining { .. }) {
            draining.push(slot);
            continue;
        }
        let Some(tg) = config.target_groups.iter().find(|g| g.id == nt.target_group_id) else { continue };
        let check_port = tg.health_check.port.parse::<u16>().unwrap_or(addr.port());
        let spec = CheckSpec { key, addr: SocketAddr::new(addr.ip(), check_port), check: tg.health_check.clone() };
        let Ok(authority) = addr.to_string().parse() else { continue };
        let target = Arc::new(RouteTarget { addr, authority, slot });
        group_targets.entry(tg.id.as_str()).or_default().push((target, spec));
    }
    slots.retain(&keep);
    for tg in &config.target_groups {
        let members = group_targets.remove(tg.id.as_str()).unwrap_or_default();
        let algorithm =
            Algorithm::from_attribute(tg.attributes.get("load_balancing.algorithm.type").map(String::as_str));
        let targets: Vec<_> = members.iter().map(|(t, _)| t.clone()).collect();
        if !tg.health_check.enabled {
            // No checks to wait for: every registered target serves.
            for t in &targets {
                t.slot.set_state(HealthState::Healthy, None, None);
            }
        }
        let group =
            Group { id: tg.id.clone(), chooser: Chooser::new(algorithm, targets), metrics: metrics.group(&tg.name) };
        groups.insert(tg.arn.as_str(), Arc::new(group));
        group_targets.insert(tg.id.as_str(), members);
    }

    let mut listeners = HashMap::new();
    let mut used_groups: HashSet<String> = HashSet::new();
    for l in &config.listeners {
        let lb = config.load_balancers.iter().find(|lb| lb.arn == l.load_balancer_arn);
        let protocol = match (l.protocol.as_str(), lb.map(|lb| lb.kind)) {
            ("HTTP", _) => Protocol::Http,
            ("TCP", _) => Protocol::Tcp,
            (_, Some(LoadBalancerType::Network)) => Protocol::Tcp,
            (other, _) => {
                tracing::warn!(listener = %l.arn, protocol = other, "listener protocol not served; left out");
                continue;
            }
        };
        if listeners.contains_key(&l.port) {
            tracing::warn!(listener = %l.arn, port = l.port, "another listener of this node holds the port; left out");
            continue;
        }
        let lb_name = lb.map(|lb| lb.name.clone()).unwrap_or_default();
        let idle_timeout = lb
            .and_then(|lb| lb.attributes.get("idle_timeout.timeout_seconds"))
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_IDLE_TIMEOUT);
        let mut rules: Vec<_> = config.rules.iter().filter(|r| r.listener_arn == l.arn).collect();
        rules.sort_by_key(|r| r.priority);
        let mut compiled = Vec::new();
        for r in rules {
            let matchers: Result<Vec<_>, _> = r.conditions.iter().map(Matcher::compile).collect();
            match (matchers, action(&r.actions, &groups, &mut used_groups)) {
                (Ok(matchers), Some(action)) => compiled.push(Rule { matchers, action }),
                (Err(e), _) => tracing::warn!(rule = %r.arn, error = %e, "rule left out"),
                (_, None) => tracing::warn!(rule = %r.arn, "rule has no terminal action; left out"),
            }
        }
        if let Some(action) = action(&l.default_actions, &groups, &mut used_groups) {
            compiled.push(Rule { matchers: Vec::new(), action });
        }
        listeners.insert(
            l.port,
            Arc::new(ListenerRoute {
                port: l.port,
                protocol,
                rules: compiled,
                idle_timeout,
                metrics: metrics.listener(&lb_name, l.port),
            }),
        );
    }

    // Health checks only for groups a listener uses (ELB: the others are `unused`).
    let mut checks = Vec::new();
    for tg in config.target_groups.iter().filter(|g| used_groups.contains(&g.arn) && g.health_check.enabled) {
        for (t, spec) in group_targets.get(tg.id.as_str()).into_iter().flatten() {
            checks.push((spec.clone(), t.slot.clone()));
        }
    }
    Table { revision: config.revision, listeners, checks, draining }
}

/// The first terminal action of a list, with its groups resolved.
fn action(actions: &[Action], groups: &HashMap<&str, Arc<Group>>, used: &mut HashSet<String>) -> Option<RouteAction> {
    let a = actions.first()?;
    Some(match a {
        Action::Forward { groups: weighted, .. } => {
            let mut resolved = Vec::new();
            for w in weighted {
                used.insert(w.target_group_arn.clone());
                if let Some(g) = groups.get(w.target_group_arn.as_str()) {
                    resolved.push((g.clone(), w.weight));
                }
            }
            let total_weight = resolved.iter().map(|(_, w)| *w).sum();
            RouteAction::Forward { groups: resolved, total_weight }
        }
        Action::FixedResponse { status_code, content_type, message_body } => RouteAction::Fixed {
            status: status_code
                .parse::<u16>()
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::OK),
            content_type: content_type.as_deref().and_then(|c| HeaderValue::from_str(c).ok()),
            body: Bytes::from(message_body.clone().unwrap_or_default()),
        },
        Action::Redirect { protocol, port, host, path, query, status_code } => RouteAction::Redirect(Redirect::new(
            protocol.as_deref(),
            host.as_deref(),
            port.as_deref(),
            path.as_deref(),
            query.as_deref(),
            status_code,
        )),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use flotilla_endpoints::elb::*;
    use http::HeaderMap;

    use super::*;

    const LB: &str = "arn:lb";

    fn group(id: &str, enabled: bool) -> TargetGroup {
        TargetGroup {
            id: id.into(),
            arn: format!("arn:tg/{id}"),
            name: id.into(),
            protocol: Some("HTTP".into()),
            protocol_version: None,
            port: Some(80),
            vpc_id: None,
            target_type: TargetType::Ip,
            health_check: HealthCheck {
                enabled,
                protocol: "HTTP".into(),
                port: "8081".into(),
                path: Some("/".into()),
                interval_seconds: 30,
                timeout_seconds: 5,
                healthy_threshold: 5,
                unhealthy_threshold: 2,
                matcher: None,
            },
            attributes: BTreeMap::new(),
            load_balancer_arns: vec![],
            tags: vec![],
            created_at_ms: 0,
        }
    }

    fn target(group: &str, address: &str) -> NodeTarget {
        let (ip, port) = address.split_once(':').unwrap_or((address, "80"));
        NodeTarget {
            target_group_id: group.into(),
            target: Target {
                id: ip.into(),
                port: port.parse().unwrap(),
                availability_zone: None,
                registered_at_ms: 0,
                registration: Registration::Registered,
                task_arn: None,
            },
            address: address.into(),
            health: None,
        }
    }

    fn fwd(groups: &[(&str, u32)]) -> Action {
        Action::Forward {
            groups: groups
                .iter()
                .map(|(g, w)| WeightedGroup { target_group_arn: format!("arn:tg/{g}"), weight: *w })
                .collect(),
            stickiness_seconds: None,
            single: false,
        }
    }

    fn rule(priority: u32, conditions: Vec<Condition>, action: Action) -> flotilla_endpoints::elb::Rule {
        flotilla_endpoints::elb::Rule {
            id: format!("r{priority}"),
            arn: format!("arn:rule/{priority}"),
            listener_arn: "arn:l1".into(),
            priority,
            conditions,
            actions: vec![action],
            tags: vec![],
        }
    }

    fn config() -> NodeConfig {
        NodeConfig {
            revision: 7,
            load_balancers: vec![],
            listeners: vec![Listener {
                id: "l1".into(),
                arn: "arn:l1".into(),
                load_balancer_arn: LB.into(),
                protocol: "HTTP".into(),
                port: 8080,
                default_actions: vec![fwd(&[("a", 1)])],
                tags: vec![],
            }],
            rules: vec![
                rule(20, vec![Condition::PathPattern { values: vec!["/x*".into()] }], fwd(&[("b", 1)])),
                rule(10, vec![Condition::PathPattern { values: vec!["/xy".into()] }], fwd(&[("a", 0), ("c", 5)])),
                rule(5, vec![Condition::SourceIp { values: vec!["not-a-cidr".into()] }], fwd(&[("b", 1)])),
            ],
            target_groups: vec![group("a", true), group("b", false), group("c", true), group("unused", true)],
            targets: vec![
                target("a", "10.0.0.1:80"),
                target("b", "10.0.0.2:80"),
                target("c", "10.0.0.3:80"),
                target("unused", "10.0.0.4:80"),
                target("a", "not-an-address"),
            ],
        }
    }

    fn routed<'a>(table: &'a Table, path: &str) -> &'a RouteAction {
        let headers = HeaderMap::new();
        let view =
            RequestView { method: "GET", path, query: None, headers: &headers, source: "10.9.9.9".parse().unwrap() };
        table.listeners[&8080].route(&view).unwrap()
    }

    fn group_of(action: &RouteAction) -> String {
        match action {
            RouteAction::Forward { groups, total_weight } => {
                RouteAction::pick_group(groups, *total_weight).unwrap().id.clone()
            }
            other => panic!("not a forward: {other:?}"),
        }
    }

    #[test]
    fn rules_run_by_priority_with_the_default_last() {
        let table = compile(&config(), &SlotBook::default(), &Metrics::new());
        assert_eq!(table.revision, 7);
        assert_eq!(table.listeners[&8080].rules.len(), 3, "the rule with a bad CIDR is left out");
        for _ in 0..20 {
            assert_eq!(group_of(routed(&table, "/xy")), "c", "weight 0 never gets a request");
        }
        assert_eq!(group_of(routed(&table, "/xz")), "b");
        assert_eq!(group_of(routed(&table, "/other")), "a");
        assert_eq!(table.ports(), HashMap::from([(8080, Protocol::Http)]));
    }

    #[test]
    fn checks_cover_used_groups_with_checks_on_at_the_check_port() {
        let table = compile(&config(), &SlotBook::default(), &Metrics::new());
        let mut checked: Vec<_> =
            table.checks.iter().map(|(s, _)| (s.key.group_id.clone(), s.addr.to_string())).collect();
        checked.sort();
        // b has its checks off (its target serves as healthy); `unused` has no listener.
        assert_eq!(
            checked,
            vec![("a".to_string(), "10.0.0.1:8081".to_string()), ("c".to_string(), "10.0.0.3:8081".to_string())]
        );
        let b = match routed(&table, "/xz") {
            RouteAction::Forward { groups, .. } => groups[0].0.clone(),
            _ => unreachable!(),
        };
        assert_eq!(b.chooser.targets[0].slot.state(), HealthState::Healthy);
    }

    #[test]
    fn slots_survive_a_swap_and_go_with_their_target() {
        let slots = SlotBook::default();
        let metrics = Metrics::new();
        let first = compile(&config(), &slots, &metrics);
        let slot = first.checks[0].1.clone();
        slot.set_state(HealthState::Unhealthy, Some("Target.Timeout".into()), None);
        let mut next = config();
        next.revision = 8;
        let second = compile(&next, &slots, &metrics);
        let again = second.checks.iter().find(|(s, _)| s.key == slot.key).unwrap().1.clone();
        assert!(Arc::ptr_eq(&slot, &again), "the same slot, judgement kept");
        next.targets.retain(|t| t.target.id != slot.key.target_id);
        next.revision = 9;
        let third = compile(&next, &slots, &metrics);
        assert!(third.checks.iter().all(|(s, _)| s.key != slot.key));
        let fresh = slots.slot(&slot.key, HealthState::Initial);
        assert!(!Arc::ptr_eq(&slot, &fresh), "a target that left starts afresh when it comes back");
    }
}
