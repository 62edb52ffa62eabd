//! CreateRule, DescribeRules, ModifyRule, DeleteRule and SetRulePriorities. A listener's
//! default rule has no record of its own: it is the listener's default actions, described last
//! with `Priority` `default` and `IsDefault` true under an ARN derived from the listener's id;
//! modifying its actions modifies the listener's. Writes go through [`super::routing`].

use flotilla_api::Ctx;
use flotilla_endpoints::elb::{LoadBalancerType, Rule};
use flotilla_endpoints::keys;
use flotilla_query::{Params, QueryError, Xml};

use super::errors::{listener_not_found, out_of_range, rule_not_found, validation};
use super::limits::RULES_PER_LISTENER;
use super::listeners::{self, check_actions_for};
use super::routing::{self, Change, Routing};
use super::{actions, arns, conditions, paging, shapes, store, tags, Result};

/// A rule as described: a stored one, or a listener's default.
enum Described {
    Rule(Rule),
    Default(flotilla_endpoints::elb::Listener),
}

impl Described {
    fn arn(&self) -> String {
        match self {
            Described::Rule(r) => r.arn.clone(),
            Described::Default(l) => arns::rule_arn(&l.arn, &arns::default_rule_id(&l.id)),
        }
    }
}

fn answer(rules: &[Described]) -> Xml {
    let mut x = Xml::new();
    x.list("Rules", "member", rules, |x, r| match r {
        Described::Rule(rule) => shapes::rule(x, rule),
        Described::Default(l) => shapes::default_rule(x, l),
    });
    x
}

fn priority(value: i64, name: &str) -> Result<u32> {
    if !(1..=50_000).contains(&value) {
        return Err(out_of_range(name, value, 1, 50_000));
    }
    Ok(value as u32)
}

fn priority_in_use(priority: u32) -> QueryError {
    QueryError::new("PriorityInUse", format!("Priority '{priority}' is currently in use"))
}

fn not_permitted(what: &str) -> QueryError {
    QueryError::new("OperationNotPermitted", format!("A default rule cannot be {what}"))
}

fn rules_allowed(r: &Routing) -> Result<()> {
    if r.lb.kind == LoadBalancerType::Network {
        return Err(QueryError::new(
            "InvalidConfigurationRequest",
            "Listeners of network load balancers have no rules other than their default",
        ));
    }
    Ok(())
}

pub async fn create(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let listener_arn = p.required("ListenerArn")?.to_string();
    let (lb_id, listener_id) = arns::listener_ids(&listener_arn)?;
    let priority = priority(p.required_int::<i64>("Priority")?, "priority")?;
    let conditions = conditions::parse(p)?;
    let actions = actions::parse(p, "Actions")?;
    let tags = tags::parse(p)?;
    let mut made = None;
    routing::write(ctx, &lb_id, |r| {
        r.listener(&listener_id).filter(|l| l.arn == listener_arn).ok_or_else(listener_not_found)?;
        rules_allowed(r)?;
        check_actions_for(&r.lb, &actions)?;
        if r.rules_of(&listener_id).any(|rule| rule.priority == priority) {
            return Err(priority_in_use(priority));
        }
        if r.rules_of(&listener_id).count() >= RULES_PER_LISTENER {
            return Err(QueryError::new(
                "TooManyRules",
                format!("A listener can have at most {RULES_PER_LISTENER} rules besides its default"),
            ));
        }
        let id = store::new_id();
        let rule = Rule {
            arn: arns::rule_arn(&listener_arn, &id),
            id,
            listener_arn: listener_arn.clone(),
            priority,
            conditions: conditions.clone(),
            actions: actions.clone(),
            tags: tags.clone(),
        };
        made = Some(rule.clone());
        Ok(Change { put_rules: vec![(listener_id.clone(), rule)], ..Default::default() })
    })
    .await?
    .ok_or_else(listener_not_found)?;
    Ok(answer(&made.into_iter().map(Described::Rule).collect::<Vec<_>>()))
}

/// The rule an ARN names (a default rule as its listener).
async fn find(ctx: &Ctx, arn: &str) -> Result<Described> {
    let (_, listener_id, id) = arns::rule_ids(arn)?;
    if id == arns::default_rule_id(&listener_id) {
        let l = listeners::find(ctx, &arns::listener_arn_from_rule(arn)).await.map_err(|_| rule_not_found())?;
        return Ok(Described::Default(l));
    }
    match store::get::<Rule>(ctx, &keys::rule(&listener_id, &id)).await? {
        Some((r, _)) if r.arn == arn => Ok(Described::Rule(r)),
        _ => Err(rule_not_found()),
    }
}

