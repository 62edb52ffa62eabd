//! [`Runtime`] on the Docker Engine API through bollard.
//!
//! Every call runs under a named timeout from [`DockerTimeouts`] (so a wedged daemon surfaces as
//! `RuntimeError::Timeout { op }` instead of a stuck task), and bollard's own blanket request
//! timeout is raised out of the way so long calls such as `stop` are bounded by ours. The client
//! negotiates the API version at connect time: this host's engine speaks 1.41 while bollard
//! defaults to a newer one. Images under a configured prefix (Flotilla's own `flotilla/...`
//! images) are built locally by an [`ImageBuilder`] instead of pulled, since no registry may be
//! reachable. Pulls from registries, with credentials and progress, are in `docker/pull.rs`;
//! per-task cgroups (task-level cpu and memory) are in `cgroups.rs`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, EndpointIpamConfig, EndpointSettings, EventMessage, HealthConfig,
    HealthStatusEnum, HostConfig, HostConfigLogConfig, NetworkingConfig, PortBinding, ResourcesUlimits,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};

use super::cgroups::DockerCgroups;

mod networks;
mod pull;
use super::{
    labels, ContainerInfo, ContainerSpec, ContainerSummary, EventKind, Health, LogChunk, LogSource, NetworkSpec,
    PortInfo, RegistryAuth, RunState, Runtime, RuntimeError, RuntimeEvent, RuntimeResult, Stats, VolumeSpec,
};

/// The repository prefix of the images `flotilla-images` builds.
pub const FLOTILLA_IMAGE_PREFIX: &str = "flotilla/";

/// Builds an image locally (for images no registry serves). Returns an error message on failure.
pub type ImageBuilder = Arc<dyn Fn(Docker, String) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The deadline of each kind of Docker call. Defaults follow the ECS agent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DockerTimeouts {
    pub version: Duration,
    pub list: Duration,
    pub inspect: Duration,
    pub create: Duration,
    pub start: Duration,
    /// Added to the stop grace period: Docker answers only once SIGKILL has done its work.
    pub stop_extra: Duration,
    pub kill: Duration,
    pub remove: Duration,
    pub pull: Duration,
    pub network: Duration,
    pub volume: Duration,
    /// Each step of making or removing a task cgroup (file writes, or a systemd bus call).
    pub cgroup: Duration,
}

impl Default for DockerTimeouts {
    fn default() -> Self {
        DockerTimeouts {
            version: Duration::from_secs(10),
            list: Duration::from_secs(10),
            inspect: Duration::from_secs(30),
            create: Duration::from_secs(240),
            start: Duration::from_secs(180),
            stop_extra: Duration::from_secs(30),
            kill: Duration::from_secs(30),
            remove: Duration::from_secs(300),
            pull: Duration::from_secs(1800),
            network: Duration::from_secs(60),
            volume: Duration::from_secs(60),
            cgroup: Duration::from_secs(30),
        }
    }
}

/// The Docker-backed runtime.
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    timeouts: DockerTimeouts,
    builders: Vec<(String, ImageBuilder)>,
    /// Docker 1.41 lets two networks share a name, so creation is check-then-create under a lock.
    network_lock: Arc<tokio::sync::Mutex<()>>,
    cgroups: Arc<DockerCgroups>,
    /// Whether the storage driver can bound a container's writable layer, asked once.
    storage_quota: Arc<tokio::sync::OnceCell<bool>>,
}

