//! The cluster as the engine sees it: an immutable snapshot of container instances, laid out for the
//! placement loop. The caller (the API, from its cache) describes each instance as an [`Instance`];
//! [`Snapshot::new`] interns attribute names, attribute values and task groups into small integers
//! and stores the fields the loop reads in flat arrays, so a placement request never compares a
//! string or follows a pointer per instance unless its own constraints ask for it.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::plan::{Plan, Reason};
use crate::query::Facts;
use crate::request::Request;

/// A container instance's status, as far as placement cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstanceStatus {
    #[default]
    Active,
    Draining,
    /// Any other status (REGISTERING, DEREGISTERING, INACTIVE, REGISTRATION_FAILED): never a target.
    Inactive,
}

impl InstanceStatus {
    /// From the wire's status string.
    pub fn from_wire(status: &str) -> Self {
        match status {
            "ACTIVE" => InstanceStatus::Active,
            "DRAINING" => InstanceStatus::Draining,
            _ => InstanceStatus::Inactive,
        }
    }

    /// The first, cheapest checks: whether an instance in this status, with its agent connected
    /// or not, can take a task at all, and if not why.
    pub fn gate(self, agent_connected: bool) -> Option<Reason> {
        match self {
            InstanceStatus::Draining => Some(Reason::Draining),
            InstanceStatus::Inactive => Some(Reason::Inactive),
            InstanceStatus::Active if !agent_connected => Some(Reason::Agent),
            InstanceStatus::Active => None,
        }
    }
}

/// A host port's transport protocol: tcp/80 and udp/80 are different ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A fixed host port: one a task binds, or one already taken on an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    pub port: u16,
    pub protocol: Protocol,
}

impl HostPort {
    /// `port`/tcp.
    pub fn tcp(port: u16) -> Self {
        HostPort { port, protocol: Protocol::Tcp }
    }

    /// `port`/udp.
    pub fn udp(port: u16) -> Self {
        HostPort { port, protocol: Protocol::Udp }
    }

    /// One sortable integer per (protocol, port), so a port check is a binary search.
    pub(crate) fn key(self) -> u32 {
        (u32::from(self.protocol == Protocol::Udp) << 16) | u32::from(self.port)
    }

    /// The port a [`HostPort::key`] stands for.
    pub(crate) fn from_key(key: u32) -> Self {
        let protocol = if key >> 16 == 1 { Protocol::Udp } else { Protocol::Tcp };
        HostPort { port: key as u16, protocol }
    }
}

/// One container instance as the caller describes it to [`Snapshot::new`]. It also implements
/// [`Facts`], so a ListContainerInstances filter can be evaluated on it directly.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Instance {
    pub arn: String,
    pub ec2_instance_id: String,
    pub status: InstanceStatus,
    pub agent_connected: bool,
    pub agent_version: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub registered_at_ms: i64,
    /// Attribute name and optional value (ECS attributes may carry no value).
    pub attributes: Vec<(String, Option<String>)>,
    /// CPU units left after the tasks already on the instance (remainingResources).
    pub remaining_cpu: i64,
    /// MiB left after the tasks already on the instance.
    pub remaining_memory: i64,
    /// GPUs registered and not assigned to a task (which ones is the caller's to pick).
    pub remaining_gpus: u32,
    /// Host ports taken by running tasks and reserved by the agent.
    pub used_ports: Vec<HostPort>,
    pub running_tasks_count: u32,
    /// How many tasks of each task group the instance runs (groups with zero may be left out).
    pub task_groups: Vec<(String, u32)>,
}

impl Facts for Instance {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_deref().unwrap_or(""))
    }
    fn ec2_instance_id(&self) -> &str {
        &self.ec2_instance_id
    }
    fn agent_connected(&self) -> bool {
        self.agent_connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.agent_version.as_deref()
    }
    fn registered_at_ms(&self) -> i64 {
        self.registered_at_ms
    }
    fn running_tasks_count(&self) -> u64 {
        u64::from(self.running_tasks_count)
    }
    fn any_task_group(&self, test: &mut dyn FnMut(&str) -> bool) -> bool {
        self.task_groups.iter().any(|(g, n)| *n > 0 && test(g))
    }
}

