//! The keys that seal stored values, kept in a file apart from the store so that a copy of the
//! store (a backup, an etcd snapshot) reveals no value. The file holds one key a line,
//! `ID:BASE64` (32 random bytes), `#` comments allowed; the last line is the primary key, which
//! seals every new value. Each sealed value names the key that sealed it, so rotating means
//! appending a key ([`rotate_file`]), letting the leader re-seal the records under it, and only
//! then deleting the old lines. The file must be private (mode 0600): a group- or
//! world-readable one is refused.
//!
//! Values are sealed with AES-256-GCM, a fresh 96-bit nonce each, and the record's identity as
//! associated data, so a sealed value copied onto another record does not open.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the secrets key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "the secrets key file {path} is readable by its group or others (mode {mode:o}); \
         make it private with `chmod 600 {path}`"
    )]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error("the secrets key file {path}, line {line}: {why}")]
    Malformed { path: PathBuf, line: usize, why: String },
    #[error("the secrets key file {path} holds no key")]
    Empty { path: PathBuf },
    #[error(
        "the value was sealed with key {id}, which is not in the secrets key file {path}: every \
         server must be given the same key file, and a key may be deleted only after the records \
         were re-sealed under a newer one"
    )]
    MissingKey { id: String, path: String },
    #[error(
        "the value sealed with key {id} does not open: the key or the stored record is not the one it was sealed with"
    )]
    Corrupt { id: String },
    #[error("no random bytes could be drawn for a key or nonce")]
    Random,
}

/// A value as stored: the id of the key that sealed it, the nonce, the ciphertext and tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub key: String,
    pub nonce: String,
    pub data: String,
}

struct Key {
    id: String,
    key: LessSafeKey,
}

/// The keys of one key file, the primary last.
pub struct KeyRing {
    path: String,
    keys: Vec<Key>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("KeyRing").field("path", &self.path).field("ids", &ids).finish()
    }
}

fn random(buf: &mut [u8]) -> Result<(), KeyError> {
    SystemRandom::new().fill(buf).map_err(|_| KeyError::Random)
}

fn new_key_line(id: &str) -> Result<String, KeyError> {
    let mut bytes = [0u8; KEY_LEN];
    random(&mut bytes)?;
    Ok(format!("{id}:{}\n", B64.encode(bytes)))
}

impl KeyRing {
    /// Parses a key file's text (`path` only names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<KeyRing, KeyError> {
        let malformed = |line: usize, why: &str| KeyError::Malformed { path: path.into(), line, why: why.into() };
        let mut keys: Vec<Key> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, b64) = line.split_once(':').ok_or_else(|| malformed(n + 1, "expected ID:BASE64"))?;
            let id = id.trim();
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(malformed(n + 1, "a key id is letters, digits, - and _"));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(malformed(n + 1, "the key id is used twice"));
            }
            let bytes = B64.decode(b64.trim()).map_err(|_| malformed(n + 1, "the key is not base64"))?;
            if bytes.len() != KEY_LEN {
                return Err(malformed(n + 1, "a key is 32 bytes"));
            }
            let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| malformed(n + 1, "not an AES-256 key"))?;
            keys.push(Key { id: id.to_string(), key: LessSafeKey::new(unbound) });
        }
        if keys.is_empty() {
            return Err(KeyError::Empty { path: path.into() });
        }
        Ok(KeyRing { path: path.display().to_string(), keys })
    }

    /// Loads the key file, refusing one its group or others can read.
    pub fn load(path: &Path) -> Result<KeyRing, KeyError> {
        let io = |source| KeyError::Io { path: path.into(), source };
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(io)?;
        KeyRing::parse(path, &text)
    }

    /// Loads the key file, creating it (mode 0600, one new key) when there is none.
    pub fn load_or_create(path: &Path) -> Result<(KeyRing, bool), KeyError> {
        let io = |source| KeyError::Io { path: path.into(), source };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                let text =
                    format!("# Flotilla secrets keys: ID:BASE64, the last is the primary.\n{}", new_key_line("k1")?);
                file.write_all(text.as_bytes()).and_then(|_| file.sync_all()).map_err(io)?;
                Ok((KeyRing::load(path)?, true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((KeyRing::load(path)?, false)),
            Err(e) => Err(io(e)),
        }
    }

    /// The id of the primary key, which seals new values.
    pub fn primary(&self) -> &str {
        &self.keys[self.keys.len() - 1].id
    }

    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// Seals `plain` under the primary key, bound to `aad` (the record's identity).
    pub fn seal(&self, aad: &str, plain: &[u8]) -> Result<Sealed, KeyError> {
        let key = &self.keys[self.keys.len() - 1];
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        let mut data = plain.to_vec();
        key.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut data)
            .map_err(|_| KeyError::Corrupt { id: key.id.clone() })?;
        Ok(Sealed { key: key.id.clone(), nonce: B64.encode(nonce), data: B64.encode(data) })
    }

    /// Opens a sealed value bound to `aad`.
    pub fn open(&self, aad: &str, sealed: &Sealed) -> Result<Vec<u8>, KeyError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == sealed.key)
            .ok_or_else(|| KeyError::MissingKey { id: sealed.key.clone(), path: self.path.clone() })?;
        let corrupt = || KeyError::Corrupt { id: sealed.key.clone() };
        let nonce: [u8; NONCE_LEN] =
            B64.decode(&sealed.nonce).ok().and_then(|n| n.try_into().ok()).ok_or_else(corrupt)?;
        let mut data = B64.decode(&sealed.data).map_err(|_| corrupt())?;
        let plain = key
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut data)
            .map_err(|_| corrupt())?;
        Ok(plain.to_vec())
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| KeyError::Io { path: path.into(), source })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::NotPrivate { path: path.into(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), KeyError> {
    Ok(())
}

/// Appends a new key to the key file (which must exist and load) and returns its id: it becomes
/// the primary once the servers read the file again.
pub fn rotate_file(path: &Path) -> Result<String, KeyError> {
    let ring = KeyRing::load(path)?;
    let next =
        ring.ids().iter().filter_map(|id| id.strip_prefix('k').and_then(|n| n.parse::<u64>().ok())).max().unwrap_or(0)
            + 1;
    let id = format!("k{next}");
    let io = |source| KeyError::Io { path: path.into(), source };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).map_err(io)?;
    let lead = if text.is_empty() || text.ends_with('\n') { "" } else { "\n" };
    file.write_all(format!("{lead}{}", new_key_line(&id)?).as_bytes()).and_then(|_| file.sync_all()).map_err(io)?;
    Ok(id)
}

