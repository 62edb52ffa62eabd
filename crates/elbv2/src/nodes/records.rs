//! The control plane's record of each joined load balancer node (`elbv2/node/<id>`): the address
//! it advertises, when it joined and when it was last heard from. Whether a node is live (heard
//! from within [`LIVE_MS`]) decides when a new load balancer turns `active`; the node's key pair
//! is the identity layer's (`flotilla_api::identity::node_keys`).

use flotilla_api::{ApiError, ApiResult, Ctx};
use flotilla_endpoints::codec::{decode, encode};
use flotilla_store::{Compare, Op, Txn};
use serde::{Deserialize, Serialize};

/// Where node records live.
pub const NODE_PREFIX: &str = "elbv2/node/";
/// A node heard from (a config fetch or a report) within this long is live.
pub const LIVE_MS: i64 = 30_000;

pub fn node_key(node_id: &str) -> String {
    format!("{NODE_PREFIX}{node_id}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// `lbn-` and hex digits.
    pub id: String,
    /// The IP address the node serves traffic on, as it said when it joined.
    pub advertise_address: String,
    pub joined_at_ms: i64,
    pub last_seen_ms: i64,
    /// The join token it came with (none when `flotilla up` minted its key in-process).
    #[serde(default)]
    pub token_id: Option<String>,
}

impl NodeRecord {
    pub fn is_live(&self, now_ms: i64) -> bool {
        now_ms - self.last_seen_ms < LIVE_MS
    }
}

/// Whether `id` is a node id this server could have minted: `lbn-` and 1 to 32 lowercase hex
/// digits (a node that rejoins names its old id).
pub fn valid_node_id(id: &str) -> bool {
    id.strip_prefix("lbn-").is_some_and(|hex| {
        (1..=32).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

pub fn new_node_id() -> String {
    format!("lbn-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

fn server(e: impl std::fmt::Display) -> ApiError {
    ApiError::server(e.to_string())
}

pub async fn get(ctx: &Ctx, node_id: &str) -> ApiResult<Option<(NodeRecord, u64)>> {
    let Some(kv) = ctx.store.get(&node_key(node_id)).await? else { return Ok(None) };
    Ok(Some((decode(&kv.value).map_err(server)?, kv.mod_revision)))
}

pub async fn list(ctx: &Ctx) -> ApiResult<Vec<NodeRecord>> {
    let listing = ctx.store.list(NODE_PREFIX).await?;
    listing.kvs.iter().map(|kv| decode(&kv.value).map_err(server)).collect()
}

/// Records a node that joins (or joins again under its old id, at a new address perhaps).
pub async fn register(
    ctx: &Ctx,
    node_id: &str,
    advertise_address: &str,
    token_id: Option<&str>,
) -> ApiResult<NodeRecord> {
    let now = ctx.clock.now_ms();
    for _ in 0..flotilla_api::context::MAX_CAS_ATTEMPTS {
        let existing = get(ctx, node_id).await?;
        let record = NodeRecord {
            id: node_id.to_string(),
            advertise_address: advertise_address.to_string(),
            joined_at_ms: existing.as_ref().map_or(now, |(r, _)| r.joined_at_ms),
            last_seen_ms: now,
            token_id: token_id.map(str::to_string),
        };
        let key = node_key(node_id);
        let txn = Txn::new()
            .when(Compare::unchanged(key.clone(), existing.map_or(0, |(_, rev)| rev)))
            .then(Op::put(key, encode(&record)));
        if let flotilla_store::TxnOutcome::Committed { .. } = ctx.store.txn(txn).await? {
            return Ok(record);
        }
    }
    Err(ApiError::server(format!("The record of load balancer node {node_id} changed too often to write; try again.")))
}

/// Sets a node's last-seen time; a node whose record is gone is left alone (it has to join).
pub async fn touch(ctx: &Ctx, node_id: &str, now_ms: i64) -> ApiResult<()> {
    let Some((mut record, rev)) = get(ctx, node_id).await? else { return Ok(()) };
    if record.last_seen_ms >= now_ms {
        return Ok(());
    }
    record.last_seen_ms = now_ms;
    let key = node_key(node_id);
    // Losing the race to another write of the same record is fine: that write is as recent.
    ctx.store.txn(Txn::new().when(Compare::unchanged(key.clone(), rev)).then(Op::put(key, encode(&record)))).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_lbn_and_hex() {
        assert!(valid_node_id(&new_node_id()));
        assert!(valid_node_id("lbn-0a"));
        assert!(!valid_node_id("lbn-"));
        assert!(!valid_node_id("lbn-XYZ"));
        assert!(!valid_node_id("node-00"));
        assert!(!valid_node_id(&format!("lbn-{}", "a".repeat(33))));
    }

    #[test]
    fn a_node_is_live_within_the_window_only() {
        let r = NodeRecord {
            id: "lbn-1".into(),
            advertise_address: "127.0.0.1".into(),
            joined_at_ms: 0,
            last_seen_ms: 1_000,
            token_id: None,
        };
        assert!(r.is_live(1_000 + LIVE_MS - 1));
        assert!(!r.is_live(1_000 + LIVE_MS));
    }
}
