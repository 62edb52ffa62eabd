//! SSM Parameter Store (`ssm`, JSON 1.1, `X-Amz-Target: AmazonSSM.<Operation>`): parameters
//! with versions, read by name, ARN or `name:VERSION`, by path, or described with filters. Every
//! value is sealed in the store; a SecureString read without `WithDecryption` shows the sealed
//! value, never the plaintext.

mod describe;
pub mod record;

use flotilla_api::Ctx;
use flotilla_store::{Compare, Op, Txn};
use serde_json::{json, Value};

use crate::error::{AwsError, Result};
use crate::input::{encode_token, epoch, Input};
use crate::keyring::Keys;
use crate::store;
use record::{NameRef, Parameter, Selector, Version};

pub const SIGNING_NAME: &str = "ssm";
pub const TARGET_PREFIX: &str = "AmazonSSM";

pub const OPERATIONS: &[&str] = &[
    "PutParameter",
    "GetParameter",
    "GetParameters",
    "GetParametersByPath",
    "DeleteParameter",
    "DeleteParameters",
    "DescribeParameters",
];

pub async fn dispatch(ctx: &Ctx, keys: &Keys, op: &str, input: &Input) -> Result<Value> {
    match op {
        "PutParameter" => put(ctx, keys, input).await,
        "GetParameter" => get_one(ctx, keys, input).await,
        "GetParameters" => get_many(ctx, keys, input).await,
        "GetParametersByPath" => by_path(ctx, keys, input).await,
        "DeleteParameter" => delete_one(ctx, input).await,
        "DeleteParameters" => delete_many(ctx, input).await,
        "DescribeParameters" => describe::describe(ctx, input).await,
        _ => Err(AwsError::new("UnknownOperationException", format!("Unknown operation {op}."))),
    }
}

pub fn not_found(name: &str) -> AwsError {
    AwsError::new("ParameterNotFound", format!("Parameter {name} not found."))
}

const TYPES: &[&str] = &["String", "StringList", "SecureString"];

async fn put(ctx: &Ctx, keys: &Keys, input: &Input) -> Result<Value> {
    let given = input.required_str("Name")?;
    let name = record::parse_name(given)
        .filter(|n| n.selector.is_none())
        .ok_or_else(|| AwsError::validation(format!("Parameter name {given} is not valid.")))?
        .name;
    record::check_new_name(&name)?;
    let value = input.str("Value")?.filter(|v| !v.is_empty()).ok_or_else(|| {
        AwsError::validation("1 validation error detected: Value at 'value' failed to satisfy constraint: Member must have length greater than or equal to 1")
    })?;
    let kind = input.str("Type")?;
    if let Some(t) = kind {
        if !TYPES.contains(&t) {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{t}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [SecureString, StringList, String]"
            )));
        }
    }
    let tier = match input.str("Tier")?.unwrap_or("Standard") {
        "Standard" => "Standard",
        "Advanced" => "Advanced",
        "Intelligent-Tiering" if value.len() > 4096 => "Advanced",
        "Intelligent-Tiering" => "Standard",
        t => return Err(AwsError::validation(format!(
            "1 validation error detected: Value '{t}' at 'tier' failed to satisfy constraint: Member must satisfy enum value set: [Advanced, Intelligent-Tiering, Standard]"
        ))),
    };
    let max = if tier == "Advanced" { 8192 } else { 4096 };
    if value.len() > max {
        return Err(AwsError::validation(if tier == "Standard" {
            "Standard tier parameters support a maximum parameter value of 4096 characters. To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier.".to_string()
        } else {
            "Advanced tier parameters support a maximum parameter value of 8192 characters.".to_string()
        }));
    }
    let data_type = input.str("DataType")?.unwrap_or("text");
    if data_type != "text" {
        return Err(AwsError::validation(format!("The following data type is not supported: {data_type}")));
    }
    let overwrite = input.bool("Overwrite")?;
    let tags = input.tags()?;
    if overwrite && !tags.is_empty() {
        return Err(AwsError::validation(
            "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.",
        ));
    }
    let description = input.str("Description")?;
    if description.is_some_and(|d| d.chars().count() > 1024) {
        return Err(AwsError::validation("Description must be at most 1024 characters long."));
    }
    let key_id = input.str("KeyId")?;
    let key = record::key(&name);
    for _ in 0..store::ATTEMPTS {
        let existing = store::get::<Parameter>(ctx, &key).await?;
        let now = ctx.clock.now_ms();
        let (mut param, guard) = match existing {
            Some(_) if !overwrite => {
                return Err(AwsError::new(
                    "ParameterAlreadyExists",
                    "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.",
                ))
            }
            Some((p, rev)) => (p, Compare::unchanged(key.clone(), rev)),
            None => {
                let kind = kind.ok_or_else(|| AwsError::validation("A parameter type is required when you create a parameter."))?;
                let p = Parameter {
                    name: name.clone(),
                    kind: kind.to_string(),
                    description: None,
                    key_id: None,
                    tier: tier.to_string(),
                    data_type: data_type.to_string(),
                    tags: tags.clone(),
                    versions: Vec::new(),
                };
                (p, Compare::absent(key.clone()))
            }
        };
        if let Some(t) = kind {
            param.kind = t.to_string();
        }
        if description.is_some() {
            param.description = description.map(str::to_string);
        }
        param.key_id = match (param.kind.as_str(), key_id) {
            ("SecureString", Some(k)) => Some(k.to_string()),
            ("SecureString", None) => param.key_id.or_else(|| Some("alias/aws/ssm".into())),
            (_, Some(_)) => {
                return Err(AwsError::validation("KeyId is required for SecureString type parameter only."))
            }
            _ => None,
        };
        if param.tier != "Advanced" {
            param.tier = tier.to_string();
        }
        let version = param.latest().map_or(0, |v| v.version) + 1;
        let sealed = record::seal(keys, &name, version, value)?;
        param.versions.push(Version { version, value: sealed, modified_ms: now });
        if param.versions.len() > record::MAX_VERSIONS {
            param.versions.remove(0);
        }
        let txn = Txn::new().when(guard).then(store::put(key.clone(), &param));
        if store::commit(ctx, txn).await? {
            return Ok(json!({ "Version": version, "Tier": param.tier }));
        }
    }
    Err(store::lost_race(&name))
}

