//! The host's own registry credentials: the `auths` of a Docker CLI `config.json`
//! (`flotilla agent --docker-config PATH`, by default `$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`), used to pull an image whose container definition names no
//! `repositoryCredentials`, as the ECS agent uses `ECS_ENGINE_AUTH_DATA` in its `dockercfg` form.
//!
//! An entry is matched to an image by registry host: the image's first path component when it
//! looks like a host (has a `.` or a `:`, or is `localhost`), else Docker Hub, whose aliases
//! (`docker.io`, `index.docker.io`, `registry-1.docker.io`, `https://index.docker.io/v1/`) are one
//! registry. Keys may carry a scheme and a path (`https://host/v1/`), which are ignored. An entry
//! gives its credentials as `auth` (base64 of `user:password`) or as `username` and `password`.
//!
//! Credential helpers (`credsStore`, `credHelpers`) are not run: the agent would be executing
//! host programs on behalf of task definitions, and the common helpers need a desktop keyring a
//! server has not got. The agent says so in a warning naming each one when it loads the file; a
//! registry they cover needs an `auths` entry or `repositoryCredentials`. A missing file means no
//! credentials; an unreadable or malformed one is an error, so a typo does not pass unnoticed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use flotilla_protocol::RegistryAuth;
use serde::Deserialize;

/// Docker Hub's name, as `registry_of` reports it.
pub const DOCKER_HUB: &str = "docker.io";
/// The address the Docker CLI sends for Docker Hub in `X-Registry-Auth`.
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

#[derive(Debug, thiserror::Error)]
pub enum RegistryAuthError {
    #[error("docker config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("docker config {path}: not a Docker config.json: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("docker config {path}: auths[\"{registry}\"]: {reason}")]
    Entry { path: PathBuf, registry: String, reason: String },
}

/// The part of `config.json` the agent reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The host's credentials by registry host. `Debug` shows the registries only.
#[derive(Clone, Default)]
pub struct HostCredentials {
    by_registry: BTreeMap<String, RegistryAuth>,
}

impl std::fmt::Debug for HostCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCredentials").field("registries", &self.by_registry.keys().collect::<Vec<_>>()).finish()
    }
}

/// Where the Docker CLI keeps its config: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`; `None` without either variable.
pub fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

impl HostCredentials {
    /// Reads `path`; a file that does not exist gives no credentials.
    pub fn load(path: &Path) -> Result<HostCredentials, RegistryAuthError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(path = %path.display(), "no docker config; no host registry credentials");
                return Ok(HostCredentials::default());
            }
            Err(source) => return Err(RegistryAuthError::Read { path: path.to_path_buf(), source }),
        };
        let creds = HostCredentials::parse(&text, path)?;
        tracing::info!(path = %path.display(), registries = ?creds.by_registry.keys().collect::<Vec<_>>(), "host registry credentials");
        Ok(creds)
    }

    /// Parses a config's text; `path` only names it in errors and warnings.
    pub fn parse(text: &str, path: &Path) -> Result<HostCredentials, RegistryAuthError> {
        let file: ConfigFile = serde_json::from_str(text)
            .map_err(|source| RegistryAuthError::Parse { path: path.to_path_buf(), source })?;
        if let Some(store) = &file.creds_store {
            tracing::warn!(
                path = %path.display(),
                helper = %format!("docker-credential-{store}"),
                "credsStore is set, but the agent does not run credential helpers: only `auths` entries are used"
            );
        }
        for (registry, helper) in &file.cred_helpers {
            tracing::warn!(
                path = %path.display(),
                registry = %registry,
                helper = %format!("docker-credential-{helper}"),
                "credHelpers entry ignored: the agent does not run credential helpers; add an `auths` entry or give \
                 the task definition repositoryCredentials"
            );
        }
        let mut by_registry = BTreeMap::new();
        for (key, entry) in file.auths {
            let entry_err = |reason: &str| RegistryAuthError::Entry {
                path: path.to_path_buf(),
                registry: key.clone(),
                reason: reason.into(),
            };
            let auth = match (&entry.auth, &entry.username, &entry.password) {
                (Some(encoded), _, _) if !encoded.is_empty() => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(encoded.trim())
                        .map_err(|_| entry_err("`auth` is not base64"))?;
                    let text = String::from_utf8(bytes).map_err(|_| entry_err("`auth` is not UTF-8"))?;
                    let (user, pass) =
                        text.split_once(':').ok_or_else(|| entry_err("`auth` is not base64 of `user:password`"))?;
                    RegistryAuth { username: user.to_string(), password: pass.to_string() }
                }
                (_, Some(user), Some(pass)) => RegistryAuth { username: user.clone(), password: pass.clone() },
                // An entry a credential store fills in (`{}`) holds nothing here.
                _ => continue,
            };
            by_registry.insert(normalize_registry(&key), auth);
        }
        Ok(HostCredentials { by_registry })
    }

    /// The credentials for `image`'s registry, if the host has some.
    pub fn for_image(&self, image: &str) -> Option<&RegistryAuth> {
        self.by_registry.get(&registry_of(image))
    }

    pub fn is_empty(&self) -> bool {
        self.by_registry.is_empty()
    }
}

