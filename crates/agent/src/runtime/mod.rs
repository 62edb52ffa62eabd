//! The container runtime seen through a narrow trait, so that the task engine never touches Docker
//! types and its tests can run against a fake.
//!
//! `Runtime` is the whole vocabulary the engine needs: images (present? pull), networks and
//! volumes (ensure, remove), and containers (create from a [`ContainerSpec`], start, stop with a
//! grace period, kill, inspect, wait, remove, list by label, logs), plus one stream of container
//! events (start, die, health changes, OOM), and the per-task cgroup that holds a task's
//! containers to the task's cpu and memory (see `crate::cgroup`). Every method is idempotent where Docker allows it:
//! removing something already gone succeeds, creating a network that exists returns it. The
//! Docker implementation lives in `docker.rs` (every call under a named timeout); `fake.rs` is an
//! in-memory runtime that records calls and lets tests script exits and health.

mod cgroups;
pub mod docker;
pub mod fake;
pub mod sandbox;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
pub use flotilla_protocol::RegistryAuth;
use futures::stream::BoxStream;

use crate::cgroup::TaskLimits;

/// Labels every container, network and volume Flotilla creates carries. The marker label makes
/// "ours" a single filter; the instance label keeps several agents on one Docker host apart.
pub mod labels {
    /// Present (value "true") on everything Flotilla creates.
    pub const MARKER: &str = "com.flotilla.managed";
    pub const CLUSTER: &str = "com.flotilla.cluster-arn";
    pub const INSTANCE: &str = "com.flotilla.container-instance-arn";
    pub const TASK: &str = "com.flotilla.task-arn";
    /// The container's name in the task definition; the pause container uses [`PAUSE_NAME`].
    pub const CONTAINER: &str = "com.flotilla.container-name";
    /// The name under which the per-task pause container of awsvpc mode is labelled.
    pub const PAUSE_NAME: &str = "~internal~pause";
}

/// What can go wrong talking to the runtime. `op` names the call, so a timeout says which one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuntimeError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("image {image} could not be found or pulled: {message}")]
    ImageUnavailable { image: String, message: String },
    #[error("{op}: conflict: {message}")]
    Conflict { op: &'static str, message: String },
    #[error("{op}: timed out after {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// The runtime could not be reached (connection refused, broken stream): worth a retry.
    #[error("{op}: runtime unavailable: {message}")]
    Unavailable { op: &'static str, message: String },
    /// The runtime answered with an error.
    #[error("{op}: {message}")]
    Failed { op: &'static str, message: String },
    #[error("{op} is not supported by this runtime")]
    Unsupported { op: &'static str },
}

impl RuntimeError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::NotFound { .. })
    }

    /// Whether retrying the same call later may succeed (the daemon was slow or away).
    pub fn is_transient(&self) -> bool {
        matches!(self, RuntimeError::Timeout { .. } | RuntimeError::Unavailable { .. })
    }
}

pub type RuntimeResult<T> = Result<T, RuntimeError>;

/// One published port: `host_port: None` asks the runtime to pick a free host port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBindingSpec {
    pub container_port: u16,
    /// "tcp" or "udp".
    pub protocol: String,
    pub host_ip: Option<String>,
    pub host_port: Option<u16>,
}

