//! How the cache keeps tasks, the most numerous record by far: each task once as the JSON ECS
//! shows (so DescribeTasks copies bytes instead of re-encoding structs), its tags apart (they
//! are shown only on request), and a small summary of the fields that ListTasks filters on and
//! the counts depend on. Strings the summary shares with the indexes (family, group, instance)
//! are stored once. This keeps a stored task to about its JSON size in memory.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use std::borrow::Cow;

use flotilla_model::{Tag, Task};
use flotilla_protocol::TaskStatus;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::codec::{self, CodecError};
use super::records::{Hidden, Reservation, TaskRecord};

/// Task keys in key order.
pub type TaskKeys = BTreeSet<Arc<str>>;

/// An index from (cluster, value) to the keys of the tasks that have that value.
pub type ClusterIndex = HashMap<(Arc<str>, Arc<str>), TaskKeys>;

/// A task's lastStatus in the shared lifecycle; `None` for a status it does not know.
pub type LastStatus = Option<TaskStatus>;

/// How a task in this status counts in running and pending totals.
pub fn counts(status: LastStatus) -> (i64, i64) {
    match status {
        Some(TaskStatus::Running) => (1, 0),
        Some(s) if s.is_pending() => (0, 1),
        _ => (0, 0),
    }
}

/// The fields of a task that indexes, filters and counts need.
#[derive(Debug, Clone)]
pub struct TaskSummary {
    pub cluster: Arc<str>,
    /// `cluster/desiredStatus`: the first half of the family, startedBy and group index keys, so
    /// that ListTasks (which always filters on desired status) reads exact matches.
    pub scope: Arc<str>,
    pub last_status: LastStatus,
    /// desiredStatus: RUNNING or STOPPED.
    pub desired: Arc<str>,
    pub launch_type: Option<Arc<str>>,
    pub instance: Option<Arc<str>>,
    pub family: Option<Arc<str>>,
    pub started_by: Option<Arc<str>>,
    pub group: Option<Arc<str>>,
    /// `capacityProviderName`: which provider's hosts the task runs on, or waits for.
    pub capacity_provider: Option<Arc<str>>,
    pub reservation: Option<Reservation>,
    /// An awsvpc task's subnet and address (as a number), held until it stops.
    pub address: Option<(Arc<str>, u32)>,
}

impl TaskSummary {
    /// Whether the task waits in PROVISIONING, with no instance, for a capacity provider's hosts.
    pub fn is_waiting(&self) -> bool {
        self.instance.is_none()
            && (self.capacity_provider.is_some() || self.launch_type.as_deref() == Some(flotilla_protocol::FARGATE))
            && self.last_status == Some(TaskStatus::Provisioning)
            && &*self.desired == "RUNNING"
    }
}

/// A task as the cache holds it.
#[derive(Debug)]
pub struct CachedTask {
    /// The task as ECS shows it, without its tags: JSON, compressed with LZ4. Task JSON repeats
    /// ARN prefixes many times over and shrinks about threefold; undoing that costs about a
    /// microsecond per task shown.
    json: Box<[u8]>,
    /// The task's tags as a JSON array, when it has any.
    pub tags: Option<Box<RawValue>>,
    pub summary: TaskSummary,
    /// What the task holds beyond the ECS shape (a Fargate task's host, an awsvpc interface).
    pub hidden: Option<Box<Hidden>>,
}

impl CachedTask {
    /// The full task, tags included.
    /// The task's JSON without its tags.
    fn plain_json(&self) -> String {
        // The bytes were compressed from a String by this process, so they always decompress.
        let bytes = lz4_flex::decompress_size_prepended(&self.json).expect("cached task JSON decompresses");
        String::from_utf8(bytes).expect("cached task JSON is UTF-8")
    }

    pub fn task(&self) -> Task {
        // The JSON was produced from a Task by this process, so it always decodes.
        let mut t: Task = serde_json::from_str(&self.plain_json()).expect("cached task JSON decodes");
        t.tags = self.tags.as_ref().map(|raw| serde_json::from_str::<Vec<Tag>>(raw.get()).expect("cached tags decode"));
        t
    }

    /// The stored record this entry was built from.
    pub fn record(&self) -> TaskRecord {
        TaskRecord { task: self.task(), reservation: self.summary.reservation.clone(), hidden: self.hidden.clone() }
    }

