//! `dns-bench`: flotilla's Cloud Map DNS server against NSD on the same records, measured with
//! dnsperf (same query file, same client settings, each server's responder pinned to the same CPU
//! with taskset), then the time from a store change (an instance registered or deregistered) to
//! the DNS answer that shows it, over many changes.
//!
//! Needs `nsd`, `dnsperf` and `taskset` on PATH (Debian: `apt-get install nsd dnsperf`).
//! The two servers take turns for `--rounds` rounds (the machine may be shared: alternating spreads
//! other load over both) and each one's median is compared.
//! Usage: `dns-bench [--services N] [--instances N] [--seconds S] [--rounds N] [--server-cpu C]
//! [--client-cpu C] [--changes N]`

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_api::{AuthMode, Clock, Ctx, RootCredentials, ServerConfig};
use flotilla_endpoints::cloudmap::{
    DnsConfig, DnsRecord, HealthStatus, Instance, Namespace, NamespaceType, RecordType, RoutingPolicy, Service,
};
use flotilla_endpoints::{codec, keys};
use flotilla_servicediscovery::dns::{self, forward::Upstreams, Settings};
use flotilla_store::{Op, Txn};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType as Rt};

const ZONE: &str = "bench.local";

struct Args {
    services: usize,
    instances: usize,
    seconds: u64,
    server_cpu: usize,
    client_cpu: usize,
    changes: usize,
    rounds: usize,
}

