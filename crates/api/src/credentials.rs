//! The root key pair that signs API requests: from the environment, or generated on first start
//! and kept in the data directory, readable by its owner only.

use std::io::Write;
use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};

pub const ACCESS_KEY_ENV: &str = "FLOTILLA_ACCESS_KEY_ID";
pub const SECRET_KEY_ENV: &str = "FLOTILLA_SECRET_ACCESS_KEY";
const FILE_NAME: &str = "credentials.json";

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for RootCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCredentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// Where the credentials came from, so the server can say so at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    Environment,
    Generated,
    DataDir,
}

impl RootCredentials {
    pub fn generate() -> Self {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        const B64ISH: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut rng = rand::rngs::OsRng;
        let akid: String = (0..16).map(|_| ALNUM[rng.gen_range(0..ALNUM.len())] as char).collect();
        let secret: String = (0..40).map(|_| B64ISH[rng.gen_range(0..B64ISH.len())] as char).collect();
        RootCredentials { access_key_id: format!("FLTA{akid}"), secret_access_key: secret }
    }

    /// The environment's pair if both variables are set; else the data dir's; else a new pair,
    /// saved there with mode 0600.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<(Self, CredentialSource)> {
        if let (Ok(a), Ok(s)) = (std::env::var(ACCESS_KEY_ENV), std::env::var(SECRET_KEY_ENV)) {
            if !a.is_empty() && !s.is_empty() {
                return Ok((RootCredentials { access_key_id: a, secret_access_key: s }, CredentialSource::Environment));
            }
        }
        let path = data_dir.join(FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => {
                check_private(&path)?;
                let creds = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
                })?;
                Ok((creds, CredentialSource::DataDir))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let creds = Self::generate();
                write_private(&path, &serde_json::to_vec_pretty(&creds).expect("serializes"))?;
                Ok((creds, CredentialSource::Generated))
            }
            Err(e) => Err(e),
        }
    }
}

/// Refuses a key file that group or others can read: whoever can read it holds the root key.
fn check_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} holds the root key pair but its mode is {:o}, so other users can read it; run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        // The test must not see a developer's own variables.
        if std::env::var(ACCESS_KEY_ENV).is_ok() {
            return;
        }
        let (a, src) = RootCredentials::load_or_create(dir.path()).unwrap();
        assert_eq!(src, CredentialSource::Generated);
        let (b, src) = RootCredentials::load_or_create(dir.path()).unwrap();
        assert_eq!(src, CredentialSource::DataDir);
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        if std::env::var(ACCESS_KEY_ENV).is_ok() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        RootCredentials::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = RootCredentials::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains(&format!("chmod 600 {}", path.display())), "{err}");
    }
}
