//! Reading and writing the `flotilla-hosts` records in the store: JSON values under the keys of
//! `flotilla_hosts::keys`, read straight from the store (they are few, and not in the ECS cache),
//! written with compare-and-swap transactions that retry when another writer got there first.

use flotilla_api::Ctx;
use flotilla_query::QueryError;
use flotilla_store::{Compare, Op, Revision, Txn};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Result;

/// How often a read-modify-write retries after losing a race before it gives up.
const ATTEMPTS: usize = flotilla_api::context::MAX_CAS_ATTEMPTS;

/// A fault in the store or a record it cannot read: the server's error, not the client's.
pub fn internal(message: impl Into<String>) -> QueryError {
    QueryError::server("InternalFailure", message)
}

fn from_api(e: flotilla_api::ApiError) -> QueryError {
    internal(e.message)
}

fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T> {
    serde_json::from_slice(value).map_err(|e| internal(format!("the record {key} could not be read: {e}")))
}

pub use flotilla_hosts::codec::encode;

/// The record under `key` and its revision.
pub async fn get<T: DeserializeOwned>(ctx: &Ctx, key: &str) -> Result<Option<(T, Revision)>> {
    match ctx.store.get(key).await.map_err(|e| internal(e.to_string()))? {
        Some(kv) => Ok(Some((decode(key, &kv.value)?, kv.mod_revision))),
        None => Ok(None),
    }
}

/// Every record under `prefix`, in key order, with its key.
pub async fn list<T: DeserializeOwned>(ctx: &Ctx, prefix: &str) -> Result<Vec<(String, T, Revision)>> {
    let listing = ctx.store.list(prefix).await.map_err(|e| internal(e.to_string()))?;
    listing.kvs.into_iter().map(|kv| Ok((kv.key.clone(), decode(&kv.key, &kv.value)?, kv.mod_revision))).collect()
}

/// Commits `txn`; `false` when a compare failed.
pub async fn commit(ctx: &Ctx, txn: Txn) -> Result<bool> {
    Ok(ctx.commit(txn).await.map_err(from_api)?.is_some())
}

/// Creates `key` if it is absent; `false` when it already exists.
pub async fn create<T: Serialize>(ctx: &Ctx, key: &str, value: &T) -> Result<bool> {
    commit(ctx, Txn::new().when(Compare::absent(key)).then(Op::put(key, encode(value)))).await
}

/// Reads `key`, lets `change` edit it (or refuse with an error) and writes it back if nothing
/// changed it meanwhile, retrying on a race. `None` when the record does not exist.
pub async fn update<T, F>(ctx: &Ctx, key: &str, mut change: F) -> Result<Option<T>>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(&mut T) -> Result<()>,
{
    for _ in 0..ATTEMPTS {
        let Some((mut record, revision)) = get::<T>(ctx, key).await? else { return Ok(None) };
        change(&mut record)?;
        let txn = Txn::new().when(Compare::unchanged(key, revision)).then(Op::put(key, encode(&record)));
        if commit(ctx, txn).await? {
            return Ok(Some(record));
        }
    }
    Err(internal(format!("the record {key} kept changing while this request tried to update it; try again")))
}
