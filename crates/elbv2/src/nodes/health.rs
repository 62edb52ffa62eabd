//! What nodes report, and what the control plane makes of it.
//!
//! Each node's latest report replaces its previous one, and is shared with the other servers
//! through the store (`shared`). For a target, the nodes whose reports count are the live ones
//! (reported within [`LIVE_MS`](super::records::LIVE_MS)), whichever server they report to:
//! - health: `healthy` if any live node's latest report says healthy (one node that reaches the
//!   target is enough to send it traffic), else `unhealthy` with the first such node's reason,
//!   else what the nodes say while checks are still starting (`initial`). The `target_health`
//!   record is written only when state, reason or description change, so a steady fleet of
//!   reports writes nothing. Draining targets are left alone: their health says `draining`
//!   whatever the checks find.
//! - draining: a `Draining` target that every live node lists with 0 open connections is
//!   deleted with its health record, before its `until_ms`. Live here also counts the nodes
//!   whose record says they were heard from (a config fetch) within `LIVE_MS`, reported or not.
//!   A node that does not list the target (it has not seen it draining yet) holds it.
//!
//! A target that no node reports on keeps whatever record it has (none: `initial`).

use std::collections::HashMap;

use flotilla_api::{ApiError, ApiResult, Ctx};
use flotilla_endpoints::codec::{decode, encode};
use flotilla_endpoints::elb::{HealthObservation, HealthState, NodeReport, Registration, Target, TargetHealth};
use flotilla_endpoints::keys;
use flotilla_store::{Compare, Op, Txn};

use super::records;
use super::shared::{self, StoredReport};

/// `(target group id, target id, port)`.
type TargetRef = (String, String, u16);

struct Latest {
    health: HashMap<TargetRef, HealthObservation>,
    draining: HashMap<TargetRef, u32>,
}

/// Takes node reports in (stateless: what the nodes said lives in the store).
#[derive(Default)]
pub struct Reports {}

/// What one report led to, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Health records written.
    pub health_written: usize,
    /// Draining targets deleted early.
    pub drained: usize,
}

fn server(e: impl std::fmt::Display) -> ApiError {
    ApiError::server(e.to_string())
}

impl Reports {
    /// Takes `report` as its node's latest and acts on it.
    pub async fn apply(&self, ctx: &Ctx, report: NodeReport) -> ApiResult<Outcome> {
        let now = ctx.clock.now_ms();
        let stored = StoredReport {
            node_id: report.node_id.clone(),
            at_ms: now,
            health: report.health,
            draining: report.draining_connections,
        };
        shared::publish(ctx, &stored).await?;
        let latest = Latest::from(stored);
        let touched: Vec<TargetRef> = latest.health.keys().cloned().collect();
        let emptied: Vec<TargetRef> =
            latest.draining.iter().filter(|(_, n)| **n == 0).map(|(k, _)| k.clone()).collect();
        // The nodes heard from lately, reports or not: one that fetched its configuration but has
        // not reported yet may still hold connections.
        let heard: Vec<String> = match emptied.is_empty() {
            true => Vec::new(),
            false => records::list(ctx).await?.into_iter().filter(|n| n.is_live(now)).map(|n| n.id).collect(),
        };
        let (verdicts, drained) = {
            let mut nodes: HashMap<String, Latest> =
                shared::live(ctx, now).await?.into_iter().map(|(id, r)| (id, Latest::from(r))).collect();
            // This report, even if another server's copy of an older one won the write.
            nodes.insert(report.node_id, latest);
            let verdicts: Vec<(TargetRef, HealthObservation)> =
                touched.into_iter().filter_map(|t| verdict(&nodes, &t).map(|v| (t, v))).collect();
            let drained: Vec<TargetRef> = emptied
                .into_iter()
                .filter(|t| {
                    nodes.values().all(|l| l.draining.get(t) == Some(&0))
                        && heard.iter().all(|id| nodes.get(id).is_some_and(|l| l.draining.get(t) == Some(&0)))
                })
                .collect();
            (verdicts, drained)
        };
        let mut outcome = Outcome::default();
        for ((group, id, port), v) in verdicts {
            if write_health(ctx, &group, &id, port, &v, now).await? {
                outcome.health_written += 1;
            }
        }
        for (group, id, port) in drained {
            if end_draining(ctx, &group, &id, port, |_| true).await? {
                outcome.drained += 1;
            }
        }
        Ok(outcome)
    }
}

impl From<StoredReport> for Latest {
    fn from(r: StoredReport) -> Self {
        Latest {
            health: r
                .health
                .into_iter()
                .map(|o| ((o.target_group_id.clone(), o.target_id.clone(), o.port), o))
                .collect(),
            draining: r.draining.into_iter().map(|(g, t, p, n)| ((g, t, p), n)).collect(),
        }
    }
}

