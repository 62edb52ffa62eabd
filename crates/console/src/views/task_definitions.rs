//! The task definitions pages: every family with its latest ACTIVE revision, a family's
//! revisions, and one revision as DescribeTaskDefinition shows it (pretty JSON), with a form that
//! registers a new revision from its registrable fields and a Deregister button.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use flotilla_api::state::cache::range_prefix;
use flotilla_api::state::keys;
use flotilla_api::state::records::TaskDefinitionRecord;
use flotilla_api::ApiError;
use flotilla_model::TaskDefinition;
use serde_json::{json, Value};

use super::{View, ViewRequest};
use crate::html::{
    action_button, action_form, badge, crumbs, esc, facts, href, json_pre, link, opt, section, table, time,
};

/// The fields DescribeTaskDefinition shows that RegisterTaskDefinition does not take.
const NOT_REGISTRABLE: &[&str] = &[
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
    "deleteRequestedAt",
];

fn unable() -> ApiError {
    ApiError::client("Unable to describe task definition.")
}

/// Per family: how many revisions, the latest one, and the latest ACTIVE one.
#[derive(Default)]
struct Family {
    revisions: usize,
    latest: i32,
    latest_active: Option<(i32, Arc<TaskDefinitionRecord>)>,
}

pub async fn families(req: &ViewRequest<'_>) -> Result<View, ApiError> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    {
        let ix = req.ctx.cache.read();
        for e in ix.task_definitions.values() {
            let d = &e.value.definition;
            let f = families.entry(d.family.clone().unwrap_or_default()).or_default();
            let rev = d.revision.unwrap_or(0);
            f.revisions += 1;
            f.latest = f.latest.max(rev);
            if d.status.as_deref() == Some("ACTIVE") && f.latest_active.as_ref().is_none_or(|(r, _)| *r < rev) {
                f.latest_active = Some((rev, e.value.clone()));
            }
        }
    }
    let rows = families.iter().map(|(name, f)| {
        let active = match &f.latest_active {
            Some((rev, rec)) => {
                let d = &rec.definition;
                vec![
                    link(&href(&["task-definitions", name, &rev.to_string()]), &format!("{name}:{rev}")),
                    opt(d.network_mode.as_deref()),
                    opt(d.cpu.as_deref()),
                    opt(d.memory.as_deref()),
                ]
            }
            None => vec![badge("INACTIVE"), String::new(), String::new(), String::new()],
        };
        let mut row = vec![link(&href(&["task-definitions", name]), name), f.revisions.to_string()];
        row.extend(active);
        row
    });
    let list =
        table("families", &["Family", "Revisions", "Latest ACTIVE revision", "Network mode", "CPU", "Memory"], rows);
    let body = format!(
        "{}<h1>Task definitions</h1><p class=\"summary\">{} families</p>{list}",
        crumbs(&[("Task definitions", &href(&["task-definitions"]))]),
        families.len(),
    );
    Ok(View { body })
}

pub async fn revisions(req: &ViewRequest<'_>, family: &str) -> Result<View, ApiError> {
    let defs: Vec<Arc<TaskDefinitionRecord>> = {
        let ix = req.ctx.cache.read();
        let prefix = keys::task_definition_family(family);
        range_prefix(&ix.task_definitions, &prefix).map(|(_, e)| e.value.clone()).collect()
    };
    if defs.is_empty() {
        return Err(unable());
    }
    let rows = defs.iter().rev().map(|rec| {
        let d = &rec.definition;
        let rev = d.revision.unwrap_or(0).to_string();
        let status = d.status.as_deref().unwrap_or("");
        vec![
            link(&href(&["task-definitions", family, &rev]), &format!("{family}:{rev}")),
            badge(status),
            esc(&time(d.registered_at)),
            opt(d.cpu.as_deref()),
            opt(d.memory.as_deref()),
            esc(&d
                .container_definitions
                .as_deref()
                .unwrap_or_default()
                .iter()
                .filter_map(|c| c.image.as_deref())
                .collect::<Vec<_>>()
                .join(", ")),
            if status == "ACTIVE" { deregister(family, &rev) } else { String::new() },
        ]
    });
    let this = href(&["task-definitions", family]);
    let body = format!(
        "{}<h1>Task definition {}</h1>{}",
        crumbs(&[("Task definitions", &href(&["task-definitions"])), (family, &this)]),
        esc(family),
        table("revisions", &["Revision", "Status", "Registered at", "CPU", "Memory", "Images", ""], rows),
    );
    Ok(View { body })
}