    /// Appends the task's JSON to `out`, tags included only when asked for.
    pub fn write_json(&self, out: &mut Vec<u8>, with_tags: bool) {
        let start = out.len();
        let bytes = lz4_flex::decompress_size_prepended(&self.json).expect("cached task JSON decompresses");
        out.extend_from_slice(&bytes);
        if with_tags && out.len() > start {
            // The JSON is an object with at least taskArn, so it ends in '}' after a member.
            out.pop();
            out.extend_from_slice(b",\"tags\":");
            out.extend_from_slice(self.tags.as_ref().map(|t| t.get()).unwrap_or("[]").as_bytes());
            out.push(b'}');
        }
    }

    /// The task's JSON for DescribeTasks: tags included only when asked for.
    pub fn to_json(&self, with_tags: bool) -> Box<RawValue> {
        let plain = self.plain_json();
        if !with_tags {
            return RawValue::from_string(plain).expect("cached task JSON is valid");
        }
        let body = plain.as_str();
        let tags = self.tags.as_ref().map(|t| t.get()).unwrap_or("[]");
        // The JSON is an object with at least taskArn, so it ends in '}' after a member.
        let mut s = String::with_capacity(body.len() + tags.len() + 10);
        s.push_str(&body[..body.len() - 1]);
        s.push_str(",\"tags\":");
        s.push_str(tags);
        s.push('}');
        RawValue::from_string(s).expect("spliced JSON is valid")
    }

    pub fn last_status(&self) -> LastStatus {
        self.summary.last_status
    }

    pub fn is_stopped(&self) -> bool {
        self.summary.last_status == Some(TaskStatus::Stopped)
    }
}

/// The fields of a stored task the summary is made of, borrowed from its JSON where they hold no
/// escapes.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SummaryFields<'a> {
    #[serde(borrow)]
    last_status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    desired_status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    launch_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    container_instance_arn: Option<Cow<'a, str>>,
    #[serde(borrow)]
    task_definition_arn: Option<Cow<'a, str>>,
    #[serde(borrow)]
    started_by: Option<Cow<'a, str>>,
    #[serde(borrow)]
    group: Option<Cow<'a, str>>,
    #[serde(borrow)]
    capacity_provider_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tags: Option<&'a RawValue>,
}

/// Secondary indexes over tasks. `by_family`, `by_started_by` and `by_group` are keyed by
/// (scope, value), where the scope is `cluster/desiredStatus` (see [`scope_of`]).
#[derive(Debug, Default)]
pub struct TaskIndexes {
    pub by_cluster_desired: ClusterIndex,
    /// Keyed by container instance ARN, which already names the cluster.
    pub by_instance: HashMap<Arc<str>, TaskKeys>,
    pub by_family: ClusterIndex,
    pub by_started_by: ClusterIndex,
    pub by_group: ClusterIndex,
    /// Per cluster, the tasks that wait in PROVISIONING, with no instance, for a capacity
    /// provider's hosts.
    pub waiting: HashMap<Arc<str>, TaskKeys>,
    scopes: HashMap<String, Arc<str>>,
}

/// The scope of the value indexes for tasks of `cluster` with `desired` status.
pub fn scope_of(cluster: &str, desired: &str) -> String {
    format!("{cluster}/{desired}")
}

/// The Arc an index already holds for `value`, so equal strings are stored once.
fn shared(index: &ClusterIndex, cluster: &Arc<str>, value: &str) -> Arc<str> {
    let probe = (cluster.clone(), Arc::<str>::from(value));
    match index.get_key_value(&probe) {
        Some(((_, v), _)) => v.clone(),
        None => probe.1,
    }
}

fn set_member<K: std::hash::Hash + Eq>(map: &mut HashMap<K, TaskKeys>, k: K, key: &Arc<str>, add: bool) {
    if add {
        map.entry(k).or_default().insert(key.clone());
    } else if let std::collections::hash_map::Entry::Occupied(mut e) = map.entry(k) {
        e.get_mut().remove(key);
        if e.get().is_empty() {
            e.remove();
        }
    }
}

/// The subnet and address a task's interface holds.
fn address_of(hidden: Option<&Hidden>) -> Option<(Arc<str>, u32)> {
    let n = hidden?.network.as_ref()?;
    Some((Arc::from(n.subnet_id.as_str()), address_number(&n.ipv4_address)?))
}

/// An IPv4 address as the address index keeps it.
pub fn address_number(address: &str) -> Option<u32> {
    address.parse::<std::net::Ipv4Addr>().ok().map(u32::from)
}

/// `arn:...:task-definition/family:3` -> `family`.
pub fn family_of_arn(arn: &str) -> Option<&str> {
    let rest = arn.rsplit_once(":task-definition/")?.1;
    Some(rest.rsplit_once(':').map(|(f, _)| f).unwrap_or(rest))
}

