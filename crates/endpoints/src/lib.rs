//! The records ECS shares with the services that route traffic to its tasks: ELBv2 target
//! groups, their registered targets and the targets' health ([`elb`]); Cloud Map namespaces,
//! services, instances and their health ([`cloudmap`]). ECS validates a service's
//! `loadBalancers` and `serviceRegistries` against them and registers its tasks' endpoints in
//! them; the ELBv2 and Cloud Map crates serve their APIs, loops and data planes from the same
//! records. Like `flotilla-hosts`, this crate holds data and its encoding only, so ECS
//! (`flotilla-api`) and those services depend on it without depending on each other.

pub mod cloudmap;
pub mod codec;
pub mod elb;
pub mod keys;

use serde::{Deserialize, Serialize};

/// A key/value tag as ELBv2 and Cloud Map keep them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}
