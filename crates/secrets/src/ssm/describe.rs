//! DescribeParameters: every parameter's metadata (never its value), filtered by
//! `ParameterFilters` (`Name`, `Type`, `KeyId`, `Path`, `tag:KEY`) or the older `Filters`, paged
//! by name.

use flotilla_api::Ctx;
use serde_json::{json, Value};

use super::record::{self, Parameter};
use crate::error::{AwsError, Result};
use crate::input::{encode_token, epoch, Input};
use crate::store;

/// One filter: what it looks at, how, and the values any of which may match.
#[derive(Debug, Clone, PartialEq)]
struct Filter {
    key: String,
    option: String,
    values: Vec<String>,
}

fn filters(input: &Input) -> Result<Vec<Filter>> {
    let mut out = Vec::new();
    for (member, modern) in [("ParameterFilters", true), ("Filters", false)] {
        for f in input.list(member)? {
            let key = f
                .get("Key")
                .and_then(Value::as_str)
                .ok_or_else(|| AwsError::validation(format!("{member}: each filter needs a Key.")))?;
            let values: Vec<String> = f
                .get("Values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let option = match (f.get("Option").and_then(Value::as_str), key, modern) {
                (Some(o), _, true) => o.to_string(),
                (_, "Path", _) => "OneLevel".into(),
                (_, "Name", false) => "BeginsWith".into(),
                _ => "Equals".into(),
            };
            let known = matches!(
                (key, option.as_str()),
                ("Name", "Equals" | "BeginsWith") | ("Type" | "KeyId", "Equals") | ("Path", "OneLevel" | "Recursive")
            ) || (key.starts_with("tag:") && option == "Equals");
            if !known {
                return Err(AwsError::new(
                    "InvalidFilterOption",
                    format!("The filter option {option} is not valid for key {key}, or the key is not supported."),
                ));
            }
            if values.is_empty() && key != "Path" && !key.starts_with("tag:") {
                return Err(AwsError::new("InvalidFilterValue", format!("The filter {key} needs at least one value.")));
            }
            out.push(Filter { key: key.to_string(), option, values });
        }
    }
    Ok(out)
}

fn matches(f: &Filter, p: &Parameter) -> bool {
    match f.key.as_str() {
        "Name" => f.values.iter().any(|v| {
            // Names may be given with or without the leading slash.
            let v = if p.name.starts_with('/') && !v.starts_with('/') { format!("/{v}") } else { v.clone() };
            if f.option == "BeginsWith" {
                p.name.starts_with(&v)
            } else {
                p.name == v
            }
        }),
        "Type" => f.values.contains(&p.kind),
        "KeyId" => p.key_id.as_ref().is_some_and(|k| f.values.contains(k)),
        "Path" => f.values.iter().any(|path| {
            let base = if path == "/" { "/".to_string() } else { format!("{}/", path.trim_end_matches('/')) };
            p.name.strip_prefix(&base).is_some_and(|rest| f.option == "Recursive" || !rest.contains('/'))
        }),
        tag => {
            let k = &tag["tag:".len()..];
            p.tags.iter().any(|(tk, tv)| tk == k && (f.values.is_empty() || f.values.contains(tv)))
        }
    }
}

/// The `Type` values of GetParametersByPath's `ParameterFilters`, if it gives any.
pub fn type_filter(input: &Input) -> Result<Option<Vec<String>>> {
    let types: Vec<String> = filters(input)?.into_iter().filter(|f| f.key == "Type").flat_map(|f| f.values).collect();
    Ok((!types.is_empty()).then_some(types))
}

pub async fn describe(ctx: &Ctx, input: &Input) -> Result<Value> {
    let filters = filters(input)?;
    let limit = input.int("MaxResults", 1, 50)?.unwrap_or(50) as usize;
    let after = input.next_token()?;
    let mut out: Vec<Value> = Vec::new();
    let mut next = None;
    for (_, p, _) in store::list::<Parameter>(ctx, crate::store::PARAMETERS).await? {
        if after.as_deref().is_some_and(|a| p.name.as_str() <= a) || !filters.iter().all(|f| matches(f, &p)) {
            continue;
        }
        let Some(v) = p.latest() else { continue };
        if out.len() == limit {
            next = out.last().and_then(|m| m["Name"].as_str()).map(encode_token);
            break;
        }
        let mut meta = json!({
            "Name": p.name,
            "ARN": record::arn(ctx, &p.name),
            "Type": p.kind,
            "LastModifiedDate": epoch(v.modified_ms),
            "LastModifiedUser": format!("arn:{}:iam::{}:root", ctx.arns.partition, ctx.arns.account),
            "Version": v.version,
            "Tier": p.tier,
            "Policies": [],
            "DataType": p.data_type,
        });
        if let Some(d) = &p.description {
            meta["Description"] = Value::String(d.clone());
        }
        if let Some(k) = &p.key_id {
            meta["KeyId"] = Value::String(k.clone());
        }
        out.push(meta);
    }
    let mut body = json!({ "Parameters": out });
    if let Some(t) = next {
        body["NextToken"] = Value::String(t);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, kind: &str) -> Parameter {
        Parameter {
            name: name.into(),
            kind: kind.into(),
            description: None,
            key_id: None,
            tier: "Standard".into(),
            data_type: "text".into(),
            tags: vec![("team".into(), "db".into())],
            versions: Vec::new(),
        }
    }

    fn filter(key: &str, option: &str, values: &[&str]) -> Filter {
        Filter { key: key.into(), option: option.into(), values: values.iter().map(|v| v.to_string()).collect() }
    }

    #[test]
    fn filters_match_names_types_paths_and_tags() {
        let p = param("/app/db/password", "SecureString");
        assert!(matches(&filter("Name", "BeginsWith", &["/app/"]), &p));
        assert!(matches(&filter("Name", "BeginsWith", &["app/db"]), &p));
        assert!(!matches(&filter("Name", "Equals", &["/app"]), &p));
        assert!(matches(&filter("Type", "Equals", &["String", "SecureString"]), &p));
        assert!(!matches(&filter("Type", "Equals", &["String"]), &p));
        assert!(matches(&filter("Path", "Recursive", &["/app"]), &p));
        assert!(!matches(&filter("Path", "OneLevel", &["/app"]), &p));
        assert!(matches(&filter("Path", "OneLevel", &["/app/db/"]), &p));
        assert!(matches(&filter("tag:team", "Equals", &["db"]), &p));
        assert!(!matches(&filter("tag:team", "Equals", &["web"]), &p));
    }
}
