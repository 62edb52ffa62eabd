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
        Ok(ApiClient { endpoints, region: region.into(), credentials, http, tls })
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
        self.endpoints
            .try_each(|server| async move { self.call_at(&server, operation, body).await }, is_unreachable)
            .await
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server answering every request with `status` and `body`, counting requests.
    async fn canned(status: u16, body: &'static str) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = count.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // The whole request (headers, then Content-Length bytes), then the answer.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stream.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(resp.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        (url, count)
    }

    #[tokio::test]
    async fn a_call_moves_past_unreachable_and_failing_servers_but_not_past_a_refusal() {
        let dead = format!(
            "http://127.0.0.1:{}",
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        );
        let (unavailable, _) = canned(503, r#"{"__type":"ServiceUnavailable","message":"going away"}"#).await;
        let (live, live_calls) = canned(200, r#"{"ok":true}"#).await;
        let list = format!("{dead},{unavailable},{live}");
        let client = ApiClient::new(&list, "us-east-1", Credentials::new("AK", "SK")).unwrap();
        let client = ApiClient { endpoints: client.endpoints.clone().starting_at(0), ..client };
        let answer: serde_json::Value = client.call("ListClusters", &serde_json::json!({})).await.unwrap();
        assert_eq!(answer["ok"], true);
        assert_eq!(client.endpoint(), live, "later calls start at the server that answered");
        let _: serde_json::Value = client.post_unsigned("/v1/join", &serde_json::json!({})).await.unwrap();
        assert_eq!(live_calls.load(std::sync::atomic::Ordering::SeqCst), 2);

        // A refusal is the same on every server: it is not taken elsewhere.
        let (refusing, _) = canned(400, r#"{"__type":"ClientException","message":"no"}"#).await;
        let (other, other_calls) = canned(200, r#"{}"#).await;
        let client = ApiClient::new(&format!("{refusing},{other}"), "us-east-1", Credentials::new("AK", "SK")).unwrap();
        let client = ApiClient { endpoints: client.endpoints.clone().starting_at(0), ..client };
        let err = client.call::<_, serde_json::Value>("ListClusters", &serde_json::json!({})).await.unwrap_err();
        assert!(matches!(err, ApiClientError::Api { status: 400, .. }), "{err}");
        assert_eq!(other_calls.load(std::sync::atomic::Ordering::SeqCst), 0);

        // Every server down: the last failure, for the caller to wait out.
        let client =
            ApiClient::new(&format!("{dead},{unavailable}"), "us-east-1", Credentials::new("AK", "SK")).unwrap();
        let err = client.call::<_, serde_json::Value>("ListClusters", &serde_json::json!({})).await.unwrap_err();
        assert!(is_unreachable(&err), "{err}");
    }
}
