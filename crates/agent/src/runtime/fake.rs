//! An in-memory [`Runtime`] for unit tests: it records every call, keeps containers, networks and
//! volumes in maps, and lets a test script what a container does (exit with a code after a delay,
//! ignore SIGTERM, become healthy or unhealthy, print lines).
//!
//! Time goes through `tokio::time`, so tests that pause the clock drive scripted delays and stop
//! timeouts deterministically. Scripts are keyed by the container's name in the task definition
//! (its `CONTAINER` label), which is what a test knows before the engine creates anything.
//!
//! Faults, for daemon hiccups: [`FakeRuntime::cut`] makes the daemon unreachable until
//! [`FakeRuntime::restore`] (every call fails with `Unavailable`, open event streams break and
//! events of that time are lost, while containers go on running and may exit);
//! [`FakeRuntime::fail_next`] fails the next calls before they act, and
//! [`FakeRuntime::lose_next_answers`] lets the next calls act but loses their answers, as when a
//! connection drops after the daemon did the work. Refused calls are recorded as [`Call::Refused`]
//! with the (tokio) instant they were made, so tests can see retries back off.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use crate::cgroup::TaskLimits;

use super::{
    labels, ContainerInfo, ContainerSpec, ContainerSummary, EventKind, Health, LogChunk, LogSource, NetworkSpec,
    PortInfo, RegistryAuth, RunState, Runtime, RuntimeError, RuntimeEvent, RuntimeResult, VolumeSpec,
};

/// A call the engine made, in order, with the names a test can assert on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    PullImage(String),
    CreateContainer(String),
    StartContainer(String),
    StopContainer(String, Duration),
    KillContainer(String, String),
    RemoveContainer(String),
    EnsureNetwork(String),
    RemoveNetwork(String),
    EnsureVolume(String),
    RemoveVolume(String),
    /// The task ID and the limits asked for.
    EnsureTaskCgroup(String, TaskLimits),
    RemoveTaskCgroup(String),
    /// A call the unreachable daemon refused (or whose answer was lost): its operation and when.
    Refused(&'static str, tokio::time::Instant),
}

/// What a scripted container does once started.
#[derive(Debug, Clone)]
pub struct Script {
    /// Exit with this code after this delay.
    pub exit_after: Option<(Duration, i64)>,
    /// The exit code on SIGTERM; `None` ignores SIGTERM, so only SIGKILL (137) stops it.
    pub on_sigterm: Option<i64>,
    /// Health right after start, for containers with a health check (default `Starting`).
    pub health_on_start: Health,
    /// Health changes after a delay.
    pub health_after: Option<(Duration, Health)>,
    /// Make `start_container` fail with this message.
    pub fail_start: Option<String>,
    /// Output lines, available from `logs`.
    pub output: Vec<(LogSource, String)>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            exit_after: None,
            on_sigterm: Some(0),
            health_on_start: Health::Starting,
            health_after: None,
            fail_start: None,
            output: Vec::new(),
        }
    }
}

/// A container the fake holds.
#[derive(Debug, Clone)]
pub struct FakeContainer {
    pub id: String,
    pub spec: ContainerSpec,
    pub state: RunState,
    pub exit_code: Option<i64>,
    pub health: Option<Health>,
    pub ports: Vec<PortInfo>,
    pub ip: Option<String>,
    pub starts: u32,
    script: Script,
}

impl FakeContainer {
    /// The container's name in its task definition.
    pub fn task_name(&self) -> &str {
        self.spec.labels.get(labels::CONTAINER).map(String::as_str).unwrap_or_default()
    }
    pub fn task_arn(&self) -> &str {
        self.spec.labels.get(labels::TASK).map(String::as_str).unwrap_or_default()
    }
}

