//! What the Docker runtime needs for Fargate tasks, which run each in a gVisor sandbox (the OCI
//! runtime `runsc`, registered with the Docker Engine) on a host of the Fargate pool:
//!
//! - [`check`]: whether the engine lists the sandbox runtime and a sandbox actually starts (a
//!   short-lived pause container under it, on Docker's bridge). `flotilla agent --fargate` refuses
//!   to start without both, with [`SandboxError`]'s message saying how to install gVisor,
//!   register it in `/etc/docker/daemon.json` and reload dockerd.
//! - [`storage_quota`]: whether the storage driver can bound a container's writable layer (a
//!   Fargate task's ephemeral storage): overlay2 on xfs (with `pquota`), btrfs, zfs,
//!   devicemapper. fuse-overlayfs, vfs and overlay2 on ext4 cannot.
//! - [`compat`]: a request rewrite for daemons older than Engine API 1.44, which read a
//!   container's fixed MAC address from the top-level `MacAddress` rather than from its endpoint
//!   settings (where bollard puts it) and create a second network of a name unless asked
//!   `CheckDuplicate`.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, SystemInfo};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::{BollardRequest, Docker};
use bytes::Bytes;
use futures::FutureExt;
use http_body_util::{BodyExt, Full};

use super::labels;

/// gVisor's runtime, as Fargate pool hosts register it with Docker.
pub const RUNSC: &str = "runsc";

/// How long the probe sandbox may take to start (gVisor boots its kernel first).
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// The JSON a host's `/etc/docker/daemon.json` needs (merged with what it has).
pub const DAEMON_JSON: &str =
    r#"{"runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=host"]}}}"#;

/// Why this host cannot run sandboxed tasks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error("the Docker Engine did not answer: {0}")]
    Docker(String),
    #[error(
        "the Docker Engine has no `{runtime}` runtime (it has: {have}), so this host cannot run Fargate tasks.\n{}",
        setup_steps()
    )]
    NotRegistered { runtime: String, have: String },
    #[error("a `{runtime}` sandbox did not start: {message}{hint}\n{}", setup_steps())]
    ProbeFailed { runtime: String, message: String, hint: String },
}

/// The steps that make a Docker host a Fargate pool host.
pub fn setup_steps() -> String {
    format!(
        "To set up gVisor on this host:\n  \
         1. install it: apt-get install -y runsc (Debian 12+/Ubuntu 22.04+; elsewhere see https://gvisor.dev/docs/user_guide/install/)\n  \
         2. register it with Docker in /etc/docker/daemon.json (merge with the keys already there):\n       \
         {DAEMON_JSON}\n     \
         \"--network=host\" makes gVisor use the task's own network namespace through the host kernel; \
         keep it on hosts where gVisor's own network stack cannot start (nested VMs)\n  \
         3. reload dockerd (running containers keep running): kill -HUP $(pidof dockerd)\n\
         scripts/setup-gvisor.sh in Flotilla's source does all three."
    )
}

/// What the probe learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxInfo {
    /// The runtime's binary and arguments as the engine has them.
    pub path: String,
    pub args: Vec<String>,
}

/// The engine's registered runtimes: name to (path, args).
fn runtimes(info: &SystemInfo) -> HashMap<String, (String, Vec<String>)> {
    info.runtimes
        .iter()
        .flatten()
        .map(|(name, r)| {
            (name.clone(), (r.path.clone().unwrap_or_default(), r.runtime_args.clone().unwrap_or_default()))
        })
        .collect()
}

/// The engine's entry for `runtime`, without starting anything; `NotRegistered` if it has none.
pub async fn registered(docker: &Docker, runtime: &str) -> Result<SandboxInfo, SandboxError> {
    let info = tokio::time::timeout(Duration::from_secs(10), docker.info())
        .await
        .map_err(|_| SandboxError::Docker("docker info timed out".into()))?
        .map_err(|e| SandboxError::Docker(e.to_string()))?;
    let all = runtimes(&info);
    match all.get(runtime).cloned() {
        Some((path, args)) => Ok(SandboxInfo { path, args }),
        None => {
            let mut have: Vec<String> = all.keys().cloned().collect();
            have.sort();
            Err(SandboxError::NotRegistered { runtime: runtime.to_string(), have: have.join(", ") })
        }
    }
}

