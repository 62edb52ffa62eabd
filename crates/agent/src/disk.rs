//! The agent's files on disk: private to the agent's user, and crash-atomic where a doc promises
//! it.
//!
//! Task records hold task definitions (environment variables included, which are often secrets)
//! and logs hold whatever containers print, so directories the agent makes are 0700 and its files
//! 0600. Everything here blocks on the file system; async code calls it through
//! `tokio::task::spawn_blocking`.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Directories only the agent's user may enter.
pub const DIR_MODE: u32 = 0o700;
/// Files only the agent's user may read.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents, each 0700. A directory that exists keeps its mode: it
/// may be one the operator chose and shares (a `--data-dir` of `/srv`).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Creates `dir` like [`create_private_dir`] and makes it 0700 if it exists: for directories the
/// agent alone owns (`tasks/`, a task's logs), also those an older agent made world-readable.
pub fn ensure_own_dir(dir: &Path) -> io::Result<()> {
    create_private_dir(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.permissions().mode() & 0o777 != DIR_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Options that create a file 0600 (the mode applies only when the file is created).
pub fn private_file() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Replaces `path` with `bytes` so that a crash leaves the old content or the new, never part of
/// either: write a temporary file beside it, fsync it, rename it over `path`, then fsync the
/// directory so the rename itself is on disk.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a path with no directory"))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut f = private_file().write(true).create(true).truncate(true).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directories_and_files_are_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!((mode(&root.path().join("a")), mode(&dir)), (0o700, 0o700));
        // An existing directory the operator chose keeps its mode; one the agent owns is tightened.
        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&shared).unwrap();
        assert_eq!(mode(&shared), 0o755);
        ensure_own_dir(&shared).unwrap();
        assert_eq!(mode(&shared), 0o700);

        let file = dir.join("r.json");
        write_atomic(&file, b"one").unwrap();
        write_atomic(&file, b"two").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        assert_eq!(mode(&file), 0o600);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }
}
