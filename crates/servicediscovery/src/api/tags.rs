//! Tags on namespaces and services: `Tags` members of the create calls, and TagResource,
//! UntagResource and ListTagsForResource by resource ARN.

use flotilla_api::Ctx;
use flotilla_endpoints::cloudmap::{Namespace, Service};
use flotilla_endpoints::{keys, Tag};
use flotilla_store::{Compare, Txn};
use serde_json::{json, Value};

use super::error::{Result, SdError};
use super::input::{str_of, Input};
use super::store::{self, put, ATTEMPTS};

const MAX_TAGS: usize = 50;

/// The `Tags` list of a request, validated.
pub fn parse(input: &Input, name: &str) -> Result<Vec<Tag>> {
    let mut tags: Vec<Tag> = Vec::new();
    for (i, t) in input.list(name)?.iter().enumerate() {
        let key = str_of(t.get("Key"), &format!("{name}.{i}.Key"))?.unwrap_or_default();
        let value = str_of(t.get("Value"), &format!("{name}.{i}.Value"))?
            .ok_or_else(|| SdError::invalid(format!("{name}.{i}.Value is required.")))?;
        if key.is_empty() || key.chars().count() > 128 {
            return Err(SdError::invalid(format!("{name}.{i}.Key must be 1 to 128 characters long.")));
        }
        if value.chars().count() > 256 {
            return Err(SdError::invalid(format!("{name}.{i}.Value must be at most 256 characters long.")));
        }
        tags.retain(|t| t.key != key);
        tags.push(Tag { key: key.into(), value: value.into() });
    }
    Ok(tags)
}

pub fn too_many(arn: &str) -> SdError {
    SdError::new("TooManyTagsException", format!("A resource can have at most {MAX_TAGS} tags."))
        .with("ResourceName", arn)
}

pub fn check_count(tags: &[Tag], arn: &str) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(too_many(arn));
    }
    Ok(())
}

enum Resource {
    Namespace(String),
    Service(String),
}

fn resource(arn: &str) -> Result<Resource> {
    let tail = arn
        .strip_prefix("arn:")
        .and_then(|r| r.split(':').nth(4))
        .filter(|_| arn.split(':').nth(2) == Some("servicediscovery"))
        .ok_or_else(|| SdError::invalid(format!("ResourceARN {arn} is not a Cloud Map ARN.")))?;
    match tail.split_once('/') {
        Some(("namespace", id)) => Ok(Resource::Namespace(id.into())),
        Some(("service", id)) => Ok(Resource::Service(id.into())),
        _ => Err(SdError::invalid(format!("ResourceARN {arn} names neither a namespace nor a service."))),
    }
}

fn not_found(arn: &str) -> SdError {
    SdError::new("ResourceNotFoundException", format!("The resource {arn} does not exist."))
}

/// Reads the tagged record, lets `change` edit its tags, and writes it back unless it changed.
async fn edit(ctx: &Ctx, arn: &str, change: impl Fn(&mut Vec<Tag>) -> Result<()>) -> Result<Vec<Tag>> {
    let target = resource(arn)?;
    for _ in 0..ATTEMPTS {
        let (txn, tags) = match &target {
            Resource::Namespace(id) => {
                let key = keys::namespace(id);
                let Some((mut ns, rev)) = store::get::<Namespace>(ctx, &key).await? else { return Err(not_found(arn)) };
                if ns.arn != arn {
                    return Err(not_found(arn));
                }
                change(&mut ns.tags)?;
                (Txn::new().when(Compare::unchanged(key.clone(), rev)).then(put(key, &ns)), ns.tags)
            }
            Resource::Service(id) => {
                let key = keys::service(id);
                let Some((mut svc, rev)) = store::get::<Service>(ctx, &key).await? else { return Err(not_found(arn)) };
                if svc.arn != arn {
                    return Err(not_found(arn));
                }
                change(&mut svc.tags)?;
                (Txn::new().when(Compare::unchanged(key.clone(), rev)).then(put(key, &svc)), svc.tags)
            }
        };
        if store::commit(ctx, txn).await? {
            return Ok(tags);
        }
    }
    Err(store::lost_race(arn))
}

pub async fn tag_resource(ctx: &Ctx, input: &Input) -> Result<Value> {
    let arn = input.required_str("ResourceARN")?.to_string();
    let new = parse(input, "Tags")?;
    if new.is_empty() {
        return Err(SdError::invalid("Tags is required."));
    }
    edit(ctx, &arn, |tags| {
        for t in &new {
            tags.retain(|x| x.key != t.key);
            tags.push(t.clone());
        }
        check_count(tags, &arn)
    })
    .await?;
    Ok(json!({}))
}

pub async fn untag_resource(ctx: &Ctx, input: &Input) -> Result<Value> {
    let arn = input.required_str("ResourceARN")?.to_string();
    let mut remove = Vec::new();
    for (i, k) in input.list("TagKeys")?.iter().enumerate() {
        remove.push(str_of(Some(k), &format!("TagKeys.{i}"))?.unwrap_or_default().to_string());
    }
    if remove.is_empty() {
        return Err(SdError::invalid("TagKeys is required."));
    }
    edit(ctx, &arn, |tags| {
        tags.retain(|t| !remove.contains(&t.key));
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub async fn list_tags(ctx: &Ctx, input: &Input) -> Result<Value> {
    let arn = input.required_str("ResourceARN")?.to_string();
    let tags = read(ctx, &arn).await?;
    Ok(json!({ "Tags": super::shapes::tags(&tags) }))
}

async fn read(ctx: &Ctx, arn: &str) -> Result<Vec<Tag>> {
    match resource(arn)? {
        Resource::Namespace(id) => match store::get::<Namespace>(ctx, &keys::namespace(&id)).await? {
            Some((ns, _)) if ns.arn == arn => Ok(ns.tags),
            _ => Err(not_found(arn)),
        },
        Resource::Service(id) => match store::get::<Service>(ctx, &keys::service(&id)).await? {
            Some((svc, _)) if svc.arn == arn => Ok(svc.tags),
            _ => Err(not_found(arn)),
        },
    }
}
