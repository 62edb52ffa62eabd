//! A Secrets Manager secret as stored: its versions (values sealed, each with its staging
//! labels), its deletion mark, and how a `SecretId` (name, full ARN or partial ARN) finds it.

use flotilla_api::Ctx;
use flotilla_store::Revision;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{AwsError, Result};
use crate::keyring::{Keys, Sealed};
use crate::store;

pub const CURRENT: &str = "AWSCURRENT";
pub const PREVIOUS: &str = "AWSPREVIOUS";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Secret {
    pub name: String,
    pub arn: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    pub created_ms: i64,
    pub changed_ms: i64,
    /// When DeleteSecret marked it, and when it is to be purged.
    #[serde(default)]
    pub deleted_ms: Option<i64>,
    #[serde(default)]
    pub deletion_ms: Option<i64>,
    pub versions: Vec<SecretVersion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretVersion {
    pub id: String,
    pub stages: Vec<String>,
    pub created_ms: i64,
    /// `SecretBinary` rather than `SecretString`.
    pub binary: bool,
    pub value: Sealed,
}

/// A secret's value in the clear, as a request gives it or a read answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Binary(Vec<u8>),
}

impl Value {
    fn bytes(&self) -> &[u8] {
        match self {
            Value::Text(s) => s.as_bytes(),
            Value::Binary(b) => b,
        }
    }
}

pub const MARKED: &str = "You can't perform this operation on the secret because it was marked for deletion.";

pub fn not_found() -> AwsError {
    AwsError::new("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
}

impl Secret {
    pub fn key(&self) -> String {
        key(&self.name)
    }

    pub fn by_stage(&self, stage: &str) -> Option<&SecretVersion> {
        self.versions.iter().find(|v| v.stages.iter().any(|s| s == stage))
    }

    pub fn by_id(&self, id: &str) -> Option<&SecretVersion> {
        self.versions.iter().find(|v| v.id == id)
    }

    /// Refuses an operation on a secret marked for deletion.
    pub fn check_live(&self) -> Result<()> {
        match self.deleted_ms {
            Some(_) => Err(AwsError::new("InvalidRequestException", MARKED)),
            None => Ok(()),
        }
    }

    /// The version a read asks for (`AWSCURRENT` unless told), or ResourceNotFoundException.
    pub fn pick(&self, version_id: Option<&str>, stage: Option<&str>) -> Result<&SecretVersion> {
        let missing = |what: String| {
            AwsError::new(
                "ResourceNotFoundException",
                format!("Secrets Manager can't find the specified secret value for {what}"),
            )
        };
        match (version_id, stage) {
            (Some(id), stage) => {
                let v = self.by_id(id).ok_or_else(|| missing(format!("VersionId: {id}")))?;
                match stage {
                    Some(s) if !v.stages.iter().any(|x| x == s) => Err(AwsError::invalid_parameter(
                        "You provided a VersionStage that is not associated to the provided VersionId.",
                    )),
                    _ => Ok(v),
                }
            }
            (None, stage) => {
                let stage = stage.unwrap_or(CURRENT);
                self.by_stage(stage).ok_or_else(|| missing(format!("staging label: {stage}")))
            }
        }
    }

    /// Adds version `id` holding `stages` (moving them off the versions that held them; the
    /// version losing AWSCURRENT gets AWSPREVIOUS) and drops versions left without a label.
    pub fn add_version(&mut self, version: SecretVersion) {
        let takes_current = version.stages.iter().any(|s| s == CURRENT);
        let old_current = if takes_current { self.by_stage(CURRENT).map(|v| v.id.clone()) } else { None };
        for v in &mut self.versions {
            v.stages.retain(|s| !version.stages.contains(s));
            if takes_current {
                v.stages.retain(|s| s != PREVIOUS);
            }
            if old_current.as_deref() == Some(v.id.as_str()) {
                v.stages.push(PREVIOUS.into());
            }
        }
        self.changed_ms = version.created_ms;
        self.versions.push(version);
        self.versions.retain(|v| !v.stages.is_empty());
    }
}

pub fn key(name: &str) -> String {
    format!("{}{name}", store::SECRETS)
}

/// What a version's value is sealed to: the secret's ARN (new with each secret of a name) and
/// the version.
fn aad(arn: &str, version_id: &str) -> String {
    format!("{arn}#{version_id}")
}

pub fn seal(keys: &Keys, arn: &str, version_id: &str, value: &Value) -> Result<(Sealed, bool)> {
    let sealed = keys.seal(&aad(arn, version_id), value.bytes()).map_err(|e| AwsError::internal(e.to_string()))?;
    Ok((sealed, matches!(value, Value::Binary(_))))
}

pub fn open(keys: &Keys, arn: &str, v: &SecretVersion) -> std::result::Result<Value, crate::keyring::KeyError> {
    let plain = keys.open(&aad(arn, &v.id), &v.value)?;
    Ok(if v.binary {
        Value::Binary(plain)
    } else {
        // Sealed from a JSON string, so UTF-8.
        Value::Text(String::from_utf8_lossy(&plain).into_owned())
    })
}

/// Opens a version for a request: a missing key or a broken record is the server's error.
pub fn open_for_request(keys: &Keys, arn: &str, v: &SecretVersion) -> Result<Value> {
    open(keys, arn, v).map_err(|e| AwsError::internal(e.to_string()))
}

/// Re-seals `v` under the primary key; `None` when it already is.
pub fn reseal(
    keys: &Keys,
    arn: &str,
    v: &SecretVersion,
) -> std::result::Result<Option<Sealed>, crate::keyring::KeyError> {
    let ring = keys.current();
    if v.value.key == ring.primary() {
        return Ok(None);
    }
    let plain = ring.open(&aad(arn, &v.id), &v.value)?;
    Ok(Some(ring.seal(&aad(arn, &v.id), &plain)?))
}

/// A new secret's ARN: the name and six random characters.
pub fn new_arn(ctx: &Ctx, name: &str) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let tail: String = (0..6).map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char).collect();
    format!("arn:{}:secretsmanager:{}:{}:secret:{name}-{tail}", ctx.arns.partition, ctx.arns.region, ctx.arns.account)
}

