//! The control plane's side of load balancer nodes (`flotilla lb`, crate `flotilla-lb`): nodes
//! join with a token and receive a key pair of their own (`http`, `records`), long-poll for the
//! configuration they serve (`config`, `feed`), and report what their health checks find and the
//! connections left to draining targets (`health`). Loops under the supervisor end draining
//! when its time is up and turn load balancers `active` once a node serves them (`loops`).
//!
//! Wiring: whoever serves ELBv2 as a `flotilla_api::Extension` merges [`routes`] from
//! `Extension::routes` and returns [`start`]'s handles from `Extension::start`; `flotilla up`
//! mints its in-process node's key with [`local_credentials`].

mod config;
mod feed;
mod health;
mod http;
mod loops;
mod records;
mod shared;

use std::sync::Arc;

use flotilla_api::auth::Authenticator;
use flotilla_api::identity::tokens::TokenSigner;
use flotilla_api::supervisor::LoopHandle;
use flotilla_api::{ApiError, ApiResult, Ctx};

pub use config::{build_config, LOOPBACK};
pub use feed::MAX_WAIT;
pub use health::Outcome;
pub use http::{NodeCredentials, CONFIG_PATH, JOIN_PATH, REPORT_PATH};
pub use loops::{activate, reap_draining, start_with, LoopSettings, DRAINING_LOOP, LB_STATE_LOOP};
pub use records::{node_key, NodeRecord, LIVE_MS, NODE_PREFIX};

/// The `/v1/lb/*` routes. `auth` checks signatures as the server's own routes do (`None` with
/// authentication off); `root_secret` is the root secret access key, which signs join tokens.
pub fn routes(ctx: &Ctx, auth: Option<Arc<Authenticator>>, root_secret: &str) -> axum::Router {
    http::routes(ctx, auth, TokenSigner::new(root_secret))
}

/// Starts the nodes' loops (draining reaper, load balancer state) with their default settings.
pub fn start(ctx: &Ctx) -> Vec<LoopHandle> {
    loops::start_with(ctx, LoopSettings::default())
}

/// Registers a node and issues its key pair without a join token, for a node the control plane
/// starts itself (`flotilla up`). `node_id` names it (a new id when `None`); `advertise_address`
/// is the IP address it serves on.
pub async fn local_credentials(
    ctx: &Ctx,
    node_id: Option<&str>,
    advertise_address: &str,
) -> ApiResult<NodeCredentials> {
    if advertise_address.parse::<std::net::IpAddr>().is_err() {
        return Err(ApiError::invalid_parameter(format!(
            "advertiseAddress must be an IP address; got '{advertise_address}'."
        )));
    }
    let id = match node_id {
        Some(id) if !records::valid_node_id(id) => {
            return Err(ApiError::invalid_parameter(format!("nodeId must be 'lbn-' and hex digits; got '{id}'.")))
        }
        Some(id) => id.to_string(),
        None => records::new_node_id(),
    };
    http::enroll_node(ctx, &id, advertise_address, None).await
}

/// The records of every joined node.
pub async fn list_nodes(ctx: &Ctx) -> ApiResult<Vec<NodeRecord>> {
    records::list(ctx).await
}
