//! The access key pair a joined load balancer node receives (`identity/lb-key/<access key id>`),
//! bound to the node's id. It signs the node's `/v1/lb/*` calls and nothing else: the principal
//! it maps to, [`Principal::LoadBalancerNode`], is refused by the ECS API, the other services
//! and the agent session. The ELBv2 crate issues these when a node joins with a token minted for
//! [`super::tokens::LOAD_BALANCER_NODES`], and keeps the node's own record under `elbv2/node/`.

use flotilla_store::{Compare, Op, Txn};
use serde::{Deserialize, Serialize};

use super::random;
use crate::context::Ctx;
use crate::error::ApiResult;
use crate::state::codec::encode;

pub const KEY_PREFIX: &str = "identity/lb-key/";
/// Node access key ids start with this (instance ones with `FLTI`, root ones never with either).
pub const ACCESS_KEY_PREFIX: &str = "FLTL";

/// A node's key pair and the node it speaks for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub node_id: String,
    /// The join token it was issued for (none when minted in-process by `flotilla up`).
    #[serde(default)]
    pub token_id: Option<String>,
    pub created_at: i64,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey")
            .field("access_key_id", &self.access_key_id)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

pub(crate) fn key(access_key_id: &str) -> String {
    format!("{KEY_PREFIX}{access_key_id}")
}

/// Issues a new key pair for the load balancer node `node_id` and stores it.
pub async fn issue(ctx: &Ctx, node_id: &str, token_id: Option<&str>) -> ApiResult<NodeKey> {
    let record = NodeKey {
        access_key_id: format!("{ACCESS_KEY_PREFIX}{}", random(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")),
        secret_access_key: random(40, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"),
        node_id: node_id.to_string(),
        token_id: token_id.map(str::to_string),
        created_at: ctx.clock.now_ms(),
    };
    let k = key(&record.access_key_id);
    ctx.store.txn(Txn::new().when(Compare::absent(k.clone())).then(Op::put(k, encode(&record)))).await?;
    Ok(record)
}
