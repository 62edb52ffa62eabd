//! Secrets Manager (`secretsmanager`, JSON 1.1, `X-Amz-Target: secretsmanager.<Operation>`):
//! secrets with staged versions (AWSCURRENT, AWSPREVIOUS), found by name, full or partial ARN;
//! deletion marks a secret for a recovery window, after which the leader's sweep purges it.

mod describe;
pub mod record;

use flotilla_api::Ctx;
use flotilla_store::{Compare, Op, Txn};
use serde_json::{json, Value as Json};

use crate::error::{AwsError, Result};
use crate::input::{epoch, Input};
use crate::keyring::Keys;
use crate::store;
use record::{Secret, SecretVersion, Value, CURRENT};

pub const SIGNING_NAME: &str = "secretsmanager";
pub const TARGET_PREFIX: &str = "secretsmanager";

pub const OPERATIONS: &[&str] = &[
    "CreateSecret",
    "GetSecretValue",
    "PutSecretValue",
    "UpdateSecret",
    "DescribeSecret",
    "ListSecrets",
    "DeleteSecret",
    "RestoreSecret",
];

const DAY_MS: i64 = 24 * 3600 * 1000;

pub async fn dispatch(ctx: &Ctx, keys: &Keys, op: &str, input: &Input) -> Result<Json> {
    match op {
        "CreateSecret" => create(ctx, keys, input).await,
        "GetSecretValue" => get_value(ctx, keys, input).await,
        "PutSecretValue" => put_value(ctx, keys, input).await,
        "UpdateSecret" => update(ctx, keys, input).await,
        "DescribeSecret" => describe::describe(ctx, input).await,
        "ListSecrets" => describe::list(ctx, input).await,
        "DeleteSecret" => delete(ctx, input).await,
        "RestoreSecret" => restore(ctx, input).await,
        _ => Err(AwsError::new("UnknownOperationException", format!("Unknown operation {op}."))),
    }
}

/// The value a request gives (`SecretString` or base64 `SecretBinary`), if any.
fn value_of(input: &Input) -> Result<Option<Value>> {
    let text = input.str("SecretString")?;
    let binary = input.str("SecretBinary")?;
    match (text, binary) {
        (Some(_), Some(_)) => Err(AwsError::invalid_parameter(
            "You can't specify both a binary secret value and a string secret value in the same secret.",
        )),
        (Some(t), None) if t.len() > 65536 => {
            Err(AwsError::invalid_parameter("SecretString must be at most 65536 characters long."))
        }
        (Some(t), None) => Ok(Some(Value::Text(t.to_string()))),
        (None, Some(b)) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|_| AwsError::invalid_parameter("SecretBinary must be base64."))?;
            if bytes.len() > 65536 {
                return Err(AwsError::invalid_parameter("SecretBinary must be at most 65536 bytes long."));
            }
            Ok(Some(Value::Binary(bytes)))
        }
        (None, None) => Ok(None),
    }
}

/// `ClientRequestToken`, the new version's id (the SDKs fill it in), else a fresh uuid.
fn version_id(input: &Input) -> Result<String> {
    match input.str("ClientRequestToken")? {
        Some(t) if (32..=64).contains(&t.len()) => Ok(t.to_string()),
        Some(_) => Err(AwsError::invalid_parameter("ClientRequestToken must be 32 to 64 characters long.")),
        None => Ok(uuid::Uuid::new_v4().to_string()),
    }
}

/// A version the same token already made: the same value repeats the request, another is refused.
fn repeated(keys: &Keys, secret: &Secret, id: &str, value: &Value) -> Result<Option<SecretVersion>> {
    let Some(v) = secret.by_id(id) else { return Ok(None) };
    if record::open_for_request(keys, &secret.arn, v)? == *value {
        Ok(Some(v.clone()))
    } else {
        Err(AwsError::new(
            "ResourceExistsException",
            "You can't modify an existing version, you can only create a new version.",
        ))
    }
}

fn new_version(
    keys: &Keys,
    arn: &str,
    id: &str,
    value: &Value,
    stages: Vec<String>,
    now: i64,
) -> Result<SecretVersion> {
    let (sealed, binary) = record::seal(keys, arn, id, value)?;
    Ok(SecretVersion { id: id.to_string(), stages, created_ms: now, binary, value: sealed })
}

