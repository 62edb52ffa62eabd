//! Task containers resolve the control plane's names through the agent's DNS forwarder, on the
//! real Docker Engine, with no configuration of their own: a small DNS server on 127.0.0.1 plays
//! the control plane's (`flotilla server --dns-listen`), answering one made-up Cloud Map name with
//! a made-up address no other resolver could give, and the agent's forwarder listens where the
//! agent does (port 53 on the Docker bridge's gateway and on 127.0.0.153). Containers in bridge,
//! host and awsvpc mode (with a pause container on the shared awsvpc network, and a task of one
//! container holding its own interface in a subnet network, as Fargate tasks do) each read their
//! resolv.conf and resolve the name with the workload's `resolve` step, a plain stub resolver;
//! awsvpc containers once with the agent's resolv.conf mounted, once through Docker's embedded
//! DNS (the fallback). A definition's own `dnsServers` still wins.
//!
//! Fargate tasks (gVisor sandboxes) get their own test, which fails on a host without runsc. The
//! tests running at once share port 53 (the forwarder binds it with SO_REUSEPORT). The images are
//! built under tags of their own (`:dns-tests`), since the workload's `resolve` step is newer
//! than what other test runs on this engine may have built. A host without Docker, or where port
//! 53 on the gateway is taken by another program or cannot be bound (not root), fails these
//! tests.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use flotilla_agent::dns::{start_for_tasks, Forwarder, HOST_MODE_ADDRESS};
use flotilla_agent::engine::EngineConfig;
use flotilla_agent::network::NetworkConfig;
use flotilla_agent::runtime::docker::{DockerRuntime, DockerTimeouts};
use flotilla_agent::runtime::sandbox::RUNSC;
use flotilla_agent::runtime::LogSource;
use flotilla_agent::{Engine, PullBehavior, Runtime};
use flotilla_images::ImageSpec;
use flotilla_model::{ContainerDefinition, Task, TaskDefinition};
use flotilla_protocol::{TaskAssignment, TaskNetwork, TaskReport, FARGATE};
use futures::StreamExt;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

mod common;
use common::Cleanup;

const CLUSTER: &str = "arn:aws:ecs:local:000000000000:cluster/dns-tests";
const WORKLOAD: &str = "flotilla/workload:dns-tests";
const PAUSE: &str = "flotilla/pause:dns-tests";
/// The Cloud Map name the fake control plane answers, and its made-up address.
const NAME: &str = "web.ns-dns.flotilla.test";
const ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 5);
/// Far longer than anything here should take; a hang still fails.
const WAIT: Duration = Duration::from_secs(60);

/// The control plane's DNS server, reduced to one A record: `NAME` is `ADDRESS`, anything else
/// NXDOMAIN. Nothing else knows `NAME`, so a container that resolves it was answered by this
/// server, through the forwarder its resolv.conf names. (Tests running at the same time share
/// the forwarders' port, SO_REUSEPORT, so which test's server answers is not asserted.)
async fn control_plane_dns() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind the fake DNS server");
    let addr = sock.local_addr().expect("bound");
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else { continue };
            let Some(answer) = answer(&buf[..n]) else { continue };
            let _ = sock.send_to(&answer, from).await;
        }
    });
    addr
}

/// The answer to one query: the header and question echoed, plus the A record when the question
/// is `NAME` (any case) of type A, else NXDOMAIN.
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(pos)?);
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(pos + 1..pos + 1 + len)?).to_ascii_lowercase());
        pos += 1 + len;
    }
    let question_end = pos + 5;
    let qtype = u16::from_be_bytes([*query.get(pos + 1)?, *query.get(pos + 2)?]);
    let found = labels.join(".") == NAME && qtype == 1;
    let mut out = query.get(..question_end)?.to_vec();
    out[2] = 0x80 | (query[2] & 0x01) | 0x04; // QR, RD as asked, AA
    out[3] = if found { 0x80 } else { 0x83 }; // RA; NOERROR or NXDOMAIN
    out[4..12].copy_from_slice(&[0, 1, 0, u8::from(found), 0, 0, 0, 0]);
    if found {
        // The name as a pointer to the question's, type A, class IN, TTL 10, 4 bytes.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 10, 0, 4]);
        out.extend_from_slice(&ADDRESS.octets());
    }
    Some(out)
}

fn workload(name: &str, command: &[&str]) -> ContainerDefinition {
    ContainerDefinition {
        name: Some(name.into()),
        image: Some(WORKLOAD.into()),
        command: Some(command.iter().map(|s| s.to_string()).collect()),
        memory: Some(64),
        ..Default::default()
    }
}

