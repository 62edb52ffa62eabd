//! From a container definition to a runtime [`ContainerSpec`]: overrides, names, labels, command,
//! environment, user, resources, ulimits, health check and the privileged policy.
//!
//! Network and volume settings are added afterwards by their hooks (`network`, `volumes`), so this
//! file holds only what every network mode shares. Resource rules follow the ECS agent: container
//! `cpu` becomes CPU shares (at least 2, Docker's minimum), `memory` the hard limit and
//! `memoryReservation` the soft one. Task-level cpu and memory bound the task as a whole: its
//! containers go under the task's cgroup, which carries them ([`Confinement::Cgroup`], see
//! `crate::cgroup`). Where no task cgroup could be made ([`Confinement::PerContainer`]), each
//! container is capped on its own instead: NanoCpus for the task's cpu, and the task's memory as
//! the hard limit of a container that has none. That keeps any one container within the task's
//! size, though not the sum of them.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_model::{ContainerDefinition, ContainerOverride, HealthCheck};

use crate::cgroup::{Confinement, TaskLimits};
use crate::runtime::{labels, ContainerSpec, HealthCheckSpec, UlimitSpec};

const MIB: i64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("container {container}: privileged containers are not allowed on this container instance")]
    PrivilegedRefused { container: String },
    #[error("container {container}: no image")]
    NoImage { container: String },
    #[error("container {container}: ulimit {name} is invalid")]
    BadUlimit { container: String, name: String },
    #[error("container {container}: {source}")]
    Options { container: String, source: super::options::OptionsError },
}

/// What the spec needs from the task and the agent.
#[derive(Debug, Clone)]
pub struct SpecContext {
    pub cluster_arn: String,
    pub instance_arn: String,
    pub task_arn: String,
    pub task_id: String,
    /// The task's own cpu and memory.
    pub limits: TaskLimits,
    /// How the containers are held to `limits`.
    pub confinement: Confinement,
    pub allow_privileged: bool,
    pub default_stop_timeout: Duration,
    /// A cap on every container's stop grace (`TaskAssignment::stop_timeout_cap_seconds`).
    pub stop_timeout_cap: Option<Duration>,
    pub docker_log_max_bytes: Option<u64>,
    /// The sandbox a Fargate task's containers run in; `None` for EC2 tasks.
    pub sandbox: Option<Sandbox>,
}

/// How a Fargate task's containers are held apart from the host (design §11: a sandbox is a
/// runtime choice, not a second engine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The OCI runtime (`runsc`).
    pub runtime: String,
    /// The task's ephemeral storage, as a bound on each container's writable layer.
    pub storage_bytes: Option<u64>,
}

/// Fargate's ephemeral storage when the task does not say: 20 GiB.
pub const FARGATE_DEFAULT_STORAGE_GIB: u64 = 20;

/// A Fargate task's ephemeral storage in bytes: the overrides', else the definition's
/// `ephemeralStorage.sizeInGiB`, else Fargate's 20 GiB.
pub fn ephemeral_storage_bytes(task: &flotilla_model::Task, def: &flotilla_model::TaskDefinition) -> u64 {
    let over = task.overrides.as_ref().and_then(|o| o.ephemeral_storage.as_ref()).and_then(|e| e.size_in_gi_b);
    let own = task.ephemeral_storage.as_ref().and_then(|e| e.size_in_gi_b);
    let defined = def.ephemeral_storage.as_ref().and_then(|e| e.size_in_gi_b);
    let gib = over.or(own).or(defined).and_then(|g| u64::try_from(g).ok()).filter(|g| *g > 0);
    gib.unwrap_or(FARGATE_DEFAULT_STORAGE_GIB) << 30
}

/// The last segment of an ARN ("arn:...:task/cluster/ID" -> "ID"), or the whole string.
pub fn task_id(task_arn: &str) -> &str {
    task_arn.rsplit('/').next().unwrap_or(task_arn)
}

/// Keeps what Docker accepts in a container name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' }).collect()
}

/// The runtime name of a task's container. Stable, so a retried create finds the first one.
pub fn runtime_name(task_id: &str, container: &str) -> String {
    format!("flotilla-{}-{}", sanitize(task_id), sanitize(container))
}

