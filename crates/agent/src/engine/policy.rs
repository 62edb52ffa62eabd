//! What a task may ask of the host it runs on: host bind mounts, added kernel capabilities and
//! privileged mode each need the instance's opt-in (`flotilla agent --allow-host-path`,
//! `--allow-capability`, `--allow-privileged`).
//!
//! A task definition is written by whoever may call RegisterTaskDefinition, not by whoever runs
//! the host; without this check any API caller could mount `/` or the Docker socket and own the
//! machine. [`check`] is a pure function of the policy, the task's volumes and container
//! definitions, and a path resolver (symbolic links followed), so it is tested without a host;
//! the engine runs it once per task before anything is created, and a refusal stops the task
//! with a reason that names the flag to pass.
//!
//! Some paths are never mountable unless the agent runs with `--allow-privileged`: the Docker
//! socket (whoever holds it controls every container) and the agent's own data directory (task
//! records and logs of other tasks), nor any directory that contains them.

use std::path::{Component, Path, PathBuf};

use flotilla_model::{ContainerDefinition, Volume};

/// The Docker Engine's sockets, never mountable without `--allow-privileged`.
pub const DOCKER_SOCKETS: [&str; 2] = ["/var/run/docker.sock", "/run/docker.sock"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "container {container}: privileged containers are not allowed on this instance; start the agent with --allow-privileged"
    )]
    Privileged { container: String },
    #[error("volume {volume}: host path {path} is not absolute")]
    RelativeHostPath { volume: String, path: String },
    #[error(
        "volume {volume}: host path {path} is not allowed on this instance; start the agent with --allow-host-path {path}"
    )]
    HostPath { volume: String, path: String },
    #[error(
        "volume {volume}: host path {path} would expose {protected}, which only an agent started with --allow-privileged mounts"
    )]
    Protected { volume: String, path: String, protected: String },
    #[error(
        "container {container}: capability {capability} is not allowed on this instance; start the agent with --allow-capability {capability}"
    )]
    Capability { container: String, capability: String },
    #[error("the host policy check did not complete")]
    Unchecked,
    #[error("{what} is not supported on Fargate")]
    Fargate { what: String },
    #[error(
        "this container instance runs no sandbox runtime, so it cannot run Fargate tasks (Fargate pool hosts run `flotilla agent --fargate`)"
    )]
    NoSandbox,
}

/// The one capability a Fargate task may add, as on AWS Fargate.
pub const FARGATE_CAPABILITY: &str = "SYS_PTRACE";

/// What a Fargate task may not ask for, whatever the agent's opt-ins say: its sandbox shares
/// nothing with the host. Privileged mode, host bind mounts (Docker volumes and scratch space
/// only, so never the Docker socket), devices, capabilities beyond SYS_PTRACE, the host's pid or
/// ipc namespace, and any network mode but awsvpc are refused, as ECS refuses such a definition
/// for FARGATE, rather than run without them and behave otherwise than written.
pub fn check_fargate(
    network_mode: Option<&str>,
    pid_mode: Option<&str>,
    ipc_mode: Option<&str>,
    volumes: &[Volume],
    defs: &[ContainerDefinition],
) -> Result<(), PolicyError> {
    let refuse = |what: String| Err(PolicyError::Fargate { what });
    match network_mode {
        Some("awsvpc") => {}
        other => return refuse(format!("network mode {}", other.unwrap_or("bridge"))),
    }
    if pid_mode == Some("host") || ipc_mode == Some("host") {
        return refuse("the host's pid or ipc namespace (pidMode/ipcMode host)".into());
    }
    for v in volumes {
        if v.host.as_ref().and_then(|h| h.source_path.as_deref()).is_some_and(|p| !p.is_empty()) {
            return refuse(format!("volume {}: a host path (host.sourcePath)", v.name.clone().unwrap_or_default()));
        }
    }
    for def in defs {
        let container = def.name.clone().unwrap_or_default();
        if def.privileged == Some(true) {
            return refuse(format!("container {container}: privileged mode"));
        }
        let linux = def.linux_parameters.as_ref();
        if linux.and_then(|l| l.devices.as_ref()).is_some_and(|d| !d.is_empty()) {
            return refuse(format!("container {container}: devices (linuxParameters.devices)"));
        }
        let added = linux.and_then(|l| l.capabilities.as_ref()).and_then(|c| c.add.as_ref());
        if let Some(cap) = added.into_iter().flatten().map(|c| capability_name(c)).find(|c| c != FARGATE_CAPABILITY) {
            return refuse(format!("container {container}: capability {cap} (only {FARGATE_CAPABILITY} may be added)"));
        }
    }
    Ok(())
}