/// The version a name asks for, or the error GetParameter answers with.
pub(crate) fn pick<'a>(param: &'a Parameter, asked: &NameRef) -> Result<&'a Version> {
    match &asked.selector {
        None => param.latest().ok_or_else(|| not_found(&asked.name)),
        Some(Selector::Version(n)) => param.version(*n).ok_or_else(|| {
            AwsError::new(
                "ParameterVersionNotFound",
                format!(
                    "Systems Manager could not find version {n} of {}. Verify the version and try again.",
                    asked.name
                ),
            )
        }),
        Some(Selector::Label(l)) => Err(AwsError::new(
            "ParameterVersionLabelNotFound",
            format!(
                "Systems Manager could not find label {l} of {}. Parameter labels are not supported by Flotilla.",
                asked.name
            ),
        )),
    }
}

/// A parameter as GetParameter shows it.
fn shape(
    ctx: &Ctx,
    keys: &Keys,
    param: &Parameter,
    v: &Version,
    decrypt: bool,
    selector: Option<&Selector>,
) -> Result<Value> {
    let value = if param.kind == "SecureString" && !decrypt {
        // What AWS shows: the ciphertext, opaque to the caller.
        v.value.data.clone()
    } else {
        record::open(keys, &param.name, v)?
    };
    let mut out = json!({
        "Name": param.name,
        "Type": param.kind,
        "Value": value,
        "Version": v.version,
        "LastModifiedDate": epoch(v.modified_ms),
        "ARN": record::arn(ctx, &param.name),
        "DataType": param.data_type,
    });
    if let Some(s) = selector {
        out["Selector"] = Value::String(s.text());
    }
    Ok(out)
}

async fn load(ctx: &Ctx, asked: &NameRef) -> Result<Option<Parameter>> {
    Ok(store::get::<Parameter>(ctx, &record::key(&asked.name)).await?.map(|(p, _)| p))
}

/// Reads one parameter by name, ARN or selector; `Err` for the errors GetParameter answers.
pub async fn read(ctx: &Ctx, keys: &Keys, given: &str, decrypt: bool) -> Result<Value> {
    let asked = record::parse_name(given).ok_or_else(|| not_found(given))?;
    let param = load(ctx, &asked).await?.ok_or_else(|| not_found(given))?;
    let v = pick(&param, &asked)?;
    shape(ctx, keys, &param, v, decrypt, asked.selector.as_ref())
}