/// Checks that the engine lists `runtime` and that a sandbox under it starts: a pause container
/// (`image`, which must be present) on Docker's bridge, removed again at once.
pub async fn check(docker: &Docker, runtime: &str, image: &str) -> Result<SandboxInfo, SandboxError> {
    let found = registered(docker, runtime).await?;
    match tokio::time::timeout(PROBE_TIMEOUT, run_probe(docker, runtime, image)).await {
        Ok(Ok(())) => Ok(found),
        Ok(Err(message)) => {
            let hint = hint(&message, &found.args);
            Err(SandboxError::ProbeFailed { runtime: runtime.to_string(), message, hint })
        }
        Err(_) => Err(SandboxError::ProbeFailed {
            runtime: runtime.to_string(),
            message: format!("no sandbox within {PROBE_TIMEOUT:?}"),
            hint: String::new(),
        }),
    }
}

/// A pointer to the likely cause of a failed probe.
fn hint(message: &str, args: &[String]) -> String {
    let m = message.to_ascii_lowercase();
    let host_network = args.iter().any(|a| a == "--network=host");
    if !host_network && (m.contains("network") || m.contains("netstack") || m.contains("interface")) {
        "\n(gVisor's own network stack could not start on this host: register runsc with \
         \"runtimeArgs\": [\"--network=host\"] as below)"
            .into()
    } else if m.contains("no such file") || m.contains("executable file not found") {
        "\n(the runtime's binary is missing: install runsc)".into()
    } else {
        String::new()
    }
}

