//! The node's side of the control plane contract: join once with a token (`POST /v1/lb/join`)
//! for a key pair kept in the data directory, then long-poll the configuration
//! (`GET /v1/lb/config?after=REV&wait=S`, SigV4-signed as `ecs`) and send reports
//! (`POST /v1/lb/report`). Behind the [`ControlPlane`] trait so a node can also be fed in-process.
//!
//! The control plane may be several servers ([`Endpoints`]): a join, poll or report that finds
//! its server unreachable or answering 5xx is made again at once on the next, and fails only when
//! every server has failed it once (the node then waits, serving its last configuration).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context as _};
pub use flotilla_agent::session::endpoints::Endpoints;
use flotilla_endpoints::elb::{NodeConfig, NodeReport};
use flotilla_sigv4::{sign, Credentials, SigningParams};
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde::Serialize;

/// Where a node keeps its id and key pair, under its data directory.
pub const CREDENTIALS_FILE: &str = "lb-credentials.json";
/// The node's id alone, kept beside the key pair: a node that lost its key pair (or had it
/// revoked) joins again under the same id.
pub const NODE_ID_FILE: &str = "lb-node-id";
pub const JOIN_PATH: &str = "/v1/lb/join";
pub const CONFIG_PATH: &str = "/v1/lb/config";
pub const REPORT_PATH: &str = "/v1/lb/report";
/// How long one configuration poll waits on the server for a change.
pub const LONG_POLL_SECONDS: u64 = 20;

/// Where a node gets its configuration and sends what it observes.
#[async_trait::async_trait]
pub trait ControlPlane: Send + Sync {
    /// A configuration newer than revision `after`, or `None` when none came within the
    /// control plane's wait (the node asks again).
    async fn fetch(&self, after: i64) -> anyhow::Result<Option<NodeConfig>>;
    /// Sends the node's health judgements and draining connection counts.
    async fn report(&self, report: NodeReport) -> anyhow::Result<()>;
}

pub use flotilla_endpoints::elb::NodeCredentials;

/// The saved credentials of a node that joined before, if any.
pub fn load_credentials(dir: &Path) -> Option<NodeCredentials> {
    serde_json::from_slice(&std::fs::read(dir.join(CREDENTIALS_FILE)).ok()?).ok()
}

/// Keeps `credentials` in `dir` (mode 0600), atomically.
pub fn save_credentials(credentials: &NodeCredentials, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{CREDENTIALS_FILE}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(credentials).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(tmp, dir.join(CREDENTIALS_FILE))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinRequest<'a> {
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<&'a str>,
    advertise_address: &'a str,
}

/// No server answered: each could not be reached or answered 5xx. Worth waiting for, unlike a
/// refusal (`lb_cmd` retries a join that failed this way).
#[derive(Debug, thiserror::Error)]
#[error("no server of the control plane answered ({servers}); the last said: {last}")]
pub struct Unreachable {
    pub servers: String,
    pub last: String,
}

/// One server's failure: whether the next server may do better, and what happened.
#[derive(Debug)]
struct Failure {
    fail_over: bool,
    error: anyhow::Error,
}

impl Failure {
    fn unreachable(error: impl Into<anyhow::Error>) -> Failure {
        Failure { fail_over: true, error: error.into() }
    }
    fn refused(error: anyhow::Error) -> Failure {
        Failure { fail_over: false, error }
    }
    /// A non-2xx answer: 5xx may pass on another server, anything else would be the same there.
    fn status(status: reqwest::StatusCode, error: anyhow::Error) -> Failure {
        Failure { fail_over: status.is_server_error(), error }
    }
}

/// The HTTP control plane of a `flotilla server`, or of several sharing one store.
pub struct HttpControlPlane {
    servers: Endpoints,
    region: String,
    credentials: NodeCredentials,
    http: reqwest::Client,
}

impl HttpControlPlane {
    pub fn new(servers: Endpoints, region: &str, credentials: NodeCredentials) -> anyhow::Result<HttpControlPlane> {
        // No overall timeout: each call sets its own (the long poll waits on purpose). A server
        // that does not accept the connection soon is taken as gone.
        let http =
            reqwest::Client::builder().connect_timeout(flotilla_agent::session::api_client::CONNECT_TIMEOUT).build()?;
        Ok(HttpControlPlane { servers, region: region.to_string(), credentials, http })
    }

    /// The servers, and the one the node is on now.
    pub fn servers(&self) -> &Endpoints {
        &self.servers
    }

