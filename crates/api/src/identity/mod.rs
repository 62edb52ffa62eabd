//! Who may do what: the root key pair (every API call), join tokens (one registration into one
//! cluster) and the key pair each joined agent receives (its own instance's session, nothing else).
//!
//! A join token is minted by the root principal (`POST /v1/tokens`), signed with the root secret
//! so it cannot be forged, and recorded in the store so that it survives a restart and can be
//! revoked. An agent presents it once (`POST /v1/join`): the server registers its container
//! instance and hands back an access key pair bound to that instance. Authentication
//! (`crate::auth`) maps each request's access key to a [`Principal`]; the API, the logs endpoint
//! and the token endpoints want [`Principal::Root`], the agent session wants the instance's own.
//! An instance key stops working when its instance is deregistered. Load balancer nodes join the
//! same way with a token minted for [`tokens::LOAD_BALANCER_NODES`] (at `/v1/lb/join`, served
//! by the ELBv2 crate) and receive a key pair of their own (`node_keys`) that opens nothing but
//! their `/v1/lb/*` routes.
//!
//! These records live under `identity/` in the store and are read through it, not through the
//! cache: they are few, and read once per session or join.

pub mod instance_keys;
pub mod node_keys;
pub mod tokens;

use crate::error::ApiError;

/// Who signed a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The root key pair: every operation.
    Root,
    /// A joined agent: its own container instance's session only.
    Instance { cluster: String, instance_arn: String },
    /// A joined load balancer node (`identity::node_keys`): the `/v1/lb/*` routes only.
    LoadBalancerNode { node_id: String },
}

impl Principal {
    /// Refuses anything but the root key pair, as AWS refuses a principal without the permission.
    pub fn require_root(&self, action: &str) -> Result<(), ApiError> {
        match self {
            Principal::Root => Ok(()),
            Principal::Instance { instance_arn, .. } => Err(access_denied(format!(
                "User: {instance_arn} is not authorized to perform: {action} because no identity-based policy allows the {action} action"
            ))),
            Principal::LoadBalancerNode { node_id } => Err(access_denied(format!(
                "User: load-balancer-node/{node_id} is not authorized to perform: {action} because no identity-based policy allows the {action} action"
            ))),
        }
    }
}

/// `len` characters drawn from `alphabet` by the OS's generator: key ids and secrets.
pub(crate) fn random(len: usize, alphabet: &[u8]) -> String {
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    (0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char).collect()
}

pub fn access_denied(message: impl Into<String>) -> ApiError {
    ApiError::new("AccessDeniedException", message)
}
