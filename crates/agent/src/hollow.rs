//! Hollow agents, as Kubernetes' kubemark has hollow nodes: many real agent sessions from one
//! process, each a registered container instance, with a simulated runtime in which a task's
//! containers are RUNNING as soon as they are asked for and STOPPED as soon as they are told.
//! Placement and services can then be tested and benchmarked at thousands of instances on one
//! machine, through the real API, the real store and the real session protocol.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use flotilla_protocol::{ContainerLifecycle, ContainerReport, ManifestEntry, TaskAssignment, TaskReport, TaskStatus};
use tokio::sync::mpsc;

use crate::engine::policy::{self, HostPolicy};
use crate::session::{
    register, run_session, ApiClient, ApiClientError, RegistrationConfig, SessionConfig, SessionEvent,
};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The simulated runtime of one hollow instance: what it runs, and the reports it makes.
#[derive(Debug, Default)]
pub struct SimulatedRuntime {
    /// Task ARN -> container names, for tasks that are running.
    running: HashMap<String, Vec<String>>,
    seq: u64,
    /// What tasks may ask of the host, as a real agent's flags say; `None` allows everything.
    /// Checked by the paths as written: a hollow instance has no host to follow links on.
    policy: Option<HostPolicy>,
}

impl SimulatedRuntime {
    /// A runtime that refuses what `policy` does, as a real agent would.
    pub fn with_policy(policy: HostPolicy) -> Self {
        SimulatedRuntime { policy: Some(policy), ..Self::default() }
    }

    /// Why the task may not run here, if it may not.
    fn refusal(&self, a: &TaskAssignment) -> Option<String> {
        let p = self.policy.as_ref()?;
        let volumes = a.definition.volumes.as_deref().unwrap_or_default();
        let defs = a.definition.container_definitions.as_deref().unwrap_or_default();
        policy::check(p, volumes, defs, &|_| None).err().map(|e| format!("CannotCreateContainerError: {e}"))
    }

    fn report(&mut self, task_arn: &str, status: TaskStatus, containers: &[String]) -> TaskReport {
        self.seq += 1;
        let now = now_ms();
        let stopped = status == TaskStatus::Stopped;
        let container_status = if stopped { ContainerLifecycle::Stopped } else { ContainerLifecycle::Running };
        TaskReport {
            task_arn: task_arn.to_string(),
            status,
            seq: self.seq,
            containers: containers
                .iter()
                .map(|n| ContainerReport {
                    name: n.clone(),
                    status: container_status,
                    runtime_id: Some(format!("hollow-{n}")),
                    exit_code: stopped.then_some(0),
                    ..Default::default()
                })
                .collect(),
            pull_started_at_ms: Some(now),
            pull_stopped_at_ms: Some(now),
            started_at_ms: (status == TaskStatus::Running).then_some(now),
            execution_stopped_at_ms: stopped.then_some(now),
            stopped_at_ms: stopped.then_some(now),
            ..Default::default()
        }
    }

    /// Applies assignments; returns the reports they cause.
    pub fn assign(&mut self, tasks: &[TaskAssignment]) -> Vec<TaskReport> {
        let mut out = Vec::new();
        for a in tasks {
            let arn = a.arn().to_string();
            let names: Vec<String> =
                a.definition.container_definitions.iter().flatten().filter_map(|c| c.name.clone()).collect();
            match (a.desired_status(), self.running.contains_key(&arn)) {
                ("RUNNING", false) => {
                    if let Some(reason) = self.refusal(a) {
                        let mut r = self.report(&arn, TaskStatus::Stopped, &names);
                        r.stop_code = Some("TaskFailedToStart".into());
                        r.stopped_reason = Some(reason);
                        r.started_at_ms = None;
                        r.containers.iter_mut().for_each(|c| (c.exit_code, c.runtime_id) = (None, None));
                        out.push(r);
                        continue;
                    }
                    let mut r = self.report(&arn, TaskStatus::Running, &names);
                    // A task given its own interface is at its address, as a real agent reports.
                    r.private_ipv4 = a.network.as_ref().map(|n| n.ipv4_address.clone());
                    out.push(r);
                    self.running.insert(arn, names);
                }
                ("STOPPED", true) => {
                    self.running.remove(&arn);
                    out.push(self.report(&arn, TaskStatus::Stopped, &names));
                }
                ("STOPPED", false) if a.task.last_status.as_deref() != Some("STOPPED") => {
                    out.push(self.report(&arn, TaskStatus::Stopped, &names));
                }
                _ => {}
            }
        }
        out
    }

    /// Stops what the manifest no longer lists.
    pub fn reconcile(&mut self, manifest: &[ManifestEntry]) -> Vec<TaskReport> {
        let listed: std::collections::HashSet<&str> = manifest.iter().map(|m| m.task_arn.as_str()).collect();
        let gone: Vec<String> = self.running.keys().filter(|k| !listed.contains(k.as_str())).cloned().collect();
        gone.into_iter()
            .map(|arn| {
                let names = self.running.remove(&arn).unwrap_or_default();
                self.report(&arn, TaskStatus::Stopped, &names)
            })
            .collect()
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }
}