impl DockerRuntime {
    /// Connects to the local daemon (DOCKER_HOST or the default socket) and negotiates the API
    /// version. Flotilla's own images are built locally (see [`Self::with_flotilla_images`]).
    pub async fn connect(timeouts: DockerTimeouts) -> RuntimeResult<Self> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| RuntimeError::Unavailable { op: "connect", message: e.to_string() })?;
        Ok(Self::from_docker(docker, timeouts).await?.with_flotilla_images())
    }

    /// Connects to the daemon on the Unix socket at `path` (a daemon elsewhere than the default
    /// socket, or a proxy in front of it), with Flotilla's images built locally as in
    /// [`Self::connect`].
    pub async fn connect_unix(path: &str, timeouts: DockerTimeouts) -> RuntimeResult<Self> {
        let docker = Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
            .map_err(|e| RuntimeError::Unavailable { op: "connect", message: e.to_string() })?;
        Ok(Self::from_docker(docker, timeouts).await?.with_flotilla_images())
    }

    /// Wraps an existing client, negotiating its API version.
    pub async fn from_docker(docker: Docker, timeouts: DockerTimeouts) -> RuntimeResult<Self> {
        // Fields newer API versions moved (a fixed MAC address) go where an older daemon reads them.
        let docker = docker.with_request_modifier(super::sandbox::compat);
        let mut docker = timed("version", timeouts.version, docker.negotiate_version()).await?;
        // Our own per-call deadlines apply; bollard's single shared one would cut `stop` short.
        docker.set_timeout(Duration::from_secs(24 * 3600));
        Ok(DockerRuntime {
            docker,
            timeouts,
            builders: Vec::new(),
            network_lock: Arc::new(tokio::sync::Mutex::new(())),
            cgroups: DockerCgroups::new(PathBuf::from(crate::cgroup::DEFAULT_ROOT), timeouts.cgroup),
            storage_quota: Arc::new(tokio::sync::OnceCell::new()),
        })
    }

    /// Flotilla's own images (`flotilla/...`: the workload and the awsvpc pause image) are built
    /// locally with `flotilla-images` instead of pulled, since no registry serves them.
    pub fn with_flotilla_images(self) -> Self {
        let builder: ImageBuilder = Arc::new(|docker: Docker, image: String| {
            Box::pin(async move {
                flotilla_images::ensure_image(&docker, &image).await.map(drop).map_err(|e| e.to_string())
            })
        });
        self.with_image_builder(FLOTILLA_IMAGE_PREFIX, builder)
    }

    /// Images whose reference starts with `prefix` are built by `builder` rather than pulled.
    pub fn with_image_builder(mut self, prefix: &str, builder: ImageBuilder) -> Self {
        self.builders.push((prefix.to_string(), builder));
        self
    }

    /// Makes task cgroups under another cgroup filesystem mount than `/sys/fs/cgroup` (an agent
    /// that sees the host's hierarchy elsewhere).
    pub fn with_cgroup_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.cgroups = DockerCgroups::new(root.into(), self.timeouts.cgroup);
        self
    }

    /// The bollard client, for callers that need more than the trait (tests, image builders).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The daemon's version string, for the instance's versionInfo.
    pub async fn server_version(&self) -> RuntimeResult<String> {
        let v = timed("version", self.timeouts.version, self.docker.version()).await?;
        Ok(v.version.unwrap_or_default())
    }

    /// The log drivers the daemon has (`/info` `Plugins.Log`: `json-file`, `syslog`, ...).
    pub async fn log_drivers(&self) -> RuntimeResult<Vec<String>> {
        let info = timed("info", self.timeouts.version, self.docker.info()).await?;
        Ok(info.plugins.and_then(|p| p.log).unwrap_or_default())
    }

    /// The IPv4 gateway of Docker's default `bridge` network (as a rule 172.17.0.1): the host's
    /// address as containers see it, where the task metadata endpoint listens. Docker 20.10
    /// leaves the gateway out of that network's IPAM config when it is the subnet's first
    /// address (its default), so the first address of the subnet stands in for it.
    pub async fn bridge_gateway(&self) -> RuntimeResult<Option<std::net::IpAddr>> {
        let n = timed("inspect_network", self.timeouts.inspect, self.docker.inspect_network("bridge", None)).await?;
        let configs = n.ipam.and_then(|i| i.config).unwrap_or_default();
        Ok(configs.iter().find_map(|c| {
            let given = c.gateway.as_deref().and_then(|g| g.parse::<std::net::Ipv4Addr>().ok());
            given.or_else(|| c.subnet.as_deref().and_then(crate::metadata::address::first_host))
        }))
        .map(|ip| ip.map(std::net::IpAddr::V4))
    }
}

fn failed(op: &'static str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Failed { op, message: e.to_string() }
}

