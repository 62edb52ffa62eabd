//! A small SigV4-signing client for the ECS JSON API, for the agent's own calls. (The agent makes
//! a handful of calls; the official SDK would cost more to build than it saves.)

use std::time::{Duration, SystemTime};

use flotilla_sigv4::{sign, Credentials, SigningParams};
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde::de::DeserializeOwned;
use serde::Serialize;

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

#[derive(Clone)]
pub struct ApiClient {
    endpoint: String,
    region: String,
    credentials: Credentials,
    http: reqwest::Client,
    /// The TLS settings of `https://` endpoints, shared with the session's `wss://` connection.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl ApiClient {
    pub fn new(endpoint: &str, region: &str, credentials: Credentials) -> Result<Self, ApiClientError> {
        Self::with_ca(endpoint, region, credentials, None)
    }

    /// A client of an `https://` endpoint trusting `ca` (PEM; the system's roots when `None`);
    /// for `http://` endpoints the same as [`ApiClient::new`].
    pub fn with_ca(
        endpoint: &str,
        region: &str,
        credentials: Credentials,
        ca: Option<&std::path::Path>,
    ) -> Result<Self, ApiClientError> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        let tls = if endpoint.starts_with("https://") {
            let config = super::tls::client_config(ca).map_err(|e| ApiClientError::Request(e.to_string()))?;
            builder = builder.use_preconfigured_tls((*config).clone());
            Some(config)
        } else {
            None
        };
        let http = builder.build().map_err(|e| ApiClientError::Request(e.to_string()))?;
        Ok(ApiClient {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: region.into(),
            credentials,
            http,
            tls,
        })
    }

    /// The TLS settings for the session's `wss://` connection, when the endpoint is `https://`.
    pub fn tls(&self) -> Option<std::sync::Arc<rustls::ClientConfig>> {
        self.tls.clone()
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
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
        let resp = self
            .http
            .post(format!("{}{path}", self.endpoint))
            .json(request)
            .send()
            .await
            .map_err(|source| ApiClientError::Transport { endpoint: self.endpoint.clone(), source })?;
        self.answer(resp).await
    }

    /// Calls one ECS operation.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        operation: &str,
        request: &Req,
    ) -> Result<Resp, ApiClientError> {
        let body = serde_json::to_vec(request).map_err(|e| ApiClientError::Request(e.to_string()))?;
        let url = format!("{}/", self.endpoint);
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
        sign(&Method::POST, &uri, &mut headers, &body, &params).map_err(|e| ApiClientError::Request(e.to_string()))?;
        let resp = self
            .http
            .post(&url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|source| ApiClientError::Transport { endpoint: self.endpoint.clone(), source })?;
        self.answer(resp).await
    }

    /// An answer's JSON, or its ECS error.
    async fn answer<Resp: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<Resp, ApiClientError> {
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ApiClientError::Transport { endpoint: self.endpoint.clone(), source })?;
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
}
