//! FilterLogEvents: the events of a group's streams (all, named, or by prefix) in a time range
//! that match a pattern, interleaved in (timestamp, event id) order, as AWS always answers now.
//! `aws logs tail --follow` polls this with `startTime` at the newest timestamp it printed.
//! Only the first `limit` candidates are kept while scanning, so memory follows the page size.

use flotilla_api::Ctx;
use serde_json::{json, Value};

use super::events::{MAX_BATCH_BYTES, MAX_EVENTS};
use super::input::Input;
use super::tokens;
use crate::error::{LogsError, Result};
use crate::filter::Pattern;
use crate::records::{self, StreamRecord};
use crate::store;

struct Hit {
    timestamp: i64,
    id: String,
    stream: usize,
    message: String,
    ingestion: i64,
}

pub async fn filter(ctx: &Ctx, input: &Input) -> Result<Value> {
    let group = input.group()?;
    let names = input.strings("logStreamNames")?;
    let prefix = input.str("logStreamNamePrefix")?;
    if names.is_some() && prefix.is_some() {
        return Err(LogsError::invalid("logStreamNames and logStreamNamePrefix are mutually exclusive"));
    }
    if names.as_ref().is_some_and(|n| n.is_empty() || n.len() > 100) {
        return Err(LogsError::constraint("logStreamNames", "[]", "Member must have length between 1 and 100"));
    }
    let start = input.get("startTime").and_then(Value::as_i64).unwrap_or(i64::MIN);
    let end = input.get("endTime").and_then(Value::as_i64).unwrap_or(i64::MAX);
    let limit = input.int("limit", 1, MAX_EVENTS as i64)?.unwrap_or(MAX_EVENTS as i64) as usize;
    let pattern = Pattern::parse(input.str("filterPattern")?.unwrap_or_default())?;
    let after = match input.str("nextToken")? {
        None | Some("") => None,
        Some(t) => Some(tokens::event_of(t).ok_or_else(|| LogsError::invalid("The specified nextToken is invalid."))?),
    };
    store::group(ctx, &group).await?;
    let streams: Vec<StreamRecord> = match &names {
        Some(names) => {
            let mut found = Vec::new();
            for n in names {
                if let Some((s, _)) = store::get::<StreamRecord>(ctx, &records::stream_key(&group, n)).await? {
                    found.push(s);
                }
            }
            found
        }
        None => store::list::<StreamRecord>(ctx, &format!("{}{}", records::streams_of(&group), prefix.unwrap_or("")))
            .await?
            .into_iter()
            .map(|(s, _)| s)
            .collect(),
    };

    let mut hits: Vec<Hit> = Vec::new();
    let mut more = false;
    let key = |h: &Hit| (h.timestamp, h.id.clone());
    for (si, s) in streams.iter().enumerate() {
        let outside =
            s.last_event_timestamp.is_none_or(|t| t < start) || s.first_event_timestamp.is_some_and(|t| t >= end);
        if outside {
            continue;
        }
        for seq in s.first_batch..s.next_batch {
            let Some(batch) = store::batch(ctx, s.id, seq).await? else { continue };
            for (i, (t, m)) in batch.events.iter().enumerate() {
                if *t < start || *t >= end || !pattern.matches(m) {
                    continue;
                }
                let id = tokens::event_id(s.id, seq, i);
                if after.as_ref().is_some_and(|(at, aid)| (*t, &id) <= (*at, aid)) {
                    continue;
                }
                hits.push(Hit { timestamp: *t, id, stream: si, message: m.clone(), ingestion: batch.ingestion_time });
                if hits.len() >= 2 * limit {
                    hits.sort_by_key(key);
                    hits.truncate(limit);
                    more = true;
                }
            }
        }
    }
    hits.sort_by_key(key);
    more |= hits.len() > limit;
    hits.truncate(limit);
    let mut bytes = 0u64;
    let fits = hits
        .iter()
        .position(|h| {
            bytes += h.message.len() as u64 + 26;
            bytes > MAX_BATCH_BYTES
        })
        .unwrap_or(hits.len())
        .max(1.min(hits.len()));
    more |= fits < hits.len();
    hits.truncate(fits);

    let events: Vec<Value> = hits
        .iter()
        .map(|h| {
            json!({
                "logStreamName": streams[h.stream].name,
                "timestamp": h.timestamp,
                "message": h.message,
                "ingestionTime": h.ingestion,
                "eventId": h.id,
            })
        })
        .collect();
    let searched: Vec<Value> =
        streams.iter().map(|s| json!({ "logStreamName": s.name, "searchedCompletely": true })).collect();
    let mut body = json!({ "events": events, "searchedLogStreams": searched });
    if more {
        if let Some(last) = hits.last() {
            body["nextToken"] = tokens::after_event(last.timestamp, &last.id).into();
        }
    }
    Ok(body)
}