pub async fn describe(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arns = p.list("RuleArns")?;
    let rules: Vec<Described> = match (p.get("ListenerArn"), arns.is_empty()) {
        (Some(_), false) => {
            return Err(validation("Rule ARNs and a listener ARN cannot be specified at the same time"))
        }
        (None, true) => return Err(validation("You must specify either listener rule ARNs or a listener ARN")),
        (Some(listener_arn), true) => {
            let l = listeners::find(ctx, listener_arn).await?;
            let mut rules: Vec<Rule> =
                store::list::<Rule>(ctx, &keys::rules_of(&l.id)).await?.into_iter().map(|(_, r, _)| r).collect();
            rules.sort_by_key(|r| r.priority);
            let mut out: Vec<Described> = rules.into_iter().map(Described::Rule).collect();
            out.push(Described::Default(l));
            out
        }
        (None, false) => {
            let mut out = Vec::new();
            for a in &arns {
                out.push(find(ctx, a).await?);
            }
            out
        }
    };
    let (page, next) = paging::page(p, rules, Described::arn)?;
    let mut x = answer(&page);
    x.opt_leaf("NextMarker", next);
    Ok(x)
}

pub async fn modify(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arn = p.required("RuleArn")?.to_string();
    let (lb_id, listener_id, id) = arns::rule_ids(&arn)?;
    let conditions = if p.has("Conditions") { Some(conditions::parse(p)?) } else { None };
    let actions = if p.has("Actions") { Some(actions::parse(p, "Actions")?) } else { None };
    let is_default = id == arns::default_rule_id(&listener_id);
    let mut made = None;
    routing::write(ctx, &lb_id, |r| {
        if is_default {
            let mut l = r.listener(&listener_id).cloned().ok_or_else(rule_not_found)?;
            if arns::rule_arn(&l.arn, &id) != arn {
                return Err(rule_not_found());
            }
            if conditions.is_some() {
                return Err(validation("A default rule cannot have conditions"));
            }
            if let Some(a) = &actions {
                check_actions_for(&r.lb, a)?;
                l.default_actions = a.clone();
            }
            made = Some(Described::Default(l.clone()));
            return Ok(Change { put_listeners: vec![l], ..Default::default() });
        }
        let mut rule = r
            .rules_of(&listener_id)
            .find(|rule| rule.id == id && rule.arn == arn)
            .cloned()
            .ok_or_else(rule_not_found)?;
        if let Some(c) = &conditions {
            rule.conditions = c.clone();
        }
        if let Some(a) = &actions {
            check_actions_for(&r.lb, a)?;
            rule.actions = a.clone();
        }
        made = Some(Described::Rule(rule.clone()));
        Ok(Change { put_rules: vec![(listener_id.clone(), rule)], ..Default::default() })
    })
    .await?
    .ok_or_else(rule_not_found)?;
    Ok(answer(&made.into_iter().collect::<Vec<_>>()))
}

pub async fn delete(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arn = p.required("RuleArn")?.to_string();
    let (lb_id, listener_id, id) = arns::rule_ids(&arn)?;
    if id == arns::default_rule_id(&listener_id) {
        return Err(not_permitted("deleted"));
    }
    routing::write(ctx, &lb_id, |r| {
        r.rules_of(&listener_id).find(|rule| rule.id == id && rule.arn == arn).ok_or_else(rule_not_found)?;
        Ok(Change { delete_rules: vec![(listener_id.clone(), id.clone())], ..Default::default() })
    })
    .await?
    .ok_or_else(rule_not_found)?;
    Ok(Xml::new())
}

pub async fn set_priorities(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let entries = p.structs("RulePriorities")?;
    if entries.is_empty() {
        return Err(QueryError::missing(p.dialect(), "RulePriorities"));
    }
    let mut wanted: Vec<(String, String, String, u32)> = Vec::new(); // (arn, listener id, rule id, priority)
    let mut lb = None;
    for e in &entries {
        let arn = e.required("RuleArn")?.to_string();
        let (lb_id, listener_id, id) = arns::rule_ids(&arn)?;
        if id == arns::default_rule_id(&listener_id) {
            return Err(not_permitted("given a priority"));
        }
        let priority = priority(e.required_int::<i64>("Priority")?, &e.name_of("Priority"))?;
        if lb.get_or_insert_with(|| lb_id.clone()) != &lb_id {
            return Err(validation("The rules of one SetRulePriorities call must belong to one load balancer"));
        }
        if wanted.iter().any(|(a, ..)| *a == arn) {
            return Err(validation(format!("Rule '{arn}' is given more than once")));
        }
        if wanted.iter().any(|(_, l, _, n)| *l == listener_id && *n == priority) {
            return Err(priority_in_use(priority));
        }
        wanted.push((arn, listener_id, id, priority));
    }
    let lb_id = lb.unwrap_or_default();
    let mut made = Vec::new();
    routing::write(ctx, &lb_id, |r| {
        let mut change = Change::default();
        made.clear();
        for (arn, listener_id, id, priority) in &wanted {
            let mut rule = r
                .rules_of(listener_id)
                .find(|rule| rule.id == *id && rule.arn == *arn)
                .cloned()
                .ok_or_else(rule_not_found)?;
            let taken = r
                .rules_of(listener_id)
                .any(|other| other.priority == *priority && !wanted.iter().any(|(a, ..)| *a == other.arn));
            if taken {
                return Err(priority_in_use(*priority));
            }
            rule.priority = *priority;
            made.push(Described::Rule(rule.clone()));
            change.put_rules.push((listener_id.clone(), rule));
        }
        Ok(change)
    })
    .await?
    .ok_or_else(rule_not_found)?;
    Ok(answer(&made))
}
