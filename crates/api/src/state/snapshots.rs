//! The scheduler's view of each cluster, kept between requests. Building a
//! [`flotilla_scheduler::Snapshot`] walks every container instance of the cluster (tens of
//! milliseconds at ten thousand instances), which no RunTask should pay. So each cluster keeps one
//! snapshot, and the cache marks which instances changed as it applies the store's watch events
//! (an instance record, or a task on the instance); the next placement refreshes only those
//! instances in place before it places. A change to the set of instances (one registered or
//! removed, or its attributes changed, which the snapshot lays out in shared columns) or a cache
//! reload asks for a full rebuild instead, which is rare next to task placements.
//!
//! Placements of one cluster run one at a time under the cluster's lock: the engine takes
//! microseconds, and taking turns lets each plan reserve its room in the snapshot at once, so that
//! concurrent requests do not all pick the same instance and then fight over it in the store. The
//! reservation is a guess until its tasks commit; the instances a plan used are marked again when
//! the commit is done, so the next placement reads them from the cache, which is the truth.
//! Requests see the snapshot only through `&Snapshot` while the lock is held: it is immutable for
//! the length of one placement.
//!
//! A placement takes the cluster's lock before the cache's read lock (see `locks.rs` for the
//! order everywhere): a request waiting its turn for the cluster then holds no cache lock, so it
//! never keeps the watch follower (a writer) and with it every other reader waiting. A panic
//! while a cluster's snapshot is held may leave it half-built: the next placement finds the lock
//! poisoned and builds the snapshot afresh from the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLockReadGuard};

use flotilla_scheduler::{
    place, Env, HostPort, Instance, InstanceStatus, Plan, Protocol, Request, RequestError, Snapshot,
};

use super::indexes::{range_prefix, Indexes, InstanceUsage};
use super::keys;
use super::records::InstanceRecord;
use crate::locks;

/// One cluster's snapshot and how to find its instances.
#[derive(Default)]
struct ClusterSnapshot {
    /// The cache epoch (one per full load of the cache) the snapshot was built in; `None` until
    /// the first build.
    epoch: Option<u64>,
    snapshot: Snapshot,
    /// Store key of each instance, by snapshot index.
    keys: Vec<String>,
    by_arn: HashMap<Arc<str>, usize>,
    /// The instance record each instance was last described from, by snapshot index.
    records: Vec<Arc<InstanceRecord>>,
    /// Full builds so far: a test checks that ordinary changes do not cause them.
    builds: u64,
}

/// Where a plan put one task: the instance's index in the snapshot, store key and ARN.
#[derive(Debug, Clone)]
pub struct Target {
    pub index: usize,
    pub key: String,
    pub arn: String,
}

/// A placement plan and the instances it names, read while the snapshot was held.
#[derive(Debug)]
pub struct Placed {
    pub plan: Plan,
    /// One per `plan.placements`, in the same order.
    pub targets: Vec<Target>,
}

/// The per-cluster snapshots. Lock order: a cluster's lock, then the cache's read lock, then the
/// marks (which the follower takes under the cache's write lock); the map of clusters is a leaf.
#[derive(Default)]
pub struct Snapshots {
    clusters: Mutex<HashMap<String, Arc<Mutex<ClusterSnapshot>>>>,
}

impl Snapshots {
    fn cluster(&self, cluster: &str) -> Arc<Mutex<ClusterSnapshot>> {
        let mut all = locks::lock(&self.clusters);
        all.entry(cluster.to_string()).or_default().clone()
    }

