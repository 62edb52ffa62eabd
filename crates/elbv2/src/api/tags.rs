//! AddTags, RemoveTags and DescribeTags over every taggable resource (load balancers, target
//! groups, listeners, rules), each named by its ARN; and the checks tags get wherever they come
//! in (Create* calls take `Tags` too).

use flotilla_api::Ctx;
use flotilla_endpoints::elb::{Listener, LoadBalancer, Rule, TargetGroup};
use flotilla_endpoints::{keys, Tag};
use flotilla_query::{Params, QueryError, Xml};

use super::errors::{lb_not_found, listener_not_found, rule_not_found, tg_not_found, validation};
use super::limits::{RESOURCES_PER_TAG_CALL, TAGS_PER_RESOURCE};
use super::{arns, shapes, store, Result};

/// `Tags.member.N.{Key,Value}`, checked as ELB checks them.
pub fn parse(p: &Params) -> Result<Vec<Tag>> {
    let mut out: Vec<Tag> = Vec::new();
    for t in p.structs("Tags")? {
        let key = t.required("Key")?.to_string();
        let value = t.get("Value").unwrap_or_default().to_string();
        if key.is_empty() || key.chars().count() > 128 {
            return Err(validation(format!("The tag key '{key}' must be 1-128 characters long")));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(validation(format!("The tag key '{key}' starts with 'aws:', which is reserved")));
        }
        if value.chars().count() > 256 {
            return Err(validation(format!("The value of tag '{key}' must be at most 256 characters long")));
        }
        if out.iter().any(|o| o.key == key) {
            return Err(QueryError::new("DuplicateTagKeys", format!("Tag key '{key}' is given more than once")));
        }
        out.push(Tag { key, value });
    }
    if out.len() > TAGS_PER_RESOURCE {
        return Err(too_many());
    }
    Ok(out)
}

fn too_many() -> QueryError {
    QueryError::new("TooManyTags", format!("A resource can have at most {TAGS_PER_RESOURCE} tags"))
}

/// The record key of the resource an ARN names, and how to reach its tags.
enum Resource {
    LoadBalancer(String),
    TargetGroup(String),
    Listener(String),
    Rule(String),
}

fn resource(arn: &str) -> Result<Resource> {
    let kind = arn.splitn(6, ':').nth(5).and_then(|r| r.split('/').next()).unwrap_or("");
    Ok(match kind {
        "loadbalancer" => Resource::LoadBalancer(keys::load_balancer(&arns::load_balancer_id(arn)?)),
        "targetgroup" => Resource::TargetGroup(keys::target_group(&arns::target_group_id(arn)?)),
        "listener" => {
            let (lb, l) = arns::listener_ids(arn)?;
            Resource::Listener(keys::listener(&lb, &l))
        }
        "listener-rule" => {
            let (_, l, r) = arns::rule_ids(arn)?;
            if r == arns::default_rule_id(&l) {
                return Err(validation(format!("'{arn}' is a default rule, which has no tags of its own in Flotilla")));
            }
            Resource::Rule(keys::rule(&l, &r))
        }
        _ => return Err(validation(format!("'{arn}' is not a valid Elastic Load Balancing resource ARN"))),
    })
}

/// Lets `change` edit the tags of the resource `arn` names; its tags afterwards.
async fn edit(ctx: &Ctx, arn: &str, change: impl Fn(&mut Vec<Tag>) -> Result<()>) -> Result<Vec<Tag>> {
    // `update` refuses a record whose ARN is not the one asked for (same id, other name).
    macro_rules! edit_as {
        ($ty:ty, $key:expr, $missing:expr) => {{
            let updated = store::update::<$ty, _>(ctx, &$key, |r| {
                if r.arn != arn {
                    return Err($missing);
                }
                change(&mut r.tags)
            })
            .await?;
            updated.map(|r| r.tags).ok_or_else(|| $missing)
        }};
    }
    match resource(arn)? {
        Resource::LoadBalancer(key) => edit_as!(LoadBalancer, key, lb_not_found()),
        Resource::TargetGroup(key) => edit_as!(TargetGroup, key, tg_not_found()),
        Resource::Listener(key) => edit_as!(Listener, key, listener_not_found()),
        Resource::Rule(key) => edit_as!(Rule, key, rule_not_found()),
    }
}

async fn read(ctx: &Ctx, arn: &str) -> Result<Vec<Tag>> {
    macro_rules! read_as {
        ($ty:ty, $key:expr, $missing:expr) => {
            match store::get::<$ty>(ctx, &$key).await? {
                Some((r, _)) if r.arn == arn => Ok(r.tags),
                _ => Err($missing),
            }
        };
    }
    match resource(arn)? {
        Resource::LoadBalancer(key) => read_as!(LoadBalancer, key, lb_not_found()),
        Resource::TargetGroup(key) => read_as!(TargetGroup, key, tg_not_found()),
        Resource::Listener(key) => read_as!(Listener, key, listener_not_found()),
        Resource::Rule(key) => read_as!(Rule, key, rule_not_found()),
    }
}

fn resource_arns(p: &Params) -> Result<Vec<String>> {
    let arns = p.list("ResourceArns")?;
    if arns.is_empty() {
        return Err(QueryError::missing(p.dialect(), "ResourceArns"));
    }
    if arns.len() > RESOURCES_PER_TAG_CALL {
        return Err(validation(format!("At most {RESOURCES_PER_TAG_CALL} resource ARNs can be given in one call")));
    }
    Ok(arns)
}

pub async fn add(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arns = resource_arns(p)?;
    let tags = parse(p)?;
    if tags.is_empty() {
        return Err(QueryError::missing(p.dialect(), "Tags"));
    }
    for arn in &arns {
        edit(ctx, arn, |current| {
            for t in &tags {
                match current.iter_mut().find(|c| c.key == t.key) {
                    Some(c) => c.value = t.value.clone(),
                    None => current.push(t.clone()),
                }
            }
            if current.len() > TAGS_PER_RESOURCE {
                return Err(too_many());
            }
            Ok(())
        })
        .await?;
    }
    Ok(Xml::new())
}

pub async fn remove(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arns = resource_arns(p)?;
    let keys = p.list("TagKeys")?;
    if keys.is_empty() {
        return Err(QueryError::missing(p.dialect(), "TagKeys"));
    }
    for arn in &arns {
        edit(ctx, arn, |current| {
            current.retain(|t| !keys.contains(&t.key));
            Ok(())
        })
        .await?;
    }
    Ok(Xml::new())
}

pub async fn describe(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let mut found = Vec::new();
    for arn in resource_arns(p)? {
        let tags = read(ctx, &arn).await?;
        found.push((arn, tags));
    }
    let mut x = Xml::new();
    x.list("TagDescriptions", "member", &found, |x, (arn, tags)| {
        x.leaf("ResourceArn", arn);
        shapes::tags(x, tags);
    });
    Ok(x)
}
