//! The ECS task metadata endpoint (version 4, with version 3's URL served alike): what a
//! container learns about itself and its task by fetching `$ECS_CONTAINER_METADATA_URI_V4`.
//!
//! Each container gets its own unguessable token in its environment
//! (`http://ADDR:PORT/v4/<token>`) and, as a label, on the container itself, so the agent finds
//! the container a token belongs to by asking Docker, and a restarted agent serves containers it
//! created before (`inject`). A request names nothing but the token: a container can read only
//! its own task, and an unknown token is a 404 (`server`). The answers are built from the task's
//! record (the engine's knowledge) and Docker's inspect and stats of its containers, in ECS's
//! documented JSON shapes (`shape`). One server per agent, bound on the Docker bridge's gateway,
//! which bridge, host and awsvpc containers alike reach (see `address`).

pub mod address;
mod server;
pub mod shape;
#[cfg(test)]
mod tests;

use rand::RngCore;

pub use server::{router, serve, MetadataState, TaskBook};

use crate::runtime::ContainerSpec;

/// The label holding a container's token. Docker filters by it to resolve a request.
pub const TOKEN_LABEL: &str = "com.flotilla.metadata-token";

/// Where the agent's metadata server is, as containers reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataEndpoint {
    /// `http://ADDR:PORT`, without a trailing slash.
    pub base_url: String,
}

/// A fresh random token: 128 bits, hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` could be a token; anything else is refused before Docker is asked.
pub fn is_token(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Gives a container its own token: the environment variables ECS sets (the task's own
/// `environment` wins, as a user may point a container elsewhere) and the label.
pub fn inject(spec: &mut ContainerSpec, endpoint: &MetadataEndpoint) {
    let token = new_token();
    let v4 = format!("{}/v4/{token}", endpoint.base_url);
    let v3 = format!("{}/v3/{token}", endpoint.base_url);
    for (key, value) in [("ECS_CONTAINER_METADATA_URI_V4", v4), ("ECS_CONTAINER_METADATA_URI", v3)] {
        let prefix = format!("{key}=");
        if !spec.env.iter().any(|e| e.starts_with(&prefix)) {
            spec.env.push(format!("{prefix}{value}"));
        }
    }
    spec.labels.insert(TOKEN_LABEL.to_string(), token);
}