/// The instance's opt-ins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPolicy {
    /// Allows everything: privileged containers, every host path, every capability.
    pub allow_privileged: bool,
    /// Host paths under one of these (after normalising `..`) may be bind-mounted.
    pub host_paths: Vec<PathBuf>,
    /// Capabilities `linuxParameters.capabilities.add` may name, without `CAP_`, upper case.
    pub capabilities: Vec<String>,
    /// Never mountable (nor any directory holding them) unless privileged.
    pub protected: Vec<PathBuf>,
}

impl HostPolicy {
    /// The policy of an agent whose data lives in `data_dir`.
    pub fn new(allow_privileged: bool, host_paths: &[PathBuf], capabilities: &[String], data_dir: &Path) -> Self {
        let mut protected: Vec<PathBuf> = DOCKER_SOCKETS.iter().map(PathBuf::from).collect();
        protected.push(absolute(data_dir));
        HostPolicy {
            allow_privileged,
            host_paths: host_paths.iter().map(|p| normalize(&absolute(p))).collect(),
            capabilities: capabilities.iter().map(|c| capability_name(c)).collect(),
            protected,
        }
    }
}

/// A capability as Docker and ECS spell it: upper case, without `CAP_`.
pub fn capability_name(c: &str) -> String {
    let upper = c.trim().to_ascii_uppercase();
    upper.strip_prefix("CAP_").map(str::to_string).unwrap_or(upper)
}

/// `p` made absolute against the working directory, lexically normalised.
fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        normalize(p)
    } else {
        normalize(&std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")).join(p))
    }
}

/// Removes `.` and resolves `..` by the path's own components (`/srv/../etc` is `/etc`); a `..`
/// above the root stays at the root, as the kernel does.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(s) => out.push(s),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The path the kernel would mount for `p`: its longest existing ancestor with symbolic links
/// followed, then the rest (Docker creates what is missing). Touches the file system, so the
/// engine runs it off the async runtime.
pub fn resolve_on_host(p: &Path) -> Option<PathBuf> {
    let p = normalize(p);
    let mut rest = Vec::new();
    let mut cur = p.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(cur) {
            let mut out = real;
            out.extend(rest.iter().rev());
            return Some(normalize(&out));
        }
        rest.push(cur.file_name()?.to_os_string());
        cur = cur.parent()?;
    }
}

/// Whether mounting `candidate` would expose `protected`: one holds the other.
fn overlaps(candidate: &Path, protected: &Path) -> bool {
    candidate.starts_with(protected) || protected.starts_with(candidate)
}

