//! Join tokens: `FLTJ1.<id>.<cluster>.<expires>.<hmac>`, where the HMAC-SHA256 under the root
//! secret covers the id, cluster and expiry (seconds since the epoch), so a token cannot be made
//! or altered without the root key. Its record (`identity/token/<id>`) says whether it was
//! revoked; a token whose record is gone or revoked, or whose time has passed, joins nothing.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::access_denied;
use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::state::codec::{decode, encode};
use flotilla_store::{Compare, Op, Txn};

const PREFIX: &str = "FLTJ1";
pub const KEY_PREFIX: &str = "identity/token/";
/// A token's lifetime when the request does not say.
pub const DEFAULT_TTL_SECS: u64 = 24 * 3600;
/// The longest lifetime accepted: a token is a bearer secret, so it should not outlive a year.
pub const MAX_TTL_SECS: u64 = 365 * 24 * 3600;
/// The "cluster" of a token for load balancer nodes (`flotilla token create --lb`): like the
/// Fargate pool's, a name no cluster can take (it holds a dot), so the token's signature binds
/// it to load balancer nodes and it can never register a container instance.
pub const LOAD_BALANCER_NODES: &str = "elbv2.nodes";

/// A token's stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub id: String,
    pub cluster: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

impl TokenRecord {
    pub fn status(&self, now_ms: i64) -> &'static str {
        if self.revoked_at.is_some() {
            "REVOKED"
        } else if now_ms >= self.expires_at {
            "EXPIRED"
        } else {
            "ACTIVE"
        }
    }
}

/// Signs and checks tokens with the root secret.
#[derive(Clone)]
pub struct TokenSigner {
    secret: Vec<u8>,
}

impl TokenSigner {
    pub fn new(root_secret: &str) -> Self {
        TokenSigner { secret: format!("flotilla-join-token:{root_secret}").into_bytes() }
    }

    fn mac(&self, id: &str, cluster: &str, expires_secs: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(format!("{PREFIX}\n{id}\n{cluster}\n{expires_secs}").as_bytes());
        mac
    }

    pub fn token(&self, record: &TokenRecord) -> String {
        let expires = record.expires_at / 1000;
        let sig = hex::encode(self.mac(&record.id, &record.cluster, expires).finalize().into_bytes());
        format!("{PREFIX}.{}.{}.{expires}.{sig}", record.id, record.cluster)
    }

    /// The id and cluster of a token this server signed, or why it is refused.
    fn open<'a>(&self, token: &'a str) -> ApiResult<(&'a str, &'a str, i64)> {
        let bad = || access_denied("The join token is not valid.");
        // The expiry and signature from the right, the prefix and id from the left: what is left
        // between them is the cluster, whose name may hold a dot (the Fargate pool's does).
        let mut tail = token.trim().rsplitn(3, '.');
        let (Some(sig), Some(expires), Some(head)) = (tail.next(), tail.next(), tail.next()) else {
            return Err(bad());
        };
        let mut parts = head.splitn(3, '.');
        let (Some(PREFIX), Some(id), Some(cluster)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        if id.contains('.') || cluster.is_empty() {
            return Err(bad());
        }
        let expires: i64 = expires.parse().map_err(|_| bad())?;
        let sig = hex::decode(sig).map_err(|_| bad())?;
        // verify_slice compares in constant time.
        self.mac(id, cluster, expires).verify_slice(&sig).map_err(|_| bad())?;
        Ok((id, cluster, expires))
    }
}

fn key(id: &str) -> String {
    format!("{KEY_PREFIX}{id}")
}

/// Mints a token for `cluster` that expires `ttl_secs` from now.
pub async fn create(ctx: &Ctx, signer: &TokenSigner, cluster: &str, ttl_secs: u64) -> ApiResult<(TokenRecord, String)> {
    if ttl_secs == 0 || ttl_secs > MAX_TTL_SECS {
        return Err(ApiError::invalid_parameter(format!(
            "ttlSeconds must be between 1 and {MAX_TTL_SECS}; got {ttl_secs}."
        )));
    }
    if crate::domain::fargate::is_pool(cluster) {
        // The first token for the Fargate pool brings the pool into being.
        crate::domain::fargate::ensure_pool(ctx).await?;
    }
    let cluster = match cluster {
        LOAD_BALANCER_NODES => cluster.to_string(),
        _ => crate::domain::lookup::host_cluster(ctx, Some(cluster))?.0,
    };
    let now = ctx.clock.now_ms();
    let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    // Whole seconds, so the expiry in the token and in the record agree.
    let expires_at = (now / 1000 + ttl_secs as i64) * 1000;
    let record = TokenRecord { id: id.clone(), cluster, created_at: now, expires_at, revoked_at: None };
    let txn = Txn::new().when(Compare::absent(key(&id))).then(Op::put(key(&id), encode(&record)));
    ctx.store.txn(txn).await?;
    let token = signer.token(&record);
    Ok((record, token))
}

