//! The rules ECS applies to attribute names, values and targets, for PutAttributes and for the
//! attributes an instance registers with.

use flotilla_model::Attribute;

use crate::error::{ApiError, ApiResult};

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
}

fn valid_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'/' | b'\\' | b':' | b' '))
}

/// Checks attribute names, values and target types. `need_target` requires `targetId`.
pub fn check_attributes(attrs: &[Attribute], need_target: bool) -> ApiResult<()> {
    for (i, a) in attrs.iter().enumerate() {
        let name = a.name.as_deref().unwrap_or("");
        if !valid_name(name) {
            return Err(ApiError::invalid_parameter(format!(
                "attributes[{i}].name '{name}' is not valid: up to 128 letters, numbers, hyphens, underscores, periods and slashes."
            )));
        }
        if let Some(v) = a.value.as_deref() {
            if !valid_value(v) {
                return Err(ApiError::invalid_parameter(format!(
                    "attributes[{i}].value '{v}' is not valid: up to 128 letters, numbers, hyphens, underscores, periods, at signs, slashes, backslashes, colons and spaces."
                )));
            }
        }
        if let Some(t) = a.target_type.as_deref() {
            if t != "container-instance" {
                return Err(ApiError::invalid_parameter(format!(
                    "attributes[{i}].targetType must be container-instance."
                )));
            }
        }
        if need_target && a.target_id.as_deref().unwrap_or("").is_empty() {
            return Err(ApiError::invalid_parameter(format!("attributes[{i}].targetId can not be null.")));
        }
    }
    Ok(())
}