/// Checks what the task asks of the host against the policy. `resolve` follows symbolic links
/// ([`resolve_on_host`] on a real host); both the path as written and where it leads must pass.
pub fn check(
    policy: &HostPolicy,
    volumes: &[Volume],
    defs: &[ContainerDefinition],
    resolve: &dyn Fn(&Path) -> Option<PathBuf>,
) -> Result<(), PolicyError> {
    if policy.allow_privileged {
        return Ok(());
    }
    for def in defs {
        let container = def.name.clone().unwrap_or_default();
        if def.privileged == Some(true) {
            return Err(PolicyError::Privileged { container });
        }
        let added = def.linux_parameters.as_ref().and_then(|l| l.capabilities.as_ref()).and_then(|c| c.add.as_ref());
        for cap in added.into_iter().flatten() {
            let capability = capability_name(cap);
            if !policy.capabilities.contains(&capability) {
                return Err(PolicyError::Capability { container, capability });
            }
        }
    }
    let with_resolved = |paths: &[PathBuf]| -> Vec<PathBuf> {
        paths.iter().flat_map(|p| std::iter::once(p.clone()).chain(resolve(p))).collect()
    };
    let prefixes = with_resolved(&policy.host_paths);
    let protected = with_resolved(&policy.protected);
    for v in volumes {
        let Some(path) = v.host.as_ref().and_then(|h| h.source_path.as_deref()).filter(|p| !p.is_empty()) else {
            continue;
        };
        let volume = v.name.clone().unwrap_or_default();
        let written = Path::new(path);
        if !written.is_absolute() {
            return Err(PolicyError::RelativeHostPath { volume, path: path.to_string() });
        }
        let lexical = normalize(written);
        let candidates: Vec<PathBuf> = std::iter::once(lexical.clone()).chain(resolve(&lexical)).collect();
        for c in &candidates {
            if let Some(p) = protected.iter().find(|p| overlaps(c, p)) {
                return Err(PolicyError::Protected {
                    volume,
                    path: path.to_string(),
                    protected: p.display().to_string(),
                });
            }
        }
        if !candidates.iter().all(|c| prefixes.iter().any(|q| c.starts_with(q))) {
            return Err(PolicyError::HostPath { volume, path: lexical.display().to_string() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::{HostVolumeProperties, KernelCapabilities, LinuxParameters};

    fn host(name: &str, path: &str) -> Volume {
        Volume {
            name: Some(name.into()),
            host: Some(HostVolumeProperties { source_path: Some(path.into()) }),
            ..Default::default()
        }
    }

    fn with_caps(caps: &[&str]) -> ContainerDefinition {
        ContainerDefinition {
            name: Some("web".into()),
            linux_parameters: Some(LinuxParameters {
                capabilities: Some(KernelCapabilities {
                    add: Some(caps.iter().map(|c| c.to_string()).collect()),
                    drop: Some(vec!["ALL".into()]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn policy(paths: &[&str], caps: &[&str]) -> HostPolicy {
        let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
        HostPolicy::new(false, &paths, &caps, Path::new("/var/lib/flotilla-agent"))
    }

    fn no_links(_: &Path) -> Option<PathBuf> {
        None
    }

    fn vol(p: &HostPolicy, path: &str) -> Result<(), PolicyError> {
        check(p, &[host("v", path)], &[], &no_links)
    }

    #[test]
    fn host_paths_need_an_allowed_prefix() {
        let p = policy(&["/srv/data"], &[]);
        assert_eq!(vol(&p, "/srv/data"), Ok(()));
        assert_eq!(vol(&p, "/srv/data/a/b"), Ok(()));
        let err = vol(&p, "/etc").unwrap_err();
        assert_eq!(err, PolicyError::HostPath { volume: "v".into(), path: "/etc".into() });
        assert!(err.to_string().contains("start the agent with --allow-host-path /etc"), "{err}");
        // A sibling that shares the prefix's spelling is not under it.
        assert!(matches!(vol(&p, "/srv/database"), Err(PolicyError::HostPath { .. })));
        // `..` is resolved before the comparison.
        assert_eq!(
            vol(&p, "/srv/data/../../etc/shadow"),
            Err(PolicyError::HostPath { volume: "v".into(), path: "/etc/shadow".into() })
        );
        assert!(matches!(vol(&p, "data"), Err(PolicyError::RelativeHostPath { .. })));
        // Nothing allowed: every host path is refused, scratch and Docker volumes are not.
        let none = policy(&[], &[]);
        assert!(matches!(vol(&none, "/srv/data"), Err(PolicyError::HostPath { .. })));
        let scratch = Volume { name: Some("s".into()), ..Default::default() };
        assert_eq!(check(&none, &[scratch], &[], &no_links), Ok(()));
    }

    #[test]
    fn a_link_out_of_an_allowed_prefix_is_refused() {
        let p = policy(&["/srv"], &[]);
        let links = |path: &Path| -> Option<PathBuf> {
            path.strip_prefix("/srv/link").ok().map(|rest| Path::new("/etc").join(rest))
        };
        assert!(matches!(check(&p, &[host("v", "/srv/link/passwd")], &[], &links), Err(PolicyError::HostPath { .. })));
        assert_eq!(check(&p, &[host("v", "/srv/plain")], &[], &links), Ok(()));
    }

    #[test]
    fn the_docker_socket_and_the_data_dir_need_privileged() {
        let p = policy(&["/"], &[]);
        for path in ["/var/run/docker.sock", "/run/docker.sock", "/var/run", "/", "/var/lib/flotilla-agent/tasks"] {
            assert!(matches!(vol(&p, path), Err(PolicyError::Protected { .. })), "{path}");
        }
        // A link to the socket is the socket.
        let links = |path: &Path| (path == Path::new("/tmp/sock")).then(|| PathBuf::from("/run/docker.sock"));
        assert!(matches!(check(&p, &[host("v", "/tmp/sock")], &[], &links), Err(PolicyError::Protected { .. })));
        assert_eq!(vol(&p, "/var/lib/other"), Ok(()));
        let privileged = HostPolicy { allow_privileged: true, ..p };
        assert_eq!(vol(&privileged, "/var/run/docker.sock"), Ok(()));
    }

    #[test]
    fn capabilities_need_the_flag_with_or_without_cap_prefix() {
        let none = policy(&[], &[]);
        let err = check(&none, &[], &[with_caps(&["NET_ADMIN"])], &no_links).unwrap_err();
        assert!(err.to_string().contains("--allow-capability NET_ADMIN"), "{err}");
        let some = policy(&[], &["cap_net_admin", "SYS_TIME"]);
        assert_eq!(check(&some, &[], &[with_caps(&["NET_ADMIN", "CAP_SYS_TIME"])], &no_links), Ok(()));
        assert!(matches!(
            check(&some, &[], &[with_caps(&["SYS_ADMIN"])], &no_links),
            Err(PolicyError::Capability { .. })
        ));
        // Dropping needs no permission.
        assert_eq!(check(&none, &[], &[with_caps(&[])], &no_links), Ok(()));
    }

    #[test]
    fn privileged_allows_everything() {
        let def = ContainerDefinition { name: Some("p".into()), privileged: Some(true), ..Default::default() };
        let strict = policy(&[], &[]);
        assert!(matches!(
            check(&strict, &[], std::slice::from_ref(&def), &no_links),
            Err(PolicyError::Privileged { .. })
        ));
        let open = HostPolicy { allow_privileged: true, ..strict };
        assert_eq!(check(&open, &[host("v", "/etc")], &[def, with_caps(&["SYS_ADMIN"])], &no_links), Ok(()));
    }

    #[test]
    fn fargate_refuses_what_would_reach_the_host_whatever_the_opt_ins() {
        let ok = |defs: &[ContainerDefinition], vols: &[Volume]| check_fargate(Some("awsvpc"), None, None, vols, defs);
        let plain = ContainerDefinition { name: Some("web".into()), ..Default::default() };
        assert_eq!(ok(std::slice::from_ref(&plain), &[]), Ok(()));
        assert_eq!(ok(&[with_caps(&["SYS_PTRACE"])], &[]), Ok(()));
        let scratch = Volume { name: Some("s".into()), ..Default::default() };
        assert_eq!(ok(&[], &[scratch]), Ok(()));
        let refused = |r: Result<(), PolicyError>, needle: &str| {
            let e = r.unwrap_err();
            assert!(matches!(e, PolicyError::Fargate { .. }) && e.to_string().contains(needle), "{e}");
        };
        let privileged = ContainerDefinition { privileged: Some(true), ..plain.clone() };
        refused(ok(&[privileged], &[]), "privileged");
        refused(ok(&[], &[host("sock", "/var/run/docker.sock")]), "host path");
        refused(ok(&[with_caps(&["NET_ADMIN"])], &[]), "NET_ADMIN");
        let devices = ContainerDefinition {
            linux_parameters: Some(LinuxParameters {
                devices: Some(vec![flotilla_model::Device {
                    host_path: Some("/dev/kvm".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..plain.clone()
        };
        refused(ok(&[devices], &[]), "devices");
        refused(check_fargate(Some("host"), None, None, &[], &[]), "network mode host");
        refused(check_fargate(None, None, None, &[], &[]), "network mode bridge");
        refused(check_fargate(Some("awsvpc"), Some("host"), None, &[], &[]), "pid");
    }

    #[test]
    fn paths_normalise_and_links_resolve_on_a_real_host() {
        assert_eq!(normalize(Path::new("/a/./b/../c/")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/../..")), PathBuf::from("/"));
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::os::unix::fs::symlink("/etc", real.join("link")).unwrap();
        assert_eq!(resolve_on_host(&real.join("link/missing/x")), Some(PathBuf::from("/etc/missing/x")));
        assert_eq!(resolve_on_host(&real.join("new")), Some(real.join("new")));
    }
}