/// Maps a bollard error: 404 is `NotFound`, 409 `Conflict`; a daemon that is away or half there
/// (no connection, a dropped or garbled answer, 502/503/504, a 500 that says the daemon lost its
/// own backend) is `Unavailable`, worth a retry; any other answer is `Failed` with the daemon's
/// message.
fn map_err(op: &'static str, what: &str, e: DockerError) -> RuntimeError {
    match e {
        DockerError::DockerResponseServerError { status_code: 404, .. } => {
            RuntimeError::NotFound { what: what.to_string() }
        }
        DockerError::DockerResponseServerError { status_code: 409, message } => RuntimeError::Conflict { op, message },
        DockerError::DockerResponseServerError { status_code, message } if daemon_unwell(status_code, &message) => {
            RuntimeError::Unavailable { op, message }
        }
        DockerError::DockerResponseServerError { message, .. } => RuntimeError::Failed { op, message },
        DockerError::RequestTimeoutError => RuntimeError::Unavailable { op, message: "request timed out".into() },
        e => RuntimeError::Unavailable { op, message: e.to_string() },
    }
}

/// Whether a daemon's error answer says the daemon (not the request) is in trouble. Docker
/// answers 500 for many lasting faults of a request too (a host port already taken, a command
/// that does not exist), which a retry would only delay; those stay failures. 500s that report
/// a lost connection to containerd, or a daemon shutting down, are passing.
fn daemon_unwell(status: u16, message: &str) -> bool {
    const PASSING: [&str; 8] = [
        "connection refused",
        "connection reset",
        "broken pipe",
        "transport is closing",
        "error while dialing",
        "context deadline exceeded",
        "shutting down",
        "i/o timeout",
    ];
    let message = message.to_ascii_lowercase();
    matches!(status, 502..=504) || (status >= 500 && PASSING.iter().any(|p| message.contains(p)))
}

async fn timed<T>(
    op: &'static str,
    after: Duration,
    fut: impl Future<Output = Result<T, DockerError>>,
) -> RuntimeResult<T> {
    match tokio::time::timeout(after, fut).await {
        Ok(r) => r.map_err(|e| map_err(op, op, e)),
        Err(_) => Err(RuntimeError::Timeout { op, after }),
    }
}

/// Like [`timed`], naming the object a 404 is about.
async fn timed_on<T>(
    op: &'static str,
    what: &str,
    after: Duration,
    fut: impl Future<Output = Result<T, DockerError>>,
) -> RuntimeResult<T> {
    match tokio::time::timeout(after, fut).await {
        Ok(r) => r.map_err(|e| map_err(op, what, e)),
        Err(_) => Err(RuntimeError::Timeout { op, after }),
    }
}

/// Splits "repo[:tag]" for the pull API, which pulls every tag when none is given.
fn split_reference(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (&image[..last_slash + i], &image[last_slash + i + 1..]),
        None => (image, "latest"),
    }
}

fn port_key(port: u16, protocol: &str) -> String {
    format!("{port}/{protocol}")
}