/// The key ring a server uses, read again from its file when a value names a key it does not
/// hold (another server rotated first) and on each pass of the re-sealing loop.
#[derive(Clone, Debug)]
pub struct Keys {
    path: PathBuf,
    ring: Arc<RwLock<Arc<KeyRing>>>,
}

impl Keys {
    pub fn new(path: PathBuf, ring: KeyRing) -> Keys {
        Keys { path, ring: Arc::new(RwLock::new(Arc::new(ring))) }
    }

    pub fn current(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the key file again; on failure the keys held are kept.
    pub fn reload(&self) -> Result<Arc<KeyRing>, KeyError> {
        let ring = Arc::new(KeyRing::load(&self.path)?);
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = ring.clone();
        Ok(ring)
    }

    pub fn seal(&self, aad: &str, plain: &[u8]) -> Result<Sealed, KeyError> {
        self.current().seal(aad, plain)
    }

    pub fn open(&self, aad: &str, sealed: &Sealed) -> Result<Vec<u8>, KeyError> {
        match self.current().open(aad, sealed) {
            Err(KeyError::MissingKey { .. }) => match self.reload() {
                Ok(ring) => ring.open(aad, sealed),
                Err(e) => {
                    tracing::warn!(error = %e, "the secrets key file could not be read again");
                    self.current().open(aad, sealed)
                }
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(dir: &Path) -> (PathBuf, KeyRing) {
        let path = dir.join("secrets.key");
        let (ring, created) = KeyRing::load_or_create(&path).expect("created");
        assert!(created);
        (path, ring)
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_record() {
        let dir = tempfile::tempdir().unwrap();
        let (_, ring) = ring(dir.path());
        let sealed = ring.seal("ssm/parameters/a#1", b"hunter2").unwrap();
        assert!(!sealed.data.contains("hunter2"));
        assert_eq!(ring.open("ssm/parameters/a#1", &sealed).unwrap(), b"hunter2");
        assert!(matches!(ring.open("ssm/parameters/b#1", &sealed), Err(KeyError::Corrupt { .. })));
        let other = KeyRing::parse(Path::new("other"), &new_key_line("k1").unwrap()).unwrap();
        assert!(matches!(other.open("ssm/parameters/a#1", &sealed), Err(KeyError::Corrupt { .. })));
        let missing = KeyRing::parse(Path::new("other"), &new_key_line("k9").unwrap()).unwrap();
        let err = missing.open("ssm/parameters/a#1", &sealed).unwrap_err();
        assert!(err.to_string().contains("sealed with key k1, which is not in the secrets key file"), "{err}");
    }

    #[test]
    fn the_key_file_is_created_private_and_a_readable_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = ring(dir.path());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (_, created) = KeyRing::load_or_create(&path).unwrap();
        assert!(!created);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = KeyRing::load(&path).unwrap_err();
        assert!(matches!(err, KeyError::NotPrivate { mode: 0o640, .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn rotation_appends_a_primary_and_old_values_still_open() {
        let dir = tempfile::tempdir().unwrap();
        let (path, first) = ring(dir.path());
        let old = first.seal("x", b"v").unwrap();
        assert_eq!(rotate_file(&path).unwrap(), "k2");
        let keys = Keys::new(path.clone(), first);
        // The held ring does not know k2 yet; a value sealed under it makes the server read the
        // file again.
        let second = KeyRing::load(&path).unwrap();
        assert_eq!(second.ids(), vec!["k1", "k2"]);
        assert_eq!(second.primary(), "k2");
        let new = second.seal("x", b"w").unwrap();
        assert_eq!(new.key, "k2");
        assert_eq!(keys.open("x", &new).unwrap(), b"w");
        assert_eq!(keys.current().primary(), "k2");
        assert_eq!(keys.open("x", &old).unwrap(), b"v");
    }

    #[test]
    fn malformed_key_files_are_refused_with_the_line() {
        let p = Path::new("f");
        assert!(matches!(KeyRing::parse(p, "# only a comment\n"), Err(KeyError::Empty { .. })));
        assert!(matches!(KeyRing::parse(p, "k1\n"), Err(KeyError::Malformed { line: 1, .. })));
        assert!(matches!(KeyRing::parse(p, "k1:c2hvcnQ=\n"), Err(KeyError::Malformed { line: 1, .. })));
        let line = new_key_line("k1").unwrap();
        assert!(matches!(KeyRing::parse(p, &format!("{line}{line}")), Err(KeyError::Malformed { line: 2, .. })));
    }
}
