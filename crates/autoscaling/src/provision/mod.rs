//! Provisioners launch and terminate hosts behind one small trait, so the group loop decides the
//! same way whether hosts are hollow agents in this process (`simulate`), `flotilla agent`
//! processes on this machine (`local`), or whatever an operator's executable makes of a JSON
//! document (`command:PATH`). With none chosen, every launch fails with a message naming the
//! `--provisioner` flag, so a group's activities tell the operator what to do.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use flotilla_hosts::ecs_config::EcsConfig;
use flotilla_hosts::Host;
use serde::Serialize;

pub mod command;
pub mod local;
pub mod simulate;

/// Everything a provisioner needs to bring one host up and have its agent join.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchSpec {
    /// `i-` and 17 hex digits: the container instance's `ec2InstanceId`.
    pub instance_id: String,
    pub instance_type: String,
    /// CPU units the agent registers (1,024 per vCPU).
    pub cpu: i32,
    /// Memory (MiB) the agent registers, less `ECS_RESERVED_MEMORY`.
    pub memory: i32,
    pub availability_zone: String,
    pub subnet_id: String,
    pub private_ip_address: String,
    pub spot: bool,
    pub cluster: String,
    /// The `ECS_*` settings of the template's user data.
    #[serde(skip)]
    pub ecs_config: EcsConfig,
}

/// What a launch gives back: how to find the host again (kept in `Host.provisioner_handle`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launched {
    pub handle: Option<String>,
}

/// Why a launch or termination failed; the message becomes the activity's StatusMessage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    #[error(
        "No provisioner is configured, so no host can be launched: start the server with \
         --provisioner local, --provisioner simulate or --provisioner command:PATH."
    )]
    NotConfigured,
    #[error("{0}")]
    Failed(String),
}

/// How the control plane is reached by the agents a provisioner starts.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    /// `http://127.0.0.1:4580`.
    pub endpoint: String,
    pub region: String,
    /// The root key pair: hollow agents sign with it; join tokens are minted under its secret.
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The CA that signed the server's certificate, for `https://` endpoints.
    pub ca_cert: Option<PathBuf>,
    /// The server's data directory; provisioners keep their hosts' state under `hosts/`.
    pub data_dir: PathBuf,
}

/// Launches and terminates hosts.
#[async_trait]
pub trait Provisioner: Send + Sync {
    /// Short name for logs (`simulate`, `local`, `command`).
    fn name(&self) -> &'static str;

    /// Whether launches need a join token minted for the host's cluster (real agents do;
    /// hollow agents sign with the root key pair).
    fn wants_join_token(&self) -> bool {
        false
    }

    /// Brings one host up. `join_token` is set when [`Provisioner::wants_join_token`].
    async fn launch(&self, spec: &LaunchSpec, join_token: Option<&str>) -> Result<Launched, ProvisionError>;

    /// Takes the host down. Terminating a host that is already gone succeeds.
    async fn terminate(&self, host: &Host) -> Result<(), ProvisionError>;

    /// Whether a running host is still up (Auto Scaling's EC2 health check): a host that is not
    /// is marked Unhealthy, terminated and replaced. Hosts the provisioner cannot see are
    /// assumed up.
    async fn alive(&self, _host: &Host) -> bool {
        true
    }

    /// After a restart of the server: whether the host is still there (re-adopted). A host that
    /// is not is terminated (so the provisioner cleans up whatever there is of it) and replaced
    /// by the group loop. By default, hosts that were launched are kept, and hosts whose launch
    /// was under way when the server stopped are not: how that launch ended is unknown.
    async fn adopt(&self, host: &Host) -> bool {
        host.lifecycle != flotilla_hosts::Lifecycle::Pending
    }
}

/// The provisioner used when none was chosen: every launch fails, naming the flag.
pub struct Unconfigured;

#[async_trait]
impl Provisioner for Unconfigured {
    fn name(&self) -> &'static str {
        "none"
    }
    async fn launch(&self, _spec: &LaunchSpec, _token: Option<&str>) -> Result<Launched, ProvisionError> {
        Err(ProvisionError::NotConfigured)
    }
    async fn terminate(&self, _host: &Host) -> Result<(), ProvisionError> {
        Ok(())
    }
}

/// The `--provisioner` flag.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProvisionerKind {
    #[default]
    None,
    Local,
    Simulate,
    Command(PathBuf),
}

impl std::str::FromStr for ProvisionerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(ProvisionerKind::Local),
            "simulate" => Ok(ProvisionerKind::Simulate),
            "none" | "" => Ok(ProvisionerKind::None),
            _ => match s.strip_prefix("command:") {
                Some(path) if !path.is_empty() => Ok(ProvisionerKind::Command(PathBuf::from(path))),
                _ => Err(format!(
                    "--provisioner '{s}' is not one of local, simulate or command:PATH (an executable given a JSON document on stdin)"
                )),
            },
        }
    }
}

/// The provisioner `kind` names, reaching the control plane as `cp` says.
pub fn build(kind: &ProvisionerKind, cp: ControlPlane) -> Result<Arc<dyn Provisioner>, ProvisionError> {
    Ok(match kind {
        ProvisionerKind::None => Arc::new(Unconfigured),
        ProvisionerKind::Simulate => Arc::new(simulate::Simulate::new(cp)?),
        ProvisionerKind::Local => Arc::new(local::Local::new(cp)),
        ProvisionerKind::Command(path) => Arc::new(command::Command::new(path.clone(), cp)),
    })
}

/// A new instance id: `i-` and 17 lowercase hex digits.
pub fn new_instance_id() -> String {
    let n: u128 = rand::random::<u128>() & ((1u128 << 68) - 1);
    format!("i-{n:017x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_parses_and_bad_values_name_it() {
        assert_eq!("local".parse::<ProvisionerKind>(), Ok(ProvisionerKind::Local));
        assert_eq!("simulate".parse::<ProvisionerKind>(), Ok(ProvisionerKind::Simulate));
        assert_eq!("command:/bin/x".parse::<ProvisionerKind>(), Ok(ProvisionerKind::Command("/bin/x".into())));
        let e = "ec2".parse::<ProvisionerKind>().unwrap_err();
        assert!(e.contains("--provisioner") && e.contains("command:PATH"), "{e}");
        assert!("command:".parse::<ProvisionerKind>().is_err());
    }

    #[test]
    fn instance_ids_have_17_hex_digits() {
        let id = new_instance_id();
        assert_eq!(id.len(), 19, "{id}");
        assert!(id[2..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn no_provisioner_names_the_flag() {
        assert!(ProvisionError::NotConfigured.to_string().contains("--provisioner"));
    }
}
