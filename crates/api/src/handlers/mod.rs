//! One module per resource, each a set of `async fn(&Ctx, Request) -> ApiResult<Response>`, and
//! the lookups they share: resolving a cluster given by name or ARN, the clusters' defaults.

pub mod account_settings;
pub mod attributes;
pub mod capacity_providers;
pub mod clusters;
pub mod container_instances;
pub mod run_task;
pub mod services;
pub mod start_task;
pub mod tags;
pub mod task_definitions;
pub mod tasks;

pub use crate::domain::lookup::{
    active_cluster, check_batch, cluster_name, id_in_cluster, missing, new_id, Scoped, DEFAULT_CLUSTER,
};
