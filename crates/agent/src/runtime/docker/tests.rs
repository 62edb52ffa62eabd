//! The Docker runtime's pure parts: error mapping, references, timestamps, create bodies.

use super::*;

#[test]
fn a_daemon_away_is_transient_and_a_bad_request_is_not() {
    let answer = |status_code: u16, message: &str| DockerError::DockerResponseServerError {
        status_code,
        message: message.to_string(),
    };
    let refused = DockerError::IOError { err: std::io::Error::from(std::io::ErrorKind::ConnectionRefused) };
    let reset = DockerError::IOError { err: std::io::Error::from(std::io::ErrorKind::ConnectionReset) };
    for e in [
        refused,
        reset,
        DockerError::RequestTimeoutError,
        DockerError::SocketNotFoundError("/var/run/docker.sock".into()),
        answer(503, "Service Unavailable"),
        answer(502, "Bad Gateway"),
        answer(500, "connection error: desc = \"transport: Error while dialing dial unix /run/containerd/containerd.sock: connect: connection refused\""),
        answer(500, "daemon is shutting down"),
    ] {
        let shown = format!("{e:?}");
        assert!(map_err("start_container", "c", e).is_transient(), "{shown}");
    }
    assert!(map_err("create_container", "image x", answer(404, "No such image: x")).is_not_found());
    assert!(!map_err("create_container", "image x", answer(404, "No such image: x")).is_transient());
    assert!(matches!(map_err("create_container", "c", answer(409, "name in use")), RuntimeError::Conflict { .. }));
    for lasting in [
        answer(
            500,
            "driver failed programming external connectivity: Bind for 0.0.0.0:8080 failed: port is already allocated",
        ),
        answer(500, "OCI runtime create failed: exec: \"/nonexistent\": no such file or directory"),
        answer(400, "invalid reference format"),
    ] {
        let e = map_err("start_container", "c", lasting);
        assert!(matches!(e, RuntimeError::Failed { .. }), "{e:?}");
    }
}

#[test]
fn references_split_for_the_pull_api() {
    assert_eq!(split_reference("busybox"), ("busybox", "latest"));
    assert_eq!(split_reference("busybox:1.36"), ("busybox", "1.36"));
    assert_eq!(split_reference("localhost:5000/app"), ("localhost:5000/app", "latest"));
    assert_eq!(split_reference("localhost:5000/app:v2"), ("localhost:5000/app", "v2"));
    assert_eq!(split_reference("app@sha256:abc"), ("app@sha256:abc", ""));
}

#[test]
fn docker_timestamps_parse_to_epoch_nanoseconds() {
    assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
    assert_eq!(parse_rfc3339_ns("2024-02-29T12:34:56.123456789Z"), Some(1_709_210_096_123_456_789));
    assert_eq!(parse_rfc3339_ns("not a time"), None);
    assert_eq!(split_timestamp("2024-02-29T12:34:56Z hello world"), (Some(1_709_210_096_000_000_000), "hello world"));
    assert_eq!(split_timestamp("plain"), (None, "plain"));
}

#[test]
fn the_create_body_carries_ports_limits_and_health() {
    let spec = ContainerSpec {
        name: "c".into(),
        image: "img".into(),
        port_bindings: vec![
            super::super::PortBindingSpec {
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: None,
                host_port: None,
            },
            super::super::PortBindingSpec {
                container_port: 53,
                protocol: "udp".into(),
                host_ip: None,
                host_port: Some(5353),
            },
        ],
        memory_bytes: Some(64 << 20),
        nano_cpus: Some(250_000_000),
        cgroup_parent: Some("/flotilla/t".into()),
        health_check: Some(super::super::HealthCheckSpec {
            test: vec!["CMD".into(), "true".into()],
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            retries: 3,
            start_period: Duration::ZERO,
        }),
        ..ContainerSpec::default()
    };
    let body = create_body(&spec);
    let hc = body.host_config.unwrap();
    let ports = hc.port_bindings.unwrap();
    assert_eq!(ports["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(), Some(""));
    assert_eq!(ports["53/udp"].as_ref().unwrap()[0].host_port.as_deref(), Some("5353"));
    assert_eq!(hc.memory, Some(64 << 20));
    assert_eq!((hc.nano_cpus, hc.cgroup_parent.as_deref()), (Some(250_000_000), Some("/flotilla/t")));
    // The task's cpu is either the cgroup's quota or NanoCpus, never a per-container quota too.
    assert_eq!((hc.cpu_quota, hc.cpu_period), (None, None));
    assert_eq!(body.healthcheck.unwrap().interval, Some(5_000_000_000));
}

#[test]
fn a_sandboxed_container_at_a_fixed_address_asks_for_its_runtime_size_address_and_mac() {
    let spec = ContainerSpec {
        name: "p".into(),
        image: "img".into(),
        network_mode: Some("flotilla-subnet-1".into()),
        runtime: Some("runsc".into()),
        storage_size_bytes: Some(20 << 30),
        ipv4_address: Some("10.0.0.9".into()),
        mac_address: Some("02:00:0a:00:00:09".into()),
        ..ContainerSpec::default()
    };
    let body = create_body(&spec);
    let hc = body.host_config.unwrap();
    assert_eq!(hc.runtime.as_deref(), Some("runsc"));
    assert_eq!(hc.storage_opt.unwrap()["size"], (20u64 << 30).to_string());
    let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
    let ep = &endpoints["flotilla-subnet-1"];
    assert_eq!(ep.ipam_config.as_ref().unwrap().ipv4_address.as_deref(), Some("10.0.0.9"));
    assert_eq!(ep.mac_address.as_deref(), Some("02:00:0a:00:00:09"));
    // Without a fixed address the network's IPAM picks, as before.
    let plain = create_body(&ContainerSpec { network_mode: Some("bridge".into()), ..ContainerSpec::default() });
    assert!(plain.networking_config.is_none() && plain.host_config.unwrap().runtime.is_none());
}
