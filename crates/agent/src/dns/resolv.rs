//! The resolv.conf awsvpc task containers get bind-mounted on /etc/resolv.conf: the forwarder as
//! the nameserver, and the host's `search`, `domain` and `options` lines, as Docker would copy
//! them. One file per agent serves every task, since its content depends on nothing of a task's.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The file's name in the agent's data directory.
pub const FILE_NAME: &str = "resolv.conf";

/// The host's resolv.conf, where the host's search domains and options come from.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The content: `nameserver` first, then the host's search domains and options; its own
/// nameservers (which may be loopback addresses only the host reaches) are left out.
pub fn text(nameserver: IpAddr, host: &str) -> String {
    let mut out =
        format!("# Written by the Flotilla agent: its DNS forwarder to the control plane.\nnameserver {nameserver}\n");
    for line in host.lines().map(str::trim) {
        let keyword = line.split_whitespace().next().unwrap_or_default();
        if matches!(keyword, "search" | "domain" | "options") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Writes the file into `dir` (whole, by rename, so a container being created never reads half
/// of it) and returns its path.
pub fn write(dir: &Path, nameserver: IpAddr) -> std::io::Result<PathBuf> {
    // A host without resolv.conf has no search domains to pass on.
    let host = std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default();
    let path = dir.join(FILE_NAME);
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text(nameserver, &host).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarder_replaces_the_hosts_nameservers_and_keeps_its_search_and_options() {
        let host = "# generated\nnameserver 127.0.0.53\nsearch corp.example svc.example\noptions ndots:2 edns0\n";
        let got = text("172.17.0.1".parse().unwrap(), host);
        let lines: Vec<&str> = got.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["nameserver 172.17.0.1", "search corp.example svc.example", "options ndots:2 edns0"]);
        assert_eq!(text("10.0.0.1".parse().unwrap(), "").lines().filter(|l| !l.starts_with('#')).count(), 1);
    }

    #[test]
    fn the_file_is_written_whole_and_rewritten_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let first = write(dir.path(), "172.17.0.1".parse().unwrap()).unwrap();
        assert!(std::fs::read_to_string(&first).unwrap().contains("nameserver 172.17.0.1\n"));
        let second = write(dir.path(), "172.18.0.1".parse().unwrap()).unwrap();
        assert_eq!(first, second);
        assert!(std::fs::read_to_string(&second).unwrap().contains("nameserver 172.18.0.1\n"));
        assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists());
    }
}