#[derive(Default)]
struct State {
    images: BTreeSet<String>,
    pullable: BTreeSet<String>,
    /// Pullable images that need these credentials (username, password).
    private: BTreeMap<String, (String, String)>,
    /// Each pull's image and the username it came with, in order.
    pull_users: Vec<(String, Option<String>)>,
    containers: BTreeMap<String, FakeContainer>,
    networks: BTreeMap<String, String>,
    volumes: BTreeSet<String>,
    /// Task ID to the limits its live cgroup carries.
    cgroups: BTreeMap<String, TaskLimits>,
    /// Why task cgroups cannot be made (a read-only cgroup filesystem, say), if they cannot.
    cgroups_refused: Option<String>,
    calls: Vec<Call>,
    scripts: BTreeMap<String, Script>,
    next_id: u64,
    next_port: u16,
    next_ip: u8,
    stop_hangs: bool,
    /// The daemon is unreachable.
    cut: bool,
    /// Calls to refuse before they act, by operation.
    fail_next: BTreeMap<String, u32>,
    /// Calls that act but whose answer is lost, by operation.
    lose_next: BTreeMap<String, u32>,
}

struct Inner {
    state: Mutex<State>,
    events: broadcast::Sender<RuntimeEvent>,
    /// Bumped to break every open event stream.
    breaks: tokio::sync::watch::Sender<u64>,
}