fn hashmap(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Translates the engine's spec into Docker's create body.
fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.port_bindings {
        let binding = PortBinding {
            host_ip: p.host_ip.clone(),
            // An empty host port asks Docker for one from the ephemeral range.
            host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
        };
        if let Some(v) =
            port_bindings.entry(port_key(p.container_port, &p.protocol)).or_insert_with(|| Some(Vec::new()))
        {
            v.push(binding);
        }
    }
    let exposed: Vec<String> = port_bindings.keys().cloned().collect();
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let log_config = match &spec.log_driver {
        // A Docker log driver the task definition names, with its options (secret ones resolved).
        Some(d) => Some(HostConfigLogConfig {
            typ: Some(d.name.clone()),
            config: Some(d.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        }),
        None => spec.log_max_bytes.map(|max| HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([("max-size".to_string(), max.to_string()), ("max-file".into(), "1".into())])),
        }),
    };
    let host_config = HostConfig {
        cpu_shares: spec.cpu_shares,
        nano_cpus: spec.nano_cpus,
        cgroup_parent: spec.cgroup_parent.clone(),
        memory: spec.memory_bytes,
        memory_reservation: spec.memory_reservation_bytes,
        ulimits: (!spec.ulimits.is_empty()).then(|| {
            spec.ulimits
                .iter()
                .map(|u| ResourcesUlimits { name: Some(u.name.clone()), soft: Some(u.soft), hard: Some(u.hard) })
                .collect()
        }),
        readonly_rootfs: spec.readonly_rootfs.then_some(true),
        privileged: spec.privileged.then_some(true),
        binds: non_empty(&spec.binds),
        volumes_from: non_empty(&spec.volumes_from),
        network_mode: spec.network_mode.clone(),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        links: non_empty(&spec.links),
        extra_hosts: non_empty(&spec.extra_hosts),
        dns: non_empty(&spec.dns_servers),
        dns_search: non_empty(&spec.dns_search),
        log_config,
        cap_add: non_empty(&spec.cap_add),
        cap_drop: non_empty(&spec.cap_drop),
        init: spec.init,
        shm_size: spec.shm_size_bytes,
        runtime: spec.runtime.clone(),
        storage_opt: spec.storage_size_bytes.map(|b| HashMap::from([("size".to_string(), b.to_string())])),
        security_opt: non_empty(&spec.options.security_opt),
        sysctls: (!spec.options.sysctls.is_empty()).then(|| hashmap(&spec.options.sysctls)),
        device_requests: crate::engine::gpu::device_requests(&spec.gpus),
        pid_mode: spec.pid_mode.clone(),
        ipc_mode: spec.ipc_mode.clone(),
        ..HostConfig::default()
    };
    // A fixed address (and MAC) on the one network the container joins.
    let networking_config = match (&spec.network_mode, &spec.ipv4_address, &spec.mac_address) {
        (Some(network), ip, mac) if ip.is_some() || mac.is_some() => Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.clone(),
                EndpointSettings {
                    ipam_config: ip
                        .as_ref()
                        .map(|ip| EndpointIpamConfig { ipv4_address: Some(ip.clone()), ..Default::default() }),
                    mac_address: mac.clone(),
                    ..Default::default()
                },
            )])),
        }),
        _ => None,
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.command.clone(),
        env: non_empty(&spec.env),
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        hostname: spec.hostname.clone(),
        labels: Some(hashmap(&spec.labels)),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck: spec.health_check.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: Some(nanos(h.interval)),
            timeout: Some(nanos(h.timeout)),
            retries: Some(i64::from(h.retries)),
            start_period: Some(nanos(h.start_period)),
            start_interval: None,
        }),
        stop_timeout: spec.stop_timeout.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        host_config: Some(host_config),
        networking_config,
        network_disabled: spec.options.network_disabled.then_some(true),
        tty: spec.options.tty.then_some(true),
        open_stdin: spec.options.open_stdin.then_some(true),
        attach_stdin: spec.options.open_stdin.then_some(true),
        ..ContainerCreateBody::default()
    }
}

fn run_state(s: Option<ContainerStateStatusEnum>) -> RunState {
    match s {
        Some(ContainerStateStatusEnum::RUNNING) => RunState::Running,
        Some(ContainerStateStatusEnum::PAUSED) => RunState::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => RunState::Restarting,
        Some(ContainerStateStatusEnum::EXITED) => RunState::Exited,
        Some(ContainerStateStatusEnum::DEAD) => RunState::Dead,
        Some(ContainerStateStatusEnum::REMOVING) => RunState::Removing,
        Some(ContainerStateStatusEnum::STOPPING) => RunState::Running,
        Some(ContainerStateStatusEnum::CREATED) | Some(ContainerStateStatusEnum::EMPTY) | None => RunState::Created,
    }
}

fn summary_state(s: &str) -> RunState {
    match s {
        "running" => RunState::Running,
        "paused" => RunState::Paused,
        "restarting" => RunState::Restarting,
        "exited" => RunState::Exited,
        "dead" => RunState::Dead,
        "removing" => RunState::Removing,
        _ => RunState::Created,
    }
}

fn health(s: Option<HealthStatusEnum>) -> Option<Health> {
    match s? {
        HealthStatusEnum::STARTING => Some(Health::Starting),
        HealthStatusEnum::HEALTHY => Some(Health::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
        HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
    }
}

/// Maps a daemon event to ours; events we do not act on are dropped.
fn event(e: EventMessage) -> Option<RuntimeEvent> {
    let actor = e.actor?;
    let attrs: BTreeMap<String, String> = actor.attributes.unwrap_or_default().into_iter().collect();
    let action = e.action?;
    let kind = match action.as_str() {
        "start" => EventKind::Start,
        "die" => EventKind::Die { exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()) },
        "oom" => EventKind::Oom,
        "destroy" => EventKind::Destroy,
        a => match a.strip_prefix("health_status: ")? {
            "healthy" => EventKind::Health(Health::Healthy),
            "unhealthy" => EventKind::Health(Health::Unhealthy),
            "starting" => EventKind::Health(Health::Starting),
            _ => return None,
        },
    };
    // Event attributes are the labels plus a few keys of Docker's own (name, image, exitCode).
    Some(RuntimeEvent { container_id: actor.id?, labels: attrs, kind })
}

