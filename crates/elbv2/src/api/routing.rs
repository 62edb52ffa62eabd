//! Writes to a load balancer's listeners and rules, as one transaction each.
//!
//! Every such write (and DeleteLoadBalancer) reads the load balancer's routing marker first,
//! then its listeners and rules, and commits on condition that the marker is unchanged while
//! rewriting it: writes to one load balancer's routing are serialized, so rule priorities and
//! listener ports stay unique and the set of groups it forwards to is computed from what is
//! really there. The same transaction adds the load balancer to `load_balancer_arns` of each
//! group it starts forwarding to and removes it from each group it no longer forwards to (ECS's
//! "does not have an associated load balancer" check reads that list), on condition that those
//! groups are unchanged, so a DeleteTargetGroup racing a new forward cannot leave a dangling
//! action.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_api::Ctx;
use flotilla_endpoints::elb::{Listener, LoadBalancer, LoadBalancerType, Rule, TargetGroup};
use flotilla_endpoints::keys;
use flotilla_query::QueryError;
use flotilla_store::{Op, Revision, Txn};

use super::errors::{incompatible, tg_not_found};
use super::store::{self, unchanged};
use super::{arns, Result};

/// A load balancer's routing as read at one moment.
pub struct Routing {
    pub lb: LoadBalancer,
    marker: Revision,
    pub listeners: Vec<(Listener, Revision)>,
    /// Rules with their listener's id.
    pub rules: Vec<(String, Rule, Revision)>,
}

/// What one write does to a load balancer's routing.
#[derive(Default)]
pub struct Change {
    pub put_listeners: Vec<Listener>,
    pub delete_listeners: Vec<String>,
    /// `(listener id, rule)`.
    pub put_rules: Vec<(String, Rule)>,
    /// `(listener id, rule id)`.
    pub delete_rules: Vec<(String, String)>,
    /// The load balancer itself goes, with everything under it.
    pub delete_load_balancer: bool,
}

impl Routing {
    pub fn lb_id(&self) -> &str {
        &self.lb.id
    }

    pub fn listener(&self, id: &str) -> Option<&Listener> {
        self.listeners.iter().map(|(l, _)| l).find(|l| l.id == id)
    }

    pub fn rules_of<'a>(&'a self, listener_id: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |(l, _, _)| l == listener_id).map(|(_, r, _)| r)
    }

    /// The groups the load balancer forwards to, with `change` applied.
    fn groups(&self, change: &Change) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if change.delete_load_balancer {
            return out;
        }
        let put_l: BTreeMap<&str, &Listener> = change.put_listeners.iter().map(|l| (l.id.as_str(), l)).collect();
        for (l, _) in &self.listeners {
            if !change.delete_listeners.contains(&l.id) && !put_l.contains_key(l.id.as_str()) {
                out.extend(l.default_actions.iter().flat_map(|a| a.target_group_arns()).map(str::to_string));
            }
        }
        for l in &change.put_listeners {
            out.extend(l.default_actions.iter().flat_map(|a| a.target_group_arns()).map(str::to_string));
        }
        let replaced = |lid: &str, rid: &str| {
            change.put_rules.iter().any(|(l, r)| l == lid && r.id == rid)
                || change.delete_rules.iter().any(|(l, r)| l == lid && r == rid)
                || change.delete_listeners.iter().any(|l| l == lid)
        };
        for (lid, r, _) in &self.rules {
            if !replaced(lid, &r.id) {
                out.extend(r.actions.iter().flat_map(|a| a.target_group_arns()).map(str::to_string));
            }
        }
        for (_, r) in &change.put_rules {
            out.extend(r.actions.iter().flat_map(|a| a.target_group_arns()).map(str::to_string));
        }
        out
    }

    fn listener_revision(&self, id: &str) -> Revision {
        self.listeners.iter().find(|(l, _)| l.id == id).map(|(_, rev)| *rev).unwrap_or(0)
    }

    fn rule_revision(&self, listener_id: &str, rule_id: &str) -> Revision {
        self.rules.iter().find(|(l, r, _)| l == listener_id && r.id == rule_id).map(|(_, _, rev)| *rev).unwrap_or(0)
    }
}

/// Reads a load balancer's routing; `None` when the load balancer does not exist.
pub async fn load(ctx: &Ctx, lb_id: &str) -> Result<Option<Routing>> {
    // The marker first: anything read after it is at least as new, and the commit checks it.
    let marker = store::revision(ctx, &store::routing(lb_id)).await?;
    let Some((lb, _)) = store::get::<LoadBalancer>(ctx, &keys::load_balancer(lb_id)).await? else {
        return Ok(None);
    };
    let listeners: Vec<(Listener, Revision)> = store::list::<Listener>(ctx, &keys::listeners_of(lb_id))
        .await?
        .into_iter()
        .map(|(_, l, rev)| (l, rev))
        .collect();
    let mut rules = Vec::new();
    for (l, _) in &listeners {
        for (_, r, rev) in store::list::<Rule>(ctx, &keys::rules_of(&l.id)).await? {
            rules.push((l.id.clone(), r, rev));
        }
    }
    Ok(Some(Routing { lb, marker, listeners, rules }))
}

