//! Reading the loop's records from the store (groups, hosts, launch templates) and writing a
//! host back with compare-and-swap. These records are not in the ECS cache, so each pass lists
//! them afresh: a pass always acts on what the store holds now.

use std::collections::HashMap;

use flotilla_api::{ApiError, ApiResult, Ctx};
use flotilla_hosts::{keys, AutoScalingGroup, Host, LaunchTemplate};
use flotilla_store::{Compare, Op, Revision, Txn};
use serde::de::DeserializeOwned;

/// A record and the revision it was read at.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: Revision,
}

/// Everything a pass looks at.
#[derive(Debug, Default)]
pub struct World {
    pub groups: Vec<Versioned<AutoScalingGroup>>,
    pub hosts: Vec<Versioned<Host>>,
    pub templates: HashMap<String, LaunchTemplate>,
}

async fn list<T: DeserializeOwned>(ctx: &Ctx, prefix: &str) -> ApiResult<Vec<Versioned<T>>> {
    let listing = ctx.store.list(prefix).await?;
    let mut out = Vec::with_capacity(listing.kvs.len());
    for kv in listing.kvs {
        match serde_json::from_slice(&kv.value) {
            Ok(value) => out.push(Versioned { value, revision: kv.mod_revision }),
            // One bad record must not stop every group: it is skipped and told.
            Err(e) => tracing::warn!(key = %kv.key, error = %e, "skipping a record that does not decode"),
        }
    }
    Ok(out)
}

pub async fn load(ctx: &Ctx) -> ApiResult<World> {
    let groups = list(ctx, keys::GROUP).await?;
    let hosts = list(ctx, keys::HOST).await?;
    let templates = list::<LaunchTemplate>(ctx, keys::LAUNCH_TEMPLATE)
        .await?
        .into_iter()
        .map(|t| (t.value.id.clone(), t.value))
        .collect();
    Ok(World { groups, hosts, templates })
}

pub use flotilla_hosts::codec::encode;

/// The host as stored now, if it is.
pub async fn host(ctx: &Ctx, instance_id: &str) -> ApiResult<Option<Versioned<Host>>> {
    let Some(kv) = ctx.store.get(&keys::host(instance_id)).await? else { return Ok(None) };
    let value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::server(format!("host record {instance_id} does not decode: {e}")))?;
    Ok(Some(Versioned { value, revision: kv.mod_revision }))
}

/// Applies `f` to the stored host and writes it back if it changed, retrying when another writer
/// got there first; `None` when the host is gone or `f` declines (returns false).
pub async fn update_host(ctx: &Ctx, instance_id: &str, f: impl Fn(&mut Host) -> bool) -> ApiResult<Option<Host>> {
    for _ in 0..flotilla_api::context::MAX_CAS_ATTEMPTS {
        let Some(current) = host(ctx, instance_id).await? else { return Ok(None) };
        let mut h = current.value.clone();
        if !f(&mut h) {
            return Ok(None);
        }
        if h == current.value {
            return Ok(Some(h));
        }
        let key = keys::host(instance_id);
        let txn = Txn::new().when(Compare::unchanged(&key, current.revision)).then(Op::put(&key, encode(&h)));
        if ctx.commit(txn).await?.is_some() {
            return Ok(Some(h));
        }
    }
    Err(ApiError::server(format!("host {instance_id} kept changing; the next pass tries again")))
}
