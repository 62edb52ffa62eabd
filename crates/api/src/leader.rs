//! Which server runs the loops that must run once: this server campaigns for leadership of the
//! background loops (one election, [`ELECTION`], for all of them) as its [`crate::Ctx::server_id`]
//! and holds each term it wins under the supervisor's loop `leadership`, so that the supervisor's
//! leader loops (`Supervisor::spawn_leader`) run while it leads and stop when it does not.
//!
//! A leader that stalls may not learn that its term ended before the next leader's began, so a
//! leader loop writes through a fenced context ([`crate::Ctx::fenced`]): its store,
//! [`FencedStore`], adds the term's fence to every transaction. A write the fence refuses is an
//! error, not a conflict to retry, and it ends the term in this process at once (every leader
//! loop stops); the server then campaigns again like any other follower.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use flotilla_store::{leader_key, Compare, KeyValue, Listing, Revision, Store, StoreError, Txn, TxnOutcome, Watch};

use crate::supervisor::{LoopError, Supervisor};

/// The election the servers sharing a store hold for the background loops.
pub const ELECTION: &str = "loops";

/// The supervisor's name for the loop that campaigns and holds the terms.
pub const LOOP: &str = "leadership";

/// What a write the fence refused fails with.
pub const NOT_LEADING: &str = "this server no longer leads; the new leader carries on";

/// Starts campaigning under `loops`, as `server_id`, for as long as `loops` lives (or until
/// [`Supervisor::resign`]). Only a weak hold on the store is kept between campaigns, so that a
/// server that shut down lets go of its store.
pub fn start(store: &Arc<dyn Store>, server_id: Arc<str>, loops: &Arc<Supervisor>) {
    let (store, sup) = (Arc::downgrade(store), Arc::downgrade(loops));
    let handle = loops.spawn(LOOP, move || hold_terms(store.clone(), server_id.clone(), sup.clone()));
    loops.hold_leadership(handle);
}

/// Campaign, lead until the term ends, campaign again. `Ok` once the store or supervisor is gone.
async fn hold_terms(store: Weak<dyn Store>, server_id: Arc<str>, loops: Weak<Supervisor>) -> Result<(), LoopError> {
    loop {
        let Some(s) = store.upgrade() else { return Ok(()) };
        tracing::info!(server = %server_id, "campaigning to lead the background loops");
        let lead = s.campaign(ELECTION, &server_id).await?;
        drop(s);
        let Some(sup) = loops.upgrade() else { return Ok(()) };
        let term = sup.begin_term(lead.fence().cloned());
        drop(sup);
        tracing::info!(server = %server_id, term = term.number(), fenced = lead.fence().is_some(), "this server leads: its leader loops start");
        tokio::select! {
            _ = lead.lost() => tracing::warn!(server = %server_id, term = term.number(), "this server's term ended (its lease was lost): its leader loops stop"),
            _ = term.ended() => tracing::warn!(server = %server_id, term = term.number(), "a write was refused by the fence: another server leads; this one stands down"),
        }
        // The loops stop before the lease is let go of.
        drop(term);
        drop(lead);
    }
}

/// The leader's id, as far as server `server_id` knows: itself while it leads, else the leader
/// key's value (absent on a store with nobody to elect, or between terms).
pub async fn leader_id(loops: &Supervisor, store: &dyn Store, server_id: &str) -> Option<String> {
    if loops.leads() {
        return Some(server_id.to_string());
    }
    let kv = store.get(&leader_key(ELECTION)).await.ok()??;
    Some(String::from_utf8_lossy(&kv.value).into_owned())
}

/// Whether `e` is a write refused by the leader fence (see [`FencedStore`]).
pub fn is_fenced_out(e: &StoreError) -> bool {
    matches!(e, StoreError::Io(m) if m == NOT_LEADING)
}

/// A store whose every transaction also requires the leader fence to hold.
pub struct FencedStore {
    inner: Arc<dyn Store>,
    fence: Compare,
    /// Told when the fence refuses a write, to end the term at once.
    loops: Arc<Supervisor>,
}

impl FencedStore {
    pub fn new(inner: Arc<dyn Store>, fence: Compare, loops: Arc<Supervisor>) -> Self {
        FencedStore { inner, fence, loops }
    }

    /// Whether the fence still holds in the store: a conflict may have been the fence's even
    /// when the store names another key (a backend need not tell which compare failed).
    async fn fence_holds(&self) -> Result<bool, StoreError> {
        let kv = self.inner.get(self.fence.key()).await?;
        Ok(holds(&self.fence, kv.as_ref()))
    }
}

