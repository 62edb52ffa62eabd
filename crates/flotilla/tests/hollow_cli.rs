//! `flotilla agent --simulate N` as a user runs it, with the real binary: a fleet whose control
//! plane cannot be reached says so and exits, and a fleet whose control plane went away still
//! stops on SIGTERM instead of waiting for the server forever.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const AKID: &str = "AKIDHOLLOWCLITEST";
const SECRET: &str = "hollow-cli-test-secret";
/// A liveness bound, far above what any of these steps takes.
const BOUND: Duration = Duration::from_secs(60);

/// Kills the child when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hollow_fleet(server: &str, data_dir: &std::path::Path) -> Guard {
    let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["agent", "--simulate", "3", "--server", server, "--data-dir"])
        .arg(data_dir)
        .env("FLOTILLA_ACCESS_KEY_ID", AKID)
        .env("FLOTILLA_SECRET_ACCESS_KEY", SECRET)
        .env("FLOTILLA_LOG", "info")
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flotilla agent --simulate");
    Guard(child)
}

fn wait_exit(child: &mut Child) -> Option<ExitStatus> {
    let until = Instant::now() + BOUND;
    while Instant::now() < until {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn stderr_of(child: &mut Child) -> String {
    let mut out = String::new();
    for line in BufReader::new(child.stderr.take().expect("stderr")).lines() {
        out.push_str(&line.unwrap_or_default());
        out.push('\n');
    }
    out
}

/// A port on loopback that nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_fleet_that_cannot_reach_the_control_plane_says_so_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = hollow_fleet(&format!("http://127.0.0.1:{}", closed_port()), dir.path());
    let status = wait_exit(&mut fleet.0).expect("the fleet exited when no agent could register");
    assert!(!status.success(), "{status:?}");
    let err = stderr_of(&mut fleet.0);
    assert!(err.contains("no hollow agent is left running"), "{err}");
}

#[test]
fn a_fleet_stops_on_sigterm_after_its_control_plane_went_away() {
    let dir = tempfile::tempdir().unwrap();
    let (server, endpoint) = common::start_printing_endpoint("server", &dir.path().join("server"), AKID, SECRET);
    let mut server = Guard(server);

    let mut fleet = hollow_fleet(&endpoint, &dir.path().join("agents"));
    // Every hollow agent registered once its identity file is written.
    let identities = dir.path().join("agents").join("hollow");
    let until = Instant::now() + BOUND;
    while std::fs::read_dir(&identities).map_or(0, |d| d.count()) < 3 {
        assert!(Instant::now() < until, "the hollow agents never registered");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the sessions come up, then take the server away: the agents start reconnecting.
    std::thread::sleep(Duration::from_millis(500));
    server.0.kill().expect("kill the server");
    server.0.wait().expect("reap the server");
    std::thread::sleep(Duration::from_millis(1500));

    let term = Command::new("kill").args(["-TERM", &fleet.0.id().to_string()]).status().expect("kill -TERM");
    assert!(term.success());
    let status = wait_exit(&mut fleet.0).expect("the fleet stopped on SIGTERM while its server was away");
    assert!(status.success(), "{status:?}");
    let err = stderr_of(&mut fleet.0);
    assert!(err.contains("agent session lost"), "the agents never noticed the server going away:\n{err}");
}
