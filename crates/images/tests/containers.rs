//! Containers from the built images, on the real Docker Engine: HTTP on a port published on
//! 127.0.0.1, exit codes, logs on both streams, each SIGTERM behaviour the agent's stop path meets,
//! health checks, a pause container's network namespace shared the way awsvpc tasks share it, and
//! files written through a bind mount. Every container is removed by its guard, even on failure.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{HealthConfig, HealthStatusEnum, HostConfig};
use bollard::query_parameters::StopContainerOptionsBuilder;
use bollard::Docker;
use flotilla_images::{ensure_standard_images, PAUSE_IMAGE, WORKLOAD_IMAGE};
use support::{config, exit_code, logs, publish_8080, start, wait_for_stdout, Container, WAIT};

async fn ready() -> Docker {
    let docker = support::docker().await;
    ensure_standard_images(&docker).await.expect("standard images");
    docker
}

/// `docker stop` with a grace period; returns how long it took.
async fn stop(docker: &Docker, container: &Container, grace_secs: i32) -> Duration {
    let started = Instant::now();
    let options = StopContainerOptionsBuilder::default().t(grace_secs).build();
    docker.stop_container(&container.id, Some(options)).await.expect("stop container");
    started.elapsed()
}

#[tokio::test]
async fn workload_serves_http_on_a_port_published_on_loopback() {
    let docker = ready().await;
    let mut body = publish_8080(config(WORKLOAD_IMAGE, &["serve", "8080", "--body", "hello from a task"]));
    body.env = Some(vec!["FLOTILLA_TEST_VAR=forty-two".into()]);
    let container = start(&docker, body).await;
    wait_for_stdout(&docker, &container.id, "listening on 0.0.0.0:8080").await;
    let port = support::host_port(&docker, &container.id).await;

    let (status, body) = support::http_get(port, "/").expect("GET /");
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "hello from a task"));
    let (_, env) = support::http_get(port, "/env").expect("GET /env");
    assert!(env.lines().any(|l| l == "FLOTILLA_TEST_VAR=forty-two"), "{env}");
}

#[tokio::test]
async fn the_default_command_serves_the_hostname_on_8080() {
    let docker = ready().await;
    let mut body = publish_8080(config(WORKLOAD_IMAGE, &[]));
    body.cmd = None; // the image's CMD: serve 8080
    body.hostname = Some("task-one".into());
    let container = start(&docker, body).await;
    wait_for_stdout(&docker, &container.id, "listening on").await;
    let port = support::host_port(&docker, &container.id).await;
    let (_, body) = support::http_get(port, "/").expect("GET /");
    assert_eq!(body, "flotilla-workload on task-one\n");
}

#[tokio::test]
async fn a_container_exits_with_the_requested_code() {
    let docker = ready().await;
    let container = start(&docker, config(WORKLOAD_IMAGE, &["exit", "7", "--after", "0.2"])).await;
    assert_eq!(exit_code(&docker, &container.id).await, 7);
}

#[tokio::test]
async fn logs_reach_stdout_and_stderr_separately() {
    let docker = ready().await;
    let container = start(&docker, config(WORKLOAD_IMAGE, &["log", "3", "then", "echo", "all", "done"])).await;
    assert_eq!(exit_code(&docker, &container.id).await, 0);
    let (stdout, stderr) = logs(&docker, &container.id).await;
    assert_eq!(stdout, "stdout line 1 of 3\nstdout line 2 of 3\nstdout line 3 of 3\nall done\n");
    assert_eq!(stderr, "stderr line 1 of 3\nstderr line 2 of 3\nstderr line 3 of 3\n");
}

#[tokio::test]
async fn pause_stops_on_sigterm_with_status_zero() {
    let docker = ready().await;
    let container = start(&docker, config(PAUSE_IMAGE, &[])).await;
    wait_for_stdout(&docker, &container.id, "paused").await;
    // A 30 s grace period: exit status 0 (not 137) shows SIGTERM ended it, not the SIGKILL after.
    let took = stop(&docker, &container, 30).await;
    eprintln!("pause stopped in {took:?}");
    assert_eq!(exit_code(&docker, &container.id).await, 0);
}

#[tokio::test]
async fn a_plain_workload_exits_143_on_sigterm_although_it_is_pid_1() {
    let docker = ready().await;
    let container = start(&docker, config(WORKLOAD_IMAGE, &["echo", "up", "then", "sleep", "inf"])).await;
    wait_for_stdout(&docker, &container.id, "up").await;
    stop(&docker, &container, 30).await;
    assert_eq!(exit_code(&docker, &container.id).await, 143, "128 + SIGTERM, as if killed by it");
}

#[tokio::test]
async fn trap_term_reports_the_signal_and_exits_cleanly() {
    let docker = ready().await;
    let container = start(&docker, config(WORKLOAD_IMAGE, &["trap-term", "--delay", "0.2", "--code", "0"])).await;
    wait_for_stdout(&docker, &container.id, "waiting for SIGTERM").await;
    stop(&docker, &container, 30).await;
    assert_eq!(exit_code(&docker, &container.id).await, 0);
    let (stdout, _) = logs(&docker, &container.id).await;
    assert!(stdout.contains("caught SIGTERM"), "{stdout}");
}

