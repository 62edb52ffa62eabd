//! What the Docker tests share: a connection, containers that remove themselves when dropped (also
//! on panic), and small waits. Every container carries [`TEST_LABEL`], so one left behind by a
//! killed test run can be found with `docker ps -a --filter label=io.flotilla.test`.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, ContainerInspectResponse, HostConfig, PortBinding};
use bollard::query_parameters::{LogsOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::{container::LogOutput, Docker};
use futures::StreamExt;

pub const TEST_LABEL: &str = "io.flotilla.test";
/// Far longer than anything here should take, short enough that a hang fails the test.
pub const WAIT: Duration = Duration::from_secs(30);

pub async fn docker() -> Docker {
    flotilla_images::connect().await.expect("these tests need the Docker Engine at /var/run/docker.sock")
}

/// A started container, force-removed (with its anonymous volumes) on drop.
pub struct Container {
    pub docker: Docker,
    pub id: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        // Drop cannot await, and a test's runtime may be mid-panic: remove on a fresh thread with
        // its own runtime and wait for it, so the container is gone before the test returns.
        let (docker, id) = (self.docker.clone(), self.id.clone());
        let removal = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
            runtime.block_on(docker.remove_container(&id, Some(options))).map_err(std::io::Error::other)
        });
        match removal.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not remove test container {}: {e}", self.id),
            Err(_) => eprintln!("removing test container {} panicked", self.id),
        }
    }
}

/// `image` with `cmd` (the ENTRYPOINT stays the image's), labelled as a test container.
pub fn config(image: &str, cmd: &[&str]) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        labels: Some(HashMap::from([(TEST_LABEL.to_string(), "flotilla-images".to_string())])),
        ..Default::default()
    }
}

/// Publishes the container's 8080/tcp on a free port of 127.0.0.1 only.
pub fn publish_8080(mut config: ContainerCreateBody) -> ContainerCreateBody {
    let binding = PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) };
    let host = config.host_config.get_or_insert_with(HostConfig::default);
    host.port_bindings = Some(HashMap::from([("8080/tcp".to_string(), Some(vec![binding]))]));
    config.exposed_ports = Some(vec!["8080/tcp".to_string()]);
    config
}

/// Creates and starts a container; it is removed when the returned guard drops.
pub async fn start(docker: &Docker, config: ContainerCreateBody) -> Container {
    let created = docker.create_container(None, config).await.expect("create container");
    // Own the container before starting it, so a failed start still cleans up.
    let container = Container { docker: docker.clone(), id: created.id };
    docker.start_container(&container.id, None).await.expect("start container");
    container
}

pub async fn inspect(docker: &Docker, id: &str) -> ContainerInspectResponse {
    docker.inspect_container(id, None).await.expect("inspect container")
}

/// Waits until the container has stopped and returns its exit code.
pub async fn exit_code(docker: &Docker, id: &str) -> i64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let state = inspect(docker, id).await.state.expect("state");
        if state.running != Some(true) {
            return state.exit_code.expect("exit code");
        }
        assert!(Instant::now() < deadline, "container {id} still running after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The container's logs so far, split by stream.
pub async fn logs(docker: &Docker, id: &str) -> (String, String) {
    let options = LogsOptionsBuilder::default().stdout(true).stderr(true).build();
    let mut stream = docker.logs(id, Some(options));
    let (mut stdout, mut stderr) = (String::new(), String::new());
    while let Some(item) = stream.next().await {
        match item.expect("read logs") {
            LogOutput::StdOut { message } => stdout.push_str(&String::from_utf8_lossy(&message)),
            LogOutput::StdErr { message } => stderr.push_str(&String::from_utf8_lossy(&message)),
            _ => {}
        }
    }
    (stdout, stderr)
}

/// Polls the logs until stdout contains `needle` (a program announcing it is ready).
pub async fn wait_for_stdout(docker: &Docker, id: &str, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (stdout, stderr) = logs(docker, id).await;
        if stdout.contains(needle) {
            return stdout;
        }
        assert!(Instant::now() < deadline, "no `{needle}` in {id}'s stdout: {stdout:?} / stderr: {stderr:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The host port that 127.0.0.1 publishes for the container's 8080/tcp.
pub async fn host_port(docker: &Docker, id: &str) -> u16 {
    let ports = inspect(docker, id).await.network_settings.and_then(|n| n.ports).expect("published ports");
    let bindings = ports.get("8080/tcp").cloned().flatten().expect("8080/tcp is published");
    let binding = bindings.iter().find(|b| b.host_ip.as_deref() == Some("127.0.0.1")).expect("a 127.0.0.1 binding");
    binding.host_port.as_deref().expect("host port").parse().expect("numeric host port")
}

/// A plain HTTP/1.0 GET to 127.0.0.1:`port`; returns (status line, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other(format!("bad reply {raw:?}")))?;
    Ok((head.lines().next().unwrap_or_default().to_string(), body.to_string()))
}
