//! Log streams: CreateLogStream, DescribeLogStreams and DeleteLogStream.

use flotilla_api::Ctx;
use flotilla_store::{Compare, Op, Txn};
use serde_json::{json, Value};

use super::input::Input;
use super::{groups, tokens};
use crate::error::{LogsError, Result};
use crate::records::{self, StreamRecord};
use crate::store;

pub async fn create(ctx: &Ctx, input: &Input) -> Result<Value> {
    let group = input.group()?;
    let name = input.stream("logStreamName")?;
    if !store::create_stream(ctx, &group, &name).await? {
        return Err(LogsError::stream_exists());
    }
    Ok(json!({}))
}

pub fn shape(ctx: &Ctx, group: &str, s: &StreamRecord) -> Value {
    let mut v = json!({
        "logStreamName": s.name,
        "creationTime": s.creation_time,
        "arn": format!("{}:log-stream:{}", groups::arn(ctx, group), s.name),
        "storedBytes": s.stored_bytes,
        "uploadSequenceToken": s.sequence_token(),
    });
    for (field, value) in [
        ("firstEventTimestamp", s.first_event_timestamp),
        ("lastEventTimestamp", s.last_event_timestamp),
        ("lastIngestionTime", s.last_ingestion_time),
    ] {
        if let Some(t) = value {
            v[field] = t.into();
        }
    }
    v
}

pub async fn describe(ctx: &Ctx, input: &Input) -> Result<Value> {
    let group = input.group()?;
    let prefix = input.str("logStreamNamePrefix")?.unwrap_or_default();
    let by_time = match input.str("orderBy")? {
        None | Some("LogStreamName") => false,
        Some("LastEventTime") => true,
        Some(other) => {
            return Err(LogsError::constraint(
                "orderBy",
                other,
                "Member must satisfy enum value set: [LogStreamName, LastEventTime]",
            ))
        }
    };
    if by_time && !prefix.is_empty() {
        return Err(LogsError::invalid("Cannot order by LastEventTime with a logStreamNamePrefix."));
    }
    let descending = input.bool("descending")?.unwrap_or(false);
    let limit = input.int("limit", 1, 50)?.unwrap_or(50) as usize;
    let start = match input.str("nextToken")? {
        None | Some("") => 0,
        Some(t) => tokens::name_of(t)
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| LogsError::invalid("The specified nextToken is invalid."))?,
    };
    store::group(ctx, &group).await?;
    let mut streams: Vec<StreamRecord> =
        store::list::<StreamRecord>(ctx, &format!("{}{prefix}", records::streams_of(&group)))
            .await?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
    if by_time {
        streams.sort_by(|a, b| {
            (a.last_event_timestamp.unwrap_or(0), &a.name).cmp(&(b.last_event_timestamp.unwrap_or(0), &b.name))
        });
    }
    if descending {
        streams.reverse();
    }
    let total = streams.len();
    let page: Vec<Value> = streams.iter().skip(start).take(limit).map(|s| shape(ctx, &group, s)).collect();
    let mut body = json!({ "logStreams": page });
    if start + limit < total {
        body["nextToken"] = tokens::after_name(&(start + limit).to_string()).into();
    }
    Ok(body)
}

pub async fn delete(ctx: &Ctx, input: &Input) -> Result<Value> {
    let group = input.group()?;
    let name = input.stream("logStreamName")?;
    let key = records::stream_key(&group, &name);
    for _ in 0..store::ATTEMPTS {
        let (s, rev) = store::stream(ctx, &group, &name).await?;
        if store::commit(ctx, Txn::new().when(Compare::unchanged(key.clone(), rev)).then(Op::delete(key.clone())))
            .await?
        {
            store::delete_batches(ctx, s.id, s.first_batch, s.next_batch).await?;
            return Ok(json!({}));
        }
    }
    Err(store::lost_race("The log stream"))
}