/// The protocols a target group must have to take traffic from a load balancer of `kind`.
fn suits(kind: LoadBalancerType, tg: &TargetGroup) -> bool {
    let protocol = tg.protocol.as_deref().unwrap_or("");
    match kind {
        LoadBalancerType::Application => matches!(protocol, "HTTP" | "HTTPS"),
        LoadBalancerType::Network => matches!(protocol, "TCP" | "TLS" | "UDP" | "TCP_UDP"),
    }
}

/// Commits `change` against `r`; `false` when something it read changed meanwhile.
pub async fn apply(ctx: &Ctx, r: &Routing, change: &Change) -> Result<bool> {
    let before = r.groups(&Change::default());
    let after = r.groups(change);
    let lb_arn = r.lb.arn.as_str();
    let mut txn = Txn::new().when(unchanged(&store::routing(r.lb_id()), r.marker));
    for arn in before.union(&after) {
        let id = arns::target_group_id(arn)?;
        let key = keys::target_group(&id);
        let Some((mut tg, rev)) = store::get::<TargetGroup>(ctx, &key).await? else {
            if after.contains(arn) {
                return Err(QueryError::new("TargetGroupNotFound", format!("Target group '{arn}' not found")));
            }
            continue; // gone already: nothing to take the load balancer out of
        };
        if tg.arn != *arn {
            return Err(tg_not_found());
        }
        if after.contains(arn) && !before.contains(arn) {
            if !suits(r.lb.kind, &tg) {
                return Err(incompatible(format!(
                    "Target group '{arn}' has protocol {} which a {} load balancer cannot forward to",
                    tg.protocol.as_deref().unwrap_or("none"),
                    if r.lb.kind == LoadBalancerType::Application { "application" } else { "network" }
                )));
            }
            if let Some(other) = tg.load_balancer_arns.iter().find(|a| *a != lb_arn) {
                return Err(QueryError::new(
                    "TargetGroupAssociationLimit",
                    format!("Target group '{arn}' is already associated with load balancer '{other}'; a target group can be associated with one load balancer only"),
                ));
            }
        }
        let want = after.contains(arn);
        let has = tg.load_balancer_arns.iter().any(|a| a == lb_arn);
        txn = txn.when(unchanged(&key, rev));
        if want != has {
            if want {
                tg.load_balancer_arns.push(lb_arn.to_string());
            } else {
                tg.load_balancer_arns.retain(|a| a != lb_arn);
            }
            txn = txn.then(store::put(&key, &tg));
        }
    }
    let lb_id = r.lb_id();
    let mut gone_listeners: Vec<&str> = change.delete_listeners.iter().map(String::as_str).collect();
    let mut gone_rules: Vec<(&str, &str)> = change.delete_rules.iter().map(|(l, r)| (l.as_str(), r.as_str())).collect();
    if change.delete_load_balancer {
        gone_listeners = r.listeners.iter().map(|(l, _)| l.id.as_str()).collect();
        gone_rules = r.rules.iter().map(|(l, rule, _)| (l.as_str(), rule.id.as_str())).collect();
        txn = txn
            .then(Op::delete(keys::load_balancer(lb_id)))
            .then(Op::delete(store::load_balancer_name(&r.lb.name)))
            .then(Op::delete(store::routing(lb_id)));
    } else {
        txn = txn.then(store::put(&store::routing(lb_id), &serde_json::json!({ "load_balancer_arn": lb_arn })));
    }
    for l in &change.put_listeners {
        let key = keys::listener(lb_id, &l.id);
        txn = txn.when(unchanged(&key, r.listener_revision(&l.id))).then(store::put(&key, l));
    }
    for id in gone_listeners {
        let key = keys::listener(lb_id, id);
        txn = txn.when(unchanged(&key, r.listener_revision(id))).then(Op::delete(key));
    }
    for (lid, rule) in &change.put_rules {
        let key = keys::rule(lid, &rule.id);
        txn = txn.when(unchanged(&key, r.rule_revision(lid, &rule.id))).then(store::put(&key, rule));
    }
    for (lid, rid) in gone_rules {
        let key = keys::rule(lid, rid);
        txn = txn.when(unchanged(&key, r.rule_revision(lid, rid))).then(Op::delete(key));
    }
    store::commit(ctx, txn).await
}

/// Reads the routing of load balancer `lb_id`, lets `build` decide the change (or refuse), and
/// commits it, retrying on a race. `None` when the load balancer does not exist.
pub async fn write<F>(ctx: &Ctx, lb_id: &str, mut build: F) -> Result<Option<Change>>
where
    F: FnMut(&Routing) -> Result<Change>,
{
    for _ in 0..store::ATTEMPTS {
        let Some(r) = load(ctx, lb_id).await? else { return Ok(None) };
        let change = build(&r)?;
        if apply(ctx, &r, &change).await? {
            return Ok(Some(change));
        }
    }
    Err(store::contended("the load balancer's listeners and rules"))
}
