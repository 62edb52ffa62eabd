//! Registering the host as a container instance. The ARN is kept in the agent's data directory,
//! so an agent that restarts re-registers as the same instance and keeps its tasks.

use std::path::{Path, PathBuf};

use flotilla_model::{
    Attribute, ContainerInstance, RegisterContainerInstanceRequest, RegisterContainerInstanceResponse, Resource,
    VersionInfo,
};
use serde::{Deserialize, Serialize};

use super::api_client::{ApiClient, ApiClientError};
use super::host;

/// What the agent offers and how it describes itself.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    pub cluster: String,
    pub data_dir: PathBuf,
    pub availability_zone: String,
    pub instance_type: String,
    /// Custom attributes (`--attribute key=value`).
    pub attributes: Vec<(String, Option<String>)>,
    /// CPU units to offer; the host's (1024 per core) when absent.
    pub cpu: Option<i32>,
    /// Memory in MiB to offer; the host's less `memory_reserved_mib` when absent.
    pub memory: Option<i32>,
    pub memory_reserved_mib: i32,
    /// The network modes this agent can run (`awsvpc` adds ECS's task-eni capability).
    pub network_modes: Vec<String>,
    pub agent_version: String,
    pub docker_version: String,
    /// The name of the file under `data_dir` that remembers the instance ARN.
    pub state_file: String,
    /// The EC2 instance this host is (`--ec2-instance-id`, set by a provisioner): sent in the
    /// instance identity document, whose `instanceId` becomes the container instance's
    /// `ec2InstanceId`, as an ECS agent's is read from EC2's metadata. `None` lets the server
    /// make one up.
    pub ec2_instance_id: Option<String>,
    /// The host's GPUs, by the ids Docker's nvidia device requests take (`--gpus`, else
    /// [`detect_gpus`]): registered as the `GPU` resource, from which tasks are given GPUs.
    pub gpus: Vec<String>,
}

/// Who the agent is once registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentIdentity {
    pub cluster_arn: String,
    pub container_instance_arn: String,
}

impl AgentIdentity {
    fn path(dir: &Path, file: &str) -> PathBuf {
        dir.join(file)
    }

    pub fn load(dir: &Path, file: &str) -> Option<AgentIdentity> {
        serde_json::from_slice(&std::fs::read(Self::path(dir, file)).ok()?).ok()
    }

