//! What the engine answers: the placements it chose, in order, and for tasks it could not place,
//! failures in ECS's terms (`RESOURCE:MEMORY`, `ATTRIBUTE`, ...) with a detail that counts why each
//! instance was turned down, e.g. "0 of 12 instances fit: 9 RESOURCE:MEMORY, 3 ATTRIBUTE (memberOf)".

use std::fmt::Write;

/// Why one instance could not take a task. The checks run in this order (cheapest first) and an
/// instance is counted under the first it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The instance is DRAINING.
    Draining,
    /// The instance is neither ACTIVE nor DRAINING (registering, deregistering, inactive).
    Inactive,
    /// The instance's agent is not connected.
    Agent,
    /// The instance lacks an attribute the task definition requires.
    Attribute,
    /// A memberOf constraint does not select the instance.
    MemberOf,
    /// distinctInstance: the instance already runs a task of the group.
    DistinctInstance,
    Cpu,
    Memory,
    /// Too few free GPUs (`RESOURCE:GPU`).
    Gpu,
    Ports,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::Draining,
        Reason::Inactive,
        Reason::Agent,
        Reason::Attribute,
        Reason::MemberOf,
        Reason::DistinctInstance,
        Reason::Cpu,
        Reason::Memory,
        Reason::Gpu,
        Reason::Ports,
    ];

    /// The `reason` ECS puts in a RunTask failure. Constraints fail as ATTRIBUTE, as an unmet
    /// attribute does; DRAINING and INACTIVE are Flotilla's (ECS never offers such instances).
    pub fn ecs_reason(self) -> &'static str {
        match self {
            Reason::Draining => "DRAINING",
            Reason::Inactive => "INACTIVE",
            Reason::Agent => "AGENT",
            Reason::Attribute | Reason::MemberOf | Reason::DistinctInstance => "ATTRIBUTE",
            Reason::Cpu => "RESOURCE:CPU",
            Reason::Memory => "RESOURCE:MEMORY",
            Reason::Gpu => "RESOURCE:GPU",
            Reason::Ports => "RESOURCE:PORTS",
        }
    }

    /// The ECS reason, refined where ECS lumps several causes together, for the failure's detail.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Attribute => "ATTRIBUTE (requiresAttributes)",
            Reason::MemberOf => "ATTRIBUTE (memberOf)",
            Reason::DistinctInstance => "ATTRIBUTE (distinctInstance)",
            other => other.ecs_reason(),
        }
    }
}

/// How many instances were turned down for each reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejections([u32; Reason::ALL.len()]);

impl Rejections {
    pub fn get(&self, reason: Reason) -> u32 {
        self.0[reason as usize]
    }

    pub(crate) fn add(&mut self, reason: Reason) {
        self.0[reason as usize] += 1;
    }

    pub fn total(&self) -> u32 {
        self.0.iter().sum()
    }

    /// Reasons with a nonzero count, most frequent first.
    pub fn iter(&self) -> impl Iterator<Item = (Reason, u32)> + '_ {
        let mut v: Vec<(Reason, u32)> = Reason::ALL.iter().map(|r| (*r, self.get(*r))).filter(|e| e.1 > 0).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter()
    }
}

/// One task placed on one instance (`instance` indexes the snapshot; see `Snapshot::arn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub instance: usize,
}

/// The `reason` of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The cluster has no container instances.
    Missing,
    /// Instances were turned down, this being the reason for some of them.
    Rejected(Reason),
}

impl FailureReason {
    /// The string ECS puts in `failures[].reason`.
    pub fn ecs_reason(self) -> &'static str {
        match self {
            FailureReason::Missing => "MISSING",
            FailureReason::Rejected(r) => r.ecs_reason(),
        }
    }
}

/// A failure as RunTask reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: FailureReason,
    /// An instance turned down for this reason (ECS names the container instance).
    pub arn: Option<String>,
    pub detail: String,
}

/// The engine's answer to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In the order chosen; an instance appears once per task placed on it.
    pub placements: Vec<Placement>,
    /// Tasks of the request that did not fit.
    pub unplaced: u32,
    /// Why each instance was turned down when the engine stopped: every instance of the snapshot is
    /// counted once when `unplaced > 0`.
    pub rejections: Rejections,
    /// One failure per reason that turned instances down (most frequent first) when `unplaced > 0`.
    pub failures: Vec<Failure>,
}

/// The detail shared by a plan's failures.
pub(crate) fn detail(instances: usize, placed: usize, count: u32, rejections: &Rejections) -> String {
    let mut s = String::new();
    if placed > 0 {
        let _ = write!(s, "{placed} of {count} tasks placed, then ");
    }
    let _ = write!(s, "0 of {instances} instances fit");
    for (i, (reason, n)) in rejections.iter().enumerate() {
        let _ = write!(s, "{}{n} {}", if i == 0 { ": " } else { ", " }, reason.label());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_counts_reasons_most_frequent_first() {
        let mut r = Rejections::default();
        for _ in 0..3 {
            r.add(Reason::MemberOf);
        }
        for _ in 0..9 {
            r.add(Reason::Memory);
        }
        assert_eq!(detail(12, 0, 2, &r), "0 of 12 instances fit: 9 RESOURCE:MEMORY, 3 ATTRIBUTE (memberOf)");
        assert_eq!(
            detail(12, 1, 2, &r),
            "1 of 2 tasks placed, then 0 of 12 instances fit: 9 RESOURCE:MEMORY, 3 ATTRIBUTE (memberOf)"
        );
        assert_eq!(r.total(), 12);
    }
}