/// The names a `SecretId` may stand for, in the order to try them, and whether it is an ARN.
pub fn candidates(id: &str) -> (Vec<String>, bool) {
    let Some(rest) = id.strip_prefix("arn:") else { return (vec![id.to_string()], false) };
    let Some((_, resource)) = rest.split_once(":secret:") else { return (Vec::new(), true) };
    let mut names = Vec::new();
    // A full ARN ends in `-` and six characters; a partial one is the name alone.
    if let Some((name, tail)) = resource.rsplit_once('-') {
        if tail.len() == 6 && tail.chars().all(|c| c.is_ascii_alphanumeric()) && !name.is_empty() {
            names.push(name.to_string());
        }
    }
    names.push(resource.to_string());
    (names, true)
}

/// The secret `id` names (marked for deletion or not), with its revision.
pub async fn find(ctx: &Ctx, id: &str) -> Result<Option<(Secret, Revision)>> {
    let (names, is_arn) = candidates(id);
    for name in names {
        if let Some((secret, rev)) = store::get::<Secret>(ctx, &key(&name)).await? {
            // A partial ARN must still be the start of the secret's ARN.
            if !is_arn || secret.arn == id || secret.arn.starts_with(&format!("{id}-")) {
                return Ok(Some((secret, rev)));
            }
        }
    }
    Ok(None)
}

/// Checks a new secret's name.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.chars().count() > 512
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c))
    {
        return Err(AwsError::invalid_parameter(
            "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(id: &str, stages: &[&str]) -> SecretVersion {
        SecretVersion {
            id: id.into(),
            stages: stages.iter().map(|s| s.to_string()).collect(),
            created_ms: 1,
            binary: false,
            value: Sealed { key: "k1".into(), nonce: String::new(), data: String::new() },
        }
    }

    fn secret() -> Secret {
        Secret {
            name: "db".into(),
            arn: "arn:aws:secretsmanager:us-east-1:0:secret:db-AbCdEf".into(),
            description: None,
            kms_key_id: None,
            tags: Vec::new(),
            created_ms: 0,
            changed_ms: 0,
            deleted_ms: None,
            deletion_ms: None,
            versions: Vec::new(),
        }
    }

    fn stages(s: &Secret) -> Vec<(String, Vec<String>)> {
        s.versions.iter().map(|v| (v.id.clone(), v.stages.clone())).collect()
    }

    #[test]
    fn a_new_current_version_makes_the_old_one_previous_and_drops_the_older() {
        let mut s = secret();
        s.add_version(version("v1", &[CURRENT]));
        s.add_version(version("v2", &[CURRENT]));
        assert_eq!(stages(&s), vec![("v1".into(), vec![PREVIOUS.into()]), ("v2".into(), vec![CURRENT.into()])]);
        s.add_version(version("v3", &[CURRENT]));
        assert_eq!(stages(&s), vec![("v2".into(), vec![PREVIOUS.into()]), ("v3".into(), vec![CURRENT.into()])]);
        s.add_version(version("v4", &["AWSPENDING"]));
        assert_eq!(s.pick(None, None).unwrap().id, "v3");
        assert_eq!(s.pick(None, Some("AWSPENDING")).unwrap().id, "v4");
        assert_eq!(s.pick(Some("v2"), None).unwrap().id, "v2");
        assert_eq!(s.pick(Some("v9"), None).unwrap_err().code, "ResourceNotFoundException");
        assert_eq!(s.pick(Some("v2"), Some(CURRENT)).unwrap_err().code, "InvalidParameterException");
        let err = s.pick(None, Some("NOPE")).unwrap_err();
        assert_eq!(err.message, "Secrets Manager can't find the specified secret value for staging label: NOPE");
    }

    #[test]
    fn secret_ids_are_names_full_or_partial_arns() {
        assert_eq!(candidates("db"), (vec!["db".to_string()], false));
        assert_eq!(
            candidates("arn:aws:secretsmanager:us-east-1:0:secret:db-AbCdEf"),
            (vec!["db".to_string(), "db-AbCdEf".to_string()], true)
        );
        assert_eq!(candidates("arn:aws:secretsmanager:us-east-1:0:secret:my-db"), (vec!["my-db".to_string()], true));
        assert_eq!(candidates("arn:aws:ssm:us-east-1:0:parameter/x"), (Vec::new(), true));
    }

    #[test]
    fn a_secret_marked_for_deletion_refuses_operations() {
        let mut s = secret();
        assert!(s.check_live().is_ok());
        s.deleted_ms = Some(5);
        let err = s.check_live().unwrap_err();
        assert_eq!((err.code, err.message.as_str()), ("InvalidRequestException", MARKED));
    }
}
