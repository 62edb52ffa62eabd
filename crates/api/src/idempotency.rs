//! `clientToken` idempotency: the same token with the same request gets the same answer; the
//! same token with a different request is refused. The remembered answer is written in the same
//! transaction as the change it answers, so a retry after a crash sees one or the other whole.
//!
//! Records are kept for [`RETENTION`] and then forgotten by the reaper's sweep
//! ([`forget_expired`]): a token is for retrying one request, not a name held forever.

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::state::codec::encode;
use crate::state::keys;
use crate::state::records::IdempotencyRecord;
use flotilla_store::{Compare, Op, Revision};

/// How long a `clientToken` is remembered. The ECS API reference does not say how long its
/// clientToken idempotency lasts; 8 hours outlasts any client's retries by far.
pub const RETENTION: std::time::Duration = std::time::Duration::from_secs(8 * 3600);

/// Forgets the tokens remembered longer than `retention` ago (compare-and-swap deletes: a record
/// rewritten since it was read stays); returns how many were forgotten.
pub async fn forget_expired(ctx: &Ctx, retention: std::time::Duration) -> ApiResult<usize> {
    let cutoff_ms = ctx.clock.now_ms().saturating_sub(retention.as_millis() as i64);
    let expired: Vec<(String, Revision)> = ctx
        .cache
        .read()
        .idempotency
        .iter()
        .filter(|(_, e)| e.value.created_at_ms <= cutoff_ms)
        .map(|(k, e)| (k.clone(), e.revision))
        .collect();
    ctx.delete_unchanged(&expired).await
}

/// A hash of the request that identifies "the same request".
pub fn request_hash<T: Serialize>(req: &T) -> String {
    let bytes = serde_json::to_vec(req).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// The earlier answer for this token, if the same request already succeeded.
pub fn replay<R: DeserializeOwned>(ctx: &Ctx, operation: &str, token: &str, hash: &str) -> ApiResult<Option<R>> {
    let key = keys::idempotency(operation, token);
    let Some(entry) = ctx.cache.read().idempotency.get(&key).cloned() else { return Ok(None) };
    if entry.value.request_hash != hash {
        return Err(ApiError::invalid_parameter(
            "clientToken was already used with a different request; use a new token for a new request.",
        ));
    }
    serde_json::from_value(entry.value.response.clone())
        .map(Some)
        .map_err(|e| ApiError::server(format!("the remembered answer for this clientToken does not decode: {e}")))
}

/// The compare and put that remember `response` for this token, to add to the change's txn.
pub fn remember<R: Serialize>(ctx: &Ctx, operation: &str, token: &str, hash: &str, response: &R) -> (Compare, Op) {
    let key = keys::idempotency(operation, token);
    let record = IdempotencyRecord {
        request_hash: hash.to_string(),
        response: serde_json::to_value(response).unwrap_or_default(),
        created_at_ms: ctx.clock.now_ms(),
    };
    (Compare::absent(&key), Op::put(&key, encode(&record)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Clock;
    use flotilla_store::Txn;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    const HOUR_MS: i64 = 3_600_000;

    async fn remembered(ctx: &Ctx, token: &str, hash: &str) -> bool {
        let (compare, put) = remember(ctx, "RunTask", token, hash, &serde_json::json!({ "token": token }));
        ctx.commit(Txn::new().when(compare).then(put)).await.unwrap().is_some()
    }

    #[tokio::test]
    async fn tokens_are_forgotten_once_older_than_the_retention() {
        let now = Arc::new(AtomicI64::new(10 * HOUR_MS));
        let clock = now.clone();
        let ctx = crate::context::test_ctx(Clock::from_fn(move || clock.load(Ordering::SeqCst))).await;
        assert!(remembered(&ctx, "old", "h1").await);
        now.fetch_add(4 * HOUR_MS, Ordering::SeqCst);
        assert!(remembered(&ctx, "new", "h2").await);
        assert_eq!(forget_expired(&ctx, RETENTION).await.unwrap(), 0, "nothing is 8 hours old yet");
        assert!(replay::<serde_json::Value>(&ctx, "RunTask", "old", "h1").unwrap().is_some());

        now.fetch_add(4 * HOUR_MS, Ordering::SeqCst);
        assert_eq!(forget_expired(&ctx, RETENTION).await.unwrap(), 1);
        assert_eq!(replay::<serde_json::Value>(&ctx, "RunTask", "old", "h1").unwrap(), None, "forgotten");
        assert!(replay::<serde_json::Value>(&ctx, "RunTask", "new", "h2").unwrap().is_some(), "still remembered");
        // A forgotten token is free again, even for another request.
        assert!(remembered(&ctx, "old", "h3").await);
    }
}