/// A Docker HEALTHCHECK, durations already resolved from the task definition's seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSpec {
    /// ["CMD", ...] or ["CMD-SHELL", "..."], as in the task definition.
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UlimitSpec {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// Everything needed to create one container. Built by the engine from the task definition and
/// shaped by the network and volume hooks; runtimes translate it field by field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSpec {
    /// The runtime's container name (unique on the host).
    pub name: String,
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    /// "KEY=value" pairs.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub cpu_shares: Option<i64>,
    /// A cpu cap in billionths of a core: the task's cpu, when no task cgroup could hold it.
    pub nano_cpus: Option<i64>,
    /// The task's cgroup (from [`Runtime::ensure_task_cgroup`]), which carries the task limits.
    pub cgroup_parent: Option<String>,
    pub memory_bytes: Option<i64>,
    pub memory_reservation_bytes: Option<i64>,
    pub ulimits: Vec<UlimitSpec>,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    /// "source:target[:ro]" for host paths and named volumes.
    pub binds: Vec<String>,
    /// "container[:ro]".
    pub volumes_from: Vec<String>,
    /// "bridge", "host", "none", "container:<id>" or the name of a network to join.
    pub network_mode: Option<String>,
    pub port_bindings: Vec<PortBindingSpec>,
    /// "container:alias".
    pub links: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub dns_servers: Vec<String>,
    pub dns_search: Vec<String>,
    pub health_check: Option<HealthCheckSpec>,
    /// The runtime's own SIGTERM-to-SIGKILL grace, used by `docker stop` without a timeout.
    pub stop_timeout: Option<Duration>,
    /// Bound on the runtime's own copy of the logs (json-file max-size).
    pub log_max_bytes: Option<u64>,
    /// Linux capabilities to add and drop.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub init: Option<bool>,
    pub shm_size_bytes: Option<i64>,
    /// The OCI runtime to run the container under (`runsc` for a Fargate task's sandbox);
    /// `None` is the daemon's default (runc).
    pub runtime: Option<String>,
    /// A bound on the container's writable layer, applied only where the storage driver can
    /// enforce it (see `docker::StorageQuota`); elsewhere the layer is unbounded.
    pub storage_size_bytes: Option<u64>,
    /// A fixed address on the network `network_mode` names (a task's own interface in its
    /// subnet); `None` lets the network's IPAM pick.
    pub ipv4_address: Option<String>,
    /// The interface's MAC address on that network.
    pub mac_address: Option<String>,
    /// Security options, sysctls, terminal and networking switches (`engine::options`).
    pub options: ContainerOptions,
    /// The host GPUs (ids) the container is given (`engine::gpu`).
    pub gpus: Vec<String>,
    /// Docker's `PidMode` and `IpcMode` (`host`, or ipc `none`) from the task definition.
    pub pid_mode: Option<String>,
    pub ipc_mode: Option<String>,
    /// A Docker log driver the task definition names (`syslog`, `gelf`, ...); `None` keeps the
    /// agent's own capture (`json-file`, `none`, `awslogs`, which the agent ships itself).
    pub log_driver: Option<LogDriverSpec>,
}

/// The container definition's process settings that runtimes pass through as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerOptions {
    /// In Docker's own syntax (`no-new-privileges=true`, `apparmor=PROFILE`, `label=...`).
    pub security_opt: Vec<String>,
    /// Namespaced kernel parameters (`net.ipv4.ip_forward` = `1`).
    pub sysctls: BTreeMap<String, String>,
    /// No network at all (`disableNetworking`).
    pub network_disabled: bool,
    /// A pseudo-terminal (`pseudoTerminal`): output arrives unmultiplexed, stdout only.
    pub tty: bool,
    /// Stdin kept open (`interactive`).
    pub open_stdin: bool,
}

/// A Docker log driver and its options (`logConfiguration.options` plus the resolved
/// `secretOptions`, which is why it never prints them).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LogDriverSpec {
    pub name: String,
    pub options: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for LogDriverSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogDriverSpec").field("name", &self.name).field("options", &self.options.keys()).finish()
    }
}

/// Whether Docker runs `driver` (the agent handles the others itself).
pub fn is_docker_log_driver(driver: &str) -> bool {
    !matches!(driver, "json-file" | "none" | "awslogs" | "awsfirelens")
}

/// The lifecycle state of a container as the runtime knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Dead,
    Removing,
}

impl RunState {
    /// Whether the container's process may still be alive.
    pub fn is_live(self) -> bool {
        matches!(self, RunState::Running | RunState::Paused | RunState::Restarting)
    }
}

/// A container's health as reported by its HEALTHCHECK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

/// A published port as the runtime bound it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub container_port: u16,
    pub protocol: String,
    pub host_ip: String,
    pub host_port: u16,
}

/// The result of inspecting a container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    /// The image's content ID (sha256:...).
    pub image_id: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub state: RunState,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// The runtime's error for a container that failed to start.
    pub error: Option<String>,
    /// `None` for a container without a health check.
    pub health: Option<Health>,
    pub ports: Vec<PortInfo>,
    /// Network name to IPv4 address.
    pub ip_addresses: BTreeMap<String, String>,
    /// When the runtime created and last started it (RFC 3339), for the metadata endpoint.
    pub created_at: Option<String>,
    pub started_at: Option<String>,
}

/// An entry of a label-filtered listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSummary {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub state: RunState,
}

/// What happened to a container.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Start,
    Die { exit_code: Option<i64> },
    Health(Health),
    Oom,
    Destroy,
}

/// A container event, carrying the container's labels so it can be routed to its task.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeEvent {
    pub container_id: String,
    pub labels: BTreeMap<String, String>,
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    Stdout,
    Stderr,
}

/// One line of container output. `timestamp_ns` is the runtime's own stamp, used to resume a log
/// stream after a reconnect without duplicating lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub source: LogSource,
    pub timestamp_ns: Option<i64>,
    pub line: String,
}