/// What the live nodes say of `target` together.
fn verdict(nodes: &HashMap<String, Latest>, target: &TargetRef) -> Option<HealthObservation> {
    let seen: Vec<&HealthObservation> = nodes.values().filter_map(|l| l.health.get(target)).collect();
    seen.iter()
        .find(|o| o.state == HealthState::Healthy)
        .or_else(|| seen.iter().find(|o| o.state == HealthState::Unhealthy))
        .or_else(|| seen.first())
        .map(|o| (*o).clone())
}

/// Writes a registered target's health if it differs from its record; whether it wrote.
async fn write_health(
    ctx: &Ctx,
    group: &str,
    id: &str,
    port: u16,
    seen: &HealthObservation,
    now: i64,
) -> ApiResult<bool> {
    let target_key = keys::target(group, id, port);
    let Some(target_kv) = ctx.store.get(&target_key).await? else { return Ok(false) };
    let target: Target = decode(&target_kv.value).map_err(server)?;
    if target.registration != Registration::Registered {
        return Ok(false);
    }
    let health_key = keys::target_health(group, id, port);
    let current = ctx.store.get(&health_key).await?;
    if let Some(kv) = &current {
        let old: TargetHealth = decode(&kv.value).map_err(server)?;
        if old.state == seen.state && old.reason == seen.reason && old.description == seen.description {
            return Ok(false);
        }
    }
    let record = TargetHealth {
        state: seen.state,
        reason: seen.reason.clone(),
        description: seen.description.clone(),
        updated_at_ms: now,
    };
    // Written only over what was read, and only while the target stays as read: a target
    // deregistered meanwhile keeps the health its deregistration gave it.
    let txn = Txn::new()
        .when(Compare::unchanged(target_key, target_kv.mod_revision))
        .when(Compare::unchanged(health_key.clone(), current.map_or(0, |kv| kv.mod_revision)))
        .then(Op::put(health_key, encode(&record)));
    Ok(matches!(ctx.store.txn(txn).await?, flotilla_store::TxnOutcome::Committed { .. }))
}

/// Deletes a draining target and its health record if `due` says its draining is over;
/// whether it did.
pub async fn end_draining(ctx: &Ctx, group: &str, id: &str, port: u16, due: impl Fn(i64) -> bool) -> ApiResult<bool> {
    let target_key = keys::target(group, id, port);
    let Some(kv) = ctx.store.get(&target_key).await? else { return Ok(false) };
    let target: Target = decode(&kv.value).map_err(server)?;
    let Registration::Draining { until_ms, .. } = target.registration else { return Ok(false) };
    if !due(until_ms) {
        return Ok(false);
    }
    let txn = Txn::new()
        .when(Compare::unchanged(target_key.clone(), kv.mod_revision))
        .then(Op::delete(target_key))
        .then(Op::delete(keys::target_health(group, id, port)));
    let done = matches!(ctx.store.txn(txn).await?, flotilla_store::TxnOutcome::Committed { .. });
    if done {
        tracing::info!(target_group = group, target = id, port, "draining target deregistered");
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(state: HealthState, reason: &str) -> HealthObservation {
        HealthObservation {
            target_group_id: "g".into(),
            target_id: "10.0.0.1".into(),
            port: 80,
            state,
            reason: Some(reason.into()),
            description: None,
        }
    }

    fn node(obs: HealthObservation) -> Latest {
        let key = (obs.target_group_id.clone(), obs.target_id.clone(), obs.port);
        Latest { health: HashMap::from([(key, obs)]), draining: HashMap::new() }
    }

    #[test]
    fn one_healthy_node_makes_a_target_healthy_else_the_first_unhealthy_says_why() {
        let t: TargetRef = ("g".into(), "10.0.0.1".into(), 80);
        let mut nodes = HashMap::from([
            ("a".to_string(), node(seen(HealthState::Unhealthy, "Target.Timeout"))),
            ("b".to_string(), node(seen(HealthState::Initial, "Elb.InitialHealthChecking"))),
        ]);
        let v = verdict(&nodes, &t).unwrap();
        assert_eq!((v.state, v.reason.as_deref()), (HealthState::Unhealthy, Some("Target.Timeout")));
        nodes.insert("c".into(), node(seen(HealthState::Healthy, "")));
        assert_eq!(verdict(&nodes, &t).unwrap().state, HealthState::Healthy);
        assert_eq!(verdict(&nodes, &("g".into(), "other".into(), 80)), None);
    }
}