/// Splits a `timestamps=true` log line: "2024-05-01T10:00:00.123456789Z message".
fn split_timestamp(line: &str) -> (Option<i64>, &str) {
    match line.split_once(' ') {
        Some((ts, rest)) => match parse_rfc3339_ns(ts) {
            Some(ns) => (Some(ns), rest),
            None => (None, line),
        },
        None => match parse_rfc3339_ns(line) {
            Some(ns) => (Some(ns), ""),
            None => (None, line),
        },
    }
}

/// Parses the UTC RFC 3339 timestamps Docker writes ("...Z", up to nanoseconds) into epoch ns.
pub(crate) fn parse_rfc3339_ns(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let frac_ns: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
    // Days from civil (Howard Hinnant's algorithm), valid for the proleptic Gregorian calendar.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000_000) + frac_ns)
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn image_present(&self, image: &str) -> RuntimeResult<bool> {
        match timed_on("inspect_image", image, self.timeouts.inspect, self.docker.inspect_image(image)).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> RuntimeResult<()> {
        if let Some((_, build)) = self.builders.iter().find(|(prefix, _)| image.starts_with(prefix.as_str())) {
            let fut = build(self.docker.clone(), image.to_string());
            return match tokio::time::timeout(self.timeouts.pull, fut).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(message)) => Err(RuntimeError::ImageUnavailable { image: image.to_string(), message }),
                Err(_) => Err(RuntimeError::Timeout { op: "build_image", after: self.timeouts.pull }),
            };
        }
        self.pull_from_registry(image, auth).await
    }

    async fn image_id(&self, image: &str) -> RuntimeResult<Option<String>> {
        match timed_on("inspect_image", image, self.timeouts.inspect, self.docker.inspect_image(image)).await {
            Ok(i) => Ok(i.id),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn ensure_network(&self, spec: &NetworkSpec) -> RuntimeResult<String> {
        self.ensure_bridge_network(spec).await
    }

    async fn remove_network(&self, name: &str) -> RuntimeResult<()> {
        match timed_on("remove_network", name, self.timeouts.network, self.docker.remove_network(name)).await {
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }

    async fn ensure_volume(&self, spec: &VolumeSpec) -> RuntimeResult<()> {
        let req = VolumeCreateRequest {
            name: Some(spec.name.clone()),
            driver: spec.driver.clone(),
            driver_opts: (!spec.driver_opts.is_empty()).then(|| hashmap(&spec.driver_opts)),
            labels: Some(hashmap(&spec.labels)),
            ..VolumeCreateRequest::default()
        };
        // Creating a volume that exists with the same driver is a no-op in Docker.
        timed("create_volume", self.timeouts.volume, self.docker.create_volume(req)).await.map(drop)
    }

    async fn volume_exists(&self, name: &str) -> RuntimeResult<bool> {
        match timed_on("inspect_volume", name, self.timeouts.volume, self.docker.inspect_volume(name)).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn remove_volume(&self, name: &str) -> RuntimeResult<()> {
        let fut = self.docker.remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>);
        match timed_on("remove_volume", name, self.timeouts.volume, fut).await {
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }

    async fn ensure_task_cgroup(&self, task_id: &str, limits: &crate::cgroup::TaskLimits) -> RuntimeResult<String> {
        self.cgroups.ensure(&self.docker, self.timeouts.version, task_id, limits).await
    }

    async fn remove_task_cgroup(&self, task_id: &str) -> RuntimeResult<()> {
        self.cgroups.remove(&self.docker, self.timeouts.version, task_id).await
    }

    async fn create_container(&self, spec: &ContainerSpec) -> RuntimeResult<String> {
        let options = CreateContainerOptionsBuilder::default().name(&spec.name).build();
        let mut body = create_body(spec);
        if spec.storage_size_bytes.is_some() && !self.storage_quota().await {
            if let Some(hc) = body.host_config.as_mut() {
                hc.storage_opt = None;
            }
        }
        let what = format!("image {}", spec.image);
        let sized = body.host_config.as_ref().is_some_and(|h| h.storage_opt.is_some());
        let fut = self.docker.create_container(Some(options.clone()), body.clone());
        match timed_on("create_container", &what, self.timeouts.create, fut).await {
            Ok(r) => Ok(r.id),
            // overlay2 on xfs bounds a layer only when xfs is mounted with pquota, which `info`
            // does not tell: such a refusal runs the container unbounded, as on other drivers.
            Err(RuntimeError::Failed { message, .. }) if sized && message.contains("storage") => {
                tracing::warn!(%message, "the storage driver refused a size; the writable layer is unbounded");
                if let Some(hc) = body.host_config.as_mut() {
                    hc.storage_opt = None;
                }
                let fut = self.docker.create_container(Some(options), body);
                Ok(timed_on("create_container", &what, self.timeouts.create, fut).await?.id)
            }
            Err(e) => Err(e),
        }
    }

    async fn start_container(&self, id: &str) -> RuntimeResult<()> {
        let fut = self.docker.start_container(id, None);
        // bollard treats 304 (already started) as success, which is what we want.
        timed_on("start_container", id, self.timeouts.start, fut).await
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> RuntimeResult<()> {
        let secs = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(secs).build();
        let fut = self.docker.stop_container(id, Some(options));
        timed_on("stop_container", id, timeout + self.timeouts.stop_extra, fut).await
    }

    async fn kill_container(&self, id: &str, signal: &str) -> RuntimeResult<()> {
        let options = KillContainerOptionsBuilder::default().signal(signal).build();
        match timed_on("kill_container", id, self.timeouts.kill, self.docker.kill_container(id, Some(options))).await {
            // 409: not running, so there is nothing to signal.
            Err(RuntimeError::Conflict { .. }) => Ok(()),
            r => r,
        }
    }

    async fn inspect_container(&self, id: &str) -> RuntimeResult<ContainerInfo> {
        let fut = self.docker.inspect_container(id, None);
        let c = timed_on("inspect_container", id, self.timeouts.inspect, fut).await?;
        let state = c.state.unwrap_or_default();
        let config = c.config.unwrap_or_default();
        let net = c.network_settings.unwrap_or_default();
        let mut ports = Vec::new();
        for (key, bindings) in net.ports.unwrap_or_default() {
            let Some((port, protocol)) = key.split_once('/') else { continue };
            let Ok(container_port) = port.parse() else { continue };
            for b in bindings.unwrap_or_default() {
                let Some(host_port) = b.host_port.and_then(|p| p.parse().ok()) else { continue };
                ports.push(PortInfo {
                    container_port,
                    protocol: protocol.to_string(),
                    host_ip: b.host_ip.unwrap_or_default(),
                    host_port,
                });
            }
        }
        ports.sort_by(|a, b| {
            (a.container_port, &a.protocol, &a.host_ip).cmp(&(b.container_port, &b.protocol, &b.host_ip))
        });
        let ip_addresses = net
            .networks
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, ep)| ep.ip_address.filter(|ip| !ip.is_empty()).map(|ip| (name, ip)))
            .collect();
        let running = state.running.unwrap_or(false);
        Ok(ContainerInfo {
            id: c.id.unwrap_or_else(|| id.to_string()),
            name: c.name.unwrap_or_default().trim_start_matches('/').to_string(),
            image_id: c.image,
            labels: config.labels.unwrap_or_default().into_iter().collect(),
            state: run_state(state.status),
            // Docker reports 0 for a container that has not exited yet; that is not an exit code.
            exit_code: if running { None } else { state.exit_code },
            oom_killed: state.oom_killed.unwrap_or(false),
            error: state.error.filter(|e| !e.is_empty()),
            health: health(state.health.and_then(|h| h.status)),
            ports,
            ip_addresses,
            created_at: c.created,
            started_at: state.started_at.filter(|t| !t.starts_with("0001-")),
        })
    }

    async fn wait_container(&self, id: &str) -> RuntimeResult<i64> {
        let options = WaitContainerOptionsBuilder::default().condition("not-running").build();
        let mut stream = self.docker.wait_container(id, Some(options));
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard turns a non-zero exit into an error; it is still just the exit code.
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(map_err("wait_container", id, e)),
            None => Err(failed("wait_container", "stream ended without a status")),
        }
    }

    async fn remove_container(&self, id: &str) -> RuntimeResult<()> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        let fut = self.docker.remove_container(id, Some(options));
        match timed_on("remove_container", id, self.timeouts.remove, fut).await {
            Err(e) if e.is_not_found() => Ok(()),
            // 409: removal already in progress.
            Err(RuntimeError::Conflict { message, .. }) if message.contains("already in progress") => Ok(()),
            r => r,
        }
    }

    async fn list_containers(&self, filter: &[(&str, Option<&str>)]) -> RuntimeResult<Vec<ContainerSummary>> {
        let label_filters: Vec<String> = filter
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.to_string(),
            })
            .collect();
        let filters = HashMap::from([("label".to_string(), label_filters)]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let list = timed("list_containers", self.timeouts.list, self.docker.list_containers(Some(options))).await?;
        Ok(list
            .into_iter()
            .map(|c| ContainerSummary {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                labels: c.labels.unwrap_or_default().into_iter().collect(),
                state: c.state.map(|s| summary_state(s.as_ref())).unwrap_or(RunState::Created),
            })
            .collect())
    }

    fn events(&self) -> BoxStream<'static, RuntimeResult<RuntimeEvent>> {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("label".to_string(), vec![labels::MARKER.to_string()]),
        ]);
        let options = EventsOptionsBuilder::default().filters(&filters).build();
        self.docker
            .events(Some(options))
            .filter_map(|e| async move {
                match e {
                    Ok(e) => event(e).map(Ok),
                    // The stream broke (the daemon went away, or dropped us): resubscribe.
                    Err(e) => Some(Err(map_err("events", "events", e))),
                }
            })
            .boxed()
    }

    fn logs(&self, id: &str, since_ns: Option<i64>, follow: bool) -> BoxStream<'static, RuntimeResult<LogChunk>> {
        let since_secs = since_ns.map_or(0, |ns| i32::try_from(ns / 1_000_000_000).unwrap_or(0));
        let options = LogsOptionsBuilder::default()
            .follow(follow)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since(since_secs)
            .build();
        let id = id.to_string();
        self.docker
            .logs(&id, Some(options))
            .filter_map(move |item| async move {
                let (source, message) = match item {
                    Ok(bollard::container::LogOutput::StdOut { message }) => (LogSource::Stdout, message),
                    Ok(bollard::container::LogOutput::StdErr { message }) => (LogSource::Stderr, message),
                    Ok(bollard::container::LogOutput::Console { message }) => (LogSource::Stdout, message),
                    Ok(bollard::container::LogOutput::StdIn { .. }) => return None,
                    Err(e) => return Some(Err(failed("logs", e))),
                };
                let text = String::from_utf8_lossy(&message);
                let (timestamp_ns, line) = split_timestamp(text.trim_end_matches(['\n', '\r']));
                // `since` has one-second resolution; drop what we already have.
                if let (Some(since), Some(ts)) = (since_ns, timestamp_ns) {
                    if ts <= since {
                        return None;
                    }
                }
                Some(Ok(LogChunk { source, timestamp_ns, line: line.to_string() }))
            })
            .boxed()
    }

    async fn stats(&self, id: &str) -> RuntimeResult<Stats> {
        let options = bollard::query_parameters::StatsOptionsBuilder::default().stream(false).one_shot(true).build();
        let mut s = self.docker.stats(id, Some(options));
        let stats = match tokio::time::timeout(self.timeouts.inspect, s.next()).await {
            Ok(Some(r)) => r.map_err(|e| map_err("stats", id, e))?,
            Ok(None) => return Err(failed("stats", "no sample")),
            Err(_) => return Err(RuntimeError::Timeout { op: "stats", after: self.timeouts.inspect }),
        };
        Ok(Stats {
            cpu_total_ns: stats.cpu_stats.and_then(|c| c.cpu_usage).and_then(|u| u.total_usage).unwrap_or(0),
            memory_bytes: stats.memory_stats.and_then(|m| m.usage).unwrap_or(0),
        })
    }

    async fn stats_json(&self, id: &str) -> RuntimeResult<serde_json::Value> {
        let options = bollard::query_parameters::StatsOptionsBuilder::default().stream(false).one_shot(true).build();
        let mut s = self.docker.stats(id, Some(options));
        let stats = match tokio::time::timeout(self.timeouts.inspect, s.next()).await {
            Ok(Some(r)) => r.map_err(|e| map_err("stats", id, e))?,
            Ok(None) => return Err(failed("stats", "no sample")),
            Err(_) => return Err(RuntimeError::Timeout { op: "stats", after: self.timeouts.inspect }),
        };
        serde_json::to_value(stats).map_err(|e| failed("stats", e))
    }
}

#[cfg(test)]
mod tests;
