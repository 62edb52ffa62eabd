//! The tag rules every operation that takes `tags` shares: ECS's bounds, and merging.

use std::collections::BTreeMap;

use flotilla_model::Tag;

use crate::error::{ApiError, ApiResult};

pub const MAX_TAGS: usize = 50;

/// Checks tags as ECS does: at most 50, keys 1-128 characters, values up to 256, no `aws:`
/// prefix, no duplicate keys.
pub fn validate_tags(tags: &[Tag]) -> ApiResult<()> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::invalid_parameter(format!(
            "tags can have at most {MAX_TAGS} items; got {}.",
            tags.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, t) in tags.iter().enumerate() {
        let key = t.key.as_deref().unwrap_or("");
        if key.is_empty() || key.chars().count() > 128 {
            return Err(ApiError::invalid_parameter(format!("tags[{i}].key must be 1 to 128 characters long.")));
        }
        if t.value.as_deref().unwrap_or("").chars().count() > 256 {
            return Err(ApiError::invalid_parameter(format!("tags[{i}].value must be at most 256 characters long.")));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ApiError::invalid_parameter(format!(
                "tags[{i}].key '{key}' uses the reserved prefix aws:, which user tags may not use."
            )));
        }
        if !seen.insert(key) {
            return Err(ApiError::invalid_parameter(format!("tags holds the key '{key}' more than once.")));
        }
    }
    Ok(())
}

/// `existing` with `new` merged in (a key given again takes the new value), in key order.
pub fn merge_tags(existing: &[Tag], new: &[Tag]) -> Vec<Tag> {
    let mut map: BTreeMap<String, Option<String>> =
        existing.iter().map(|t| (t.key.clone().unwrap_or_default(), t.value.clone())).collect();
    for t in new {
        map.insert(t.key.clone().unwrap_or_default(), t.value.clone());
    }
    map.into_iter().map(|(k, v)| Tag { key: Some(k), value: v.or(Some(String::new())) }).collect()
}