fn holds(compare: &Compare, kv: Option<&KeyValue>) -> bool {
    match compare {
        Compare::ModRevision { revision, .. } => kv.map_or(0, |kv| kv.mod_revision) == *revision,
        Compare::CreateRevision { revision, .. } => kv.map_or(0, |kv| kv.create_revision) == *revision,
    }
}

#[async_trait]
impl Store for FencedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        self.inner.list(prefix).await
    }

    async fn scan(&self, prefix: &str, visit: &mut (dyn FnMut(Vec<KeyValue>) + Send)) -> Result<Revision, StoreError> {
        self.inner.scan(prefix, visit).await
    }

    async fn txn(&self, mut txn: Txn) -> Result<TxnOutcome, StoreError> {
        // First, so that a store that names the first compare to fail names the fence.
        txn.compares.insert(0, self.fence.clone());
        match self.inner.txn(txn).await? {
            TxnOutcome::Conflict { key } if key == self.fence.key() || !self.fence_holds().await? => {
                self.loops.fenced_out(&self.fence);
                Err(StoreError::Io(NOT_LEADING.into()))
            }
            outcome => Ok(outcome),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
        self.inner.watch(prefix, after).await
    }

    fn revision(&self) -> Revision {
        self.inner.revision()
    }

    async fn campaign(&self, election: &str, candidate: &str) -> Result<flotilla_store::Leadership, StoreError> {
        self.inner.campaign(election, candidate).await
    }
}

