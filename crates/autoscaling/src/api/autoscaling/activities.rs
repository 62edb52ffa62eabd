//! Scaling activities and policies as the group's history and settings: DescribeScalingActivities
//! (newest first) over the activity records, DescribePolicies over the policies on each group,
//! and the activity a user's request starts (TerminateInstanceInAutoScalingGroup).

use flotilla_api::Ctx;
use flotilla_hosts::{keys, Activity, AutoScalingGroup};
use flotilla_query::{Params, Xml};

use super::groups::max_records;
use super::input::validation;
use super::shapes;
use crate::api::{paging, records, Result};

/// The key and record of a new activity `InProgress` since `now_ms`.
pub fn new_activity(group: &str, now_ms: i64, description: String, cause: String) -> (String, Activity) {
    Activity::start(group, description, cause, now_ms)
}

pub async fn describe_activities(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let group = p.get("AutoScalingGroupName");
    let ids = p.list("ActivityIds")?;
    let include_deleted = p.bool("IncludeDeletedGroups")?.unwrap_or(false);
    let prefix = match group {
        Some(g) => keys::activities_of(g),
        None => keys::ACTIVITY.to_string(),
    };
    let groups: Vec<AutoScalingGroup> = records::list(ctx, keys::GROUP).await?.into_iter().map(|(_, g, _)| g).collect();
    // An unknown group has no activities to show (as on AWS), rather than an error.
    let mut activities: Vec<(String, Activity)> = records::list::<Activity>(ctx, &prefix)
        .await?
        .into_iter()
        .filter(|(_, a, _)| ids.is_empty() || ids.contains(&a.activity_id))
        .filter(|(_, a, _)| include_deleted || groups.iter().any(|g| g.name == a.group))
        .map(|(k, a, _)| (k, a))
        .collect();
    // Newest first: by start time, then by key (which orders by time within a group).
    activities.sort_by(|(ka, a), (kb, b)| b.started_at_ms.cmp(&a.started_at_ms).then(kb.cmp(ka)));
    let (page, next) =
        paging::page(p.dialect(), activities, |(k, _)| k.clone(), Some(max_records(p, 100)?), p.get("NextToken"))?;
    let mut x = Xml::new();
    x.list("Activities", "member", &page, |x, (_, a)| {
        let arn = groups.iter().find(|g| g.name == a.group).map(|g| g.arn.as_str());
        shapes::activity(x, a, arn);
    });
    x.opt_leaf("NextToken", next);
    Ok(x)
}

pub async fn describe_policies(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let group = p.get("AutoScalingGroupName");
    let (names, types) = (p.list("PolicyNames")?, p.list("PolicyTypes")?);
    let groups: Vec<AutoScalingGroup> = records::list(ctx, keys::GROUP).await?.into_iter().map(|(_, g, _)| g).collect();
    if let Some(g) = group {
        if !groups.iter().any(|x| x.name == g) {
            return Err(validation(format!("Group {g} not found")));
        }
    }
    let policies: Vec<(&str, &flotilla_hosts::ScalingPolicy)> = groups
        .iter()
        .filter(|g| group.is_none_or(|n| n == g.name))
        .flat_map(|g| g.policies.iter().map(move |p| (g.name.as_str(), p)))
        .filter(|(_, pol)| names.is_empty() || names.contains(&pol.name) || names.contains(&pol.arn))
        .filter(|(_, pol)| types.is_empty() || types.contains(&pol.policy_type))
        .collect();
    let (page, next) = paging::page(
        p.dialect(),
        policies,
        |(g, pol)| format!("{g}/{}", pol.name),
        Some(max_records(p, 50)?),
        p.get("NextToken"),
    )?;
    let mut x = Xml::new();
    x.list("ScalingPolicies", "member", &page, |x, (g, pol)| shapes::policy(x, g, pol));
    x.opt_leaf("NextToken", next);
    Ok(x)
}
