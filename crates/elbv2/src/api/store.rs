//! Reading and writing the ELBv2 records in the store: JSON values (`flotilla_endpoints::codec`)
//! under the keys of `flotilla_endpoints::keys`, read straight from the store, written with
//! compare-and-swap transactions. Also the keys only this API uses: name indexes that make
//! names unique in the transaction that creates them, and each load balancer's routing marker
//! (see [`super::routing`]).

use flotilla_api::Ctx;
use flotilla_endpoints::codec;
use flotilla_query::QueryError;
use flotilla_store::{Compare, Op, Revision, Txn};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Result;

/// How often a read-modify-write retries after losing a race before it gives up.
pub const ATTEMPTS: usize = flotilla_api::context::MAX_CAS_ATTEMPTS;

/// Load balancer names, each holding its load balancer's id.
pub const LOAD_BALANCER_NAME: &str = "elbv2/load-balancer-name/";
/// Target group names, each holding its group's id.
pub const TARGET_GROUP_NAME: &str = "elbv2/target-group-name/";
/// One key per load balancer, rewritten by every write to its listeners and rules.
pub const ROUTING: &str = "elbv2/routing/";

pub fn load_balancer_name(name: &str) -> String {
    format!("{LOAD_BALANCER_NAME}{name}")
}
pub fn target_group_name(name: &str) -> String {
    format!("{TARGET_GROUP_NAME}{name}")
}
pub fn routing(load_balancer_id: &str) -> String {
    format!("{ROUTING}{load_balancer_id}")
}

/// A fault in the store or a record it cannot read: the server's error, not the client's.
pub fn internal(message: impl Into<String>) -> QueryError {
    QueryError::server("InternalFailure", message)
}

/// A request that kept losing races.
pub fn contended(what: &str) -> QueryError {
    internal(format!("{what} kept changing while this request tried to update it; try again"))
}

fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T> {
    codec::decode(value).map_err(|e| internal(format!("the record {key} could not be read: {e}")))
}

pub use codec::encode;

/// The record under `key` and its revision.
pub async fn get<T: DeserializeOwned>(ctx: &Ctx, key: &str) -> Result<Option<(T, Revision)>> {
    match ctx.store.get(key).await.map_err(|e| internal(e.to_string()))? {
        Some(kv) => Ok(Some((decode(key, &kv.value)?, kv.mod_revision))),
        None => Ok(None),
    }
}

/// The revision of `key`, 0 when absent.
pub async fn revision(ctx: &Ctx, key: &str) -> Result<Revision> {
    Ok(ctx.store.get(key).await.map_err(|e| internal(e.to_string()))?.map(|kv| kv.mod_revision).unwrap_or(0))
}

/// Every record under `prefix`, in key order, with its key and revision.
pub async fn list<T: DeserializeOwned>(ctx: &Ctx, prefix: &str) -> Result<Vec<(String, T, Revision)>> {
    let listing = ctx.store.list(prefix).await.map_err(|e| internal(e.to_string()))?;
    listing.kvs.into_iter().map(|kv| Ok((kv.key.clone(), decode(&kv.key, &kv.value)?, kv.mod_revision))).collect()
}

/// Commits `txn`; `false` when a compare failed.
pub async fn commit(ctx: &Ctx, txn: Txn) -> Result<bool> {
    Ok(ctx.commit(txn).await.map_err(|e| internal(e.message))?.is_some())
}

/// The compare that holds while `key` is as it was read (`0`: absent).
pub fn unchanged(key: &str, revision: Revision) -> Compare {
    if revision == 0 {
        Compare::absent(key)
    } else {
        Compare::unchanged(key, revision)
    }
}

pub fn put<T: Serialize>(key: &str, value: &T) -> Op {
    Op::put(key, encode(value))
}

/// Reads `key`, lets `change` edit it (or refuse) and writes it back if nothing changed it
/// meanwhile, retrying on a race. `None` when the record does not exist.
pub async fn update<T, F>(ctx: &Ctx, key: &str, mut change: F) -> Result<Option<T>>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(&mut T) -> Result<()>,
{
    for _ in 0..ATTEMPTS {
        let Some((mut record, revision)) = get::<T>(ctx, key).await? else { return Ok(None) };
        change(&mut record)?;
        let txn = Txn::new().when(Compare::unchanged(key, revision)).then(put(key, &record));
        if commit(ctx, txn).await? {
            return Ok(Some(record));
        }
    }
    Err(contended(key))
}

/// A new resource id: 16 lowercase hex digits.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
}
