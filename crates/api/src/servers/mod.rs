//! The registry of live servers: with several `flotilla server`s on one store, each says who it is,
//! where it answers, and that it is still alive.
//!
//! Every server writes `control/servers/<server_id>` ([`ServerInfo`]) when it starts
//! ([`start`]), refreshes it every [`HEARTBEAT`] ([`heartbeat`], a loop every server runs) and
//! deletes it on a clean shutdown ([`withdraw`]). A server whose heartbeat is older than
//! [`SERVER_LIVE_MS`] is dead to the others, whether it was killed or stalled. Container instances
//! record which server holds their agent's session (`InstanceRecord::session_server`): the
//! leader's [`sweep`] disconnects the instances of dead servers, and a log read reaches an agent
//! through the server that holds its session ([`forward`]).
//!
//! The registry is read straight from the store (`list` under [`PREFIX`]) rather than kept in a
//! watched map: it is a handful of keys, read once a second by the sweep and once per forwarded
//! log read, and a direct read is never behind a server that just started or stopped.
//!
//! Liveness compares a heartbeat's time, written by its server's clock, with the reader's clock:
//! servers of one control plane are expected to keep their clocks within a second or two of each
//! other (NTP), well inside [`SERVER_LIVE_MS`].

pub mod forward;
mod sweep;

use std::time::Duration;

use flotilla_store::{Op, Txn};
use serde::{Deserialize, Serialize};

use crate::context::Ctx;
use crate::error::ApiResult;
use crate::state::codec::{decode, encode};
use crate::supervisor::{LoopError, LoopHandle};

pub use sweep::{disown, run, sweep};

/// Where the registry lives.
pub const PREFIX: &str = "control/servers/";
/// How often a server refreshes its registry key.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How old a heartbeat may be before its server counts as gone.
pub const SERVER_LIVE_MS: i64 = 5_000;
/// The name of the heartbeat loop (every server runs it).
pub const HEARTBEAT_LOOP: &str = "server-heartbeat";
/// The name of the sweep loop (the leader runs it).
pub const SWEEP_LOOP: &str = "session-sweep";

/// One server, as it registers itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    pub id: String,
    /// Where the other servers reach its API (`--advertise-url`).
    pub url: String,
    pub started_at_ms: i64,
    pub heartbeat_at_ms: i64,
}

impl ServerInfo {
    /// A server starting now.
    pub fn new(id: &str, url: &str, now_ms: i64) -> Self {
        ServerInfo { id: id.into(), url: url.into(), started_at_ms: now_ms, heartbeat_at_ms: now_ms }
    }

    /// Whether its heartbeat is recent enough at `now_ms`.
    pub fn is_live(&self, now_ms: i64) -> bool {
        now_ms - self.heartbeat_at_ms <= SERVER_LIVE_MS
    }
}

/// The registry key of server `id`.
pub fn key(id: &str) -> String {
    format!("{PREFIX}{id}")
}

/// Writes `info` with a heartbeat of now.
pub async fn beat(ctx: &Ctx, info: &ServerInfo) -> ApiResult<()> {
    let info = ServerInfo { heartbeat_at_ms: ctx.clock.now_ms(), ..info.clone() };
    ctx.store.txn(Txn::new().then(Op::put(key(&info.id), encode(&info)))).await?;
    Ok(())
}

/// Removes server `id` from the registry (a clean shutdown): the others see it gone at once.
pub async fn withdraw(ctx: &Ctx, id: &str) -> ApiResult<()> {
    ctx.store.txn(Txn::new().then(Op::delete(key(id)))).await?;
    Ok(())
}

/// Every registered server, live or not; a value that does not decode is skipped.
pub async fn registered(ctx: &Ctx) -> ApiResult<Vec<ServerInfo>> {
    let listing = ctx.store.list(PREFIX).await?;
    Ok(listing
        .kvs
        .iter()
        .filter_map(|kv| match decode::<ServerInfo>(&kv.key, &kv.value) {
            Ok(info) => Some(info),
            Err(e) => {
                tracing::warn!(key = %kv.key, error = %e, "skipping a server registration that does not decode");
                None
            }
        })
        .collect())
}

/// The servers whose heartbeat is within [`SERVER_LIVE_MS`] of now.
pub async fn live(ctx: &Ctx) -> ApiResult<Vec<ServerInfo>> {
    let now = ctx.clock.now_ms();
    Ok(registered(ctx).await?.into_iter().filter(|s| s.is_live(now)).collect())
}

/// What a server does before it serves: registers itself, lets go of the sessions a previous
/// process under the same id held (this one holds none yet), and sweeps the sessions of servers
/// already gone, so that a lone server restarting marks its agents disconnected at once (the
/// previous process withdrew) or as soon as the previous process's heartbeat goes stale.
/// Registering first matters: a session this server records must never name a server missing
/// from the registry, or a sweep would disconnect it.
pub async fn start(ctx: &Ctx, info: &ServerInfo) -> ApiResult<()> {
    beat(ctx, info).await?;
    disown(ctx, &info.id).await?;
    sweep(ctx).await?;
    Ok(())
}

/// Starts the heartbeat loop under the supervisor (every server runs it).
pub fn spawn_heartbeat(ctx: &Ctx, info: ServerInfo) -> LoopHandle {
    let c = ctx.clone();
    ctx.loops.spawn(HEARTBEAT_LOOP, move || heartbeat(c.clone(), info.clone()))
}

/// The heartbeat loop: refreshes `info`'s registry key every [`HEARTBEAT`].
pub async fn heartbeat(ctx: Ctx, info: ServerInfo) -> Result<(), LoopError> {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        beat(&ctx, &info).await?;
    }
}

#[cfg(test)]
mod tests;