fn deregister(family: &str, revision: &str) -> String {
    action_button(
        "DeregisterTaskDefinition",
        &json!({"taskDefinition": format!("{family}:{revision}")}),
        "Deregister",
        Some(&format!("Deregister {family}:{revision}? Services and tasks can no longer use it.")),
        "Revision deregistered",
    )
}

/// The definition as RegisterTaskDefinition takes it: the shown fields it does not take
/// dropped, and the revision's tags (kept beside it) added back.
pub fn registrable(rec: &TaskDefinitionRecord) -> Value {
    let mut v = serde_json::to_value(&rec.definition).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        for k in NOT_REGISTRABLE {
            o.remove(*k);
        }
        if !rec.tags.is_empty() {
            o.insert("tags".into(), serde_json::to_value(&rec.tags).unwrap_or_default());
        }
    }
    v
}

pub async fn show(req: &ViewRequest<'_>, family: &str, revision: &str) -> Result<View, ApiError> {
    let number: u32 = revision.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
        ApiError::invalid_parameter(format!("revision '{revision}' is not valid: it is a number from 1."))
    })?;
    let rec = {
        let ix = req.ctx.cache.read();
        ix.task_definitions.get(&keys::task_definition(family, number)).map(|e| e.value.clone())
    }
    .ok_or_else(unable)?;
    Ok(View { body: page(family, revision, &rec) })
}

fn page(family: &str, revision: &str, rec: &TaskDefinitionRecord) -> String {
    let d: &TaskDefinition = &rec.definition;
    let status = d.status.as_deref().unwrap_or("");
    let family_url = href(&["task-definitions", family]);
    let this = href(&["task-definitions", family, revision]);
    let about = facts(&[
        ("ARN", opt(d.task_definition_arn.as_deref())),
        ("Status", badge(status)),
        ("Registered at", esc(&time(d.registered_at))),
        ("Registered by", opt(d.registered_by.as_deref())),
        ("Deregistered at", esc(&time(d.deregistered_at))),
        ("Network mode", opt(d.network_mode.as_deref())),
        ("CPU", opt(d.cpu.as_deref())),
        ("Memory", opt(d.memory.as_deref())),
        ("Compatibilities", esc(&d.compatibilities.as_deref().unwrap_or_default().join(", "))),
    ]);
    let mut shown = serde_json::to_value(d).unwrap_or_default();
    if !rec.tags.is_empty() {
        if let Some(o) = shown.as_object_mut() {
            o.insert("tags".into(), serde_json::to_value(&rec.tags).unwrap_or_default());
        }
    }
    let mut form = action_form("RegisterTaskDefinition", &json!({}), "register-revision", "New revision registered");
    let _ = write!(
        form,
        "<textarea class=\"json\" name=\"definition\" data-type=\"body\" rows=\"24\" spellcheck=\"false\">{}</textarea>\
         <button type=\"submit\">Register new revision</button></form>",
        esc(&serde_json::to_string_pretty(&registrable(rec)).unwrap_or_default())
    );
    let actions = if status == "ACTIVE" { deregister(family, revision) } else { String::new() };
    format!(
        "{}<h1>Task definition {}:{}</h1><p class=\"actions\">{actions}</p>{about}{}{}",
        crumbs(&[("Task definitions", &href(&["task-definitions"])), (family, &family_url), (revision, &this)]),
        esc(family),
        esc(revision),
        section("Definition", &json_pre(&shown)),
        section("Register a new revision", &form),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_fields_drop_what_registration_refuses() {
        let rec = TaskDefinitionRecord {
            definition: TaskDefinition {
                task_definition_arn: Some("arn:aws:ecs:us-east-1:0:task-definition/web:3".into()),
                family: Some("web".into()),
                revision: Some(3),
                status: Some("ACTIVE".into()),
                cpu: Some("256".into()),
                compatibilities: Some(vec!["EC2".into()]),
                registered_by: Some("root".into()),
                ..Default::default()
            },
            tags: vec![flotilla_model::Tag { key: Some("k".into()), value: Some("v".into()) }],
        };
        assert_eq!(registrable(&rec), json!({"family": "web", "cpu": "256", "tags": [{"key": "k", "value": "v"}]}));
    }
}
