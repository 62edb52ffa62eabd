//! The feasibility checks of one request, compiled against one snapshot. Compiling is where the
//! strings go: a required attribute becomes a column and a value id, and every attribute comparison
//! of a memberOf expression is asked once per distinct value of its attribute (a regex runs a
//! handful of times, not once per instance), leaving an index into a table of booleans. The checks
//! then run over instances without allocating or comparing strings.

use crate::plan::Reason;
use crate::query::{Leaf, Node, Subject};
use crate::request::{Constraint, Request};
use crate::snapshot::{Column, InstanceView, Snapshot};

/// What one task of a request holds: cpu units, MiB and GPUs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Need {
    pub cpu: i32,
    pub memory: i32,
    pub gpus: u32,
}

/// Whether one more task holding `need` and the fixed `ports` (sorted `HostPort` keys) fits what
/// an instance has left (`left`), after `placed` tasks of the same request went there: the one
/// resource verdict, for the placement pipeline and for [`crate::verify`] alike.
#[inline]
pub(crate) fn room(
    left: (i64, i64, i64),
    placed: u32,
    need: Need,
    ports: &[u32],
    port_taken: impl Fn(u32) -> bool,
) -> Result<(), Reason> {
    let (cpu_left, memory_left, gpus_left) = left;
    if cpu_left < i64::from(need.cpu) {
        return Err(Reason::Cpu);
    }
    if memory_left < i64::from(need.memory) {
        return Err(Reason::Memory);
    }
    if gpus_left < i64::from(need.gpus) {
        return Err(Reason::Gpu);
    }
    // A task placed here by this request already holds every port the next one needs.
    if !ports.is_empty() && (placed > 0 || ports.iter().any(|&p| port_taken(p))) {
        return Err(Reason::Ports);
    }
    Ok(())
}

/// What a request has done to one instance so far, plus what the snapshot says about it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InstState {
    pub cpu: i32,
    pub memory: i32,
    pub gpus: u32,
    /// Tasks of the request's group on the instance, including those placed by this request.
    pub group: u32,
    /// Tasks this request placed on the instance.
    pub placed: u32,
}

impl InstState {
    /// The state before the request, given the tasks of the group already on the instance.
    #[inline]
    pub fn initial(snapshot: &Snapshot, i: usize, group: u32) -> Self {
        InstState { cpu: snapshot.cpu[i], memory: snapshot.memory[i], gpus: snapshot.gpus[i], group, placed: 0 }
    }
}

