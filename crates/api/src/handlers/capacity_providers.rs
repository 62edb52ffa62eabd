//! Capacity providers on Auto Scaling groups: Create, Update, Delete, Describe. A provider is an
//! account-wide record naming one group; clusters use it once PutClusterCapacityProviders
//! associates it. Updates and deletes are asynchronous on ECS (the answer says IN_PROGRESS); here
//! they are done when they are answered, and DescribeCapacityProviders says COMPLETE.

use flotilla_model::{
    AutoScalingGroupProvider, CapacityProvider, CreateCapacityProviderRequest, CreateCapacityProviderResponse,
    DeleteCapacityProviderRequest, DeleteCapacityProviderResponse, DescribeCapacityProvidersRequest,
    DescribeCapacityProvidersResponse, Failure, ManagedScaling, UpdateCapacityProviderRequest,
    UpdateCapacityProviderResponse,
};
use flotilla_store::{Compare, Op, Txn};

use crate::context::{Ctx, MAX_CAS_ATTEMPTS};
use crate::domain::capacity::short_name;
use crate::domain::hosts;
use crate::domain::tags::validate_tags;
use crate::error::{ApiError, ApiResult};
use crate::pagination::page;
use crate::state::cache::range_prefix;
use crate::state::codec::encode;
use crate::state::keys;

const INVALID_NAME: &str = "The specified capacity provider name is invalid. Up to 255 characters are allowed, including letters (upper and lowercase), numbers, underscores, and hyphens. The name cannot be prefixed with \"aws\", \"ecs\", or \"fargate\".";

/// The providers every account has, which can be neither created nor deleted.
const RESERVED: [&str; 2] = ["FARGATE", "FARGATE_SPOT"];

/// A reserved provider as ECS describes it: its ARN, name and ACTIVE, nothing else. Clusters may
/// list it; launching on it is refused until the FARGATE launch type runs here.
fn reserved_provider(ctx: &Ctx, name: &str) -> CapacityProvider {
    CapacityProvider {
        capacity_provider_arn: Some(ctx.arns.capacity_provider(name)),
        name: Some(name.to_string()),
        status: Some("ACTIVE".into()),
        ..Default::default()
    }
}

fn valid_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !["aws", "ecs", "fargate"].iter().any(|p| lower.starts_with(p))
}

fn on_off(field: &str, v: Option<&str>, default: &str) -> ApiResult<String> {
    match v.unwrap_or(default) {
        v @ ("ENABLED" | "DISABLED") => Ok(v.to_string()),
        other => Err(ApiError::invalid_parameter(format!("{field} must be ENABLED or DISABLED; got '{other}'."))),
    }
}

/// Managed scaling with ECS's defaults filled in, its ranges checked.
fn managed_scaling(given: Option<&ManagedScaling>, base: Option<&ManagedScaling>) -> ApiResult<ManagedScaling> {
    let field = "autoScalingGroupProvider.managedScaling";
    let pick = |g: Option<i32>, b: Option<i32>, default: i32| g.or(b).unwrap_or(default);
    let ms = ManagedScaling {
        status: Some(on_off(
            &format!("{field}.status"),
            given.and_then(|g| g.status.as_deref()).or(base.and_then(|b| b.status.as_deref())),
            "DISABLED",
        )?),
        target_capacity: Some(pick(given.and_then(|g| g.target_capacity), base.and_then(|b| b.target_capacity), 100)),
        minimum_scaling_step_size: Some(pick(
            given.and_then(|g| g.minimum_scaling_step_size),
            base.and_then(|b| b.minimum_scaling_step_size),
            1,
        )),
        maximum_scaling_step_size: Some(pick(
            given.and_then(|g| g.maximum_scaling_step_size),
            base.and_then(|b| b.maximum_scaling_step_size),
            10_000,
        )),
        instance_warmup_period: Some(pick(
            given.and_then(|g| g.instance_warmup_period),
            base.and_then(|b| b.instance_warmup_period),
            300,
        )),
    };
    let ranges = [
        ("targetCapacity", ms.target_capacity, 1, 100),
        ("minimumScalingStepSize", ms.minimum_scaling_step_size, 1, 10_000),
        ("maximumScalingStepSize", ms.maximum_scaling_step_size, 1, 10_000),
        ("instanceWarmupPeriod", ms.instance_warmup_period, 0, 10_000),
    ];
    for (name, v, lo, hi) in ranges {
        let v = v.unwrap_or(lo);
        if !(lo..=hi).contains(&v) {
            return Err(ApiError::invalid_parameter(format!("{field}.{name} must be between {lo} and {hi}; got {v}.")));
        }
    }
    if ms.minimum_scaling_step_size > ms.maximum_scaling_step_size {
        return Err(ApiError::invalid_parameter(format!(
            "{field}.minimumScalingStepSize cannot be greater than maximumScalingStepSize."
        )));
    }
    Ok(ms)
}

