//! The in-memory cache that serves every read: all records, decoded once, with the indexes and
//! running counts that Describe and List need, fed by the store's watch.
//!
//! The cache is loaded with one listing, then follows the watch from that listing's revision, so
//! it always equals the store at `applied()`. A writer that committed at revision R waits for
//! `applied() >= R` before it answers, so every client reads its own writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use flotilla_model::{Cluster, Service, Setting};
use flotilla_store::{Event, KeyValue, Revision, Store, StoreError, WatchBatch};
use tokio::sync::watch;

use super::codec::{decode_record, CodecError};
use super::keys;
use super::records::{IdempotencyRecord, InstanceRecord, Record, Reservation, TaskDefinitionRecord};
use super::snapshots::{Marks, Snapshots};
pub use super::tasks::family_of_arn;
use super::tasks::{CachedTask, TaskIndexes, TaskSummary};

/// A cached record and the revision that last modified it (for compare-and-swap writes).
#[derive(Debug)]
pub struct Entry<T> {
    pub value: Arc<T>,
    pub revision: Revision,
}

impl<T> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Entry { value: self.value.clone(), revision: self.revision }
    }
}

/// Live numbers for one cluster.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClusterStats {
    pub running_tasks: i64,
    pub pending_tasks: i64,
    pub running_fargate_tasks: i64,
    pub pending_fargate_tasks: i64,
    pub registered_instances: i64,
    pub active_services: i64,
    pub draining_services: i64,
}

/// Live numbers for one container instance.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InstanceUsage {
    pub running_tasks: i64,
    pub pending_tasks: i64,
    pub cpu: i64,
    pub memory: i64,
    pub ports: BTreeSet<u16>,
    pub ports_udp: BTreeSet<u16>,
    /// Tasks not yet STOPPED per task group (placement's `task:group` and distinctInstance).
    pub groups: BTreeMap<Arc<str>, u32>,
}

/// Everything the cache holds, keyed by store key so that prefix ranges are cluster scans.
#[derive(Debug, Default)]
pub struct Indexes {
    pub clusters: BTreeMap<String, Entry<Cluster>>,
    pub cluster_stats: HashMap<String, ClusterStats>,
    pub task_definitions: BTreeMap<String, Entry<TaskDefinitionRecord>>,
    pub instances: BTreeMap<String, Entry<InstanceRecord>>,
    /// Keyed by container instance ARN.
    pub instance_usage: HashMap<String, InstanceUsage>,
    pub tasks: BTreeMap<Arc<str>, Entry<CachedTask>>,
    pub task_index: TaskIndexes,
    pub services: BTreeMap<String, Entry<Service>>,
    pub idempotency: HashMap<String, Entry<IdempotencyRecord>>,
    pub account_settings: BTreeMap<String, Entry<Setting>>,
    /// Placement counters by key (see [`keys::placement_of`]).
    pub placements: HashMap<String, Entry<u64>>,
    /// (container instance ARN, task key) of task changes not yet announced to the instance's
    /// agent session.
    notices: Vec<(Arc<str>, Arc<str>)>,
    /// Which load of the cache these indexes come from: a scheduler snapshot built from an
    /// earlier load is rebuilt rather than patched.
    pub epoch: u64,
    /// Instances whose record or tasks changed, per cluster, for the scheduler snapshots. A
    /// mutex so that a placement holding only a read lock can take the marks it consumes.
    pub snapshot_marks: std::sync::Mutex<Marks>,
}

/// Iterates the entries of a map whose keys start with `prefix`, in key order.
pub fn range_prefix<'a, V>(
    map: &'a BTreeMap<String, V>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
    map.range(prefix.to_string()..).take_while(move |(k, _)| k.starts_with(prefix))
}

/// The value under `key`, inserted as the default if absent, without allocating an owned key
/// when it is present (the common case on the cache's hot path).
fn entry_of<'a, V: Default>(map: &'a mut HashMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("just inserted")
}

/// Whether two versions of a task sit under the same keys of every task index.
fn same_index_keys(a: &TaskSummary, b: &TaskSummary) -> bool {
    a.cluster == b.cluster
        && a.desired == b.desired
        && a.scope == b.scope
        && a.family == b.family
        && a.started_by == b.started_by
        && a.group == b.group
        && a.instance == b.instance
}

