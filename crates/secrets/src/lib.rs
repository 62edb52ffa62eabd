//! The self-hosted secret stores on the control plane: SSM Parameter Store (`ssm`) and Secrets
//! Manager (`secretsmanager`), both JSON 1.1 APIs served as one [`flotilla_api::Extension`] and
//! routed by SigV4 signing name (or, unsigned, by `X-Amz-Target` prefix). Every value is sealed
//! with AES-256-GCM under a key kept in a file apart from the store ([`keyring`]); the records
//! live under their own store roots, which the API cache skips. The extension also resolves
//! tasks' `secrets[].valueFrom` for the agent ([`resolve`]) and runs the leader's sweep that
//! purges deleted secrets and re-seals values after a key rotation ([`sweep`]).

mod error;
mod input;
pub mod keyring;
pub mod resolve;
pub mod sm;
pub mod ssm;
mod store;
pub mod sweep;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Response;
use flotilla_api::supervisor::LoopHandle;
use flotilla_api::{ApiError, Ctx, Extension, ExtensionRequest, ExtensionResponse, SecretSource};
use futures::future::BoxFuture;
use serde_json::Value;

pub use error::AwsError;
pub use keyring::{KeyError, KeyRing, Keys};

/// How often the leader sweeps by default.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The key file's name in the data directory, when no other is given.
pub const DEFAULT_KEY_FILE: &str = "secrets.key";

/// The key file to use: `given`, else `secrets.key` in the data directory.
pub fn key_file(given: Option<&Path>, data_dir: &Path) -> PathBuf {
    given.map(Path::to_path_buf).unwrap_or_else(|| data_dir.join(DEFAULT_KEY_FILE))
}

/// Loads the key file (creating it, mode 0600, when absent): the keys, and whether it was made.
pub fn open_keys(path: &Path) -> Result<(Keys, bool), KeyError> {
    let (ring, created) = KeyRing::load_or_create(path)?;
    Ok((Keys::new(path.to_path_buf(), ring), created))
}

/// Both services, to add to the server's extensions.
pub struct SecretsApi {
    keys: Keys,
    sweep_every: Duration,
    resolver: Arc<resolve::Resolver>,
}

pub fn extension(keys: Keys) -> Arc<dyn Extension> {
    extension_with(keys, SWEEP_EVERY)
}

/// As [`extension`], sweeping every `sweep_every` (tests sweep often).
pub fn extension_with(keys: Keys, sweep_every: Duration) -> Arc<dyn Extension> {
    let resolver = Arc::new(resolve::Resolver { keys: keys.clone() });
    Arc::new(SecretsApi { keys, sweep_every, resolver })
}

impl SecretsApi {
    async fn serve(
        &self,
        ctx: &Ctx,
        signing_name: &str,
        target: &str,
        body: &[u8],
    ) -> (&'static str, error::Result<Value>) {
        let (prefix, operations, invalid): (_, _, fn(String) -> AwsError) = if signing_name == ssm::SIGNING_NAME {
            (ssm::TARGET_PREFIX, ssm::OPERATIONS, AwsError::validation)
        } else {
            (sm::TARGET_PREFIX, sm::OPERATIONS, AwsError::invalid_parameter)
        };
        let Some(op) = flotilla_api::json_service::operation(target, prefix, operations) else {
            return (
                "Unknown",
                Err(AwsError::new("UnknownOperationException", format!("Unknown operation {target:?}."))),
            );
        };
        let input = match input::Input::parse(body, invalid) {
            Ok(input) => input,
            Err(e) => return (op, Err(e)),
        };
        let result = if signing_name == ssm::SIGNING_NAME {
            ssm::dispatch(ctx, &self.keys, op, &input).await
        } else {
            sm::dispatch(ctx, &self.keys, op, &input).await
        };
        (op, result)
    }
}

impl Extension for SecretsApi {
    fn signing_names(&self) -> &'static [&'static str] {
        &[ssm::SIGNING_NAME, sm::SIGNING_NAME]
    }

    fn claims(&self, _action: &str, _version: Option<&str>) -> Option<&'static str> {
        None
    }

    fn claims_target(&self, prefix: &str) -> Option<&'static str> {
        match prefix {
            ssm::TARGET_PREFIX => Some(ssm::SIGNING_NAME),
            sm::TARGET_PREFIX => Some(sm::SIGNING_NAME),
            _ => None,
        }
    }

    fn handle<'a>(&'a self, request: ExtensionRequest<'a>) -> BoxFuture<'a, ExtensionResponse> {
        Box::pin(async move {
            let target = request.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let (operation, result) = self.serve(request.ctx, request.signing_name, target, request.body).await;
            flotilla_api::json_service::answer(request.request_id, "secrets", operation, result)
        })
    }

    fn error(&self, _signing_name: &'static str, request_id: &str, error: &ApiError) -> Response<Body> {
        let body = serde_json::json!({ "__type": error.code, "message": error.message, "Message": error.message });
        flotilla_api::json_service::respond(request_id, error.status(), &body)
    }

    fn start(&self, ctx: &Ctx) -> Vec<LoopHandle> {
        vec![
            sweep::start(ctx, self.keys.clone(), self.sweep_every),
            sweep::start_reload(ctx, self.keys.clone(), self.sweep_every),
        ]
    }

    fn secret_source(&self) -> Option<Arc<dyn SecretSource>> {
        Some(self.resolver.clone())
    }
}
