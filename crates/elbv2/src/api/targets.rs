//! RegisterTargets, DeregisterTargets and DescribeTargetHealth. Targets are
//! `flotilla_endpoints::elb::Target` records under `keys::target`; deregistering one starts its
//! draining (`Registration::Draining` until the group's deregistration delay has passed; the
//! data plane removes it then, or sooner when it has no connections left). Health is what the
//! data plane reports under `keys::target_health`; until it reports, a target is `initial`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use flotilla_api::Ctx;
use flotilla_endpoints::elb::{HealthState, Registration, Target, TargetGroup, TargetHealth, TargetType};
use flotilla_endpoints::keys;
use flotilla_hosts::network::default_vpc;
use flotilla_query::{Params, QueryError, Xml};
use flotilla_store::{Op, Txn};

use super::errors::{invalid_target, out_of_range, validation};
use super::limits::TARGETS_PER_TARGET_GROUP;
use super::{store, target_groups, Result};

/// A target as a request names it.
struct Named {
    id: String,
    port: Option<u16>,
    zone: Option<String>,
}

fn check_id(tg: &TargetGroup, id: &str) -> Result<()> {
    match tg.target_type {
        TargetType::Ip => {
            if id.parse::<Ipv4Addr>().is_err() {
                return Err(invalid_target(format!(
                    "The IP address '{id}' is not a valid IPv4 address: the target group has target type ip"
                )));
            }
        }
        _ => {
            let valid = id
                .strip_prefix("i-")
                .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()));
            if !valid {
                return Err(invalid_target(format!(
                    "The following targets are not valid instance IDs: '{id}' (the target group has target type instance)"
                )));
            }
        }
    }
    Ok(())
}

fn named(p: &Params, tg: &TargetGroup, required: bool) -> Result<Vec<Named>> {
    let entries = p.structs("Targets")?;
    if required && entries.is_empty() {
        return Err(QueryError::missing(p.dialect(), "Targets"));
    }
    entries
        .iter()
        .map(|t| {
            let id = t.required("Id")?.to_string();
            check_id(tg, &id)?;
            let port = match t.int::<i64>("Port")? {
                Some(n) if (1..=65535).contains(&n) => Some(n as u16),
                Some(n) => return Err(out_of_range(&t.name_of("Port"), n, 1, 65535)),
                None => None,
            };
            Ok(Named { id, port, zone: t.get("AvailabilityZone").map(str::to_string) })
        })
        .collect()
}

fn port_of(t: &Named, tg: &TargetGroup) -> Result<u16> {
    t.port.or(tg.port).ok_or_else(|| validation(format!("A port must be given for target '{}'", t.id)))
}

/// The zone a new target is in: the one given (checked), else its host's for instance targets.
async fn zone_of(ctx: &Ctx, t: &Named, tg: &TargetGroup) -> Result<Option<String>> {
    if let Some(z) = &t.zone {
        let vpc = default_vpc(&ctx.arns.region);
        if z != "all" && vpc.subnet_in_zone(z).is_none() {
            return Err(validation(format!("The Availability Zone '{z}' of target '{}' is not in the region", t.id)));
        }
        return Ok(Some(z.clone()));
    }
    if tg.target_type == TargetType::Instance {
        if let Some(kv) =
            ctx.store.get(&flotilla_hosts::keys::host(&t.id)).await.map_err(|e| store::internal(e.to_string()))?
        {
            if let Ok(host) = flotilla_hosts::codec::decode::<flotilla_hosts::Host>(&kv.value) {
                return Ok(Some(host.availability_zone));
            }
        }
    }
    Ok(None)
}

