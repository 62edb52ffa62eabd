//! DescribeSecret and ListSecrets: a secret's metadata and versions' labels, never a value.
//! ListSecrets leaves out secrets marked for deletion unless `IncludePlannedDeletion`, filters by
//! name, description, tag key or value (prefixes, as Secrets Manager matches them) and pages by
//! name.

use std::collections::BTreeMap;

use flotilla_api::Ctx;
use serde_json::{json, Value};

use super::record::{self, Secret};
use crate::error::{AwsError, Result};
use crate::input::{encode_token, epoch, tags_json, Input};
use crate::store;

fn metadata(secret: &Secret, versions_member: &str) -> Value {
    let stages: BTreeMap<&str, &Vec<String>> = secret.versions.iter().map(|v| (v.id.as_str(), &v.stages)).collect();
    let mut out = json!({
        "ARN": secret.arn,
        "Name": secret.name,
        "RotationEnabled": false,
        "LastChangedDate": epoch(secret.changed_ms),
        "CreatedDate": epoch(secret.created_ms),
        versions_member: stages,
    });
    if let Some(d) = &secret.description {
        out["Description"] = Value::String(d.clone());
    }
    if let Some(k) = &secret.kms_key_id {
        out["KmsKeyId"] = Value::String(k.clone());
    }
    if !secret.tags.is_empty() {
        out["Tags"] = tags_json(&secret.tags);
    }
    if let Some(d) = secret.deleted_ms {
        out["DeletedDate"] = epoch(d);
    }
    out
}

pub async fn describe(ctx: &Ctx, input: &Input) -> Result<Value> {
    let id = input.required_str("SecretId")?;
    let (secret, _) = record::find(ctx, id).await?.ok_or_else(record::not_found)?;
    Ok(metadata(&secret, "VersionIdsToStages"))
}

#[derive(Debug)]
struct Filter {
    key: String,
    values: Vec<String>,
}

fn filters(input: &Input) -> Result<Vec<Filter>> {
    input
        .list("Filters")?
        .iter()
        .map(|f| {
            let key = f.get("Key").and_then(Value::as_str).unwrap_or_default();
            if !["name", "description", "tag-key", "tag-value", "all"].contains(&key) {
                return Err(AwsError::invalid_parameter(format!(
                    "Filters: the key {key} is not supported; use name, description, tag-key, tag-value or all."
                )));
            }
            let values = f
                .get("Values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            Ok(Filter { key: key.to_string(), values })
        })
        .collect()
}

fn matches(f: &Filter, s: &Secret) -> bool {
    let description = s.description.as_deref().unwrap_or_default();
    f.values.iter().any(|v| {
        let name = s.name.starts_with(v.as_str());
        let desc = description.starts_with(v.as_str());
        let tag_key = s.tags.iter().any(|(k, _)| k.starts_with(v.as_str()));
        let tag_value = s.tags.iter().any(|(_, tv)| tv.starts_with(v.as_str()));
        match f.key.as_str() {
            "name" => name,
            "description" => desc,
            "tag-key" => tag_key,
            "tag-value" => tag_value,
            _ => name || desc || tag_key || tag_value,
        }
    })
}

pub async fn list(ctx: &Ctx, input: &Input) -> Result<Value> {
    let filters = filters(input)?;
    let include_deleted = input.bool("IncludePlannedDeletion")?;
    let limit = input.int("MaxResults", 1, 100)?.unwrap_or(100) as usize;
    let after = input.next_token()?;
    let mut out: Vec<Value> = Vec::new();
    let mut next = None;
    for (_, s, _) in store::list::<Secret>(ctx, crate::store::SECRETS).await? {
        if after.as_deref().is_some_and(|a| s.name.as_str() <= a)
            || (s.deleted_ms.is_some() && !include_deleted)
            || !filters.iter().all(|f| matches(f, &s))
        {
            continue;
        }
        if out.len() == limit {
            next = out.last().and_then(|m| m["Name"].as_str()).map(encode_token);
            break;
        }
        out.push(metadata(&s, "SecretVersionsToStages"));
    }
    let mut body = json!({ "SecretList": out });
    if let Some(t) = next {
        body["NextToken"] = Value::String(t);
    }
    Ok(body)
}