/// The cluster a key of the form `kind/cluster/rest` belongs to.
fn cluster_of(key: &str) -> &str {
    key.split('/').nth(1).unwrap_or("")
}

impl Indexes {
    fn apply_put(&mut self, kv: &KeyValue) -> Result<(), CodecError> {
        let rev = kv.mod_revision;
        if kv.key.starts_with(keys::IDENTITY) {
            return Ok(());
        }
        if kv.key.starts_with(keys::TASK) {
            // Tasks, by far the most numerous writes, skip the generic decode (see cache_stored).
            let cached = self.task_index.cache_stored(cluster_of(&kv.key), &kv.key, &kv.value)?;
            self.put_task(&kv.key, cached, rev);
            return Ok(());
        }
        let record = decode_record(&kv.key, &kv.value)?;
        match record {
            Record::Cluster(c) => {
                self.clusters.insert(kv.key.clone(), Entry { value: Arc::new(c), revision: rev });
            }
            Record::TaskDefinition(t) => {
                self.task_definitions.insert(kv.key.clone(), Entry { value: Arc::new(t), revision: rev });
            }
            Record::ContainerInstance(i) => {
                let same = self
                    .instances
                    .get(&kv.key)
                    .is_some_and(|old| old.value.instance.container_instance_arn == i.instance.container_instance_arn);
                match i.instance.container_instance_arn.as_deref() {
                    Some(arn) if same => self.mark_instance(cluster_of(&kv.key), arn),
                    _ => self.mark_rebuild(cluster_of(&kv.key)),
                }
                self.remove_instance(&kv.key);
                if i.instance.status.as_deref().is_some_and(|s| s == "ACTIVE" || s == "DRAINING") {
                    entry_of(&mut self.cluster_stats, cluster_of(&kv.key)).registered_instances += 1;
                }
                self.instances.insert(kv.key.clone(), Entry { value: Arc::new(i), revision: rev });
            }
            Record::Task(t) => {
                let cached = self.task_index.cache(cluster_of(&kv.key), t);
                self.put_task(&kv.key, cached, rev);
            }
            Record::Service(s) => {
                self.remove_service(&kv.key);
                let stats = entry_of(&mut self.cluster_stats, cluster_of(&kv.key));
                match s.status.as_deref() {
                    Some("ACTIVE") => stats.active_services += 1,
                    Some("DRAINING") => stats.draining_services += 1,
                    _ => {}
                }
                self.services.insert(kv.key.clone(), Entry { value: Arc::new(s), revision: rev });
            }
            Record::Idempotency(r) => {
                self.idempotency.insert(kv.key.clone(), Entry { value: Arc::new(r), revision: rev });
            }
            Record::AccountSetting(s) => {
                self.account_settings.insert(kv.key.clone(), Entry { value: Arc::new(s), revision: rev });
            }
            Record::Placement(n) => {
                self.placements.insert(kv.key.clone(), Entry { value: Arc::new(n), revision: rev });
            }
        }
        Ok(())
    }

    fn put_task(&mut self, key: &str, cached: CachedTask, rev: Revision) {
        let new = Arc::new(cached);
        // Most puts update a task in place (an agent's report): replace it where it lies, one
        // walk of the map, and leave the indexes alone unless a field they key on changed.
        let replaced = self
            .tasks
            .range_mut::<str, _>((Bound::Included(key), Bound::Included(key)))
            .next()
            .map(|(k, slot)| (k.clone(), std::mem::replace(slot, Entry { value: new.clone(), revision: rev })));
        let key = match replaced {
            Some((key, old)) => {
                let reindex = !same_index_keys(&old.value.summary, &new.summary);
                if let Some(inst) = &old.value.summary.instance {
                    if new.summary.instance.as_ref() != Some(inst) {
                        self.notices.push((inst.clone(), key.clone()));
                    }
                }
                self.index_task(&key, &old.value.summary, -1, reindex);
                self.index_task(&key, &new.summary, 1, reindex);
                key
            }
            None => {
                let key: Arc<str> = key.into();
                self.tasks.insert(key.clone(), Entry { value: new.clone(), revision: rev });
                self.index_task(&key, &new.summary, 1, true);
                key
            }
        };
        if let Some(inst) = &new.summary.instance {
            self.notices.push((inst.clone(), key));
        }
    }