/// Strings to dense ids, in order of first appearance. Hashed with fixed keys: ids depend only on
/// the input, and nothing in the engine reads a random seed it was not given.
#[derive(Debug, Clone, Default)]
pub(crate) struct Interner {
    ids: HashMap<Box<str>, u32, BuildHasherDefault<DefaultHasher>>,
    pub names: Vec<Box<str>>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(s.into(), id);
        self.names.push(s.into());
        id
    }

    pub fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
}

/// Where an attribute name sits on every instance. Names most instances carry (zone, instance type,
/// capabilities) are a dense column read by index; rare custom names keep a sorted list so that a
/// fleet with many distinct names does not cost names x instances memory.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub values: Interner,
    cells: Cells,
    /// The instances carrying each value, in increasing order: a spread over the attribute
    /// samples from the emptiest value's instances without looking at the others.
    pub members: Vec<Vec<u32>>,
}

#[derive(Debug, Clone)]
enum Cells {
    Dense(Vec<u32>),
    Sparse(Vec<(u32, u32)>),
}

pub(crate) const ABSENT: u32 = u32::MAX;

impl Column {
    /// `accept[value]` for each of `n` instances, `absent` where the attribute is missing.
    pub fn mask(&self, n: usize, accept: &[bool], absent: bool) -> Vec<bool> {
        match &self.cells {
            Cells::Dense(cells) => {
                cells.iter().map(|&v| if v == ABSENT { absent } else { accept[v as usize] }).collect()
            }
            Cells::Sparse(entries) => {
                let mut out = vec![absent; n];
                for &(i, v) in entries {
                    out[i as usize] = accept[v as usize];
                }
                out
            }
        }
    }

    /// The column as one value id per instance (`u32::MAX` where absent), when it is dense.
    pub fn dense(&self) -> Option<&[u32]> {
        match &self.cells {
            Cells::Dense(cells) => Some(cells),
            Cells::Sparse(_) => None,
        }
    }

    /// The value id of this attribute on instance `i`.
    #[inline]
    pub fn get(&self, i: usize) -> Option<u32> {
        match &self.cells {
            Cells::Dense(cells) => Some(cells[i]).filter(|v| *v != ABSENT),
            Cells::Sparse(entries) => entries.binary_search_by_key(&(i as u32), |e| e.0).ok().map(|at| entries[at].1),
        }
    }
}

/// An immutable view of one cluster's container instances, built once and shared by any number of
/// placement requests and filters.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub(crate) arn: Vec<Box<str>>,
    pub(crate) ec2_instance_id: Vec<Box<str>>,
    pub(crate) agent_version: Vec<Option<Box<str>>>,
    pub(crate) registered_at_ms: Vec<i64>,
    pub(crate) agent_connected: Vec<bool>,
    /// The verdict of the first, cheapest checks (status, agent), worked out once per snapshot.
    pub(crate) gate: Vec<Option<Reason>>,
    pub(crate) cpu: Vec<i32>,
    pub(crate) memory: Vec<i32>,
    pub(crate) gpus: Vec<u32>,
    pub(crate) running: Vec<u32>,
    /// Sorted `HostPort::key`s per instance.
    pub(crate) ports: Vec<Vec<u32>>,
    /// Per task group: (instance, tasks > 0), sorted by instance. Kept per group rather than per
    /// instance because a request asks about one group across all instances: a pass walks the
    /// list alongside the instances instead of chasing a pointer per instance.
    pub(crate) group_members: Vec<Vec<(u32, u32)>>,
    pub(crate) group_names: Interner,
    pub(crate) attribute_names: Interner,
    pub(crate) columns: Vec<Column>,
}

