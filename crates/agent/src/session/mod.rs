//! The agent's side of the control plane: registering the host as a container instance (and
//! re-registering with the same ARN after a restart), then holding the websocket session that
//! brings tasks in and carries task reports out. The control plane may be several servers
//! (`endpoints.rs`): calls and the session move to the next when theirs cannot be reached, and
//! the agent stays the same instance with the same key pair wherever it lands.
//!
//! The session knows nothing about containers: it hands what the server says to the caller as
//! [`SessionEvent`]s and sends whatever reports the caller feeds it, resending those the server
//! has not acknowledged after every reconnect. The task engine (real Docker) and the hollow
//! agents' simulated runtime both sit behind it. Log reads from the server are served from the
//! [`LogReader`] the caller puts in the [`SessionConfig`] (`logs.rs`).

pub mod api_client;
pub mod backoff;
pub mod connection;
pub mod endpoints;
pub mod host;
pub mod join;
pub mod logs;
pub mod registration;
pub mod tls;

pub use api_client::{ApiClient, ApiClientError};
pub use backoff::enroll_with_retry;
pub use connection::{run_session, SessionConfig, SessionEvent};
pub use endpoints::{Endpoints, EndpointsError};
pub use join::enroll;
pub use logs::LogReader;
pub use registration::{detect_gpus, register, AgentIdentity, RegistrationConfig};
