//! The workload program run directly on the host, without Docker: its HTTP server (keep-alive,
//! concurrent clients, HEAD, /env), step chains, usage errors, signal behaviour and health checks.
//! Cargo builds an ordinary copy of the binary for these tests; the images hold a static build of
//! the same source.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla-workload");

/// A running workload, killed and reaped on drop.
struct Running {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .env("FLOTILLA_HOST_TEST", "yes")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn workload");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Running { child, stdout }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read stdout");
        line.trim_end().to_string()
    }

    /// Sends SIGTERM with the `kill` program (std can only send SIGKILL).
    fn sigterm(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success());
    }

    fn wait(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().expect("wait");
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).expect("read rest");
        (status.code(), rest)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run workload")
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns (head, body).
fn read_response(reader: &mut BufReader<TcpStream>, head_only: bool) -> (String, String) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("content length");
    let mut body = vec![0; if head_only { 0 } else { len }];
    reader.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

#[test]
fn serve_keeps_connections_alive_and_answers_clients_concurrently() {
    let mut server = Running::start(&["serve", "0", "--body", "pong"]);
    let line = server.line();
    let addr = line.strip_prefix("listening on ").expect("announces its address").replace("0.0.0.0", "127.0.0.1");

    // Two connections open at once; the second is answered while the first stays open.
    let first = TcpStream::connect(&addr).unwrap();
    first.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let second = TcpStream::connect(&addr).unwrap();
    second.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut second_reader = BufReader::new(second.try_clone().unwrap());
    (&second).write_all(b"GET /env HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (_, env) = read_response(&mut second_reader, false);
    assert!(env.lines().any(|l| l == "FLOTILLA_HOST_TEST=yes"), "{env}");

    let mut reader = BufReader::new(first.try_clone().unwrap());
    for _ in 0..3 {
        (&first).write_all(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        let (head, body) = read_response(&mut reader, false);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("Connection: keep-alive"), "{head}");
        assert_eq!(body, "pong");
    }
    (&first).write_all(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let (head, _) = read_response(&mut reader, true);
    assert!(head.contains("Content-Length: 4") && head.contains("Connection: close"), "{head}");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing after a HEAD response, then the server closes");
}

#[test]
fn steps_chain_until_exit() {
    let out =
        run(&["echo", "a", "b", "then", "echo", "--stderr", "oops", "then", "exit", "3", "then", "echo", "never"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a b\nexiting with 3\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
}

#[test]
fn a_failing_step_ends_the_chain_with_status_one() {
    let out = run(&["cat", "/nonexistent/file", "then", "echo", "never"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cat /nonexistent/file"));
}

#[test]
fn usage_errors_exit_two_with_the_usage() {
    let out = run(&["serve", "not-a-port"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("serve: bad PORT `not-a-port`") && stderr.contains("usage:"), "{stderr}");
    assert_eq!(run(&[]).status.code(), Some(0), "no arguments prints help");
}

#[test]
fn sigterm_exits_143_by_default_and_zero_for_pause_and_trap_term() {
    let mut plain = Running::start(&["echo", "ready", "then", "sleep", "inf"]);
    assert_eq!(plain.line(), "ready");
    plain.sigterm();
    assert_eq!(plain.wait().0, Some(143));

    let mut trap = Running::start(&["trap-term", "--code", "5"]);
    assert_eq!(trap.line(), "waiting for SIGTERM");
    trap.sigterm();
    let (code, rest) = trap.wait();
    assert_eq!(code, Some(5));
    assert!(rest.starts_with("caught SIGTERM"), "{rest}");

    let mut pause = Running::start(&["pause"]);
    assert_eq!(pause.line(), "paused", "printed once its handler is installed");
    pause.sigterm();
    assert_eq!(pause.wait().0, Some(0));
}

#[test]
fn healthcheck_checks_files_and_urls() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("healthy");
    let file = file.to_str().unwrap();
    assert_eq!(run(&["healthcheck", file]).status.code(), Some(1));
    assert_eq!(run(&["touch", file, "then", "healthcheck", file]).status.code(), Some(0));

    let mut server = Running::start(&["serve", "0"]);
    let port = server.line().rsplit(':').next().unwrap().to_string();
    assert_eq!(run(&["healthcheck", &format!("http://127.0.0.1:{port}/")]).status.code(), Some(0));
    let got = run(&["get", &format!("http://localhost:{port}")]);
    assert_eq!(got.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&got.stdout).starts_with("flotilla-workload on "));
    assert_eq!(run(&["connect", &format!("127.0.0.1:{port}"), "--timeout", "0"]).status.code(), Some(0));
}