/// Managed termination protection needs managed scaling and a group that protects new hosts.
fn check_protection(p: &AutoScalingGroupProvider, group_protects: bool) -> ApiResult<()> {
    if p.managed_termination_protection.as_deref() != Some("ENABLED") {
        return Ok(());
    }
    if !group_protects {
        return Err(ApiError::client(
            "The managed termination protection setting for the capacity provider is invalid. To enable managed termination protection for a capacity provider, the Auto Scaling group must have instance protection from scale in enabled.",
        ));
    }
    if p.managed_scaling.as_ref().and_then(|m| m.status.as_deref()) != Some("ENABLED") {
        return Err(ApiError::client(
            "The managed termination protection setting for the capacity provider is invalid. To enable managed termination protection for a capacity provider, managed scaling must be enabled.",
        ));
    }
    Ok(())
}

pub async fn create(ctx: &Ctx, req: CreateCapacityProviderRequest) -> ApiResult<CreateCapacityProviderResponse> {
    let name = req.name.clone().unwrap_or_default();
    if !valid_name(&name) {
        return Err(ApiError::client(INVALID_NAME));
    }
    if req.managed_instances_provider.is_some() {
        return Err(ApiError::unsupported(
            "managedInstancesProvider: ECS Managed Instances capacity providers are not supported by Flotilla; use autoScalingGroupProvider.",
        ));
    }
    if req.cluster.is_some() {
        return Err(ApiError::invalid_parameter(
            "cluster can only be given for Managed Instances capacity providers; an Auto Scaling group capacity provider is account-wide.",
        ));
    }
    let Some(given) = req.auto_scaling_group_provider.clone() else {
        return Err(ApiError::invalid_parameter("autoScalingGroupProvider must be given."));
    };
    let tags = req.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    let asg = given.auto_scaling_group_arn.clone().unwrap_or_default();
    let Some(group) = hosts::group(ctx, &asg).await? else {
        return Err(ApiError::client(format!(
            "The specified Auto Scaling group ARN or name '{asg}' does not name an Auto Scaling group. Specify a valid Auto Scaling group and try again."
        )));
    };
    let provider = AutoScalingGroupProvider {
        auto_scaling_group_arn: Some(group.value.arn.clone()),
        managed_scaling: Some(managed_scaling(given.managed_scaling.as_ref(), None)?),
        managed_termination_protection: Some(on_off(
            "autoScalingGroupProvider.managedTerminationProtection",
            given.managed_termination_protection.as_deref(),
            "DISABLED",
        )?),
        managed_draining: Some(on_off(
            "autoScalingGroupProvider.managedDraining",
            given.managed_draining.as_deref(),
            "ENABLED",
        )?),
    };
    check_protection(&provider, group.value.new_instances_protected_from_scale_in)?;
    let key = keys::capacity_provider(&name);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (compare, in_use) = {
            let ix = ctx.cache.read();
            let compare = match ix.capacity_providers.get(&key) {
                Some(e) if e.value.status.as_deref() == Some("ACTIVE") => {
                    return Err(ApiError::client(
                        "The specified capacity provider already exists. To change the configuration of an existing capacity provider, update the capacity provider.",
                    ))
                }
                Some(e) => Compare::unchanged(&key, e.revision),
                None => Compare::absent(&key),
            };
            let in_use = range_prefix(&ix.capacity_providers, keys::CAPACITY_PROVIDER).any(|(_, e)| {
                e.value.status.as_deref() == Some("ACTIVE")
                    && e.value.auto_scaling_group_provider.as_ref().and_then(|p| p.auto_scaling_group_arn.as_deref())
                        == Some(group.value.arn.as_str())
            });
            (compare, in_use)
        };
        if in_use {
            return Err(ApiError::client(
                "The specified Auto Scaling group ARN is already being used by another capacity provider. Specify a unique Auto Scaling group ARN and try again.",
            ));
        }
        let record = CapacityProvider {
            capacity_provider_arn: Some(ctx.arns.capacity_provider(&name)),
            name: Some(name.clone()),
            status: Some("ACTIVE".into()),
            auto_scaling_group_provider: Some(provider.clone()),
            tags: (!tags.is_empty()).then(|| tags.clone()),
            r#type: Some("EC2_AUTOSCALING".into()),
            ..Default::default()
        };
        if ctx.commit(Txn::new().when(compare).then(Op::put(&key, encode(&record)))).await?.is_some() {
            return Ok(CreateCapacityProviderResponse { capacity_provider: Some(shown(&record, true)) });
        }
    }
    Err(ApiError::server("The capacity provider kept changing while it was created; try again."))
}