/// A config key or registry name as one host: scheme, path and Docker Hub aliases removed.
pub fn normalize_registry(key: &str) -> String {
    let key = key.trim();
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.to_string(),
        _ => host,
    }
}

/// The registry host an image reference names (`docker.io` for Docker Hub's images).
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            normalize_registry(first)
        }
        _ => DOCKER_HUB.to_string(),
    }
}

/// The `serveraddress` to send with credentials for `image`, as the Docker CLI would.
pub fn server_address(image: &str) -> String {
    match registry_of(image) {
        r if r == DOCKER_HUB => DOCKER_HUB_SERVER.to_string(),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HostCredentials, RegistryAuthError> {
        HostCredentials::parse(text, Path::new("/test/config.json"))
    }

    #[test]
    fn images_name_their_registry() {
        assert_eq!(registry_of("nginx"), "docker.io");
        assert_eq!(registry_of("nginx:1.25"), "docker.io");
        assert_eq!(registry_of("library/nginx:1.25"), "docker.io");
        assert_eq!(registry_of("docker.io/library/nginx"), "docker.io");
        assert_eq!(registry_of("index.docker.io/me/app:v1"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/me/app:v1"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(
            registry_of("123.dkr.ecr.us-east-1.amazonaws.com/app@sha256:ab"),
            "123.dkr.ecr.us-east-1.amazonaws.com"
        );
        assert_eq!(server_address("me/app"), DOCKER_HUB_SERVER);
        assert_eq!(server_address("127.0.0.1:5000/me/app:v1"), "127.0.0.1:5000");
    }

    #[test]
    fn auth_and_username_password_entries_match_by_host() {
        // "alice:pa:ss" — a password may hold a colon.
        let creds = parse(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "YWxpY2U6cGE6c3M="},
                "http://127.0.0.1:5000/v2/": {"username": "bob", "password": "pw"},
                "empty.example.com": {}
            }}"#,
        )
        .expect("parses");
        let hub = creds.for_image("library/nginx:latest").expect("hub entry");
        assert_eq!((hub.username.as_str(), hub.password.as_str()), ("alice", "pa:ss"));
        assert_eq!(creds.for_image("docker.io/me/app"), Some(hub));
        let local = creds.for_image("127.0.0.1:5000/me/app:v1").expect("local entry");
        assert_eq!((local.username.as_str(), local.password.as_str()), ("bob", "pw"));
        assert!(creds.for_image("127.0.0.1:5001/me/app:v1").is_none());
        assert!(creds.for_image("empty.example.com/app").is_none());
        assert!(!format!("{creds:?}").contains("pa:ss"));
    }

    #[test]
    fn helpers_are_not_credentials_and_bad_entries_are_errors() {
        let creds = parse(r#"{"credsStore": "desktop", "credHelpers": {"gcr.io": "gcloud"}, "auths": {"gcr.io": {}}}"#)
            .expect("parses");
        assert!(creds.is_empty());
        let err = parse(r#"{"auths": {"r.example.com": {"auth": "not base64!"}}}"#).expect_err("bad auth");
        assert!(err.to_string().contains("r.example.com") && err.to_string().contains("base64"), "{err}");
        // base64 of "nocolon".
        let err = parse(r#"{"auths": {"r.example.com": {"auth": "bm9jb2xvbg=="}}}"#).expect_err("no colon");
        assert!(err.to_string().contains("user:password"), "{err}");
        assert!(matches!(parse("{not json"), Err(RegistryAuthError::Parse { .. })));
    }

    #[test]
    fn a_missing_file_means_no_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let creds = HostCredentials::load(&dir.path().join("config.json")).expect("missing is fine");
        assert!(creds.is_empty());
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths": {"localhost:1": {"username": "u", "password": "p"}}}"#,
        )
        .expect("write");
        let creds = HostCredentials::load(&dir.path().join("config.json")).expect("loads");
        assert!(creds.for_image("localhost:1/app").is_some());
    }
}