async fn create(ctx: &Ctx, keys: &Keys, input: &Input) -> Result<Json> {
    let name = input.required_str("Name")?;
    record::check_name(name)?;
    let value = value_of(input)?;
    let token = version_id(input)?;
    let description = input.str("Description")?;
    let tags = input.tags()?;
    let key = record::key(name);
    for _ in 0..store::ATTEMPTS {
        if let Some((existing, _)) = store::get::<Secret>(ctx, &key).await? {
            if existing.deleted_ms.is_some() {
                return Err(AwsError::new(
                    "InvalidRequestException",
                    "You can't create this secret because a secret with this name is already scheduled for deletion.",
                ));
            }
            if let Some(v) = value.as_ref().map(|v| repeated(keys, &existing, &token, v)).transpose()?.flatten() {
                return Ok(json!({ "ARN": existing.arn, "Name": existing.name, "VersionId": v.id }));
            }
            return Err(AwsError::new(
                "ResourceExistsException",
                format!("The operation failed because the secret {name} already exists."),
            ));
        }
        let now = ctx.clock.now_ms();
        let arn = record::new_arn(ctx, name);
        let mut secret = Secret {
            name: name.to_string(),
            arn: arn.clone(),
            description: description.map(str::to_string),
            kms_key_id: input.str("KmsKeyId")?.map(str::to_string),
            tags: tags.clone(),
            created_ms: now,
            changed_ms: now,
            deleted_ms: None,
            deletion_ms: None,
            versions: Vec::new(),
        };
        if let Some(v) = &value {
            secret.add_version(new_version(keys, &arn, &token, v, vec![CURRENT.into()], now)?);
        }
        let txn = Txn::new().when(Compare::absent(key.clone())).then(store::put(key.clone(), &secret));
        if store::commit(ctx, txn).await? {
            let mut out = json!({ "ARN": arn, "Name": name });
            if value.is_some() {
                out["VersionId"] = Json::String(token);
            }
            return Ok(out);
        }
    }
    Err(store::lost_race(name))
}

async fn found(ctx: &Ctx, input: &Input) -> Result<(Secret, flotilla_store::Revision)> {
    let id = input.required_str("SecretId")?;
    record::find(ctx, id).await?.ok_or_else(record::not_found)
}

async fn get_value(ctx: &Ctx, keys: &Keys, input: &Input) -> Result<Json> {
    let (secret, _) = found(ctx, input).await?;
    secret.check_live()?;
    let v = secret.pick(input.str("VersionId")?, input.str("VersionStage")?)?;
    let mut out = json!({
        "ARN": secret.arn,
        "Name": secret.name,
        "VersionId": v.id,
        "VersionStages": v.stages,
        "CreatedDate": epoch(v.created_ms),
    });
    match record::open_for_request(keys, &secret.arn, v)? {
        Value::Text(t) => out["SecretString"] = Json::String(t),
        Value::Binary(b) => {
            use base64::Engine;
            out["SecretBinary"] = Json::String(base64::engine::general_purpose::STANDARD.encode(b));
        }
    }
    Ok(out)
}

/// Adds a version to the secret `SecretId` names (PutSecretValue, UpdateSecret with a value),
/// applying `edit` to the record too; returns the secret and the version id.
async fn add_value(
    ctx: &Ctx,
    keys: &Keys,
    input: &Input,
    value: Option<&Value>,
    stages: &[String],
    edit: &(dyn Fn(&mut Secret) + Sync),
) -> Result<(Secret, Option<String>)> {
    let token = version_id(input)?;
    for _ in 0..store::ATTEMPTS {
        let (mut secret, rev) = found(ctx, input).await?;
        secret.check_live()?;
        let mut made = None;
        if let Some(value) = value {
            if let Some(v) = repeated(keys, &secret, &token, value)? {
                return Ok((secret, Some(v.id)));
            }
            let now = ctx.clock.now_ms();
            secret.add_version(new_version(keys, &secret.arn, &token, value, stages.to_vec(), now)?);
            made = Some(token.clone());
        }
        edit(&mut secret);
        let txn = Txn::new().when(Compare::unchanged(secret.key(), rev)).then(store::put(secret.key(), &secret));
        if store::commit(ctx, txn).await? {
            return Ok((secret, made));
        }
    }
    Err(store::lost_race("The secret"))
}

async fn put_value(ctx: &Ctx, keys: &Keys, input: &Input) -> Result<Json> {
    let value = value_of(input)?
        .ok_or_else(|| AwsError::invalid_parameter("You must provide either SecretString or SecretBinary."))?;
    let mut stages = input.strings("VersionStages")?;
    if stages.is_empty() {
        stages.push(CURRENT.into());
    }
    let (secret, id) = add_value(ctx, keys, input, Some(&value), &stages, &|_| {}).await?;
    let id = id.unwrap_or_default();
    let stages = secret.by_id(&id).map(|v| v.stages.clone()).unwrap_or(stages);
    Ok(json!({ "ARN": secret.arn, "Name": secret.name, "VersionId": id, "VersionStages": stages }))
}

async fn update(ctx: &Ctx, keys: &Keys, input: &Input) -> Result<Json> {
    let value = value_of(input)?;
    let description = input.str("Description")?.map(str::to_string);
    let kms = input.str("KmsKeyId")?.map(str::to_string);
    let now = ctx.clock.now_ms();
    let edit = move |s: &mut Secret| {
        if description.is_some() {
            s.description = description.clone();
        }
        if kms.is_some() {
            s.kms_key_id = kms.clone();
        }
        s.changed_ms = now;
    };
    let (secret, id) = add_value(ctx, keys, input, value.as_ref(), &[CURRENT.to_string()], &edit).await?;
    let mut out = json!({ "ARN": secret.arn, "Name": secret.name });
    if let Some(id) = id {
        out["VersionId"] = Json::String(id);
    }
    Ok(out)
}