    /// The cluster's snapshot, locked; one that a panic poisoned is marked for a full rebuild.
    fn lock_cluster(shared: &Mutex<ClusterSnapshot>) -> MutexGuard<'_, ClusterSnapshot> {
        match shared.lock() {
            Ok(cs) => cs,
            Err(poisoned) => {
                let mut cs = poisoned.into_inner();
                tracing::warn!("a scheduler snapshot was left half-built by a panic; rebuilding it");
                cs.epoch = None;
                shared.clear_poison();
                cs
            }
        }
    }

    /// Places `request` on the cluster's snapshot, brought up to date with the cache first, and
    /// reserves the plan's placements in the snapshot. `read` takes the cache's read lock; it is
    /// called once the cluster's lock is held, and released before the engine runs, so the watch
    /// follower is not held up by placement.
    pub fn place<'c>(
        &self,
        read: impl FnOnce() -> RwLockReadGuard<'c, Indexes>,
        cluster: &str,
        request: &Request,
        env: &Env,
    ) -> Result<Placed, RequestError> {
        if per_request_build() {
            let ix = read();
            let (snapshot, keys) = build(&ix, cluster);
            drop(ix);
            let plan = place(&snapshot, request, env)?;
            let targets = plan
                .placements
                .iter()
                .map(|p| Target {
                    index: p.instance,
                    key: keys[p.instance].clone(),
                    arn: snapshot.arn(p.instance).into(),
                })
                .collect();
            return Ok(Placed { plan, targets });
        }
        let shared = self.cluster(cluster);
        let mut cs = Self::lock_cluster(&shared);
        let ix = read();
        refresh(&mut cs, &ix, cluster);
        drop(ix);
        let plan = place(&cs.snapshot, request, env)?;
        cs.snapshot.apply(&plan, request);
        let targets = plan
            .placements
            .iter()
            .map(|p| Target {
                index: p.instance,
                key: cs.keys[p.instance].clone(),
                arn: cs.snapshot.arn(p.instance).into(),
            })
            .collect();
        Ok(Placed { plan, targets })
    }

    /// How many times the cluster's snapshot was built from scratch.
    pub fn builds(&self, cluster: &str) -> u64 {
        Self::lock_cluster(&self.cluster(cluster)).builds
    }

    /// Runs `f` on the indexes and the cluster's snapshot, brought up to date with them (tests,
    /// readers); `read` takes the cache's read lock, after the cluster's lock.
    pub fn with<'c, R>(
        &self,
        read: impl FnOnce() -> RwLockReadGuard<'c, Indexes>,
        cluster: &str,
        f: impl FnOnce(&Indexes, &Snapshot, &[String]) -> R,
    ) -> R {
        let shared = self.cluster(cluster);
        let mut cs = Self::lock_cluster(&shared);
        let ix = read();
        refresh(&mut cs, &ix, cluster);
        f(&ix, &cs.snapshot, &cs.keys)
    }
}

/// Whether every placement builds its snapshot afresh, as before snapshots were kept: set
/// `FLOTILLA_SCHEDULER_SNAPSHOT=per-request` in the server's environment. Only `runtask-bench`
/// uses it, for the baseline it prints next to its figures.
fn per_request_build() -> bool {
    static MODE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| std::env::var("FLOTILLA_SCHEDULER_SNAPSHOT").is_ok_and(|v| v == "per-request"))
}

/// Brings `cs` up to date with the cache.
fn refresh(cs: &mut ClusterSnapshot, ix: &Indexes, cluster: &str) {
    let marks = locks::lock(&ix.snapshot_marks).remove(cluster).unwrap_or_default();
    if cs.epoch != Some(ix.epoch) || marks.rebuild {
        rebuild(cs, ix, cluster);
        return;
    }
    for arn in &marks.instances {
        let Some(&i) = cs.by_arn.get(arn) else { continue };
        let Some(entry) = ix.instances.get(&cs.keys[i]) else {
            // Removed without a rebuild mark: cannot happen, but a rebuild is always right.
            rebuild(cs, ix, cluster);
            return;
        };
        let usage = ix.instance_usage.get(&**arn);
        // Most changes are tasks coming and going: the record is the very one of the last
        // refresh, or one with the same attributes (a status change), and describing the
        // instance without them (no string copies) is enough.
        let same = Arc::ptr_eq(&cs.records[i], &entry.value)
            || cs.records[i].instance.attributes == entry.value.instance.attributes;
        let ok = if same {
            cs.snapshot.update_keeping_attributes(i, &instance_of(&entry.value, usage, false));
            true
        } else {
            cs.snapshot.update(i, &instance_of(&entry.value, usage, true))
        };
        if !ok {
            rebuild(cs, ix, cluster);
            return;
        }
        cs.records[i] = entry.value.clone();
    }
}

fn rebuild(cs: &mut ClusterSnapshot, ix: &Indexes, cluster: &str) {
    let (snapshot, keys) = build(ix, cluster);
    cs.records = keys.iter().filter_map(|k| ix.instances.get(k).map(|e| e.value.clone())).collect();
    cs.by_arn = (0..snapshot.len()).map(|i| (Arc::from(snapshot.arn(i)), i)).collect();
    cs.snapshot = snapshot;
    if crate::faults::hit(crate::faults::Site::SnapshotRebuild, cluster) {
        panic!("injected fault: a snapshot rebuild of cluster {cluster} panics half-way");
    }
    cs.keys = keys;
    cs.epoch = Some(ix.epoch);
    cs.builds += 1;
}

