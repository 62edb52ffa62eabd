//! What the agent session needs from AWS services that live in other crates: the secret stores
//! (SSM Parameter Store and Secrets Manager, to resolve a task's `secrets`,
//! `repositoryCredentials` and log `secretOptions` when it starts) and CloudWatch Logs (to store
//! a task's `awslogs` output). An [`Extension`](crate::Extension) that serves such a service
//! offers it here; the gateway finds it through [`crate::Extensions`].

use std::sync::Arc;

use flotilla_protocol::LogEventsBatch;
use futures::future::BoxFuture;

use crate::context::Ctx;

/// Why a `valueFrom` could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SecretFailure {
    /// What ECS's agent says after `execution resource retrieval failed: `, e.g.
    /// `unable to retrieve secret from asm: service call has been retried 1 time(s): failed to
    /// fetch secret ARN from secrets manager: ResourceNotFoundException: Secrets Manager can't
    /// find the specified secret.`
    pub message: String,
    /// The store could not be read (not: the secret is missing); the agent asks again later.
    pub transient: bool,
}

/// Resolves the `valueFrom` of container secrets: an SSM parameter (name or ARN) or a Secrets
/// Manager secret (ARN or name, with ECS's `:json-key:version-stage:version-id` suffix).
pub trait SecretSource: Send + Sync + 'static {
    fn resolve<'a>(&'a self, ctx: &'a Ctx, value_from: &'a str) -> BoxFuture<'a, Result<String, SecretFailure>>;
}

/// Why a batch of log events was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct LogSinkError {
    /// The CloudWatch Logs error code (`ResourceNotFoundException` for a missing group without
    /// `awslogs-create-group`).
    pub code: String,
    pub message: String,
    /// The store could not be written; the agent sends the batch again later.
    pub transient: bool,
}

/// Stores batches of a task's `awslogs` output in CloudWatch Logs streams.
pub trait LogSink: Send + Sync + 'static {
    /// Stores `batch` durably (idempotent per stream and `sequence`).
    fn put<'a>(&'a self, ctx: &'a Ctx, batch: &'a LogEventsBatch) -> BoxFuture<'a, Result<(), LogSinkError>>;
}

/// The services the agent sessions use, as the server's extensions offer them.
#[derive(Clone, Default)]
pub struct AgentServices {
    pub secrets: Option<Arc<dyn SecretSource>>,
    pub logs: Option<Arc<dyn LogSink>>,
}

impl std::fmt::Debug for AgentServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentServices")
            .field("secrets", &self.secrets.is_some())
            .field("logs", &self.logs.is_some())
            .finish()
    }
}