    fn apply_delete(&mut self, key: &str) {
        if key.starts_with(keys::CLUSTER) {
            self.clusters.remove(key);
        } else if key.starts_with(keys::TASK_DEFINITION) {
            self.task_definitions.remove(key);
        } else if key.starts_with(keys::INSTANCE) {
            if self.instances.contains_key(key) {
                self.mark_rebuild(cluster_of(key));
            }
            self.remove_instance(key);
        } else if key.starts_with(keys::TASK) {
            self.remove_task(key);
        } else if key.starts_with(keys::SERVICE) {
            self.remove_service(key);
        } else if key.starts_with(keys::IDEMPOTENCY) {
            self.idempotency.remove(key);
        } else if key.starts_with(keys::ACCOUNT_SETTING) {
            self.account_settings.remove(key);
        } else if key.starts_with(keys::PLACEMENT) {
            self.placements.remove(key);
        }
    }

    /// Tells the cluster's scheduler snapshot that this instance (or one of its tasks) changed.
    fn mark_instance(&mut self, cluster: &str, arn: &str) {
        let marks = self.snapshot_marks.get_mut().expect("snapshot marks lock poisoned");
        let m = entry_of(marks, cluster);
        if !m.rebuild && !m.instances.contains(arn) {
            m.instances.insert(arn.into());
        }
    }

    /// Tells the cluster's scheduler snapshot that its set of instances changed.
    fn mark_rebuild(&mut self, cluster: &str) {
        let marks = self.snapshot_marks.get_mut().expect("snapshot marks lock poisoned");
        let m = entry_of(marks, cluster);
        m.rebuild = true;
        m.instances.clear();
    }

    fn remove_instance(&mut self, key: &str) {
        if let Some(old) = self.instances.remove(key) {
            if old.value.instance.status.as_deref().is_some_and(|s| s == "ACTIVE" || s == "DRAINING") {
                entry_of(&mut self.cluster_stats, cluster_of(key)).registered_instances -= 1;
            }
        }
    }

    fn remove_service(&mut self, key: &str) {
        if let Some(old) = self.services.remove(key) {
            let stats = entry_of(&mut self.cluster_stats, cluster_of(key));
            match old.value.status.as_deref() {
                Some("ACTIVE") => stats.active_services -= 1,
                Some("DRAINING") => stats.draining_services -= 1,
                _ => {}
            }
        }
    }

    fn remove_task(&mut self, key: &str) {
        if let Some((k, old)) = self.tasks.remove_entry(key) {
            if let Some(inst) = &old.value.summary.instance {
                self.notices.push((inst.clone(), k.clone()));
            }
            self.index_task(&k, &old.value.summary, -1, true);
        }
    }

    /// Adds (`sign` 1) or removes (`sign` -1) a task's contribution to counts, usage and (when
    /// `reindex`) the task indexes.
    fn index_task(&mut self, key: &Arc<str>, s: &TaskSummary, sign: i64, reindex: bool) {
        let (running, pending) = s.last_status.counts();
        let stats = entry_of(&mut self.cluster_stats, &s.cluster);
        stats.running_tasks += sign * running;
        stats.pending_tasks += sign * pending;
        if s.launch_type.as_deref() == Some("FARGATE") {
            stats.running_fargate_tasks += sign * running;
            stats.pending_fargate_tasks += sign * pending;
        }
        if reindex {
            self.task_index.update(key, s, sign > 0);
        }
        if let Some(inst) = &s.instance {
            let usage = entry_of(&mut self.instance_usage, inst);
            usage.running_tasks += sign * running;
            usage.pending_tasks += sign * pending;
            if s.last_status != super::tasks::LastStatus::Stopped {
                if let Some(r) = &s.reservation {
                    apply_reservation(usage, r, sign);
                }
                if let Some(g) = &s.group {
                    let n = usage.groups.entry(g.clone()).or_default();
                    *n = n.saturating_add_signed(sign as i32);
                    if *n == 0 {
                        usage.groups.remove(g);
                    }
                }
            }
            let cluster = s.cluster.clone();
            self.mark_instance(&cluster, inst);
        }
    }
}

fn apply_reservation(usage: &mut InstanceUsage, r: &Reservation, sign: i64) {
    usage.cpu += sign * r.cpu;
    usage.memory += sign * r.memory;
    for (set, ports) in [(&mut usage.ports, &r.ports), (&mut usage.ports_udp, &r.ports_udp)] {
        for p in ports {
            if sign > 0 {
                set.insert(*p);
            } else {
                set.remove(p);
            }
        }
    }
}