    /// Runs `op` on the current server, moving on to the next while servers fail over; the
    /// last failure when none answered, as [`Unreachable`] when it was worth waiting for.
    async fn on_servers<T, F, Fut>(&self, op: F) -> anyhow::Result<T>
    where
        F: FnMut(std::sync::Arc<str>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        match self.servers.try_each(op, |f: &Failure| f.fail_over).await {
            Ok(v) => Ok(v),
            Err(Failure { fail_over: true, error }) => {
                Err(anyhow::Error::new(Unreachable { servers: self.servers.to_string(), last: format!("{error:#}") }))
            }
            Err(Failure { error, .. }) => Err(error),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.credentials.node_id
    }

    /// The node's control plane: with the key pair saved in `data_dir` by an earlier join, else
    /// by joining with `token` (and saving what it earns).
    pub async fn enroll(
        servers: &Endpoints,
        region: &str,
        data_dir: &Path,
        token: Option<&str>,
        advertise_address: &str,
    ) -> anyhow::Result<HttpControlPlane> {
        if let Some(saved) = load_credentials(data_dir) {
            return HttpControlPlane::new(servers.clone(), region, saved);
        }
        let Some(token) = token else {
            bail!("no saved credentials in {} and no join token (--token or FLOTILLA_LB_TOKEN)", data_dir.display());
        };
        let plane = HttpControlPlane::new(
            servers.clone(),
            region,
            NodeCredentials { node_id: String::new(), access_key_id: String::new(), secret_access_key: String::new() },
        )?;
        let previous = std::fs::read_to_string(data_dir.join(NODE_ID_FILE)).ok();
        let previous = previous.as_deref().map(str::trim).filter(|id| !id.is_empty());
        let request = JoinRequest { token, node_id: previous, advertise_address };
        let (http, request) = (&plane.http, &request);
        let creds: NodeCredentials = plane
            .on_servers(|server| async move {
                let resp = http
                    .post(format!("{server}{JOIN_PATH}"))
                    .timeout(Duration::from_secs(30))
                    .json(request)
                    .send()
                    .await
                    .map_err(|e| Failure::unreachable(anyhow!(e).context(format!("joining at {server}"))))?;
                let status = resp.status();
                let body = resp.bytes().await.map_err(Failure::unreachable)?;
                if !status.is_success() {
                    let error = anyhow!("join refused ({status}): {}", String::from_utf8_lossy(&body));
                    return Err(Failure::status(status, error));
                }
                serde_json::from_slice(&body).context("the join answer does not decode").map_err(Failure::refused)
            })
            .await?;
        save_credentials(&creds, data_dir)
            .with_context(|| format!("saving the node's credentials in {}", data_dir.display()))?;
        std::fs::write(data_dir.join(NODE_ID_FILE), &creds.node_id)
            .with_context(|| format!("saving the node's id in {}", data_dir.display()))?;
        HttpControlPlane::new(servers.clone(), region, creds)
    }

    fn signed(
        &self,
        server: &str,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        let url = format!("{server}{path_and_query}");
        let uri: Uri = url.parse().map_err(|e| anyhow!("bad server URL {url}: {e}"))?;
        let mut headers = HeaderMap::new();
        if !body.is_empty() {
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let creds =
            Credentials::new(self.credentials.access_key_id.clone(), self.credentials.secret_access_key.clone());
        let params =
            SigningParams { credentials: &creds, region: &self.region, service: "ecs", time: SystemTime::now() };
        sign(&method, &uri, &mut headers, &body, &params).map_err(|e| anyhow!("signing: {e}"))?;
        Ok(self.http.request(method, url).headers(headers).body(body).timeout(timeout))
    }
}

#[async_trait::async_trait]
impl ControlPlane for HttpControlPlane {
    async fn fetch(&self, after: i64) -> anyhow::Result<Option<NodeConfig>> {
        let path = format!("{CONFIG_PATH}?after={after}&wait={LONG_POLL_SECONDS}");
        let path = &path;
        self.on_servers(|server| async move {
            let wait = Duration::from_secs(LONG_POLL_SECONDS + 15);
            let req = self.signed(&server, Method::GET, path, Vec::new(), wait).map_err(Failure::refused)?;
            let resp = req.send().await.map_err(|e| {
                Failure::unreachable(anyhow!(e).context(format!("fetching the configuration from {server}")))
            })?;
            let status = resp.status();
            if status == reqwest::StatusCode::NOT_MODIFIED {
                return Ok(None);
            }
            let body = resp.bytes().await.map_err(Failure::unreachable)?;
            if !status.is_success() {
                let error = anyhow!("configuration refused by {server} ({status}): {}", String::from_utf8_lossy(&body));
                return Err(Failure::status(status, error));
            }
            let config: NodeConfig =
                serde_json::from_slice(&body).context("the configuration does not decode").map_err(Failure::refused)?;
            Ok((config.revision > after).then_some(config))
        })
        .await
    }

    async fn report(&self, report: NodeReport) -> anyhow::Result<()> {
        let body = serde_json::to_vec(&report)?;
        let body = &body;
        self.on_servers(|server| async move {
            let req = self
                .signed(&server, Method::POST, REPORT_PATH, body.clone(), Duration::from_secs(10))
                .map_err(Failure::refused)?;
            let resp = req
                .send()
                .await
                .map_err(|e| Failure::unreachable(anyhow!(e).context(format!("reporting to {server}"))))?;
            let status = resp.status();
            if !status.is_success() {
                let body = resp.bytes().await.unwrap_or_default();
                let error = anyhow!("report refused by {server} ({status}): {}", String::from_utf8_lossy(&body));
                return Err(Failure::status(status, error));
            }
            Ok(())
        })
        .await
    }
}

/// The default data directory of a node.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from(".flotilla-lb")
}
