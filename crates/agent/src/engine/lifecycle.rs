//! The work of each task status, as actor methods: PROVISIONING (check the definition, create
//! volumes, provision the network), PENDING (images, containers created, started in dependency
//! order; the pull step is `pull.rs`), ACTIVATING, STOPPING (dependents first, SIGTERM then
//! SIGKILL) and DEPROVISIONING.
//!
//! Each method may run many times for one task (after every event while it waits, after a retry,
//! after an agent restart), so each is written to pick up where the task is: images already
//! present are not pulled again, created containers are not created again, and a name clash on
//! create means an earlier attempt got there first.

use std::collections::BTreeMap;

use super::actor::{Actor, Step, TASK_FAILED_TO_START};
use super::order::{self, Readiness};
use super::spec::{self, SpecContext};
use super::status::{ContainerStatus, DesiredStatus};
use super::{policy, volumes};
use crate::cgroup::{Confinement, TaskLimits};
use crate::network::{NetworkContext, NetworkMode};
use crate::runtime::{labels, ContainerSpec, RuntimeError};

impl Actor {
    fn spec_context(&self) -> SpecContext {
        let limits = self.limits();
        // Undecided (validation before provisioning, or a record from an agent that predates
        // task cgroups and so created its containers with per-container caps).
        let confinement = self.rec.confinement.clone().unwrap_or(if limits.is_empty() {
            Confinement::Unbounded
        } else {
            Confinement::PerContainer
        });
        let config = &self.shared.config;
        SpecContext {
            cluster_arn: config.cluster_arn.clone(),
            instance_arn: config.container_instance_arn.clone(),
            task_arn: self.rec.arn().to_string(),
            task_id: self.rec.task_id().to_string(),
            limits,
            confinement,
            allow_privileged: config.allow_privileged && !self.rec.assignment.is_fargate(),
            default_stop_timeout: config.default_stop_timeout,
            stop_timeout_cap: self.rec.assignment.stop_timeout_cap_seconds.map(std::time::Duration::from_secs),
            docker_log_max_bytes: config.docker_log_max_bytes,
            sandbox: self.sandbox(),
        }
    }

    /// The sandbox of a Fargate task (none for EC2 tasks, and none on an agent without a sandbox
    /// runtime, which refuses Fargate tasks when provisioning them).
    fn sandbox(&self) -> Option<spec::Sandbox> {
        let a = &self.rec.assignment;
        if !a.is_fargate() {
            return None;
        }
        let runtime = self.shared.config.sandbox_runtime.clone()?;
        Some(spec::Sandbox { runtime, storage_bytes: Some(spec::ephemeral_storage_bytes(&a.task, &a.definition)) })
    }

    fn limits(&self) -> TaskLimits {
        TaskLimits::resolve(&self.rec.assignment.task, &self.rec.assignment.definition)
    }

