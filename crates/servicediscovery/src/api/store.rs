//! Reading and writing Cloud Map records: JSON values under `flotilla_endpoints::keys`, read
//! straight from the store, written in one compare-and-swap transaction per request (the record,
//! its name index, its operation, its creator-request id) that the caller retries on a race.

use flotilla_api::Ctx;
use flotilla_endpoints::cloudmap::{CreatorRequest, Operation, OperationStatus, OperationType};
use flotilla_endpoints::{codec, keys};
use flotilla_store::{Compare, Op, Revision, Txn};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::error::{Result, SdError};

/// How often a request retries its transaction after losing a race.
pub const ATTEMPTS: usize = flotilla_api::context::MAX_CAS_ATTEMPTS;

pub async fn get<T: DeserializeOwned>(ctx: &Ctx, key: &str) -> Result<Option<(T, Revision)>> {
    match ctx.store.get(key).await.map_err(|e| SdError::internal(e.to_string()))? {
        Some(kv) => {
            let value = codec::decode(&kv.value)
                .map_err(|e| SdError::internal(format!("the record {key} could not be read: {e}")))?;
            Ok(Some((value, kv.mod_revision)))
        }
        None => Ok(None),
    }
}

/// Every record under `prefix`, in key order, with its revision.
pub async fn list<T: DeserializeOwned>(ctx: &Ctx, prefix: &str) -> Result<Vec<(T, Revision)>> {
    let listing = ctx.store.list(prefix).await.map_err(|e| SdError::internal(e.to_string()))?;
    listing
        .kvs
        .iter()
        .map(|kv| {
            codec::decode(&kv.value)
                .map(|v| (v, kv.mod_revision))
                .map_err(|e| SdError::internal(format!("the record {} could not be read: {e}", kv.key)))
        })
        .collect()
}

/// Commits `txn`; `false` when a compare failed (the caller reads again and retries).
pub async fn commit(ctx: &Ctx, txn: Txn) -> Result<bool> {
    Ok(ctx.commit(txn).await.map_err(|e| SdError::internal(e.message))?.is_some())
}

pub fn put<T: Serialize>(key: String, value: &T) -> Op {
    Op::put(key, codec::encode(value))
}

pub fn lost_race(what: &str) -> SdError {
    SdError::internal(format!("{what} kept changing while this request tried to update it; try again"))
}

/// `ns-`/`srv-` and 16 lowercase alphanumerics, as Cloud Map's ids look.
pub fn new_id(prefix: &str) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let tail: String = (0..16).map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char).collect();
    format!("{prefix}{tail}")
}

pub fn new_operation_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub fn arn(ctx: &Ctx, kind: &str, id: &str) -> String {
    format!("arn:{}:servicediscovery:{}:{}:{kind}/{id}", ctx.arns.partition, ctx.arns.region, ctx.arns.account)
}

/// Epoch seconds with a millisecond fraction, as Cloud Map writes its dates.
pub fn epoch(ms: i64) -> Value {
    serde_json::Number::from_f64(ms as f64 / 1000.0).map(Value::Number).unwrap_or(Value::Null)
}

/// A new successful operation of `kind` on `targets`, and the op that stores it.
pub fn operation(ctx: &Ctx, kind: OperationType, targets: &[(&str, &str)]) -> (Operation, Op) {
    let now = ctx.clock.now_ms();
    let op = Operation {
        id: new_operation_id(),
        kind,
        status: OperationStatus::Success,
        targets: targets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        error_code: None,
        error_message: None,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let write = put(keys::operation(&op.id), &op);
    (op, write)
}

/// The record of an earlier request with the same `CreatorRequestId` of this `kind`, and the
/// compare and put that claim the id for this one.
pub async fn creator_request(ctx: &Ctx, kind: &str, request_id: Option<&str>) -> Result<Option<CreatorRequest>> {
    let Some(id) = request_id else { return Ok(None) };
    Ok(get::<CreatorRequest>(ctx, &keys::creator_request(kind, id)).await?.map(|(r, _)| r))
}

/// Adds the compare and put that record `request` under `kind`/`request_id` to `txn`.
pub fn claim_request(txn: Txn, kind: &str, request_id: Option<&str>, request: &CreatorRequest) -> Txn {
    match request_id {
        None => txn,
        Some(id) => {
            let key = keys::creator_request(kind, id);
            txn.when(Compare::absent(key.clone())).then(put(key, request))
        }
    }
}
