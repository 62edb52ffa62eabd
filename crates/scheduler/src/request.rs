//! What a caller asks the engine to place: how many tasks, what each reserves, where they may go
//! (required attributes and placement constraints) and how to choose among the places that fit
//! (placement strategies). `from_wire` constructors turn RunTask's `placementStrategy` and
//! `placementConstraints` items into these types with ECS's validation messages.

use crate::query::{parse, Expr, ParseError};
use crate::snapshot::HostPort;

/// ECS's limits on one RunTask call.
pub const MAX_COUNT: u32 = 10;
pub const MAX_STRATEGIES: usize = 5;
pub const MAX_CONSTRAINTS: usize = 10;

/// The resource `binpack` packs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
}

/// What `spread` balances over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpreadField {
    /// `instanceId` or `host` (ECS treats them alike).
    Instance,
    /// `attribute:NAME`, e.g. `attribute:ecs.availability-zone`.
    Attribute(String),
}

/// One placement strategy. Strategies apply in order, each breaking the ties the previous ones
/// left; `random` ends the list (nothing after it can tie).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Prefer the instance with the least of the resource left.
    Binpack(Resource),
    /// Prefer the instance (or attribute value) running the fewest tasks of the request's group.
    Spread(SpreadField),
    /// Choose uniformly among the instances still tied.
    Random,
}

impl Strategy {
    /// From a `placementStrategy` item's `type` and `field`.
    pub fn from_wire(kind: &str, field: Option<&str>) -> Result<Strategy, RequestError> {
        let field = field.map(str::trim).filter(|f| !f.is_empty());
        match (kind, field) {
            ("random", None) => Ok(Strategy::Random),
            ("random", Some(_)) => Err(RequestError::Strategy("random takes no field".into())),
            ("binpack", Some(f)) if f.eq_ignore_ascii_case("cpu") => Ok(Strategy::Binpack(Resource::Cpu)),
            ("binpack", Some(f)) if f.eq_ignore_ascii_case("memory") => Ok(Strategy::Binpack(Resource::Memory)),
            ("binpack", f) => Err(RequestError::Strategy(format!(
                "binpack takes the field cpu or memory, not {}",
                f.map_or("nothing".to_string(), |f| format!("'{f}'"))
            ))),
            ("spread", Some(f)) if f.eq_ignore_ascii_case("instanceId") || f.eq_ignore_ascii_case("host") => {
                Ok(Strategy::Spread(SpreadField::Instance))
            }
            ("spread", Some(f)) => match f.strip_prefix("attribute:") {
                Some(name) if !name.is_empty() => Ok(Strategy::Spread(SpreadField::Attribute(name.to_string()))),
                _ => Err(RequestError::Strategy(format!(
                    "spread takes the field instanceId, host or attribute:NAME, not '{f}'"
                ))),
            },
            ("spread", None) => {
                Err(RequestError::Strategy("spread takes the field instanceId, host or attribute:NAME".into()))
            }
            (other, _) => Err(RequestError::Strategy(format!(
                "unknown placement strategy type '{other}': expected random, spread or binpack"
            ))),
        }
    }
}

/// One placement constraint. Unlike strategies, constraints bind: an instance that breaks one is
/// never chosen.
#[derive(Debug, Clone)]
pub enum Constraint {
    /// No two tasks of the request's group on one instance (counting tasks already running).
    DistinctInstance,
    /// Only instances the expression selects.
    MemberOf(Expr),
}

impl Constraint {
    /// From a `placementConstraints` item's `type` and `expression`. A malformed expression comes
    /// back as [`RequestError::Expression`], with the column of the mistake.
    pub fn from_wire(kind: &str, expression: Option<&str>) -> Result<Constraint, RequestError> {
        let expression = expression.filter(|e| !e.trim().is_empty());
        match (kind, expression) {
            ("distinctInstance", None) => Ok(Constraint::DistinctInstance),
            ("distinctInstance", Some(_)) => {
                Err(RequestError::Constraint("distinctInstance takes no expression".into()))
            }
            ("memberOf", Some(e)) => Ok(Constraint::MemberOf(parse(e)?)),
            ("memberOf", None) => Err(RequestError::Constraint("memberOf needs an expression".into())),
            (other, _) => Err(RequestError::Constraint(format!(
                "unknown placement constraint type '{other}': expected distinctInstance or memberOf"
            ))),
        }
    }
}

/// An attribute the task definition requires (`requiresAttributes`): the instance must carry the
/// name, with this value when one is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredAttribute {
    pub name: String,
    pub value: Option<String>,
}

/// A request to place `count` copies of one task.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// 1 to [`MAX_COUNT`].
    pub count: u32,
    /// CPU units each task reserves.
    pub cpu: u32,
    /// MiB each task reserves.
    pub memory: u32,
    /// GPUs each task reserves (the sum of its containers' `resourceRequirements` of type GPU).
    pub gpus: u32,
    /// Fixed host ports each task binds (dynamic host ports, 0, are not listed).
    pub ports: Vec<HostPort>,
    /// The task definition's `requiresAttributes`, plus whatever the launch type implies.
    pub required_attributes: Vec<RequiredAttribute>,
    /// Up to [`MAX_STRATEGIES`], applied in order. With none, the choice is uniform among the
    /// instances that fit; the API supplies ECS's defaults before calling.
    pub strategies: Vec<Strategy>,
    /// The request's and the task definition's constraints, all binding.
    pub constraints: Vec<Constraint>,
    /// The task group (`family:NAME` by default, `service:NAME` for a service's tasks).
    pub group: String,
}

/// What the engine may not take from the world: the seed of every random choice. The same snapshot,
/// request and seed always give the same plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Env {
    pub seed: u64,
}

/// A request the engine refuses before looking at any instance; the API answers these with
/// InvalidParameterException.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("count must be between 1 and {MAX_COUNT}, not {0}")]
    Count(u32),
    #[error("at most {MAX_STRATEGIES} placement strategies are allowed, not {0}")]
    TooManyStrategies(usize),
    #[error("placementConstraints can have at most {MAX_CONSTRAINTS} items, including the task definition's; got {0}")]
    TooManyConstraints(usize),
    #[error("invalid placement strategy: {0}")]
    Strategy(String),
    #[error("invalid placement constraint: {0}")]
    Constraint(String),
    #[error("invalid placement constraint expression: {0}")]
    Expression(#[from] ParseError),
}

impl Request {
    pub(crate) fn validate(&self) -> Result<(), RequestError> {
        if !(1..=MAX_COUNT).contains(&self.count) {
            return Err(RequestError::Count(self.count));
        }
        if self.strategies.len() > MAX_STRATEGIES {
            return Err(RequestError::TooManyStrategies(self.strategies.len()));
        }
        self.validate_constraints()
    }

    /// What a request must satisfy to be judged at all, whatever its count: no more constraints
    /// than ECS takes.
    pub(crate) fn validate_constraints(&self) -> Result<(), RequestError> {
        if self.constraints.len() > MAX_CONSTRAINTS {
            return Err(RequestError::TooManyConstraints(self.constraints.len()));
        }
        Ok(())
    }
}
