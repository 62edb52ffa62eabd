//! The in-memory cache that serves every read: all records, decoded once, with the indexes and
//! running counts that Describe and List need, fed by the store's watch.
//!
//! The cache is loaded with one listing, then follows the watch from that listing's revision, so
//! it always equals the store at `applied()`. A writer that committed at revision R waits for
//! `applied() >= R` before it answers, so every client reads its own writes.
//!
//! The follower is a supervised loop (`crate::supervisor`, named `cache`). A run that panics
//! while applying a change leaves the indexes half-applied and their lock poisoned; the next run
//! sees the poison and loads everything afresh, which also rebuilds every scheduler snapshot (a
//! new load is a new epoch).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use flotilla_store::{Event, Revision, Store, StoreError, WatchBatch};
use tokio::sync::watch;

pub use super::indexes::{range_prefix, ClusterStats, Entry, Indexes, InstanceUsage};
use super::snapshots::Snapshots;
pub use super::tasks::family_of_arn;
use crate::locks;
use crate::supervisor::{LoopHandle, Supervisor};

/// The notice that asks an agent session to look at all of its instance's tasks again.
pub const RESYNC: &str = "";

/// How many task notices may wait for one agent session. A session that lets this many pile up
/// has stopped keeping up (its agent stopped reading): it is cut off rather than buffered
/// without bound, and its agent reconnects and resyncs.
pub const NOTICE_QUEUE: usize = 8192;

type Subscribers = HashMap<String, tokio::sync::mpsc::Sender<Arc<str>>>;

/// Queues `key` for the session of `instance`; a session whose queue is full loses its
/// subscription, which ends it.
fn notify(subs: &mut Subscribers, instance: &str, key: Arc<str>) {
    let Some(tx) = subs.get(instance) else { return };
    if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) = tx.try_send(key) {
        tracing::warn!(instance, queued = NOTICE_QUEUE, "agent session fell behind its task notices; disconnecting it");
        subs.remove(instance);
    }
}

/// The shared cache.
pub struct Cache {
    inner: RwLock<Indexes>,
    /// The scheduler's snapshot of each cluster, kept current from the marks the follower leaves.
    pub snapshots: Snapshots,
    /// Loads of the cache so far (see [`Indexes::epoch`]).
    loads: std::sync::atomic::AtomicU64,
    /// The agent session of each container instance, told which of its tasks changed.
    instance_subscribers: std::sync::Mutex<Subscribers>,
    applied: watch::Sender<Revision>,
    follower: std::sync::Mutex<Option<LoopHandle>>,
    /// Whether the indexes are the load `start` just made, which the follower's first run picks
    /// up from; every later run loads afresh.
    fresh: AtomicBool,
}

impl Cache {
    /// Loads everything from the store and keeps following it until [`Cache::stop`], under a
    /// supervisor of its own (tests; the server uses [`Cache::start_supervised`]).
    pub async fn start(store: Arc<dyn Store>) -> Result<Arc<Cache>, StoreError> {
        Self::start_supervised(store, &Supervisor::new()).await
    }

    /// Loads everything from the store and keeps following it, as the loop `cache` of
    /// `supervisor`, until [`Cache::stop`].
    pub async fn start_supervised(store: Arc<dyn Store>, supervisor: &Supervisor) -> Result<Arc<Cache>, StoreError> {
        let (applied, _) = watch::channel(0);
        let cache = Arc::new(Cache {
            inner: RwLock::new(Indexes::default()),
            snapshots: Snapshots::default(),
            loads: Default::default(),
            instance_subscribers: Default::default(),
            applied,
            follower: std::sync::Mutex::new(None),
            fresh: AtomicBool::new(true),
        });
        cache.reload(&*store).await?;
        let follower = cache.clone();
        let handle = supervisor.spawn("cache", move || {
            let (cache, store) = (follower.clone(), store.clone());
            async move { cache.follow(store).await.map_err(Into::into) }
        });
        *locks::lock(&cache.follower) = Some(handle);
        Ok(cache)
    }

