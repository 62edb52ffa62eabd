//! Groups: create, update, describe (with their instances), set the desired capacity, delete.
//! The API writes the group's settings; the group loop launches and terminates hosts to match
//! them. Deleting a group that still has hosts needs `ForceDelete`: the group is then marked
//! `Delete in progress` with no capacity, and the loop removes the record once its hosts are gone.

use flotilla_api::Ctx;
use flotilla_hosts::network::default_vpc;
use flotilla_hosts::{keys, AutoScalingGroup, Host, LaunchTemplate, Lifecycle};
use flotilla_query::{Params, QueryError, Xml};
use flotilla_store::{Compare, Op, Revision, Txn};

use super::input::{self, validation, Launch};
use super::shapes;
use crate::api::ec2::launch_templates;
use crate::api::{paging, records, Result};

pub const DELETING: &str = "Delete in progress";

pub fn not_found(name: &str) -> QueryError {
    validation(format!("AutoScalingGroup name not found - AutoScalingGroup '{name}' not found"))
}

/// The group named by the request's `AutoScalingGroupName`, with its revision.
pub async fn load(ctx: &Ctx, p: &Params) -> Result<(AutoScalingGroup, Revision)> {
    let name = p.required("AutoScalingGroupName")?;
    records::get(ctx, &keys::group(name)).await?.ok_or_else(|| not_found(name))
}

/// Every host record, with its revision.
pub async fn all_hosts(ctx: &Ctx) -> Result<Vec<(Host, Revision)>> {
    Ok(records::list(ctx, keys::HOST).await?.into_iter().map(|(_, h, r)| (h, r)).collect())
}

/// Whether a host counts as one of its group's instances (terminated ones no longer do).
pub fn in_group(h: &Host, group: &str) -> bool {
    h.group.as_deref() == Some(group) && h.lifecycle != Lifecycle::Terminated
}