async fn run_probe(docker: &Docker, runtime: &str, image: &str) -> Result<(), String> {
    let name = format!("flotilla-sandbox-probe-{}", uuid::Uuid::new_v4().simple());
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        labels: Some(HashMap::from([(labels::MARKER.to_string(), "true".to_string())])),
        host_config: Some(HostConfig {
            runtime: Some(runtime.to_string()),
            network_mode: Some("bridge".into()),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let result = async {
        let created = docker.create_container(Some(options), body).await.map_err(message)?;
        docker.start_container(&created.id, None).await.map_err(message)?;
        let state = docker.inspect_container(&created.id, None).await.map_err(message)?.state.unwrap_or_default();
        if state.running == Some(true) {
            Ok(())
        } else {
            Err(format!("the probe exited at once ({})", state.error.unwrap_or_default()))
        }
    }
    .await;
    let rm = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    let _ = docker.remove_container(&name, Some(rm)).await;
    result
}

fn message(e: bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        e => e.to_string(),
    }
}

/// Whether the engine's storage driver enforces `StorageOpt.size`.
pub fn storage_quota(info: &SystemInfo) -> bool {
    let status: HashMap<String, String> =
        info.driver_status.iter().flatten().filter_map(|kv| Some((kv.first()?.clone(), kv.get(1)?.clone()))).collect();
    match info.driver.as_deref() {
        Some("overlay2") => status.get("Backing Filesystem").is_some_and(|fs| fs == "xfs"),
        Some("btrfs" | "zfs" | "devicemapper") => true,
        _ => false,
    }
}

/// The Engine API version a request path names (`/v1.41/...`), and the rest of the path.
fn versioned(path: &str) -> Option<((u32, u32), &str)> {
    let rest = path.strip_prefix("/v")?;
    let (version, rest) = rest.split_at(rest.find('/')?);
    let (major, minor) = version.split_once('.')?;
    Some(((major.parse().ok()?, minor.parse().ok()?), rest))
}

/// Rewrites a request for a daemon older than API 1.44 (see the module docs). Anything it does
/// not understand passes unchanged.
pub fn compat(req: BollardRequest) -> BollardRequest {
    // bollard's URLs name no version as a rule (the daemon then speaks its own); the old fields
    // are harmless to newer daemons, which take a top-level MAC equal to the endpoint's and
    // ignore CheckDuplicate.
    let path = req.uri().path();
    let (version, rest) = versioned(path).unwrap_or(((0, 0), path));
    if version >= (1, 44) || !matches!(rest, "/containers/create" | "/networks/create") {
        return req;
    }
    let rest = rest.to_string();
    let (parts, body) = req.into_parts();
    let bytes = match body {
        // A full body is already in memory: collecting it never waits.
        http_body_util::Either::Left(full) => match full.collect().now_or_never() {
            Some(Ok(collected)) => collected.to_bytes(),
            _ => Bytes::new(),
        },
        streamed => return BollardRequest::from_parts(parts, streamed),
    };
    let rewritten = rewrite(&rest, &bytes).map(Bytes::from).unwrap_or(bytes);
    BollardRequest::from_parts(parts, http_body_util::Either::Left(Full::new(rewritten)))
}

/// The old-API body for `path`, or `None` to keep it.
fn rewrite(path: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    match path {
        "/containers/create" => {
            let mac = obj
                .get("NetworkingConfig")?
                .get("EndpointsConfig")?
                .as_object()?
                .values()
                .find_map(|e| e.get("MacAddress")?.as_str().map(str::to_string))?;
            obj.insert("MacAddress".into(), serde_json::Value::String(mac));
        }
        "/networks/create" => {
            obj.insert("CheckDuplicate".into(), serde_json::Value::Bool(true));
        }
        _ => return None,
    }
    serde_json::to_vec(&v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_daemons_get_the_mac_address_at_the_top_and_a_duplicate_check() {
        assert_eq!(versioned("/v1.41/containers/create"), Some(((1, 41), "/containers/create")));
        assert_eq!(versioned("/containers/create"), None);
        let body = br#"{"Image":"i","NetworkingConfig":{"EndpointsConfig":{"flotilla-subnet-1":{"MacAddress":"02:00:00:00:00:09"}}}}"#;
        let out: serde_json::Value = serde_json::from_slice(&rewrite("/containers/create", body).unwrap()).unwrap();
        assert_eq!(out["MacAddress"], "02:00:00:00:00:09");
        assert_eq!(rewrite("/containers/create", br#"{"Image":"i"}"#), None);
        let out: serde_json::Value =
            serde_json::from_slice(&rewrite("/networks/create", br#"{"Name":"n"}"#).unwrap()).unwrap();
        assert_eq!(out["CheckDuplicate"], true);

        let req = |path: &str| {
            http::Request::builder()
                .uri(format!("http://localhost{path}"))
                .body(http_body_util::Either::Left(Full::new(Bytes::from_static(body))))
                .unwrap()
        };
        let read = |r: BollardRequest| match r.into_body() {
            http_body_util::Either::Left(f) => f.collect().now_or_never().unwrap().unwrap().to_bytes(),
            _ => panic!("streamed"),
        };
        let top = |b: Bytes| serde_json::from_slice::<serde_json::Value>(&b).unwrap()["MacAddress"].clone();
        assert_eq!(top(read(compat(req("/v1.41/containers/create")))), "02:00:00:00:00:09");
        // bollard names no version: the daemon's own applies, old or new.
        assert_eq!(top(read(compat(req("/containers/create")))), "02:00:00:00:00:09");
        assert_eq!(&read(compat(req("/v1.44/containers/create")))[..], &body[..]);
        assert_eq!(&read(compat(req("/containers/x/start")))[..], &body[..]);
    }

    #[test]
    fn only_some_drivers_bound_a_layer() {
        let info = |driver: &str, backing: &str| SystemInfo {
            driver: Some(driver.into()),
            driver_status: Some(vec![vec!["Backing Filesystem".into(), backing.into()]]),
            ..SystemInfo::default()
        };
        assert!(storage_quota(&info("overlay2", "xfs")));
        assert!(!storage_quota(&info("overlay2", "extfs")));
        assert!(!storage_quota(&info("fuse-overlayfs", "")));
        assert!(storage_quota(&info("btrfs", "btrfs")));
    }

    #[test]
    fn a_failed_probe_points_at_the_network_stack_only_without_host_networking() {
        let msg = "OCI runtime start failed: setting up network: creating interfaces";
        assert!(hint(msg, &[]).contains("--network=host"));
        assert_eq!(hint(msg, &["--network=host".into()]), "");
        let e = SandboxError::NotRegistered { runtime: RUNSC.into(), have: "runc".into() };
        let text = e.to_string();
        for needle in ["apt-get install -y runsc", "daemon.json", "--network=host", "kill -HUP $(pidof dockerd)"] {
            assert!(text.contains(needle), "{needle} missing from: {text}");
        }
    }
}
