//! Request authentication: SigV4 against the root key pair.

use std::time::SystemTime;

use axum::http::{HeaderMap, Method, Uri};
use flotilla_sigv4::{AuthError, Credentials, Verifier};

use crate::credentials::RootCredentials;
use crate::error::ApiError;

pub struct Authenticator {
    verifier: Verifier,
    credentials: Credentials,
}

impl Authenticator {
    pub fn new(region: &str, root: RootCredentials) -> Self {
        Authenticator {
            verifier: Verifier::new("ecs").with_regions([region.to_string()]).refuse_unsigned_payload(),
            credentials: Credentials::new(root.access_key_id, root.secret_access_key),
        }
    }

    pub fn verify(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
        self.verifier
            .verify(method, uri, headers, body, SystemTime::now(), &self.credentials)
            .map(|_| ())
            .map_err(|e: AuthError| ApiError::new(e.code(), e.message()))
    }
}
