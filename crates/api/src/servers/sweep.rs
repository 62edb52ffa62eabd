//! Disconnecting the instances whose agent session was on a server that is gone.
//!
//! A session's own end marks its instance disconnected, but a server that is killed ends no
//! session cleanly. The sweep (a loop on the leader, [`run`]) marks disconnected every instance
//! that says `agentConnected` while naming no server, or a server missing from the registry or
//! whose heartbeat is stale. Its agent, if alive, has already moved to another server (whose
//! session claimed the instance, so the sweep leaves it alone) or will, and claim it then.
//!
//! Instances are read before the registry: a session is recorded only after its server
//! registered, so any session the cache shows has its server in the registry read after it,
//! unless that server has gone since. Each write compares the revision the instance was judged
//! at, so a session that claimed it meanwhile wins.

use std::collections::HashSet;
use std::sync::Arc;

use flotilla_store::{Compare, Op, Revision, Txn};

use crate::context::Ctx;
use crate::error::ApiResult;
use crate::state::cache::range_prefix;
use crate::state::codec::encode;
use crate::state::keys;
use crate::state::records::InstanceRecord;
use crate::supervisor::LoopError;

/// An instance that says it is connected, as the cache shows it.
struct Connected {
    key: String,
    revision: Revision,
    rec: Arc<InstanceRecord>,
}

fn connected(ctx: &Ctx, holder: impl Fn(Option<&str>) -> bool) -> Vec<Connected> {
    let ix = ctx.cache.read();
    range_prefix(&ix.instances, keys::INSTANCE)
        .filter(|(_, e)| e.value.instance.agent_connected == Some(true))
        .filter(|(_, e)| holder(e.value.session_server.as_deref()))
        .map(|(k, e)| Connected { key: k.clone(), revision: e.revision, rec: e.value.clone() })
        .collect()
}

async fn disconnect(ctx: &Ctx, found: Vec<Connected>) -> ApiResult<usize> {
    let mut done = 0;
    for c in found {
        // One that changed since is judged again at the next sweep.
        if disconnect_at(ctx, &c.key, c.revision, &c.rec).await? {
            tracing::info!(instance = %c.key, server = ?c.rec.session_server, "agent's server is gone; agent marked disconnected");
            done += 1;
        }
    }
    Ok(done)
}

/// Marks an instance disconnected, with no session server, if it is still at `revision` (the
/// revision `rec` was read at); false if it changed since.
pub(crate) async fn disconnect_at(
    ctx: &Ctx,
    key: &str,
    revision: Revision,
    rec: &Arc<InstanceRecord>,
) -> ApiResult<bool> {
    let mut rec = (**rec).clone();
    rec.instance.agent_connected = Some(false);
    rec.session_server = None;
    rec.instance.version = Some(rec.instance.version.unwrap_or(0) + 1);
    let txn = Txn::new().when(Compare::unchanged(key, revision)).then(Op::put(key, encode(&rec)));
    Ok(ctx.commit(txn).await?.is_some())
}

/// Marks disconnected the instances whose session server is not live; returns how many.
pub async fn sweep(ctx: &Ctx) -> ApiResult<usize> {
    let found = connected(ctx, |_| true);
    if found.is_empty() {
        return Ok(0);
    }
    let live: HashSet<String> = super::live(ctx).await?.into_iter().map(|s| s.id).collect();
    let dead = found.into_iter().filter(|c| !c.rec.session_server.as_ref().is_some_and(|s| live.contains(s))).collect();
    disconnect(ctx, dead).await
}

/// Marks disconnected the instances whose session server `id` names: what a server starting
/// under an id a previous process used does, since it holds no session yet.
pub async fn disown(ctx: &Ctx, id: &str) -> ApiResult<usize> {
    disconnect(ctx, connected(ctx, |s| s == Some(id))).await
}

/// The sweep loop: once a [`super::HEARTBEAT`], on the leader.
pub async fn run(ctx: Ctx) -> Result<(), LoopError> {
    let mut tick = tokio::time::interval(super::HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sweep(&ctx).await?;
    }
}
