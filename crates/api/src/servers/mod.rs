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

pub(crate) use sweep::disconnect_at;
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

/// Two servers over one store: the registry, session ownership and the sweep.
#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use flotilla_model::ContainerInstance;
    use flotilla_store::{MemoryStore, Op, Store, Txn};

    use super::*;
    use crate::context::Clock;
    use crate::gateway::{claim, reclaim_if_swept, release};
    use crate::server::{build_ctx, AuthMode, ServerConfig};
    use crate::state::keys;
    use crate::state::records::InstanceRecord;

    fn config() -> ServerConfig {
        let mut config = ServerConfig::new(
            std::env::temp_dir(),
            crate::RootCredentials { access_key_id: "AKID".into(), secret_access_key: "secret".into() },
        );
        config.auth = AuthMode::Disabled;
        config
    }

    /// Two servers' contexts over one store, reading one clock the test moves.
    async fn two_servers() -> (Ctx, Ctx, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(1_000_000));
        let n = now.clone();
        let clock = Clock::from_fn(move || n.load(Ordering::SeqCst));
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let a = build_ctx(store.clone(), &config(), clock.clone()).await.expect("server a");
        let b = build_ctx(store, &config(), clock).await.expect("server b");
        (a, b, now)
    }

    /// Registers an instance `id` of cluster `default`; returns its key and ARN.
    async fn instance(ctx: &Ctx, id: &str, connected: bool) -> (String, String) {
        let key = keys::instance("default", id);
        let arn = ctx.arns.container_instance("default", id);
        let rec = InstanceRecord {
            instance: ContainerInstance {
                container_instance_arn: Some(arn.clone()),
                status: Some("ACTIVE".into()),
                agent_connected: Some(connected),
                ..Default::default()
            },
            agent_address: None,
            session_server: None,
        };
        ctx.commit(Txn::new().then(Op::put(key.clone(), encode(&rec)))).await.expect("put");
        (key, arn)
    }

    /// What `ctx` sees of an instance once it has caught up with the store: connected, and where.
    async fn seen(ctx: &Ctx, key: &str) -> (bool, Option<String>) {
        ctx.caught_up(ctx.store.revision()).await.expect("caught up");
        let ix = ctx.cache.read();
        let rec = &ix.instances.get(key).expect("instance").value;
        (rec.instance.agent_connected == Some(true), rec.session_server.clone())
    }

    #[tokio::test]
    async fn the_old_servers_session_end_does_not_disconnect_an_agent_that_moved() {
        let (a, b, _) = two_servers().await;
        let (key, _) = instance(&a, "i1", false).await;
        claim(&a, &key, "a").await.unwrap();
        assert_eq!(seen(&b, &key).await, (true, Some("a".into())));
        // The agent moves to b; a notices its session ended only afterwards.
        claim(&b, &key, "b").await.unwrap();
        assert!(!release(&a, &key, "a").await.unwrap(), "a's session end writes nothing");
        assert_eq!(seen(&a, &key).await, (true, Some("b".into())));
        // b's own session end does disconnect it.
        assert!(release(&b, &key, "b").await.unwrap());
        assert_eq!(seen(&a, &key).await, (false, None));
        assert!(!release(&b, &key, "b").await.unwrap(), "a second end writes nothing");
    }

    #[tokio::test]
    async fn a_release_on_a_stale_cache_still_sees_the_move() {
        let (a, b, _) = two_servers().await;
        let (key, _) = instance(&a, "i1", false).await;
        claim(&a, &key, "a").await.unwrap();
        // b claims through the store directly, so a's cache may not show it yet: the compare on the
        // revision makes a read again rather than overwrite.
        claim(&b, &key, "b").await.unwrap();
        release(&a, &key, "a").await.unwrap();
        assert_eq!(seen(&b, &key).await, (true, Some("b".into())));
    }

    #[tokio::test]
    async fn the_registry_reflects_heartbeats_and_withdrawals() {
        let (a, b, now) = two_servers().await;
        let t0 = now.load(Ordering::SeqCst);
        beat(&a, &ServerInfo::new("a", "http://a:1", t0)).await.unwrap();
        beat(&b, &ServerInfo::new("b", "http://b:1", t0)).await.unwrap();
        let ids = |v: Vec<ServerInfo>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(ids(live(&a).await.unwrap()), ["a", "b"]);
        let got = registered(&b).await.unwrap();
        assert_eq!(got[0], ServerInfo::new("a", "http://a:1", t0));

        now.store(t0 + SERVER_LIVE_MS, Ordering::SeqCst);
        beat(&b, &ServerInfo::new("b", "http://b:1", t0)).await.unwrap();
        assert_eq!(ids(live(&a).await.unwrap()), ["a", "b"], "a heartbeat exactly SERVER_LIVE_MS old still counts");
        now.store(t0 + SERVER_LIVE_MS + 1, Ordering::SeqCst);
        assert_eq!(ids(live(&a).await.unwrap()), ["b"], "a's heartbeat went stale");
        let b_info = registered(&a).await.unwrap().into_iter().find(|s| s.id == "b").unwrap();
        assert_eq!((b_info.started_at_ms, b_info.heartbeat_at_ms), (t0, t0 + SERVER_LIVE_MS));

        withdraw(&b, "b").await.unwrap();
        assert_eq!(ids(registered(&a).await.unwrap()), ["a"]);
        assert!(live(&a).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_heartbeat_loop_keeps_the_key_fresh() {
        let (a, _b, now) = two_servers().await;
        let beats = tokio::spawn(heartbeat(a.clone(), ServerInfo::new("a", "http://a:1", 0)));
        let fresh = |at: i64| {
            let a = a.clone();
            async move { registered(&a).await.unwrap().iter().any(|s| s.id == "a" && s.heartbeat_at_ms == at) }
        };
        let t1 = now.load(Ordering::SeqCst) + 60_000;
        now.store(t1, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(10), async {
            while !fresh(t1).await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the loop writes a heartbeat at the clock's new time");
        beats.abort();
    }

    #[tokio::test]
    async fn the_sweep_disconnects_a_dead_servers_agents_and_leaves_a_live_ones() {
        let (a, b, now) = two_servers().await;
        let t0 = now.load(Ordering::SeqCst);
        let (on_a, _) = instance(&a, "i1", false).await;
        let (on_b, _) = instance(&a, "i2", false).await;
        let (legacy, _) = instance(&a, "i3", true).await;
        let (idle, _) = instance(&a, "i4", false).await;
        start(&a, &ServerInfo::new("a", "http://a:1", t0)).await.unwrap();
        start(&b, &ServerInfo::new("b", "http://b:1", t0)).await.unwrap();
        assert_eq!(seen(&a, &legacy).await, (false, None), "a connected instance naming no server is swept at start");
        claim(&a, &on_a, "a").await.unwrap();
        claim(&b, &on_b, "b").await.unwrap();
        assert_eq!(sweep(&a).await.unwrap(), 0, "both servers are live");

        // a stops beating (killed); b goes on.
        now.store(t0 + SERVER_LIVE_MS + 1, Ordering::SeqCst);
        beat(&b, &ServerInfo::new("b", "http://b:1", t0)).await.unwrap();
        assert_eq!(sweep(&b).await.unwrap(), 1);
        assert_eq!(seen(&b, &on_a).await, (false, None));
        assert_eq!(seen(&b, &on_b).await, (true, Some("b".into())));
        assert_eq!(seen(&b, &idle).await, (false, None));
        assert_eq!(sweep(&b).await.unwrap(), 0, "nothing left to sweep");

        // b shuts down cleanly: its key is gone, so its agents are swept at once.
        withdraw(&b, "b").await.unwrap();
        assert_eq!(sweep(&a).await.unwrap(), 1);
        assert_eq!(seen(&a, &on_b).await, (false, None));
    }

    #[tokio::test]
    async fn a_server_starting_under_a_used_id_lets_go_of_that_ids_sessions() {
        let (a, b, now) = two_servers().await;
        let t0 = now.load(Ordering::SeqCst);
        let (key, _) = instance(&a, "i1", false).await;
        start(&a, &ServerInfo::new("a", "http://a:1", t0)).await.unwrap();
        claim(&a, &key, "a").await.unwrap();
        // A new process under the same id: the registry says "a" is live, but it holds no session.
        start(&b, &ServerInfo::new("a", "http://a:1", t0)).await.unwrap();
        assert_eq!(seen(&b, &key).await, (false, None));
    }

    #[tokio::test]
    async fn a_session_outliving_a_sweep_of_its_server_claims_its_instance_again() {
        let (a, b, _) = two_servers().await;
        let (key, _) = instance(&a, "i1", false).await;
        claim(&a, &key, "a").await.unwrap();
        // No registry entry for "a": swept as dead (a stall).
        assert_eq!(sweep(&b).await.unwrap(), 1);
        assert!(reclaim_if_swept(&a, &key, "a").await.unwrap());
        assert_eq!(seen(&b, &key).await, (true, Some("a".into())));
        assert!(!reclaim_if_swept(&a, &key, "a").await.unwrap(), "nothing to claim back now");
        // Once the agent is with b, a's lingering session does not take it back.
        claim(&b, &key, "b").await.unwrap();
        a.caught_up(a.store.revision()).await.unwrap();
        assert!(!reclaim_if_swept(&a, &key, "a").await.unwrap());
        assert_eq!(seen(&a, &key).await, (true, Some("b".into())));
    }

    #[tokio::test]
    async fn the_holder_of_a_session_is_the_live_server_the_instance_names() {
        let (a, b, now) = two_servers().await;
        let t0 = now.load(Ordering::SeqCst);
        let (key, arn) = instance(&a, "i1", false).await;
        start(&a, &ServerInfo::new("a", "http://a:1", t0)).await.unwrap();
        start(&b, &ServerInfo::new("b", "http://b:1", t0)).await.unwrap();
        assert_eq!(forward::holder(&a, "a", &arn).await.unwrap(), None, "nobody holds it");
        claim(&b, &key, "b").await.unwrap();
        a.caught_up(a.store.revision()).await.unwrap();
        let held = forward::holder(&a, "a", &arn).await.unwrap().expect("b holds it");
        assert_eq!((held.id.as_str(), held.url.as_str()), ("b", "http://b:1"));
        assert_eq!(forward::holder(&b, "b", &arn).await.unwrap(), None, "b holds it itself");
        now.store(t0 + SERVER_LIVE_MS + 1, Ordering::SeqCst);
        beat(&a, &ServerInfo::new("a", "http://a:1", t0)).await.unwrap();
        assert_eq!(forward::holder(&a, "a", &arn).await.unwrap(), None, "a dead server holds nothing");
    }
}