/// The labels every container of the task carries.
pub fn task_labels(ctx: &SpecContext, container: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MARKER.to_string(), "true".to_string()),
        (labels::CLUSTER.to_string(), ctx.cluster_arn.clone()),
        (labels::INSTANCE.to_string(), ctx.instance_arn.clone()),
        (labels::TASK.to_string(), ctx.task_arn.clone()),
        (labels::CONTAINER.to_string(), container.to_string()),
    ])
}

/// The definition with the task's container overrides applied: command replaced, environment
/// merged by name, cpu and memory replaced.
pub fn resolve(def: &ContainerDefinition, overrides: Option<&ContainerOverride>) -> ContainerDefinition {
    let mut def = def.clone();
    let Some(o) = overrides else { return def };
    if o.command.is_some() {
        def.command = o.command.clone();
    }
    if let Some(env) = &o.environment {
        let mut merged = def.environment.take().unwrap_or_default();
        for kv in env {
            merged.retain(|e| e.name != kv.name);
            merged.push(kv.clone());
        }
        def.environment = Some(merged);
    }
    if o.cpu.is_some() {
        def.cpu = o.cpu;
    }
    if o.memory.is_some() {
        def.memory = o.memory;
    }
    if o.memory_reservation.is_some() {
        def.memory_reservation = o.memory_reservation;
    }
    def
}

/// The container's SIGTERM-to-SIGKILL grace: `stopTimeout`, else the agent default (30 s), and
/// never more than `cap` (a Spot interruption's warning time) when there is one.
pub fn stop_timeout(def: &ContainerDefinition, default: Duration, cap: Option<Duration>) -> Duration {
    let own = match def.stop_timeout {
        Some(s) if s > 0 => Duration::from_secs(s as u64),
        _ => default,
    };
    cap.map_or(own, |cap| own.min(cap))
}

/// The Docker HEALTHCHECK of a definition's healthCheck, with ECS's defaults (30 s interval, 5 s
/// timeout, 3 retries, no start period).
pub fn health_check(hc: &HealthCheck) -> Option<HealthCheckSpec> {
    let test = hc.command.clone().filter(|c| !c.is_empty())?;
    let secs = |v: Option<i32>, d: u64| Duration::from_secs(v.filter(|v| *v >= 0).map_or(d, |v| v as u64));
    Some(HealthCheckSpec {
        test,
        interval: secs(hc.interval, 30),
        timeout: secs(hc.timeout, 5),
        retries: hc.retries.filter(|r| *r >= 0).map_or(3, |r| r as u32),
        start_period: secs(hc.start_period, 0),
    })
}