async fn get_one(ctx: &Ctx, keys: &Keys, input: &Input) -> Result<Value> {
    let given = input.required_str("Name")?;
    let parameter = read(ctx, keys, given, input.bool("WithDecryption")?).await?;
    Ok(json!({ "Parameter": parameter }))
}

async fn get_many(ctx: &Ctx, keys: &Keys, input: &Input) -> Result<Value> {
    let names = input.strings("Names")?;
    if names.is_empty() || names.len() > 10 {
        return Err(AwsError::validation(
            "1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length less than or equal to 10 and greater than or equal to 1",
        ));
    }
    let decrypt = input.bool("WithDecryption")?;
    let (mut found, mut invalid) = (Vec::new(), Vec::new());
    for name in &names {
        match read(ctx, keys, name, decrypt).await {
            Ok(p) => found.push(p),
            Err(e) if e.status >= 500 => return Err(e),
            Err(_) => invalid.push(Value::String(name.clone())),
        }
    }
    Ok(json!({ "Parameters": found, "InvalidParameters": invalid }))
}

async fn by_path(ctx: &Ctx, keys: &Keys, input: &Input) -> Result<Value> {
    let path = input.required_str("Path")?;
    if !path.starts_with('/') || path.contains("//") {
        return Err(AwsError::validation(format!(
            "The parameter doesn't meet the parameter name requirements. The parameter name must begin with a forward slash \"/\". Path: {path}"
        )));
    }
    let recursive = input.bool("Recursive")?;
    let decrypt = input.bool("WithDecryption")?;
    let limit = input.int("MaxResults", 1, 10)?.unwrap_or(10) as usize;
    let after = input.next_token()?;
    let kinds = describe::type_filter(input)?;
    let base = if path == "/" { "/".to_string() } else { format!("{}/", path.trim_end_matches('/')) };
    let mut out = Vec::new();
    let mut next = None;
    for (_, param, _) in store::list::<Parameter>(ctx, &record::key(&base)).await? {
        let rest = &param.name[base.len()..];
        if (!recursive && rest.contains('/')) || after.as_deref().is_some_and(|a| param.name.as_str() <= a) {
            continue;
        }
        if kinds.as_ref().is_some_and(|k| !k.contains(&param.kind)) {
            continue;
        }
        let Some(v) = param.latest() else { continue };
        if out.len() == limit {
            next = out.last().and_then(|p: &Value| p["Name"].as_str()).map(encode_token);
            break;
        }
        out.push(shape(ctx, keys, &param, v, decrypt, None)?);
    }
    let mut body = json!({ "Parameters": out });
    if let Some(t) = next {
        body["NextToken"] = Value::String(t);
    }
    Ok(body)
}

/// Deletes a parameter; `false` when there is none.
async fn remove(ctx: &Ctx, given: &str) -> Result<bool> {
    let Some(asked) = record::parse_name(given).filter(|n| n.selector.is_none()) else { return Ok(false) };
    let key = record::key(&asked.name);
    for _ in 0..store::ATTEMPTS {
        let Some((_, rev)) = store::get::<Parameter>(ctx, &key).await? else { return Ok(false) };
        let txn = Txn::new().when(Compare::unchanged(key.clone(), rev)).then(Op::delete(key.clone()));
        if store::commit(ctx, txn).await? {
            return Ok(true);
        }
    }
    Err(store::lost_race(given))
}

async fn delete_one(ctx: &Ctx, input: &Input) -> Result<Value> {
    let given = input.required_str("Name")?;
    if remove(ctx, given).await? {
        Ok(json!({}))
    } else {
        Err(not_found(given))
    }
}

async fn delete_many(ctx: &Ctx, input: &Input) -> Result<Value> {
    let names = input.strings("Names")?;
    if names.is_empty() || names.len() > 10 {
        return Err(AwsError::validation(
            "1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length less than or equal to 10 and greater than or equal to 1",
        ));
    }
    let (mut deleted, mut invalid) = (Vec::new(), Vec::new());
    for name in names {
        if remove(ctx, &name).await? {
            deleted.push(Value::String(name));
        } else {
            invalid.push(Value::String(name));
        }
    }
    Ok(json!({ "DeletedParameters": deleted, "InvalidParameters": invalid }))
}
