//! The parts of `console-bench`: a fleet of services built through the ECS API on hollow
//! instances, and the two ways of reading one page of it: the console's signed view (one `GET
//! /console/view/...`, and its 304 refresh with `If-None-Match`) and the ECS calls a client makes
//! to list the same things. Both run one request at a time on one keep-alive connection, so a
//! sample is what one user waits for; a sample of the API side is its whole sequence of calls.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use flotilla_sigv4::{sign, SigningParams};
use http::header::IF_NONE_MATCH;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use serde_json::{json, Value};

use crate::load::{connect, exchange, signed_request, Target};
use crate::runtask::call;

/// The cluster the fleet runs in (the one the server creates at start).
pub const CLUSTER: &str = "default";

/// The name of service `i`.
pub fn service_name(i: usize) -> String {
    format!("console-bench-{i:05}")
}

/// Creates `services` services of `per_service` tasks each (the runtask bench's task definition),
/// `concurrency` CreateService calls at a time.
pub async fn create_services(
    target: &Target,
    services: usize,
    per_service: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..concurrency.max(1)).map(|_| {
        let (target, next) = (target.clone(), next.clone());
        tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= services {
                    return anyhow::Ok(());
                }
                let body = json!({"cluster": CLUSTER, "serviceName": service_name(i),
                    "taskDefinition": crate::runtask::FAMILY, "desiredCount": per_service});
                call(&target, "CreateService", &body).await?;
            }
        })
    });
    for w in futures::future::join_all(workers).await {
        w??;
    }
    Ok(())
}

/// Waits until the cluster runs `tasks` tasks and has `services` services; returns how long it took.
pub async fn wait_running(target: &Target, services: usize, tasks: u64, timeout: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let c = call(target, "DescribeClusters", &json!({"clusters": [CLUSTER]})).await?;
        let running = c["clusters"][0]["runningTasksCount"].as_u64().unwrap_or(0);
        let active = c["clusters"][0]["activeServicesCount"].as_u64().unwrap_or(0) as usize;
        if running >= tasks && active >= services {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "only {running} of {tasks} tasks running ({active} of {services} services) after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One signed `GET` of a console view (`path` below `/console/view`, with its query).
pub fn view_request(target: &Target, path: &str, etag: Option<&str>) -> anyhow::Result<Request<Full<Bytes>>> {
    let origin = format!("/console/view{path}");
    let uri: Uri = format!("http://{}{origin}", target.addr).parse()?;
    let mut headers = HeaderMap::new();
    let params = SigningParams {
        credentials: &target.credentials,
        region: &target.region,
        service: "ecs",
        time: SystemTime::now(),
    };
    sign(&Method::GET, &uri, &mut headers, b"", &params)?;
    if let Some(tag) = etag {
        headers.insert(IF_NONE_MATCH, HeaderValue::from_str(tag)?);
    }
    let mut req = Request::builder().method(Method::GET).uri(origin).body(Full::new(Bytes::new()))?;
    *req.headers_mut() = headers;
    Ok(req)
}

/// The latencies (sorted, nanoseconds) and answer size of one way of reading a page.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    pub latencies: Vec<u64>,
    /// Bytes of one reading (the last one's; the data does not change).
    pub bytes: usize,
    /// Requests one reading takes.
    pub calls: usize,
}

impl Samples {
    /// The `p`-quantile latency, nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.latencies.len() as f64) * p).ceil() as usize;
        Duration::from_nanos(self.latencies[rank.clamp(1, self.latencies.len()) - 1])
    }

    fn push(&mut self, started: Instant) {
        self.latencies.push(started.elapsed().as_nanos() as u64);
    }

    fn sorted(mut self) -> Self {
        self.latencies.sort_unstable();
        self
    }
}

/// One console page measured: the full view, and its 304 refresh.
#[derive(Debug, Clone, Default)]
pub struct ViewSamples {
    pub full: Samples,
    pub refresh: Samples,
}

/// Reads the view at `path` `iterations` times, then refreshes it as often with its ETag; every
/// full read must answer 200 and every refresh 304.
pub async fn measure_view(target: &Target, path: &str, iterations: usize) -> anyhow::Result<ViewSamples> {
    let mut sender = connect(target.addr).await?;
    let mut out = ViewSamples::default();
    let mut etag = String::new();
    for _ in 0..iterations.max(1) {
        let req = view_request(target, path, None)?;
        let started = Instant::now();
        let (status, headers, body) = exchange_with_headers(&mut sender, req).await?;
        out.full.push(started);
        anyhow::ensure!(
            status == 200,
            "GET /console/view{path} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        out.full.bytes = body.len();
        etag = headers.get(http::header::ETAG).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    }
    anyhow::ensure!(!etag.is_empty(), "GET /console/view{path} answered without an ETag");
    for _ in 0..iterations.max(1) {
        let req = view_request(target, path, Some(&etag))?;
        let started = Instant::now();
        let (status, _, body) = exchange_with_headers(&mut sender, req).await?;
        out.refresh.push(started);
        anyhow::ensure!(status == 304, "a refresh of /console/view{path} with its ETag answered {status}, not 304");
        out.refresh.bytes = body.len();
    }
    out.full.calls = 1;
    out.refresh.calls = 1;
    Ok(ViewSamples { full: out.full.sorted(), refresh: out.refresh.sorted() })
}

async fn exchange_with_headers(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<(u16, HeaderMap, Bytes)> {
    use http_body_util::BodyExt;
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, headers, body))
}