/// The provider as ECS shows it; tags only when asked for.
fn shown(p: &CapacityProvider, with_tags: bool) -> CapacityProvider {
    let mut out = p.clone();
    out.tags = Some(if with_tags { p.tags.clone().unwrap_or_default() } else { Vec::new() });
    out
}

/// The ACTIVE provider `given` names, with its key and revision, or ECS's error.
fn existing(ctx: &Ctx, given: &str) -> ApiResult<(String, crate::state::cache::Entry<CapacityProvider>)> {
    let name = short_name(given);
    if matches!(name, "FARGATE" | "FARGATE_SPOT") {
        return Err(ApiError::client(format!("The {name} capacity provider is reserved and cannot be changed.")));
    }
    let key = keys::capacity_provider(name);
    match ctx.cache.read().capacity_providers.get(&key) {
        Some(e) if e.value.status.as_deref() == Some("ACTIVE") => Ok((key, e.clone())),
        _ => Err(ApiError::client(format!(
            "The specified capacity provider '{given}' does not exist. Specify a valid capacity provider and try again."
        ))),
    }
}

pub async fn update(ctx: &Ctx, req: UpdateCapacityProviderRequest) -> ApiResult<UpdateCapacityProviderResponse> {
    let given = req.name.clone().unwrap_or_default();
    if req.managed_instances_provider.is_some() {
        return Err(ApiError::unsupported(
            "managedInstancesProvider: ECS Managed Instances capacity providers are not supported by Flotilla.",
        ));
    }
    let Some(update) = req.auto_scaling_group_provider.clone() else {
        return Err(ApiError::invalid_parameter("autoScalingGroupProvider must be given."));
    };
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (key, entry) = existing(ctx, &given)?;
        let mut record = (*entry.value).clone();
        let old = record.auto_scaling_group_provider.clone().unwrap_or_default();
        let asg = old.auto_scaling_group_arn.clone().unwrap_or_default();
        let group_protects =
            hosts::group(ctx, &asg).await?.is_some_and(|g| g.value.new_instances_protected_from_scale_in);
        let provider = AutoScalingGroupProvider {
            auto_scaling_group_arn: old.auto_scaling_group_arn.clone(),
            managed_scaling: Some(managed_scaling(update.managed_scaling.as_ref(), old.managed_scaling.as_ref())?),
            managed_termination_protection: Some(on_off(
                "autoScalingGroupProvider.managedTerminationProtection",
                update.managed_termination_protection.as_deref().or(old.managed_termination_protection.as_deref()),
                "DISABLED",
            )?),
            managed_draining: Some(on_off(
                "autoScalingGroupProvider.managedDraining",
                update.managed_draining.as_deref().or(old.managed_draining.as_deref()),
                "ENABLED",
            )?),
        };
        check_protection(&provider, group_protects)?;
        record.auto_scaling_group_provider = Some(provider);
        record.update_status = Some("UPDATE_COMPLETE".into());
        record.update_status_reason = None;
        let txn = Txn::new().when(Compare::unchanged(&key, entry.revision)).then(Op::put(&key, encode(&record)));
        if ctx.commit(txn).await?.is_some() {
            let mut answer = shown(&record, false);
            answer.update_status = Some("UPDATE_IN_PROGRESS".into());
            return Ok(UpdateCapacityProviderResponse { capacity_provider: Some(answer) });
        }
    }
    Err(ApiError::server("The capacity provider kept changing while it was updated; try again."))
}

