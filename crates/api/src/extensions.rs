//! Other AWS services on the control plane's listener. An [`Extension`] serves one or more
//! services named by their SigV4 signing name (`ec2`, `autoscaling`, ...): `POST /` requests whose
//! credential scope names one of them go to it instead of the ECS dispatcher, after the signature
//! is verified for that service and the signer is known to be the root key pair. With signature
//! checks disabled (dev mode) a query-protocol body is routed by its `Action` instead. An
//! extension may also run loops under the context's supervisor and add HTTP routes of its own.

use std::fmt;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Response};
use axum::Router;
use futures::future::BoxFuture;

use crate::context::Ctx;
use crate::error::ApiError;
use crate::identity::Principal;
use crate::supervisor::LoopHandle;

/// One request handed to an extension.
pub struct ExtensionRequest<'a> {
    pub ctx: &'a Ctx,
    /// Always [`Principal::Root`] today: the server refuses other signers before this point.
    pub principal: &'a Principal,
    /// The service the request was signed for (or, unsigned, the one its action belongs to).
    pub signing_name: &'static str,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    pub request_id: &'a str,
}

/// What an extension answered, with what the server's metrics count.
pub struct ExtensionResponse {
    pub response: Response<Body>,
    /// The operation, as the metrics label it (`ec2:DescribeVpcs`); `Unknown` when unrecognized.
    pub operation: &'static str,
    /// The error code when the answer is an error.
    pub error: Option<&'static str>,
}

/// An AWS service served beside ECS.
pub trait Extension: Send + Sync + 'static {
    /// The SigV4 service names it answers for.
    fn signing_names(&self) -> &'static [&'static str];

    /// For unsigned requests: the signing name of the service that serves `action` (of API
    /// `version`, when the request gives one), if this extension has it.
    fn claims(&self, action: &str, version: Option<&str>) -> Option<&'static str>;

    /// For unsigned JSON requests: the signing name of the service whose `X-Amz-Target` prefix
    /// (the part before the `.`, e.g. `Route53AutoNaming_v20170314`) is `prefix`, if this
    /// extension has it. JSON services other than ECS override this.
    fn claims_target(&self, _prefix: &str) -> Option<&'static str> {
        None
    }

    /// Serves one request.
    fn handle<'a>(&'a self, request: ExtensionRequest<'a>) -> BoxFuture<'a, ExtensionResponse>;

    /// An error the server raised before handling (authentication, authorization), written in
    /// the service's own error format.
    fn error(&self, signing_name: &'static str, request_id: &str, error: &ApiError) -> Response<Body>;

    /// Starts the extension's background loops under `ctx.loops`; the server stops the handles
    /// when it shuts down.
    fn start(&self, _ctx: &Ctx) -> Vec<LoopHandle> {
        Vec::new()
    }

    /// Extra HTTP routes (admin endpoints), merged into the server's router: their paths must
    /// not overlap the server's own (`/health`, `/metrics`, `/v1/...`), or the merge panics at
    /// start.
    /// `auth` checks their requests' signatures as the server's own routes do (`None` when the
    /// server runs with authentication disabled).
    fn routes(&self, _ctx: &Ctx, _auth: Option<Arc<crate::auth::Authenticator>>) -> Option<Router> {
        None
    }

    /// The secret store this extension serves, for resolving tasks' secrets at start.
    fn secret_source(&self) -> Option<Arc<dyn crate::agent_services::SecretSource>> {
        None
    }

    /// The log store this extension serves, for tasks' `awslogs` output.
    fn log_sink(&self) -> Option<Arc<dyn crate::agent_services::LogSink>> {
        None
    }
}

/// The extensions a server runs, cheap to clone and printable inside `ServerConfig`.
#[derive(Clone, Default)]
pub struct Extensions(pub Vec<Arc<dyn Extension>>);

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|e| e.signing_names())).finish()
    }
}

impl Extensions {
    pub fn new(extensions: impl IntoIterator<Item = Arc<dyn Extension>>) -> Self {
        Extensions(extensions.into_iter().collect())
    }

    /// The services agent sessions use, from the first extension offering each.
    pub fn agent_services(&self) -> crate::agent_services::AgentServices {
        crate::agent_services::AgentServices {
            secrets: self.0.iter().find_map(|e| e.secret_source()),
            logs: self.0.iter().find_map(|e| e.log_sink()),
        }
    }

