//! The high-availability harness: a local etcd cluster, several `flotilla server`s over it, hollow
//! agents given every server, steady load, faults (kill -9 and SIGSTOP of servers and etcd
//! members) and a checker of the final state. The fault tests (`crates/flotilla/tests/ha_faults.rs`)
//! and `ha-bench` are built from it.

pub mod bed;
pub mod check;
pub mod client;
pub mod etcd;
pub mod faults;
pub mod load;
pub mod servers;

/// Sends `signal` (`KILL`, `STOP`, `CONT`) to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").args(["-s", signal, &pid.to_string()]).status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("kill -s {signal} {pid} failed: {status:?}");
    }
}