    pub fn save(&self, dir: &Path, file: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = Self::path(dir, &format!("{file}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("identity encodes"))?;
        std::fs::rename(tmp, Self::path(dir, file))
    }
}

fn int(name: &str, v: i32) -> Resource {
    Resource { name: Some(name.into()), r#type: Some("INTEGER".into()), integer_value: Some(v), ..Default::default() }
}

fn ports(name: &str, ports: &[u16]) -> Resource {
    Resource {
        name: Some(name.into()),
        r#type: Some("STRINGSET".into()),
        string_set_value: Some(ports.iter().map(|p| p.to_string()).collect()),
        ..Default::default()
    }
}

fn attr(name: &str, value: Option<&str>) -> Attribute {
    Attribute { name: Some(name.into()), value: value.map(String::from), ..Default::default() }
}

/// The standard attributes ECS agents advertise, plus the custom ones.
pub fn attributes(cfg: &RegistrationConfig) -> Vec<Attribute> {
    let mut out = vec![
        attr("ecs.os-type", Some("linux")),
        attr("ecs.os-family", Some("LINUX")),
        attr("ecs.cpu-architecture", Some(host::cpu_architecture())),
        attr("ecs.availability-zone", Some(&cfg.availability_zone)),
        attr("ecs.instance-type", Some(&cfg.instance_type)),
        attr("com.amazonaws.ecs.capability.logging-driver.json-file", None),
        attr("com.amazonaws.ecs.capability.logging-driver.none", None),
        // Shipped by the agent itself (`crate::logs::awslogs`), whatever Docker has.
        attr("com.amazonaws.ecs.capability.logging-driver.awslogs", None),
        attr("ecs.capability.container-health-check", None),
        attr("ecs.capability.container-ordering", None),
        attr("ecs.capability.docker-plugin.local", None),
        attr("com.amazonaws.ecs.capability.task-iam-role", None),
        // Secrets and registry credentials, resolved by the control plane (`crate::calls`).
        attr("ecs.capability.secrets.ssm.environment-variables", None),
        attr("ecs.capability.secrets.asm.environment-variables", None),
        attr("ecs.capability.secrets.ssm.bootstrap.log-driver", None),
        attr("ecs.capability.secrets.asm.bootstrap.log-driver", None),
        attr("ecs.capability.private-registry-authentication.secretsmanager", None),
    ];
    for v in 17..=41 {
        out.push(attr(&format!("com.amazonaws.ecs.capability.docker-remote-api.1.{v}"), None));
    }
    for mode in &cfg.network_modes {
        if mode == "awsvpc" {
            out.push(attr("ecs.capability.task-eni", None));
        }
        out.push(attr(&format!("ecs.capability.network-mode.{mode}"), None));
    }
    for name in security_capabilities(&|path| std::fs::read_to_string(path).ok()) {
        out.push(attr(name, None));
    }
    for (k, v) in &cfg.attributes {
        out.retain(|a| a.name.as_deref() != Some(k.as_str()));
        out.push(attr(k, v.as_deref()));
    }
    out
}

/// The capability ECS requires of a host for `apparmor:` security options.
pub const APPARMOR_CAPABILITY: &str = "com.amazonaws.ecs.capability.apparmor";
/// The capability ECS requires of a host for `label:` (SELinux) security options.
pub const SELINUX_CAPABILITY: &str = "com.amazonaws.ecs.capability.selinux";

/// The security modules the host's kernel enforces, as ECS agents advertise them (what
/// `ECS_APPARMOR_CAPABLE` and `ECS_SELINUX_CAPABLE` declare by hand): AppArmor when its module
/// says it is enabled, SELinux when its file system is mounted. `read` reads a file.
pub fn security_capabilities(read: &dyn Fn(&str) -> Option<String>) -> Vec<&'static str> {
    let mut out = Vec::new();
    if read("/sys/module/apparmor/parameters/enabled").is_some_and(|v| v.trim() == "Y") {
        out.push(APPARMOR_CAPABILITY);
    }
    if read("/sys/fs/selinux/enforce").is_some() {
        out.push(SELINUX_CAPABILITY);
    }
    out
}

/// The resources this host offers.
pub fn total_resources(cfg: &RegistrationConfig) -> Vec<Resource> {
    let cpu = cfg.cpu.unwrap_or_else(host::cpu_units);
    let memory = cfg.memory.unwrap_or_else(|| (host::memory_mib() - cfg.memory_reserved_mib).max(0));
    let mut out =
        vec![int("CPU", cpu), int("MEMORY", memory), ports("PORTS", &host::RESERVED_PORTS), ports("PORTS_UDP", &[])];
    if !cfg.gpus.is_empty() {
        out.push(Resource {
            name: Some("GPU".into()),
            r#type: Some("STRINGSET".into()),
            string_set_value: Some(cfg.gpus.clone()),
            ..Default::default()
        });
    }
    out
}

/// The GPUs the NVIDIA driver shows under `dev` (`/dev/nvidia0`, `/dev/nvidia1`, ...), by index,
/// in order; none without the driver. `nvidiactl`, `nvidia-uvm` and the like are not GPUs.
pub fn detect_gpus(dev: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dev) else { return Vec::new() };
    let mut ids: Vec<u32> =
        entries.filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("nvidia")?.parse::<u32>().ok()).collect();
    ids.sort_unstable();
    ids.into_iter().map(|i| i.to_string()).collect()
}

/// What the agent registers its host with: the cluster, the host's resources and attributes, its
/// versions, and the instance it was before (so a restart keeps its instance and tasks).
pub fn registration_request(
    cfg: &RegistrationConfig,
    previous: Option<&AgentIdentity>,
) -> RegisterContainerInstanceRequest {
    RegisterContainerInstanceRequest {
        cluster: Some(cfg.cluster.clone()),
        total_resources: Some(total_resources(cfg)),
        attributes: Some(attributes(cfg)),
        version_info: Some(VersionInfo {
            agent_version: Some(cfg.agent_version.clone()),
            agent_hash: Some(env!("CARGO_PKG_VERSION").into()),
            docker_version: Some(cfg.docker_version.clone()),
        }),
        container_instance_arn: previous.map(|p| p.container_instance_arn.clone()),
        instance_identity_document: cfg.ec2_instance_id.as_ref().map(|id| identity_document(cfg, id)),
        ..Default::default()
    }
}

/// EC2's instance identity document, with what a Flotilla host knows of it.
fn identity_document(cfg: &RegistrationConfig, instance_id: &str) -> String {
    let region = cfg.availability_zone.trim_end_matches(|c: char| c.is_ascii_lowercase());
    serde_json::json!({
        "instanceId": instance_id,
        "instanceType": cfg.instance_type,
        "availabilityZone": cfg.availability_zone,
        "region": region,
    })
    .to_string()
}

