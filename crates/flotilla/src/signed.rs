//! The signed HTTP client of the user-facing commands (`flotilla logs`, `flotilla token`): the
//! endpoint, region and key pair resolved the way the aws CLI resolves them, and requests signed
//! with SigV4 (service `ecs`, empty body) like any ECS call. An error answer becomes
//! `Code: message`. An `https://` server is trusted through `AWS_CA_BUNDLE`, as the aws CLI
//! trusts it, else through the system's roots.
//!
//! The server may be a comma-separated list (the servers of one control plane): a request goes
//! to the first that answers, in the order given; one that cannot be reached or answers 5xx is
//! passed over for the next.

use std::time::SystemTime;

use anyhow::{anyhow, bail, Context};
use flotilla_agent::session::Endpoints;
use flotilla_sigv4::{sign, Credentials, SigningParams};
use http::{HeaderMap, Method, Uri};

/// The first set variable of `names`.
pub fn env_first(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

/// The key pair: FLOTILLA_* first, then the AWS_* pair the aws CLI uses.
fn credentials() -> anyhow::Result<Credentials> {
    let pairs =
        [("FLOTILLA_ACCESS_KEY_ID", "FLOTILLA_SECRET_ACCESS_KEY"), ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")];
    for (id, secret) in pairs {
        if let (Some(id), Some(secret)) = (env_first(&[id]), env_first(&[secret])) {
            return Ok(Credentials::new(id, secret));
        }
    }
    bail!("no credentials: set FLOTILLA_ACCESS_KEY_ID and FLOTILLA_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) to the pair the server printed")
}

/// Where requests go and who signs them.
pub struct Endpoint {
    pub servers: Endpoints,
    pub region: String,
    pub credentials: Credentials,
    http: reqwest::Client,
}

impl Endpoint {
    /// `server` and `region` from flags, else the aws CLI's variables, else the defaults.
    pub fn resolve(server: Option<String>, region: Option<String>) -> anyhow::Result<Self> {
        let server = server
            .or_else(|| env_first(&["AWS_ENDPOINT_URL_ECS", "AWS_ENDPOINT_URL", "FLOTILLA_SERVER"]))
            .unwrap_or_else(|| "http://127.0.0.1:4580".into());
        let region = region
            .or_else(|| env_first(&["AWS_REGION", "AWS_DEFAULT_REGION", "FLOTILLA_REGION"]))
            .unwrap_or_else(|| "us-east-1".into());
        let ca = env_first(&["AWS_CA_BUNDLE"]).map(std::path::PathBuf::from);
        Self::new(server, region, credentials()?, ca.as_deref())
    }

    pub fn new(
        server: String,
        region: String,
        credentials: Credentials,
        ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        // In the order given: the first server that answers.
        let servers = Endpoints::parse(&server).context("--server")?.starting_at(0);
        let mut http = reqwest::Client::builder().connect_timeout(flotilla_agent::session::api_client::CONNECT_TIMEOUT);
        if servers.urls().any(|u| u.starts_with("https://")) {
            let tls = flotilla_agent::session::tls::client_config(ca)?;
            http = http.use_preconfigured_tls((*tls).clone());
        }
        let http = http.build()?;
        Ok(Endpoint { servers, region, credentials, http })
    }

    /// Sends a signed request with an empty body to `path_and_query` on the first server that
    /// answers; an error answer is an error.
    pub async fn send(&self, method: Method, path_and_query: &str) -> anyhow::Result<reqwest::Response> {
        let answered = self
            .servers
            .try_each(
                |server| {
                    let method = method.clone();
                    async move { self.send_to(&server, method, path_and_query).await }
                },
                |(fail_over, _)| *fail_over,
            )
            .await;
        answered.map_err(|(_, e)| e)
    }

    /// [`Endpoint::send`] to one server; a failure says whether the next server may answer.
    async fn send_to(
        &self,
        server: &str,
        method: Method,
        path_and_query: &str,
    ) -> Result<reqwest::Response, (bool, anyhow::Error)> {
        let url = format!("{server}{path_and_query}");
        let uri: Uri = url.parse().with_context(|| format!("bad server URL {server}")).map_err(|e| (false, e))?;
        let mut headers = HeaderMap::new();
        let params = SigningParams {
            credentials: &self.credentials,
            region: &self.region,
            service: "ecs",
            time: SystemTime::now(),
        };
        sign(&method, &uri, &mut headers, b"", &params)
            .map_err(|e| (false, anyhow!("cannot sign the request: {e}")))?;
        let resp = self
            .http
            .request(method, url)
            .headers(headers)
            .send()
            .await
            .with_context(|| format!("cannot reach the control plane at {server}"))
            .map_err(|e| (true, e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            let msg = match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(v) => format!(
                    "{}: {}",
                    v.get("__type").and_then(|c| c.as_str()).unwrap_or("Error"),
                    v.get("message").and_then(|m| m.as_str()).unwrap_or(&body)
                ),
                Err(_) => format!("HTTP {status}: {body}"),
            };
            return Err((status.is_server_error(), anyhow!(msg)));
        }
        Ok(resp)
    }

    /// [`Endpoint::send`] to `path_and_query`, answering JSON.
    pub async fn json(&self, method: Method, path_and_query: &str) -> anyhow::Result<serde_json::Value> {
        let resp = self.send(method, path_and_query).await?;
        resp.json().await.context("the answer is not JSON")
    }
}
