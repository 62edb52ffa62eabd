//! Flotilla's scheduler: where tasks run. It is pure (no I/O, no clock, no global randomness): the
//! API builds a [`Snapshot`] of a cluster's container instances from its cache, describes the tasks
//! to run as a [`Request`], and [`place`] answers a [`Plan`] that the API then commits to the store
//! in one transaction that re-checks what the plan relied on. Controllers place a service's tasks
//! through the same call.
//!
//! The crate also carries ECS's cluster query language ([`parse`], [`Expr::eval`]): the engine uses
//! it for `memberOf` constraints, and ListContainerInstances for its `filter`.
//!
//! ```
//! use flotilla_scheduler::{place, Constraint, Env, Instance, Request, Snapshot, Strategy};
//!
//! let instance = |n: usize, zone: &str| Instance {
//!     arn: format!("arn:aws:ecs:us-east-1:000000000000:container-instance/default/{n}"),
//!     agent_connected: true,
//!     attributes: vec![("ecs.availability-zone".into(), Some(zone.into()))],
//!     remaining_cpu: 2048,
//!     remaining_memory: 4096,
//!     ..Instance::default()
//! };
//! let snapshot = Snapshot::new(vec![instance(0, "a"), instance(1, "b"), instance(2, "b")]);
//! let request = Request {
//!     count: 2,
//!     cpu: 256,
//!     memory: 512,
//!     strategies: vec![Strategy::from_wire("spread", Some("attribute:ecs.availability-zone")).unwrap()],
//!     constraints: vec![Constraint::from_wire("memberOf", Some("attribute:ecs.availability-zone in [a, b]")).unwrap()],
//!     group: "family:web".into(),
//!     ..Request::default()
//! };
//! let plan = place(&snapshot, &request, &Env { seed: 1 }).unwrap();
//! assert_eq!(plan.placements.len(), 2);
//! assert_eq!(plan.placements.iter().filter(|p| p.instance == 0).count(), 1); // one per zone
//! ```

mod pipeline;
mod plan;
mod query;
mod request;
mod rng;
mod snapshot;

pub use pipeline::{eligible, place, place_by_scan, verify, Standing};
pub use plan::{Failure, FailureReason, Placement, Plan, Reason, Rejections};
pub use query::{parse, Expr, Facts, ParseError, MAX_EXPRESSION_CHARS};
pub use request::{
    Constraint, Env, Request, RequestError, RequiredAttribute, Resource, SpreadField, Strategy, MAX_CONSTRAINTS,
    MAX_COUNT, MAX_STRATEGIES,
};
pub use snapshot::{HostPort, Instance, InstanceStatus, Protocol, Snapshot};
