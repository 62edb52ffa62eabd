//! The access key pair a joined agent receives, bound to its container instance
//! (`identity/key/<access key id>`). The [`Keyring`] finds a key's secret for SigV4 and says
//! which instance it speaks for; a key whose instance is deregistered (or gone) is refused, so
//! deregistering an instance revokes its credentials.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use flotilla_store::{Compare, Op, Store, Txn};
use serde::{Deserialize, Serialize};

use super::node_keys::{self, NodeKey};
use super::{access_denied, random, Principal};
use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::state::codec::{decode, encode};
use crate::state::keys;

pub const KEY_PREFIX: &str = "identity/key/";
/// Instance access key ids start with this, root ones never do (theirs start `FLTA` or are the
/// operator's own).
pub const ACCESS_KEY_PREFIX: &str = "FLTI";

/// An instance's key pair and what it is bound to.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub cluster: String,
    pub container_instance_arn: String,
    /// The join token it was issued for.
    pub token_id: String,
    pub created_at: i64,
}

impl std::fmt::Debug for InstanceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceKey")
            .field("access_key_id", &self.access_key_id)
            .field("container_instance_arn", &self.container_instance_arn)
            .finish_non_exhaustive()
    }
}

fn key(access_key_id: &str) -> String {
    format!("{KEY_PREFIX}{access_key_id}")
}

/// Issues a new key pair for the instance and stores it.
pub async fn issue(ctx: &Ctx, cluster: &str, instance_arn: &str, token_id: &str) -> ApiResult<InstanceKey> {
    let record = InstanceKey {
        access_key_id: format!("{ACCESS_KEY_PREFIX}{}", random(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")),
        secret_access_key: random(40, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"),
        cluster: cluster.to_string(),
        container_instance_arn: instance_arn.to_string(),
        token_id: token_id.to_string(),
        created_at: ctx.clock.now_ms(),
    };
    let k = key(&record.access_key_id);
    ctx.store.txn(Txn::new().when(Compare::absent(k.clone())).then(Op::put(k, encode(&record)))).await?;
    Ok(record)
}

/// Instance and load balancer node keys by access key id, read through from the store (keys are
/// immutable once issued, so a copy never goes stale; whether the instance is still registered
/// is asked each time).
pub struct Keyring {
    store: Arc<dyn Store>,
    keys: RwLock<HashMap<String, Arc<InstanceKey>>>,
    nodes: RwLock<HashMap<String, Arc<NodeKey>>>,
}

impl Keyring {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Keyring { store, keys: RwLock::default(), nodes: RwLock::default() }
    }

    /// Loads `access_key_id` from the store if it is an instance or node key not seen yet.
    pub async fn load(&self, access_key_id: &str) -> ApiResult<()> {
        if access_key_id.starts_with(node_keys::ACCESS_KEY_PREFIX) && self.node(access_key_id).is_none() {
            if let Some(kv) = self.store.get(&node_keys::key(access_key_id)).await? {
                let record: NodeKey = decode(&kv.key, &kv.value).map_err(|e| ApiError::server(e.to_string()))?;
                crate::locks::write(&self.nodes).insert(access_key_id.to_string(), Arc::new(record));
            }
            return Ok(());
        }
        if !access_key_id.starts_with(ACCESS_KEY_PREFIX) || self.get(access_key_id).is_some() {
            return Ok(());
        }
        if let Some(kv) = self.store.get(&key(access_key_id)).await? {
            let record: InstanceKey = decode(&kv.key, &kv.value).map_err(|e| ApiError::server(e.to_string()))?;
            crate::locks::write(&self.keys).insert(access_key_id.to_string(), Arc::new(record));
        }
        Ok(())
    }

    pub fn get(&self, access_key_id: &str) -> Option<Arc<InstanceKey>> {
        crate::locks::read(&self.keys).get(access_key_id).cloned()
    }

    /// A load balancer node's key, once loaded.
    pub fn node(&self, access_key_id: &str) -> Option<Arc<NodeKey>> {
        crate::locks::read(&self.nodes).get(access_key_id).cloned()
    }

    /// The principal of a verified instance key, if its instance is still registered.
    pub fn principal(&self, ctx: &Ctx, record: &InstanceKey) -> ApiResult<Principal> {
        let id = flotilla_model::arn::short_id(&record.container_instance_arn);
        let ix = ctx.cache.read();
        let active = ix
            .instances
            .get(&keys::instance(&record.cluster, id))
            .is_some_and(|e| e.value.instance.status.as_deref() != Some("INACTIVE"));
        if !active {
            return Err(access_denied(format!(
                "The credentials of container instance {} were revoked when it was deregistered.",
                record.container_instance_arn
            )));
        }
        Ok(Principal::Instance { cluster: record.cluster.clone(), instance_arn: record.container_instance_arn.clone() })
    }
}
