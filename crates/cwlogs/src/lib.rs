//! Amazon CloudWatch Logs on the control plane: the `logs` JSON API (log groups, streams,
//! retention, PutLogEvents, GetLogEvents, FilterLogEvents) served as a
//! [`flotilla_api::Extension`], the [`flotilla_api::LogSink`] that stores tasks' `awslogs`
//! output sent by the agents, and the leader loop that applies groups' retention.
//!
//! Events live in the store in batches (one key per stored PutLogEvents or agent batch, never
//! one per line), apart from the group and stream records; see [`records`].

pub mod api;
pub mod error;
pub mod filter;
pub mod records;
pub mod retention;
pub mod sink;
pub mod store;

use std::sync::Arc;

/// The CloudWatch Logs API and log sink, to add to the server's extensions.
pub fn extension() -> Arc<dyn flotilla_api::Extension> {
    Arc::new(api::LogsApi)
}