/// Registers (or re-registers, keeping the ARN saved from a previous run) and saves the identity.
pub async fn register(
    client: &ApiClient,
    cfg: &RegistrationConfig,
) -> Result<(AgentIdentity, ContainerInstance), ApiClientError> {
    let previous = AgentIdentity::load(&cfg.data_dir, &cfg.state_file);
    let mut req = registration_request(cfg, previous.as_ref());
    let resp: RegisterContainerInstanceResponse = match client.call("RegisterContainerInstance", &req).await {
        // The saved instance was deregistered or belongs elsewhere: join as a new instance.
        Err(ApiClientError::Api { code, .. })
            if previous.is_some() && (code == "ClientException" || code == "InvalidParameterException") =>
        {
            req.container_instance_arn = None;
            client.call("RegisterContainerInstance", &req).await?
        }
        other => other?,
    };
    let ci =
        resp.container_instance.ok_or_else(|| ApiClientError::Decode("no containerInstance in the answer".into()))?;
    let arn = ci.container_instance_arn.clone().unwrap_or_default();
    // The cluster ARN is the instance ARN's scope with the cluster name.
    let cluster_arn = arn
        .split_once(":container-instance/")
        .map(|(scope, rest)| format!("{scope}:cluster/{}", rest.split('/').next().unwrap_or("")))
        .unwrap_or_default();
    let identity = AgentIdentity { cluster_arn, container_instance_arn: arn };
    identity
        .save(&cfg.data_dir, &cfg.state_file)
        .map_err(|e| ApiClientError::Request(format!("saving the agent identity: {e}")))?;
    Ok((identity, ci))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_modules_become_capabilities() {
        let host = |files: &'static [(&'static str, &'static str)]| {
            move |path: &str| files.iter().find(|(p, _)| *p == path).map(|(_, v)| v.to_string())
        };
        assert_eq!(security_capabilities(&host(&[])), Vec::<&str>::new());
        assert_eq!(
            security_capabilities(&host(&[("/sys/module/apparmor/parameters/enabled", "Y\n")])),
            vec![APPARMOR_CAPABILITY]
        );
        assert_eq!(
            security_capabilities(&host(&[("/sys/module/apparmor/parameters/enabled", "N\n")])),
            Vec::<&str>::new()
        );
        assert_eq!(security_capabilities(&host(&[("/sys/fs/selinux/enforce", "1")])), vec![SELINUX_CAPABILITY]);
    }
}

#[cfg(test)]
mod gpu_tests {
    use super::*;

    fn cfg(gpus: &[&str]) -> RegistrationConfig {
        RegistrationConfig {
            cluster: "default".into(),
            data_dir: PathBuf::from("/nonexistent"),
            availability_zone: "a".into(),
            instance_type: "t".into(),
            attributes: vec![],
            cpu: Some(1024),
            memory: Some(1024),
            memory_reserved_mib: 0,
            network_modes: vec![],
            agent_version: "test".into(),
            docker_version: "test".into(),
            state_file: "agent.json".into(),
            ec2_instance_id: None,
            gpus: gpus.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn gpus_are_registered_as_a_stringset_and_only_when_there_are_some() {
        let with = total_resources(&cfg(&["0", "GPU-abc"]));
        let gpu = with.iter().find(|r| r.name.as_deref() == Some("GPU")).expect("a GPU resource");
        assert_eq!(gpu.r#type.as_deref(), Some("STRINGSET"));
        assert_eq!(gpu.string_set_value, Some(vec!["0".to_string(), "GPU-abc".to_string()]));
        assert!(!total_resources(&cfg(&[])).iter().any(|r| r.name.as_deref() == Some("GPU")));
        // Hollow agents register what their fleet's base registers.
        let hollow = crate::hollow::hollow_config(&cfg(&["0"]), 3);
        assert_eq!(hollow.gpus, vec!["0"]);
    }

    #[test]
    fn gpus_are_detected_from_the_driver_device_files() {
        let dev = tempfile::tempdir().unwrap();
        for f in ["nvidia1", "nvidia0", "nvidia10", "nvidiactl", "nvidia-uvm", "null"] {
            std::fs::write(dev.path().join(f), b"").unwrap();
        }
        assert_eq!(detect_gpus(dev.path()), vec!["0", "1", "10"]);
        assert!(detect_gpus(&dev.path().join("missing")).is_empty());
    }
}