fn args() -> Args {
    let mut a = Args { services: 50, instances: 8, seconds: 10, server_cpu: 0, client_cpu: 1, changes: 200, rounds: 3 };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value =
            pair.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or_else(|| panic!("{} needs a number", pair[0]));
        match pair[0].as_str() {
            "--services" => a.services = value as usize,
            "--instances" => a.instances = value as usize,
            "--seconds" => a.seconds = value,
            "--server-cpu" => a.server_cpu = value as usize,
            "--client-cpu" => a.client_cpu = value as usize,
            "--changes" => a.changes = value as usize,
            "--rounds" => a.rounds = value.max(1) as usize,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn ip(service: usize, instance: usize) -> String {
    format!("10.{}.{}.{}", 1 + service / 250, service % 250, 1 + instance)
}

/// The bench records: one private namespace, `services` services with A and SRV records,
/// `instances` healthy instances each.
async fn write_records(ctx: &Ctx, a: &Args) {
    let ns = Namespace {
        id: "ns-bench".into(),
        arn: "arn:aws:servicediscovery:us-east-1:000000000000:namespace/ns-bench".into(),
        name: ZONE.into(),
        kind: NamespaceType::DnsPrivate,
        description: None,
        soa_ttl: Some(60),
        vpc: Some("vpc-bench".into()),
        creator_request_id: None,
        tags: vec![],
        created_at_ms: 0,
    };
    commit(ctx, Txn::new().then(Op::put(keys::namespace(&ns.id), codec::encode(&ns)))).await;
    for s in 0..a.services + 1 {
        let svc = Service {
            id: format!("srv-{s}"),
            arn: format!("arn:aws:servicediscovery:us-east-1:000000000000:service/srv-{s}"),
            name: if s == a.services { "prop".into() } else { format!("svc{s}") },
            namespace_id: ns.id.clone(),
            description: None,
            dns_config: Some(DnsConfig {
                routing_policy: RoutingPolicy::Multivalue,
                records: vec![DnsRecord { kind: RecordType::A, ttl: 60 }, DnsRecord { kind: RecordType::Srv, ttl: 60 }],
            }),
            custom_health: false,
            health_check_config: None,
            creator_request_id: None,
            tags: vec![],
            created_at_ms: 0,
        };
        let mut txn = Txn::new().then(Op::put(keys::service(&svc.id), codec::encode(&svc)));
        let count = if s == a.services { 1 } else { a.instances };
        for i in 0..count {
            txn = txn.then(Op::put(
                keys::instance(&svc.id, &format!("i{i}")),
                codec::encode(&instance(&svc.id, i, &ip(s, i))),
            ));
        }
        commit(ctx, txn).await;
    }
}

fn instance(service_id: &str, i: usize, address: &str) -> Instance {
    Instance {
        id: format!("i{i}"),
        service_id: service_id.into(),
        attributes: BTreeMap::from([
            ("AWS_INSTANCE_IPV4".into(), address.into()),
            ("AWS_INSTANCE_PORT".into(), "8080".into()),
        ]),
        health: HealthStatus::Healthy,
        creator_request_id: None,
        task_arn: None,
        registered_at_ms: 0,
        updated_at_ms: 0,
    }
}

async fn commit(ctx: &Ctx, txn: Txn) {
    ctx.commit(txn).await.expect("commit").expect("no conflict");
}

/// The same records as an NSD zone file.
fn zone_file(a: &Args) -> String {
    let mut z = format!(
        "$ORIGIN {ZONE}.\n$TTL 60\n@ IN SOA ns1 hostmaster 1 7200 900 1209600 60\n@ IN NS ns1\nns1 IN A 127.0.0.1\n"
    );
    for s in 0..a.services {
        for i in 0..a.instances {
            z.push_str(&format!("svc{s} 60 IN A {}\n", ip(s, i)));
            z.push_str(&format!("svc{s} 60 IN SRV 1 1 8080 i{i}.svc{s}\n"));
            z.push_str(&format!("i{i}.svc{s} 60 IN A {}\n", ip(s, i)));
        }
    }
    z
}

/// dnsperf's input: every service's A and SRV, and every instance's A, in a fixed order.
fn query_file(a: &Args) -> String {
    let mut q = String::new();
    for s in 0..a.services {
        q.push_str(&format!("svc{s}.{ZONE} A\nsvc{s}.{ZONE} SRV\n"));
        for i in 0..a.instances {
            q.push_str(&format!("i{i}.svc{s}.{ZONE} A\n"));
        }
    }
    q
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn start_nsd(dir: &Path, a: &Args, port: u16) -> Child {
    std::fs::write(dir.join("bench.zone"), zone_file(a)).expect("zone");
    // Response rate limiting off (its default would drop a benchmark's single client) and minimal
    // responses on (no NS records in authority), so both servers send the same answers.
    let d = dir.display();
    let conf = format!(
        "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  server-count: 1\n  username: \"\"\n  chroot: \"\"\n  \
         zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  zonelistfile: \"{d}/zone.list\"\n  \
         xfrdfile: \"{d}/xfrd.state\"\n  xfrdir: \"{d}\"\n  logfile: \"{d}/nsd.log\"\n  verbosity: 0\n  \
         rrl-ratelimit: 0\n  rrl-whitelist-ratelimit: 0\n  minimal-responses: yes\n\
         remote-control:\n  control-enable: no\nzone:\n  name: {ZONE}\n  zonefile: \"{d}/bench.zone\"\n"
    );
    std::fs::write(dir.join("nsd.conf"), conf).expect("conf");
    Command::new("taskset")
        .args(["-c", &a.server_cpu.to_string(), "nsd", "-d", "-c"])
        .arg(dir.join("nsd.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nsd (apt-get install nsd)")
}

/// Waits until `addr` answers an A query for the first service.
fn wait_ready(addr: SocketAddr) {
    for _ in 0..100 {
        if ask(addr, "svc0.bench.local.").map(|v| !v.is_empty()).unwrap_or(false) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{addr} never answered");
}

/// The A addresses `addr` answers for `name`.
fn ask(addr: SocketAddr, name: &str) -> Option<Vec<String>> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    let mut q = Message::query();
    q.add_query(Query::query(Name::from_ascii(name).ok()?, Rt::A));
    socket.send_to(&q.to_vec().ok()?, addr).ok()?;
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    let m = Message::from_vec(&buf[..n]).ok()?;
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    Some(v)
}

/// Runs dnsperf against `port`: queries per second.
fn dnsperf(dir: &Path, a: &Args, port: u16) -> f64 {
    let out = Command::new("taskset")
        .args(["-c", &a.client_cpu.to_string(), "dnsperf", "-s", "127.0.0.1", "-p", &port.to_string()])
        .args(["-d"])
        .arg(dir.join("queries.txt"))
        .args(["-l", &a.seconds.to_string(), "-c", "4", "-T", "1", "-q", "200"])
        .output()
        .expect("run dnsperf (apt-get install dnsperf)");
    let text = String::from_utf8_lossy(&out.stdout);
    let lost = text.lines().find(|l| l.contains("Queries lost")).unwrap_or("").trim().to_string();
    let qps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries per second:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("dnsperf said: {text}"));
    println!("    dnsperf: {qps:.0} qps; {lost}");
    qps
}

/// Pins this process's thread named `name` to `cpu` (taskset -p on its thread id).
fn pin_thread(name: &str, cpu: usize) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let tid = t.file_name().to_string_lossy().to_string();
            let _ = Command::new("taskset").args(["-pc", &cpu.to_string(), &tid]).stdout(Stdio::null()).status();
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Alternately registers and deregisters a second instance of `prop` through the store and
/// polls the DNS answer until it shows the change: the delays.
async fn propagation(ctx: &Ctx, addr: SocketAddr, a: &Args) -> Vec<Duration> {
    let svc = format!("srv-{}", a.services);
    let mut delays = Vec::new();
    for n in 0..a.changes {
        let register = n % 2 == 0;
        let key = keys::instance(&svc, "i1");
        let txn = if register {
            Txn::new().then(Op::put(key, codec::encode(&instance(&svc, 1, "10.250.0.2"))))
        } else {
            Txn::new().then(Op::delete(key))
        };
        let started = Instant::now();
        commit(ctx, txn).await;
        let want = if register { 2 } else { 1 };
        let seen = tokio::task::spawn_blocking(move || loop {
            if ask(addr, "prop.bench.local.").is_some_and(|v| v.len() == want) {
                return started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(10) {
                return started.elapsed();
            }
        })
        .await
        .expect("poll");
        delays.push(seen);
    }
    delays.sort();
    delays
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir: PathBuf = std::env::temp_dir().join(format!("dns-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("queries.txt"), query_file(&a)).expect("queries");
    let credentials =
        RootCredentials { access_key_id: "AKIDBENCH".into(), secret_access_key: "bench-secret-0123456789".into() };
    let config = ServerConfig { auth: AuthMode::Verify, ..ServerConfig::new(dir.join("store"), credentials) };
    let ctx = flotilla_api::server::open(&config, Clock::system()).await.expect("control plane store");
    write_records(&ctx, &a).await;
    println!(
        "records: {} services x {} instances in {ZONE}; {} distinct queries (A, SRV, per-instance A); server CPU {}, dnsperf CPU {}, {} s each",
        a.services, a.instances, a.services * (2 + a.instances), a.server_cpu, a.client_cpu, a.seconds
    );

    let settings =
        Settings { udp_threads: 1, upstreams: Some(Upstreams { servers: vec![], timeout: Duration::from_secs(1) }) };
    let server = dns::start(&ctx, "127.0.0.1:0".parse().unwrap(), settings).await.expect("flotilla dns");
    pin_thread("dns-udp-0", a.server_cpu);
    wait_ready(server.local_addr());
    let nsd_port = free_port();
    let mut nsd = start_nsd(&dir, &a, nsd_port);
    wait_ready(SocketAddr::from(([127, 0, 0, 1], nsd_port)));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 1..=a.rounds {
        println!("round {round}: flotilla (1 UDP responder thread)");
        ours.push(dnsperf(&dir, &a, server.local_addr().port()));
        println!("round {round}: nsd (server-count 1)");
        theirs.push(dnsperf(&dir, &a, nsd_port));
    }
    let _ = nsd.kill();
    let _ = nsd.wait();
    let (flotilla, reference) = (median(ours), median(theirs));

    println!(
        "queries/s per core (median of {} rounds): flotilla {flotilla:.0}, nsd {reference:.0}; flotilla/nsd = {:.2}x",
        a.rounds,
        flotilla / reference
    );
    let delays = propagation(&ctx, server.local_addr(), &a).await;
    println!(
        "change-to-answer over {} changes (store commit -> UDP answer changed): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        delays.len(),
        percentile(&delays, 0.5).as_secs_f64() * 1e3,
        percentile(&delays, 0.99).as_secs_f64() * 1e3,
        delays.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