pub async fn register(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arn = p.required("TargetGroupArn")?;
    let (tg, _) = target_groups::find(ctx, arn).await?;
    let wanted = named(p, &tg, true)?;
    let mut zones = Vec::new();
    for t in &wanted {
        zones.push(zone_of(ctx, t, &tg).await?);
    }
    for _ in 0..store::ATTEMPTS {
        let (tg, tg_rev) = target_groups::find(ctx, arn).await?;
        let existing: BTreeMap<String, (Target, flotilla_store::Revision)> =
            store::list::<Target>(ctx, &keys::targets_of(&tg.id))
                .await?
                .into_iter()
                .map(|(k, t, rev)| (k, (t, rev)))
                .collect();
        let now = ctx.clock.now_ms();
        let mut txn = Txn::new().when(store::unchanged(&keys::target_group(&tg.id), tg_rev));
        let mut added = 0;
        for (t, zone) in wanted.iter().zip(&zones) {
            let port = port_of(t, &tg)?;
            let key = keys::target(&tg.id, &t.id, port);
            match existing.get(&key) {
                Some((current, _)) if current.registration == Registration::Registered => continue,
                Some((current, rev)) => {
                    // Registered again while draining: back in service, health checked afresh.
                    let target =
                        Target { registration: Registration::Registered, registered_at_ms: now, ..current.clone() };
                    txn = txn.when(store::unchanged(&key, *rev)).then(store::put(&key, &target));
                }
                None => {
                    added += 1;
                    let target = Target {
                        id: t.id.clone(),
                        port,
                        availability_zone: zone.clone(),
                        registered_at_ms: now,
                        registration: Registration::Registered,
                        task_arn: None,
                    };
                    txn = txn.when(store::unchanged(&key, 0)).then(store::put(&key, &target));
                }
            }
            txn = txn.then(Op::delete(keys::target_health(&tg.id, &t.id, port)));
        }
        if existing.len() + added > TARGETS_PER_TARGET_GROUP {
            return Err(QueryError::new(
                "TooManyTargets",
                format!("A target group can have at most {TARGETS_PER_TARGET_GROUP} registered targets"),
            ));
        }
        if store::commit(ctx, txn).await? {
            return Ok(Xml::new());
        }
    }
    Err(store::contended("the target group's targets"))
}

pub async fn deregister(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arn = p.required("TargetGroupArn")?;
    let (tg, _) = target_groups::find(ctx, arn).await?;
    let wanted = named(p, &tg, true)?;
    let delay_ms = i64::from(tg.deregistration_delay_seconds()) * 1000;
    for _ in 0..store::ATTEMPTS {
        let now = ctx.clock.now_ms();
        let mut txn = Txn::new();
        for t in &wanted {
            let port = port_of(t, &tg)?;
            let key = keys::target(&tg.id, &t.id, port);
            // A target that is not registered "returns successfully", as on AWS.
            let Some((mut target, rev)) = store::get::<Target>(ctx, &key).await? else { continue };
            if target.registration != Registration::Registered {
                continue;
            }
            txn = txn.when(store::unchanged(&key, rev));
            if delay_ms == 0 {
                txn = txn.then(Op::delete(key)).then(Op::delete(keys::target_health(&tg.id, &t.id, port)));
            } else {
                target.registration = Registration::Draining { since_ms: now, until_ms: now + delay_ms };
                txn = txn.then(store::put(&key, &target));
            }
        }
        if store::commit(ctx, txn).await? {
            return Ok(Xml::new());
        }
    }
    Err(store::contended("the target group's targets"))
}

/// `(state, reason, description)` of one target.
fn health(
    tg: &TargetGroup,
    target: Option<&Target>,
    reported: Option<&TargetHealth>,
    now: i64,
) -> (HealthState, Option<String>, Option<String>) {
    let s = |v: &str| Some(v.to_string());
    let not_registered =
        (HealthState::Unused, s("Target.NotRegistered"), s("Target is not registered to the target group"));
    let Some(target) = target else { return not_registered };
    if let Registration::Draining { until_ms, .. } = target.registration {
        if until_ms <= now {
            return not_registered;
        }
        return (
            HealthState::Draining,
            s("Target.DeregistrationInProgress"),
            s("Target deregistration is in progress"),
        );
    }
    if tg.load_balancer_arns.is_empty() {
        return (
            HealthState::Unused,
            s("Target.NotInUse"),
            s("Target group is not configured to receive traffic from the load balancer"),
        );
    }
    match reported {
        Some(h) => (h.state, h.reason.clone(), h.description.clone()),
        None => (HealthState::Initial, s("Elb.RegistrationInProgress"), s("Target registration is in progress")),
    }
}