enum Required<'a> {
    /// The snapshot has no instance with this attribute (or value): nothing can pass.
    Impossible,
    Has(&'a Column),
    Is(&'a Column, u32),
}

/// A memberOf expression with its leaves resolved against the snapshot.
enum Compiled<'a> {
    And(Vec<Compiled<'a>>),
    Or(Vec<Compiled<'a>>),
    Not(Box<Compiled<'a>>),
    Const(bool),
    /// The leaf's verdict for each value id of the column, and for instances without the attribute.
    Attribute {
        column: &'a Column,
        accept: Vec<bool>,
        absent: bool,
    },
    /// Whether the instance runs a task of a group that passes the leaf's test (worked out per
    /// instance at compile time from the groups' member lists), and whether the request's own group
    /// passes (it is on the instance once the request placed a task there).
    Group {
        leaf: &'a Leaf,
        any: Vec<bool>,
        request_group: bool,
    },
    /// Leaves on an instance's own fields (ec2InstanceId, registeredAt, ...): cheap to ask directly.
    Direct(&'a Leaf),
}

impl<'a> Compiled<'a> {
    fn new(node: &'a Node, snapshot: &'a Snapshot, group: &str) -> Self {
        match node {
            Node::And(items) => Compiled::And(items.iter().map(|n| Compiled::new(n, snapshot, group)).collect()),
            Node::Or(items) => Compiled::Or(items.iter().map(|n| Compiled::new(n, snapshot, group)).collect()),
            Node::Not(inner) => Compiled::Not(Box::new(Compiled::new(inner, snapshot, group))),
            Node::Leaf(leaf) => match &leaf.subject {
                Subject::Attribute(name) => match snapshot.attribute_names.get(name) {
                    None => Compiled::Const(leaf.test_attribute(None)),
                    Some(id) => {
                        let column = &snapshot.columns[id as usize];
                        let accept: Vec<bool> =
                            column.values.names.iter().map(|v| leaf.test_attribute(Some(v))).collect();
                        let absent = leaf.test_attribute(None);
                        if accept.iter().all(|a| *a == absent) {
                            Compiled::Const(absent)
                        } else {
                            Compiled::Attribute { column, accept, absent }
                        }
                    }
                },
                Subject::TaskGroup => {
                    let mut any = vec![false; snapshot.len()];
                    for (members, name) in snapshot.group_members.iter().zip(&snapshot.group_names.names) {
                        if leaf.pred.test_text(name) {
                            for (i, _) in members {
                                any[*i as usize] = true;
                            }
                        }
                    }
                    Compiled::Group { leaf, any, request_group: leaf.pred.test_text(group) }
                }
                _ => Compiled::Direct(leaf),
            },
        }
    }

    fn eval(&self, snapshot: &Snapshot, i: usize, placed: u32, group: &str) -> bool {
        match self {
            Compiled::And(items) => items.iter().all(|c| c.eval(snapshot, i, placed, group)),
            Compiled::Or(items) => items.iter().any(|c| c.eval(snapshot, i, placed, group)),
            Compiled::Not(inner) => !inner.eval(snapshot, i, placed, group),
            Compiled::Const(v) => *v,
            Compiled::Attribute { column, accept, absent } => column.get(i).map_or(*absent, |v| accept[v as usize]),
            Compiled::Group { leaf, any, request_group } => leaf.test_groups((placed > 0 && *request_group) || any[i]),
            Compiled::Direct(leaf) => leaf.eval(&InstanceView { snapshot, index: i, placed, request_group: group }),
        }
    }

    /// The verdict for every instance before the request places anything, column by column: each
    /// attribute leaf is one pass over its column, and `and`/`or`/`not` combine whole masks, which
    /// is several times cheaper than walking the tree once per instance.
    fn eval_all(&self, snapshot: &Snapshot, group: &str) -> Vec<bool> {
        let n = snapshot.len();
        match self {
            Compiled::And(items) | Compiled::Or(items) => {
                let and = matches!(self, Compiled::And(_));
                let mut out = vec![and; n];
                for item in items {
                    let mask = item.eval_all(snapshot, group);
                    for (o, m) in out.iter_mut().zip(&mask) {
                        *o = if and { *o & *m } else { *o | *m };
                    }
                }
                out
            }
            Compiled::Not(inner) => inner.eval_all(snapshot, group).into_iter().map(|v| !v).collect(),
            Compiled::Const(v) => vec![*v; n],
            Compiled::Attribute { column, accept, absent } => column.mask(n, accept, *absent),
            Compiled::Group { leaf, any, .. } => any.iter().map(|a| leaf.test_groups(*a)).collect(),
            Compiled::Direct(_) => (0..n).map(|i| self.eval(snapshot, i, 0, group)).collect(),
        }
    }
}

/// Which instances of the snapshot `expr` selects, evaluated column by column as for a memberOf
/// constraint (ListContainerInstances' `filter` over a whole cluster).
pub(crate) fn select(snapshot: &Snapshot, expr: &crate::query::Expr) -> Vec<usize> {
    let mask = Compiled::new(&expr.root, snapshot, "").eval_all(snapshot, "");
    mask.iter().enumerate().filter(|(_, m)| **m).map(|(i, _)| i).collect()
}

/// Every check of one request, in the order they run.
pub(crate) struct Checks<'a> {
    snapshot: &'a Snapshot,
    required: Vec<Required<'a>>,
    member_of: Vec<Compiled<'a>>,
    /// Some memberOf reads task:group or runningTasksCount, so placing can change its verdict.
    member_of_dynamic: bool,
    distinct: bool,
    cpu: i32,
    memory: i32,
    gpus: u32,
    ports: Vec<u32>,
    group_name: &'a str,
    pub group: Option<u32>,
}

impl<'a> Checks<'a> {
    pub fn new(snapshot: &'a Snapshot, request: &'a Request) -> Self {
        let required = request
            .required_attributes
            .iter()
            .map(|ra| {
                let Some(column) = snapshot.attribute_names.get(&ra.name).map(|id| &snapshot.columns[id as usize])
                else {
                    return Required::Impossible;
                };
                match &ra.value {
                    None => Required::Has(column),
                    Some(v) => column.values.get(v).map_or(Required::Impossible, |id| Required::Is(column, id)),
                }
            })
            .collect();
        let mut member_of = Vec::new();
        let mut member_of_dynamic = false;
        let mut distinct = false;
        for c in &request.constraints {
            match c {
                Constraint::DistinctInstance => distinct = true,
                Constraint::MemberOf(expr) => {
                    member_of_dynamic |= expr.is_dynamic();
                    member_of.push(Compiled::new(&expr.root, snapshot, &request.group));
                }
            }
        }
        let mut ports: Vec<u32> = request.ports.iter().map(|p| p.key()).collect();
        ports.sort_unstable();
        ports.dedup();
        let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        Checks {
            snapshot,
            required,
            member_of,
            member_of_dynamic,
            distinct,
            cpu: clamp(request.cpu),
            memory: clamp(request.memory),
            gpus: request.gpus,
            ports,
            group_name: &request.group,
            group: snapshot.group_names.get(&request.group),
        }
    }

    /// All checks, cheapest first: status and agent, required attributes, constraints, cpu, memory,
    /// ports. The first that fails is the instance's reason.
    #[inline]
    pub fn check(&self, i: usize, st: &InstState) -> Result<(), Reason> {
        if let Some(reason) = self.snapshot.gate[i] {
            return Err(reason);
        }
        if !self.attributes_ok(i) {
            return Err(Reason::Attribute);
        }
        if self.distinct && st.group > 0 {
            return Err(Reason::DistinctInstance);
        }
        if !self.member_of.iter().all(|c| c.eval(self.snapshot, i, st.placed, self.group_name)) {
            return Err(Reason::MemberOf);
        }
        self.resources(i, st)
    }

    /// Whether the instance has every attribute the request requires.
    #[inline]
    pub fn attributes_ok(&self, i: usize) -> bool {
        self.required.iter().all(|r| match r {
            Required::Impossible => false,
            Required::Has(column) => column.get(i).is_some(),
            Required::Is(column, value) => column.get(i) == Some(*value),
        })
    }

    /// The first, cheapest screen over the whole snapshot: status and agent, cpu, memory, GPUs. It
    /// reads four flat arrays and nothing else, so the compiler vectorizes the comparisons, and writes
    /// the survivors without a branch. Returns the instances that pass, in increasing order.
    pub fn screen(&self) -> Vec<u32> {
        let s = self.snapshot;
        let n = s.len();
        let (gate, cpu, memory, gpus) = (&s.gate[..n], &s.cpu[..n], &s.memory[..n], &s.gpus[..n]);
        let mut out = vec![0u32; n];
        let mut k = 0;
        for i in 0..n {
            out[k] = i as u32;
            k += usize::from(
                gate[i].is_none() & (cpu[i] >= self.cpu) & (memory[i] >= self.memory) & (gpus[i] >= self.gpus),
            );
        }
        out.truncate(k);
        out
    }

    /// Whether the checks after the screen have anything to do for this request.
    pub fn has_rest(&self) -> bool {
        !self.required.is_empty() || self.distinct || !self.member_of.is_empty() || !self.ports.is_empty()
    }

    /// The memberOf verdicts of every instance before the request places anything (see
    /// `Compiled::eval_all`), for the full scan; `None` without memberOf constraints.
    pub fn member_of_mask(&self) -> Option<Vec<bool>> {
        let mut masks = self.member_of.iter().map(|c| c.eval_all(self.snapshot, self.group_name));
        let mut out = masks.next()?;
        for mask in masks {
            for (o, m) in out.iter_mut().zip(&mask) {
                *o &= *m;
            }
        }
        Some(out)
    }

    /// The checks the screen leaves, for an instance that passed it and that the request has not
    /// touched: required attributes, constraints (memberOf read from `member_of`, the mask),
    /// ports. Same verdicts as `check`.
    #[inline]
    pub fn rest(&self, i: usize, st: &InstState, member_of: Option<&[bool]>) -> bool {
        self.attributes_ok(i)
            && !(self.distinct && st.group > 0)
            && member_of.is_none_or(|mask| mask[i])
            && self.resources(i, st).is_ok()
    }

    /// After the request placed a task on the instance: only what placing changes can now fail.
    #[inline]
    pub fn recheck(&self, i: usize, st: &InstState) -> Result<(), Reason> {
        if self.distinct && st.group > 0 {
            return Err(Reason::DistinctInstance);
        }
        if self.member_of_dynamic
            && !self.member_of.iter().all(|c| c.eval(self.snapshot, i, st.placed, self.group_name))
        {
            return Err(Reason::MemberOf);
        }
        self.resources(i, st)
    }

    #[inline]
    fn resources(&self, i: usize, st: &InstState) -> Result<(), Reason> {
        let taken = &self.snapshot.ports[i];
        let need = Need { cpu: self.cpu, memory: self.memory, gpus: self.gpus };
        room((st.cpu.into(), st.memory.into(), st.gpus.into()), st.placed, need, &self.ports, |p| {
            taken.binary_search(&p).is_ok()
        })
    }

    /// Takes one task's reservation out of `st`.
    #[inline]
    pub fn reserve(&self, st: &mut InstState) {
        st.cpu -= self.cpu;
        st.memory -= self.memory;
        st.gpus = st.gpus.saturating_sub(self.gpus);
        st.group += 1;
        st.placed += 1;
    }
}