    /// Stops following the store and waits until the follower has let go of it. The follower
    /// holds the store, and a redb store keeps its file locked while it lives, so without this
    /// a server that has shut down could not be started again on the same data directory.
    pub async fn stop(&self) {
        let handle = locks::lock(&self.follower).take();
        if let Some(handle) = handle {
            handle.stop().await;
        }
    }

    async fn reload(&self, store: &dyn Store) -> Result<Revision, StoreError> {
        let epoch = self.loads.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut ix = Indexes { epoch, ..Indexes::default() };
        let revision = store
            .scan("", &mut |batch| {
                for kv in &batch {
                    if let Err(e) = ix.apply_put(kv) {
                        tracing::error!(error = %e, "skipping a stored value that does not decode");
                    }
                }
            })
            .await?;
        ix.notices.clear();
        *locks::write(&self.inner) = ix;
        // What a panic left half-applied has just been replaced whole.
        self.inner.clear_poison();
        self.applied.send_replace(revision);
        // Sessions may have missed changes while the cache reloaded: ask each for a full resync.
        let mut subs = locks::lock(&self.instance_subscribers);
        let instances: Vec<String> = subs.keys().cloned().collect();
        for instance in instances {
            notify(&mut subs, &instance, Arc::from(RESYNC));
        }
        Ok(revision)
    }

