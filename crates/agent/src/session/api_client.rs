//! A small SigV4-signing client for the ECS JSON API, for the agent's own calls. (The agent makes
//! a handful of calls; the official SDK would cost more to build than it saves.)
//!
//! It talks to one of the control plane's servers ([`Endpoints`]); a call that finds its server
//! unreachable or answering 5xx is made again at once on the next, and fails only when every
//! server has failed it once.

use std::time::{Duration, SystemTime};

use flotilla_sigv4::{sign, Credentials, SigningParams};
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::endpoints::{Endpoints, EndpointsError};

/// How long reaching a server may take before the client moves to the next: a host that went
/// away (not refusing, just silent) must not hold an agent for the TCP handshake's minutes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    #[error("request to {endpoint} failed: {source}")]
    Transport { endpoint: String, source: reqwest::Error },
    #[error("{code}: {message}")]
    Api { code: String, message: String, status: u16 },
    #[error("bad endpoint or request: {0}")]
    Request(String),
    #[error("the answer does not decode: {0}")]
    Decode(String),
}

impl From<EndpointsError> for ApiClientError {
    fn from(e: EndpointsError) -> Self {
        ApiClientError::Request(e.to_string())
    }
}

/// Whether another server may answer where this one failed: it could not be reached, or it
/// answered 5xx (going away, not ready, overloaded). A 4xx would be the same anywhere.
pub fn is_unreachable(e: &ApiClientError) -> bool {
    match e {
        ApiClientError::Transport { .. } => true,
        ApiClientError::Api { status, .. } => *status >= 500,
        ApiClientError::Request(_) | ApiClientError::Decode(_) => false,
    }
}

/// A client of the control plane's servers; its clones share the rotation (see [`Endpoints`]).
#[derive(Clone)]
pub struct ApiClient {
    endpoints: Endpoints,
    region: String,
    credentials: Credentials,
    http: reqwest::Client,
    /// The TLS settings of `https://` endpoints, shared with the session's `wss://` connection.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl ApiClient {
    /// A client of `endpoint`: one server's URL, or several separated by commas.
    pub fn new(endpoint: &str, region: &str, credentials: Credentials) -> Result<Self, ApiClientError> {
        Self::with_ca(endpoint, region, credentials, None)
    }

    /// A client of `https://` servers trusting `ca` (PEM; the system's roots when `None`); for
    /// `http://` ones the same as [`ApiClient::new`].
    pub fn with_ca(
        endpoint: &str,
        region: &str,
        credentials: Credentials,
        ca: Option<&std::path::Path>,
    ) -> Result<Self, ApiClientError> {
        Self::with_endpoints(Endpoints::parse(endpoint)?, region, credentials, ca)
    }

    /// A client of `endpoints`, trusting `ca` for those that are `https://`.
    pub fn with_endpoints(
        endpoints: Endpoints,
        region: &str,
        credentials: Credentials,
        ca: Option<&std::path::Path>,
    ) -> Result<Self, ApiClientError> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30)).connect_timeout(CONNECT_TIMEOUT);
        let tls = if endpoints.urls().any(|u| u.starts_with("https://")) {
            let config = super::tls::client_config(ca).map_err(|e| ApiClientError::Request(e.to_string()))?;
            builder = builder.use_preconfigured_tls((*config).clone());
            Some(config)
        } else {
            None
        };
        let http = builder.build().map_err(|e| ApiClientError::Request(e.to_string()))?;
        Ok(ApiClient {
            endpoints,
            region: region.into(),
            credentials,
            http,
            tls,
        })
    }

    /// The TLS settings for the session's `wss://` connection, when a server is `https://`.
    pub fn tls(&self) -> Option<std::sync::Arc<rustls::ClientConfig>> {
        self.tls.clone()
    }

    /// The server the client is on now.
    pub fn endpoint(&self) -> String {
        self.endpoints.current().url.to_string()
    }

    /// The servers and the client's place among them (shared with its clones).
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The same client with a rotation of its own, starting at a random server: for another
    /// agent (a hollow fleet's) that should spread over the servers on its own.
    pub fn detached(&self) -> Self {
        ApiClient { endpoints: self.endpoints.detached(), ..self.clone() }
    }
    pub fn region(&self) -> &str {
        &self.region
    }
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The same server and connection pool, signing with other credentials (an agent's own, once
    /// it has joined with a token).
    pub fn with_credentials(&self, credentials: Credentials) -> Self {
        ApiClient { credentials, ..self.clone() }
    }

    /// POSTs `request` as JSON to `path`, unsigned: for `/v1/join`, whose body carries its own
    /// proof (a join token).
    pub async fn post_unsigned<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        request: &Req,
    ) -> Result<Resp, ApiClientError> {
        let body = serde_json::to_vec(request).map_err(|e| ApiClientError::Request(e.to_string()))?;
        let body = &body;
        self.endpoints
            .try_each(
                |server| async move {
                    let resp = self
                        .http
                        .post(format!("{server}{path}"))
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .map_err(|source| ApiClientError::Transport { endpoint: server.to_string(), source })?;
                    answer(&server, resp).await
                },
                is_unreachable,
            )
            .await
    }

    /// Calls one ECS operation.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        operation: &str,
        request: &Req,
    ) -> Result<Resp, ApiClientError> {
        let body = serde_json::to_vec(request).map_err(|e| ApiClientError::Request(e.to_string()))?;
        let body = &body;
        self.endpoints.try_each(|server| async move { self.call_at(&server, operation, body).await }, is_unreachable).await
    }

    /// Calls one ECS operation on `server`, signed for it.
    async fn call_at<Resp: DeserializeOwned>(
        &self,
        server: &str,
        operation: &str,
        body: &[u8],
    ) -> Result<Resp, ApiClientError> {
        let url = format!("{server}/");
        let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| ApiClientError::Request(e.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
        let target = format!("AmazonEC2ContainerServiceV20141113.{operation}");
        headers.insert(
            "x-amz-target",
            HeaderValue::from_str(&target).map_err(|e| ApiClientError::Request(e.to_string()))?,
        );
        let params = SigningParams {
            credentials: &self.credentials,
            region: &self.region,
            service: "ecs",
            time: SystemTime::now(),
        };
        sign(&Method::POST, &uri, &mut headers, body, &params).map_err(|e| ApiClientError::Request(e.to_string()))?;
        let resp = self
            .http
            .post(&url)
            .headers(headers)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|source| ApiClientError::Transport { endpoint: server.to_string(), source })?;
        answer(server, resp).await
    }
}

/// An answer's JSON, or its ECS error.
async fn answer<Resp: DeserializeOwned>(server: &str, resp: reqwest::Response) -> Result<Resp, ApiClientError> {
    let status = resp.status().as_u16();
    let bytes =
        resp.bytes().await.map_err(|source| ApiClientError::Transport { endpoint: server.to_string(), source })?;
    if status >= 300 {
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        return Err(ApiClientError::Api {
            code: v["__type"].as_str().unwrap_or("UnknownError").to_string(),
            message: v["message"].as_str().unwrap_or("").to_string(),
            status,
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiClientError::Decode(e.to_string()))
}
