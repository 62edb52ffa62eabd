//! How EC2 writes launch templates and their versions (`launchTemplate`,
//! `launchTemplateVersion`, `launchTemplateData`).

use flotilla_api::Ctx;
use flotilla_hosts::{LaunchTemplate, LaunchTemplateVersion, Tag};
use flotilla_query::Xml;

use crate::api::time::iso8601;

/// `createdBy`: every template is the root account's.
fn created_by(ctx: &Ctx) -> String {
    format!("arn:{}:iam::{}:root", ctx.arns.partition, ctx.arns.account)
}

pub fn tag_set(x: &mut Xml, tags: &[Tag]) {
    if tags.is_empty() {
        return;
    }
    x.list("tagSet", "item", tags, |x, t| {
        x.leaf("key", &t.key).leaf("value", &t.value);
    });
}

/// The fields of a `LaunchTemplate`.
pub fn template(ctx: &Ctx, x: &mut Xml, t: &LaunchTemplate) {
    x.leaf("createTime", iso8601(t.created_at_ms))
        .leaf("createdBy", created_by(ctx))
        .leaf("defaultVersionNumber", t.default_version.to_string())
        .leaf("latestVersionNumber", t.latest_version().to_string())
        .leaf("launchTemplateId", &t.id)
        .leaf("launchTemplateName", &t.name);
    tag_set(x, &t.tags);
}

/// The fields of a `LaunchTemplateVersion`.
pub fn version(ctx: &Ctx, x: &mut Xml, t: &LaunchTemplate, v: &LaunchTemplateVersion) {
    x.leaf("createTime", iso8601(v.created_at_ms))
        .leaf("createdBy", created_by(ctx))
        .leaf("defaultVersion", (v.number == t.default_version).to_string())
        .elem("launchTemplateData", |x| data(x, v))
        .leaf("launchTemplateId", &t.id)
        .leaf("launchTemplateName", &t.name)
        .opt_leaf("versionDescription", v.description.as_deref())
        .leaf("versionNumber", v.number.to_string());
}

/// `launchTemplateData`: the fields Flotilla uses, then the scalar ones it keeps as given.
fn data(x: &mut Xml, v: &LaunchTemplateVersion) {
    x.opt_leaf("imageId", v.image_id.as_deref())
        .opt_leaf("instanceType", v.instance_type.as_deref())
        .opt_leaf("userData", v.user_data.as_deref());
    if !v.security_group_ids.is_empty() {
        x.string_list("securityGroupIdSet", "item", &v.security_group_ids);
    }
    for (name, value) in &v.other {
        // Structured members are kept (and launch nothing), but only scalars are described back.
        if let (false, Some(s)) = (name.contains('.'), value.as_str()) {
            x.leaf(&lower_first(name), s);
        }
    }
}

fn lower_first(name: &str) -> String {
    let mut c = name.chars();
    c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
}