/// The notice that asks an agent session to look at all of its instance's tasks again.
pub const RESYNC: &str = "";

/// The shared cache.
pub struct Cache {
    inner: RwLock<Indexes>,
    /// The scheduler's snapshot of each cluster, kept current from the marks the follower leaves.
    pub snapshots: Snapshots,
    /// Loads of the cache so far (see [`Indexes::epoch`]).
    loads: std::sync::atomic::AtomicU64,
    /// The agent session of each container instance, told which of its tasks changed.
    instance_subscribers: std::sync::Mutex<HashMap<String, tokio::sync::mpsc::UnboundedSender<Arc<str>>>>,
    applied: watch::Sender<Revision>,
    follower: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Cache {
    /// Loads everything from the store and keeps following it until [`Cache::stop`].
    pub async fn start(store: Arc<dyn Store>) -> Result<Arc<Cache>, StoreError> {
        let (applied, _) = watch::channel(0);
        let cache = Arc::new(Cache {
            inner: RwLock::new(Indexes::default()),
            snapshots: Snapshots::default(),
            loads: Default::default(),
            instance_subscribers: Default::default(),
            applied,
            follower: std::sync::Mutex::new(None),
        });
        let revision = cache.reload(&*store).await?;
        let follower = cache.clone();
        let handle = tokio::spawn(async move { follower.follow(store, revision).await });
        *cache.follower.lock().expect("cache follower lock poisoned") = Some(handle);
        Ok(cache)
    }

    /// Stops following the store and waits until the follower has let go of it. The follower
    /// holds the store, and a redb store keeps its file locked while it lives, so without this
    /// a server that has shut down could not be started again on the same data directory.
    pub async fn stop(&self) {
        let handle = self.follower.lock().expect("cache follower lock poisoned").take();
        if let Some(handle) = handle {
            handle.abort();
            let _ = handle.await;
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
        *self.inner.write().expect("cache lock poisoned") = ix;
        self.applied.send_replace(revision);
        // Sessions may have missed changes while the cache reloaded: ask each for a full resync.
        for tx in self.instance_subscribers.lock().expect("subscribers lock poisoned").values() {
            let _ = tx.send(Arc::from(RESYNC));
        }
        Ok(revision)
    }

    async fn follow(self: Arc<Self>, store: Arc<dyn Store>, mut revision: Revision) {
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
                Err(StoreError::Closed) => return,
                Err(e) => tracing::warn!(error = %e, "cache watch failed; reloading"),
            }
            if store.revision() == 0 && revision == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            match self.reload(&*store).await {
                Ok(r) => revision = r,
                Err(StoreError::Closed) => return,
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
            let mut ix = self.inner.write().expect("cache lock poisoned");
            for ev in &batch.events {
                match ev {
                    Event::Put(kv) => {
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
            let subs = self.instance_subscribers.lock().expect("subscribers lock poisoned");
            for (instance, key) in notices {
                if let Some(tx) = subs.get(&*instance) {
                    let _ = tx.send(key);
                }
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
    /// instance replaces the old one: the newest agent session is the one that is told.
    pub fn subscribe_instance(&self, instance_arn: &str) -> tokio::sync::mpsc::UnboundedReceiver<Arc<str>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.instance_subscribers.lock().expect("subscribers lock poisoned").insert(instance_arn.to_string(), tx);
        rx
    }

    /// After a session dropped its receiver: removes its subscription and returns true if no
    /// newer session has subscribed for the instance since.
    pub fn unsubscribe_instance(&self, instance_arn: &str) -> bool {
        let mut subs = self.instance_subscribers.lock().expect("subscribers lock poisoned");
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
        self.inner.read().expect("cache lock poisoned")
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
    use crate::state::records::TaskRecord;
    use flotilla_model::Task;
    use flotilla_store::{MemoryStore, Op, Txn};

    fn task(status: &str, desired: &str, family: &str) -> TaskRecord {
        TaskRecord {
            task: Task {
                last_status: Some(status.into()),
                desired_status: Some(desired.into()),
                task_definition_arn: Some(format!("arn:aws:ecs:us-east-1:0:task-definition/{family}:1")),
                container_instance_arn: Some("ci-1".into()),
                ..Default::default()
            },
            reservation: Some(Reservation { cpu: 256, memory: 512, ports: vec![80], ports_udp: vec![] }),
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
