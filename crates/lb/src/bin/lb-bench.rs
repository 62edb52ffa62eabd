//! `lb-bench`: how a flotilla load balancer node compares with HAProxy. It starts N tiny
//! HTTP/1.1 backends (in-process, on their own runtime), then measures with `wrk` at the same
//! connections and threads: straight to one backend (the baseline), through HAProxy (http
//! mode, keep-alive, round robin over the backends) and through a flotilla node with the
//! equivalent configuration (in-process, fed by a fixed control plane). It prints requests/s and
//! p50/p99 latency of each, the node's ratios to HAProxy and the latency each proxy adds.
//!
//! Needs `wrk` and `haproxy` on the PATH (Debian: `apt-get install wrk haproxy`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use flotilla_endpoints::elb::*;
use flotilla_lb::{ControlPlane, Node, NodeSettings};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

/// The flotilla binary's allocator, so the node measured here allocates as it does there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Options {
    backends: usize,
    connections: usize,
    threads: usize,
    duration: u64,
    proxy_threads: usize,
    /// Measure only `direct`, `haproxy` or `flotilla`.
    only: Option<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options { backends: 4, connections: 64, threads: 2, duration: 10, proxy_threads: 2, only: None };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || -> anyhow::Result<usize> {
            args.next()
                .with_context(|| format!("{flag} needs a value"))?
                .parse()
                .with_context(|| format!("{flag} takes a number"))
        };
        match flag.as_str() {
            "--backends" => o.backends = value()?,
            "--connections" => o.connections = value()?,
            "--threads" => o.threads = value()?,
            "--duration" => o.duration = value()? as u64,
            "--proxy-threads" => o.proxy_threads = value()?,
            "--only" => o.only = Some(args.next().context("--only needs direct, haproxy or flotilla")?),
            "-h" | "--help" => {
                println!(
                    "lb-bench [--backends N] [--connections C] [--threads T] [--duration SECONDS] [--proxy-threads P] [--only direct|haproxy|flotilla]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(o)
}

/// A backend answering every request with a few bytes, keep-alive.
async fn backend(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"hello world\n"))))
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// A control plane that hands out one configuration and then nothing new.
struct Fixed(NodeConfig);

