//! The nodes' loops, under the control plane's supervisor:
//! - `elbv2-draining`: deletes `Draining` targets whose `until_ms` has passed (the group's
//!   deregistration delay), with their health records. Nodes may end draining sooner (see
//!   `health`); this is the bound.
//! - `elbv2-lb-state`: a load balancer is `provisioning` until a node serves it: once any node
//!   is live (it fetched a configuration or reported within `LIVE_MS`, and a live node fetches
//!   every change), each `provisioning` load balancer turns `active`.
//!
//! Both are level-triggered passes over the store, run every `tick` (time is the context's
//! clock, which tests move).

use std::time::Duration;

use flotilla_api::supervisor::{LoopError, LoopHandle};
use flotilla_api::{ApiResult, Ctx};
use flotilla_endpoints::codec::{decode, encode};
use flotilla_endpoints::elb::{LoadBalancer, Registration, Target};
use flotilla_endpoints::keys;
use flotilla_store::{Compare, Op, Txn};

use super::health::end_draining;
use super::records;

/// How often the loops look.
#[derive(Debug, Clone, Copy)]
pub struct LoopSettings {
    pub tick: Duration,
}

impl Default for LoopSettings {
    fn default() -> Self {
        LoopSettings { tick: Duration::from_secs(1) }
    }
}

pub const DRAINING_LOOP: &str = "elbv2-draining";
pub const LB_STATE_LOOP: &str = "elbv2-lb-state";

/// Starts both loops, on the leader only (each pass writes, and one server's passes suffice).
pub fn start_with(ctx: &Ctx, settings: LoopSettings) -> Vec<LoopHandle> {
    let c = ctx.clone();
    let draining = ctx
        .loops
        .spawn_leader(DRAINING_LOOP, move |fence| every(c.fenced(fence), settings.tick, DRAINING_LOOP, reap_draining));
    let c = ctx.clone();
    let state = ctx
        .loops
        .spawn_leader(LB_STATE_LOOP, move |fence| every(c.fenced(fence), settings.tick, LB_STATE_LOOP, activate));
    vec![draining, state]
}

/// Runs `pass` every `tick`; a failed pass is logged and counted, and the next one tries again.
async fn every<F, Fut>(ctx: Ctx, tick: Duration, name: &'static str, pass: F) -> Result<(), LoopError>
where
    F: Fn(Ctx) -> Fut,
    Fut: std::future::Future<Output = ApiResult<usize>>,
{
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(e) = pass(ctx.clone()).await {
            ctx.loops.count_error(name);
            tracing::warn!(r#loop = name, error = %e, "pass failed; trying again at the next tick");
        }
    }
}

/// Deletes every draining target whose time is up; how many.
pub async fn reap_draining(ctx: Ctx) -> ApiResult<usize> {
    let now = ctx.clock.now_ms();
    let listing = ctx.store.list(keys::TARGET).await?;
    let mut done = 0;
    for kv in &listing.kvs {
        let Ok(target) = decode::<Target>(&kv.value) else { continue };
        let Registration::Draining { until_ms, .. } = target.registration else { continue };
        if until_ms > now {
            continue;
        }
        let group = kv.key[keys::TARGET.len()..].split('/').next().unwrap_or_default();
        if end_draining(&ctx, group, &target.id, target.port, |until| until <= now).await? {
            done += 1;
        }
    }
    Ok(done)
}

/// Turns `provisioning` load balancers `active` when a node is live; how many.
pub async fn activate(ctx: Ctx) -> ApiResult<usize> {
    let now = ctx.clock.now_ms();
    if !records::list(&ctx).await?.iter().any(|n| n.is_live(now)) {
        return Ok(0);
    }
    let listing = ctx.store.list(keys::LOAD_BALANCER).await?;
    let mut done = 0;
    for kv in &listing.kvs {
        let Ok(mut lb) = decode::<LoadBalancer>(&kv.value) else { continue };
        if lb.state != "provisioning" {
            continue;
        }
        lb.state = "active".into();
        // A load balancer changed meanwhile is looked at again at the next tick.
        let txn = Txn::new()
            .when(Compare::unchanged(kv.key.clone(), kv.mod_revision))
            .then(Op::put(kv.key.clone(), encode(&lb)));
        if let flotilla_store::TxnOutcome::Committed { .. } = ctx.store.txn(txn).await? {
            tracing::info!(load_balancer = %lb.name, "load balancer active: a node serves it");
            done += 1;
        }
    }
    Ok(done)
}
