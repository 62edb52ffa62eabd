//! The parsed form of a cluster query and its evaluation against one container instance. The
//! semantics of every operator live in `Leaf`, so the generic evaluator here and the placement
//! engine's compiled form (which asks `Leaf` once per distinct attribute value) cannot disagree.

use std::cmp::Ordering;
use std::fmt;

use regex::Regex;

use super::value::{compare, Literal};

/// What a query reads from a container instance. `Instance` implements it, and so does the
/// placement engine's view of an instance mid-request; ListContainerInstances can implement it over
/// its own records.
pub trait Facts {
    /// The value of attribute `name`, `Some("")` for an attribute that has no value, `None` when the
    /// instance does not carry it.
    fn attribute(&self, name: &str) -> Option<&str>;
    fn ec2_instance_id(&self) -> &str;
    fn agent_connected(&self) -> bool;
    fn agent_version(&self) -> Option<&str>;
    /// Registration time in milliseconds since the Unix epoch.
    fn registered_at_ms(&self) -> i64;
    fn running_tasks_count(&self) -> u64;
    /// Whether `test` holds for the group of any task on the instance (each group once or more:
    /// the test must not count).
    fn any_task_group(&self, test: &mut dyn FnMut(&str) -> bool) -> bool;
}

/// A parsed cluster query expression, made by [`parse`](crate::parse).
#[derive(Debug, Clone)]
pub struct Expr {
    pub(crate) root: Node,
    pub(crate) source: Box<str>,
}

impl Expr {
    /// Whether the instance described by `facts` is a member of the group this expression selects.
    /// Does not allocate.
    pub fn eval<F: Facts + ?Sized>(&self, facts: &F) -> bool {
        self.root.eval(facts)
    }

    /// The text the expression was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the result can change as tasks are placed on an instance (it reads `task:group` or
    /// `runningTasksCount`), so the engine must re-check an instance after placing on it.
    pub(crate) fn is_dynamic(&self) -> bool {
        self.root.is_dynamic()
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Leaf(Leaf),
}

impl Node {
    fn eval<F: Facts + ?Sized>(&self, facts: &F) -> bool {
        match self {
            Node::And(items) => items.iter().all(|n| n.eval(facts)),
            Node::Or(items) => items.iter().any(|n| n.eval(facts)),
            Node::Not(inner) => !inner.eval(facts),
            Node::Leaf(leaf) => leaf.eval(facts),
        }
    }

    fn is_dynamic(&self) -> bool {
        match self {
            Node::And(items) | Node::Or(items) => items.iter().any(Node::is_dynamic),
            Node::Not(inner) => inner.is_dynamic(),
            Node::Leaf(leaf) => matches!(leaf.subject, Subject::TaskGroup | Subject::RunningTasksCount),
        }
    }
}

/// The field a comparison reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Subject {
    Attribute(Box<str>),
    Ec2InstanceId,
    AgentConnected,
    AgentVersion,
    RegisteredAt,
    RunningTasksCount,
    TaskGroup,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Attribute(name) => write!(f, "attribute:{name}"),
            Subject::Ec2InstanceId => f.write_str("ec2InstanceId"),
            Subject::AgentConnected => f.write_str("agentConnected"),
            Subject::AgentVersion => f.write_str("agentVersion"),
            Subject::RegisteredAt => f.write_str("registeredAt"),
            Subject::RunningTasksCount => f.write_str("runningTasksCount"),
            Subject::TaskGroup => f.write_str("task:group"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Le => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Ge => ord != Ordering::Less,
        }
    }
}

/// The positive form of a test; `!=`, `not_in`, `!~` and `!exists` are the same test with
/// `Leaf::negate` set, so each operator pair has one definition.
#[derive(Debug, Clone)]
pub(crate) enum Pred {
    Exists,
    /// `==` (one value) and `in` (a list): string equality, case-sensitive.
    OneOf(Vec<Box<str>>),
    /// `>`, `>=`, `<`, `<=` on text: numeric when both sides are numbers, else by version.
    Order {
        op: CmpOp,
        lit: Literal,
        version_only: bool,
    },
    Pattern(Regex),
    /// registeredAt against the span `[start, end)` of epoch milliseconds the argument denotes.
    Time {
        op: CmpOp,
        start: i64,
        end: i64,
    },
    /// runningTasksCount.
    Count {
        op: CmpOp,
        n: u64,
    },
}

impl Pred {
    pub(crate) fn test_text(&self, value: &str) -> bool {
        match self {
            Pred::Exists => true,
            Pred::OneOf(values) => values.iter().any(|v| **v == *value),
            Pred::Order { op, lit, version_only } => op.holds(compare(value, lit, *version_only)),
            Pred::Pattern(re) => re.is_match(value),
            // The parser gives time and count tests only to their own subjects.
            Pred::Time { .. } | Pred::Count { .. } => false,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub subject: Subject,
    pub pred: Pred,
    pub negate: bool,
}

impl Leaf {
    /// The test on one (optional) attribute value. The ECS documentation reads `attribute:stack !=
    /// prod` as "instances with the attribute stack, unless it is prod", so every comparison needs
    /// the attribute to exist; only `!exists` holds where it is missing.
    pub(crate) fn test_attribute(&self, value: Option<&str>) -> bool {
        match value {
            Some(v) => self.pred.test_text(v) != self.negate,
            None => matches!(self.pred, Pred::Exists) && self.negate,
        }
    }

    /// `task:group` is many-valued (one instance runs tasks of several groups): the positive
    /// operators hold when some group on the instance passes, and the negative ones are their
    /// negation, so `task:group != database` is "runs no task of database" (anti-affinity) and an
    /// empty instance passes it.
    pub(crate) fn test_groups(&self, any_group: bool) -> bool {
        any_group != self.negate
    }

    pub(crate) fn eval<F: Facts + ?Sized>(&self, facts: &F) -> bool {
        match &self.subject {
            Subject::Attribute(name) => self.test_attribute(facts.attribute(name)),
            Subject::Ec2InstanceId => self.test_attribute(Some(facts.ec2_instance_id())),
            Subject::AgentConnected => {
                self.test_attribute(Some(if facts.agent_connected() { "true" } else { "false" }))
            }
            Subject::AgentVersion => self.test_attribute(facts.agent_version()),
            Subject::RegisteredAt => match self.pred {
                Pred::Time { op, start, end } => {
                    let t = facts.registered_at_ms();
                    // Compare against the span the argument denotes, at the precision written.
                    let holds = match op {
                        CmpOp::Eq => (start..end).contains(&t),
                        CmpOp::Lt => t < start,
                        CmpOp::Le => t < end,
                        CmpOp::Gt => t >= end,
                        CmpOp::Ge => t >= start,
                    };
                    holds != self.negate
                }
                _ => false,
            },
            Subject::RunningTasksCount => match self.pred {
                Pred::Count { op, n } => op.holds(facts.running_tasks_count().cmp(&n)) != self.negate,
                _ => false,
            },
            Subject::TaskGroup => {
                let pred = &self.pred;
                self.test_groups(facts.any_task_group(&mut |g| pred.test_text(g)))
            }
        }
    }
}