#[async_trait::async_trait]
impl ControlPlane for Fixed {
    async fn fetch(&self, after: i64) -> anyhow::Result<Option<NodeConfig>> {
        if after < self.0.revision {
            return Ok(Some(self.0.clone()));
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(None)
    }
    async fn report(&self, _report: NodeReport) -> anyhow::Result<()> {
        Ok(())
    }
}

fn node_config(port: u16, backends: &[SocketAddr]) -> NodeConfig {
    let lb_arn = "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/bench/0000000000000001";
    let tg_arn = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/bench/0000000000000002";
    let mut attributes = BTreeMap::new();
    attributes.insert("load_balancing.algorithm.type".to_string(), "round_robin".to_string());
    NodeConfig {
        revision: 1,
        load_balancers: vec![LoadBalancer {
            id: "0000000000000001".into(),
            arn: lb_arn.into(),
            name: "bench".into(),
            kind: LoadBalancerType::Application,
            dns_name: "bench.elb.localhost".into(),
            scheme: "internal".into(),
            vpc_id: None,
            zones: vec![],
            security_groups: vec![],
            ip_address_type: "ipv4".into(),
            state: "active".into(),
            attributes: BTreeMap::new(),
            tags: vec![],
            created_at_ms: 0,
        }],
        listeners: vec![Listener {
            id: "l".into(),
            arn: format!("{lb_arn}/listener/l"),
            load_balancer_arn: lb_arn.into(),
            protocol: "HTTP".into(),
            port,
            default_actions: vec![Action::Forward {
                groups: vec![WeightedGroup { target_group_arn: tg_arn.into(), weight: 1 }],
                stickiness_seconds: None,
                single: true,
            }],
            tags: vec![],
        }],
        rules: vec![],
        target_groups: vec![TargetGroup {
            id: "0000000000000002".into(),
            arn: tg_arn.into(),
            name: "bench".into(),
            protocol: Some("HTTP".into()),
            protocol_version: None,
            port: Some(80),
            vpc_id: None,
            target_type: TargetType::Ip,
            health_check: HealthCheck {
                enabled: true,
                protocol: "HTTP".into(),
                port: "traffic-port".into(),
                path: Some("/".into()),
                interval_seconds: 30,
                timeout_seconds: 5,
                healthy_threshold: 5,
                unhealthy_threshold: 2,
                matcher: Some("200".into()),
            },
            attributes,
            load_balancer_arns: vec![lb_arn.into()],
            tags: vec![],
            created_at_ms: 0,
        }],
        targets: backends
            .iter()
            .map(|a| NodeTarget {
                target_group_id: "0000000000000002".into(),
                target: Target {
                    id: a.ip().to_string(),
                    port: a.port(),
                    availability_zone: None,
                    registered_at_ms: 0,
                    registration: Registration::Registered,
                    task_arn: None,
                },
                address: a.to_string(),
                health: Some(HealthState::Healthy),
            })
            .collect(),
    }
}

fn haproxy_config(port: u16, threads: usize, backends: &[SocketAddr]) -> String {
    let mut cfg = format!(
        "global\n  nbthread {threads}\n  maxconn 4096\n\ndefaults\n  mode http\n  option http-keep-alive\n  option forwardfor\n  \
         timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\nfrontend fe\n  bind 127.0.0.1:{port}\n  \
         default_backend be\n\nbackend be\n  balance roundrobin\n  http-reuse always\n"
    );
    for (i, b) in backends.iter().enumerate() {
        cfg.push_str(&format!("  server s{i} {b}\n"));
    }
    cfg
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn millis(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|v| v * scale)
}

fn wrk(url: &str, o: &Options) -> anyhow::Result<Figures> {
    let out = Command::new("wrk")
        .args([
            "-t",
            &o.threads.to_string(),
            "-c",
            &o.connections.to_string(),
            "-d",
            &format!("{}s", o.duration),
            "--latency",
            url,
        ])
        .output()
        .context("running wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    if let Some(line) = text.lines().find(|l| l.contains("Non-2xx")) {
        bail!("wrk saw errors ({line}):\n{text}");
    }
    let mut f = Figures { rps: 0.0, p50_ms: 0.0, p99_ms: 0.0 };
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            f.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("50%") {
            f.p50_ms = millis(v).unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("99%") {
            f.p99_ms = millis(v).unwrap_or(0.0);
        }
    }
    if f.rps == 0.0 {
        bail!("no figures in wrk's output:\n{text}");
    }
    Ok(f)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(port: u16) -> anyhow::Result<()> {
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("nothing listens on {port}")
}

fn run_haproxy(o: &Options, backends: &[SocketAddr]) -> anyhow::Result<Figures> {
    let port = free_port()?;
    let cfg_path = std::env::temp_dir().join(format!("lb-bench-haproxy-{}.cfg", std::process::id()));
    std::fs::write(&cfg_path, haproxy_config(port, o.proxy_threads, backends))?;
    let mut haproxy = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .spawn()
        .context("starting haproxy (apt-get install haproxy)")?;
    let result = wait_listening(port).and_then(|_| wrk(&format!("http://127.0.0.1:{port}/"), o));
    let _ = haproxy.kill();
    let _ = haproxy.wait();
    let _ = std::fs::remove_file(&cfg_path);
    result
}

fn run_flotilla(o: &Options, backends: &[SocketAddr]) -> anyhow::Result<Figures> {
    // The node's own loops (configuration, health checks); its workers serve the traffic.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let port = free_port()?;
    let node = Node::new("bench");
    let mut settings = NodeSettings::new("bench");
    settings.bind = "127.0.0.1".parse()?;
    settings.workers = o.proxy_threads;
    let control: Arc<dyn ControlPlane> = Arc::new(Fixed(node_config(port, backends)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = runtime.spawn(flotilla_lb::run_node(node, settings, control, async move {
        let _ = stopped.await;
    }));
    let result = wait_listening(port).and_then(|_| wrk(&format!("http://127.0.0.1:{port}/"), o));
    let _ = stop.send(());
    let _ = runtime.block_on(task);
    result
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    // The backends get their own runtime so that they do not share the node's threads.
    let backend_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut backends = Vec::new();
    for _ in 0..o.backends {
        let listener = backend_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        backends.push(listener.local_addr()?);
        backend_rt.spawn(backend(listener));
    }
    println!(
        "lb-bench: {} backends, wrk -t{} -c{} -d{}s, proxies with {} threads",
        o.backends, o.threads, o.connections, o.duration, o.proxy_threads
    );
    let wanted = |name: &str| o.only.as_deref().is_none_or(|only| only == name);
    let mut results: Vec<(&str, Figures)> = Vec::new();
    if wanted("direct") {
        results.push(("direct", wrk(&format!("http://{}/", backends[0]), &o)?));
    }
    if wanted("haproxy") {
        results.push(("haproxy", run_haproxy(&o, &backends)?));
    }
    if wanted("flotilla") {
        results.push(("flotilla", run_flotilla(&o, &backends)?));
    }
    println!("{:<10} {:>12} {:>10} {:>10}", "", "requests/s", "p50 ms", "p99 ms");
    for (name, f) in &results {
        println!("{name:<10} {:>12.0} {:>10.3} {:>10.3}", f.rps, f.p50_ms, f.p99_ms);
    }
    let [(_, direct), (_, haproxy), (_, flotilla)] = results[..] else { return Ok(()) };
    println!(
        "flotilla/haproxy: requests/s {:.2}x (goal >= 1.0x), p99 {:.2}x (goal <= 1.2x)",
        flotilla.rps / haproxy.rps,
        flotilla.p99_ms / haproxy.p99_ms
    );
    println!(
        "added over direct: haproxy p50 +{:.3} ms p99 {:+.3} ms; flotilla p50 +{:.3} ms p99 {:+.3} ms",
        haproxy.p50_ms - direct.p50_ms,
        haproxy.p99_ms - direct.p99_ms,
        flotilla.p50_ms - direct.p50_ms,
        flotilla.p99_ms - direct.p99_ms
    );
    Ok(())
}
