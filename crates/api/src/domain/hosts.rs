//! Reading the EC2 and Auto Scaling records (`flotilla-hosts`) that capacity providers stand on:
//! Auto Scaling groups and the hosts they launch. They are not in the cache (their services keep
//! their own), so these read the store; they are read when a provider is created, when an
//! instance registers and once per scaling period, never per placement.

use flotilla_hosts::{keys, AutoScalingGroup, Host};
use flotilla_store::Revision;
use serde::de::DeserializeOwned;

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};

/// A stored record and the revision it was read at.
#[derive(Debug, Clone)]
pub struct Read<T> {
    pub value: T,
    pub revision: Revision,
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> ApiResult<T> {
    flotilla_hosts::codec::decode(bytes)
        .map_err(|e| ApiError::server(format!("stored value under {key} does not decode: {e}")))
}

async fn get<T: DeserializeOwned>(ctx: &Ctx, key: &str) -> ApiResult<Option<Read<T>>> {
    let kv = ctx.store.get(key).await.map_err(|e| ApiError::server(e.to_string()))?;
    kv.map(|kv| Ok(Read { value: decode(key, &kv.value)?, revision: kv.mod_revision })).transpose()
}

async fn list<T: DeserializeOwned>(ctx: &Ctx, prefix: &str) -> ApiResult<Vec<Read<T>>> {
    let listing = ctx.store.list(prefix).await.map_err(|e| ApiError::server(e.to_string()))?;
    listing.kvs.iter().map(|kv| Ok(Read { value: decode(&kv.key, &kv.value)?, revision: kv.mod_revision })).collect()
}

/// The group's name from its name or ARN (`...:autoScalingGroupName/NAME`).
pub fn group_name(given: &str) -> &str {
    given.rsplit_once(":autoScalingGroupName/").map(|(_, n)| n).unwrap_or(given)
}

/// The group `given` (a name or ARN) names, if it exists and the ARN, when given, is its own.
pub async fn group(ctx: &Ctx, given: &str) -> ApiResult<Option<Read<AutoScalingGroup>>> {
    let found: Option<Read<AutoScalingGroup>> = get(ctx, &keys::group(group_name(given))).await?;
    Ok(found.filter(|g| !given.starts_with("arn:") || g.value.arn == given))
}

pub async fn groups(ctx: &Ctx) -> ApiResult<Vec<Read<AutoScalingGroup>>> {
    list(ctx, keys::GROUP).await
}

pub async fn host(ctx: &Ctx, instance_id: &str) -> ApiResult<Option<Read<Host>>> {
    get(ctx, &keys::host(instance_id)).await
}

pub async fn hosts(ctx: &Ctx) -> ApiResult<Vec<Read<Host>>> {
    list(ctx, keys::HOST).await
}

/// The subnet `id`: one of the region's default VPC (derived) or one created with CreateSubnet.
/// A stored one comes with the revision it was read at (`None` for the derived ones, which never
/// change).
pub async fn subnet(ctx: &Ctx, id: &str) -> ApiResult<Option<(flotilla_hosts::network::Subnet, Option<Revision>)>> {
    if let Some(s) = flotilla_hosts::network::default_vpc(&ctx.arns.region).subnet(id) {
        return Ok(Some((s.clone(), None)));
    }
    let read: Option<Read<flotilla_hosts::network::Subnet>> = get(ctx, &keys::subnet(id)).await?;
    Ok(read.map(|r| (r.value, Some(r.revision))))
}

/// The attribute an agent advertises its host's address in (`flotilla agent --host-address`).
pub const HOST_ADDRESS_ATTRIBUTE: &str = "flotilla.host-address";

/// Where other hosts reach a container instance's published ports: the address its agent
/// advertises, else the address its session came from, else loopback (an agent on the control
/// plane's own machine).
pub fn address(record: &crate::state::records::InstanceRecord) -> String {
    record
        .instance
        .attributes
        .iter()
        .flatten()
        .find(|a| a.name.as_deref() == Some(HOST_ADDRESS_ATTRIBUTE))
        .and_then(|a| a.value.clone())
        .or_else(|| record.agent_address.clone())
        .unwrap_or_else(|| "127.0.0.1".into())
}
