//! A private registry for tests: Debian's `docker-registry` (the CNCF distribution registry)
//! serving plain HTTP on a free 127.0.0.1 port, with htpasswd (bcrypt) basic auth and a storage
//! directory of its own, killed and removed on drop.
//!
//! Docker treats registries on 127.0.0.0/8 as insecure (plain HTTP) without configuration, and
//! the registry accepts basic auth without TLS (it only logs that it should have TLS), so no
//! certificate is needed. [`LocalRegistry::push`] tags an image the engine already has as
//! `127.0.0.1:PORT/name:tag` and pushes it with the registry's credentials in `X-Registry-Auth`;
//! a test then removes the local copy so that the agent's pull really goes to the registry.
//! A missing `docker-registry` or `htpasswd` is an error, never a skip: a test that needs the
//! registry fails without it. The Python twin is `tests/clients/registry_support.py`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let docker = flotilla_images::connect().await?;
//! let image = flotilla_images::ensure_image(&docker, flotilla_images::WORKLOAD_IMAGE).await?;
//! let registry = flotilla_images::registry::LocalRegistry::start("alice", "s3cret").await?;
//! let private = registry.push(&docker, &image.tag, "flotilla-test/workload", "v1").await?;
//! flotilla_images::registry::remove_local(&docker, &private).await?;
//! // A task whose image is `private` now pulls it with alice's credentials.
//! # Ok(()) }
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::{PushImageOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder};
use bollard::Docker;
use futures::StreamExt;

/// The registry program (Debian package `docker-registry`).
pub const REGISTRY_BIN: &str = "docker-registry";
/// The htpasswd program (Debian package `apache2-utils`).
pub const HTPASSWD_BIN: &str = "htpasswd";
/// How long the registry has to answer after it starts.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How many ports to try: another process may take the free port between the probe and the bind.
const START_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot run `{program}` (install it: {package}): {source}")]
    Missing {
        program: &'static str,
        package: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("`htpasswd` failed: {0}")]
    Htpasswd(String),
    #[error("registry files under {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the registry did not answer on {addr} within {timeout:?}; its log: {log}")]
    NotReady { addr: SocketAddr, timeout: Duration, log: String },
    #[error("Docker Engine call `{call}` for {image} failed: {source}")]
    Engine {
        call: &'static str,
        image: String,
        #[source]
        source: DockerError,
    },
    #[error("pushing {image} failed: {message}")]
    Push { image: String, message: String },
}

/// A running registry; dropping it kills the process and removes its storage.
pub struct LocalRegistry {
    addr: SocketAddr,
    username: String,
    password: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for LocalRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRegistry").field("addr", &self.addr).field("username", &self.username).finish()
    }
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io { path: path.to_path_buf(), source }
}