fn assignment(mode: &str, containers: Vec<ContainerDefinition>, network: Option<TaskNetwork>) -> TaskAssignment {
    let arn = format!("arn:aws:ecs:local:000000000000:task/dns-tests/{}", uuid::Uuid::new_v4().simple());
    TaskAssignment {
        task: Task { task_arn: Some(arn), desired_status: Some("RUNNING".into()), ..Default::default() },
        definition: TaskDefinition {
            family: Some("dns-tests".into()),
            revision: Some(1),
            network_mode: Some(mode.into()),
            container_definitions: Some(containers),
            ..Default::default()
        },
        reserved_ports: Vec::new(),
        network,
        stop_timeout_cap_seconds: None,
    }
}

/// Runs `a` until its container `probe` has exited; its exit code and its stdout lines.
async fn run_probe(
    engine: &Engine,
    runtime: &DockerRuntime,
    reports: &mut UnboundedReceiver<TaskReport>,
    a: TaskAssignment,
) -> (Option<i32>, Vec<String>) {
    let arn = a.task.task_arn.clone().expect("arn");
    engine.apply(a).expect("apply");
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    let probe = loop {
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Some(r)) if r.task_arn == arn => {
                let done = r.containers.iter().find(|c| c.name == "probe" && c.status == "STOPPED").cloned();
                if let Some(c) = done {
                    break c;
                }
                last = Some(r);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("{arn}: the probe never stopped; last report: {last:#?}"),
        }
    };
    let id = probe.runtime_id.expect("the probe's container");
    let chunks: Vec<_> = runtime.logs(&id, None, false).collect().await;
    let lines = chunks
        .into_iter()
        .filter_map(Result::ok)
        .filter(|c| c.source == LogSource::Stdout || c.source == LogSource::Stderr)
        .map(|c| c.line.trim_end().to_string())
        .collect();
    (probe.exit_code, lines)
}

/// One agent's DNS side on the real engine: the fake control-plane DNS, the forwarder on port 53
/// of the gateway and of 127.0.0.153, a subnet of its own, and what the test creates removed.
struct Setup {
    runtime: Arc<DockerRuntime>,
    gateway: std::net::IpAddr,
    eni: TaskNetwork,
    config: EngineConfig,
    _forwarder: Forwarder,
    _data: tempfile::TempDir,
    _cleanup: [Cleanup; 2],
}

impl Setup {
    async fn start() -> Setup {
        let runtime = Arc::new(DockerRuntime::connect(DockerTimeouts::default()).await.expect("Docker Engine"));
        for spec in [ImageSpec::workload(WORKLOAD), ImageSpec::pause(PAUSE)] {
            flotilla_images::ensure(runtime.docker(), &spec).await.expect("build the test images");
        }
        let gateway = runtime.bridge_gateway().await.expect("inspect the bridge").expect("a bridge gateway");
        let upstream = control_plane_dns().await;
        let data = tempfile::tempdir().expect("data dir");
        let (forwarder, resolvers) = start_for_tasks(upstream, Some(gateway), data.path()).await;
        assert_eq!(resolvers.bridge, Some(gateway), "the forwarder listens on {gateway}:53 (taken? not root?)");
        assert_eq!(resolvers.host, Some(HOST_MODE_ADDRESS.into()), "the forwarder listens on {HOST_MODE_ADDRESS}:53");
        assert!(resolvers.resolv_conf.is_some(), "the awsvpc tasks' resolv.conf is written");

        let id = uuid::Uuid::new_v4().simple().to_string();
        let instance = format!("arn:aws:ecs:local:000000000000:container-instance/dns-tests/{id}");
        let octet = u8::from_str_radix(&id[..2], 16).expect("hex");
        let eni = TaskNetwork {
            subnet_id: format!("subnet-dns{}", &id[..8]),
            // A block of its own per run (apart from the Fargate tests' 10.213/16).
            cidr_block: format!("10.214.{octet}.0/24"),
            ipv4_address: format!("10.214.{octet}.9"),
            mac_address: "02:00:0a:d6:00:09".into(),
            interface_id: "eni-dns-test".into(),
        };
        let awsvpc_network = format!("flotilla-test-{}", &id[..12]);
        let docker = runtime.docker().clone();
        let cleanup = [awsvpc_network.clone(), eni.docker_network()].map(|network| Cleanup {
            docker: docker.clone(),
            instance: instance.clone(),
            network,
        });
        let mut config = EngineConfig::new(data.path(), CLUSTER, &instance);
        config.pull_behavior = PullBehavior::IfNotPresent;
        config.network =
            NetworkConfig { awsvpc_network, pause_image: PAUSE.into(), dns: resolvers, ..Default::default() };
        config.default_stop_timeout = Duration::from_secs(2);
        Setup { runtime, gateway, eni, config, _forwarder: forwarder, _data: data, _cleanup: cleanup }
    }

