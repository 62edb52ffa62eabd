//! Launch templates: create (with a name unique in the region), new versions from a source
//! version, describe, set the default version, delete. A template is one record holding all its
//! versions; its name is reserved by a second key written in the same transaction.

use base64::Engine;
use flotilla_api::Ctx;
use flotilla_hosts::{keys, LaunchTemplate, LaunchTemplateVersion, Tag};
use flotilla_query::{Params, QueryError, Xml};
use flotilla_store::{Compare, Op, Revision, Txn};

use super::filters::{self, Filterable};
use super::template_xml;
use crate::api::{paging, records, Result};

const MAX_NAME: usize = 128;

/// EC2's name rule: 3 to 128 of letters, digits and `( ) . - / _`.
pub fn check_name(name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "().-/_".contains(c);
    if (3..=MAX_NAME).contains(&name.len()) && name.chars().all(ok_char) {
        return Ok(());
    }
    Err(QueryError::new(
        "InvalidLaunchTemplateName.MalformedException",
        "A launch template name must be between 3 and 128 characters, and may contain letters, numbers, and the following characters: - ( ) . / _.'",
    ))
}

fn new_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("lt-{}", &hex[..17])
}

fn id_not_found(id: &str) -> QueryError {
    QueryError::new(
        "InvalidLaunchTemplateId.NotFound",
        format!("The specified launch template, with template ID {id}, does not exist."),
    )
}

fn name_not_found(name: &str) -> QueryError {
    QueryError::new(
        "InvalidLaunchTemplateName.NotFoundException",
        format!("The specified launch template, with template name {name}, does not exist."),
    )
}

fn check_id(id: &str) -> Result<()> {
    let hex = id.strip_prefix("lt-").unwrap_or("");
    if hex.len() == 17 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(());
    }
    Err(QueryError::new(
        "InvalidLaunchTemplateId.Malformed",
        format!("The specified ID for the launch template ({id}) is malformed."),
    ))
}

/// Every template, in id order.
pub async fn all(ctx: &Ctx) -> Result<Vec<(LaunchTemplate, Revision)>> {
    Ok(records::list(ctx, keys::LAUNCH_TEMPLATE).await?.into_iter().map(|(_, t, r)| (t, r)).collect())
}

/// The template a request names by `LaunchTemplateId` or `LaunchTemplateName`.
pub async fn find(ctx: &Ctx, id: Option<&str>, name: Option<&str>) -> Result<(LaunchTemplate, Revision)> {
    match (id, name) {
        (Some(id), _) => {
            check_id(id)?;
            records::get(ctx, &keys::launch_template(id)).await?.ok_or_else(|| id_not_found(id))
        }
        (None, Some(name)) => {
            all(ctx).await?.into_iter().find(|(t, _)| t.name == name).ok_or_else(|| name_not_found(name))
        }
        (None, None) => Err(QueryError::new(
            "MissingParameter",
            "The request must contain the parameter LaunchTemplateName or LaunchTemplateId",
        )),
    }
}

/// Reads `LaunchTemplateData` over `base` (a source version's data, or nothing).
fn read_data(p: &Params, base: Option<&LaunchTemplateVersion>, number: u32, now: i64) -> Result<LaunchTemplateVersion> {
    let d = p.sub("LaunchTemplateData");
    let mut v = match base {
        Some(b) => LaunchTemplateVersion { number, created_at_ms: now, description: None, ..b.clone() },
        None => LaunchTemplateVersion {
            number,
            description: None,
            created_at_ms: now,
            instance_type: None,
            user_data: None,
            image_id: None,
            security_group_ids: vec![],
            other: Default::default(),
        },
    };
    if let Some(t) = d.get("InstanceType") {
        v.instance_type = Some(t.to_string());
    }
    if let Some(u) = d.get("UserData") {
        if base64::engine::general_purpose::STANDARD.decode(u.trim()).is_err() {
            return Err(QueryError::new("InvalidUserData.Malformed", "Invalid BASE64 encoding of user data."));
        }
        v.user_data = Some(u.to_string());
    }
    if let Some(i) = d.get("ImageId") {
        v.image_id = Some(i.to_string());
    }
    let groups = d.list("SecurityGroupId")?;
    if !groups.is_empty() {
        v.security_group_ids = groups;
    }
    let known = ["InstanceType", "UserData", "ImageId"];
    for (key, value) in d.pairs() {
        if !known.contains(&key) && !key.starts_with("SecurityGroupId.") {
            v.other.insert(key.to_string(), value.to_string().into());
        }
    }
    v.description = p.get("VersionDescription").map(str::to_string);
    if v.description.as_ref().is_some_and(|d| d.len() > 255) {
        return Err(QueryError::new(
            "InvalidParameterValue",
            "VersionDescription must be at most 255 characters long.",
        ));
    }
    Ok(v)
}