pub async fn delete(ctx: &Ctx, req: DeleteCapacityProviderRequest) -> ApiResult<DeleteCapacityProviderResponse> {
    let given = req.capacity_provider.clone().unwrap_or_default();
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (key, entry) = existing(ctx, &given)?;
        let name = entry.value.name.clone().unwrap_or_default();
        {
            let ix = ctx.cache.read();
            let associated = range_prefix(&ix.clusters, keys::CLUSTER).find(|(_, c)| {
                c.value.status.as_deref() == Some("ACTIVE")
                    && c.value.capacity_providers.iter().flatten().any(|p| short_name(p) == name)
            });
            if let Some((_, c)) = associated {
                return Err(ApiError::client(format!(
                    "The capacity provider {name} cannot be deleted because it is associated with cluster {}. Remove the capacity provider from the cluster with PutClusterCapacityProviders and try again.",
                    c.value.cluster_name.as_deref().unwrap_or_default()
                )));
            }
        }
        let mut record = (*entry.value).clone();
        record.status = Some("INACTIVE".into());
        record.update_status = Some("DELETE_COMPLETE".into());
        let txn = Txn::new().when(Compare::unchanged(&key, entry.revision)).then(Op::put(&key, encode(&record)));
        if ctx.commit(txn).await?.is_some() {
            let mut answer = shown(&entry.value, false);
            answer.update_status = Some("DELETE_IN_PROGRESS".into());
            return Ok(DeleteCapacityProviderResponse { capacity_provider: Some(answer) });
        }
    }
    Err(ApiError::server("The capacity provider kept changing while it was deleted; try again."))
}

pub async fn describe(
    ctx: &Ctx,
    req: DescribeCapacityProvidersRequest,
) -> ApiResult<DescribeCapacityProvidersResponse> {
    let with_tags = req.include.iter().flatten().any(|i| i == "TAGS");
    if let Some(bad) = req.include.iter().flatten().find(|i| *i != "TAGS") {
        return Err(ApiError::invalid_parameter(format!("include '{bad}' is not valid; the only value is TAGS.")));
    }
    let ix = ctx.cache.read();
    match req.capacity_providers.filter(|n| !n.is_empty()) {
        Some(names) => {
            crate::domain::lookup::check_batch("capacityProviders", names.len(), 100)?;
            let mut found = Vec::new();
            let mut failures = Vec::new();
            for given in names {
                let name = short_name(&given);
                if RESERVED.contains(&name) {
                    found.push(shown(&reserved_provider(ctx, name), with_tags));
                    continue;
                }
                match ix.capacity_providers.get(&keys::capacity_provider(name)) {
                    Some(e) => found.push(shown(&e.value, with_tags)),
                    None => failures.push(Failure {
                        arn: Some(if given.starts_with("arn:") {
                            given.clone()
                        } else {
                            ctx.arns.capacity_provider(&given)
                        }),
                        reason: Some("MISSING".into()),
                        detail: None,
                    }),
                }
            }
            Ok(DescribeCapacityProvidersResponse {
                capacity_providers: Some(found),
                failures: Some(failures),
                next_token: None,
            })
        }
        None => {
            let scope = "DescribeCapacityProviders";
            let pr = ctx.pager.request(scope, req.next_token.as_deref(), req.max_results, 10, 10)?;
            // The reserved providers take their place among the stored ones in key order.
            let reserved: Vec<(String, CapacityProvider)> =
                RESERVED.iter().map(|n| (keys::capacity_provider(n), reserved_provider(ctx, n))).collect();
            let mut all: Vec<(&str, &CapacityProvider)> = range_prefix(&ix.capacity_providers, keys::CAPACITY_PROVIDER)
                .map(|(k, e)| (k.as_str(), &*e.value))
                .chain(reserved.iter().map(|(k, p)| (k.as_str(), p)))
                .collect();
            all.sort_by_key(|(k, _)| *k);
            let (items, next) = page(&ctx.pager, scope, &pr, all.into_iter(), |(k, _)| k);
            Ok(DescribeCapacityProvidersResponse {
                capacity_providers: Some(items.into_iter().map(|(_, p)| shown(p, with_tags)).collect()),
                failures: Some(Vec::new()),
                next_token: next,
            })
        }
    }
}