#[tokio::test]
async fn ignore_term_is_ended_by_sigkill_after_the_grace_period() {
    let docker = ready().await;
    let container = start(&docker, config(WORKLOAD_IMAGE, &["ignore-term"])).await;
    wait_for_stdout(&docker, &container.id, "ignoring SIGTERM").await;
    let took = stop(&docker, &container, 1).await;
    assert_eq!(exit_code(&docker, &container.id).await, 137, "128 + SIGKILL");
    assert!(took >= Duration::from_secs(1), "the engine waited out the grace period: {took:?}");
}

/// Polls the container's health status until it is `want`.
async fn wait_for_health(docker: &Docker, id: &str, want: HealthStatusEnum) {
    let deadline = Instant::now() + WAIT;
    loop {
        let state = support::inspect(docker, id).await.state.expect("state");
        let status = state.health.and_then(|h| h.status);
        if status == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "health of {id} is {status:?}, not {want:?}, after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn health_check(test: &[&str]) -> HealthConfig {
    HealthConfig {
        test: Some(test.iter().map(|s| s.to_string()).collect()),
        interval: Some(300_000_000), // nanoseconds
        timeout: Some(5_000_000_000),
        retries: Some(1),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_file_health_check_turns_unhealthy_when_fail_health_says_so() {
    let docker = ready().await;
    let mut body = config(WORKLOAD_IMAGE, &["fail-health", "--after", "4"]);
    body.healthcheck = Some(health_check(&["CMD", "/flotilla-workload", "healthcheck", "/tmp/healthy"]));
    let container = start(&docker, body).await;
    wait_for_health(&docker, &container.id, HealthStatusEnum::HEALTHY).await;
    wait_for_health(&docker, &container.id, HealthStatusEnum::UNHEALTHY).await;
}

#[tokio::test]
async fn an_http_health_check_passes_against_serve() {
    let docker = ready().await;
    let mut body = config(WORKLOAD_IMAGE, &["serve", "8080"]);
    body.healthcheck = Some(health_check(&["CMD", "/flotilla-workload", "healthcheck", "http://127.0.0.1:8080/"]));
    let container = start(&docker, body).await;
    wait_for_health(&docker, &container.id, HealthStatusEnum::HEALTHY).await;
}

#[tokio::test]
async fn containers_sharing_a_pause_network_namespace_reach_each_other_on_localhost() {
    let docker = ready().await;
    // The awsvpc pattern: the pause container owns the namespace (and so its published ports);
    // the task's containers join it and meet on localhost.
    let pause = start(&docker, publish_8080(config(PAUSE_IMAGE, &[]))).await;
    let join = |cmd: &[&str]| {
        let mut body = config(WORKLOAD_IMAGE, cmd);
        body.host_config =
            Some(HostConfig { network_mode: Some(format!("container:{}", pause.id)), ..Default::default() });
        body
    };
    let server = start(&docker, join(&["serve", "8080", "--body", "from the shared namespace"])).await;
    wait_for_stdout(&docker, &server.id, "listening on").await;
    let client = start(&docker, join(&["connect", "localhost:8080", "then", "get", "http://127.0.0.1:8080/"])).await;
    assert_eq!(exit_code(&docker, &client.id).await, 0, "{:?}", logs(&docker, &client.id).await);
    let (stdout, _) = logs(&docker, &client.id).await;
    assert!(
        stdout.contains("connected to localhost:8080") && stdout.ends_with("from the shared namespace"),
        "{stdout}"
    );

    let port = support::host_port(&docker, &pause.id).await;
    let (_, body) = support::http_get(port, "/").expect("GET through the pause container's port");
    assert_eq!(body, "from the shared namespace");
}

#[tokio::test]
async fn connect_fails_with_status_one_when_nothing_listens() {
    let docker = ready().await;
    let container = start(&docker, config(WORKLOAD_IMAGE, &["connect", "127.0.0.1:9", "--timeout", "0.5"])).await;
    assert_eq!(exit_code(&docker, &container.id).await, 1);
    let (_, stderr) = logs(&docker, &container.id).await;
    assert!(stderr.contains("connect: 127.0.0.1:9"), "{stderr}");
}

#[tokio::test]
async fn touch_writes_through_a_bind_mount_and_tmp_is_writable_by_any_user() {
    let docker = ready().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut body =
        config(WORKLOAD_IMAGE, &["touch", "/data/sub/marker", "written", "in", "a", "task", "then", "exit", "0"]);
    body.host_config =
        Some(HostConfig { binds: Some(vec![format!("{}:/data", dir.path().display())]), ..Default::default() });
    let writer = start(&docker, body).await;
    assert_eq!(exit_code(&docker, &writer.id).await, 0, "{:?}", logs(&docker, &writer.id).await);
    assert_eq!(std::fs::read_to_string(dir.path().join("sub/marker")).unwrap(), "written in a task");

    let mut body = config(WORKLOAD_IMAGE, &["touch", "/tmp/mine", "then", "cat", "/tmp/mine", "then", "env"]);
    body.user = Some("1000:1000".into());
    body.labels.get_or_insert_with(HashMap::new).insert("purpose".into(), "non-root".into());
    let non_root = start(&docker, body).await;
    assert_eq!(exit_code(&docker, &non_root.id).await, 0, "{:?}", logs(&docker, &non_root.id).await);
}