    /// An engine with the setup's settings, `tune`d.
    fn engine(&self, tune: impl FnOnce(&mut EngineConfig)) -> (Engine, UnboundedReceiver<TaskReport>) {
        let mut config = self.config.clone();
        tune(&mut config);
        let (tx, reports) = unbounded_channel();
        (Engine::new(config, self.runtime.clone(), tx), reports)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_in_every_network_mode_resolve_the_control_planes_names_through_the_agent() {
    let setup = Setup::start().await;
    let (runtime, gateway, eni) = (&setup.runtime, setup.gateway, setup.eni.clone());
    let (engine, mut reports) = setup.engine(|_| {});

    let probe = workload("probe", &["cat", "/etc/resolv.conf", "then", "resolve", NAME]);
    let holder = ContainerDefinition { essential: Some(false), ..workload("holder", &["sleep", "inf"]) };
    let cases = BTreeMap::from([
        ("1 bridge", (assignment("bridge", vec![probe.clone()], None), format!("nameserver {gateway}"))),
        ("2 host", (assignment("host", vec![probe.clone()], None), format!("nameserver {HOST_MODE_ADDRESS}"))),
        // The agent's resolv.conf, mounted.
        ("3 awsvpc", (assignment("awsvpc", vec![probe.clone(), holder], None), format!("nameserver {gateway}"))),
        (
            "4 awsvpc, own interface",
            (assignment("awsvpc", vec![probe.clone()], Some(eni)), format!("nameserver {gateway}")),
        ),
    ]);
    for (case, (a, nameserver)) in cases {
        let (code, lines) = run_probe(&engine, runtime, &mut reports, a).await;
        assert!(lines.contains(&nameserver), "{case}: resolv.conf names {nameserver}: {lines:#?}");
        assert!(lines.contains(&ADDRESS.to_string()), "{case}: {NAME} resolves to {ADDRESS}: {lines:#?}");
        assert_eq!(code, Some(0), "{case}: {lines:#?}");
    }

    // Without the agent's resolv.conf (it could not be written), awsvpc containers resolve
    // through Docker's embedded DNS, which forwards to the agent from the task's namespace.
    let other_data = tempfile::tempdir().expect("data dir");
    let (embedded_engine, mut embedded_reports) = setup.engine(|c| {
        c.data_dir = other_data.path().into();
        c.network.dns.resolv_conf = None;
    });
    let holder = ContainerDefinition { essential: Some(false), ..workload("holder", &["sleep", "inf"]) };
    let a = assignment("awsvpc", vec![probe.clone(), holder], None);
    let (code, lines) = run_probe(&embedded_engine, runtime, &mut embedded_reports, a).await;
    assert!(lines.contains(&"nameserver 127.0.0.11".to_string()), "{lines:#?}");
    assert!(lines.contains(&ADDRESS.to_string()), "{NAME} resolves to {ADDRESS}: {lines:#?}");
    assert_eq!(code, Some(0), "{lines:#?}");
    embedded_engine.shutdown().await;

    // A definition's own dnsServers win over the agent's resolver.
    let own = ContainerDefinition {
        dns_servers: Some(vec!["10.214.255.53".into()]),
        ..workload("probe", &["cat", "/etc/resolv.conf"])
    };
    let (code, lines) = run_probe(&engine, runtime, &mut reports, assignment("bridge", vec![own], None)).await;
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(lines.contains(&"nameserver 10.214.255.53".to_string()), "{lines:#?}");
    assert!(!lines.contains(&format!("nameserver {gateway}")), "{lines:#?}");
    engine.shutdown().await;
}

/// Fargate tasks (awsvpc under gVisor's runsc, each with its own interface in its subnet):
/// a task of one container holding the interface, and one of two sharing a pause container's
/// namespace, every container a sandbox, resolve through the agent. Needs runsc registered with
/// the engine (see docker_fargate.rs); fails without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fargate_containers_resolve_the_control_planes_names_through_the_agent() {
    let setup = Setup::start().await;
    flotilla_agent::run::check_sandbox(&setup.runtime, RUNSC).await.expect("runsc is registered and starts");
    let (engine, mut reports) = setup.engine(|c| c.sandbox_runtime = Some(RUNSC.into()));
    let probe = workload("probe", &["cat", "/etc/resolv.conf", "then", "resolve", NAME]);
    let holder = ContainerDefinition { essential: Some(false), ..workload("holder", &["sleep", "inf"]) };
    for (case, containers) in [("one container", vec![probe.clone()]), ("two containers", vec![probe, holder])] {
        let mut a = assignment("awsvpc", containers, Some(setup.eni.clone()));
        a.task.launch_type = Some(FARGATE.into());
        a.definition.requires_compatibilities = Some(vec![FARGATE.into()]);
        a.definition.cpu = Some("256".into());
        a.definition.memory = Some("512".into());
        let (code, lines) = run_probe(&engine, &setup.runtime, &mut reports, a).await;
        assert!(lines.contains(&format!("nameserver {}", setup.gateway)), "{case}: {lines:#?}");
        assert!(lines.contains(&ADDRESS.to_string()), "{case}: {NAME} resolves to {ADDRESS}: {lines:#?}");
        assert_eq!(code, Some(0), "{case}: {lines:#?}");
    }
    engine.shutdown().await;
}
