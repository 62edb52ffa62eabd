//! `flotilla agent` and `flotilla server` as an operator meets them, with the real binary: an
//! agent started before its control plane waits for it and joins once it is up; an agent with a
//! token the server refuses exits with the refusal; an agent is refused the root key pair; a
//! server that cannot listen says where and why. The agent runs on the local Docker Engine, so these tests need it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const AKID: &str = "AKIDAGENTCLITEST";
const SECRET: &str = "agent-cli-test-secret";
/// A liveness bound, far above what any of these steps takes.
const BOUND: Duration = Duration::from_secs(90);

/// Kills the child when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port on loopback that nothing listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn flotilla(args: &[&str], data_dir: &Path, secret: &str) -> Command {
    let mut c = bare(args, Some(secret));
    c.arg("--data-dir").arg(data_dir);
    c
}

/// `flotilla ARGS`, with the root key pair in its environment only when given: an agent host
/// never holds it.
fn bare(args: &[&str], secret: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    c.args(args)
        .env_remove("FLOTILLA_ACCESS_KEY_ID")
        .env_remove("FLOTILLA_SECRET_ACCESS_KEY")
        .env("FLOTILLA_LOG", "info")
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(secret) = secret {
        c.env("FLOTILLA_ACCESS_KEY_ID", AKID).env("FLOTILLA_SECRET_ACCESS_KEY", secret);
    }
    c
}

/// An agent of the default cluster: it joins with `token`, and holds no root key pair.
fn agent(server_url: &str, data_dir: &Path, token: &str) -> Command {
    let mut c = bare(&["agent", "--server", server_url, "--token", token], None);
    c.arg("--data-dir").arg(data_dir);
    c
}

/// Mints a join token for the default cluster with the root key pair.
fn token(server_url: &str) -> String {
    let out = bare(&["token", "create", "--cluster", "default", "--server", server_url], Some(SECRET))
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The child's stderr, line by line, as it comes.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for a line containing `what`; returns every line read so far.
fn wait_for(lines: &Receiver<String>, seen: &mut Vec<String>, what: &str) {
    let until = Instant::now() + BOUND;
    while Instant::now() < until {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            let found = line.contains(what);
            seen.push(line);
            if found {
                return;
            }
        }
    }
    panic!("no line with {what:?}; saw:\n{}", seen.join("\n"));
}

#[test]
fn an_agent_started_before_its_control_plane_waits_for_it_and_registers() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server_url = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    // The operator minted the agent's token earlier; now the control plane is down.
    let mut server =
        Guard(flotilla(&["server", "--listen", &listen], &dir.path().join("server"), SECRET).spawn().unwrap());
    // Kept until the server is dropped: with the reader gone, the server's next log line meets a
    // closed pipe.
    let server_lines = lines_of(&mut server.0);
    wait_for(&server_lines, &mut Vec::new(), "listening on");
    let token = token(&server_url);
    drop(server);

    let mut agent = Guard(agent(&server_url, &dir.path().join("agent"), &token).spawn().unwrap());
    let lines = lines_of(&mut agent.0);
    let mut seen = Vec::new();
    // It says why it waits, and waits rather than exits: a second attempt is logged too.
    wait_for(&lines, &mut seen, "cannot register with the control plane yet; retrying");
    wait_for(&lines, &mut seen, "cannot register with the control plane yet; retrying");
    assert!(agent.0.try_wait().unwrap().is_none(), "the agent exited:\n{}", seen.join("\n"));
    let why = seen.iter().find(|l| l.contains("retrying")).unwrap();
    assert!(why.contains(&format!("127.0.0.1:{port}")) && why.contains("retry_in_ms"), "{why}");

    let _server =
        Guard(flotilla(&["server", "--listen", &listen], &dir.path().join("server"), SECRET).spawn().unwrap());
    wait_for(&lines, &mut seen, "registered");
    // Its state file says it joined, with a key pair of its own.
    assert!(dir.path().join("agent/agent.json").exists());
    assert!(dir.path().join("agent/agent-credentials.json").exists());
    // stderr is a pipe here, not a terminal: no colour codes in the log.
    assert!(seen.iter().all(|l| !l.contains('\u{1b}')), "{}", seen.join("\n"));
}

#[test]
fn a_real_agent_is_refused_the_root_key_pair() {
    let dir = tempfile::tempdir().unwrap();
    let out = flotilla(&["agent", "--server", "http://127.0.0.1:9"], dir.path(), SECRET).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("joins with a join token") && err.contains("--simulate"), "{err}");
}

#[test]
fn an_agent_whose_token_the_server_refuses_exits_with_the_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut server =
        Guard(flotilla(&["server", "--listen", &listen], &dir.path().join("server"), SECRET).spawn().unwrap());
    let server_lines = lines_of(&mut server.0);
    wait_for(&server_lines, &mut Vec::new(), "listening on");
    // A token the server did not mint (signed with another secret).
    let forged =
        "FLTJ1.0123456789abcdef.default.4102444800.0000000000000000000000000000000000000000000000000000000000000000";
    let mut agent = Guard(agent(&format!("http://{listen}"), &dir.path().join("agent"), forged).spawn().unwrap());
    let lines = lines_of(&mut agent.0);
    let until = Instant::now() + BOUND;
    let status = loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "the agent kept going with a refused token");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "{status:?}");
    let out: Vec<String> = lines.try_iter().collect();
    let all = out.join("\n");
    assert!(all.contains("registering with the control plane failed"), "{all}");
    assert!(!all.contains("retrying"), "{all}");
}

#[test]
fn a_server_that_cannot_listen_names_the_address_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let out = flotilla(&["server", "--listen", &listen], dir.path(), SECRET).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {listen}")), "{err}");
    assert!(err.contains("another process is already listening"), "{err}");
}
