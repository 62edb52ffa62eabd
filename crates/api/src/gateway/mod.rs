//! The agent gateway: the long-lived websocket session of each container instance's agent.
//!
//! The upgrade request is SigV4-signed like any API call (with the key pair the agent earned with
//! its join token, bound to its own instance, as the ECS agent holds its instance role; or the
//! root pair) and names the cluster and container instance. Once
//! admitted, the session marks the instance `agentConnected`, sends everything the instance
//! should run, then pushes each change of its tasks as the cache sees it, applies the agent's
//! task reports, and exchanges heartbeats. The instance record names the server holding the
//! session (`session_server`); when the session ends, the instance is marked disconnected, unless
//! a newer session of the same agent has taken over, here or on another server. The sessions of
//! a server that dies are disconnected by the leader's sweep (`crate::servers`).
//!
//! Each live session is reachable through [`Sessions`] (`links.rs`), which is how a task's logs
//! are read from the agent that ran it (`logs.rs`); a read for an agent whose session is on another
//! server goes there (`crate::servers::forward`).

pub mod calls;
pub mod links;
pub mod logs;
mod presence;
pub mod reports;
mod session;

use flotilla_model::arn::{short_id, Resource};

use crate::context::Ctx;
use crate::error::ApiError;
use crate::state::keys;

pub use logs::Sessions;
pub use presence::{claim, reclaim_if_swept, release, set_agent_address};
pub use session::run_session;

/// Who a session request says it is, once checked against the store.
#[derive(Debug, Clone)]
pub struct SessionTarget {
    pub cluster: String,
    pub instance_arn: String,
    pub instance_key: String,
    /// The address the session's connection came from, when the listener knows it.
    pub peer: Option<std::net::IpAddr>,
}

/// Checks the upgrade request's query: the cluster and the container instance must exist and
/// the instance must not be deregistered.
pub fn admit(ctx: &Ctx, query: Option<&str>) -> Result<SessionTarget, ApiError> {
    let mut cluster = None;
    let mut instance = None;
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            flotilla_protocol::query::CLUSTER => cluster = Some(v),
            flotilla_protocol::query::CONTAINER_INSTANCE => instance = Some(v),
            _ => {}
        }
    }
    let (cluster_name, _) = crate::domain::lookup::host_cluster(ctx, cluster.as_deref())?;
    let instance = instance.ok_or_else(|| ApiError::invalid_parameter("containerInstance is required."))?;
    let id = match ctx.arns.parse(&instance) {
        Ok(Resource::ContainerInstance { .. }) => short_id(&instance).to_string(),
        _ if !instance.starts_with("arn:") && !instance.is_empty() => instance.clone(),
        _ => return Err(ApiError::invalid_parameter(format!("containerInstance '{instance}' is not valid."))),
    };
    let key = keys::instance(&cluster_name, &id);
    let ix = ctx.cache.read();
    let entry = ix.instances.get(&key).ok_or_else(|| {
        ApiError::new("InvalidInstanceException", format!("Container instance {instance} is not registered."))
    })?;
    if entry.value.instance.status.as_deref() == Some("INACTIVE") {
        return Err(ApiError::new(
            "InactiveInstanceException",
            format!("Container instance {instance} is deregistered."),
        ));
    }
    Ok(SessionTarget {
        cluster: cluster_name,
        instance_arn: entry.value.instance.container_instance_arn.clone().unwrap_or_default(),
        instance_key: key,
        peer: None,
    })
}

/// Decodes a query string value (`%XX` escapes and `+` for space).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_query_values() {
        assert_eq!(super::percent_decode("arn%3Aaws%3Aecs"), "arn:aws:ecs");
        assert_eq!(super::percent_decode("a+b%2"), "a b%2");
        assert_eq!(super::percent_decode("%"), "%");
    }
}