    /// Decides how the task is held to its task-level limits: under a task cgroup made now,
    /// before any of its containers (the awsvpc pause container included), or, where the host
    /// will not let the agent make one, by capping each container.
    ///
    /// A sandboxed task's cgroup starts with its memory limit only: booting a gVisor sandbox
    /// (its kernel, before any of the task's code runs) is CPU work that a quota of a fraction of
    /// a core would stretch by a good part of a second (the platform's work, as Fargate's own
    /// boot is not the task's vCPU). The quota follows as soon as the task's first container has
    /// started (`cap_cpu`), before any other container starts and before the task is RUNNING.
    async fn confine(&mut self) -> Result<(), RuntimeError> {
        if self.rec.confinement.is_some() {
            return Ok(());
        }
        let limits = self.limits();
        let mut at_boot = limits;
        if self.sandbox().is_some() {
            at_boot.cpu_units = None;
        }
        let confinement = if limits.is_empty() {
            Confinement::Unbounded
        } else {
            match self.shared.runtime.ensure_task_cgroup(self.rec.task_id(), &at_boot).await {
                Ok(parent) => Confinement::Cgroup { parent },
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    // The runtime warns once per agent; this is the per-task detail.
                    tracing::debug!(task = %self.rec.arn(), error = %e, "no task cgroup; capping each container");
                    Confinement::PerContainer
                }
            }
        };
        self.rec.confinement = Some(confinement);
        Ok(())
    }

    /// The labels of what the task owns that is not one of its containers.
    fn task_labels(&self) -> BTreeMap<String, String> {
        let mut l = spec::task_labels(&self.spec_context(), "");
        l.remove(labels::CONTAINER);
        l
    }

    /// Runs `f` with the network hooks' context.
    fn net_ctx<'a>(&'a self, labels: &'a BTreeMap<String, String>) -> NetworkContext<'a> {
        let cgroup_parent = match &self.rec.confinement {
            Some(Confinement::Cgroup { parent }) => Some(parent.as_str()),
            _ => None,
        };
        let sandbox_runtime =
            if self.rec.assignment.is_fargate() { self.shared.config.sandbox_runtime.as_deref() } else { None };
        NetworkContext {
            cgroup_parent,
            task_network: self.rec.assignment.network.as_ref(),
            sandbox_runtime,
            single_container: self.defs.len() == 1,
            runtime: &*self.shared.runtime,
            config: &self.shared.config.network,
            ports: &self.shared.ports,
            task_id: self.rec.task_id(),
            task_arn: self.rec.arn(),
            labels,
        }
    }

    /// What the task asks of the host against the instance's opt-ins (`policy`). Following
    /// symbolic links touches the file system, so a task with host paths is checked off the
    /// async runtime; one without needs no file system.
    async fn check_policy(&self) -> Result<(), policy::PolicyError> {
        let host_policy = self.shared.config.host_policy();
        let vols = self.rec.assignment.definition.volumes.clone().unwrap_or_default();
        let defs = self.defs.clone();
        if self.rec.assignment.is_fargate() {
            // A sandbox shares nothing with the host, whatever this agent's opt-ins allow EC2
            // tasks: the Fargate rules replace the host policy.
            if self.shared.config.sandbox_runtime.is_none() {
                return Err(policy::PolicyError::NoSandbox);
            }
            let d = &self.rec.assignment.definition;
            return policy::check_fargate(
                d.network_mode.as_deref(),
                d.pid_mode.as_deref(),
                d.ipc_mode.as_deref(),
                &vols,
                &defs,
            );
        }
        if !vols.iter().any(|v| v.host.as_ref().is_some_and(|h| h.source_path.is_some())) {
            return policy::check(&host_policy, &vols, &defs, &|_| None);
        }
        tokio::task::spawn_blocking(move || policy::check(&host_policy, &vols, &defs, &policy::resolve_on_host))
            .await
            // Refuse rather than run unchecked.
            .unwrap_or(Err(policy::PolicyError::Unchecked))
    }

    /// PROVISIONING: refuse what this agent cannot run, then create volumes and the network.
    pub(super) async fn provision(&mut self) -> Step {
        if let Err(e) = NetworkMode::parse(self.rec.assignment.definition.network_mode.as_deref()) {
            self.fail(Some(TASK_FAILED_TO_START), format!("CannotCreateContainerError: {e}"));
            return Step::Failed;
        }
        if let Err(e) = self.check_policy().await {
            self.fail(Some(TASK_FAILED_TO_START), format!("CannotCreateContainerError: {e}"));
            return Step::Failed;
        }
        let ctx = self.spec_context();
        for def in &self.defs {
            if let Err(e) = spec::build(&ctx, def) {
                self.fail(Some(TASK_FAILED_TO_START), format!("CannotCreateContainerError: {e}"));
                return Step::Failed;
            }
        }
        if let Err(e) = self.confine().await {
            return Step::Retry(e);
        }
        let task_labels = self.task_labels();
        let vols = self.rec.assignment.definition.volumes.clone().unwrap_or_default();
        if let Err(e) = volumes::provision(&*self.shared.runtime, self.rec.task_id(), &task_labels, &vols).await {
            return match e {
                volumes::VolumeError::Runtime { ref source, .. } if source.is_transient() => {
                    Step::Retry(source.clone())
                }
                e => {
                    self.fail(Some(TASK_FAILED_TO_START), format!("CannotCreateVolumeError: {e}"));
                    Step::Failed
                }
            };
        }
        let mut att = self.rec.attachment.clone();
        let result = self.rec.network_mode.provision(&self.net_ctx(&task_labels), &mut att).await;
        self.rec.attachment = att;
        match result {
            Ok(()) => Step::Done,
            Err(crate::network::NetworkError::Runtime { source, .. }) if source.is_transient() => Step::Retry(source),
            Err(e) => {
                self.fail(Some(TASK_FAILED_TO_START), format!("ResourceInitializationError: {e}"));
                Step::Failed
            }
        }
    }

    /// PENDING: images, then containers created, then started as their dependencies allow.
    pub(super) async fn start_containers(&mut self) -> Step {
        if let Err(step) = self.ensure_resources().await {
            return step;
        }
        if !self.rec.images_ready {
            match self.pull_images().await {
                Step::Done => {}
                other => return other,
            }
        }
        match self.create_containers().await {
            Step::Done => {}
            other => return other,
        }
        self.start_ready().await
    }

    /// The full runtime spec of one container: common settings, volumes, network.
    fn container_spec(&mut self, name: &str) -> Result<ContainerSpec, String> {
        let ctx = self.spec_context();
        let def = self.defs.iter().find(|d| d.name.as_deref() == Some(name)).cloned().unwrap_or_default();
        let mut spec = spec::build(&ctx, &def).map_err(|e| e.to_string())?;
        super::gpu::apply(&mut spec, &self.rec.assignment.task, name);
        super::namespaces::apply(&mut spec, &self.rec.assignment.definition);
        let names: BTreeMap<String, String> = self
            .defs
            .iter()
            .filter_map(|d| d.name.clone())
            .map(|n| {
                let rn = spec::runtime_name(&ctx.task_id, &n);
                (n, rn)
            })
            .collect();
        let vols = self.rec.assignment.definition.volumes.clone().unwrap_or_default();
        let task_labels = self.task_labels();
        spec.binds = volumes::binds(&def, &vols, &ctx.task_id, &task_labels).map_err(|e| e.to_string())?;
        if ctx.sandbox.is_some() {
            // Docker volumes only: a bind whose source is a host path never reaches a sandbox.
            spec.binds.retain(|b| !b.starts_with('/'));
        }
        spec.volumes_from = volumes::volumes_from(&def, &names);
        let mut att = self.rec.attachment.clone();
        let result = self.rec.network_mode.configure(&self.net_ctx(&task_labels), &def, &names, &mut att, &mut spec);
        self.rec.attachment = att;
        result.map_err(|e| e.to_string())?;
        if let Some(endpoint) = &self.shared.config.metadata {
            crate::metadata::inject(&mut spec, endpoint);
        }
        super::resources::inject_secrets(&mut spec, self.resources.as_deref(), name);
        Ok(spec)
    }

    async fn create_containers(&mut self) -> Step {
        let names: Vec<String> = self.defs.iter().filter_map(|d| d.name.clone()).collect();
        for name in order::creation_order(&names, &self.deps) {
            let pending = self
                .rec
                .container(&name)
                .is_some_and(|c| c.status == ContainerStatus::Pending && c.runtime_id.is_none());
            if !pending {
                continue;
            }
            let spec = match self.container_spec(&name) {
                Ok(s) => s,
                Err(e) => return self.cannot_create(&name, e),
            };
            let id = match self.shared.runtime.create_container(&spec).await {
                Ok(id) => id,
                // An earlier attempt created it; take it if it is ours.
                Err(RuntimeError::Conflict { .. }) => match self.shared.runtime.inspect_container(&spec.name).await {
                    Ok(info) if info.labels.get(labels::TASK).map(String::as_str) == Some(self.rec.arn()) => info.id,
                    Ok(_) => return self.cannot_create(&name, format!("the name {} is taken", spec.name)),
                    Err(e) if e.is_transient() => return Step::Retry(e),
                    Err(e) => return self.cannot_create(&name, e.to_string()),
                },
                Err(e) if e.is_transient() => return Step::Retry(e),
                Err(RuntimeError::NotFound { .. }) => {
                    let reason = format!("CannotPullContainerError: image {} is not present", spec.image);
                    if let Some(c) = self.rec.container_mut(&name) {
                        c.reason = Some(reason.clone());
                    }
                    self.fail(Some(TASK_FAILED_TO_START), reason);
                    return Step::Failed;
                }
                Err(e) => return self.cannot_create(&name, e.to_string()),
            };
            if let Some(c) = self.rec.container_mut(&name) {
                c.runtime_id = Some(id);
                c.status = ContainerStatus::Created;
            }
        }
        Step::Done
    }

    fn cannot_create(&mut self, name: &str, message: String) -> Step {
        let reason = format!("CannotCreateContainerError: {name}: {message}");
        if let Some(c) = self.rec.container_mut(name) {
            c.reason = Some(reason.clone());
        }
        self.fail(Some(TASK_FAILED_TO_START), reason);
        Step::Failed
    }

    /// Starts every created container whose dependencies hold, until no more can start.
    async fn start_ready(&mut self) -> Step {
        loop {
            let mut progressed = false;
            let names: Vec<String> = self
                .rec
                .containers
                .iter()
                .filter(|c| c.status == ContainerStatus::Created)
                .map(|c| c.name.clone())
                .collect();
            for name in names {
                if self.rec.desired != DesiredStatus::Running {
                    return Step::Failed;
                }
                let deps = self.deps.get(&name).cloned().unwrap_or_default();
                let views = self.rec.views();
                let readiness = match order::readiness(&deps, &views) {
                    Readiness::Waiting => {
                        self.dependency_timeout(&deps, &views).map_or(Readiness::Waiting, Readiness::Blocked)
                    }
                    other => other,
                };
                match readiness {
                    Readiness::Waiting => {}
                    Readiness::Ready => match self.start_one(&name).await {
                        Step::Done => progressed = true,
                        other => return other,
                    },
                    Readiness::Blocked(why) => {
                        let reason = format!("DependencyConditionFailed: {name}: {why}");
                        let essential = self.rec.container(&name).is_some_and(|c| c.essential);
                        if let Some(c) = self.rec.container_mut(&name) {
                            c.status = ContainerStatus::Stopped;
                            c.reason = Some(reason.clone());
                        }
                        if essential {
                            self.fail(Some(TASK_FAILED_TO_START), reason);
                            return Step::Failed;
                        }
                        progressed = true;
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        let waiting =
            self.rec.containers.iter().any(|c| matches!(c.status, ContainerStatus::Pending | ContainerStatus::Created));
        if waiting {
            Step::Blocked
        } else {
            Step::Done
        }
    }

    /// Why a waiting container gives up on its dependencies (`startTimeout`), if it does now.
    fn dependency_timeout(&self, deps: &[order::Dependency], views: &BTreeMap<String, order::View>) -> Option<String> {
        let deadlines = self
            .defs
            .iter()
            .filter_map(|d| {
                let name = d.name.clone()?;
                let started_ms = self.rec.container(&name).and_then(|c| c.last_started_ms);
                Some((name, order::Deadline { started_ms, timeout: order::start_timeout(d) }))
            })
            .collect();
        order::timed_out(deps, views, &deadlines, self.shared.now_ms())
    }

    /// Puts a sandboxed task's CPU quota on its cgroup, which `confine` left without one while
    /// the first sandbox booted. Idempotent; once per actor (an agent restart writes it again).
    async fn cap_cpu(&mut self) -> Result<(), RuntimeError> {
        if self.cpu_capped || self.sandbox().is_none() {
            return Ok(());
        }
        let limits = self.limits();
        if matches!(self.rec.confinement, Some(Confinement::Cgroup { .. })) && limits.cpu_units.is_some() {
            self.shared.runtime.ensure_task_cgroup(self.rec.task_id(), &limits).await?;
        }
        self.cpu_capped = true;
        Ok(())
    }

    async fn start_one(&mut self, name: &str) -> Step {
        let Some(id) = self.rec.container(name).and_then(|c| c.runtime_id.clone()) else { return Step::Done };
        let started = self.shared.runtime.start_container(&id).await;
        if started.is_ok() {
            if let Err(e) = self.cap_cpu().await {
                // Never run on without the quota: stopped, the task is retried or fails to start.
                tracing::warn!(task = %self.rec.arn(), error = %e, "cannot set the task's CPU quota");
                return Step::Retry(e);
            }
        }
        match started {
            Ok(()) => {
                let now = self.shared.now_ms();
                if let Some(c) = self.rec.container_mut(name) {
                    c.last_started_ms = Some(now);
                }
                self.refresh(name).await;
                // A container that exited at once still counts as started.
                if let Some(c) = self.rec.container_mut(name) {
                    if c.status == ContainerStatus::Created {
                        c.status = ContainerStatus::Running;
                        c.started = true;
                    }
                }
                Step::Done
            }
            Err(e) if e.is_transient() => Step::Retry(e),
            Err(e) => {
                let reason = format!("CannotStartContainerError: {name}: {e}");
                let essential = self.rec.container(name).is_some_and(|c| c.essential);
                self.mark_stopped(name, None, false, Some(reason.clone()));
                if essential {
                    // mark_stopped named the exit; a start failure is a failure to start.
                    self.rec.stop_code = Some(TASK_FAILED_TO_START.into());
                    self.rec.stopped_reason = Some(reason);
                    return Step::Failed;
                }
                Step::Done
            }
        }
    }

    /// ACTIVATING: the post-start steps. Bindings and addresses were read when each container
    /// started (`observe`), and load balancer or service discovery registration is the control
    /// plane's; what is left is making sure a sandboxed task's CPU quota is in place (see
    /// `confine`). The status is reported, as ECS does.
    pub(super) async fn activate(&mut self) -> Step {
        // Set when the first container started; again after an agent restart, to be sure.
        match self.cap_cpu().await {
            Ok(()) => Step::Done,
            Err(e) => Step::Retry(e),
        }
    }

    /// STOPPING: containers never started are simply marked stopped; running ones are stopped
    /// dependents first. Done once nothing runs.
    pub(super) async fn stop_containers(&mut self) -> Step {
        for c in self.rec.containers.iter_mut() {
            if matches!(c.status, ContainerStatus::Pending | ContainerStatus::Created) {
                c.status = ContainerStatus::Stopped;
            }
        }
        if let Some(e) = self.stop_unreachable.take() {
            if self.rec.containers.iter().any(|c| c.status == ContainerStatus::Running) {
                return Step::Retry(e);
            }
        }
        let views = self.rec.views();
        let to_stop: Vec<String> = self
            .rec
            .containers
            .iter()
            .filter(|c| c.status == ContainerStatus::Running && !self.kill_at.contains_key(&c.name))
            .filter(|c| order::may_stop(&c.name, &self.deps, &views))
            .map(|c| c.name.clone())
            .collect();
        for name in to_stop {
            self.spawn_stop(&name);
        }
        if self.rec.containers.iter().all(|c| c.status == ContainerStatus::Stopped) {
            Step::Done
        } else {
            Step::Blocked
        }
    }

    /// DEPROVISIONING: tear down the network, then the task cgroup (after the pause container,
    /// which lives in it); the containers stay (stopped) until cleanup, so their exit codes and
    /// logs remain readable. Their own cgroups went with their processes.
    pub(super) async fn deprovision(&mut self) -> Step {
        let task_labels = self.task_labels();
        let mut att = self.rec.attachment.clone();
        let result = self.rec.network_mode.deprovision(&self.net_ctx(&task_labels), &mut att).await;
        self.rec.attachment = att;
        match result {
            Ok(()) => {}
            Err(crate::network::NetworkError::Runtime { source, .. }) if source.is_transient() => {
                return Step::Retry(source)
            }
            Err(e) => {
                tracing::warn!(task = %self.rec.arn(), error = %e, "network teardown failed; the reaper will finish it");
            }
        }
        self.remove_cgroup().await
    }

    /// Removes the task cgroup, if the task has one. Idempotent: cleanup calls it again.
    pub(super) async fn remove_cgroup(&mut self) -> Step {
        if !matches!(self.rec.confinement, Some(Confinement::Cgroup { .. })) {
            return Step::Done;
        }
        match self.shared.runtime.remove_task_cgroup(self.rec.task_id()).await {
            Ok(()) => Step::Done,
            Err(e) if e.is_transient() => Step::Retry(e),
            Err(e) => {
                // A leftover empty cgroup holds no resources; cleanup tries once more.
                tracing::warn!(task = %self.rec.arn(), error = %e, "cannot remove the task cgroup");
                Step::Done
            }
        }
    }
}