/// Leadership end to end inside one process: a store whose campaign the test decides (terms
/// begin when the test hands one over and end when it says so), the leader loops the supervisor
/// gates on it, and the fence on a leader's writes.
#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use flotilla_store::{Leadership, MemoryStore, Op};
    use tokio::sync::{mpsc, watch};

    use super::*;
    use crate::context::{test_ctx, test_ctx_over, Clock};
    use crate::supervisor::LoopState;

    /// A memory store whose campaigns wait for the test to hand over a term.
    struct Ballot {
        inner: MemoryStore,
        terms: tokio::sync::Mutex<mpsc::UnboundedReceiver<Leadership>>,
    }

    #[async_trait]
    impl Store for Ballot {
        async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
            self.inner.get(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
            self.inner.list(prefix).await
        }
        async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
            self.inner.txn(txn).await
        }
        async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
            self.inner.watch(prefix, after).await
        }
        fn revision(&self) -> Revision {
            self.inner.revision()
        }
        async fn campaign(&self, _election: &str, _candidate: &str) -> Result<Leadership, StoreError> {
            self.terms.lock().await.recv().await.ok_or(StoreError::Closed)
        }
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// Writes the leader key as `id` (as the next leader's campaign would) and returns the fence
    /// on it.
    async fn elect(store: &dyn Store, id: &str) -> Compare {
        let key = leader_key(ELECTION);
        // Deleted first, so that each election creates the key afresh (a new create revision).
        store.txn(Txn::new().then(Op::delete(&key))).await.expect("delete");
        match store.txn(Txn::new().then(Op::put(&key, id.as_bytes().to_vec()))).await.expect("put") {
            TxnOutcome::Committed { revision } => Compare::created(key, revision),
            other => panic!("electing: {other:?}"),
        }
    }

    fn put(key: &str) -> Txn {
        Txn::new().then(Op::put(key, b"1".to_vec()))
    }

    #[tokio::test]
    async fn a_leader_loop_runs_only_while_this_server_leads_and_is_dropped_when_the_term_ends() {
        let (give, terms) = mpsc::unbounded_channel();
        let ballot = Arc::new(Ballot { inner: MemoryStore::new(), terms: tokio::sync::Mutex::new(terms) });
        let ctx = test_ctx_over(ballot.clone(), Clock::system()).await;

        let runs = Arc::new(AtomicU32::new(0));
        let held = Arc::new(());
        let fences = Arc::new(Mutex::new(Vec::new()));
        let (r, h, f, c) = (runs.clone(), held.clone(), fences.clone(), ctx.clone());
        let _worker = ctx.loops.spawn_leader("worker", move |fence| {
            r.fetch_add(1, Ordering::SeqCst);
            f.lock().unwrap().push(fence.clone());
            let (h, ctx) = (h.clone(), c.fenced(fence));
            async move {
                let _h = h;
                assert!(ctx.fence.is_some(), "a leader loop's context is fenced");
                std::future::pending::<()>().await; // blocked for good: only an abort ends it
                Ok(())
            }
        });

        // No term yet: the loop waits, and waiting is healthy.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        assert_eq!(ctx.loops.states()["worker"], LoopState::Standby);
        assert!(ctx.loops.healthy() && !ctx.loops.leads());

        // A term begins: the loop runs with the term's fence.
        let fence = elect(&*ballot, &ctx.server_id).await;
        let (end, ended) = watch::channel(false);
        give.send(Leadership::new(fence.clone(), ended, ())).unwrap();
        until("the first run", || runs.load(Ordering::SeqCst) == 1).await;
        until("the loop to run", || ctx.loops.states()["worker"] == LoopState::Running).await;
        assert!(ctx.loops.leads());
        assert_eq!(fences.lock().unwrap().clone(), [Some(fence)]);
        assert_eq!(ctx.loops.metrics().leader.get(), 1);
        assert_eq!(leader_id(&ctx.loops, &*ctx.store, &ctx.server_id).await.as_deref(), Some(&*ctx.server_id));

        // The term ends: the blocked run is dropped and the loop stands by.
        end.send_replace(true);
        until("the run to be dropped", || Arc::strong_count(&held) == 2).await;
        until("standby", || ctx.loops.states()["worker"] == LoopState::Standby).await;
        assert!(!ctx.loops.leads());
        assert_eq!(ctx.loops.metrics().leader.get(), 0);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "no run without a term");

        // Another server leads meanwhile: this one names it.
        let other = elect(&*ballot, "server-b").await;
        assert_eq!(leader_id(&ctx.loops, &*ctx.store, &ctx.server_id).await.as_deref(), Some("server-b"));

        // The next term: the loop runs again, under the new fence.
        let fence = elect(&*ballot, &ctx.server_id).await;
        assert_ne!(fence, other);
        let (_end, ended) = watch::channel(false);
        give.send(Leadership::new(fence.clone(), ended, ())).unwrap();
        until("the second run", || runs.load(Ordering::SeqCst) == 2).await;
        assert_eq!(fences.lock().unwrap().last().cloned(), Some(Some(fence.clone())));
        assert_eq!(ctx.loops.metrics().terms.get(), 2);

        // Another server takes the key while this one still believes it leads (a stall): its next
        // fenced write is refused, writes nothing, and ends the term here at once.
        elect(&*ballot, "server-c").await;
        let err = ctx.fenced(Some(fence)).commit(put("account/stale")).await.unwrap_err();
        assert_eq!(err.code, "ServerException");
        assert!(err.message.contains(NOT_LEADING), "{}", err.message);
        assert!(ballot.get("account/stale").await.unwrap().is_none());
        until("the run to be dropped", || Arc::strong_count(&held) == 2).await;
        until("standby", || ctx.loops.states()["worker"] == LoopState::Standby).await;
        assert!(!ctx.loops.leads());
    }

    #[tokio::test]
    async fn a_fenced_write_needs_the_fence_and_an_unfenced_one_does_not() {
        let ctx = test_ctx(Clock::system()).await;
        let fence = elect(&*ctx.store, "server-a").await;
        let fenced = ctx.fenced(Some(fence.clone()));
        assert_eq!(fenced.fence, Some(fence));
        assert!(ctx.fence.is_none());

        // While the fence holds, writes go through, and a CAS conflict is still a conflict to retry.
        assert!(fenced.commit(put("account/a")).await.unwrap().is_some());
        let cas = Txn::new().when(Compare::absent("account/a")).then(Op::put("account/a", b"2".to_vec()));
        assert_eq!(fenced.commit(cas).await.unwrap(), None);

        // The key is created again (the next leader's): every fenced path fails, writing nothing.
        elect(&*ctx.store, "server-b").await;
        let err = fenced.commit(put("account/b")).await.unwrap_err();
        assert!(err.message.contains(NOT_LEADING), "{}", err.message);
        let raw = fenced.store.txn(put("account/b")).await.unwrap_err();
        assert!(is_fenced_out(&raw), "{raw}");
        assert!(ctx.store.get("account/b").await.unwrap().is_none());

        // Request handlers are not fenced; nor is a context fenced with no fence (an embedded store).
        assert!(ctx.commit(put("account/b")).await.unwrap().is_some());
        assert!(ctx.fenced(None).commit(put("account/c")).await.unwrap().is_some());
        // The unopposed term of the memory store was not the fenced one: this server still leads.
        until("the unopposed term", || ctx.loops.leads()).await;
        assert_eq!(ctx.loops.term().map(|t| t.fence), Some(None));
    }

    #[test]
    fn the_cache_skips_control_keys() {
        // Not cache records: decoding them would only log errors.
        assert!(crate::state::keys::uncached(&leader_key(ELECTION)));
        assert!(crate::state::keys::uncached("control/servers/a"));
        assert!(!crate::state::keys::uncached("cluster/default"));
    }
}