/// The template a request names, if it exists.
async fn template_for(ctx: &Ctx, launch: &Launch) -> Result<Option<LaunchTemplate>> {
    let spec = launch.template();
    match launch_templates::find(ctx, spec.id.as_deref(), spec.name.as_deref()).await {
        Ok((t, _)) => Ok(Some(t)),
        Err(e) if e.status < 500 => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn create(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let name = p.required("AutoScalingGroupName")?;
    input::check_group_name(name)?;
    input::check_supported(p)?;
    let launch = input::launch(p)?.ok_or_else(|| {
        validation("Valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter.")
    })?;
    let min = p.required_int::<u32>("MinSize")?;
    let max = p.required_int::<u32>("MaxSize")?;
    let desired = p.int::<u32>("DesiredCapacity")?.unwrap_or(min);
    input::check_sizes(min, max, desired)?;
    let vpc = default_vpc(&ctx.arns.region);
    let (subnet_ids, availability_zones) = input::placement(p, &vpc)?
        .ok_or_else(|| validation("At least one Availability Zone or VPC Subnet is required."))?;
    let reference = input::resolve(&launch, template_for(ctx, &launch).await?.as_ref())?;
    let (launch_template, mixed_instances_policy) = input::stored(&launch, reference);
    let tags = input::tags(p, Some(name))?;
    let mut group_tags = Vec::new();
    input::merge_tags(&mut group_tags, tags.into_iter().map(|(_, t)| t));
    let health_check_type = p.get("HealthCheckType").unwrap_or("EC2");
    if !["EC2", "ELB"].contains(&health_check_type) {
        return Err(validation(format!("Invalid HealthCheckType '{health_check_type}': use EC2 or ELB.")));
    }
    let group = AutoScalingGroup {
        name: name.to_string(),
        arn: format!(
            "arn:{}:autoscaling:{}:{}:autoScalingGroup:{}:autoScalingGroupName/{name}",
            ctx.arns.partition,
            ctx.arns.region,
            ctx.arns.account,
            uuid::Uuid::new_v4()
        ),
        created_at_ms: ctx.clock.now_ms(),
        launch_template,
        mixed_instances_policy,
        min_size: min,
        max_size: max,
        desired_capacity: desired,
        subnet_ids,
        availability_zones,
        new_instances_protected_from_scale_in: p.bool("NewInstancesProtectedFromScaleIn")?.unwrap_or(false),
        default_cooldown: p.int("DefaultCooldown")?.unwrap_or(300),
        health_check_type: health_check_type.to_string(),
        health_check_grace_period: p.int("HealthCheckGracePeriod")?.unwrap_or(0),
        capacity_rebalance: p.bool("CapacityRebalance")?.unwrap_or(false),
        tags: group_tags,
        status: None,
        policies: Vec::new(),
    };
    if !records::create(ctx, &keys::group(name), &group).await? {
        return Err(QueryError::new(
            "AlreadyExists",
            format!("AutoScalingGroup by this name already exists - A group with the name {name} already exists"),
        ));
    }
    Ok(Xml::new())
}

pub async fn update(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let (current, _) = load(ctx, p).await?;
    input::check_supported(p)?;
    let launch = input::launch(p)?;
    let reference = match &launch {
        Some(l) => Some(input::resolve(l, template_for(ctx, l).await?.as_ref())?),
        None => None,
    };
    let placement = input::placement(p, &default_vpc(&ctx.arns.region))?;
    let (min, max, desired) = (p.int::<u32>("MinSize")?, p.int::<u32>("MaxSize")?, p.int::<u32>("DesiredCapacity")?);
    let protect = p.bool("NewInstancesProtectedFromScaleIn")?;
    let (cooldown, grace) = (p.int::<u32>("DefaultCooldown")?, p.int::<u32>("HealthCheckGracePeriod")?);
    let rebalance = p.bool("CapacityRebalance")?;
    let health_check_type = p.get("HealthCheckType");
    if let Some(h) = health_check_type.filter(|h| !["EC2", "ELB"].contains(h)) {
        return Err(validation(format!("Invalid HealthCheckType '{h}': use EC2 or ELB.")));
    }
    records::update(ctx, &keys::group(&current.name), |g: &mut AutoScalingGroup| {
        if g.is_deleting() {
            return Err(validation(format!("AutoScalingGroup {} is pending delete.", g.name)));
        }
        let (new_min, new_max) = (min.unwrap_or(g.min_size), max.unwrap_or(g.max_size));
        // As on AWS: without an explicit desired capacity, moving a bound past it drags it along.
        let new_desired = desired.unwrap_or_else(|| g.desired_capacity.clamp(new_min.min(new_max), new_max));
        input::check_sizes(new_min, new_max, new_desired)?;
        (g.min_size, g.max_size, g.desired_capacity) = (new_min, new_max, new_desired);
        if let (Some(l), Some(r)) = (&launch, &reference) {
            (g.launch_template, g.mixed_instances_policy) = input::stored(l, r.clone());
        }
        if let Some((subnets, zones)) = &placement {
            (g.subnet_ids, g.availability_zones) = (subnets.clone(), zones.clone());
        }
        if let Some(v) = protect {
            g.new_instances_protected_from_scale_in = v;
        }
        if let Some(v) = cooldown {
            g.default_cooldown = v;
        }
        if let Some(v) = grace {
            g.health_check_grace_period = v;
        }
        if let Some(v) = rebalance {
            g.capacity_rebalance = v;
        }
        if let Some(v) = health_check_type {
            g.health_check_type = v.to_string();
        }
        Ok(())
    })
    .await?
    .ok_or_else(|| not_found(&current.name))?;
    Ok(Xml::new())
}

pub async fn set_desired_capacity(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let (current, _) = load(ctx, p).await?;
    let desired = p.required_int::<u32>("DesiredCapacity")?;
    p.bool("HonorCooldown")?;
    records::update(ctx, &keys::group(&current.name), |g: &mut AutoScalingGroup| {
        if g.is_deleting() {
            return Err(validation(format!("AutoScalingGroup {} is pending delete.", g.name)));
        }
        if desired > g.max_size {
            return Err(validation(format!(
                "New SetDesiredCapacity value {desired} is above max value {} for the AutoScalingGroup.",
                g.max_size
            )));
        }
        if desired < g.min_size {
            return Err(validation(format!(
                "New SetDesiredCapacity value {desired} is below min value {} for the AutoScalingGroup.",
                g.min_size
            )));
        }
        g.desired_capacity = desired;
        Ok(())
    })
    .await?
    .ok_or_else(|| not_found(&current.name))?;
    Ok(Xml::new())
}

/// Whether a group passes DescribeAutoScalingGroups' `Filters` (`tag-key`, `tag-value`,
/// `tag:<key>`).
fn passes(g: &AutoScalingGroup, filters: &[flotilla_query::Filter]) -> Result<bool> {
    for f in filters {
        let values: Vec<&str> = if let Some(key) = f.name.strip_prefix("tag:") {
            g.tags.iter().filter(|t| t.key == key).map(|t| t.value.as_str()).collect()
        } else {
            match f.name.as_str() {
                "tag-key" => g.tags.iter().map(|t| t.key.as_str()).collect(),
                "tag-value" => g.tags.iter().map(|t| t.value.as_str()).collect(),
                other => {
                    return Err(validation(format!(
                        "Filter '{other}' is not supported: use tag-key, tag-value or tag:<key>."
                    )))
                }
            }
        };
        if !f.values.iter().any(|v| values.contains(&v.as_str())) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `MaxRecords` for Auto Scaling's describes: 1 to 100, and `default` when absent.
pub fn max_records(p: &Params, default: usize) -> Result<usize> {
    match p.int::<usize>("MaxRecords")? {
        None => Ok(default),
        Some(n @ 1..=100) => Ok(n),
        Some(n) => Err(validation(format!(
            "1 validation error detected: Value '{n}' at 'maxRecords' failed to satisfy constraint: Member must have value between 1 and 100"
        ))),
    }
}

pub async fn describe(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let names = p.list("AutoScalingGroupNames")?;
    let filters = p.filters("Filters")?;
    let mut groups = Vec::new();
    for (_, g, _) in records::list::<AutoScalingGroup>(ctx, keys::GROUP).await? {
        if (names.is_empty() || names.contains(&g.name)) && passes(&g, &filters)? {
            groups.push(g);
        }
    }
    let (page, next) =
        paging::page(p.dialect(), groups, |g| g.name.clone(), Some(max_records(p, 50)?), p.get("NextToken"))?;
    // `IncludeInstances=false` leaves the instances out (and their records unread).
    let hosts = if p.bool("IncludeInstances")?.unwrap_or(true) { all_hosts(ctx).await? } else { Vec::new() };
    let mut x = Xml::new();
    x.list("AutoScalingGroups", "member", &page, |x, g| {
        let mine: Vec<&Host> = hosts.iter().map(|(h, _)| h).filter(|h| in_group(h, &g.name)).collect();
        shapes::group(x, g, &mine);
    });
    x.opt_leaf("NextToken", next);
    Ok(x)
}

pub async fn delete(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let force = p.bool("ForceDelete")?.unwrap_or(false);
    for _ in 0..flotilla_api::context::MAX_CAS_ATTEMPTS {
        let (g, revision) = load(ctx, p).await?;
        let key = keys::group(&g.name);
        let hosts: Vec<(Host, Revision)> =
            all_hosts(ctx).await?.into_iter().filter(|(h, _)| in_group(h, &g.name)).collect();
        let txn = if hosts.is_empty() {
            // Nothing to terminate: the group goes at once.
            Txn::new().when(Compare::unchanged(&key, revision)).then(Op::delete(&key))
        } else if !force {
            return Err(QueryError::new(
                "ResourceInUse",
                "You cannot delete an AutoScalingGroup while there are instances or pending Spot instance request(s) still in the group.",
            ));
        } else {
            let deleting = AutoScalingGroup {
                status: Some(DELETING.to_string()),
                min_size: 0,
                max_size: 0,
                desired_capacity: 0,
                ..g.clone()
            };
            Txn::new().when(Compare::unchanged(&key, revision)).then(Op::put(&key, records::encode(&deleting)))
        };
        if records::commit(ctx, txn).await? {
            return Ok(Xml::new());
        }
    }
    Err(records::internal("the group kept changing while this request tried to delete it; try again"))
}
