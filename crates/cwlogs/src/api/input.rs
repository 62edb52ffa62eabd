//! Typed reads of a request's members, refusing a wrong type or value with
//! `InvalidParameterException` naming the member, in AWS's validation wording.

use serde_json::{Map, Value};

use crate::error::{LogsError, Result};

pub struct Input(pub Map<String, Value>);

/// `[\.\-_/#A-Za-z0-9]+`, 1 to 512 characters.
pub fn valid_group_name(name: &str) -> bool {
    (1..=512).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b))
}

/// `[^:*]*`, 1 to 512 characters.
pub fn valid_stream_name(name: &str) -> bool {
    (1..=512).contains(&name.len()) && !name.contains([':', '*'])
}

impl Input {
    pub fn parse(body: &[u8]) -> Result<Input> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Input(Map::new()));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Input(map)),
            _ => Err(LogsError::new("SerializationException", "The request body must be a JSON object.")),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn str(&self, name: &str) -> Result<Option<&str>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(LogsError::invalid(format!("{name} must be a string."))),
        }
    }

    pub fn required(&self, name: &str) -> Result<&str> {
        self.str(name)?
            .ok_or_else(|| LogsError::invalid(format!("1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null")))
    }

    /// `logGroupName` (or the name part of `logGroupIdentifier`, which may be an ARN).
    pub fn group(&self) -> Result<String> {
        let name = match (self.str("logGroupName")?, self.str("logGroupIdentifier")?) {
            (Some(n), _) => n.to_string(),
            (None, Some(id)) => match id.split_once(":log-group:") {
                Some((_, rest)) => rest.trim_end_matches(":*").to_string(),
                None => id.to_string(),
            },
            (None, None) => self.required("logGroupName")?.to_string(),
        };
        group_name(&name, "logGroupName")?;
        Ok(name)
    }

    pub fn stream(&self, field: &str) -> Result<String> {
        let name = self.required(field)?;
        if !valid_stream_name(name) {
            return Err(LogsError::constraint(field, name, "Member must satisfy regular expression pattern: [^:*]*"));
        }
        Ok(name.to_string())
    }

    pub fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                Some(n) if n < min => Err(LogsError::constraint(
                    name,
                    &n.to_string(),
                    &format!("Member must have value greater than or equal to {min}"),
                )),
                Some(n) => Err(LogsError::constraint(
                    name,
                    &n.to_string(),
                    &format!("Member must have value less than or equal to {max}"),
                )),
                None => Err(LogsError::invalid(format!("{name} must be an integer."))),
            },
        }
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(LogsError::invalid(format!("{name} must be a boolean."))),
        }
    }

    pub fn strings(&self, name: &str) -> Result<Option<Vec<String>>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| LogsError::invalid(format!("{name} must be a list of strings.")))
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(_) => Err(LogsError::invalid(format!("{name} must be a list of strings."))),
        }
    }
}

pub fn group_name(name: &str, field: &str) -> Result<()> {
    if !valid_group_name(name) {
        return Err(LogsError::constraint(
            field,
            name,
            "Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+",
        ));
    }
    Ok(())
}