/// Builds the spec every network mode shares.
pub fn build(ctx: &SpecContext, def: &ContainerDefinition) -> Result<ContainerSpec, SpecError> {
    let name = def.name.clone().unwrap_or_default();
    if def.privileged == Some(true) && !ctx.allow_privileged {
        return Err(SpecError::PrivilegedRefused { container: name });
    }
    let image = def.image.clone().filter(|i| !i.is_empty()).ok_or(SpecError::NoImage { container: name.clone() })?;
    let mut labels = task_labels(ctx, &name);
    for (k, v) in def.docker_labels.iter().flatten() {
        // Ours win: a definition must not be able to disown its container.
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let env = def
        .environment
        .iter()
        .flatten()
        .filter_map(|kv| Some(format!("{}={}", kv.name.as_deref()?, kv.value.as_deref().unwrap_or_default())))
        .collect();
    let ulimits = def
        .ulimits
        .iter()
        .flatten()
        .map(|u| match (&u.name, u.soft_limit, u.hard_limit) {
            (Some(n), Some(soft), Some(hard)) => {
                Ok(UlimitSpec { name: n.clone(), soft: i64::from(soft), hard: i64::from(hard) })
            }
            (n, _, _) => Err(SpecError::BadUlimit { container: name.clone(), name: n.clone().unwrap_or_default() }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cpu_shares = Some(i64::from(def.cpu.unwrap_or(0)).max(2));
    // What the container itself must be capped with, beyond its own limits.
    let (cgroup_parent, cap) = match &ctx.confinement {
        Confinement::Cgroup { parent } => (Some(parent.clone()), TaskLimits::default()),
        Confinement::PerContainer => (None, ctx.limits),
        Confinement::Unbounded => (None, TaskLimits::default()),
    };
    let memory_bytes = def
        .memory
        .filter(|m| *m > 0)
        .map(|m| i64::from(m) * MIB)
        .or_else(|| cap.memory_bytes().and_then(|b| i64::try_from(b).ok()));
    let linux = def.linux_parameters.as_ref();
    let caps = linux.and_then(|l| l.capabilities.as_ref());
    let mut cap_add = caps.and_then(|c| c.add.clone()).unwrap_or_default();
    let mut privileged = def.privileged.unwrap_or(false);
    if ctx.sandbox.is_some() {
        // The policy refused more already; this keeps the spec itself inside the sandbox's rules.
        privileged = false;
        cap_add.retain(|c| super::policy::capability_name(c) == super::policy::FARGATE_CAPABILITY);
    }
    Ok(ContainerSpec {
        name: runtime_name(&ctx.task_id, &name),
        image,
        entrypoint: def.entry_point.clone(),
        command: def.command.clone(),
        env,
        working_dir: def.working_directory.clone(),
        user: def.user.clone(),
        hostname: def.hostname.clone(),
        labels,
        cpu_shares,
        nano_cpus: cap.nano_cpus(),
        cgroup_parent,
        memory_bytes,
        memory_reservation_bytes: def.memory_reservation.filter(|m| *m > 0).map(|m| i64::from(m) * MIB),
        ulimits,
        readonly_rootfs: def.readonly_root_filesystem.unwrap_or(false),
        privileged,
        binds: Vec::new(),
        volumes_from: Vec::new(),
        network_mode: None,
        port_bindings: Vec::new(),
        links: Vec::new(),
        extra_hosts: def
            .extra_hosts
            .iter()
            .flatten()
            .filter_map(|h| Some(format!("{}:{}", h.hostname.as_deref()?, h.ip_address.as_deref()?)))
            .collect(),
        dns_servers: def.dns_servers.clone().unwrap_or_default(),
        dns_search: def.dns_search_domains.clone().unwrap_or_default(),
        health_check: def.health_check.as_ref().and_then(health_check),
        stop_timeout: Some(stop_timeout(def, ctx.default_stop_timeout, ctx.stop_timeout_cap)),
        log_max_bytes: ctx.docker_log_max_bytes,
        cap_add,
        cap_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        init: linux.and_then(|l| l.init_process_enabled),
        shm_size_bytes: linux.and_then(|l| l.shared_memory_size).filter(|s| *s > 0).map(|s| i64::from(s) * MIB),
        runtime: ctx.sandbox.as_ref().map(|s| s.runtime.clone()),
        storage_size_bytes: ctx.sandbox.as_ref().and_then(|s| s.storage_bytes),
        ipv4_address: None,
        mac_address: None,
        options: super::options::build(def).map_err(|source| SpecError::Options { container: name.clone(), source })?,
        gpus: Vec::new(),
        pid_mode: None,
        ipc_mode: None,
        log_driver: def.log_configuration.as_ref().and_then(|l| {
            let name = l.log_driver.as_deref().filter(|d| crate::runtime::is_docker_log_driver(d))?;
            Some(crate::runtime::LogDriverSpec { name: name.into(), options: l.options.clone().unwrap_or_default() })
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::{KeyValuePair, Ulimit};

    fn ctx() -> SpecContext {
        SpecContext {
            cluster_arn: "arn:aws:ecs:local:000000000000:cluster/default".into(),
            instance_arn: "arn:aws:ecs:local:000000000000:container-instance/default/i1".into(),
            task_arn: "arn:aws:ecs:local:000000000000:task/default/abc123".into(),
            task_id: "abc123".into(),
            limits: TaskLimits { cpu_units: Some(512), memory_mib: Some(256) },
            confinement: Confinement::PerContainer,
            allow_privileged: false,
            default_stop_timeout: Duration::from_secs(30),
            stop_timeout_cap: None,
            docker_log_max_bytes: None,
            sandbox: None,
        }
    }

    fn kv(n: &str, v: &str) -> KeyValuePair {
        KeyValuePair { name: Some(n.into()), value: Some(v.into()) }
    }

    #[test]
    fn the_spec_carries_the_definition() {
        let def = ContainerDefinition {
            name: Some("web".into()),
            image: Some("flotilla/workload:latest".into()),
            command: Some(vec!["serve".into()]),
            entry_point: Some(vec!["/workload".into()]),
            environment: Some(vec![kv("A", "1")]),
            working_directory: Some("/tmp".into()),
            user: Some("1000".into()),
            cpu: Some(128),
            memory_reservation: Some(64),
            readonly_root_filesystem: Some(true),
            docker_labels: Some(BTreeMap::from([
                ("team".to_string(), "web".to_string()),
                (labels::TASK.to_string(), "forged".to_string()),
            ])),
            ulimits: Some(vec![Ulimit { name: Some("nofile".into()), soft_limit: Some(1024), hard_limit: Some(2048) }]),
            stop_timeout: Some(5),
            ..Default::default()
        };
        let spec = build(&ctx(), &def).unwrap();
        assert_eq!(spec.name, "flotilla-abc123-web");
        assert_eq!(spec.env, vec!["A=1"]);
        assert_eq!(spec.cpu_shares, Some(128));
        // No task cgroup: the task's 512 units cap the container, half a core.
        assert_eq!((spec.nano_cpus, spec.cgroup_parent.as_deref()), (Some(500_000_000), None));
        // No container hard limit, so the task's memory caps it.
        assert_eq!(spec.memory_bytes, Some(256 * MIB));
        assert_eq!(spec.memory_reservation_bytes, Some(64 * MIB));
        assert!(spec.readonly_rootfs);
        assert_eq!(spec.labels["team"], "web");
        assert_eq!(spec.labels[labels::TASK], ctx().task_arn);
        assert_eq!(spec.labels[labels::CONTAINER], "web");
        assert_eq!(spec.ulimits, vec![UlimitSpec { name: "nofile".into(), soft: 1024, hard: 2048 }]);
        assert_eq!(spec.stop_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn under_a_task_cgroup_only_the_containers_own_limits_apply() {
        let ctx = SpecContext { confinement: Confinement::Cgroup { parent: "/flotilla/abc123".into() }, ..ctx() };
        let own = ContainerDefinition {
            name: Some("a".into()),
            image: Some("i".into()),
            cpu: Some(100),
            memory: Some(64),
            memory_reservation: Some(32),
            ..Default::default()
        };
        let spec = build(&ctx, &own).unwrap();
        assert_eq!(spec.cgroup_parent.as_deref(), Some("/flotilla/abc123"));
        assert_eq!((spec.cpu_shares, spec.nano_cpus), (Some(100), None));
        assert_eq!((spec.memory_bytes, spec.memory_reservation_bytes), (Some(64 * MIB), Some(32 * MIB)));
        // A container without its own memory is bounded by the cgroup alone.
        let bare = ContainerDefinition { name: Some("b".into()), image: Some("i".into()), ..Default::default() };
        let spec = build(&ctx, &bare).unwrap();
        assert_eq!((spec.memory_bytes, spec.nano_cpus, spec.cpu_shares), (None, None, Some(2)));
        // And a task without limits caps nothing.
        let free = SpecContext { limits: TaskLimits::default(), confinement: Confinement::Unbounded, ..ctx };
        let spec = build(&free, &bare).unwrap();
        assert_eq!((spec.memory_bytes, spec.nano_cpus, spec.cgroup_parent), (None, None, None));
    }

    #[test]
    fn per_container_caps_keep_a_containers_own_memory() {
        let def = ContainerDefinition {
            name: Some("a".into()),
            image: Some("i".into()),
            memory: Some(64),
            ..Default::default()
        };
        let spec = build(&ctx(), &def).unwrap();
        assert_eq!((spec.memory_bytes, spec.nano_cpus), (Some(64 * MIB), Some(500_000_000)));
    }

    #[test]
    fn privileged_needs_the_agent_to_allow_it() {
        let def = ContainerDefinition {
            name: Some("p".into()),
            image: Some("i".into()),
            privileged: Some(true),
            ..Default::default()
        };
        assert!(matches!(build(&ctx(), &def), Err(SpecError::PrivilegedRefused { .. })));
        let allowed = SpecContext { allow_privileged: true, ..ctx() };
        assert!(build(&allowed, &def).unwrap().privileged);
    }

    #[test]
    fn a_sandboxed_container_runs_under_the_sandbox_runtime_and_never_privileged() {
        let sandboxed = SpecContext {
            allow_privileged: true,
            sandbox: Some(Sandbox { runtime: "runsc".into(), storage_bytes: Some(20 << 30) }),
            ..ctx()
        };
        let def = ContainerDefinition {
            name: Some("p".into()),
            image: Some("i".into()),
            privileged: Some(true),
            linux_parameters: Some(flotilla_model::LinuxParameters {
                capabilities: Some(flotilla_model::KernelCapabilities {
                    add: Some(vec!["SYS_PTRACE".into(), "CAP_NET_ADMIN".into()]),
                    drop: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = build(&sandboxed, &def).unwrap();
        assert_eq!(spec.runtime.as_deref(), Some("runsc"));
        assert_eq!(spec.storage_size_bytes, Some(20 << 30));
        assert!(!spec.privileged);
        assert_eq!(spec.cap_add, vec!["SYS_PTRACE"]);
        // An EC2 task runs under the daemon's default runtime.
        assert_eq!(build(&SpecContext { allow_privileged: true, ..ctx() }, &def).unwrap().runtime, None);
    }

    #[test]
    fn the_stop_cap_shortens_every_grace_and_lengthens_none() {
        let def = |t: Option<i32>| ContainerDefinition { stop_timeout: t, ..Default::default() };
        let cap = Some(Duration::from_secs(10));
        let default = Duration::from_secs(30);
        assert_eq!(stop_timeout(&def(Some(120)), default, cap), Duration::from_secs(10));
        assert_eq!(stop_timeout(&def(None), default, cap), Duration::from_secs(10));
        assert_eq!(stop_timeout(&def(Some(5)), default, cap), Duration::from_secs(5));
        assert_eq!(stop_timeout(&def(Some(120)), default, None), Duration::from_secs(120));
    }

    #[test]
    fn fargate_storage_defaults_to_20_gib() {
        use flotilla_model::{EphemeralStorage, Task, TaskDefinition, TaskOverride};
        let (task, def) = (Task::default(), TaskDefinition::default());
        assert_eq!(ephemeral_storage_bytes(&task, &def), 20 << 30);
        let def = TaskDefinition { ephemeral_storage: Some(EphemeralStorage { size_in_gi_b: Some(50) }), ..def };
        assert_eq!(ephemeral_storage_bytes(&task, &def), 50 << 30);
        let task = Task {
            overrides: Some(TaskOverride {
                ephemeral_storage: Some(EphemeralStorage { size_in_gi_b: Some(100) }),
                ..Default::default()
            }),
            ..task
        };
        assert_eq!(ephemeral_storage_bytes(&task, &def), 100 << 30);
    }

    #[test]
    fn overrides_replace_command_and_merge_environment() {
        let def = ContainerDefinition {
            name: Some("web".into()),
            command: Some(vec!["a".into()]),
            environment: Some(vec![kv("A", "1"), kv("B", "2")]),
            memory: Some(128),
            ..Default::default()
        };
        let o = ContainerOverride {
            name: Some("web".into()),
            command: Some(vec!["b".into()]),
            environment: Some(vec![kv("B", "3"), kv("C", "4")]),
            memory: Some(256),
            ..Default::default()
        };
        let r = resolve(&def, Some(&o));
        assert_eq!(r.command, Some(vec!["b".to_string()]));
        assert_eq!(r.environment, Some(vec![kv("A", "1"), kv("B", "3"), kv("C", "4")]));
        assert_eq!(r.memory, Some(256));
    }

    #[test]
    fn health_checks_take_ecs_defaults() {
        let hc = HealthCheck { command: Some(vec!["CMD-SHELL".into(), "true".into()]), ..Default::default() };
        let spec = health_check(&hc).unwrap();
        assert_eq!(spec.interval, Duration::from_secs(30));
        assert_eq!(spec.timeout, Duration::from_secs(5));
        assert_eq!(spec.retries, 3);
        assert_eq!(task_id("arn:aws:ecs:r:1:task/c/xyz"), "xyz");
    }
}