impl TaskIndexes {
    /// The keys of every task of `cluster` in `group`, whatever its desired status.
    pub fn in_group<'a>(&'a self, cluster: &str, group: &str) -> impl Iterator<Item = &'a Arc<str>> + 'a {
        let g: Arc<str> = group.into();
        let scopes: Vec<Arc<str>> = ["RUNNING", "STOPPED"].iter().map(|d| scope_of(cluster, d).into()).collect();
        scopes.into_iter().filter_map(move |scope| self.by_group.get(&(scope, g.clone()))).flatten()
    }

    /// Builds the cached form of a stored task, sharing strings with the indexes.
    pub fn cache(&self, cluster: &str, rec: TaskRecord) -> CachedTask {
        let TaskRecord { mut task, reservation, hidden } = rec;
        let tags = task
            .tags
            .take()
            .filter(|t| !t.is_empty())
            .map(|t| RawValue::from_string(serde_json::to_string(&t).expect("tags encode")).expect("valid JSON"));
        let fields = SummaryFields {
            last_status: task.last_status.as_deref().map(Cow::Borrowed),
            desired_status: task.desired_status.as_deref().map(Cow::Borrowed),
            launch_type: task.launch_type.as_deref().map(Cow::Borrowed),
            container_instance_arn: task
                .container_instance_arn
                .as_deref()
                .or(hidden.as_ref().and_then(|h| h.host.as_deref()))
                .map(Cow::Borrowed),
            task_definition_arn: task.task_definition_arn.as_deref().map(Cow::Borrowed),
            started_by: task.started_by.as_deref().map(Cow::Borrowed),
            group: task.group.as_deref().map(Cow::Borrowed),
            capacity_provider_name: task.capacity_provider_name.as_deref().map(Cow::Borrowed),
            tags: None,
        };
        let mut summary = self.summarize(cluster, &fields, reservation);
        summary.address = address_of(hidden.as_deref());
        let json = lz4_flex::compress_prepend_size(serde_json::to_string(&task).expect("tasks encode").as_bytes());
        CachedTask { json: json.into_boxed_slice(), tags, summary, hidden }
    }

    /// Builds the cached form straight from a stored value (a [`TaskRecord`]'s JSON). A task
    /// without tags is stored as exactly the JSON the cache keeps, so it is only scanned for the
    /// summary's fields rather than decoded and encoded again; a tagged one takes the long way.
    pub fn cache_stored(&self, cluster: &str, key: &str, bytes: &[u8]) -> Result<CachedTask, CodecError> {
        #[derive(Deserialize)]
        struct Stored<'a> {
            #[serde(borrow)]
            task: &'a RawValue,
            #[serde(default)]
            reservation: Option<Reservation>,
            #[serde(default)]
            hidden: Option<Box<Hidden>>,
        }
        let json = codec::json_of(key, bytes)?;
        let bad = |source| CodecError::Json { key: key.into(), source };
        let stored: Stored = serde_json::from_slice(json).map_err(bad)?;
        let mut fields: SummaryFields = serde_json::from_str(stored.task.get()).map_err(bad)?;
        if fields.tags.is_some() {
            return Ok(self.cache(cluster, codec::decode(key, bytes)?));
        }
        if fields.container_instance_arn.is_none() {
            fields.container_instance_arn =
                stored.hidden.as_ref().and_then(|h| h.host.as_deref()).map(|h| Cow::Owned(h.to_string()));
        }
        let mut summary = self.summarize(cluster, &fields, stored.reservation);
        summary.address = address_of(stored.hidden.as_deref());
        let compressed = lz4_flex::compress_prepend_size(stored.task.get().as_bytes());
        Ok(CachedTask { json: compressed.into_boxed_slice(), tags: None, summary, hidden: stored.hidden })
    }

    fn summarize(&self, cluster: &str, task: &SummaryFields, reservation: Option<Reservation>) -> TaskSummary {
        let cluster: Arc<str> = self
            .by_cluster_desired
            .keys()
            .find(|(c, _)| &**c == cluster)
            .map(|(c, _)| c.clone())
            .unwrap_or_else(|| cluster.into());
        let desired = shared(&self.by_cluster_desired, &cluster, task.desired_status.as_deref().unwrap_or("RUNNING"));
        let scope_name = scope_of(&cluster, &desired);
        let scope = self.scopes.get(&scope_name).cloned().unwrap_or_else(|| scope_name.into());
        TaskSummary {
            last_status: task.last_status.as_deref().and_then(TaskStatus::parse),
            desired,
            launch_type: task.launch_type.as_deref().map(Arc::from),
            instance: task
                .container_instance_arn
                .as_deref()
                .map(|i| self.by_instance.get_key_value(i).map(|(k, _)| k.clone()).unwrap_or_else(|| i.into())),
            family: task
                .task_definition_arn
                .as_deref()
                .and_then(family_of_arn)
                .map(|f| shared(&self.by_family, &scope, f)),
            started_by: task.started_by.as_deref().map(|s| shared(&self.by_started_by, &scope, s)),
            group: task.group.as_deref().map(|g| shared(&self.by_group, &scope, g)),
            capacity_provider: task.capacity_provider_name.as_deref().map(Arc::from),
            reservation,
            address: None,
            cluster,
            scope,
        }
    }

    /// Adds (`add`) or removes a task's keys from every index.
    pub fn update(&mut self, key: &Arc<str>, s: &TaskSummary, add: bool) {
        set_member(&mut self.by_cluster_desired, (s.cluster.clone(), s.desired.clone()), key, add);
        if add {
            self.scopes.entry(s.scope.to_string()).or_insert_with(|| s.scope.clone());
        }
        if let Some(f) = &s.family {
            set_member(&mut self.by_family, (s.scope.clone(), f.clone()), key, add);
        }
        if let Some(v) = &s.started_by {
            set_member(&mut self.by_started_by, (s.scope.clone(), v.clone()), key, add);
        }
        if let Some(g) = &s.group {
            set_member(&mut self.by_group, (s.scope.clone(), g.clone()), key, add);
        }
        if let Some(i) = &s.instance {
            set_member(&mut self.by_instance, i.clone(), key, add);
        }
        if s.is_waiting() {
            set_member(&mut self.waiting, s.cluster.clone(), key, add);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_with_and_without_tags() {
        let ix = TaskIndexes::default();
        let task = Task {
            task_arn: Some("arn:aws:ecs:us-east-1:0:task/c/1".into()),
            tags: Some(vec![Tag { key: Some("k".into()), value: Some("v".into()) }]),
            ..Default::default()
        };
        let cached = ix.cache("c", TaskRecord { task: task.clone(), ..Default::default() });
        assert_eq!(cached.task(), task);
        let without: Task = serde_json::from_str(cached.to_json(false).get()).unwrap();
        assert_eq!(without.tags, None);
        let with: Task = serde_json::from_str(cached.to_json(true).get()).unwrap();
        assert_eq!(with, task);
        let untagged = ix.cache("c", TaskRecord { task: Task { tags: None, ..task }, ..Default::default() });
        let shown: Task = serde_json::from_str(untagged.to_json(true).get()).unwrap();
        assert_eq!(shown.tags, Some(vec![]));
    }

    #[test]
    fn a_stored_task_caches_as_a_decoded_one_does() {
        let ix = TaskIndexes::default();
        let task = Task {
            task_arn: Some("arn:aws:ecs:us-east-1:0:task/c/1".into()),
            last_status: Some("RUNNING".into()),
            desired_status: Some("RUNNING".into()),
            container_instance_arn: Some("arn:aws:ecs:us-east-1:0:container-instance/c/9".into()),
            task_definition_arn: Some("arn:aws:ecs:us-east-1:0:task-definition/web:2".into()),
            group: Some("service:\"quoted\"".into()),
            started_by: Some("ecs-svc/1".into()),
            ..Default::default()
        };
        let reservation = Some(Reservation { cpu: 256, memory: 512, ports: vec![80], ports_udp: vec![], gpus: vec![] });
        let tagged = Task { tags: Some(vec![Tag { key: Some("k".into()), value: Some("v".into()) }]), ..task.clone() };
        for t in [task, tagged] {
            let rec = TaskRecord { task: t, reservation: reservation.clone(), hidden: None };
            let stored = codec::encode(&rec);
            let fast = ix.cache_stored("c", "task/c/1", &stored).unwrap();
            let slow = ix.cache("c", rec.clone());
            assert_eq!(fast.task(), rec.task);
            assert_eq!(fast.to_json(true).get(), slow.to_json(true).get());
            assert_eq!(format!("{:?}", fast.summary), format!("{:?}", slow.summary));
        }
        assert!(matches!(ix.cache_stored("c", "task/c/1", b"\x01{"), Err(CodecError::Json { .. })));
    }

    #[test]
    fn family_from_arn() {
        assert_eq!(family_of_arn("arn:aws:ecs:r:a:task-definition/web-app:12"), Some("web-app"));
        assert_eq!(family_of_arn("nope"), None);
    }
}
