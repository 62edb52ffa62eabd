//! An SSM parameter as stored (every version's value sealed), and its names: the plain or
//! hierarchical name, the ARN that names it, and the `name:VERSION` selector.

use flotilla_api::Ctx;
use serde::{Deserialize, Serialize};

use crate::error::{AwsError, Result};
use crate::keyring::{Keys, Sealed};

/// AWS keeps this many versions of a parameter, dropping the oldest.
pub const MAX_VERSIONS: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    pub name: String,
    /// `String`, `StringList` or `SecureString`.
    pub kind: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The KMS key a SecureString names (accepted and shown; the value is sealed by Flotilla's
    /// own keys).
    #[serde(default)]
    pub key_id: Option<String>,
    pub tier: String,
    pub data_type: String,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// Oldest first; the last is the current one.
    pub versions: Vec<Version>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub version: i64,
    pub value: Sealed,
    pub modified_ms: i64,
}

impl Parameter {
    pub fn latest(&self) -> Option<&Version> {
        self.versions.last()
    }

    pub fn version(&self, n: i64) -> Option<&Version> {
        self.versions.iter().find(|v| v.version == n)
    }
}

/// The store key of a parameter.
pub fn key(name: &str) -> String {
    format!("{}{name}", crate::store::PARAMETERS)
}

/// What a version's value is sealed to: the record and the version.
pub fn aad(name: &str, version: i64) -> String {
    format!("{}#{version}", key(name))
}

pub fn seal(keys: &Keys, name: &str, version: i64, value: &str) -> Result<Sealed> {
    keys.seal(&aad(name, version), value.as_bytes()).map_err(|e| AwsError::internal(e.to_string()))
}

pub fn open(keys: &Keys, name: &str, v: &Version) -> Result<String> {
    let plain = keys.open(&aad(name, v.version), &v.value).map_err(|e| AwsError::internal(e.to_string()))?;
    String::from_utf8(plain).map_err(|_| AwsError::internal(format!("the value of {name} is not UTF-8")))
}

pub fn arn(ctx: &Ctx, name: &str) -> String {
    let sep = if name.starts_with('/') { "" } else { "/" };
    format!("arn:{}:ssm:{}:{}:parameter{sep}{name}", ctx.arns.partition, ctx.arns.region, ctx.arns.account)
}

/// A name as a request gives it: the parameter name, and the version selector if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRef {
    pub name: String,
    pub selector: Option<Selector>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Version(i64),
    Label(String),
}

impl Selector {
    pub fn text(&self) -> String {
        match self {
            Selector::Version(n) => format!(":{n}"),
            Selector::Label(l) => format!(":{l}"),
        }
    }
}

/// Parses `name`, `/a/b`, `name:3`, or `arn:aws:ssm:REGION:ACCOUNT:parameter/a/b[:3]`.
pub fn parse_name(given: &str) -> Option<NameRef> {
    let (name, selector) = match given.strip_prefix("arn:") {
        Some(rest) => {
            // arn:PARTITION:ssm:REGION:ACCOUNT:parameter/NAME
            let mut parts = rest.splitn(5, ':');
            let (_, service, _, _) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            let resource = parts.next()?.strip_prefix("parameter")?;
            if service != "ssm" || !resource.starts_with('/') {
                return None;
            }
            let (path, selector) = split_selector(resource);
            // A hierarchical name keeps its leading slash, a plain one does not.
            let name = if path[1..].contains('/') { path.to_string() } else { path[1..].to_string() };
            (name, selector)
        }
        None => {
            let (name, selector) = split_selector(given);
            (name.to_string(), selector)
        }
    };
    if name.is_empty() {
        return None;
    }
    let selector = match selector {
        None => None,
        Some(s) => Some(match s.parse::<i64>() {
            Ok(n) => Selector::Version(n),
            Err(_) if !s.is_empty() => Selector::Label(s.to_string()),
            Err(_) => return None,
        }),
    };
    Some(NameRef { name, selector })
}

fn split_selector(s: &str) -> (&str, Option<&str>) {
    match s.split_once(':') {
        Some((name, sel)) => (name, Some(sel)),
        None => (s, None),
    }
}

const NAME_RULES: &str = "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). If formed as \
     a path, it can consist of sub-paths divided by slash symbol; each sub-path can be formed as a mix of letters, \
     numbers and the following 3 symbols .-_";

/// Checks a name a parameter may be created with.
pub fn check_new_name(name: &str) -> Result<()> {
    let lower = name.trim_start_matches('/').to_ascii_lowercase();
    let chars_ok = name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c));
    let path_ok = !name.contains('/') || (name.starts_with('/') && !name.contains("//") && !name.ends_with('/'));
    if !chars_ok || !path_ok || lower.starts_with("aws") || lower.starts_with("ssm") {
        return Err(AwsError::validation(NAME_RULES));
    }
    if name.len() > 1011 {
        return Err(AwsError::validation("Parameter name: must be at most 1011 characters long."));
    }
    if name.matches('/').count() > 15 {
        return Err(AwsError::new(
            "HierarchyLevelLimitExceededException",
            "A hierarchy can have a maximum of 15 levels.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str, s: Option<Selector>) -> Option<NameRef> {
        Some(NameRef { name: n.into(), selector: s })
    }

    #[test]
    fn names_arns_and_selectors_parse() {
        assert_eq!(parse_name("/a/b"), name("/a/b", None));
        assert_eq!(parse_name("plain"), name("plain", None));
        assert_eq!(parse_name("/a/b:3"), name("/a/b", Some(Selector::Version(3))));
        assert_eq!(parse_name("plain:prod"), name("plain", Some(Selector::Label("prod".into()))));
        assert_eq!(parse_name("arn:aws:ssm:us-east-1:000000000000:parameter/a/b"), name("/a/b", None));
        assert_eq!(parse_name("arn:aws:ssm:us-east-1:000000000000:parameter/plain"), name("plain", None));
        assert_eq!(
            parse_name("arn:aws:ssm:us-east-1:000000000000:parameter/a/b:2"),
            name("/a/b", Some(Selector::Version(2)))
        );
        assert_eq!(parse_name("arn:aws:secretsmanager:us-east-1:0:secret:x"), None);
        assert_eq!(parse_name("x:"), None);
        assert_eq!(parse_name(""), None);
    }

    #[test]
    fn new_names_follow_the_rules() {
        assert!(check_new_name("/app/db/password").is_ok());
        assert!(check_new_name("plain.name-1_x").is_ok());
        for bad in ["aws-thing", "/SSM/x", "a/b", "/a//b", "/a/b/", "a b", "/a:b"] {
            let err = check_new_name(bad).unwrap_err();
            assert_eq!(err.code, "ValidationException", "{bad}");
        }
        let deep = "/a".repeat(16);
        assert_eq!(check_new_name(&deep).unwrap_err().code, "HierarchyLevelLimitExceededException");
    }
}