/// Runs one hollow agent until `shutdown` fires: registers, then serves its session, moving to
/// another of `client`'s servers when its own goes away (as the same instance).
pub async fn run_hollow(
    client: ApiClient,
    cfg: RegistrationConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ApiClientError> {
    run_hollow_with_policy(client, cfg, None, shutdown).await
}

/// [`run_hollow`] refusing, as a real agent with the same flags would, what `policy` refuses.
pub async fn run_hollow_with_policy(
    client: ApiClient,
    cfg: RegistrationConfig,
    policy: Option<HostPolicy>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ApiClientError> {
    // Each hollow agent is an agent of its own: it starts at a server of its own (a fleet
    // spreads over the control plane's servers) and moves without the others.
    let client = client.detached();
    loop {
        let (identity, _) = register(&client, &cfg).await?;
        let (ev_tx, mut events) = mpsc::unbounded_channel();
        let (report_tx, reports) = mpsc::unbounded_channel();
        let session = tokio::spawn(run_session(client.clone(), identity, SessionConfig::default(), ev_tx, reports));
        let mut runtime = SimulatedRuntime { policy: policy.clone(), ..SimulatedRuntime::default() };
        let rejected = loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(SessionEvent::Assign(tasks)) => runtime.assign(&tasks).into_iter().for_each(|r| { let _ = report_tx.send(r); }),
                    Some(SessionEvent::Manifest(m)) => runtime.reconcile(&m).into_iter().for_each(|r| { let _ = report_tx.send(r); }),
                    Some(SessionEvent::Rejected(_)) => break true,
                    Some(_) => {}
                    None => break false,
                },
                _ = shutdown.changed() => break false,
            }
        };
        drop(report_tx);
        let _ = session.await;
        if !rejected {
            return Ok(());
        }
        // The server forgot this instance: join again as a new one.
        let _ = tokio::fs::remove_file(cfg.data_dir.join(&cfg.state_file)).await;
    }
}

/// The registration of hollow agent `i` of a fleet: its own identity file, the shared settings.
pub fn hollow_config(base: &RegistrationConfig, i: usize) -> RegistrationConfig {
    RegistrationConfig {
        state_file: format!("hollow-{i:05}.json"),
        data_dir: base.data_dir.join("hollow"),
        ..base.clone()
    }
}

/// Where hollow agents keep their identities.
pub fn hollow_dir(base: &RegistrationConfig) -> PathBuf {
    base.data_dir.join("hollow")
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::{ContainerDefinition, Task, TaskDefinition};

    fn assignment(arn: &str, desired: &str) -> TaskAssignment {
        TaskAssignment {
            task: Task { task_arn: Some(arn.into()), desired_status: Some(desired.into()), ..Default::default() },
            definition: TaskDefinition {
                container_definitions: Some(vec![ContainerDefinition {
                    name: Some("web".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            reserved_ports: vec![],
            network: None,
            stop_timeout_cap_seconds: None,
        }
    }

    #[test]
    fn runs_and_stops_on_request_idempotently() {
        let mut rt = SimulatedRuntime::default();
        let r = rt.assign(&[assignment("t1", "RUNNING")]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, TaskStatus::Running);
        assert_eq!(r[0].containers[0].status, ContainerLifecycle::Running);
        assert!(rt.assign(&[assignment("t1", "RUNNING")]).is_empty(), "a repeated payload changes nothing");
        let r = rt.assign(&[assignment("t1", "STOPPED")]);
        assert_eq!(r[0].status, TaskStatus::Stopped);
        assert!(r[0].seq > 1);
        assert_eq!(rt.running(), 0);
    }

    #[test]
    fn manifest_stops_what_it_omits() {
        let mut rt = SimulatedRuntime::default();
        rt.assign(&[assignment("a", "RUNNING"), assignment("b", "RUNNING")]);
        let r = rt.reconcile(&[ManifestEntry { task_arn: "a".into(), desired_status: "RUNNING".into() }]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].task_arn, "b");
        assert_eq!(rt.running(), 1);
    }

    #[test]
    fn a_policy_refuses_what_a_real_agent_would() {
        let strict = HostPolicy::new(false, &[], &[], std::path::Path::new("/var/lib/hollow"));
        let mut rt = SimulatedRuntime::with_policy(strict);
        let mut a = assignment("t1", "RUNNING");
        a.definition.volumes = Some(vec![flotilla_model::Volume {
            name: Some("etc".into()),
            host: Some(flotilla_model::HostVolumeProperties { source_path: Some("/etc".into()) }),
            ..Default::default()
        }]);
        let r = rt.assign(std::slice::from_ref(&a));
        assert_eq!((r[0].status.as_str(), r[0].stop_code.as_deref()), ("STOPPED", Some("TaskFailedToStart")));
        assert!(r[0].stopped_reason.as_deref().unwrap().contains("--allow-host-path /etc"), "{r:?}");
        assert_eq!(rt.running(), 0);
        // Without a policy (the default) it runs, as before.
        assert_eq!(SimulatedRuntime::default().assign(&[a])[0].status, "RUNNING");
    }
}
