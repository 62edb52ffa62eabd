//! The Flotilla agent's task engine and container runtime.
//!
//! The agent's session (`session`: registration, the websocket, acknowledgements) receives task assignments and manifests from the control plane and hands
//! them to the [`Engine`]. The engine runs one actor per ECS task (`engine`), which drives the
//! task's containers through the narrow [`Runtime`] trait (`runtime`: Docker through bollard, or a
//! fake for tests), shapes them with the network mode hooks (`network`), holds each task
//! to its task-level cpu and memory in a per-task cgroup (`cgroup`), keeps their output
//! (`logs`), tells each container about its task through the task metadata endpoint
//! (`metadata`), lets them resolve names through the control plane's DNS (`dns`: a forwarder
//! they are pointed at), and reports every state change back as a
//! `flotilla_protocol::TaskReport`. `hollow` runs many simulated agents over the same session for tests and benchmarks at scale.
//!
//! Fargate tasks go through the same engine (design §11: a sandbox is a runtime choice): on a
//! Fargate pool host (`flotilla agent --fargate`) each of their containers runs under gVisor's
//! `runsc` (`runtime::sandbox` checks at start that a sandbox starts), the Fargate rules replace
//! the host policy (`engine::policy::check_fargate`), and the task gets its own interface in its
//! subnet (`network::awsvpc`), as EC2 awsvpc tasks whose subnet the control plane knows do too.

pub mod calls;
pub mod cgroup;
pub mod disk;
pub mod dns;
pub mod engine;
pub mod hollow;
pub mod logs;
pub mod metadata;
pub mod network;
pub mod registry_auth;
pub mod run;
pub mod runtime;
pub mod session;

pub use engine::{Clock, Engine, EngineConfig, EngineError, PullBehavior, Reconciled, TaskSummary};
pub use logs::LogLine;
pub use runtime::{Runtime, RuntimeError};
