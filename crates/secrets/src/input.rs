//! Typed reads of a JSON request's members; a wrong type is refused with the service's
//! validation error naming the member (`ValidationException` for SSM,
//! `InvalidParameterException` for Secrets Manager).

use serde_json::{Map, Value};

use crate::error::{AwsError, Result};

pub struct Input {
    pub map: Map<String, Value>,
    invalid: fn(String) -> AwsError,
}

impl Input {
    pub fn parse(body: &[u8], invalid: fn(String) -> AwsError) -> Result<Input> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Input { map: Map::new(), invalid });
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Input { map, invalid }),
            Ok(_) => Err(AwsError::new("SerializationException", "The request body must be a JSON object.")),
            Err(e) => Err(AwsError::new("SerializationException", format!("The request body is not valid JSON: {e}"))),
        }
    }

    pub fn invalid(&self, message: impl Into<String>) -> AwsError {
        (self.invalid)(message.into())
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub fn str(&self, name: &str) -> Result<Option<&str>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.invalid(format!("{name} must be a string."))),
        }
    }

    pub fn required_str(&self, name: &str) -> Result<&str> {
        match self.str(name)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(self.invalid(format!("{name} is required."))),
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool> {
        match self.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.invalid(format!("{name} must be a boolean."))),
        }
    }

    pub fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(self.invalid(format!("{name} must be an integer from {min} to {max}."))),
            },
        }
    }

    pub fn list(&self, name: &str) -> Result<&[Value]> {
        match self.get(name) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(self.invalid(format!("{name} must be a list."))),
        }
    }

    /// A list of strings.
    pub fn strings(&self, name: &str) -> Result<Vec<String>> {
        self.list(name)?
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| self.invalid(format!("{name} must be a list of strings.")))
            })
            .collect()
    }

    /// `Tags` as `[{Key, Value}]`.
    pub fn tags(&self) -> Result<Vec<(String, String)>> {
        self.list("Tags")?
            .iter()
            .map(|t| match (t.get("Key").and_then(Value::as_str), t.get("Value").and_then(Value::as_str)) {
                (Some(k), v) if !k.is_empty() => Ok((k.to_string(), v.unwrap_or_default().to_string())),
                _ => Err(self.invalid("Tags: each tag needs a Key and a string Value.")),
            })
            .collect()
    }

    /// `NextToken`: the name to list after.
    pub fn next_token(&self) -> Result<Option<String>> {
        match self.str("NextToken")? {
            None | Some("") => Ok(None),
            Some(t) => decode_token(t).map(Some).ok_or_else(|| self.invalid("NextToken is not valid.")),
        }
    }
}

/// A paging token: the last name listed, base64.
pub fn encode_token(last: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

fn decode_token(token: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
    String::from_utf8(bytes).ok()
}

/// Epoch seconds with a millisecond fraction, as the services write dates.
pub fn epoch(ms: i64) -> Value {
    serde_json::Number::from_f64(ms as f64 / 1000.0).map(Value::Number).unwrap_or(Value::Null)
}

pub fn tags_json(tags: &[(String, String)]) -> Value {
    Value::Array(tags.iter().map(|(k, v)| serde_json::json!({ "Key": k, "Value": v })).collect())
}
