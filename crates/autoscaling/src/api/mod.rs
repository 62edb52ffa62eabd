//! The EC2 and Auto Scaling query APIs, served on the control plane's listener as
//! [`flotilla_api::Extension`]s routed by the SigV4 service name (`ec2`, `autoscaling`).
//!
//! Both only read and write records of `flotilla-hosts`: launch templates, groups (their desired
//! capacity, status and protection settings), hosts (their protection, or a lifecycle of
//! `Terminating`) and activities. Launching and terminating hosts is the group loop's work
//! (`crate::groups`), which acts on what these APIs wrote. Writes are compare-and-swap
//! transactions, so a request racing the loop retries on fresh records rather than overwriting
//! them.

mod autoscaling;
mod ec2;
mod paging;
mod records;
mod time;

use std::sync::Arc;

pub use autoscaling::AutoScalingApi;
pub use ec2::Ec2Api;
use flotilla_api::supervisor::LoopHandle;
use flotilla_api::{Ctx, Extension};

/// Starts background loops under `ctx.loops` when the server starts (the group loop, Spot
/// notices); the server stops the handles at shutdown.
pub type Starter = Arc<dyn Fn(&Ctx) -> Vec<LoopHandle> + Send + Sync>;

/// The two services, to register with the server (`ServerConfig::extensions`), without loops.
pub fn extensions() -> flotilla_api::Extensions {
    extensions_with_loops(Arc::new(|_: &Ctx| Vec::new()))
}

/// The two services, with the Auto Scaling service starting `loops` when the server starts.
pub fn extensions_with_loops(loops: Starter) -> flotilla_api::Extensions {
    flotilla_api::Extensions::new([Arc::new(Ec2Api) as Arc<dyn Extension>, Arc::new(AutoScalingApi::new(loops))])
}

type Result<T> = std::result::Result<T, flotilla_query::QueryError>;
