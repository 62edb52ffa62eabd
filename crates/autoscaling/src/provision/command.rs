//! `--provisioner command:PATH`: the operator's executable does the work. Each launch and
//! termination runs PATH once with a JSON document on stdin (the action, the host's id, type,
//! resources, cluster, zone, subnet, address, Spot flag, `ECS_*` settings, the control plane's
//! endpoint and a join token); exit status 0 is success, a launch's stdout may answer
//! `{"handle": "..."}` (kept and given back on terminate), and on failure stderr becomes the
//! activity's StatusMessage. The README has an example script.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use flotilla_hosts::Host;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::{ControlPlane, LaunchSpec, Launched, ProvisionError, Provisioner};

/// How long one run of the command may take.
const TIMEOUT: Duration = Duration::from_secs(600);
/// The most of stderr quoted in a StatusMessage.
const MAX_MESSAGE: usize = 1000;

pub struct Command {
    path: PathBuf,
    cp: ControlPlane,
}

impl Command {
    pub fn new(path: PathBuf, cp: ControlPlane) -> Self {
        Command { path, cp }
    }

    /// The document a launch sends.
    pub fn launch_document(&self, spec: &LaunchSpec, join_token: Option<&str>) -> serde_json::Value {
        json!({
            "action": "launch",
            "instanceId": spec.instance_id,
            "instanceType": spec.instance_type,
            "cpu": spec.cpu,
            "memory": spec.memory,
            "cluster": spec.cluster,
            "availabilityZone": spec.availability_zone,
            "subnetId": spec.subnet_id,
            "privateIpAddress": spec.private_ip_address,
            "spot": spec.spot,
            "ecsConfig": spec.ecs_config.all,
            "endpoint": self.cp.endpoint,
            "region": self.cp.region,
            "joinToken": join_token,
        })
    }

    /// Runs the command with `doc` on stdin; its stdout on success.
    async fn run(&self, doc: &serde_json::Value) -> Result<String, ProvisionError> {
        let shown = self.path.display().to_string();
        let mut child = tokio::process::Command::new(&self.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ProvisionError::Failed(format!("cannot run the provisioner command {shown}: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its input is its own business: only its exit counts.
            let _ = stdin.write_all(doc.to_string().as_bytes()).await;
        }
        let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                ProvisionError::Failed(format!(
                    "the provisioner command {shown} took longer than {} s",
                    TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| ProvisionError::Failed(format!("the provisioner command {shown} failed: {e}")))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let mut msg: String = stderr.trim().chars().take(MAX_MESSAGE).collect();
            if msg.is_empty() {
                msg = "(no output on stderr)".into();
            }
            return Err(ProvisionError::Failed(format!(
                "the provisioner command {shown} exited with {}: {msg}",
                out.status
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The handle a launch's stdout gives, if it gives one.
fn handle_of(stdout: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).ok()?;
    v.get("handle").and_then(|h| h.as_str()).map(String::from)
}

#[async_trait]
impl Provisioner for Command {
    fn name(&self) -> &'static str {
        "command"
    }

    fn wants_join_token(&self) -> bool {
        true
    }

    async fn launch(&self, spec: &LaunchSpec, join_token: Option<&str>) -> Result<Launched, ProvisionError> {
        let stdout = self.run(&self.launch_document(spec, join_token)).await?;
        Ok(Launched { handle: handle_of(&stdout) })
    }

    async fn terminate(&self, host: &Host) -> Result<(), ProvisionError> {
        let doc = json!({
            "action": "terminate",
            "instanceId": host.instance_id,
            "instanceType": host.instance_type,
            "cluster": host.cluster,
            "availabilityZone": host.availability_zone,
            "subnetId": host.subnet_id,
            "privateIpAddress": host.private_ip,
            "spot": host.spot,
            "handle": host.provisioner_handle,
            "endpoint": self.cp.endpoint,
        });
        self.run(&doc).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn cp(dir: &std::path::Path) -> ControlPlane {
        ControlPlane {
            endpoint: "http://127.0.0.1:1".into(),
            region: "us-east-1".into(),
            access_key_id: "a".into(),
            secret_access_key: "s".into(),
            ca_cert: None,
            data_dir: dir.to_path_buf(),
        }
    }

    fn script(dir: &std::path::Path, body: &str) -> PathBuf {
        let p = dir.join("prov.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn spec() -> LaunchSpec {
        LaunchSpec {
            instance_id: "i-0123456789abcdef0".into(),
            instance_type: "m5.large".into(),
            cpu: 2048,
            memory: 7680,
            availability_zone: "us-east-1a".into(),
            subnet_id: "subnet-1".into(),
            private_ip_address: "172.31.0.4".into(),
            spot: true,
            cluster: "demo".into(),
            ecs_config: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_launch_sends_the_document_and_keeps_the_handle() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen.json");
        let p = script(dir.path(), &format!("cat > {}\necho '{{\"handle\": \"vm-7\"}}'", seen.display()));
        let c = Command::new(p, cp(dir.path()));
        let got = c.launch(&spec(), Some("FLTJ1.tok")).await.unwrap();
        assert_eq!(got.handle.as_deref(), Some("vm-7"));
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(seen).unwrap()).unwrap();
        assert_eq!(doc["action"], "launch");
        assert_eq!(doc["instanceId"], "i-0123456789abcdef0");
        assert_eq!(doc["joinToken"], "FLTJ1.tok");
        assert_eq!(doc["spot"], true);
        assert_eq!(doc["memory"], 7680);
    }

    #[tokio::test]
    async fn a_failure_carries_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(dir.path(), "echo 'quota exceeded in us-east-1a' >&2\nexit 3");
        let e = Command::new(p, cp(dir.path())).launch(&spec(), None).await.unwrap_err();
        assert!(e.to_string().contains("quota exceeded in us-east-1a"), "{e}");
        let missing = Command::new("/nonexistent/prov".into(), cp(dir.path())).launch(&spec(), None).await;
        assert!(missing.unwrap_err().to_string().contains("/nonexistent/prov"));
    }
}