    /// One run of the follower: picks up from `start`'s load the first time, from a fresh load
    /// after that (the last run may have died half-way through a change). `Ok` once the store is
    /// closed.
    async fn follow(self: Arc<Self>, store: Arc<dyn Store>) -> Result<(), StoreError> {
        let mut revision = if self.fresh.swap(false, Ordering::SeqCst) && !self.inner.is_poisoned() {
            self.applied()
        } else {
            match self.reload(&*store).await {
                Err(StoreError::Closed) => return Ok(()),
                r => r?,
            }
        };
        loop {
            match store.watch("", revision).await {
                Ok(mut rx) => {
                    while let Some(item) = rx.recv().await {
                        match item {
                            Ok(batch) => {
                                revision = batch.revision;
                                self.apply(&batch);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cache watch ended; reloading");
                                break;
                            }
                        }
                    }
                }
                Err(StoreError::Closed) => return Ok(()),
                Err(e) => tracing::warn!(error = %e, "cache watch failed; reloading"),
            }
            if store.revision() == 0 && revision == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            match self.reload(&*store).await {
                Ok(r) => revision = r,
                Err(StoreError::Closed) => return Ok(()),
                Err(e) => {
                    tracing::error!(error = %e, "cache reload failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Applies one committed transaction's changes.
    pub fn apply(&self, batch: &WatchBatch) {
        let notices = {
            let mut ix = locks::write(&self.inner);
            for ev in &batch.events {
                match ev {
                    Event::Put(kv) => {
                        if crate::faults::hit(crate::faults::Site::CacheApply, &kv.key) {
                            panic!("injected fault: the cache follower panics applying {}", kv.key);
                        }
                        if let Err(e) = ix.apply_put(kv) {
                            tracing::error!(error = %e, "skipping a stored value that does not decode");
                        }
                    }
                    Event::Delete { key } => ix.apply_delete(key),
                }
            }
            std::mem::take(&mut ix.notices)
        };
        if !notices.is_empty() {
            let mut subs = locks::lock(&self.instance_subscribers);
            for (instance, key) in notices {
                notify(&mut subs, &instance, key);
            }
        }
        self.applied.send_if_modified(|r| {
            let newer = batch.revision > *r;
            if newer {
                *r = batch.revision;
            }
            newer
        });
    }

    /// Task keys of the instance's tasks as they change (after the change is in the cache), or
    /// [`RESYNC`] when the instance's tasks must be looked at afresh. A new subscription for an
    /// instance replaces the old one: the newest agent session is the one that is told. The
    /// queue holds [`NOTICE_QUEUE`] notices; when it overflows the subscription is dropped and
    /// the receiver ends.
    pub fn subscribe_instance(&self, instance_arn: &str) -> tokio::sync::mpsc::Receiver<Arc<str>> {
        let (tx, rx) = tokio::sync::mpsc::channel(NOTICE_QUEUE);
        locks::lock(&self.instance_subscribers).insert(instance_arn.to_string(), tx);
        rx
    }

    /// After a session dropped its receiver: removes its subscription and returns true if no
    /// newer session has subscribed for the instance since.
    pub fn unsubscribe_instance(&self, instance_arn: &str) -> bool {
        let mut subs = locks::lock(&self.instance_subscribers);
        match subs.get(instance_arn) {
            Some(tx) if tx.is_closed() => {
                subs.remove(instance_arn);
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    /// A read lock on the indexes. Never hold it across an await.
    pub fn read(&self) -> RwLockReadGuard<'_, Indexes> {
        locks::read(&self.inner)
    }

    pub fn applied(&self) -> Revision {
        *self.applied.borrow()
    }

    /// A receiver that wakes whenever the cache applies a new revision (controllers wait on it).
    pub fn changes(&self) -> watch::Receiver<Revision> {
        self.applied.subscribe()
    }

    /// Waits until the cache reflects `revision`.
    pub async fn wait_for(&self, revision: Revision) {
        let mut rx = self.applied.subscribe();
        // The sender lives as long as the cache, so this only ends once the revision is in.
        let _ = rx.wait_for(|r| *r >= revision).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::codec::encode;
    use crate::state::records::{Reservation, TaskRecord};
    use flotilla_model::Task;
    use flotilla_store::{KeyValue, MemoryStore, Op, Txn};

    fn task(status: &str, desired: &str, family: &str) -> TaskRecord {
        TaskRecord {
            task: Task {
                last_status: Some(status.into()),
                desired_status: Some(desired.into()),
                task_definition_arn: Some(format!("arn:aws:ecs:us-east-1:0:task-definition/{family}:1")),
                container_instance_arn: Some("ci-1".into()),
                ..Default::default()
            },
            reservation: Some(Reservation { cpu: 256, memory: 512, ports: vec![80], ports_udp: vec![], gpus: vec![] }),
            hidden: None,
        }
    }

    #[tokio::test]
    async fn counts_follow_task_changes() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let cache = Cache::start(store.clone()).await.unwrap();
        let put = |k: &str, t: &TaskRecord| Txn::new().then(Op::put(k, encode(t)));
        let r1 = match store.txn(put("task/c/1", &task("PENDING", "RUNNING", "web"))).await.unwrap() {
            flotilla_store::TxnOutcome::Committed { revision } => revision,
            o => panic!("{o:?}"),
        };
        cache.wait_for(r1).await;
        {
            let ix = cache.read();
            assert_eq!(ix.cluster_stats["c"].pending_tasks, 1);
            assert_eq!(ix.instance_usage["ci-1"].memory, 512);
            assert!(ix.instance_usage["ci-1"].ports.contains(&80));
            assert_eq!(ix.task_index.by_family[&("c/RUNNING".into(), "web".into())].len(), 1);
        }
        store.txn(put("task/c/1", &task("RUNNING", "RUNNING", "web"))).await.unwrap();
        let r3 = match store.txn(put("task/c/1", &task("STOPPED", "STOPPED", "web"))).await.unwrap() {
            flotilla_store::TxnOutcome::Committed { revision } => revision,
            o => panic!("{o:?}"),
        };
        cache.wait_for(r3).await;
        let ix = cache.read();
        assert_eq!(ix.cluster_stats["c"], ClusterStats::default());
        assert_eq!(ix.instance_usage["ci-1"].memory, 0);
        assert!(ix.instance_usage["ci-1"].ports.is_empty());
        assert!(!ix.task_index.by_cluster_desired.contains_key(&("c".into(), "RUNNING".into())));
        assert_eq!(ix.task_index.by_cluster_desired[&("c".into(), "STOPPED".into())].len(), 1);
    }

    /// A session that stops taking its notices is cut off once NOTICE_QUEUE of them wait (its
    /// receiver ends and the subscription is gone), instead of having every change queued for it.
    #[tokio::test]
    async fn a_session_that_falls_behind_loses_its_subscription() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let cache = Cache::start(store).await.unwrap();
        let mut rx = cache.subscribe_instance("ci-1");
        let value: Arc<[u8]> = encode(&task("PENDING", "RUNNING", "web")).into();
        let base = 1_000;
        let events = (0..=NOTICE_QUEUE as u64)
            .map(|i| {
                let key = format!("task/c/{i}");
                Event::Put(KeyValue { key, value: value.clone(), create_revision: base + i, mod_revision: base + i })
            })
            .collect();
        cache.apply(&WatchBatch { revision: base + NOTICE_QUEUE as u64 + 1, events });
        let mut queued = 0;
        while rx.recv().await.is_some() {
            queued += 1;
        }
        assert_eq!(queued, NOTICE_QUEUE);
        assert!(cache.unsubscribe_instance("ci-1"), "the subscription is gone");
    }

    /// After any sequence of task changes (in place, moved between instances, desired status
    /// flipped, deleted), the indexes kept up change by change equal those of a fresh load.
    #[tokio::test]
    async fn incremental_indexes_equal_a_fresh_load() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let cache = Cache::start(store.clone()).await.unwrap();
        let mut rng = StdRng::seed_from_u64(11);
        let mut last = 0;
        for _ in 0..600 {
            let (cluster, n) = (rng.gen_range(0..2u16), rng.gen_range(0..25u16));
            let key = format!("task/c{cluster}/t{n}");
            let op = if rng.gen_bool(0.1) {
                Op::delete(key)
            } else {
                let pick = |rng: &mut StdRng, options: &[&str]| options[rng.gen_range(0..options.len())].to_string();
                let mut rec = task(
                    &pick(&mut rng, &["PENDING", "RUNNING", "RUNNING", "STOPPED"]),
                    &pick(&mut rng, &["RUNNING", "RUNNING", "STOPPED"]),
                    &pick(&mut rng, &["web", "api"]),
                );
                rec.task.container_instance_arn = Some(pick(&mut rng, &["ci-1", "ci-2", "ci-3"]));
                rec.task.group = Some(pick(&mut rng, &["family:web", "service:s"]));
                rec.task.started_by = rng.gen_bool(0.5).then(|| "ecs-svc/1".to_string());
                // Live tasks never share a host port on one instance: one port per task.
                rec.reservation.as_mut().unwrap().ports = vec![8000 + 100 * cluster + n];
                Op::put(key, encode(&rec))
            };
            if let flotilla_store::TxnOutcome::Committed { revision } = store.txn(Txn::new().then(op)).await.unwrap() {
                last = revision;
            }
        }
        cache.wait_for(last).await;
        let fresh = Cache::start(store.clone()).await.unwrap();
        let (kept, fresh) = (cache.read(), fresh.read());
        let usage = |ix: &Indexes| -> HashMap<String, InstanceUsage> {
            ix.instance_usage
                .iter()
                .filter(|(_, u)| **u != InstanceUsage::default())
                .map(|(k, u)| (k.clone(), u.clone()))
                .collect()
        };
        let stats = |ix: &Indexes| -> HashMap<String, ClusterStats> {
            ix.cluster_stats
                .iter()
                .filter(|(_, s)| **s != ClusterStats::default())
                .map(|(k, s)| (k.clone(), *s))
                .collect()
        };
        assert!(!usage(&fresh).is_empty(), "the test left some tasks running");
        assert_eq!(usage(&kept), usage(&fresh));
        assert_eq!(stats(&kept), stats(&fresh));
        let (a, b) = (&kept.task_index, &fresh.task_index);
        assert_eq!(a.by_cluster_desired, b.by_cluster_desired);
        assert_eq!(a.by_instance, b.by_instance);
        assert_eq!(a.by_family, b.by_family);
        assert_eq!(a.by_started_by, b.by_started_by);
        assert_eq!(a.by_group, b.by_group);
        assert_eq!(kept.tasks.keys().collect::<Vec<_>>(), fresh.tasks.keys().collect::<Vec<_>>());
    }
}
