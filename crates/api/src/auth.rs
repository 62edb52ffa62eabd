//! Request authentication: SigV4 against the root key pair, a joined agent's instance key
//! (`identity::instance_keys`) or a load balancer node's key (`identity::node_keys`), answering who signed ([`Principal`]). What each principal may do
//! is checked where the request is served.

use std::sync::Arc;
use std::time::SystemTime;

use axum::http::{HeaderMap, Method, Uri};
use flotilla_sigv4::{AuthError, SecretFn, Verifier};

use crate::context::Ctx;
use crate::credentials::RootCredentials;
use crate::error::ApiError;
use crate::identity::instance_keys::Keyring;
use crate::identity::Principal;

pub struct Authenticator {
    /// ECS's verifier: the one for every request that is not another service's.
    verifier: Verifier,
    /// One verifier per other service served on the listener (their key caches are per service).
    others: Vec<(&'static str, Verifier)>,
    root: RootCredentials,
    keyring: Keyring,
}

/// The access key id an `Authorization` header names, if it names one.
fn access_key_id(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (_, rest) = auth.split_once("Credential=")?;
    rest.split('/').next()
}

impl Authenticator {
    pub fn new(region: &str, root: RootCredentials, store: Arc<dyn flotilla_store::Store>) -> Self {
        Authenticator {
            verifier: Self::verifier("ecs", region),
            others: Vec::new(),
            root,
            keyring: Keyring::new(store),
        }
    }

    fn verifier(service: &str, region: &str) -> Verifier {
        Verifier::new(service).with_regions([region.to_string()]).refuse_unsigned_payload()
    }

    /// Also verifies signatures made for these services (the extensions' signing names).
    pub fn with_services(mut self, region: &str, services: impl IntoIterator<Item = &'static str>) -> Self {
        self.others.extend(services.into_iter().map(|s| (s, Self::verifier(s, region))));
        self
    }

    /// Verifies an ECS signature and says whose key made it.
    pub async fn authenticate(
        &self,
        ctx: &Ctx,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Principal, ApiError> {
        self.authenticate_with(&self.verifier, ctx, method, uri, headers, body).await
    }

    /// Verifies a signature made for `service` (one given to [`Self::with_services`], else ECS).
    pub async fn authenticate_for(
        &self,
        service: &str,
        ctx: &Ctx,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Principal, ApiError> {
        let verifier = self.others.iter().find(|(s, _)| *s == service).map(|(_, v)| v).unwrap_or(&self.verifier);
        self.authenticate_with(verifier, ctx, method, uri, headers, body).await
    }

    async fn authenticate_with(
        &self,
        verifier: &Verifier,
        ctx: &Ctx,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Principal, ApiError> {
        if let Some(akid) = access_key_id(headers) {
            self.keyring.load(akid).await?;
        }
        let secrets = SecretFn(|akid: &str| {
            if akid == self.root.access_key_id {
                Some(self.root.secret_access_key.clone())
            } else {
                self.keyring
                    .get(akid)
                    .map(|k| k.secret_access_key.clone())
                    .or_else(|| self.keyring.node(akid).map(|k| k.secret_access_key.clone()))
            }
        });
        let verified = verifier
            .verify(method, uri, headers, body, SystemTime::now(), &secrets)
            .map_err(|e: AuthError| ApiError::new(e.code(), e.message()))?;
        if verified.access_key_id == self.root.access_key_id {
            return Ok(Principal::Root);
        }
        if let Some(node) = self.keyring.node(&verified.access_key_id) {
            return Ok(Principal::LoadBalancerNode { node_id: node.node_id.clone() });
        }
        let record = self.keyring.get(&verified.access_key_id).ok_or_else(|| {
            ApiError::new("UnrecognizedClientException", "The security token included in the request is invalid.")
        })?;
        self.keyring.principal(ctx, &record)
    }
}
