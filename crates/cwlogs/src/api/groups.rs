//! Log groups: CreateLogGroup, DescribeLogGroups, DeleteLogGroup and the retention policy.

use flotilla_api::Ctx;
use flotilla_store::{Compare, Op, Txn};
use serde_json::{json, Value};

use super::input::Input;
use super::tokens;
use crate::error::{LogsError, Result};
use crate::records::{self, GroupRecord, StreamRecord};
use crate::store;

/// The retention periods CloudWatch Logs accepts, in days.
pub const RETENTION_DAYS: &[i64] =
    &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

pub fn arn(ctx: &Ctx, group: &str) -> String {
    format!("arn:{}:logs:{}:{}:log-group:{group}", ctx.arns.partition, ctx.arns.region, ctx.arns.account)
}

pub async fn create(ctx: &Ctx, input: &Input) -> Result<Value> {
    let name = input.group()?;
    if input.get("kmsKeyId").is_some() {
        return Err(LogsError::invalid("kmsKeyId: Flotilla does not encrypt log groups with KMS keys."));
    }
    if !store::create_group(ctx, &name).await? {
        return Err(LogsError::group_exists());
    }
    Ok(json!({}))
}

pub async fn describe(ctx: &Ctx, input: &Input) -> Result<Value> {
    let prefix = input.str("logGroupNamePrefix")?.unwrap_or_default();
    if !prefix.is_empty() {
        super::input::group_name(prefix, "logGroupNamePrefix")?;
    }
    let pattern = input.str("logGroupNamePattern")?;
    let limit = input.int("limit", 1, 50)?.unwrap_or(50) as usize;
    let after = match input.str("nextToken")? {
        None | Some("") => None,
        Some(t) => Some(tokens::name_of(t).ok_or_else(|| LogsError::invalid("The specified nextToken is invalid."))?),
    };
    let groups = store::list::<GroupRecord>(ctx, &format!("{}{prefix}", records::GROUP)).await?;
    let mut out = Vec::new();
    let mut next = None;
    for (g, _) in groups {
        if after.as_deref().is_some_and(|a| g.name.as_str() <= a) || pattern.is_some_and(|p| !g.name.contains(p)) {
            continue;
        }
        if out.len() == limit {
            next = out.last().map(|v: &Value| tokens::after_name(v["logGroupName"].as_str().unwrap_or_default()));
            break;
        }
        out.push(shape(ctx, &g).await?);
    }
    let mut body = json!({ "logGroups": out });
    if let Some(n) = next {
        body["nextToken"] = n.into();
    }
    Ok(body)
}

async fn shape(ctx: &Ctx, g: &GroupRecord) -> Result<Value> {
    let streams = store::list::<StreamRecord>(ctx, &records::streams_of(&g.name)).await?;
    let stored: u64 = streams.iter().map(|(s, _)| s.stored_bytes).sum();
    let arn = arn(ctx, &g.name);
    let mut v = json!({
        "logGroupName": g.name,
        "creationTime": g.creation_time,
        "metricFilterCount": 0,
        "arn": format!("{arn}:*"),
        "logGroupArn": arn,
        "storedBytes": stored,
        "logGroupClass": "STANDARD",
    });
    if let Some(days) = g.retention_in_days {
        v["retentionInDays"] = days.into();
    }
    Ok(v)
}

/// Removes the group and its streams' records at once, then their batches.
pub async fn delete(ctx: &Ctx, input: &Input) -> Result<Value> {
    let name = input.group()?;
    let key = records::group_key(&name);
    for _ in 0..store::ATTEMPTS {
        let (_, rev) = store::get::<GroupRecord>(ctx, &key).await?.ok_or_else(LogsError::group_not_found)?;
        let streams = store::list::<StreamRecord>(ctx, &records::streams_of(&name)).await?;
        // The group goes first, alone if it has many streams: a stream cannot be created in a
        // missing group, so what remains is unreachable and deleted below.
        if !store::commit(ctx, Txn::new().when(Compare::unchanged(key.clone(), rev)).then(Op::delete(key.clone())))
            .await?
        {
            continue;
        }
        for chunk in streams.chunks(50) {
            let txn =
                chunk.iter().fold(Txn::new(), |t, (s, _)| t.then(Op::delete(records::stream_key(&name, &s.name))));
            store::commit(ctx, txn).await?;
        }
        for (s, _) in &streams {
            store::delete_batches(ctx, s.id, s.first_batch, s.next_batch).await?;
        }
        return Ok(json!({}));
    }
    Err(store::lost_race("The log group"))
}

pub async fn put_retention(ctx: &Ctx, input: &Input) -> Result<Value> {
    let name = input.group()?;
    let days = match input.get("retentionInDays") {
        None => input.required("retentionInDays").map(|_| 0)?,
        Some(v) => v.as_i64().ok_or_else(|| LogsError::invalid("retentionInDays must be an integer."))?,
    };
    if !RETENTION_DAYS.contains(&days) {
        let set: Vec<String> = RETENTION_DAYS.iter().map(i64::to_string).collect();
        return Err(LogsError::constraint(
            "retentionInDays",
            &days.to_string(),
            &format!("Member must satisfy enum value set: [{}]", set.join(", ")),
        ));
    }
    set_retention(ctx, &name, Some(days)).await
}

pub async fn delete_retention(ctx: &Ctx, input: &Input) -> Result<Value> {
    let name = input.group()?;
    set_retention(ctx, &name, None).await
}

async fn set_retention(ctx: &Ctx, name: &str, days: Option<i64>) -> Result<Value> {
    let key = records::group_key(name);
    for _ in 0..store::ATTEMPTS {
        let (mut g, rev) = store::get::<GroupRecord>(ctx, &key).await?.ok_or_else(LogsError::group_not_found)?;
        g.retention_in_days = days;
        let txn = Txn::new().when(Compare::unchanged(key.clone(), rev)).then(store::put(key.clone(), &g));
        if store::commit(ctx, txn).await? {
            return Ok(json!({}));
        }
    }
    Err(store::lost_race("The log group"))
}
