//! `--provisioner simulate`: each host is a hollow agent in this process (the real registration
//! and session protocol, a simulated runtime), registered with the host's instance id, type,
//! zone, resources and custom attributes. A thousand hosts are a thousand small tasks, so
//! capacity logic can be exercised at fleet size on one machine. Hollow hosts do not outlive the
//! server: after a restart none is adopted, and the group loop replaces them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use flotilla_agent::session::{ApiClient, RegistrationConfig};
use flotilla_hosts::Host;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{ControlPlane, LaunchSpec, Launched, ProvisionError, Provisioner};

/// How long a hollow host may take to close its session before it is aborted.
const STOP_GRACE: Duration = Duration::from_secs(5);

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

pub struct Simulate {
    client: ApiClient,
    cp: ControlPlane,
    hosts: Mutex<HashMap<String, Running>>,
}

impl Simulate {
    pub fn new(cp: ControlPlane) -> Result<Self, ProvisionError> {
        let creds = flotilla_sigv4::Credentials::new(&cp.access_key_id, &cp.secret_access_key);
        let client = ApiClient::with_ca(&cp.endpoint, &cp.region, creds, cp.ca_cert.as_deref())
            .map_err(|e| ProvisionError::Failed(format!("the simulated hosts cannot reach the control plane: {e}")))?;
        Ok(Simulate { client, cp, hosts: Mutex::new(HashMap::new()) })
    }

    /// How many hollow hosts run now.
    pub fn running(&self) -> usize {
        lock(&self.hosts).len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The registration of a hollow host launched as `spec`.
pub fn registration(spec: &LaunchSpec, data_dir: std::path::PathBuf) -> RegistrationConfig {
    RegistrationConfig {
        cluster: spec.cluster.clone(),
        data_dir,
        availability_zone: spec.availability_zone.clone(),
        instance_type: spec.instance_type.clone(),
        attributes: spec.ecs_config.instance_attributes.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect(),
        cpu: Some(spec.cpu),
        memory: Some(spec.memory),
        memory_reserved_mib: 0,
        network_modes: vec!["bridge".into(), "host".into(), "awsvpc".into(), "none".into()],
        agent_version: env!("CARGO_PKG_VERSION").into(),
        docker_version: "simulated".into(),
        state_file: format!("{}.json", spec.instance_id),
        ec2_instance_id: Some(spec.instance_id.clone()),
        gpus: Vec::new(),
    }
}

#[async_trait]
impl Provisioner for Simulate {
    fn name(&self) -> &'static str {
        "simulate"
    }

    async fn launch(&self, spec: &LaunchSpec, _token: Option<&str>) -> Result<Launched, ProvisionError> {
        let dir = self.cp.data_dir.join("hosts").join("simulate");
        std::fs::create_dir_all(&dir)
            .map_err(|e| ProvisionError::Failed(format!("cannot create {}: {e}", dir.display())))?;
        let cfg = registration(spec, dir);
        let (stop, stopped) = watch::channel(false);
        let (client, id) = (self.client.clone(), spec.instance_id.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = flotilla_agent::hollow::run_hollow(client, cfg, stopped).await {
                tracing::warn!(instance = %id, error = %e, "a simulated host's agent failed");
            }
        });
        if let Some(old) = lock(&self.hosts).insert(spec.instance_id.clone(), Running { stop, task }) {
            old.task.abort();
        }
        Ok(Launched { handle: Some(format!("simulate:{}", spec.instance_id)) })
    }

    async fn terminate(&self, host: &Host) -> Result<(), ProvisionError> {
        let Some(running) = lock(&self.hosts).remove(&host.instance_id) else { return Ok(()) };
        let _ = running.stop.send(true);
        let abort = running.task.abort_handle();
        if tokio::time::timeout(STOP_GRACE, running.task).await.is_err() {
            abort.abort();
        }
        let state = self.cp.data_dir.join("hosts").join("simulate").join(format!("{}.json", host.instance_id));
        let _ = std::fs::remove_file(state);
        Ok(())
    }

    async fn alive(&self, host: &Host) -> bool {
        lock(&self.hosts).get(&host.instance_id).is_some_and(|r| !r.task.is_finished())
    }

    async fn adopt(&self, host: &Host) -> bool {
        lock(&self.hosts).contains_key(&host.instance_id)
    }
}
