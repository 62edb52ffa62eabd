//! Request authentication: SigV4 against the root key pair or a joined agent's instance key
//! (`identity::instance_keys`), answering who signed ([`Principal`]). What each principal may do
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
    verifier: Verifier,
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
            verifier: Verifier::new("ecs").with_regions([region.to_string()]).refuse_unsigned_payload(),
            root,
            keyring: Keyring::new(store),
        }
    }

    /// Verifies the signature and says whose key made it.
    pub async fn authenticate(
        &self,
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
                self.keyring.get(akid).map(|k| k.secret_access_key.clone())
            }
        });
        let verified = self
            .verifier
            .verify(method, uri, headers, body, SystemTime::now(), &secrets)
            .map_err(|e: AuthError| ApiError::new(e.code(), e.message()))?;
        if verified.access_key_id == self.root.access_key_id {
            return Ok(Principal::Root);
        }
        let record = self.keyring.get(&verified.access_key_id).ok_or_else(|| {
            ApiError::new("UnrecognizedClientException", "The security token included in the request is invalid.")
        })?;
        self.keyring.principal(ctx, &record)
    }
}