pub async fn list(ctx: &Ctx) -> ApiResult<Vec<TokenRecord>> {
    let listing = ctx.store.list(KEY_PREFIX).await?;
    let mut out: Vec<TokenRecord> = Vec::new();
    for kv in listing.kvs {
        out.push(decode(&kv.key, &kv.value).map_err(|e| ApiError::server(e.to_string()))?);
    }
    out.sort_by_key(|t| t.created_at);
    Ok(out)
}

/// Marks a token revoked; revoking it again changes nothing.
pub async fn revoke(ctx: &Ctx, id: &str) -> ApiResult<TokenRecord> {
    for _ in 0..crate::context::MAX_CAS_ATTEMPTS {
        let kv = ctx
            .store
            .get(&key(id))
            .await?
            .ok_or_else(|| ApiError::resource_not_found(format!("Join token {id} does not exist.")))?;
        let mut record: TokenRecord = decode(&kv.key, &kv.value).map_err(|e| ApiError::server(e.to_string()))?;
        if record.revoked_at.is_some() {
            return Ok(record);
        }
        record.revoked_at = Some(ctx.clock.now_ms());
        let txn = Txn::new().when(Compare::unchanged(key(id), kv.mod_revision)).then(Op::put(key(id), encode(&record)));
        if let flotilla_store::TxnOutcome::Committed { .. } = ctx.store.txn(txn).await? {
            return Ok(record);
        }
    }
    Err(ApiError::server("The token changed too often to revoke; try again."))
}

/// The record of a token that may join now, or why it may not.
pub async fn check(ctx: &Ctx, signer: &TokenSigner, token: &str) -> ApiResult<TokenRecord> {
    let (id, cluster, expires) = signer.open(token)?;
    let kv = ctx.store.get(&key(id)).await?.ok_or_else(|| access_denied("The join token is not valid."))?;
    let record: TokenRecord = decode(&kv.key, &kv.value).map_err(|e| ApiError::server(e.to_string()))?;
    if record.cluster != cluster || record.expires_at / 1000 != expires {
        return Err(access_denied("The join token is not valid."));
    }
    match record.status(ctx.clock.now_ms()) {
        "REVOKED" => Err(access_denied(format!("The join token {id} was revoked."))),
        "EXPIRED" => Err(access_denied(format!("The join token {id} has expired."))),
        _ => Ok(record),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> TokenRecord {
        TokenRecord { id: "abc".into(), cluster: "prod".into(), created_at: 0, expires_at: 5_000, revoked_at: None }
    }

    #[test]
    fn a_token_opens_only_with_the_secret_that_signed_it() {
        let signer = TokenSigner::new("secret");
        let token = signer.token(&record());
        assert_eq!(signer.open(&token).unwrap(), ("abc", "prod", 5));
        assert!(TokenSigner::new("other").open(&token).is_err());
        // Moving the token to another cluster or a later expiry breaks its signature.
        assert!(signer.open(&token.replace(".prod.", ".dev.")).is_err());
        assert!(signer.open(&token.replace(".5.", ".6.")).is_err());
        assert!(signer.open("FLTJ1.abc").is_err());
        assert!(signer.open("").is_err());
    }

    #[test]
    fn a_token_for_the_fargate_pool_opens_though_its_name_holds_a_dot() {
        let signer = TokenSigner::new("secret");
        let pool = TokenRecord { cluster: crate::domain::fargate::FARGATE_POOL.into(), ..record() };
        let token = signer.token(&pool);
        assert_eq!(signer.open(&token).unwrap(), ("abc", "fargate.pool", 5));
        assert!(signer.open(&token.replace(".fargate.pool.", ".fargate.").replace(".pool.", ".")).is_err());
        assert!(signer.open(&token.replace(".abc.", ".ab.c.")).is_err(), "the id is moved into the cluster");
    }
}
