//! Resolving a container's `secrets[].valueFrom` for the agent, as ECS does: an SSM parameter
//! (name, `name:VERSION` or ARN, decrypted) or a Secrets Manager secret (ARN or name, with ECS's
//! optional `:json-key:version-stage:version-id` suffix). Failures read as the ECS agent words
//! them; only a store that could not be read is transient.

use flotilla_api::{Ctx, SecretFailure, SecretSource};
use futures::future::BoxFuture;

use crate::error::AwsError;
use crate::keyring::Keys;
use crate::sm::record as secret;
use crate::ssm::record as param;
use crate::store;

/// What a `valueFrom` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Parameter(String),
    Secret { id: String, json_key: Option<String>, stage: Option<String>, version: Option<String> },
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

/// Splits a Secrets Manager reference: the secret (ARN or name) and ECS's suffix.
fn secret_reference(value_from: &str) -> Reference {
    let (id, rest): (String, Vec<&str>) = if value_from.starts_with("arn:") {
        // arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX[:key:stage:version]
        let parts: Vec<&str> = value_from.split(':').collect();
        let cut = parts.len().min(7);
        (parts[..cut].join(":"), parts[cut..].to_vec())
    } else {
        let mut parts = value_from.split(':');
        (parts.next().unwrap_or_default().to_string(), parts.collect())
    };
    Reference::Secret {
        id,
        json_key: non_empty(rest.first().copied()),
        stage: non_empty(rest.get(1).copied()),
        version: non_empty(rest.get(2).copied()),
    }
}

/// What `value_from` names: Secrets Manager for its ARNs, SSM for everything else.
pub fn parse(value_from: &str) -> Reference {
    if value_from.split(':').nth(2) == Some("secretsmanager") && value_from.starts_with("arn:") {
        secret_reference(value_from)
    } else {
        Reference::Parameter(value_from.to_string())
    }
}

const SSM: &str = "unable to retrieve secrets from ssm: service call has been retried 1 time(s): ";
const ASM: &str = "unable to retrieve secret from asm: service call has been retried 1 time(s): ";

fn fail(message: String, transient: bool) -> SecretFailure {
    SecretFailure { message, transient }
}

/// A store read that failed: transient. (Records that do not decode are reported the same way;
/// the agent asking again costs little.)
fn unreadable(prefix: &str, e: AwsError) -> SecretFailure {
    fail(format!("{prefix}the store could not be read: {}", e.message), true)
}

/// Resolves `valueFrom`s against the records of this crate's two services.
pub struct Resolver {
    pub keys: Keys,
}

impl Resolver {
    async fn parameter(&self, ctx: &Ctx, given: &str) -> Result<Option<String>, SecretFailure> {
        let Some(asked) = param::parse_name(given) else { return Ok(None) };
        let Some((p, _)) =
            store::get::<param::Parameter>(ctx, &param::key(&asked.name)).await.map_err(|e| unreadable(SSM, e))?
        else {
            return Ok(None);
        };
        let Ok(v) = crate::ssm::pick(&p, &asked) else { return Ok(None) };
        let plain =
            self.keys.open(&param::aad(&p.name, v.version), &v.value).map_err(|e| fail(format!("{SSM}{e}"), false))?;
        Ok(Some(String::from_utf8_lossy(&plain).into_owned()))
    }

    async fn secret(
        &self,
        ctx: &Ctx,
        id: &str,
        key: Option<&str>,
        stage: Option<&str>,
        version: Option<&str>,
    ) -> Result<Option<String>, SecretFailure> {
        let fetch = format!("{ASM}failed to fetch secret {id} from secrets manager: ");
        let Some((s, _)) = secret::find(ctx, id).await.map_err(|e| unreadable(ASM, e))? else { return Ok(None) };
        let refused = |e: AwsError| fail(format!("{fetch}{}: {}", e.code, e.message), false);
        s.check_live().map_err(refused)?;
        let v = s.pick(version, stage).map_err(refused)?;
        let text = match secret::open(&self.keys, &s.arn, v).map_err(|e| fail(format!("{ASM}{e}"), false))? {
            secret::Value::Text(t) => t,
            secret::Value::Binary(_) => {
                return Err(fail(
                    format!("{ASM}secret {id} holds a SecretBinary, which ECS cannot pass to a container"),
                    false,
                ))
            }
        };
        let Some(key) = key else { return Ok(Some(text)) };
        let missing =
            || fail(format!("{ASM}retrieved secret from Secrets Manager did not contain json key {key}"), false);
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).map_err(|_| missing())?;
        Ok(Some(match object.get(key).ok_or_else(missing)? {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }))
    }

    pub async fn resolve_one(&self, ctx: &Ctx, value_from: &str) -> Result<String, SecretFailure> {
        let ssm_missing = || fail(format!("{SSM}InvalidParameters: invalid parameters: {value_from}"), false);
        let asm_missing = |id: &str| {
            fail(
                format!("{ASM}failed to fetch secret {id} from secrets manager: ResourceNotFoundException: Secrets Manager can't find the specified secret."),
                false,
            )
        };
        match parse(value_from) {
            Reference::Secret { id, json_key, stage, version } => self
                .secret(ctx, &id, json_key.as_deref(), stage.as_deref(), version.as_deref())
                .await?
                .ok_or_else(|| asm_missing(&id)),
            Reference::Parameter(name) => {
                if let Some(value) = self.parameter(ctx, &name).await? {
                    return Ok(value);
                }
                // Not a parameter: a Secrets Manager secret by name, with ECS's suffix.
                if let Reference::Secret { id, json_key, stage, version } = secret_reference(&name) {
                    if !name.starts_with("arn:") {
                        if let Some(value) =
                            self.secret(ctx, &id, json_key.as_deref(), stage.as_deref(), version.as_deref()).await?
                        {
                            return Ok(value);
                        }
                    }
                }
                Err(ssm_missing())
            }
        }
    }
}

impl SecretSource for Resolver {
    fn resolve<'a>(&'a self, ctx: &'a Ctx, value_from: &'a str) -> BoxFuture<'a, Result<String, SecretFailure>> {
        Box::pin(self.resolve_one(ctx, value_from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(id: &str, key: Option<&str>, stage: Option<&str>, version: Option<&str>) -> Reference {
        Reference::Secret {
            id: id.into(),
            json_key: key.map(Into::into),
            stage: stage.map(Into::into),
            version: version.map(Into::into),
        }
    }

    #[test]
    fn value_from_names_a_parameter_or_a_secret_with_ecs_suffix() {
        assert_eq!(parse("/app/db"), Reference::Parameter("/app/db".into()));
        assert_eq!(parse("plain"), Reference::Parameter("plain".into()));
        let ssm = "arn:aws:ssm:us-east-1:000000000000:parameter/app/db";
        assert_eq!(parse(ssm), Reference::Parameter(ssm.into()));
        let arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:db-AbCdEf";
        assert_eq!(parse(arn), secret(arn, None, None, None));
        assert_eq!(parse(&format!("{arn}:password::")), secret(arn, Some("password"), None, None));
        assert_eq!(parse(&format!("{arn}::AWSPREVIOUS:")), secret(arn, None, Some("AWSPREVIOUS"), None));
        assert_eq!(parse(&format!("{arn}:k:AWSCURRENT:v-1")), secret(arn, Some("k"), Some("AWSCURRENT"), Some("v-1")));
        assert_eq!(secret_reference("db:password::"), secret("db", Some("password"), None, None));
    }
}
