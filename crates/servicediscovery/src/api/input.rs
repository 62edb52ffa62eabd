//! Typed reads of a JSON request's members, each refusing a wrong type or a bad value with
//! `InvalidInput` naming the member, as Cloud Map's validation does.

use serde_json::{Map, Value};

use super::error::{Result, SdError};

pub struct Input(pub Map<String, Value>);

impl Input {
    pub fn parse(body: &[u8]) -> Result<Input> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Input(Map::new()));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Input(map)),
            Ok(_) => Err(SdError::new("SerializationException", "The request body must be a JSON object.")),
            Err(e) => Err(SdError::new("SerializationException", format!("The request body is not valid JSON: {e}"))),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn str(&self, name: &str) -> Result<Option<&str>> {
        str_of(self.get(name), name)
    }

    pub fn required_str(&self, name: &str) -> Result<&str> {
        match self.str(name)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(SdError::invalid(format!("{name} is required."))),
        }
    }

    /// A string member of at most `max` characters.
    pub fn bounded(&self, name: &str, max: usize) -> Result<Option<&str>> {
        let value = self.str(name)?;
        if let Some(v) = value {
            if v.chars().count() > max {
                return Err(SdError::invalid(format!("{name} must be at most {max} characters long.")));
            }
        }
        Ok(value)
    }

    pub fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>> {
        int_of(self.get(name), name, min, max)
    }

    pub fn object(&self, name: &str) -> Result<Option<&Map<String, Value>>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(SdError::invalid(format!("{name} must be an object."))),
        }
    }

    pub fn list(&self, name: &str) -> Result<&[Value]> {
        match self.get(name) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(SdError::invalid(format!("{name} must be a list."))),
        }
    }

    /// A map of strings to strings (`Attributes`, `QueryParameters`).
    pub fn string_map(&self, name: &str) -> Result<Vec<(String, String)>> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(SdError::invalid(format!("{name}.{k} must be a string."))),
                })
                .collect(),
            Some(_) => Err(SdError::invalid(format!("{name} must be a map of strings."))),
        }
    }

    /// `MaxResults` (1..=`max`) and `NextToken` as the index to start at.
    pub fn paging(&self, max: i64) -> Result<(usize, usize)> {
        let limit = self.int("MaxResults", 1, max)?.unwrap_or(max.min(100)) as usize;
        let start = match self.str("NextToken")? {
            None | Some("") => 0,
            Some(t) => super::paging::decode(t).ok_or_else(|| SdError::invalid("NextToken is not valid."))?,
        };
        Ok((start, limit))
    }
}

pub fn str_of<'a>(value: Option<&'a Value>, name: &str) -> Result<Option<&'a str>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(SdError::invalid(format!("{name} must be a string."))),
    }
}

pub fn int_of(value: Option<&Value>, name: &str, min: i64, max: i64) -> Result<Option<i64>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(SdError::invalid(format!("{name} must be an integer from {min} to {max}."))),
        },
    }
}
