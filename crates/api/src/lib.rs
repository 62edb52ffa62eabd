//! The Flotilla control plane: the Amazon ECS API (AWS JSON 1.1 over HTTP, SigV4-signed) served
//! from a revisioned store.
//!
//! A request is authenticated (`auth`, through `flotilla-sigv4`), routed on `X-Amz-Target`
//! (`protocol`, `dispatch`), decoded into the generated wire shapes of `flotilla-model`, validated,
//! and handled (`handlers`). Handlers read from the in-memory `state::cache` and write through
//! compare-and-swap transactions on the `flotilla-store` trait, waiting until the cache has caught
//! up with their write so clients always read what they wrote. The binary crate `flotilla` wraps
//! [`server::serve`]; the agent, scheduler and controllers build on the same store and records.

pub mod agent_services;
pub mod auth;
pub mod capacity;
pub mod context;
pub mod controller;
pub mod credentials;
pub mod dispatch;
pub mod domain;
pub mod endpoints;
pub mod error;
pub mod extensions;
pub mod faults;
pub mod gateway;
pub mod handlers;
pub mod idempotency;
pub mod identity;
pub mod identity_api;
pub mod json_service;
pub mod leader;
pub mod locks;
pub mod logs_api;
pub mod metrics;
pub mod pagination;
pub mod protocol;
pub mod query_reply;
pub mod reaper;
pub mod server;
pub mod servers;
pub mod service_status;
pub mod state;
pub mod supervisor;
pub mod tls;

pub use agent_services::{AgentServices, LogSink, LogSinkError, SecretFailure, SecretSource};
pub use context::{Clock, Ctx};
pub use credentials::RootCredentials;
pub use error::{ApiError, ApiResult};
pub use extensions::{Extension, ExtensionRequest, ExtensionResponse, Extensions};
pub use server::{serve, AuthMode, ServerConfig};
