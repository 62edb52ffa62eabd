//! The load generator: N keep-alive HTTP/1.1 connections over loopback, each sending one
//! SigV4-signed request at a time (closed loop), for a warm-up and then a measured window.
//!
//! Every request is signed afresh with `flotilla-sigv4`, as real SDK clients do. A request's
//! latency runs from just before it is written to the socket until its whole answer has been
//! read (signing is not in it). Only requests that complete inside the measured window count;
//! answers other than 200 count as errors, and the first one is kept for the report. The CPU
//! time the server process and this process spent during the window is read from
//! `/proc/PID/stat`, so a row can say what one request cost the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use flotilla_model::arn::ArnScope;
use flotilla_sigv4::{sign, Credentials, SigningParams};
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::procs;
use crate::workload::{Rng, Workload, TARGET_PREFIX};

/// Where and how to send a row's requests.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub credentials: Credentials,
    pub region: String,
    /// The server process, for its CPU time.
    pub pid: Option<u32>,
    /// How many tasks were seeded, for picking task names.
    pub tasks: u64,
}

/// How long and how wide a row runs.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub connections: usize,
    pub warmup: Duration,
    pub measure: Duration,
}

/// What one row measured.
#[derive(Debug, Clone, Default)]
pub struct RowResult {
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Latencies of the counted requests, in nanoseconds, sorted.
    pub latencies: Vec<u64>,
    pub response_bytes: u64,
    /// CPU time the server process used during the window, if it could be read.
    pub server_cpu: Option<Duration>,
    /// CPU time this (client) process used during the window.
    pub client_cpu: Option<Duration>,
}

impl RowResult {
    /// Adds another slice of the same row (latencies stay unsorted until the caller sorts).
    pub fn absorb(&mut self, other: RowResult) {
        self.requests += other.requests;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
        self.response_bytes += other.response_bytes;
        let add = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (None, b) => b,
            (a, None) => a,
        };
        self.server_cpu = add(self.server_cpu, other.server_cpu);
        self.client_cpu = add(self.client_cpu, other.client_cpu);
    }

    pub fn rate(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.requests as f64 / self.elapsed.as_secs_f64()
        }
    }

    /// The `p`-quantile latency (0.0..=1.0), nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.latencies.len() as f64) * p).ceil() as usize;
        Duration::from_nanos(self.latencies[rank.clamp(1, self.latencies.len()) - 1])
    }

    pub fn mean_response_bytes(&self) -> u64 {
        self.response_bytes.checked_div(self.requests).unwrap_or(0)
    }

    /// Server CPU microseconds per counted request.
    pub fn server_cpu_per_request_us(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.requests > 0).then(|| cpu.as_secs_f64() * 1e6 / self.requests as f64)
    }
}

/// What one connection counted.
#[derive(Default)]
struct ConnStats {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    latencies: Vec<u64>,
    response_bytes: u64,
}

fn note(stats: &mut ConnStats, counted: bool, error: String) {
    if counted {
        stats.errors += 1;
    }
    stats.first_error.get_or_insert(error);
}

/// One signed request, built for the connection-level client (origin-form URI, explicit Host).
pub fn signed_request(target: &Target, operation: &str, body: Vec<u8>) -> anyhow::Result<Request<Full<Bytes>>> {
    let uri: Uri = format!("http://{}/", target.addr).parse()?;
    let mut headers = http::HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-amz-json-1.1"));
    headers.insert("x-amz-target", HeaderValue::from_str(&format!("{TARGET_PREFIX}{operation}"))?);
    let params = SigningParams {
        credentials: &target.credentials,
        region: &target.region,
        service: "ecs",
        time: SystemTime::now(),
    };
    sign(&Method::POST, &uri, &mut headers, &body, &params)?;
    let mut req = Request::builder().method(Method::POST).uri("/").body(Full::new(Bytes::from(body)))?;
    *req.headers_mut() = headers;
    Ok(req)
}

pub async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // The connection ends when its sender is dropped or the server goes away.
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole answer: (status, body).
pub async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<(u16, Bytes)> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Sends a single request on a fresh connection (for checks and warm-up): (status, body).
pub async fn one_request(target: &Target, workload: &Workload) -> anyhow::Result<(u16, Bytes)> {
    let mut sender = connect(target.addr).await?;
    let body = workload.body(&crate::seed::arns(), &mut Rng::new(0xBEEF), 0, target.tasks);
    exchange(&mut sender, signed_request(target, workload.operation(), body)?).await
}

