//! Group tags: CreateOrUpdateTags and DeleteTags (each tag names its group by `ResourceId`;
//! every group changes in its own compare-and-swap write, all checked before any is written) and
//! DescribeTags with its `auto-scaling-group`, `key`, `value` and `propagate-at-launch` filters.

use std::collections::BTreeMap;

use flotilla_api::Ctx;
use flotilla_hosts::{keys, AutoScalingGroup, Tag};
use flotilla_query::{Params, QueryError, Xml};

use super::groups::{self, max_records};
use super::input::{self, validation};
use super::shapes;
use crate::api::{paging, records, Result};

/// The request's tags grouped by the group they name.
async fn by_group(ctx: &Ctx, p: &Params) -> Result<BTreeMap<String, Vec<Tag>>> {
    let tags = input::tags(p, None)?;
    if tags.is_empty() {
        return Err(QueryError::missing(p.dialect(), "Tags"));
    }
    let mut out: BTreeMap<String, Vec<Tag>> = BTreeMap::new();
    for (resource, tag) in tags {
        let group = resource.ok_or_else(|| validation(format!("The tag '{}' names no ResourceId.", tag.key)))?;
        out.entry(group).or_default().push(tag);
    }
    for group in out.keys() {
        if records::get::<AutoScalingGroup>(ctx, &keys::group(group)).await?.is_none() {
            return Err(groups::not_found(group));
        }
    }
    Ok(out)
}

pub async fn create_or_update(ctx: &Ctx, p: &Params) -> Result<Xml> {
    for (group, tags) in by_group(ctx, p).await? {
        records::update(ctx, &keys::group(&group), |g: &mut AutoScalingGroup| {
            input::merge_tags(&mut g.tags, tags.iter().cloned());
            if g.tags.len() > 50 {
                return Err(validation(format!("The group {group} would carry more than 50 tags.")));
            }
            Ok(())
        })
        .await?
        .ok_or_else(|| groups::not_found(&group))?;
    }
    Ok(Xml::new())
}

pub async fn delete(ctx: &Ctx, p: &Params) -> Result<Xml> {
    for (group, tags) in by_group(ctx, p).await? {
        records::update(ctx, &keys::group(&group), |g: &mut AutoScalingGroup| {
            // A value given must match for the tag to go; without one, the key alone decides.
            g.tags.retain(|t| !tags.iter().any(|d| d.key == t.key && (d.value.is_empty() || d.value == t.value)));
            Ok(())
        })
        .await?
        .ok_or_else(|| groups::not_found(&group))?;
    }
    Ok(Xml::new())
}

pub async fn describe(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let filters = p.filters("Filters")?;
    let mut out: Vec<(String, Tag)> = Vec::new();
    for (_, g, _) in records::list::<AutoScalingGroup>(ctx, keys::GROUP).await? {
        for t in g.tags {
            out.push((g.name.clone(), t));
        }
    }
    for f in &filters {
        let field = |(g, t): &(String, Tag)| -> Result<String> {
            Ok(match f.name.as_str() {
                "auto-scaling-group" => g.clone(),
                "key" => t.key.clone(),
                "value" => t.value.clone(),
                "propagate-at-launch" => t.propagate_at_launch.to_string(),
                other => {
                    return Err(validation(format!(
                        "Filter '{other}' is not valid: use auto-scaling-group, key, value or propagate-at-launch."
                    )))
                }
            })
        };
        let mut kept = Vec::new();
        for entry in out {
            if f.values.contains(&field(&entry)?) {
                kept.push(entry);
            }
        }
        out = kept;
    }
    let (page, next) = paging::page(
        p.dialect(),
        out,
        |(g, t)| format!("{g}\u{0}{}", t.key),
        Some(max_records(p, 50)?),
        p.get("NextToken"),
    )?;
    let mut x = Xml::new();
    x.list("Tags", "member", &page, |x, (g, t)| shapes::tag(x, g, t));
    x.opt_leaf("NextToken", next);
    Ok(x)
}
