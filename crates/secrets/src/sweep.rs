//! The leader's sweep over both services' records: it purges secrets past their recovery
//! window and re-seals under the primary key every value sealed under an older one, so that
//! old keys can be deleted from the key file afterwards. It reads the key file again on each
//! pass, so a rotation needs no restart.

use std::time::Duration;

use flotilla_api::supervisor::{LoopError, LoopHandle};
use flotilla_api::Ctx;
use flotilla_store::{Compare, Txn};

use crate::error::Result;
use crate::keyring::Keys;
use crate::sm::record::{self as secret, Secret};
use crate::ssm::record::{self as param, Parameter};
use crate::store;

pub const LOOP: &str = "secrets-sweep";
/// Every server's loop reading the key file again, so that after a rotation each seals new
/// values under the new primary (not only the leader, which re-seals the rest).
pub const RELOAD_LOOP: &str = "secrets-keys";

/// Reads the key file again every `every`, on every server.
pub fn start_reload(ctx: &Ctx, keys: Keys, every: Duration) -> LoopHandle {
    ctx.loops.spawn(RELOAD_LOOP, move || {
        let keys = keys.clone();
        async move {
            loop {
                tokio::time::sleep(every).await;
                match keys.reload() {
                    Ok(ring) => tracing::debug!(primary = ring.primary(), "secrets key file read"),
                    Err(e) => {
                        tracing::warn!(error = %e, "the secrets key file could not be read again; keeping the keys loaded")
                    }
                }
            }
        }
    })
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub purged: usize,
    pub resealed: usize,
    /// Records holding a value whose key is not in the key file.
    pub unreadable: usize,
}

pub fn start(ctx: &Ctx, keys: Keys, every: Duration) -> LoopHandle {
    let base = ctx.clone();
    ctx.loops.spawn_leader(LOOP, move |fence| {
        let ctx = base.fenced(fence);
        let keys = keys.clone();
        async move {
            loop {
                if let Err(e) = keys.reload() {
                    tracing::warn!(error = %e, "the secrets key file could not be read again; keeping the keys loaded");
                }
                let pass = sweep(&ctx, &keys).await.map_err(|e| Box::new(e) as LoopError)?;
                if pass != Pass::default() {
                    tracing::info!(
                        purged = pass.purged,
                        resealed = pass.resealed,
                        unreadable = pass.unreadable,
                        primary = keys.current().primary(),
                        "secrets sweep"
                    );
                }
                tokio::time::sleep(every).await;
            }
        }
    })
}

/// One pass over every parameter and secret.
pub async fn sweep(ctx: &Ctx, keys: &Keys) -> Result<Pass> {
    let mut pass = Pass::default();
    let primary = keys.current().primary().to_string();
    for (key, mut p, rev) in store::list::<Parameter>(ctx, store::PARAMETERS).await? {
        if p.versions.iter().all(|v| v.value.key == primary) {
            continue;
        }
        let mut ok = true;
        for v in &mut p.versions {
            let aad = param::aad(&p.name, v.version);
            match keys.open(&aad, &v.value).and_then(|plain| keys.seal(&aad, &plain)) {
                Ok(sealed) => v.value = sealed,
                Err(e) => {
                    tracing::error!(parameter = %p.name, error = %e, "a parameter could not be re-sealed");
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            pass.unreadable += 1;
            continue;
        }
        let txn = Txn::new().when(Compare::unchanged(key.clone(), rev)).then(store::put(key, &p));
        // A record changed since it was read is looked at again on the next pass.
        if store::commit(ctx, txn).await? {
            pass.resealed += 1;
        }
    }
    let now = ctx.clock.now_ms();
    let mut expired = Vec::new();
    for (key, mut s, rev) in store::list::<Secret>(ctx, store::SECRETS).await? {
        if crate::sm::expired(&s, now) {
            expired.push((key, rev));
            continue;
        }
        let mut changed = false;
        let mut ok = true;
        for i in 0..s.versions.len() {
            match secret::reseal(keys, &s.arn, &s.versions[i]) {
                Ok(Some(sealed)) => {
                    s.versions[i].value = sealed;
                    changed = true;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(secret = %s.name, error = %e, "a secret could not be re-sealed");
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            pass.unreadable += 1;
        } else if changed {
            let txn = Txn::new().when(Compare::unchanged(key.clone(), rev)).then(store::put(key, &s));
            if store::commit(ctx, txn).await? {
                pass.resealed += 1;
            }
        }
    }
    pass.purged = ctx.delete_unchanged(&expired).await.map_err(|e| crate::error::AwsError::internal(e.message))?;
    Ok(pass)
}