/// The fake runtime. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct FakeRuntime {
    inner: Arc<Inner>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeRuntime {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
        let state = State { next_port: 49153, next_ip: 2, ..State::default() };
        let (breaks, _) = tokio::sync::watch::channel(0);
        FakeRuntime { inner: Arc::new(Inner { state: Mutex::new(state), events, breaks }) }
    }

    /// Makes the daemon unreachable: calls fail with `Unavailable`, event streams break, and
    /// events until [`Self::restore`] reach nobody. Containers keep running (and may exit).
    pub fn cut(&self) {
        self.state().cut = true;
        self.break_event_streams();
    }

    /// Makes the daemon reachable again.
    pub fn restore(&self) {
        self.state().cut = false;
    }

    /// Fails the next `n` calls of `op` (a [`Runtime`] method's name, such as
    /// "start_container") with `Unavailable` before they do anything.
    pub fn fail_next(&self, op: &str, n: u32) {
        self.state().fail_next.insert(op.to_string(), n);
    }

    /// Lets the next `n` calls of `op` do their work but answers them with `Unavailable`.
    pub fn lose_next_answers(&self, op: &str, n: u32) {
        self.state().lose_next.insert(op.to_string(), n);
    }

    /// Breaks every open event stream: each yields an error and ends.
    pub fn break_event_streams(&self) {
        self.inner.breaks.send_modify(|n| *n += 1);
    }

    /// The refused calls of one operation, in order, with when they were made.
    pub fn refused(&self, op: &str) -> Vec<tokio::time::Instant> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Refused(o, at) if o == op => Some(at),
                _ => None,
            })
            .collect()
    }

    /// Refuses the call if the daemon is cut off or a failure is due; otherwise the call goes on.
    fn gate(&self, op: &'static str) -> RuntimeResult<()> {
        let mut st = self.state();
        let due = st.fail_next.get_mut(op).filter(|n| **n > 0).map(|n| *n -= 1).is_some();
        if st.cut || due {
            st.calls.push(Call::Refused(op, tokio::time::Instant::now()));
            return Err(unavailable(op));
        }
        Ok(())
    }

    /// After a call did its work: whether its answer is lost on the way back.
    fn answer<T>(&self, op: &'static str, r: RuntimeResult<T>) -> RuntimeResult<T> {
        let mut st = self.state();
        if st.lose_next.get_mut(op).filter(|n| **n > 0).map(|n| *n -= 1).is_some() {
            st.calls.push(Call::Refused(op, tokio::time::Instant::now()));
            return Err(unavailable(op));
        }
        r
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the state from the others.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes an image present locally.
    pub fn add_image(&self, image: &str) {
        self.state().images.insert(image.to_string());
    }

    /// Makes an image absent locally but pullable.
    pub fn add_pullable(&self, image: &str) {
        self.state().pullable.insert(image.to_string());
    }

    /// Makes an image absent locally and pullable only with these credentials, as a private
    /// registry's: others get the registry's `unauthorized` answer.
    pub fn add_private(&self, image: &str, username: &str, password: &str) {
        self.state().private.insert(image.to_string(), (username.to_string(), password.to_string()));
    }

    /// Each pull so far: the image and the username it was pulled with.
    pub fn pull_users(&self) -> Vec<(String, Option<String>)> {
        self.state().pull_users.clone()
    }

    /// Scripts the behaviour of every container of that task-definition name created from now on.
    pub fn script(&self, container_name: &str, script: Script) {
        self.state().scripts.insert(container_name.to_string(), script);
    }

    /// Makes `stop_container` hang forever, as a wedged daemon would.
    pub fn set_stop_hangs(&self, hangs: bool) {
        self.state().stop_hangs = hangs;
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    pub fn containers(&self) -> Vec<FakeContainer> {
        self.state().containers.values().cloned().collect()
    }

    /// The containers of one task, by their task-definition name.
    pub fn task_containers(&self, task_arn: &str) -> BTreeMap<String, FakeContainer> {
        let st = self.state();
        st.containers
            .values()
            .filter(|c| c.task_arn() == task_arn)
            .map(|c| (c.task_name().to_string(), c.clone()))
            .collect()
    }

    pub fn networks(&self) -> Vec<String> {
        self.state().networks.keys().cloned().collect()
    }

    pub fn volumes(&self) -> Vec<String> {
        self.state().volumes.iter().cloned().collect()
    }

    /// The task cgroups that exist, by task ID, with their limits.
    pub fn task_cgroups(&self) -> BTreeMap<String, TaskLimits> {
        self.state().cgroups.clone()
    }

    /// Makes `ensure_task_cgroup` fail from now on, as on a host whose cgroups are read-only.
    pub fn refuse_task_cgroups(&self, why: &str) {
        self.state().cgroups_refused = Some(why.to_string());
    }

    /// Makes a running container of that task exit now.
    pub fn exit(&self, task_arn: &str, container_name: &str, code: i64) {
        let id = self.task_containers(task_arn).get(container_name).map(|c| c.id.clone());
        if let Some(id) = id {
            self.finish(&id, code);
        }
    }

    /// Changes a container's health now.
    pub fn set_health(&self, task_arn: &str, container_name: &str, health: Health) {
        let id = self.task_containers(task_arn).get(container_name).map(|c| c.id.clone());
        if let Some(id) = id {
            self.change_health(&id, health);
        }
    }

    /// Adds a labelled container directly, as if left behind by an earlier agent.
    pub fn insert_container(&self, spec: ContainerSpec, state: RunState) -> String {
        let mut st = self.state();
        st.next_id += 1;
        let id = format!("fake{:06}", st.next_id);
        let c = FakeContainer {
            id: id.clone(),
            spec,
            state,
            exit_code: None,
            health: None,
            ports: Vec::new(),
            ip: None,
            starts: u32::from(state == RunState::Running),
            script: Script::default(),
        };
        st.containers.insert(id.clone(), c);
        id
    }

    fn emit(&self, id: &str, kind: EventKind) {
        let (labels, cut) = {
            let st = self.state();
            (st.containers.get(id).map(|c| c.spec.labels.clone()).unwrap_or_default(), st.cut)
        };
        // While the daemon is unreachable its events reach nobody.
        if labels.contains_key(labels::MARKER) && !cut {
            // No receivers is fine: nobody is listening yet.
            let _ = self.inner.events.send(RuntimeEvent { container_id: id.to_string(), labels, kind });
        }
    }

    fn finish(&self, id: &str, code: i64) {
        {
            let mut st = self.state();
            let Some(c) = st.containers.get_mut(id) else { return };
            if !c.state.is_live() {
                return;
            }
            c.state = RunState::Exited;
            c.exit_code = Some(code);
        }
        self.emit(id, EventKind::Die { exit_code: Some(code) });
    }

    fn change_health(&self, id: &str, health: Health) {
        {
            let mut st = self.state();
            let Some(c) = st.containers.get_mut(id) else { return };
            if c.state != RunState::Running || c.health.is_none() {
                return;
            }
            c.health = Some(health);
        }
        self.emit(id, EventKind::Health(health));
    }

    fn name_of(&self, id: &str) -> String {
        self.state().containers.get(id).map(|c| c.spec.name.clone()).unwrap_or_else(|| id.to_string())
    }

    fn record(&self, call: Call) {
        self.state().calls.push(call);
    }

    fn resolve(st: &State, id: &str) -> Option<String> {
        if st.containers.contains_key(id) {
            return Some(id.to_string());
        }
        st.containers.values().find(|c| c.spec.name == id).map(|c| c.id.clone())
    }

    fn sigterm(&self, id: &str, timeout: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let on_sigterm = self.state().containers.get(id)?.script.on_sigterm;
        match on_sigterm {
            Some(code) => {
                self.finish(id, code);
                None
            }
            None => {
                // Like Docker: the process ignores SIGTERM, so SIGKILL follows after the grace.
                let this = self.clone();
                let id = id.to_string();
                Some(tokio::spawn(async move {
                    tokio::time::sleep(timeout).await;
                    this.finish(&id, 137);
                }))
            }
        }
    }
}

fn not_found(what: &str) -> RuntimeError {
    RuntimeError::NotFound { what: what.to_string() }
}

fn unavailable(op: &'static str) -> RuntimeError {
    RuntimeError::Unavailable { op, message: "connection refused".into() }
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn image_present(&self, image: &str) -> RuntimeResult<bool> {
        self.gate("image_present")?;
        let r = async { Ok(self.state().images.contains(image)) }.await;
        self.answer("image_present", r)
    }

    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> RuntimeResult<()> {
        self.gate("pull_image")?;
        let r = async {
            self.record(Call::PullImage(image.to_string()));
            let mut st = self.state();
            st.pull_users.push((image.to_string(), auth.map(|a| a.username.clone())));
            if let Some((user, pass)) = st.private.get(image) {
                if auth.is_some_and(|a| &a.username == user && &a.password == pass) {
                    st.images.insert(image.to_string());
                    return Ok(());
                }
                return Err(RuntimeError::ImageUnavailable {
                    image: image.to_string(),
                    message: "unauthorized: authentication required".into(),
                });
            }
            if st.pullable.contains(image) || st.images.contains(image) {
                st.images.insert(image.to_string());
                Ok(())
            } else {
                Err(RuntimeError::ImageUnavailable {
                    image: image.to_string(),
                    message: format!("pull access denied for {image}, repository does not exist"),
                })
            }
        }
        .await;
        self.answer("pull_image", r)
    }

    async fn image_id(&self, image: &str) -> RuntimeResult<Option<String>> {
        self.gate("image_id")?;
        let r = async { Ok(self.state().images.contains(image).then(|| format!("sha256:{:0>64}", image.len()))) }.await;
        self.answer("image_id", r)
    }

    async fn ensure_network(&self, spec: &NetworkSpec) -> RuntimeResult<String> {
        self.gate("ensure_network")?;
        let r = async {
            self.record(Call::EnsureNetwork(spec.name.clone()));
            let mut st = self.state();
            let n = st.networks.len();
            Ok(st.networks.entry(spec.name.clone()).or_insert_with(|| format!("net{n}")).clone())
        }
        .await;
        self.answer("ensure_network", r)
    }

    async fn remove_network(&self, name: &str) -> RuntimeResult<()> {
        self.gate("remove_network")?;
        let r = async {
            self.record(Call::RemoveNetwork(name.to_string()));
            self.state().networks.remove(name);
            Ok(())
        }
        .await;
        self.answer("remove_network", r)
    }

    async fn ensure_volume(&self, spec: &VolumeSpec) -> RuntimeResult<()> {
        self.gate("ensure_volume")?;
        let r = async {
            self.record(Call::EnsureVolume(spec.name.clone()));
            self.state().volumes.insert(spec.name.clone());
            Ok(())
        }
        .await;
        self.answer("ensure_volume", r)
    }

    async fn volume_exists(&self, name: &str) -> RuntimeResult<bool> {
        self.gate("volume_exists")?;
        let r = async { Ok(self.state().volumes.contains(name)) }.await;
        self.answer("volume_exists", r)
    }

    async fn remove_volume(&self, name: &str) -> RuntimeResult<()> {
        self.gate("remove_volume")?;
        let r = async {
            self.record(Call::RemoveVolume(name.to_string()));
            self.state().volumes.remove(name);
            Ok(())
        }
        .await;
        self.answer("remove_volume", r)
    }

    async fn ensure_task_cgroup(&self, task_id: &str, limits: &TaskLimits) -> RuntimeResult<String> {
        self.gate("ensure_task_cgroup")?;
        let r = async {
            self.record(Call::EnsureTaskCgroup(task_id.to_string(), *limits));
            let mut st = self.state();
            if let Some(why) = &st.cgroups_refused {
                return Err(RuntimeError::Failed { op: "ensure_task_cgroup", message: why.clone() });
            }
            st.cgroups.insert(task_id.to_string(), *limits);
            Ok(format!("/flotilla/{task_id}"))
        }
        .await;
        self.answer("ensure_task_cgroup", r)
    }

    async fn remove_task_cgroup(&self, task_id: &str) -> RuntimeResult<()> {
        self.gate("remove_task_cgroup")?;
        let r = async {
            self.record(Call::RemoveTaskCgroup(task_id.to_string()));
            let mut st = self.state();
            // Like the kernel: a cgroup with a live process in it cannot go.
            let parent = format!("/flotilla/{task_id}");
            if st.containers.values().any(|c| c.state.is_live() && c.spec.cgroup_parent.as_deref() == Some(&parent)) {
                return Err(RuntimeError::Failed { op: "remove_task_cgroup", message: format!("{parent} is busy") });
            }
            st.cgroups.remove(task_id);
            Ok(())
        }
        .await;
        self.answer("remove_task_cgroup", r)
    }

    async fn create_container(&self, spec: &ContainerSpec) -> RuntimeResult<String> {
        self.gate("create_container")?;
        let r = async {
            self.record(Call::CreateContainer(spec.name.clone()));
            let mut st = self.state();
            if !st.images.contains(&spec.image) {
                return Err(not_found(&format!("image {}", spec.image)));
            }
            if st.containers.values().any(|c| c.spec.name == spec.name) {
                return Err(RuntimeError::Conflict {
                    op: "create_container",
                    message: format!("the container name {} is already in use", spec.name),
                });
            }
            st.next_id += 1;
            let id = format!("fake{:06}", st.next_id);
            let name = spec.labels.get(labels::CONTAINER).cloned().unwrap_or_default();
            let script = st.scripts.get(&name).cloned().unwrap_or_default();
            let c = FakeContainer {
                id: id.clone(),
                spec: spec.clone(),
                state: RunState::Created,
                exit_code: None,
                health: None,
                ports: Vec::new(),
                ip: None,
                starts: 0,
                script,
            };
            st.containers.insert(id.clone(), c);
            Ok(id)
        }
        .await;
        self.answer("create_container", r)
    }

    async fn start_container(&self, id: &str) -> RuntimeResult<()> {
        self.gate("start_container")?;
        let r = async {
            let name = self.name_of(id);
            self.record(Call::StartContainer(name));
            let script = {
                let mut st = self.state();
                let next_port = st.next_port;
                let ip =
                    if st.networks.values().any(|_| true) { Some(format!("10.99.0.{}", st.next_ip)) } else { None };
                let c = st.containers.get_mut(id).ok_or_else(|| not_found(id))?;
                if let Some(msg) = &c.script.fail_start {
                    c.state = RunState::Exited;
                    c.exit_code = Some(128);
                    return Err(RuntimeError::Failed { op: "start_container", message: msg.clone() });
                }
                if c.state == RunState::Running {
                    return Ok(());
                }
                c.state = RunState::Running;
                c.starts += 1;
                c.health = c.spec.health_check.as_ref().map(|_| c.script.health_on_start);
                let mut used = 0;
                c.ports = c
                    .spec
                    .port_bindings
                    .iter()
                    .map(|p| PortInfo {
                        container_port: p.container_port,
                        protocol: p.protocol.clone(),
                        host_ip: p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
                        host_port: p.host_port.unwrap_or_else(|| {
                            used += 1;
                            next_port + used - 1
                        }),
                    })
                    .collect();
                let joins_network = c.spec.network_mode.as_deref().is_some_and(|m| {
                    !matches!(m, "bridge" | "host" | "none" | "default") && !m.starts_with("container:")
                });
                if joins_network {
                    // A fixed address is the container's own, as Docker gives it.
                    c.ip = c.spec.ipv4_address.clone().or(ip);
                }
                let script = c.script.clone();
                st.next_port += used;
                if joins_network {
                    st.next_ip = st.next_ip.wrapping_add(1);
                }
                script
            };
            self.emit(id, EventKind::Start);
            if let Some((after, code)) = script.exit_after {
                let this = self.clone();
                let id = id.to_string();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    this.finish(&id, code);
                });
            }
            if let Some((after, health)) = script.health_after {
                let this = self.clone();
                let id = id.to_string();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    this.change_health(&id, health);
                });
            }
            Ok(())
        }
        .await;
        self.answer("start_container", r)
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> RuntimeResult<()> {
        self.gate("stop_container")?;
        let r = async {
            self.record(Call::StopContainer(self.name_of(id), timeout));
            if self.state().stop_hangs {
                futures::future::pending::<()>().await;
            }
            let live = self.state().containers.get(id).map(|c| c.state.is_live()).ok_or_else(|| not_found(id))?;
            if live {
                if let Some(kill) = self.sigterm(id, timeout) {
                    let _ = kill.await;
                }
            }
            Ok(())
        }
        .await;
        self.answer("stop_container", r)
    }

    async fn kill_container(&self, id: &str, signal: &str) -> RuntimeResult<()> {
        self.gate("kill_container")?;
        let r = async {
            self.record(Call::KillContainer(self.name_of(id), signal.to_string()));
            if !self.state().containers.contains_key(id) {
                return Err(not_found(id));
            }
            match signal {
                "SIGTERM" | "TERM" => {
                    let on_sigterm = self.state().containers.get(id).and_then(|c| c.script.on_sigterm);
                    if let Some(code) = on_sigterm {
                        self.finish(id, code);
                    }
                }
                _ => self.finish(id, 137),
            }
            Ok(())
        }
        .await;
        self.answer("kill_container", r)
    }

    async fn inspect_container(&self, id: &str) -> RuntimeResult<ContainerInfo> {
        self.gate("inspect_container")?;
        let r = async {
            let st = self.state();
            let id = Self::resolve(&st, id).ok_or_else(|| not_found(id))?;
            let c = &st.containers[&id];
            // In `container:` mode the address is the one of the container whose namespace it joins.
            let ip = match c.spec.network_mode.as_deref().and_then(|m| m.strip_prefix("container:")) {
                Some(other) => Self::resolve(&st, other).and_then(|o| st.containers[&o].ip.clone()),
                None => c.ip.clone(),
            };
            let network = c.spec.network_mode.clone().unwrap_or_else(|| "bridge".into());
            Ok(ContainerInfo {
                id: c.id.clone(),
                name: c.spec.name.clone(),
                image_id: Some(format!("sha256:{:0>64}", c.spec.image.len())),
                labels: c.spec.labels.clone(),
                state: c.state,
                exit_code: c.exit_code,
                oom_killed: false,
                error: None,
                health: c.health,
                ports: c.ports.clone(),
                ip_addresses: ip.map(|ip| BTreeMap::from([(network, ip)])).unwrap_or_default(),
                created_at: Some("2026-01-01T00:00:00Z".to_string()),
                started_at: c.state.is_live().then(|| "2026-01-01T00:00:01Z".to_string()),
            })
        }
        .await;
        self.answer("inspect_container", r)
    }

    async fn wait_container(&self, id: &str) -> RuntimeResult<i64> {
        self.gate("wait_container")?;
        let r = async {
            let mut rx = self.inner.events.subscribe();
            loop {
                {
                    let st = self.state();
                    let c = st.containers.get(id).ok_or_else(|| not_found(id))?;
                    if !c.state.is_live() {
                        return Ok(c.exit_code.unwrap_or(0));
                    }
                }
                if let Err(broadcast::error::RecvError::Closed) = rx.recv().await {
                    return Err(RuntimeError::Failed { op: "wait_container", message: "runtime closed".into() });
                }
            }
        }
        .await;
        self.answer("wait_container", r)
    }

    async fn remove_container(&self, id: &str) -> RuntimeResult<()> {
        self.gate("remove_container")?;
        let r = async {
            let name = self.name_of(id);
            self.record(Call::RemoveContainer(name));
            let removed = {
                let mut st = self.state();
                match Self::resolve(&st, id) {
                    Some(id) => st.containers.remove(&id),
                    None => None,
                }
            };
            if let Some(c) = removed {
                if c.state.is_live() {
                    let _ = self.inner.events.send(RuntimeEvent {
                        container_id: c.id.clone(),
                        labels: c.spec.labels.clone(),
                        kind: EventKind::Die { exit_code: Some(137) },
                    });
                }
            }
            Ok(())
        }
        .await;
        self.answer("remove_container", r)
    }

    async fn list_containers(&self, filter: &[(&str, Option<&str>)]) -> RuntimeResult<Vec<ContainerSummary>> {
        self.gate("list_containers")?;
        let r = async {
            let st = self.state();
            Ok(st
                .containers
                .values()
                .filter(|c| {
                    filter.iter().all(|(k, v)| match (c.spec.labels.get(*k), v) {
                        (Some(have), Some(want)) => have == want,
                        (Some(_), None) => true,
                        (None, _) => false,
                    })
                })
                .map(|c| ContainerSummary {
                    id: c.id.clone(),
                    name: c.spec.name.clone(),
                    labels: c.spec.labels.clone(),
                    state: c.state,
                })
                .collect())
        }
        .await;
        self.answer("list_containers", r)
    }

    fn events(&self) -> BoxStream<'static, RuntimeResult<RuntimeEvent>> {
        if self.gate("events").is_err() {
            return stream::once(async { Err(unavailable("events")) }).boxed();
        }
        let events = BroadcastStream::new(self.inner.events.subscribe()).map(|e| match e {
            Ok(e) => Ok(e),
            // A lagging subscriber gets an error so it resynchronises, as after a reconnect.
            Err(_) => Err(RuntimeError::Failed { op: "events", message: "lagged".into() }),
        });
        // A break (see `break_event_streams`) ends the stream with an error, as a dropped
        // connection to the daemon would.
        let mut breaks = self.inner.breaks.subscribe();
        let broken = stream::once(async move {
            let _ = breaks.changed().await;
            Err(unavailable("events"))
        });
        stream::select(events, broken)
            .scan(false, |ended, item| {
                let out = if *ended { None } else { Some(item) };
                if out.as_ref().is_some_and(|i| matches!(i, Err(RuntimeError::Unavailable { .. }))) {
                    *ended = true;
                }
                futures::future::ready(out)
            })
            .boxed()
    }

    fn logs(&self, id: &str, since_ns: Option<i64>, _follow: bool) -> BoxStream<'static, RuntimeResult<LogChunk>> {
        if self.gate("logs").is_err() {
            return stream::once(async { Err(unavailable("logs")) }).boxed();
        }
        let output = self.state().containers.get(id).map(|c| c.script.output.clone()).unwrap_or_default();
        let chunks: Vec<_> = output
            .into_iter()
            .enumerate()
            .map(|(i, (source, line))| LogChunk { source, timestamp_ns: Some(i as i64 + 1), line })
            .filter(|c| since_ns.is_none_or(|s| c.timestamp_ns.unwrap_or(0) > s))
            .map(Ok)
            .collect();
        stream::iter(chunks).boxed()
    }

    /// A sample in Docker's shape, enough for the metadata endpoint's tests; a stopped container
    /// has none, as with Docker.
    async fn stats_json(&self, id: &str) -> RuntimeResult<serde_json::Value> {
        self.gate("stats_json")?;
        let st = self.state();
        let id = Self::resolve(&st, id).ok_or_else(|| not_found(id))?;
        let c = &st.containers[&id];
        if !c.state.is_live() {
            return Err(RuntimeError::Failed { op: "stats_json", message: "not running".into() });
        }
        Ok(serde_json::json!({
            "id": c.id,
            "name": format!("/{}", c.spec.name),
            "cpu_stats": { "cpu_usage": { "total_usage": 1000 } },
            "memory_stats": { "usage": 4096 },
        }))
    }
}
