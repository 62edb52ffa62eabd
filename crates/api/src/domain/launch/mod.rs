//! The one launch path (design.md, section 11). RunTask, StartTask and the service controller's
//! REPLICA and DAEMON launches all start tasks here and nowhere else:
//!
//! 1. [`checks`]: the caller's request is checked against the definition, and becomes a [`Spec`]:
//!    the definition, what every task shares ([`Shared`]) and where the tasks may go
//!    ([`Placement`]).
//! 2. [`launch`] asks the scheduler, the only judge of fit, where they go: `count` tasks are placed
//!    on the cluster's kept snapshot with the caller's strategies and constraints; tasks for named
//!    instances are judged on those instances alone.
//!    With a capacity provider strategy, the tasks are first split between the providers by base
//!    and weight ([`crate::domain::capacity::split`]), and each provider's share is placed on
//!    that provider's instances only; what fits nowhere on a provider with managed scaling is
//!    written PROVISIONING, with no instance, to be placed when its hosts arrive.
//! 3. Every instance the plan uses is judged again by the scheduler ([`flotilla_scheduler::verify`])
//!    against the cache as it is at commit time, and the tasks ([`records`], with their
//!    [`tags`]) are written in one transaction that guards each instance, with the RunTask
//!    `clientToken` when there is one ([`token`]).

pub mod checks;
mod commit;
pub mod gpus;
pub mod interface;
pub mod records;
pub mod tags;
pub mod token;
pub mod waiting;

use flotilla_model::{Failure, PlacementConstraint, PlacementStrategy, Task, TaskDefinition};
use flotilla_scheduler::{Constraint, HostPort, Protocol, Request, RequiredAttribute, Strategy};

pub use commit::{guard_instance, launch};
pub use records::{reservation_for, Shared};

pub use crate::domain::capacity::Capacity;
use crate::error::{ApiError, ApiResult};
use crate::state::records::Reservation;

/// Where a launch's tasks may go.
#[derive(Debug, Clone)]
pub enum Placement {
    /// `count` tasks (1 to 10) wherever the scheduler finds room, by these strategies and
    /// constraints (the definition's constraints are added to them).
    Count { count: u32, strategies: Vec<PlacementStrategy>, constraints: Vec<PlacementConstraint> },
    /// One task on each instance named (an ID or ARN, as StartTask takes them; a DAEMON service
    /// names the instance it belongs on). Only room is judged there: the caller chose the instance.
    Instances(Vec<String>),
}

/// A checked launch: everything [`launch`] needs.
#[derive(Debug, Clone)]
pub struct Spec {
    pub cluster: String,
    pub def: TaskDefinition,
    pub shared: Shared,
    pub placement: Placement,
    /// The EC2 launch type, or the capacity provider strategy that splits a `Count` launch.
    pub capacity: Capacity,
}

/// What a launch did: the tasks it wrote and, in ECS's shape, the ones it could not place.
#[derive(Debug, Clone, Default)]
pub struct Launched {
    pub tasks: Vec<Task>,
    pub failures: Vec<Failure>,
}

impl Spec {
    /// What one task holds on its instance.
    pub fn reservation(&self) -> Reservation {
        reservation_for(&self.def, self.shared.overrides.as_ref())
    }

    /// The scheduler's request for this launch's tasks, each holding `r`.
    pub fn scheduler_request(&self, r: &Reservation) -> ApiResult<Request> {
        let ports = r.ports.iter().map(|&port| HostPort { port, protocol: Protocol::Tcp });
        let ports = ports.chain(r.ports_udp.iter().map(|&port| HostPort { port, protocol: Protocol::Udp })).collect();
        let group =
            self.shared.group.clone().unwrap_or_else(|| format!("family:{}", self.def.family.as_deref().unwrap_or("")));
        let mut request = Request {
            count: 1,
            cpu: r.cpu.max(0) as u32,
            memory: r.memory.max(0) as u32,
            gpus: gpus::wanted(&self.def, self.shared.overrides.as_ref()).iter().sum(),
            ports,
            group,
            ..Request::default()
        };
        let Placement::Count { count, strategies, constraints } = &self.placement else { return Ok(request) };
        let bad = |e: flotilla_scheduler::RequestError| ApiError::invalid_parameter(e.to_string());
        request.count = *count;
        request.strategies = strategies
            .iter()
            .map(|s| Strategy::from_wire(s.r#type.as_deref().unwrap_or(""), s.field.as_deref()).map_err(bad))
            .collect::<ApiResult<Vec<_>>>()?;
        let given = constraints.iter().map(|c| (&c.r#type, &c.expression));
        let from_def = self.def.placement_constraints.iter().flatten().map(|c| (&c.r#type, &c.expression));
        for (kind, expression) in given.chain(from_def) {
            request
                .constraints
                .push(Constraint::from_wire(kind.as_deref().unwrap_or(""), expression.as_deref()).map_err(bad)?);
        }
        if request.constraints.len() > flotilla_scheduler::MAX_CONSTRAINTS {
            return Err(ApiError::invalid_parameter(format!(
                "placementConstraints can have at most {} items, including the task definition's.",
                flotilla_scheduler::MAX_CONSTRAINTS
            )));
        }
        request.required_attributes = required_attributes(&self.def);
        Ok(request)
    }
}

/// The definition's `requiresAttributes`, as the scheduler reads them.
pub fn required_attributes(def: &TaskDefinition) -> Vec<RequiredAttribute> {
    let attributes = def.requires_attributes.iter().flatten();
    attributes.filter_map(|a| Some(RequiredAttribute { name: a.name.clone()?, value: a.value.clone() })).collect()
}