fn clamp_i32(v: i64) -> i32 {
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

impl Snapshot {
    /// Builds the snapshot; instance `i` of the result is the `i`-th of `instances`.
    pub fn new(instances: Vec<Instance>) -> Snapshot {
        let n = instances.len();
        let mut s = Snapshot::default();
        let mut entries: Vec<Vec<(u32, u32)>> = Vec::new();
        for (i, inst) in instances.into_iter().enumerate() {
            s.gate.push(inst.status.gate(inst.agent_connected));
            s.arn.push(inst.arn.into());
            s.ec2_instance_id.push(inst.ec2_instance_id.into());
            s.agent_version.push(inst.agent_version.map(Into::into));
            s.registered_at_ms.push(inst.registered_at_ms);
            s.agent_connected.push(inst.agent_connected);
            s.cpu.push(clamp_i32(inst.remaining_cpu));
            s.memory.push(clamp_i32(inst.remaining_memory));
            s.gpus.push(inst.remaining_gpus);
            s.running.push(inst.running_tasks_count);
            let mut ports: Vec<u32> = inst.used_ports.iter().map(|p| p.key()).collect();
            ports.sort_unstable();
            ports.dedup();
            s.ports.push(ports);
            for (g, count) in inst.task_groups.iter().filter(|(_, c)| *c > 0) {
                let id = s.group_names.intern(g) as usize;
                if id == s.group_members.len() {
                    s.group_members.push(Vec::new());
                }
                // Instances arrive in order, so each list stays sorted; a group named twice adds up.
                match s.group_members[id].last_mut() {
                    Some(e) if e.0 == i as u32 => e.1 += count,
                    _ => s.group_members[id].push((i as u32, *count)),
                }
            }
            for (name, value) in &inst.attributes {
                let name_id = s.attribute_names.intern(name) as usize;
                if name_id == entries.len() {
                    entries.push(Vec::new());
                    s.columns.push(Column {
                        values: Interner::default(),
                        cells: Cells::Sparse(Vec::new()),
                        members: Vec::new(),
                    });
                }
                // A name repeated on one instance keeps its first value, as a lookup by name would.
                if entries[name_id].last().is_some_and(|e| e.0 == i as u32) {
                    continue;
                }
                let value_id = s.columns[name_id].values.intern(value.as_deref().unwrap_or(""));
                entries[name_id].push((i as u32, value_id));
            }
        }
        for (column, list) in s.columns.iter_mut().zip(entries) {
            column.members = vec![Vec::new(); column.values.names.len()];
            for (i, v) in &list {
                column.members[*v as usize].push(*i);
            }
            column.cells = if list.len() * 16 >= n {
                let mut dense = vec![ABSENT; n];
                for (i, v) in list {
                    dense[i as usize] = v;
                }
                Cells::Dense(dense)
            } else {
                Cells::Sparse(list)
            };
        }
        s
    }

    /// Number of container instances.
    pub fn len(&self) -> usize {
        self.arn.len()
    }

    pub fn is_empty(&self) -> bool {
        self.arn.is_empty()
    }

    /// The ARN of instance `i` (placements name instances by index).
    pub fn arn(&self, i: usize) -> &str {
        &self.arn[i]
    }

    /// CPU units and MiB left on instance `i`.
    pub fn remaining(&self, i: usize) -> (i64, i64) {
        (i64::from(self.cpu[i]), i64::from(self.memory[i]))
    }

    /// GPUs left free on instance `i`.
    pub fn remaining_gpus(&self, i: usize) -> u32 {
        self.gpus[i]
    }

    /// Whether `port` is taken on instance `i`.
    pub fn port_used(&self, i: usize, port: HostPort) -> bool {
        self.ports[i].binary_search(&port.key()).is_ok()
    }

    /// How many tasks of `group` run on instance `i`.
    pub fn group_count(&self, i: usize, group: &str) -> u32 {
        group_count(self, i, self.group_names.get(group))
    }

    /// The instances `expr` selects, in order: ListContainerInstances' `filter`. Evaluated column
    /// by column (each attribute comparison once per distinct value), so a regex or a list costs
    /// the same at ten thousand instances as at ten.
    pub fn filter(&self, expr: &crate::query::Expr) -> Vec<usize> {
        crate::pipeline::checks::select(self, expr)
    }

    /// Instance `i` as query [`Facts`] (for one instance; [`Snapshot::filter`] for many).
    pub fn facts(&self, i: usize) -> impl Facts + '_ {
        InstanceView { snapshot: self, index: i, placed: 0, request_group: "" }
    }

    /// Reserves what `plan`'s placements take, as the store will once the plan commits: cpu,
    /// memory, the request's host ports, and one more task of its group. Lets a caller (or a
    /// benchmark filling a cluster) keep a snapshot current without rebuilding it.
    pub fn apply(&mut self, plan: &Plan, request: &Request) {
        let group = self.group_names.intern(&request.group) as usize;
        if group == self.group_members.len() {
            self.group_members.push(Vec::new());
        }
        for p in &plan.placements {
            let i = p.instance;
            self.cpu[i] = self.cpu[i].saturating_sub(clamp_i32(i64::from(request.cpu)));
            self.memory[i] = self.memory[i].saturating_sub(clamp_i32(i64::from(request.memory)));
            self.gpus[i] = self.gpus[i].saturating_sub(request.gpus);
            self.running[i] += 1;
            for port in &request.ports {
                if let Err(at) = self.ports[i].binary_search(&port.key()) {
                    self.ports[i].insert(at, port.key());
                }
            }
            let members = &mut self.group_members[group];
            match members.binary_search_by_key(&(i as u32), |e| e.0) {
                Ok(at) => members[at].1 += 1,
                Err(at) => members.insert(at, (i as u32, 1)),
            }
        }
    }
    /// Replaces what the snapshot holds about instance `i` with `inst` (same ARN, new usage,
    /// status, agent, groups), in place: a caller that keeps a snapshot per cluster refreshes the
    /// few instances that changed instead of building the whole snapshot again for every request.
    /// Attributes are laid out across shared columns, so a change to them is not made here:
    /// `false` (and nothing changed) means `inst`'s attributes differ and the caller must rebuild.
    pub fn update(&mut self, i: usize, inst: &Instance) -> bool {
        if !self.same_attributes(i, &inst.attributes) {
            return false;
        }
        self.update_keeping_attributes(i, inst);
        true
    }

    /// [`Snapshot::update`] for a caller that knows the instance's attributes did not change
    /// (its record's attributes compare equal): `inst.attributes` is not read, so the caller
    /// need not build it, which is most of the cost of describing an instance.
    pub fn update_keeping_attributes(&mut self, i: usize, inst: &Instance) {
        self.gate[i] = inst.status.gate(inst.agent_connected);
        if *self.arn[i] != *inst.arn {
            self.arn[i] = inst.arn.as_str().into();
        }
        if *self.ec2_instance_id[i] != *inst.ec2_instance_id {
            self.ec2_instance_id[i] = inst.ec2_instance_id.as_str().into();
        }
        if self.agent_version[i].as_deref() != inst.agent_version.as_deref() {
            self.agent_version[i] = inst.agent_version.as_deref().map(Into::into);
        }
        self.registered_at_ms[i] = inst.registered_at_ms;
        self.agent_connected[i] = inst.agent_connected;
        self.cpu[i] = clamp_i32(inst.remaining_cpu);
        self.memory[i] = clamp_i32(inst.remaining_memory);
        self.gpus[i] = inst.remaining_gpus;
        self.running[i] = inst.running_tasks_count;
        let ports = &mut self.ports[i];
        ports.clear();
        ports.extend(inst.used_ports.iter().map(|p| p.key()));
        ports.sort_unstable();
        ports.dedup();
        let at = i as u32;
        // Groups the instance no longer runs drop out of their lists; a list may stay empty,
        // which every reader takes as "no instance runs this group".
        for members in &mut self.group_members {
            if let Ok(k) = members.binary_search_by_key(&at, |e| e.0) {
                members.remove(k);
            }
        }
        for (g, count) in inst.task_groups.iter().filter(|(_, c)| *c > 0) {
            let id = self.group_names.intern(g) as usize;
            if id == self.group_members.len() {
                self.group_members.push(Vec::new());
            }
            let members = &mut self.group_members[id];
            match members.binary_search_by_key(&at, |e| e.0) {
                Ok(k) => members[k].1 += count,
                Err(k) => members.insert(k, (at, *count)),
            }
        }
    }

    /// Whether instance `i` carries exactly `attributes` (first value of a repeated name wins, as
    /// in [`Snapshot::new`]).
    fn same_attributes(&self, i: usize, attributes: &[(String, Option<String>)]) -> bool {
        let mut names = 0;
        for (k, (name, value)) in attributes.iter().enumerate() {
            if attributes[..k].iter().any(|(n, _)| n == name) {
                continue;
            }
            names += 1;
            let Some(id) = self.attribute_names.get(name) else { return false };
            let column = &self.columns[id as usize];
            match column.get(i) {
                Some(v) if *column.values.names[v as usize] == *value.as_deref().unwrap_or("") => {}
                _ => return false,
            }
        }
        names == self.columns.iter().filter(|c| c.get(i).is_some()).count()
    }

    /// Instance `i` described as [`Snapshot::new`] takes it: attributes in column order, task
    /// groups in group order, ports sorted. Two snapshots hold the same instance when these agree
    /// after sorting, whatever order their interners assigned ids in.
    pub fn instance(&self, i: usize) -> Instance {
        let attributes = self
            .attribute_names
            .names
            .iter()
            .zip(&self.columns)
            .filter_map(|(name, c)| {
                let v = c.get(i)?;
                let value = &*c.values.names[v as usize];
                // Snapshot::new stores a missing value as "", as a lookup by name reads it.
                Some((name.to_string(), Some(value.to_string())))
            })
            .collect();
        let task_groups = self
            .group_names
            .names
            .iter()
            .zip(&self.group_members)
            .filter_map(|(name, members)| {
                let k = members.binary_search_by_key(&(i as u32), |e| e.0).ok()?;
                Some((name.to_string(), members[k].1))
            })
            .collect();
        let used_ports = self.ports[i]
            .iter()
            .map(|&k| HostPort {
                port: (k & 0xffff) as u16,
                protocol: if k >> 16 == 1 { Protocol::Udp } else { Protocol::Tcp },
            })
            .collect();
        Instance {
            arn: self.arn[i].to_string(),
            ec2_instance_id: self.ec2_instance_id[i].to_string(),
            status: match self.gate[i] {
                Some(Reason::Draining) => InstanceStatus::Draining,
                Some(Reason::Inactive) => InstanceStatus::Inactive,
                _ => InstanceStatus::Active,
            },
            agent_connected: self.agent_connected[i],
            agent_version: self.agent_version[i].as_deref().map(str::to_string),
            registered_at_ms: self.registered_at_ms[i],
            attributes,
            remaining_cpu: i64::from(self.cpu[i]),
            remaining_memory: i64::from(self.memory[i]),
            remaining_gpus: self.gpus[i],
            used_ports,
            running_tasks_count: self.running[i],
            task_groups,
        }
    }
}

