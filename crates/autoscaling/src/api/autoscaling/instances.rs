//! A group's instances: protection from scale-in, terminating one (the host is marked
//! `Terminating` for the group loop to act on, optionally lowering the desired capacity, in one
//! transaction with the activity it starts), and DescribeAutoScalingInstances.

use flotilla_api::Ctx;
use flotilla_hosts::{keys, AutoScalingGroup, Host, Lifecycle};
use flotilla_query::{Params, Xml};
use flotilla_store::{Compare, Op, Txn};

use super::activities::new_activity;
use super::groups::{self, all_hosts, in_group, max_records};
use super::input::validation;
use super::shapes;
use crate::api::time::iso8601;
use crate::api::{paging, records, Result};

pub async fn set_protection(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let (group, _) = groups::load(ctx, p).await?;
    let ids = p.list("InstanceIds")?;
    if ids.is_empty() {
        return Err(flotilla_query::QueryError::missing(p.dialect(), "InstanceIds"));
    }
    let protect = p
        .bool("ProtectedFromScaleIn")?
        .ok_or_else(|| flotilla_query::QueryError::missing(p.dialect(), "ProtectedFromScaleIn"))?;
    for _ in 0..flotilla_api::context::MAX_CAS_ATTEMPTS {
        let hosts = all_hosts(ctx).await?;
        let mut txn = Txn::new();
        for id in &ids {
            let Some((h, revision)) = hosts.iter().find(|(h, _)| &h.instance_id == id && in_group(h, &group.name))
            else {
                return Err(validation(format!("The instance {id} is not part of Auto Scaling group {}.", group.name)));
            };
            let changed = Host { protected_from_scale_in: protect, ..h.clone() };
            let key = keys::host(id);
            txn = txn.when(Compare::unchanged(&key, *revision)).then(Op::put(&key, records::encode(&changed)));
        }
        // All the instances change together or none does.
        if records::commit(ctx, txn).await? {
            return Ok(Xml::new());
        }
    }
    Err(records::internal("the instances kept changing while this request tried to protect them; try again"))
}

pub async fn terminate(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let id = p.required("InstanceId")?;
    let decrement = p
        .bool("ShouldDecrementDesiredCapacity")?
        .ok_or_else(|| flotilla_query::QueryError::missing(p.dialect(), "ShouldDecrementDesiredCapacity"))?;
    for _ in 0..flotilla_api::context::MAX_CAS_ATTEMPTS {
        let found = records::get::<Host>(ctx, &keys::host(id)).await?;
        let Some((host, host_rev)) = found.filter(|(h, _)| h.group.is_some() && h.lifecycle != Lifecycle::Terminated)
        else {
            return Err(validation(format!("Instance Id not found - No managed instance found for instance ID: {id}")));
        };
        let name = host.group.clone().unwrap_or_default();
        let Some((mut group, group_rev)) = records::get::<AutoScalingGroup>(ctx, &keys::group(&name)).await? else {
            return Err(validation(format!("Instance Id not found - No managed instance found for instance ID: {id}")));
        };
        let before = group.desired_capacity;
        if decrement {
            if before <= group.min_size {
                return Err(validation(format!(
                    "Currently, desiredCapacity is {before} and minSize is {}. Terminating instance without replacement will violate group's min size constraint. Either set shouldDecrementDesiredCapacity flag to false or lower group's min size.",
                    group.min_size
                )));
            }
            group.desired_capacity = before - 1;
        }
        let now = ctx.clock.now_ms();
        let shrink =
            if decrement { format!(", shrinking the capacity from {before} to {}", before - 1) } else { String::new() };
        let (activity_key, activity) = new_activity(
            &name,
            now,
            format!("Terminating EC2 instance: {id}"),
            format!(
                "At {} instance {id} was taken out of service in response to a user request{shrink}.",
                iso8601(now)
            ),
        );
        // Already terminating: the activity is answered again, nothing changes twice.
        let host_key = keys::host(id);
        let mut txn = Txn::new()
            .when(Compare::unchanged(&host_key, host_rev))
            .when(Compare::absent(&activity_key))
            .then(Op::put(&activity_key, records::encode(&activity)));
        if host.lifecycle != Lifecycle::Terminating {
            let terminating = Host { lifecycle: Lifecycle::Terminating, ..host.clone() };
            txn = txn.then(Op::put(&host_key, records::encode(&terminating)));
        }
        if decrement {
            let group_key = keys::group(&name);
            txn =
                txn.when(Compare::unchanged(&group_key, group_rev)).then(Op::put(&group_key, records::encode(&group)));
        }
        if records::commit(ctx, txn).await? {
            let mut x = Xml::new();
            x.elem("Activity", |x| shapes::activity(x, &activity, Some(&group.arn)));
            return Ok(x);
        }
    }
    Err(records::internal("the instance kept changing while this request tried to terminate it; try again"))
}

pub async fn describe(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let ids = p.list("InstanceIds")?;
    let hosts: Vec<Host> = all_hosts(ctx)
        .await?
        .into_iter()
        .map(|(h, _)| h)
        .filter(|h| h.group.as_ref().is_some_and(|g| in_group(h, g)))
        .filter(|h| ids.is_empty() || ids.contains(&h.instance_id))
        .collect();
    let (page, next) =
        paging::page(p.dialect(), hosts, |h| h.instance_id.clone(), Some(max_records(p, 50)?), p.get("NextToken"))?;
    let mut x = Xml::new();
    x.list("AutoScalingInstances", "member", &page, shapes::instance_details);
    x.opt_leaf("NextToken", next);
    Ok(x)
}