/// The cluster's container instances as the scheduler sees them, with their store keys, built
/// from scratch: what every snapshot must equal.
pub fn build(ix: &Indexes, cluster: &str) -> (Snapshot, Vec<String>) {
    let prefix = format!("{}{cluster}/", keys::INSTANCE);
    let mut instances = Vec::new();
    let mut keys_out = Vec::new();
    for (key, e) in range_prefix(&ix.instances, &prefix) {
        let arn = e.value.instance.container_instance_arn.as_deref().unwrap_or_default();
        instances.push(instance_of(&e.value, ix.instance_usage.get(arn), true));
        keys_out.push(key.clone());
    }
    (Snapshot::new(instances), keys_out)
}

/// The scheduler attribute that says which capacity provider an instance belongs to. The `:`
/// keeps it apart from every attribute a user may name; it lives in the snapshot only.
pub const PROVIDER_ATTRIBUTE: &str = "flotilla:capacityProvider";

/// One container instance with its live usage, as the scheduler describes it; its attributes
/// left empty unless `with_attributes`.
pub fn instance_of(rec: &InstanceRecord, usage: Option<&InstanceUsage>, with_attributes: bool) -> Instance {
    let empty = InstanceUsage::default();
    let usage = usage.unwrap_or(&empty);
    let ci = &rec.instance;
    let int = |name: &str| {
        ci.registered_resources
            .iter()
            .flatten()
            .find(|r| r.name.as_deref() == Some(name))
            .and_then(|r| r.integer_value)
            .unwrap_or(0) as i64
    };
    let mut used_ports: Vec<HostPort> = Vec::new();
    for (name, protocol, used) in
        [("PORTS", Protocol::Tcp, &usage.ports), ("PORTS_UDP", Protocol::Udp, &usage.ports_udp)]
    {
        let reserved = ci.registered_resources.iter().flatten().filter(|r| r.name.as_deref() == Some(name));
        let reserved = reserved.flat_map(|r| r.string_set_value.iter().flatten()).filter_map(|p| p.parse::<u16>().ok());
        used_ports.extend(reserved.chain(used.iter().copied()).map(|port| HostPort { port, protocol }));
    }
    Instance {
        arn: ci.container_instance_arn.clone().unwrap_or_default(),
        ec2_instance_id: ci.ec2_instance_id.clone().unwrap_or_default(),
        status: InstanceStatus::from_wire(ci.status.as_deref().unwrap_or("")),
        agent_connected: ci.agent_connected.unwrap_or(false),
        agent_version: ci.version_info.as_ref().and_then(|v| v.agent_version.clone()),
        registered_at_ms: ci.registered_at.map(|t| t.as_millis()).unwrap_or(0),
        attributes: match with_attributes {
            true => {
                let given = ci.attributes.iter().flatten().filter_map(|a| Some((a.name.clone()?, a.value.clone())));
                let provider =
                    ci.capacity_provider_name.iter().map(|p| (PROVIDER_ATTRIBUTE.to_string(), Some(p.clone())));
                given.chain(provider).collect()
            }
            false => Vec::new(),
        },
        remaining_cpu: int("CPU") - usage.cpu,
        remaining_memory: int("MEMORY") - usage.memory,
        remaining_gpus: super::gpus::free(ci, &usage.gpus).len() as u32,
        used_ports,
        running_tasks_count: usage.running_tasks.max(0) as u32,
        task_groups: usage.groups.iter().filter(|(_, n)| **n > 0).map(|(g, n)| (g.to_string(), *n)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::cache::Cache;
    use crate::state::codec::encode;
    use crate::state::records::{Reservation, TaskRecord};
    use flotilla_model::{Attribute, ContainerInstance, Resource, Task};
    use flotilla_store::{MemoryStore, Op, Store, Txn, TxnOutcome};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const CLUSTER: &str = "c";

    fn instance_arn(n: u32) -> String {
        format!("arn:aws:ecs:us-east-1:0:container-instance/{CLUSTER}/i{n}")
    }

    fn instance(rng: &mut StdRng, n: u32) -> InstanceRecord {
        let int = |name: &str, v: i64| Resource {
            name: Some(name.into()),
            r#type: Some("INTEGER".into()),
            integer_value: Some(v as i32),
            ..Default::default()
        };
        let mut attributes = vec![Attribute {
            name: Some("ecs.availability-zone".into()),
            value: Some(format!("z{}", rng.gen_range(0..3))),
            ..Default::default()
        }];
        if rng.gen_bool(0.2) {
            attributes.push(Attribute { name: Some("gpu".into()), value: None, ..Default::default() });
        }
        InstanceRecord {
            instance: ContainerInstance {
                container_instance_arn: Some(instance_arn(n)),
                ec2_instance_id: Some(format!("i-{n:08}")),
                status: Some(["ACTIVE", "ACTIVE", "ACTIVE", "DRAINING", "INACTIVE"][rng.gen_range(0..5)].into()),
                agent_connected: Some(rng.gen_bool(0.8)),
                version: Some(rng.gen_range(1..100)),
                attributes: Some(attributes),
                registered_resources: Some(vec![
                    int("CPU", 4096),
                    int("MEMORY", 8192),
                    Resource {
                        name: Some("PORTS".into()),
                        r#type: Some("STRINGSET".into()),
                        string_set_value: Some(vec!["22".into()]),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            },
            agent_address: None,
            session_server: None,
        }
    }

    fn task(rng: &mut StdRng, n: u32, instances: u32) -> TaskRecord {
        let ports = if rng.gen_bool(0.3) { vec![rng.gen_range(8000..8010)] } else { vec![] };
        TaskRecord {
            task: Task {
                task_arn: Some(format!("arn:aws:ecs:us-east-1:0:task/{CLUSTER}/t{n}")),
                container_instance_arn: Some(instance_arn(rng.gen_range(0..instances))),
                last_status: Some(["PENDING", "RUNNING", "STOPPED"][rng.gen_range(0..3)].into()),
                desired_status: Some("RUNNING".into()),
                group: Some(format!("family:f{}", rng.gen_range(0..4))),
                task_definition_arn: Some("arn:aws:ecs:us-east-1:0:task-definition/f:1".into()),
                ..Default::default()
            },
            reservation: Some(Reservation {
                cpu: rng.gen_range(0..512),
                memory: rng.gen_range(0..1024),
                ports,
                ports_udp: vec![],
                gpus: vec![],
            }),
            hidden: None,
        }
    }

    fn normalized(mut inst: Instance) -> Instance {
        for (_, v) in &mut inst.attributes {
            v.get_or_insert_with(String::new);
        }
        inst.attributes.sort();
        inst.task_groups.sort();
        inst.used_ports.sort();
        inst.used_ports.dedup();
        inst
    }

    fn assert_same(cache: &Cache, step: usize) {
        cache.snapshots.with(
            || cache.read(),
            CLUSTER,
            |ix, kept, kept_keys| {
                let (fresh, fresh_keys) = build(ix, CLUSTER);
                assert_eq!(kept_keys, &fresh_keys[..], "step {step}: the instances");
                for i in 0..fresh.len() {
                    assert_eq!(
                        normalized(kept.instance(i)),
                        normalized(fresh.instance(i)),
                        "step {step}: instance {i}"
                    );
                }
            },
        );
    }

    /// Task changes and instance updates that keep the instance's attributes (every placement
    /// bumps its instances' records) refresh the snapshot in place, without a full build.
    #[tokio::test]
    async fn ordinary_changes_patch_the_snapshot() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let cache = Cache::start(store.clone()).await.unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let commit = |op: Op| {
            let store = store.clone();
            async move {
                match store.txn(Txn::new().then(op)).await.unwrap() {
                    TxnOutcome::Committed { revision } => revision,
                    o => panic!("{o:?}"),
                }
            }
        };
        for n in 0..3 {
            commit(Op::put(format!("instance/{CLUSTER}/i{n}"), encode(&instance(&mut rng, n)))).await;
        }
        let r = commit(Op::put(format!("task/{CLUSTER}/t0"), encode(&task(&mut rng, 0, 3)))).await;
        cache.wait_for(r).await;
        cache.snapshots.with(|| cache.read(), CLUSTER, |_, s, _| assert_eq!(s.len(), 3));
        assert_eq!(cache.snapshots.builds(CLUSTER), 1);
        let mut rec = cache.read().instances[&format!("instance/{CLUSTER}/i1")].value.as_ref().clone();
        rec.instance.version = Some(1000);
        rec.instance.agent_connected = Some(false);
        commit(Op::put(format!("instance/{CLUSTER}/i1"), encode(&rec))).await;
        let r = commit(Op::put(format!("task/{CLUSTER}/t1"), encode(&task(&mut rng, 1, 3)))).await;
        cache.wait_for(r).await;
        assert_same(&cache, 0);
        assert_eq!(cache.snapshots.builds(CLUSTER), 1, "patched in place");
        let r = commit(Op::delete(format!("instance/{CLUSTER}/i2"))).await;
        cache.wait_for(r).await;
        assert_same(&cache, 1);
        assert_eq!(cache.snapshots.builds(CLUSTER), 2, "a removed instance rebuilds");
    }

    /// After any sequence of instance and task changes (and placements that reserve room in the
    /// snapshot, then mark what they used, as RunTask does), the kept snapshot equals one built
    /// from scratch.
    #[tokio::test]
    async fn kept_snapshot_equals_a_fresh_build() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let cache = Cache::start(store.clone()).await.unwrap();
        for seed in 0..4u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut instances = 4u32;
            for n in 0..instances {
                let put = Op::put(format!("instance/{CLUSTER}/i{n}"), encode(&instance(&mut rng, n)));
                store.txn(Txn::new().then(put)).await.unwrap();
            }
            let mut tasks = 0u32;
            for step in 0..300 {
                let op = match rng.gen_range(0..100) {
                    0..=4 => {
                        instances += 1;
                        let n = instances - 1;
                        Op::put(format!("instance/{CLUSTER}/i{n}"), encode(&instance(&mut rng, n)))
                    }
                    5..=14 => {
                        let n = rng.gen_range(0..instances);
                        let mut rec = instance(&mut rng, n);
                        // Mostly the same attributes with another status or agent, as in life.
                        if rng.gen_bool(0.8) {
                            let ix = cache.read();
                            if let Some(e) = ix.instances.get(&format!("instance/{CLUSTER}/i{n}")) {
                                rec.instance.attributes = e.value.instance.attributes.clone();
                            }
                        }
                        Op::put(format!("instance/{CLUSTER}/i{n}"), encode(&rec))
                    }
                    15..=16 => Op::delete(format!("instance/{CLUSTER}/i{}", rng.gen_range(0..instances))),
                    17..=59 => {
                        tasks += 1;
                        Op::put(format!("task/{CLUSTER}/t{}", tasks - 1), encode(&task(&mut rng, tasks - 1, instances)))
                    }
                    60..=89 if tasks > 0 => {
                        let n = rng.gen_range(0..tasks);
                        Op::put(format!("task/{CLUSTER}/t{n}"), encode(&task(&mut rng, n, instances)))
                    }
                    90..=94 if tasks > 0 => Op::delete(format!("task/{CLUSTER}/t{}", rng.gen_range(0..tasks))),
                    _ => {
                        let request = Request {
                            count: rng.gen_range(1..4),
                            cpu: 128,
                            memory: 256,
                            group: "family:f1".into(),
                            ..Request::default()
                        };
                        let placed = cache
                            .snapshots
                            .place(|| cache.read(), CLUSTER, &request, &Env { seed: step as u64 })
                            .unwrap();
                        let ix = cache.read();
                        let mut marks = ix.snapshot_marks.lock().unwrap();
                        let m = marks.entry(CLUSTER.to_string()).or_default();
                        m.instances.extend(placed.targets.iter().map(|t| Arc::from(t.arn.as_str())));
                        continue;
                    }
                };
                // A delete of a key that is gone changes nothing and the watch skips it: nothing
                // to wait for.
                if let Op::Delete { key } = &op {
                    let ix = cache.read();
                    if !ix.instances.contains_key(key) && !ix.tasks.contains_key(key.as_str()) {
                        continue;
                    }
                }
                let revision = match store.txn(Txn::new().then(op)).await.unwrap() {
                    TxnOutcome::Committed { revision } => revision,
                    o => panic!("{o:?}"),
                };
                cache.wait_for(revision).await;
                if step % 7 == 0 {
                    assert_same(&cache, step);
                }
            }
            assert_same(&cache, usize::MAX);
            cache.snapshots.with(
                || cache.read(),
                CLUSTER,
                |_, kept, _| {
                    assert!(!kept.is_empty(), "the test exercised a non-empty cluster");
                },
            );
        }
    }
}