/// Tasks of `group` on instance `i`, by binary search (for the few instances a request revisits).
pub(crate) fn group_count(snapshot: &Snapshot, i: usize, group: Option<u32>) -> u32 {
    let Some(members) = group.map(|g| &snapshot.group_members[g as usize]) else { return 0 };
    members.binary_search_by_key(&(i as u32), |e| e.0).map_or(0, |at| members[at].1)
}

/// Tasks of one group per instance, for a pass that visits instances in increasing order: each
/// step moves along the group's sorted list, so the whole pass reads it once, front to back.
pub(crate) struct GroupCursor<'a> {
    members: &'a [(u32, u32)],
    at: usize,
}

impl<'a> GroupCursor<'a> {
    pub fn new(snapshot: &'a Snapshot, group: Option<u32>) -> Self {
        GroupCursor { members: group.map_or(&[][..], |g| &snapshot.group_members[g as usize]), at: 0 }
    }

    /// Tasks of the group on instance `i`; `i` must not decrease between calls.
    #[inline]
    pub fn count(&mut self, i: usize) -> u32 {
        let i = i as u32;
        while self.at < self.members.len() && self.members[self.at].0 < i {
            self.at += 1;
        }
        match self.members.get(self.at) {
            Some(e) if e.0 == i => e.1,
            _ => 0,
        }
    }
}

