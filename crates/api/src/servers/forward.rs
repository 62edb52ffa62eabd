//! Reaching an agent whose session is on another server: a log read (`GET /v1/logs`) that lands
//! on a server without the session goes to the server that holds it, and its answer streams back
//! as it comes (a `follow` too).
//!
//! The forward is an ordinary API request, SigV4-signed afresh with the root credentials that
//! all servers of one control plane share, so the receiving server authenticates it like any
//! other: no unsigned or specially trusted path between servers exists. It carries
//! [`FORWARDED_BY`] so that it is never forwarded again (a server that does not hold the session
//! any more answers with an error rather than bounce it on): the header only ever narrows what a
//! request may do, so it need not be signed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Response, Uri};
use flotilla_model::arn::{short_id, Resource};
use flotilla_sigv4::{Credentials, SigningParams};

use super::ServerInfo;
use crate::context::Ctx;
use crate::credentials::RootCredentials;
use crate::error::{ApiError, ApiResult};
use crate::state::keys;

/// The header a forwarded request carries: the id of the server that forwarded it.
pub const FORWARDED_BY: &str = "x-flotilla-forwarded-by";
/// How long connecting to another server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The answer's headers that travel back with it.
const KEPT_HEADERS: [&str; 3] = ["content-type", "x-amzn-errortype", "x-amzn-requestid"];

#[derive(Debug, thiserror::Error)]
pub enum PeersError {
    #[error("cannot build the HTTP client that reaches other servers: {0}")]
    Client(#[from] reqwest::Error),
}

/// How this server reaches the others: an HTTP client and the credentials to sign with.
#[derive(Clone)]
pub struct Peers {
    http: reqwest::Client,
    credentials: Credentials,
    region: String,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").field("credentials", &self.credentials).field("region", &self.region).finish()
    }
}

impl Peers {
    /// Signs with `root` for `region`; `tls` is the client configuration for `https://` peers
    /// (trusting the control plane's CA), `None` when they serve plain HTTP.
    pub fn new(
        root: &RootCredentials,
        region: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, PeersError> {
        let mut http = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
        if let Some(tls) = tls {
            http = http.use_preconfigured_tls((*tls).clone());
        }
        Ok(Peers {
            http: http.build()?,
            credentials: Credentials::new(&root.access_key_id, &root.secret_access_key),
            region: region.to_string(),
        })
    }

    /// Sends `GET path_and_query` to `peer`, signed, as forwarded by server `me`, and answers with
    /// its response: status, content type, error type and request id, and the body as it streams.
    pub async fn forward(&self, peer: &ServerInfo, me: &str, path_and_query: &str) -> Result<Response<Body>, ApiError> {
        let unreachable = |e: &dyn std::fmt::Display| {
            ApiError::server(format!("Server {} ({}) could not be reached: {e}", peer.id, peer.url))
        };
        let url = format!("{}{path_and_query}", peer.url.trim_end_matches('/'));
        let uri: Uri = url.parse().map_err(|e| unreachable(&e))?;
        let mut headers = HeaderMap::new();
        let params = SigningParams {
            credentials: &self.credentials,
            region: &self.region,
            service: "ecs",
            time: SystemTime::now(),
        };
        flotilla_sigv4::sign(&Method::GET, &uri, &mut headers, b"", &params).map_err(|e| unreachable(&e))?;
        let resp = self
            .http
            .get(url.as_str())
            .headers(headers)
            .header(FORWARDED_BY, me)
            .send()
            .await
            .map_err(|e| unreachable(&e))?;
        let mut out = Response::builder().status(resp.status().as_u16());
        for name in KEPT_HEADERS {
            if let Some(v) = resp.headers().get(name).and_then(|v| v.to_str().ok()) {
                out = out.header(name, v);
            }
        }
        let peer_id = peer.id.clone();
        out.body(Body::from_stream(relay(resp, peer_id)))
            .map_err(|e| ApiError::server(format!("The answer of server {} could not be relayed: {e}", peer.id)))
    }
}

/// The peer's body, chunk by chunk; if the peer goes away mid-answer, a last line saying so in
/// the shape of a log read's errors.
fn relay(resp: reqwest::Response, peer: String) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send {
    futures::stream::unfold(Some(resp), move |resp| {
        let peer = peer.clone();
        async move {
            let mut resp = resp?;
            match resp.chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(resp))),
                Ok(None) => None,
                Err(e) => {
                    let message = format!("Server {peer}, which holds the agent's session, went away mid-answer: {e}");
                    let mut line =
                        serde_json::to_vec(&serde_json::json!({"__type": "ServerException", "message": message}))
                            .unwrap_or_default();
                    line.push(b'\n');
                    Some((Ok(Bytes::from(line)), None))
                }
            }
        }
    })
}

/// The live server other than `me` that holds the session of `instance_arn`'s agent, if any.
pub async fn holder(ctx: &Ctx, me: &str, instance_arn: &str) -> ApiResult<Option<ServerInfo>> {
    let key = match ctx.arns.parse(instance_arn) {
        Ok(Resource::ContainerInstance { cluster: Some(cluster), id }) => keys::instance(&cluster, short_id(&id)),
        _ => return Ok(None),
    };
    let server = {
        let ix = ctx.cache.read();
        let Some(entry) = ix.instances.get(&key) else { return Ok(None) };
        match (&entry.value.session_server, entry.value.instance.agent_connected) {
            (Some(s), Some(true)) if s != me => s.clone(),
            _ => return Ok(None),
        }
    };
    Ok(super::live(ctx).await?.into_iter().find(|s| s.id == server))
}