/// One registered target with its health as DescribeTargetHealth gives it.
#[derive(Debug, Clone)]
pub struct DescribedTarget {
    pub target: Target,
    pub state: HealthState,
    pub reason: Option<String>,
    pub description: Option<String>,
}

/// Every target registered in the group `tg` (draining ones included) with its health, judged
/// as DescribeTargetHealth judges it; for readers such as the console.
pub async fn targets_with_health(ctx: &Ctx, tg: &TargetGroup) -> Result<Vec<DescribedTarget>> {
    let reported = reported_health(ctx, tg).await?;
    let now = ctx.clock.now_ms();
    let targets = store::list::<Target>(ctx, &keys::targets_of(&tg.id)).await?;
    Ok(targets
        .into_iter()
        .map(|(_, target, _)| {
            let (state, reason, description) =
                health(tg, Some(&target), reported.get(&(target.id.clone(), target.port)), now);
            DescribedTarget { target, state, reason, description }
        })
        .collect())
}

/// What the data plane reported of the group's targets, by `(id, port)`.
async fn reported_health(ctx: &Ctx, tg: &TargetGroup) -> Result<BTreeMap<(String, u16), TargetHealth>> {
    Ok(store::list::<TargetHealth>(ctx, &keys::target_health_of(&tg.id))
        .await?
        .into_iter()
        .filter_map(|(key, h, _)| {
            let (id, port) = key.rsplit('/').next()?.rsplit_once(':')?;
            Some(((id.to_string(), port.parse().ok()?), h))
        })
        .collect())
}

pub async fn describe_health(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let (tg, _) = target_groups::find(ctx, p.required("TargetGroupArn")?).await?;
    let wanted = named(p, &tg, false)?;
    let targets: Vec<Target> =
        store::list::<Target>(ctx, &keys::targets_of(&tg.id)).await?.into_iter().map(|(_, t, _)| t).collect();
    let reported = reported_health(ctx, &tg).await?;
    // `(id, port, record)` of every target to describe.
    let mut rows: Vec<(String, u16, Option<&Target>)> = Vec::new();
    if wanted.is_empty() {
        rows.extend(targets.iter().map(|t| (t.id.clone(), t.port, Some(t))));
    } else {
        for w in &wanted {
            let matching: Vec<&Target> =
                targets.iter().filter(|t| t.id == w.id && w.port.is_none_or(|p| p == t.port)).collect();
            if matching.is_empty() {
                rows.push((w.id.clone(), port_of(w, &tg)?, None));
            }
            rows.extend(matching.into_iter().map(|t| (t.id.clone(), t.port, Some(t))));
        }
    }
    let now = ctx.clock.now_ms();
    let mut x = Xml::new();
    x.list("TargetHealthDescriptions", "member", rows, |x, (id, port, target)| {
        let h = reported.get(&(id.clone(), port));
        let (state, reason, description) = health(&tg, target, h, now);
        x.elem("Target", |x| {
            x.leaf("Id", &id).leaf("Port", port.to_string());
            x.opt_leaf("AvailabilityZone", target.and_then(|t| t.availability_zone.as_ref()));
        });
        let check_port =
            if tg.health_check.port == "traffic-port" { port.to_string() } else { tg.health_check.port.clone() };
        x.leaf("HealthCheckPort", check_port);
        x.elem("TargetHealth", |x| {
            x.leaf("State", state.as_str()).opt_leaf("Reason", reason).opt_leaf("Description", description);
        });
    });
    Ok(x)
}