/// An instance of a snapshot plus the tasks a request has placed on it so far.
pub(crate) struct InstanceView<'a> {
    pub snapshot: &'a Snapshot,
    pub index: usize,
    pub placed: u32,
    pub request_group: &'a str,
}

impl Facts for InstanceView<'_> {
    fn attribute(&self, name: &str) -> Option<&str> {
        let s = self.snapshot;
        let column = &s.columns[s.attribute_names.get(name)? as usize];
        column.get(self.index).map(|v| &*column.values.names[v as usize])
    }
    fn ec2_instance_id(&self) -> &str {
        &self.snapshot.ec2_instance_id[self.index]
    }
    fn agent_connected(&self) -> bool {
        self.snapshot.agent_connected[self.index]
    }
    fn agent_version(&self) -> Option<&str> {
        self.snapshot.agent_version[self.index].as_deref()
    }
    fn registered_at_ms(&self) -> i64 {
        self.snapshot.registered_at_ms[self.index]
    }
    fn running_tasks_count(&self) -> u64 {
        u64::from(self.snapshot.running[self.index]) + u64::from(self.placed)
    }
    fn any_task_group(&self, test: &mut dyn FnMut(&str) -> bool) -> bool {
        let s = self.snapshot;
        let i = self.index as u32;
        (self.placed > 0 && test(self.request_group))
            || s.group_members
                .iter()
                .zip(&s.group_names.names)
                .any(|(members, name)| members.binary_search_by_key(&i, |e| e.0).is_ok() && test(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(mut inst: Instance) -> Instance {
        for (_, v) in &mut inst.attributes {
            v.get_or_insert_with(String::new);
        }
        inst.attributes.sort();
        inst.task_groups.retain(|(_, n)| *n > 0);
        inst.task_groups.sort();
        inst.used_ports.sort();
        inst.used_ports.dedup();
        inst
    }

    fn fleet() -> Vec<Instance> {
        (0..6)
            .map(|n| Instance {
                arn: format!("ci/{n}"),
                status: if n == 5 { InstanceStatus::Draining } else { InstanceStatus::Active },
                agent_connected: n != 4,
                attributes: vec![
                    ("zone".into(), Some(format!("z{}", n % 3))),
                    ("flag".into(), None),
                    ("rare".into(), (n == 2).then(|| "x".into())),
                ]
                .into_iter()
                .filter(|(name, v)| name != "rare" || v.is_some())
                .collect(),
                remaining_cpu: 1024,
                remaining_memory: 2048,
                used_ports: vec![HostPort::tcp(22)],
                task_groups: vec![("family:web".into(), n as u32 % 2)],
                ..Instance::default()
            })
            .collect()
    }

    #[test]
    fn update_in_place_equals_a_fresh_build() {
        let mut list = fleet();
        let mut snap = Snapshot::new(list.clone());
        list[1].remaining_cpu = 10;
        list[2].remaining_gpus = 3;
        list[1].used_ports.push(HostPort::udp(53));
        list[1].task_groups = vec![("family:db".into(), 2), ("family:web".into(), 0)];
        list[4].agent_connected = true;
        list[5].status = InstanceStatus::Inactive;
        list[3].task_groups.clear();
        list[0].running_tasks_count = 7;
        for i in [0, 1, 2, 3, 4, 5] {
            assert!(snap.update(i, &list[i]));
        }
        let fresh = Snapshot::new(list.clone());
        for (i, inst) in list.iter().enumerate() {
            assert_eq!(normalized(snap.instance(i)), normalized(inst.clone()), "instance {i}");
            assert_eq!(normalized(snap.instance(i)), normalized(fresh.instance(i)), "instance {i}");
        }
        assert_eq!(snap.group_count(1, "family:db"), 2);
        assert_eq!(snap.group_count(1, "family:web"), 0);
        assert!(snap.port_used(1, HostPort::udp(53)));
    }

    #[test]
    fn attribute_changes_ask_for_a_rebuild() {
        let list = fleet();
        let mut snap = Snapshot::new(list.clone());
        let mut changed = list[0].clone();
        changed.attributes[0].1 = Some("z9".into());
        assert!(!snap.update(0, &changed));
        let mut extra = list[0].clone();
        extra.attributes.push(("rare".into(), Some("x".into())));
        assert!(!snap.update(0, &extra));
        let mut fewer = list[2].clone();
        fewer.attributes.retain(|(n, _)| n != "rare");
        assert!(!snap.update(2, &fewer));
        assert_eq!(normalized(snap.instance(2)), normalized(list[2].clone()), "a refused update changes nothing");
        assert!(snap.update(2, &list[2]));
    }
}
