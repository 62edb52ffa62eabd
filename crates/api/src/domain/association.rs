//! Which capacity providers a cluster may use, and its default strategy: the rules of
//! PutClusterCapacityProviders (and CreateCluster with providers). The whole list is given each
//! time: a provider left out is disassociated, which is refused while a task or a service of the
//! cluster still uses it. A provider with managed scaling serves one cluster at a time. Each
//! associated provider with managed scaling gets an `as_policy` attachment naming the scaling
//! policy that managed scaling keeps on its group.

use flotilla_model::{Attachment, CapacityProviderStrategyItem, Cluster, KeyValuePair};

use crate::domain::capacity::{active_provider, check_items, filled, has_managed_scaling, short_name};
use crate::error::{ApiError, ApiResult};
use crate::state::cache::{range_prefix, Indexes};
use crate::state::keys;

/// The name of the scaling policy an attachment names, if it is an `as_policy` one.
pub fn policy_of(a: &Attachment) -> Option<(&str, &str)> {
    if a.r#type.as_deref() != Some("as_policy") {
        return None;
    }
    let detail =
        |n: &str| a.details.iter().flatten().find(|d| d.name.as_deref() == Some(n)).and_then(|d| d.value.as_deref());
    Some((detail("capacityProviderName")?, detail("scalingPolicyName")?))
}

/// Whether any non-stopped task or any service of `cluster` uses `provider`.
fn in_use(ix: &Indexes, cluster: &str, provider: &str) -> bool {
    let tasks = ix.task_index.by_cluster_desired.iter().filter(|((c, _), _)| &**c == cluster);
    let task_uses = tasks.flat_map(|(_, keys)| keys.iter()).any(|k| {
        ix.tasks
            .get(k)
            .is_some_and(|e| !e.value.is_stopped() && e.value.summary.capacity_provider.as_deref() == Some(provider))
    });
    let prefix = format!("{}{cluster}/", keys::SERVICE);
    task_uses
        || range_prefix(&ix.services, &prefix).any(|(_, s)| {
            s.value.status.as_deref() != Some("INACTIVE")
                && s.value
                    .capacity_provider_strategy
                    .iter()
                    .flatten()
                    .any(|i| i.capacity_provider.as_deref().map(short_name) == Some(provider))
        })
}

/// Sets `cluster`'s providers and default strategy, as PutClusterCapacityProviders asks.
pub fn associate(
    ix: &Indexes,
    cluster: &mut Cluster,
    providers: &[String],
    strategy: &[CapacityProviderStrategyItem],
) -> ApiResult<()> {
    let name = cluster.cluster_name.clone().unwrap_or_default();
    let mut names: Vec<String> = Vec::new();
    for given in providers {
        let n = short_name(given);
        if names.iter().any(|x| x == n) {
            return Err(ApiError::invalid_parameter(format!("capacityProviders names {n} more than once.")));
        }
        if matches!(n, "FARGATE" | "FARGATE_SPOT") {
            // The reserved Fargate providers always exist and may be associated, as the ECS Spot
            // workshop does; launching on them is refused until Fargate runs here.
            names.push(n.to_string());
            continue;
        }
        let Some(p) = active_provider(ix, n) else {
            return Err(ApiError::invalid_parameter(format!(
                "The specified capacity provider {n} was not found. Specify a valid capacity provider and try again."
            )));
        };
        if has_managed_scaling(p) {
            let elsewhere = range_prefix(&ix.clusters, keys::CLUSTER).find(|(_, c)| {
                c.value.status.as_deref() == Some("ACTIVE")
                    && c.value.cluster_name.as_deref() != Some(name.as_str())
                    && c.value.capacity_providers.iter().flatten().any(|x| short_name(x) == n)
            });
            if let Some((_, other)) = elsewhere {
                return Err(ApiError::invalid_parameter(format!(
                    "The capacity provider {n} uses managed scaling and is already associated with cluster {}; a capacity provider with managed scaling can be associated with one cluster at a time.",
                    other.value.cluster_name.as_deref().unwrap_or_default()
                )));
            }
        }
        names.push(n.to_string());
    }
    check_items("defaultCapacityProviderStrategy", strategy)?;
    for item in strategy {
        let n = short_name(item.capacity_provider.as_deref().unwrap_or(""));
        if !names.iter().any(|x| x == n) {
            return Err(ApiError::invalid_parameter(
                "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again.",
            ));
        }
    }
    for old in cluster.capacity_providers.iter().flatten() {
        let old = short_name(old);
        if !names.iter().any(|x| x == old) && in_use(ix, &name, old) {
            return Err(ApiError::new(
                "ResourceInUseException",
                format!("The specified capacity provider {old} is in use and cannot be removed."),
            ));
        }
    }
    let kept: Vec<Attachment> = cluster
        .attachments
        .iter()
        .flatten()
        .filter(|a| policy_of(a).is_some_and(|(p, _)| names.iter().any(|x| x == p)))
        .cloned()
        .collect();
    let mut attachments = kept;
    for n in &names {
        let managed = active_provider(ix, n).is_some_and(has_managed_scaling);
        if managed && !attachments.iter().any(|a| policy_of(a).is_some_and(|(p, _)| p == n)) {
            let kv = |k: &str, v: String| KeyValuePair { name: Some(k.into()), value: Some(v) };
            attachments.push(Attachment {
                id: Some(uuid::Uuid::new_v4().to_string()),
                r#type: Some("as_policy".into()),
                status: Some("ACTIVE".into()),
                details: Some(vec![
                    kv("capacityProviderName", n.clone()),
                    kv("scalingPolicyName", format!("ECSManagedAutoScalingPolicy-{}", uuid::Uuid::new_v4())),
                ]),
            });
        }
    }
    cluster.capacity_providers = Some(names);
    cluster.default_capacity_provider_strategy = Some(filled(strategy));
    cluster.attachments_status = Some("UPDATE_COMPLETE".into());
    cluster.attachments = Some(attachments);
    Ok(())
}