/// A bridge network to create (awsvpc mode's shared network, or the network of one subnet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The IPv4 block (`10.0.0.0/24`) and its gateway; `None` lets Docker pick a free block.
    pub subnet: Option<String>,
    pub gateway: Option<String>,
}

/// A named volume to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeSpec {
    pub name: String,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// Resource usage of one container; optional for runtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub cpu_total_ns: u64,
    pub memory_bytes: u64,
}

/// The container runtime as the engine uses it.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Whether the image is present locally.
    async fn image_present(&self, image: &str) -> RuntimeResult<bool>;
    /// Pulls (or, for images the runtime can build itself, builds) the image, with `auth` for
    /// its registry when given. An image nobody can provide is `ImageUnavailable`, whose message
    /// is the registry's or daemon's own (it becomes the task's `CannotPullContainerError`).
    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> RuntimeResult<()>;
    /// The image's content ID, reported as the container's imageDigest.
    async fn image_id(&self, image: &str) -> RuntimeResult<Option<String>>;

    /// Creates the network unless it exists; returns its ID. Another process creating it at
    /// the same moment is not an error: the one that exists is returned. A network of that name
    /// with another subnet is `Conflict`.
    async fn ensure_network(&self, spec: &NetworkSpec) -> RuntimeResult<String>;
    async fn remove_network(&self, name: &str) -> RuntimeResult<()>;
    /// Creates the volume unless it exists.
    async fn ensure_volume(&self, spec: &VolumeSpec) -> RuntimeResult<()>;
    async fn volume_exists(&self, name: &str) -> RuntimeResult<bool>;
    async fn remove_volume(&self, name: &str) -> RuntimeResult<()>;

    /// Creates a container; returns its ID. A name already taken is `Conflict`.
    async fn create_container(&self, spec: &ContainerSpec) -> RuntimeResult<String>;
    async fn start_container(&self, id: &str) -> RuntimeResult<()>;
    /// Sends SIGTERM, then SIGKILL once `timeout` has passed; returns when the container stopped.
    async fn stop_container(&self, id: &str, timeout: Duration) -> RuntimeResult<()>;
    /// Sends a signal ("SIGKILL", "SIGTERM", ...).
    async fn kill_container(&self, id: &str, signal: &str) -> RuntimeResult<()>;
    async fn inspect_container(&self, id: &str) -> RuntimeResult<ContainerInfo>;
    /// Waits until the container is not running; returns its exit code.
    async fn wait_container(&self, id: &str) -> RuntimeResult<i64>;
    /// Force-removes the container (and its anonymous volumes).
    async fn remove_container(&self, id: &str) -> RuntimeResult<()>;
    /// All containers (running or not) carrying every given label (`value: None` = any value).
    async fn list_containers(&self, labels: &[(&str, Option<&str>)]) -> RuntimeResult<Vec<ContainerSummary>>;

    /// Events of containers carrying the marker label, from now on. The stream ends or errs when
    /// the runtime connection breaks; callers resubscribe and resynchronise by inspecting.
    fn events(&self) -> BoxStream<'static, RuntimeResult<RuntimeEvent>>;
    /// The container's output from `since_ns` (exclusive; `None` = from the start), following
    /// new output while the container runs when `follow` is set.
    fn logs(&self, id: &str, since_ns: Option<i64>, follow: bool) -> BoxStream<'static, RuntimeResult<LogChunk>>;
    /// Creates (or updates) the cgroup that confines all of a task's containers together with
    /// the task's limits; returns the cgroup parent to give each container. A runtime that
    /// cannot (`Unsupported`, or the host refused) leaves the engine to cap each container.
    async fn ensure_task_cgroup(&self, task_id: &str, limits: &TaskLimits) -> RuntimeResult<String> {
        let _ = (task_id, limits);
        Err(RuntimeError::Unsupported { op: "ensure_task_cgroup" })
    }
    /// Removes the task's cgroup once its containers have stopped. Idempotent.
    async fn remove_task_cgroup(&self, task_id: &str) -> RuntimeResult<()> {
        let _ = task_id;
        Ok(())
    }
    /// Resource usage; runtimes without it answer `Unsupported`.
    async fn stats(&self, id: &str) -> RuntimeResult<Stats> {
        let _ = id;
        Err(RuntimeError::Unsupported { op: "stats" })
    }
    /// One sample of the container's resource usage in Docker's stats JSON, which the task
    /// metadata endpoint passes on as is; runtimes without it answer `Unsupported`.
    async fn stats_json(&self, id: &str) -> RuntimeResult<serde_json::Value> {
        let _ = id;
        Err(RuntimeError::Unsupported { op: "stats_json" })
    }
}