/// Polls `GET /health` until it answers 200 or `timeout` passes; returns how long that took.
pub async fn wait_healthy(addr: SocketAddr, timeout: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let attempt = async {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let req = Request::builder().uri("/health").header(HOST, addr.to_string()).body(Empty::<Bytes>::new())?;
            let resp = sender.send_request(req).await?;
            anyhow::Ok(resp.status().as_u16())
        };
        if let Ok(Ok(200)) = tokio::time::timeout(Duration::from_secs(2), attempt).await {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            anyhow::bail!("the server at {addr} did not become healthy within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn drive(
    target: Arc<Target>,
    workload: Arc<Workload>,
    conn: usize,
    measure_from: Instant,
    deadline: Instant,
) -> ConnStats {
    let arns: ArnScope = crate::seed::arns();
    let mut rng = Rng::new(0x1000_0000 * (conn as u64 + 1));
    let mut stats = ConnStats::default();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    while Instant::now() < deadline {
        let s = match &mut sender {
            Some(s) => s,
            None => match connect(target.addr).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    note(&mut stats, Instant::now() >= measure_from, format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let body = workload.body(&arns, &mut rng, conn, target.tasks);
        let req = match signed_request(&target, workload.operation(), body) {
            Ok(r) => r,
            Err(e) => {
                note(&mut stats, true, format!("building the request: {e}"));
                break;
            }
        };
        let sent = Instant::now();
        let result = exchange(s, req).await;
        let done = Instant::now();
        if done >= deadline {
            break;
        }
        let counted = sent >= measure_from;
        match result {
            Ok((200, body)) => {
                if counted {
                    stats.requests += 1;
                    stats.response_bytes += body.len() as u64;
                    stats.latencies.push(done.duration_since(sent).as_nanos() as u64);
                }
            }
            Ok((status, body)) => {
                note(&mut stats, counted, format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
            }
            Err(e) => {
                note(&mut stats, counted, format!("transport: {e}"));
                sender = None;
            }
        }
    }
    stats
}

/// Runs one row: `shape.connections` connections for the warm-up, then the measured window.
pub async fn run(target: &Target, workload: &Workload, shape: Shape) -> RowResult {
    let target = Arc::new(target.clone());
    let workload = Arc::new(workload.clone());
    let measure_from = Instant::now() + shape.warmup;
    let deadline = measure_from + shape.measure;
    let handles: Vec<_> = (0..shape.connections)
        .map(|c| tokio::spawn(drive(target.clone(), workload.clone(), c, measure_from, deadline)))
        .collect();
    tokio::time::sleep_until(measure_from.into()).await;
    let server_before = target.pid.and_then(procs::cpu_time);
    let client_before = procs::cpu_time(std::process::id());
    tokio::time::sleep_until(deadline.into()).await;
    let server_after = target.pid.and_then(procs::cpu_time);
    let client_after = procs::cpu_time(std::process::id());
    let mut row = RowResult { elapsed: deadline.duration_since(measure_from), ..Default::default() };
    for h in handles {
        match h.await {
            Ok(s) => {
                row.requests += s.requests;
                row.errors += s.errors;
                row.response_bytes += s.response_bytes;
                row.latencies.extend(s.latencies);
                if row.first_error.is_none() {
                    row.first_error = s.first_error;
                }
            }
            Err(e) => {
                row.errors += 1;
                row.first_error.get_or_insert(format!("a connection task failed: {e}"));
            }
        }
    }
    row.latencies.sort_unstable();
    row.server_cpu = server_before.zip(server_after).map(|(b, a)| a.saturating_sub(b));
    row.client_cpu = client_before.zip(client_after).map(|(b, a)| a.saturating_sub(b));
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let row = RowResult {
            requests: 100,
            elapsed: Duration::from_secs(2),
            latencies: (1..=100).map(|ms| ms * 1_000_000).collect(),
            ..Default::default()
        };
        assert_eq!(row.percentile(0.5), Duration::from_millis(50));
        assert_eq!(row.percentile(0.99), Duration::from_millis(99));
        assert_eq!(row.percentile(1.0), Duration::from_millis(100));
        assert_eq!(row.rate(), 50.0);
        assert_eq!(RowResult::default().percentile(0.5), Duration::ZERO);
    }
}