pub async fn create(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let name = p.required("LaunchTemplateName")?;
    check_name(name)?;
    if !p.has("LaunchTemplateData") {
        return Err(QueryError::missing(p.dialect(), "LaunchTemplateData"));
    }
    let now = ctx.clock.now_ms();
    let version = read_data(p, None, 1, now)?;
    let mut tags = Vec::new();
    for spec in p.tag_specifications()? {
        if spec.resource_type.as_deref() != Some("launch-template") {
            return Err(QueryError::new(
                "InvalidParameterValue",
                format!(
                    "'{}' is not a valid taggable resource type for this operation.",
                    spec.resource_type.unwrap_or_default()
                ),
            ));
        }
        tags.extend(spec.tags.into_iter().map(|(key, value)| Tag { key, value, propagate_at_launch: false }));
    }
    let template = LaunchTemplate {
        id: new_id(),
        name: name.to_string(),
        created_at_ms: now,
        default_version: 1,
        versions: vec![version],
        tags,
    };
    let (key, name_key) = (keys::launch_template(&template.id), keys::launch_template_name(name));
    let txn = Txn::new()
        .when(Compare::absent(&name_key))
        .when(Compare::absent(&key))
        .then(Op::put(&name_key, template.id.as_bytes().to_vec()))
        .then(Op::put(&key, records::encode(&template)));
    if !records::commit(ctx, txn).await? {
        return Err(QueryError::new(
            "InvalidLaunchTemplateName.AlreadyExistsException",
            format!("Launch template name already in use: {name}."),
        ));
    }
    let mut x = Xml::new();
    x.elem("launchTemplate", |x| template_xml::template(ctx, x, &template));
    Ok(x)
}

pub async fn create_version(ctx: &Ctx, p: &Params) -> Result<Xml> {
    if !p.has("LaunchTemplateData") {
        return Err(QueryError::missing(p.dialect(), "LaunchTemplateData"));
    }
    let (found, _) = find(ctx, p.get("LaunchTemplateId"), p.get("LaunchTemplateName")).await?;
    let source = p.get("SourceVersion");
    let now = ctx.clock.now_ms();
    let mut made = None;
    let updated = records::update(ctx, &keys::launch_template(&found.id), |t: &mut LaunchTemplate| {
        let base = match source {
            Some(s) => Some(t.version(Some(s)).ok_or_else(|| version_not_found(t, s))?.clone()),
            None => None,
        };
        let v = read_data(p, base.as_ref(), t.latest_version() + 1, now)?;
        made = Some(v.clone());
        t.versions.push(v);
        Ok(())
    })
    .await?;
    let (Some(t), Some(v)) = (updated, made) else { return Err(id_not_found(&found.id)) };
    let mut x = Xml::new();
    x.elem("launchTemplateVersion", |x| template_xml::version(ctx, x, &t, &v));
    Ok(x)
}

fn version_not_found(t: &LaunchTemplate, version: &str) -> QueryError {
    QueryError::new(
        "InvalidLaunchTemplateId.VersionNotFound",
        format!("Could not find launch template version {version} for launch template {}.", t.id),
    )
}

impl Filterable for LaunchTemplate {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        match name {
            "launch-template-name" => Some(vec![self.name.clone()]),
            "create-time" => Some(vec![crate::api::time::iso8601(self.created_at_ms)]),
            _ => filters::tag_filter(name, self.tags.iter().map(|t| (t.key.as_str(), t.value.as_str()))),
        }
    }
}

pub async fn describe(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let (ids, names) = (p.list("LaunchTemplateId")?, p.list("LaunchTemplateName")?);
    let mut templates: Vec<LaunchTemplate> = all(ctx).await?.into_iter().map(|(t, _)| t).collect();
    for id in &ids {
        check_id(id)?;
        if !templates.iter().any(|t| &t.id == id) {
            return Err(id_not_found(id));
        }
    }
    for name in &names {
        if !templates.iter().any(|t| &t.name == name) {
            return Err(QueryError::new(
                "InvalidLaunchTemplateName.NotFoundException",
                "At least one of the launch templates specified in the request does not exist.",
            ));
        }
    }
    templates.retain(|t| (ids.is_empty() || ids.contains(&t.id)) && (names.is_empty() || names.contains(&t.name)));
    let templates = filters::retain(templates, &p.filters("Filter")?)?;
    let (page, next) =
        paging::page(p.dialect(), templates, |t| t.id.clone(), p.int("MaxResults")?, p.get("NextToken"))?;
    let mut x = Xml::new();
    x.list("launchTemplates", "item", &page, |x, t| template_xml::template(ctx, x, t));
    x.opt_leaf("nextToken", next);
    Ok(x)
}