/// The same listing as a console page, through the ECS API.
#[derive(Debug, Clone)]
pub enum Listing {
    /// ListClusters, then DescribeClusters of all of them.
    Clusters,
    /// ListServices (pages of 100), then DescribeServices in tens: every service of the cluster.
    Services,
    /// DescribeServices of one, then its tasks (ListTasks, DescribeTasks).
    Service(String),
    /// ListTasks (100), then DescribeTasks of those 100.
    Tasks,
    /// DescribeTasks of one.
    Task(String),
}

impl Listing {
    /// The calls, by name, for the report.
    pub fn describe(&self) -> &'static str {
        match self {
            Listing::Clusters => "ListClusters + DescribeClusters",
            Listing::Services => "ListServices pages + DescribeServices by 10",
            Listing::Service(_) => "DescribeServices + ListTasks + DescribeTasks",
            Listing::Tasks => "ListTasks 100 + DescribeTasks 100",
            Listing::Task(_) => "DescribeTasks 1",
        }
    }

    /// One reading: (calls made, bytes answered).
    async fn read(&self, sender: &mut SendRequest<Full<Bytes>>, target: &Target) -> anyhow::Result<(usize, usize)> {
        let mut r = Reader { sender, target, calls: 0, bytes: 0 };
        match self {
            Listing::Clusters => {
                let list = r.call("ListClusters", json!({})).await?;
                r.call("DescribeClusters", json!({"clusters": list["clusterArns"]})).await?;
            }
            Listing::Services => {
                let mut token: Option<String> = None;
                loop {
                    let mut body = json!({"cluster": CLUSTER, "maxResults": 100});
                    if let Some(t) = &token {
                        body["nextToken"] = json!(t);
                    }
                    let page = r.call("ListServices", body).await?;
                    let arns: Vec<Value> = page["serviceArns"].as_array().cloned().unwrap_or_default();
                    for chunk in arns.chunks(10) {
                        r.call("DescribeServices", json!({"cluster": CLUSTER, "services": chunk})).await?;
                    }
                    match page["nextToken"].as_str() {
                        Some(t) => token = Some(t.to_string()),
                        None => break,
                    }
                }
            }
            Listing::Service(name) => {
                r.call("DescribeServices", json!({"cluster": CLUSTER, "services": [name]})).await?;
                let list = r.call("ListTasks", json!({"cluster": CLUSTER, "serviceName": name})).await?;
                r.call("DescribeTasks", json!({"cluster": CLUSTER, "tasks": list["taskArns"]})).await?;
            }
            Listing::Tasks => {
                let list = r.call("ListTasks", json!({"cluster": CLUSTER, "maxResults": 100})).await?;
                r.call("DescribeTasks", json!({"cluster": CLUSTER, "tasks": list["taskArns"]})).await?;
            }
            Listing::Task(arn) => {
                r.call("DescribeTasks", json!({"cluster": CLUSTER, "tasks": [arn]})).await?;
            }
        }
        Ok((r.calls, r.bytes))
    }
}

/// The calls of one API reading, counted with the bytes they answered.
struct Reader<'a> {
    sender: &'a mut SendRequest<Full<Bytes>>,
    target: &'a Target,
    calls: usize,
    bytes: usize,
}

impl Reader<'_> {
    /// One ECS call, which must answer 200: its answer.
    async fn call(&mut self, operation: &str, body: Value) -> anyhow::Result<Value> {
        let req = signed_request(self.target, operation, serde_json::to_vec(&body)?)?;
        let (status, answer) = exchange(self.sender, req).await?;
        anyhow::ensure!(status == 200, "{operation} answered {status}: {}", String::from_utf8_lossy(&answer));
        self.calls += 1;
        self.bytes += answer.len();
        Ok(serde_json::from_slice(&answer)?)
    }
}

/// Reads `listing` through the API `iterations` times.
pub async fn measure_api(target: &Target, listing: &Listing, iterations: usize) -> anyhow::Result<Samples> {
    let mut sender = connect(target.addr).await?;
    let mut out = Samples::default();
    for _ in 0..iterations.max(1) {
        let started = Instant::now();
        let (calls, bytes) = listing.read(&mut sender, target).await?;
        out.push(started);
        out.calls = calls;
        out.bytes = bytes;
    }
    Ok(out.sorted())
}

/// One task of the cluster: (its ARN, its id), the first ListTasks gives.
pub async fn some_task(target: &Target) -> anyhow::Result<(String, String)> {
    let list = call(target, "ListTasks", &json!({"cluster": CLUSTER, "maxResults": 1})).await?;
    let arn = list["taskArns"][0].as_str().ok_or_else(|| anyhow::anyhow!("the cluster has no task"))?.to_string();
    let id = arn.rsplit('/').next().unwrap_or_default().to_string();
    Ok((arn, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Samples { latencies: (1..=100).map(|i| i * 1_000_000).collect(), bytes: 0, calls: 1 };
        assert_eq!(s.percentile(0.5), Duration::from_millis(50));
        assert_eq!(s.percentile(0.99), Duration::from_millis(99));
        assert_eq!(Samples::default().percentile(0.5), Duration::ZERO);
    }

    #[test]
    fn view_requests_are_signed_gets_with_the_etag() {
        let target = Target {
            addr: "127.0.0.1:9".parse().unwrap(),
            credentials: flotilla_sigv4::Credentials::new("AKIDEXAMPLE", "secret"),
            region: "us-east-1".into(),
            pid: None,
            tasks: 0,
        };
        let req = view_request(&target, "/clusters/default?x=1", Some("\"abc\"")).unwrap();
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri(), "/console/view/clusters/default?x=1");
        assert!(req.headers()["authorization"].to_str().unwrap().contains("Credential=AKIDEXAMPLE/"));
        assert_eq!(req.headers()["if-none-match"], "\"abc\"");
        assert_eq!(req.headers()["host"], "127.0.0.1:9");
    }
}
