//! `flotilla agent --fargate` as an operator meets it, with the real binary: without a token it
//! names the pool to mint one for; with one it checks that a gVisor sandbox starts on the local
//! Docker Engine (registered runsc, as `scripts/setup-gvisor.sh` leaves it) before it tries to
//! register, and then waits for its control plane like any agent.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn agent(args: &[&str], data_dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    c.arg("agent")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("FLOTILLA_ACCESS_KEY_ID")
        .env_remove("FLOTILLA_SECRET_ACCESS_KEY")
        .env_remove("FLOTILLA_JOIN_TOKEN")
        .env("FLOTILLA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

#[test]
fn a_pool_agent_needs_a_pool_token_and_a_sandbox_that_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent(&["--fargate"], dir.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("flotilla token create --cluster fargate.pool"), "{err}");

    // Nothing listens on this port: the agent checks its sandbox first, then waits to register.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = format!("http://127.0.0.1:{port}");
    let mut child = agent(&["--fargate", "--token", "t", "--server", &server], dir.path()).spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("cannot register with the control plane yet") || Instant::now() > deadline {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let all = seen.join("\n");
    assert!(all.contains("sandboxes start; serving the Fargate pool"), "{all}");
    assert!(all.contains("cannot register with the control plane yet"), "{all}");
}