/// The bcrypt htpasswd line for one user, as the registry wants it.
fn htpasswd_line(username: &str, password: &str) -> Result<String, RegistryError> {
    let out = Command::new(HTPASSWD_BIN)
        .args(["-Bbn", username, password])
        .output()
        .map_err(|source| RegistryError::Missing { program: HTPASSWD_BIN, package: "apache2-utils", source })?;
    if !out.status.success() {
        return Err(RegistryError::Htpasswd(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn free_port() -> Result<u16, RegistryError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io_at(Path::new("127.0.0.1:0")))?;
    Ok(l.local_addr().map_err(io_at(Path::new("127.0.0.1:0")))?.port())
}

/// Whether a registry answers `GET /v2/` at `addr` (401 without credentials counts).
fn answers(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && (head.starts_with(b"HTTP/1.0 401") || head.starts_with(b"HTTP/1.1 401"))
}

impl LocalRegistry {
    /// Starts a registry that admits `username` with `password` only.
    pub async fn start(username: &str, password: &str) -> Result<LocalRegistry, RegistryError> {
        let (u, p) = (username.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || LocalRegistry::start_blocking(&u, &p))
            .await
            .map_err(|e| RegistryError::Io { path: PathBuf::from(REGISTRY_BIN), source: std::io::Error::other(e) })?
    }

    fn start_blocking(username: &str, password: &str) -> Result<LocalRegistry, RegistryError> {
        let dir = tempfile::Builder::new().prefix("flotilla-registry-").tempdir().map_err(io_at(Path::new("/tmp")))?;
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, htpasswd_line(username, password)? + "\n").map_err(io_at(&htpasswd))?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let config = dir.path().join("config.yml");
            let text = format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n\
                 http:\n  addr: {addr}\n  secret: flotilla-test-registry\nauth:\n  htpasswd:\n    realm: flotilla\n    \
                 path: {htpasswd}\n",
                storage = dir.path().join("storage").display(),
                htpasswd = htpasswd.display(),
            );
            std::fs::write(&config, text).map_err(io_at(&config))?;
            let log_path = dir.path().join("registry.log");
            let log = std::fs::File::create(&log_path).map_err(io_at(&log_path))?;
            let err = log.try_clone().map_err(io_at(&log_path))?;
            let child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .map_err(|source| RegistryError::Missing {
                    program: REGISTRY_BIN,
                    package: "docker-registry",
                    source,
                })?;
            let mut child = child;
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if answers(addr) {
                    let (username, password) = (username.to_string(), password.to_string());
                    return Ok(LocalRegistry { addr, username, password, child, dir });
                }
                // Exited (its port taken, say): try another port.
                if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            last = Some(RegistryError::NotReady { addr, timeout: START_TIMEOUT, log });
        }
        Err(last.unwrap_or(RegistryError::NotReady {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            timeout: START_TIMEOUT,
            log: String::new(),
        }))
    }

    /// `127.0.0.1:PORT`, the registry part of its images' names.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// The credentials the engine takes for this registry.
    pub fn credentials(&self) -> DockerCredentials {
        DockerCredentials {
            username: Some(self.username.clone()),
            password: Some(self.password.clone()),
            serveraddress: Some(self.host()),
            ..Default::default()
        }
    }

    /// Tags `local_image` as `HOST/name:tag`, pushes it here and returns that reference. The
    /// local tag stays; [`remove_local`] drops it.
    pub async fn push(
        &self,
        docker: &Docker,
        local_image: &str,
        name: &str,
        tag: &str,
    ) -> Result<String, RegistryError> {
        let repo = format!("{}/{name}", self.host());
        let reference = format!("{repo}:{tag}");
        let engine = |call, source| RegistryError::Engine { call, image: reference.clone(), source };
        docker
            .tag_image(local_image, Some(TagImageOptionsBuilder::default().repo(&repo).tag(tag).build()))
            .await
            .map_err(|e| engine("tag_image", e))?;
        let options = PushImageOptionsBuilder::default().tag(tag).build();
        let mut stream = docker.push_image(&repo, Some(options), Some(self.credentials()));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| match e {
                DockerError::DockerStreamError { error } => {
                    RegistryError::Push { image: reference.clone(), message: error }
                }
                e => engine("push_image", e),
            })?;
            if let Some(detail) = info.error_detail {
                let message = detail.message.unwrap_or_else(|| "push failed".into());
                return Err(RegistryError::Push { image: reference.clone(), message });
            }
        }
        Ok(reference)
    }

    /// The registry's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes the engine's copy of `image` (not found is fine), so the next pull goes to the
/// registry.
pub async fn remove_local(docker: &Docker, image: &str) -> Result<(), RegistryError> {
    let options = RemoveImageOptionsBuilder::default().force(true).build();
    match docker.remove_image(image, Some(options), None).await {
        Ok(_) => Ok(()),
        Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
        Err(source) => Err(RegistryError::Engine { call: "remove_image", image: image.to_string(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs `docker-registry` and `htpasswd`; fails without them.
    #[tokio::test]
    async fn registry_starts_and_demands_its_credentials() {
        let registry = LocalRegistry::start("alice", "s3cret").await.expect("registry starts");
        assert!(registry.host().starts_with("127.0.0.1:"));
        assert!(answers(registry.addr()), "answers 401 without credentials");
        let addr = registry.addr();
        drop(registry);
        assert!(!answers(addr), "gone after drop");
    }
}