    /// Every signing name served, ECS's aside.
    pub fn signing_names(&self) -> Vec<&'static str> {
        self.0.iter().flat_map(|e| e.signing_names().iter().copied()).collect()
    }

    /// The extension serving `signing_name` and that name as `'static`.
    pub fn by_signing_name(&self, signing_name: &str) -> Option<(&Arc<dyn Extension>, &'static str)> {
        self.0.iter().find_map(|e| e.signing_names().iter().find(|n| **n == signing_name).map(|n| (e, *n)))
    }

    /// For unsigned requests: the extension whose service has this query `Action`.
    pub fn by_action(&self, body: &[u8]) -> Option<(&Arc<dyn Extension>, &'static str)> {
        let (action, version) = action_of(body)?;
        self.0.iter().find_map(|e| e.claims(&action, version.as_deref()).map(|n| (e, n)))
    }
}

impl Extensions {
    /// For unsigned JSON requests: the extension whose service has this `X-Amz-Target`.
    pub fn by_target(&self, target: &str) -> Option<(&Arc<dyn Extension>, &'static str)> {
        let (prefix, _) = target.split_once('.')?;
        self.0.iter().find_map(|e| e.claims_target(prefix).map(|n| (e, n)))
    }
}

/// The `Action` and `Version` of a form body, if it has an action.
pub fn action_of(body: &[u8]) -> Option<(String, Option<String>)> {
    let params = flotilla_query::Params::parse(body, flotilla_query::Dialect::Ec2);
    Some((params.action()?.to_string(), params.version().map(str::to_string)))
}

/// The service a request's `Authorization` header scopes its credential to.
pub fn signing_name_of(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (_, rest) = auth.split_once("Credential=")?;
    let credential = rest.split([',', ' ']).next()?;
    credential.split('/').nth(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_name_is_the_credential_scopes_service() {
        let mut headers = HeaderMap::new();
        assert_eq!(signing_name_of(&headers), None);
        let auth = "AWS4-HMAC-SHA256 Credential=AKID/20261206/us-east-1/autoscaling/aws4_request, \
                    SignedHeaders=host;x-amz-date, Signature=00";
        headers.insert(axum::http::header::AUTHORIZATION, auth.parse().unwrap());
        assert_eq!(signing_name_of(&headers), Some("autoscaling"));
        headers.insert(axum::http::header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(signing_name_of(&headers), None);
    }

    struct JsonService;

    impl Extension for JsonService {
        fn signing_names(&self) -> &'static [&'static str] {
            &["servicediscovery"]
        }
        fn claims(&self, _action: &str, _version: Option<&str>) -> Option<&'static str> {
            None
        }
        fn claims_target(&self, prefix: &str) -> Option<&'static str> {
            (prefix == "Route53AutoNaming_v20170314").then_some("servicediscovery")
        }
        fn handle<'a>(&'a self, _request: ExtensionRequest<'a>) -> BoxFuture<'a, ExtensionResponse> {
            unreachable!("routing only")
        }
        fn error(&self, _: &'static str, _: &str, _: &ApiError) -> Response<Body> {
            unreachable!("routing only")
        }
    }

    #[test]
    fn unsigned_json_requests_go_to_the_extension_claiming_their_target_prefix() {
        let extensions = Extensions::new([Arc::new(JsonService) as Arc<dyn Extension>]);
        let found = extensions.by_target("Route53AutoNaming_v20170314.ListNamespaces").map(|(_, n)| n);
        assert_eq!(found, Some("servicediscovery"));
        assert!(extensions.by_target("AmazonEC2ContainerServiceV20141113.ListClusters").is_none());
        assert!(extensions.by_target("no-dot").is_none());
    }

    #[test]
    fn the_action_comes_from_a_form_body_only() {
        assert_eq!(
            action_of(b"Action=DescribeVpcs&Version=2016-11-15"),
            Some(("DescribeVpcs".into(), Some("2016-11-15".into())))
        );
        assert_eq!(action_of(b"Action=DescribeTags"), Some(("DescribeTags".into(), None)));
        assert_eq!(action_of(br#"{"cluster":"default"}"#), None);
        assert_eq!(action_of(b""), None);
    }
}
