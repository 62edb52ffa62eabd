//! DiscoverInstances and DiscoverInstancesRevision: an instance lookup by namespace and service
//! name with health and attribute filters, in random order. Served on the same listener whatever
//! the Host header (SDKs prefix `data-` to the endpoint's host for these two calls).

use flotilla_api::Ctx;
use flotilla_endpoints::cloudmap::{HealthStatus, Instance, Namespace, Service};
use flotilla_endpoints::keys;
use rand::seq::SliceRandom;
use serde_json::{json, Value};

use super::error::{Result, SdError};
use super::input::Input;
use super::instances::{health_name, list_of};
use super::store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthFilter {
    Healthy,
    Unhealthy,
    All,
    HealthyOrElseAll,
}

/// The instances a discovery returns, before shuffling and `MaxResults`: `health` applies only to
/// services with health checking; every `query` attribute must match; `optional` ones narrow the
/// result only when something still matches them.
pub fn select(
    instances: Vec<Instance>,
    health_checked: bool,
    health: HealthFilter,
    query: &[(String, String)],
    optional: &[(String, String)],
) -> Vec<Instance> {
    let matches =
        |i: &Instance, params: &[(String, String)]| params.iter().all(|(k, v)| i.attributes.get(k) == Some(v));
    let mut found: Vec<Instance> = instances.into_iter().filter(|i| matches(i, query)).collect();
    if health_checked {
        let healthy = |i: &Instance| i.health == HealthStatus::Healthy;
        found = match health {
            HealthFilter::Healthy => found.into_iter().filter(healthy).collect(),
            HealthFilter::Unhealthy => found.into_iter().filter(|i| !healthy(i)).collect(),
            HealthFilter::All => found,
            HealthFilter::HealthyOrElseAll => {
                if found.iter().any(healthy) {
                    found.into_iter().filter(healthy).collect()
                } else {
                    found
                }
            }
        };
    }
    if !optional.is_empty() {
        let narrowed: Vec<Instance> = found.iter().filter(|i| matches(i, optional)).cloned().collect();
        if !narrowed.is_empty() {
            found = narrowed;
        }
    }
    found
}

async fn service_of(ctx: &Ctx, input: &Input) -> Result<(Namespace, Service, u64)> {
    let ns_name = input.required_str("NamespaceName")?;
    let svc_name = input.required_str("ServiceName")?;
    let ns_name = ns_name.strip_suffix('.').unwrap_or(ns_name);
    let not_found = || SdError::namespace_not_found(ns_name);
    let (ns_id, _) =
        store::get::<String>(ctx, &keys::namespace_name(&ns_name.to_ascii_lowercase())).await?.ok_or_else(not_found)?;
    let (ns, _) = store::get::<Namespace>(ctx, &keys::namespace(&ns_id)).await?.ok_or_else(not_found)?;
    let (svc_id, _) = store::get::<String>(ctx, &keys::service_name(&ns_id, &svc_name.to_ascii_lowercase()))
        .await?
        .ok_or_else(|| SdError::service_not_found(svc_name))?;
    let (svc, rev) = store::get::<Service>(ctx, &keys::service(&svc_id))
        .await?
        .ok_or_else(|| SdError::service_not_found(svc_name))?;
    Ok((ns, svc, rev))
}

pub async fn discover(ctx: &Ctx, input: &Input) -> Result<Value> {
    let max = input.int("MaxResults", 1, 1000)?.unwrap_or(100) as usize;
    let health = match input.str("HealthStatus")? {
        None | Some("HEALTHY") => HealthFilter::Healthy,
        Some("UNHEALTHY") => HealthFilter::Unhealthy,
        Some("ALL") => HealthFilter::All,
        Some("HEALTHY_OR_ELSE_ALL") => HealthFilter::HealthyOrElseAll,
        Some(_) => {
            return Err(SdError::invalid("HealthStatus must be HEALTHY, UNHEALTHY, ALL or HEALTHY_OR_ELSE_ALL."))
        }
    };
    let query = input.string_map("QueryParameters")?;
    let optional = input.string_map("OptionalParameters")?;
    let (ns, svc, rev) = service_of(ctx, input).await?;
    let checked = svc.custom_health || svc.health_check_config.is_some();
    let mut found = select(list_of(ctx, &svc.id).await?, checked, health, &query, &optional);
    found.shuffle(&mut rand::thread_rng());
    found.truncate(max);
    let items: Vec<Value> = found
        .iter()
        .map(|i| {
            json!({
                "InstanceId": i.id,
                "NamespaceName": ns.name,
                "ServiceName": svc.name,
                "HealthStatus": health_name(i.health),
                "Attributes": i.attributes,
            })
        })
        .collect();
    Ok(json!({ "Instances": items, "InstancesRevision": rev }))
}

pub async fn revision(ctx: &Ctx, input: &Input) -> Result<Value> {
    let (_, _, rev) = service_of(ctx, input).await?;
    Ok(json!({ "InstancesRevision": rev }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, healthy: bool, attrs: &[(&str, &str)]) -> Instance {
        Instance {
            id: id.into(),
            service_id: "srv-1".into(),
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            health: if healthy { HealthStatus::Healthy } else { HealthStatus::Unhealthy },
            creator_request_id: None,
            task_arn: None,
            registered_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn ids(v: &[Instance]) -> Vec<&str> {
        let mut ids: Vec<&str> = v.iter().map(|i| i.id.as_str()).collect();
        ids.sort_unstable();
        ids
    }

    fn p(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn health_filters_apply_only_to_health_checked_services() {
        let all = vec![inst("a", true, &[]), inst("b", false, &[])];
        assert_eq!(ids(&select(all.clone(), true, HealthFilter::Healthy, &[], &[])), vec!["a"]);
        assert_eq!(ids(&select(all.clone(), true, HealthFilter::Unhealthy, &[], &[])), vec!["b"]);
        assert_eq!(ids(&select(all.clone(), true, HealthFilter::All, &[], &[])), vec!["a", "b"]);
        assert_eq!(ids(&select(all.clone(), false, HealthFilter::Healthy, &[], &[])), vec!["a", "b"]);
        assert_eq!(ids(&select(all.clone(), true, HealthFilter::HealthyOrElseAll, &[], &[])), vec!["a"]);
        let sick = vec![inst("b", false, &[]), inst("c", false, &[])];
        assert_eq!(ids(&select(sick, true, HealthFilter::HealthyOrElseAll, &[], &[])), vec!["b", "c"]);
    }

    #[test]
    fn query_parameters_must_all_match_and_optional_ones_narrow_only_if_something_matches() {
        let all = vec![
            inst("a", true, &[("stage", "prod"), ("az", "1")]),
            inst("b", true, &[("stage", "prod"), ("az", "2")]),
            inst("c", true, &[("stage", "dev"), ("az", "1")]),
        ];
        assert_eq!(ids(&select(all.clone(), false, HealthFilter::All, &[p("stage", "prod")], &[])), vec!["a", "b"]);
        let both = [p("stage", "prod"), p("az", "1")];
        assert_eq!(ids(&select(all.clone(), false, HealthFilter::All, &both, &[])), vec!["a"]);
        let q = [p("stage", "prod")];
        assert_eq!(ids(&select(all.clone(), false, HealthFilter::All, &q, &[p("az", "2")])), vec!["b"]);
        assert_eq!(ids(&select(all.clone(), false, HealthFilter::All, &q, &[p("az", "9")])), vec!["a", "b"]);
        assert!(select(all, false, HealthFilter::All, &[p("stage", "qa")], &[]).is_empty());
    }
}
