//! What goes to the engine's build endpoint: a Dockerfile and a tiny root filesystem (the workload
//! binary and a world-writable /tmp), packed as an in-memory tar, plus the fingerprint that tells a
//! current image from a stale one. Everything here is pure, so it is unit-tested without Docker.

use std::collections::BTreeMap;
use std::io;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::{ImageKind, WORKLOAD_PATH, WORKLOAD_PORT};

/// Bump when the layout of the images changes without the binary changing, so that existing
/// images are rebuilt.
const FORMAT_VERSION: &str = "flotilla-images/1";

/// Every entry's mtime: a fixed value keeps the context, and so the engine's build cache, the same
/// from one run to the next.
const MTIME: u64 = 1_700_000_000;

/// The Dockerfile for one kind. Exec-form ENTRYPOINT/CMD only: there is no shell in the image.
pub(crate) fn dockerfile(kind: ImageKind) -> String {
    let mut text = String::from("FROM scratch\nCOPY rootfs/ /\n");
    match kind {
        ImageKind::Workload => {
            text.push_str(&format!("EXPOSE {WORKLOAD_PORT}\n"));
            text.push_str(&format!("ENTRYPOINT [\"{WORKLOAD_PATH}\"]\n"));
            text.push_str(&format!("CMD [\"serve\", \"{WORKLOAD_PORT}\"]\n"));
        }
        ImageKind::Pause => text.push_str(&format!("ENTRYPOINT [\"{WORKLOAD_PATH}\", \"pause\"]\n")),
    }
    text
}

/// A hex SHA-256 over everything that decides an image's contents: the format version, the
/// kind's Dockerfile, the extra labels, and the binary (whose own hash is computed once).
pub(crate) fn fingerprint(kind: ImageKind, labels: &BTreeMap<String, String>, binary: &'static [u8]) -> String {
    static BINARY_HASH: OnceLock<[u8; 32]> = OnceLock::new();
    let binary_hash = BINARY_HASH.get_or_init(|| Sha256::digest(binary).into());
    let mut hasher = Sha256::new();
    for part in [FORMAT_VERSION, &dockerfile(kind)] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    for (key, value) in labels {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    hasher.update(binary_hash);
    hex::encode(hasher.finalize())
}

/// The build context as tar bytes: `Dockerfile`, `rootfs/flotilla-workload`, `rootfs/tmp/`.
pub(crate) fn tar(kind: ImageKind, binary: &[u8]) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::with_capacity(binary.len() + 8192));
    let dockerfile = dockerfile(kind);
    append_file(&mut builder, "Dockerfile", 0o644, dockerfile.as_bytes())?;
    append_dir(&mut builder, "rootfs/", 0o755)?;
    append_file(&mut builder, &format!("rootfs{WORKLOAD_PATH}"), 0o755, binary)?;
    // Sticky and world-writable like any /tmp, so a task definition's non-root `user` can use it.
    append_dir(&mut builder, "rootfs/tmp/", 0o1777)?;
    builder.into_inner()
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(MTIME);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append_file(builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
    let mut header = header(tar::EntryType::Regular, mode, data.len() as u64);
    builder.append_data(&mut header, path, data)
}

fn append_dir(builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) -> io::Result<()> {
    let mut header = header(tar::EntryType::Directory, mode, 0);
    builder.append_data(&mut header, path, io::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfiles_use_exec_form_only() {
        let workload = dockerfile(ImageKind::Workload);
        assert!(workload.contains("ENTRYPOINT [\"/flotilla-workload\"]\n"), "{workload}");
        assert!(workload.contains("CMD [\"serve\", \"8080\"]\n"), "{workload}");
        let pause = dockerfile(ImageKind::Pause);
        assert!(pause.contains("ENTRYPOINT [\"/flotilla-workload\", \"pause\"]\n"), "{pause}");
        assert!(!pause.contains("CMD"), "{pause}");
    }

    #[test]
    fn fingerprint_follows_kind_labels_and_binary_hash() {
        static BIN: &[u8] = b"binary";
        let none = BTreeMap::new();
        let labelled = BTreeMap::from([("variant".to_string(), "b".to_string())]);
        let base = fingerprint(ImageKind::Workload, &none, BIN);
        assert_eq!(base, fingerprint(ImageKind::Workload, &none, BIN));
        assert_ne!(base, fingerprint(ImageKind::Pause, &none, BIN));
        assert_ne!(base, fingerprint(ImageKind::Workload, &labelled, BIN));
        assert_eq!(base.len(), 64);
    }

    #[test]
    fn context_tar_holds_the_rootfs_with_modes() {
        let bytes = tar(ImageKind::Workload, b"\x7fELF-not-really").unwrap();
        assert_eq!(bytes, tar(ImageKind::Workload, b"\x7fELF-not-really").unwrap(), "deterministic");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), e.header().mode().unwrap())
            })
            .collect();
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Dockerfile", "rootfs/", "rootfs/flotilla-workload", "rootfs/tmp/"]);
        assert_eq!(entries[2].1, 0o755);
        assert_eq!(entries[3].1, 0o1777);
    }
}
