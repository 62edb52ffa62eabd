//! `agentConnected` on container instances: true while a session is up, false otherwise.

use flotilla_store::{Compare, Op, Txn};

use crate::context::{Ctx, MAX_CAS_ATTEMPTS};
use crate::error::ApiResult;
use crate::state::cache::range_prefix;
use crate::state::codec::encode;
use crate::state::keys;

/// Sets an instance's `agentConnected`; does nothing if it already says so or is gone.
pub async fn set_connected(ctx: &Ctx, key: &str, connected: bool) -> ApiResult<()> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some(entry) = ctx.cache.read().instances.get(key).cloned() else { return Ok(()) };
        if entry.value.instance.agent_connected == Some(connected) {
            return Ok(());
        }
        let mut rec = (*entry.value).clone();
        rec.instance.agent_connected = Some(connected);
        rec.instance.version = Some(rec.instance.version.unwrap_or(0) + 1);
        let txn = Txn::new().when(Compare::unchanged(key, entry.revision)).then(Op::put(key, encode(&rec)));
        if ctx.commit(txn).await?.is_some() {
            return Ok(());
        }
    }
    Ok(())
}

/// At start no agent is connected yet, whatever the store says from before a restart.
pub async fn mark_all_disconnected(ctx: &Ctx) -> ApiResult<()> {
    let connected: Vec<String> = {
        let ix = ctx.cache.read();
        range_prefix(&ix.instances, keys::INSTANCE)
            .filter(|(_, e)| e.value.instance.agent_connected == Some(true))
            .map(|(k, _)| k.clone())
            .collect()
    };
    for key in connected {
        set_connected(ctx, &key, false).await?;
    }
    Ok(())
}
