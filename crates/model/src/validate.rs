//! Field-level validation of decoded requests: required members, enum values, lengths, ranges.
//!
//! Paths are built on the stack as a linked list and rendered only when something fails, so a
//! valid request costs no allocation.

use std::fmt;

/// Where in a request a value sits, e.g. `containerDefinitions[2].healthCheck.command`.
#[derive(Clone, Copy)]
pub enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'static str),
    Index(&'a Path<'a>, usize),
    Key(&'a Path<'a>, &'a str),
}

impl<'a> Path<'a> {
    pub fn field(&'a self, name: &'static str) -> Path<'a> {
        Path::Field(self, name)
    }
    pub fn index(&'a self, i: usize) -> Path<'a> {
        Path::Index(self, i)
    }
    pub fn key(&'a self, k: &'a str) -> Path<'a> {
        Path::Key(self, k)
    }
    pub fn render(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }
    fn write(&self, s: &mut String) {
        match self {
            Path::Root => {}
            Path::Field(p, name) => {
                p.write(s);
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(name);
            }
            Path::Index(p, i) => {
                p.write(s);
                s.push_str(&format!("[{i}]"));
            }
            Path::Key(p, k) => {
                p.write(s);
                s.push_str(&format!("[{k:?}]"));
            }
        }
    }
}

/// Why a request failed validation; rendered as ECS words its InvalidParameterException.
#[derive(Debug, Clone, PartialEq)]
pub enum Invalid {
    Missing(String),
    Enum { path: String, value: String, allowed: &'static [&'static str] },
    Length { path: String, len: usize, min: usize, max: usize },
    Count { path: String, len: usize, min: usize, max: usize },
    Range { path: String, value: i64, min: i64, max: i64 },
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Missing(p) => write!(f, "{p} can not be null."),
            Invalid::Enum { path, value, allowed } => {
                write!(f, "Invalid value '{value}' for {path}. Valid values: {}.", allowed.join(", "))
            }
            Invalid::Length { path, len, min, max } => {
                write!(f, "{path} length {len} is outside the allowed range {min} to {max}.")
            }
            Invalid::Count { path, len, min, max } => {
                write!(f, "{path} holds {len} items; it must hold between {min} and {max}.")
            }
            Invalid::Range { path, value, min, max } => {
                write!(f, "{path} value {value} is outside the allowed range {min} to {max}.")
            }
        }
    }
}

/// Implemented by every structure shape that has something to check.
pub trait Validate {
    fn validate(&self, path: &Path<'_>) -> Result<(), Invalid>;

    /// Validates a whole request.
    fn validate_request(&self) -> Result<(), Invalid> {
        self.validate(&Path::Root)
    }
}

pub fn check_enum(v: &str, allowed: &'static [&'static str], path: &Path<'_>) -> Result<(), Invalid> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(Invalid::Enum { path: path.render(), value: v.to_string(), allowed })
    }
}

pub fn check_len(v: &str, min: usize, max: usize, path: &Path<'_>) -> Result<(), Invalid> {
    let len = v.chars().count();
    if (min..=max).contains(&len) {
        Ok(())
    } else {
        Err(Invalid::Length { path: path.render(), len, min, max })
    }
}

pub fn check_count(len: usize, min: usize, max: usize, path: &Path<'_>) -> Result<(), Invalid> {
    if (min..=max).contains(&len) {
        Ok(())
    } else {
        Err(Invalid::Count { path: path.render(), len, min, max })
    }
}

pub fn check_range(v: i64, min: i64, max: i64, path: &Path<'_>) -> Result<(), Invalid> {
    if (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(Invalid::Range { path: path.render(), value: v, min, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContainerDefinition, HealthCheck, RegisterTaskDefinitionRequest};

    #[test]
    fn missing_nested_member_names_the_full_path() {
        let req = RegisterTaskDefinitionRequest {
            family: Some("web".into()),
            container_definitions: Some(vec![
                ContainerDefinition::default(),
                ContainerDefinition { health_check: Some(HealthCheck::default()), ..Default::default() },
            ]),
            ..Default::default()
        };
        let err = req.validate_request().unwrap_err();
        assert_eq!(err, Invalid::Missing("containerDefinitions[1].healthCheck.command".into()));
    }

    #[test]
    fn enum_values_are_checked() {
        let req = RegisterTaskDefinitionRequest {
            family: Some("web".into()),
            container_definitions: Some(vec![]),
            network_mode: Some("bridged".into()),
            ..Default::default()
        };
        let err = req.validate_request().unwrap_err().to_string();
        assert!(err.contains("networkMode") && err.contains("bridge, host, awsvpc, none"), "{err}");
    }

    #[test]
    fn missing_top_level_member() {
        let req = RegisterTaskDefinitionRequest::default();
        assert_eq!(req.validate_request(), Err(Invalid::Missing("family".into())));
    }
}