/// How long DeleteSecret keeps a secret: `None` to delete it at once.
pub fn deletion_window(input: &Input) -> Result<Option<i64>> {
    let force = input.bool("ForceDeleteWithoutRecovery")?;
    let days = match input.get("RecoveryWindowInDays") {
        None => None,
        Some(v) => match v.as_i64() {
            Some(d) if (7..=30).contains(&d) => Some(d),
            _ => {
                return Err(AwsError::invalid_parameter(
                    "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).",
                ))
            }
        },
    };
    match (force, days) {
        (true, Some(_)) => Err(AwsError::invalid_parameter(
            "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
        )),
        (true, None) => Ok(None),
        (false, days) => Ok(Some(days.unwrap_or(30))),
    }
}

async fn delete(ctx: &Ctx, input: &Input) -> Result<Json> {
    let window = deletion_window(input)?;
    for _ in 0..store::ATTEMPTS {
        let (mut secret, rev) = found(ctx, input).await?;
        let now = ctx.clock.now_ms();
        let guard = Compare::unchanged(secret.key(), rev);
        let txn = match window {
            None => {
                secret.deletion_ms = Some(now);
                Txn::new().when(guard).then(Op::delete(secret.key()))
            }
            Some(_) if secret.deleted_ms.is_some() => {
                return Err(AwsError::new("InvalidRequestException", record::MARKED))
            }
            Some(days) => {
                secret.deleted_ms = Some(now);
                secret.deletion_ms = Some(now + days * DAY_MS);
                Txn::new().when(guard).then(store::put(secret.key(), &secret))
            }
        };
        if store::commit(ctx, txn).await? {
            return Ok(json!({
                "ARN": secret.arn,
                "Name": secret.name,
                "DeletionDate": epoch(secret.deletion_ms.unwrap_or(now)),
            }));
        }
    }
    Err(store::lost_race("The secret"))
}

async fn restore(ctx: &Ctx, input: &Input) -> Result<Json> {
    for _ in 0..store::ATTEMPTS {
        let (mut secret, rev) = found(ctx, input).await?;
        if secret.deleted_ms.is_none() {
            return Ok(json!({ "ARN": secret.arn, "Name": secret.name }));
        }
        secret.deleted_ms = None;
        secret.deletion_ms = None;
        let txn = Txn::new().when(Compare::unchanged(secret.key(), rev)).then(store::put(secret.key(), &secret));
        if store::commit(ctx, txn).await? {
            return Ok(json!({ "ARN": secret.arn, "Name": secret.name }));
        }
    }
    Err(store::lost_race("The secret"))
}

/// Whether the sweep purges `secret` at `now`: marked and past its recovery window.
pub fn expired(secret: &Secret, now: i64) -> bool {
    secret.deleted_ms.is_some() && secret.deletion_ms.is_some_and(|d| d <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(body: &str) -> Input {
        Input::parse(body.as_bytes(), AwsError::invalid_parameter).unwrap()
    }

    #[test]
    fn the_deletion_window_is_7_to_30_days_default_30_or_none_when_forced() {
        assert_eq!(deletion_window(&input("{}")).unwrap(), Some(30));
        assert_eq!(deletion_window(&input(r#"{"RecoveryWindowInDays": 7}"#)).unwrap(), Some(7));
        assert_eq!(deletion_window(&input(r#"{"ForceDeleteWithoutRecovery": true}"#)).unwrap(), None);
        for bad in [r#"{"RecoveryWindowInDays": 6}"#, r#"{"RecoveryWindowInDays": 31}"#] {
            assert_eq!(deletion_window(&input(bad)).unwrap_err().code, "InvalidParameterException");
        }
        let both = input(r#"{"RecoveryWindowInDays": 7, "ForceDeleteWithoutRecovery": true}"#);
        assert_eq!(deletion_window(&both).unwrap_err().code, "InvalidParameterException");
    }

    #[test]
    fn only_secrets_past_their_window_expire() {
        let mut s = Secret {
            name: "x".into(),
            arn: "a".into(),
            description: None,
            kms_key_id: None,
            tags: Vec::new(),
            created_ms: 0,
            changed_ms: 0,
            deleted_ms: None,
            deletion_ms: None,
            versions: Vec::new(),
        };
        assert!(!expired(&s, i64::MAX));
        s.deleted_ms = Some(0);
        s.deletion_ms = Some(7 * DAY_MS);
        assert!(!expired(&s, 7 * DAY_MS - 1));
        assert!(expired(&s, 7 * DAY_MS));
    }
}
