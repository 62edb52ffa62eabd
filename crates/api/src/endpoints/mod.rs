//! Endpoints: where a service's tasks can be reached, as one typed stream into ELBv2 target
//! groups and Cloud Map services (design.md section 11), so the load balancer and DNS never
//! disagree. [`derive`] turns a RUNNING task of a service with `loadBalancers` or
//! `serviceRegistries` into the targets and instances it should be registered as (pure);
//! [`registrar`] is the level-triggered loop that registers them, follows their health, and on a
//! stop deregisters them and holds the agent's stop until the targets have drained (ECS's
//! DEACTIVATING); [`validate`] checks a service's `loadBalancers` and `serviceRegistries` against
//! the target groups and Cloud Map services at CreateService and UpdateService.

pub mod derive;
pub mod registrar;
pub mod validate;

pub use crate::state::records::{Registered, TargetsHealth};

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};

/// An ELBv2 or Cloud Map record (not cached: read from the store) and its revision.
async fn get<T: serde::de::DeserializeOwned>(ctx: &Ctx, key: &str) -> ApiResult<Option<(T, flotilla_store::Revision)>> {
    let kv = ctx.store.get(key).await.map_err(|e| ApiError::server(e.to_string()))?;
    kv.map(|kv| {
        flotilla_endpoints::codec::decode(&kv.value)
            .map(|v| (v, kv.mod_revision))
            .map_err(|e| ApiError::server(format!("stored value under {key} does not decode: {e}")))
    })
    .transpose()
}

/// The 16-hex id at the end of a target group ARN (`...:targetgroup/NAME/ID`).
pub fn target_group_id(arn: &str) -> Option<&str> {
    let (_, rest) = arn.split_once(":targetgroup/")?;
    let (_, id) = rest.rsplit_once('/')?;
    (!id.is_empty()).then_some(id)
}

/// The `srv-` id at the end of a Cloud Map service ARN (`...:service/srv-ID`).
pub fn registry_service_id(arn: &str) -> Option<&str> {
    let (_, id) = arn.split_once(":service/")?;
    id.starts_with("srv-").then_some(id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_come_from_arns() {
        let tg = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/web/0123456789abcdef";
        assert_eq!(super::target_group_id(tg), Some("0123456789abcdef"));
        assert_eq!(super::target_group_id("arn:aws:elasticloadbalancing:us-east-1:0:loadbalancer/app/x/1"), None);
        let srv = "arn:aws:servicediscovery:us-east-1:000000000000:service/srv-abcdef0123456789";
        assert_eq!(super::registry_service_id(srv), Some("srv-abcdef0123456789"));
        assert_eq!(super::registry_service_id("srv-abc"), None);
    }
}
