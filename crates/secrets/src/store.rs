//! Reading and writing the services' records: JSON after a version byte, under the roots
//! [`flotilla_api::state::keys::SECRETS`] names so that the API cache never holds them, read
//! straight from the store and written with compare-and-swap transactions the callers retry.

use flotilla_api::Ctx;
use flotilla_store::{Op, Revision, Txn};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{AwsError, Result};

/// Where SSM parameters live: the parameter name follows.
pub const PARAMETERS: &str = "ssm/parameters/";
/// Where Secrets Manager secrets live: the secret name follows.
pub const SECRETS: &str = "secretsmanager/secrets/";

const V1: u8 = 1;

/// How often a request retries its transaction after losing a race.
pub const ATTEMPTS: usize = flotilla_api::context::MAX_CAS_ATTEMPTS;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![V1];
    // Serializing plain structs of strings and numbers cannot fail.
    out.extend(serde_json::to_vec(value).unwrap_or_default());
    out
}

pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&V1, json)) => serde_json::from_slice(json)
            .map_err(|e| AwsError::internal(format!("the record {key} could not be read: {e}"))),
        _ => Err(AwsError::internal(format!("the record {key} has an unknown format"))),
    }
}

pub async fn get<T: DeserializeOwned>(ctx: &Ctx, key: &str) -> Result<Option<(T, Revision)>> {
    match ctx.store.get(key).await.map_err(|e| AwsError::internal(e.to_string()))? {
        Some(kv) => Ok(Some((decode(key, &kv.value)?, kv.mod_revision))),
        None => Ok(None),
    }
}

/// Every record under `prefix`, in key order, with its key and revision.
pub async fn list<T: DeserializeOwned>(ctx: &Ctx, prefix: &str) -> Result<Vec<(String, T, Revision)>> {
    let listing = ctx.store.list(prefix).await.map_err(|e| AwsError::internal(e.to_string()))?;
    listing.kvs.iter().map(|kv| Ok((kv.key.clone(), decode(&kv.key, &kv.value)?, kv.mod_revision))).collect()
}

/// Commits `txn`; `false` when a compare failed (the caller reads again and retries).
pub async fn commit(ctx: &Ctx, txn: Txn) -> Result<bool> {
    Ok(ctx.commit(txn).await.map_err(|e| AwsError::internal(e.message))?.is_some())
}

pub fn put<T: Serialize>(key: String, value: &T) -> Op {
    Op::put(key, encode(value))
}

pub fn lost_race(what: &str) -> AwsError {
    AwsError::internal(format!("{what} kept changing while this request tried to update it; try again"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cache_skips_both_roots() {
        assert!(flotilla_api::state::keys::uncached(&format!("{}a", super::PARAMETERS)));
        assert!(flotilla_api::state::keys::uncached(&format!("{}a", super::SECRETS)));
    }
}