pub async fn describe_versions(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let (id, name) = (p.get("LaunchTemplateId"), p.get("LaunchTemplateName"));
    let wanted = p.list("LaunchTemplateVersion")?;
    let templates = match (id, name) {
        (None, None) => all(ctx).await?.into_iter().map(|(t, _)| t).collect(),
        _ => vec![find(ctx, id, name).await?.0],
    };
    let (min, max) = (p.int::<u32>("MinVersion")?, p.int::<u32>("MaxVersion")?);
    let mut out = Vec::new();
    for t in &templates {
        if wanted.is_empty() {
            out.extend(
                t.versions
                    .iter()
                    .filter(|v| min.is_none_or(|m| v.number >= m) && max.is_none_or(|m| v.number <= m))
                    .map(|v| (t, v)),
            );
            continue;
        }
        for w in &wanted {
            if w.parse::<u32>().is_err() && w != "$Latest" && w != "$Default" {
                return Err(QueryError::new(
                    "InvalidParameterValue",
                    format!("Invalid launch template version: '{w}'. Specify a version number, $Latest or $Default."),
                ));
            }
            match t.version(Some(w)) {
                Some(v)
                    if !out.iter().any(|(o, ov): &(&LaunchTemplate, &LaunchTemplateVersion)| {
                        o.id == t.id && ov.number == v.number
                    }) =>
                {
                    out.push((t, v))
                }
                Some(_) => {}
                // Across all templates, only `$Latest`/`$Default` make sense; a number one of them
                // lacks is EC2's error only when a template was named.
                None if id.is_some() || name.is_some() => return Err(version_not_found(t, w)),
                None => {}
            }
        }
    }
    let (page, next) = paging::page(
        p.dialect(),
        out,
        |(t, v)| format!("{}:{}", t.id, v.number),
        p.int("MaxResults")?,
        p.get("NextToken"),
    )?;
    let mut x = Xml::new();
    x.list("launchTemplateVersionSet", "item", &page, |x, (t, v)| template_xml::version(ctx, x, t, v));
    x.opt_leaf("nextToken", next);
    Ok(x)
}

pub async fn modify(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let (found, _) = find(ctx, p.get("LaunchTemplateId"), p.get("LaunchTemplateName")).await?;
    let default = p.get("SetDefaultVersion");
    let updated = records::update(ctx, &keys::launch_template(&found.id), |t: &mut LaunchTemplate| {
        if let Some(d) = default {
            let number = t.version(Some(d)).ok_or_else(|| version_not_found(t, d))?.number;
            t.default_version = number;
        }
        Ok(())
    })
    .await?
    .ok_or_else(|| id_not_found(&found.id))?;
    let mut x = Xml::new();
    x.elem("launchTemplate", |x| template_xml::template(ctx, x, &updated));
    Ok(x)
}

pub async fn delete(ctx: &Ctx, p: &Params) -> Result<Xml> {
    for _ in 0..flotilla_api::context::MAX_CAS_ATTEMPTS {
        let (t, revision) = find(ctx, p.get("LaunchTemplateId"), p.get("LaunchTemplateName")).await?;
        let txn = Txn::new()
            .when(Compare::unchanged(keys::launch_template(&t.id), revision))
            .then(Op::delete(keys::launch_template(&t.id)))
            .then(Op::delete(keys::launch_template_name(&t.name)));
        if records::commit(ctx, txn).await? {
            let mut x = Xml::new();
            x.elem("launchTemplate", |x| template_xml::template(ctx, x, &t));
            return Ok(x);
        }
    }
    Err(records::internal("the launch template kept changing while this request tried to delete it; try again"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_ec2s_rule() {
        for ok in ["abc", "web/prod_(1).x-y", &"a".repeat(128)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "has space", "ü-nicode", &"a".repeat(129)] {
            assert_eq!(check_name(bad).unwrap_err().code, "InvalidLaunchTemplateName.MalformedException", "{bad}");
        }
    }

    #[test]
    fn ids_are_checked_for_shape() {
        assert!(check_id(&new_id()).is_ok());
        assert_eq!(check_id("lt-xyz").unwrap_err().code, "InvalidLaunchTemplateId.Malformed");
    }
}
