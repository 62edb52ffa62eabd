//! What the cache holds: every record decoded once, keyed by store key, with the indexes and
//! running counts (per cluster, per instance) that Describe, List and the scheduler's snapshots
//! read. `cache` keeps it equal to the store by applying the watch; this module is the data and
//! how one change updates it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use flotilla_model::{CapacityProvider, Cluster, Service, Setting};
use flotilla_protocol::TaskStatus;
use flotilla_store::{KeyValue, Revision};

use super::codec::{decode_record, CodecError};
use super::keys;
use super::records::{IdempotencyRecord, InstanceRecord, Record, Reservation, TaskDefinitionRecord};
use super::tasks::{CachedTask, TaskIndexes, TaskSummary};
use crate::locks;

/// Instances of one cluster that changed since its snapshot was last refreshed.
#[derive(Debug, Default)]
pub struct ClusterMarks {
    /// Container instance ARNs whose record or tasks changed.
    pub instances: HashSet<Arc<str>>,
    /// The set of instances changed: refresh by building afresh.
    pub rebuild: bool,
}

/// What the cache's watch follower records for the snapshots, per cluster.
pub type Marks = HashMap<String, ClusterMarks>;

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
    /// GPU ids assigned to tasks not yet STOPPED.
    pub gpus: BTreeSet<String>,
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
    pub capacity_providers: BTreeMap<String, Entry<CapacityProvider>>,
    /// The addresses awsvpc tasks not yet STOPPED hold, per subnet (see `domain::subnets`).
    pub addresses: HashMap<Arc<str>, BTreeSet<u32>>,
    /// Placement counters by key (see [`keys::placement_of`]).
    pub placements: HashMap<String, Entry<u64>>,
    /// (container instance ARN, task key) of task changes not yet announced to the instance's
    /// agent session.
    pub(super) notices: Vec<(Arc<str>, Arc<str>)>,
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
        && a.is_waiting() == b.is_waiting()
}

/// The cluster a container instance ARN (`...:container-instance/cluster/id`) names.
fn instance_cluster(arn: &str) -> Option<&str> {
    arn.rsplit_once(":container-instance/")?.1.split_once('/').map(|(c, _)| c)
}

/// The cluster a key of the form `kind/cluster/rest` belongs to.
fn cluster_of(key: &str) -> &str {
    key.split('/').nth(1).unwrap_or("")
}

impl Indexes {
    pub(super) fn apply_put(&mut self, kv: &KeyValue) -> Result<(), CodecError> {
        let rev = kv.mod_revision;
        if keys::uncached(&kv.key) {
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
            Record::CapacityProvider(c) => {
                self.capacity_providers.insert(kv.key.clone(), Entry { value: Arc::new(c), revision: rev });
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

    pub(super) fn apply_delete(&mut self, key: &str) {
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
        } else if key.starts_with(keys::CAPACITY_PROVIDER) {
            self.capacity_providers.remove(key);
        }
    }

    /// Tells the cluster's scheduler snapshot that this instance (or one of its tasks) changed.
    fn mark_instance(&mut self, cluster: &str, arn: &str) {
        let marks = locks::get_mut(&mut self.snapshot_marks);
        let m = entry_of(marks, cluster);
        if !m.rebuild && !m.instances.contains(arn) {
            m.instances.insert(arn.into());
        }
    }

    /// Tells the cluster's scheduler snapshot that its set of instances changed.
    fn mark_rebuild(&mut self, cluster: &str) {
        let marks = locks::get_mut(&mut self.snapshot_marks);
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
        let (running, pending) = super::tasks::counts(s.last_status);
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
        if let Some((subnet, address)) = s.address.as_ref().filter(|_| s.last_status != Some(TaskStatus::Stopped)) {
            if sign > 0 {
                self.addresses.entry(subnet.clone()).or_default().insert(*address);
            } else if let Some(set) = self.addresses.get_mut(subnet) {
                set.remove(address);
                if set.is_empty() {
                    self.addresses.remove(subnet);
                }
            }
        }
        if let Some(inst) = &s.instance {
            let usage = entry_of(&mut self.instance_usage, inst);
            usage.running_tasks += sign * running;
            usage.pending_tasks += sign * pending;
            if s.last_status != Some(TaskStatus::Stopped) {
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
            // A Fargate task's host is in the pool, not in the task's cluster.
            self.mark_instance(instance_cluster(inst).unwrap_or(&s.cluster), inst);
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
    for g in &r.gpus {
        if sign > 0 {
            usage.gpus.insert(g.clone());
        } else {
            usage.gpus.remove(g);
        }
    }
}
