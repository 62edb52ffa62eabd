//! PutLogEvents and GetLogEvents: one stream's events, stored as one batch per call and read
//! back batch by batch from either end (so memory follows `limit`, not the stream's size).

use flotilla_api::Ctx;
use serde_json::{json, Value};

use super::input::Input;
use super::tokens::Position;
use crate::error::{LogsError, Result};
use crate::records::{Batch, StreamRecord};
use crate::store;

/// AWS's caps on one PutLogEvents, and on one answer of GetLogEvents and FilterLogEvents.
pub const MAX_BATCH_BYTES: u64 = 1_048_576;
pub const MAX_EVENTS: usize = 10_000;
/// A message's cap: 256 KiB with its 26 bytes of overhead.
pub const MAX_MESSAGE_BYTES: usize = 262_144 - 26;
const DAY_MS: i64 = 86_400_000;

/// Reads `logEvents`, refusing what AWS refuses for the whole call.
fn events_of(input: &Input) -> Result<Vec<(i64, String)>> {
    let list = match input.get("logEvents") {
        None => return input.required("logEvents").map(|_| Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(LogsError::invalid("logEvents must be a list.")),
    };
    if list.is_empty() || list.len() > MAX_EVENTS {
        return Err(LogsError::constraint(
            "logEvents",
            &format!("{} events", list.len()),
            &format!("Member must have length between 1 and {MAX_EVENTS}"),
        ));
    }
    let mut events = Vec::with_capacity(list.len());
    for (i, e) in list.iter().enumerate() {
        let timestamp = e
            .get("timestamp")
            .and_then(Value::as_i64)
            .ok_or_else(|| LogsError::invalid(format!("logEvents.{}.member.timestamp must be an integer.", i + 1)))?;
        let message = match e.get("message").and_then(Value::as_str) {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => {
                return Err(LogsError::constraint(
                    &format!("logEvents.{}.member.message", i + 1),
                    "",
                    "Member must have length greater than or equal to 1",
                ))
            }
        };
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(LogsError::invalid(format!(
                "Log event too large: {} bytes exceeds limit of 262144",
                message.len() + 26
            )));
        }
        events.push((timestamp, message));
    }
    if events.windows(2).any(|w| w[1].0 < w[0].0) {
        return Err(LogsError::invalid("Log events in a single PutLogEvents request must be in chronological order."));
    }
    if let (Some(first), Some(last)) = (events.first(), events.last()) {
        if last.0 - first.0 > DAY_MS {
            return Err(LogsError::invalid(
                "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
            ));
        }
    }
    let size: u64 = events.iter().map(|(_, m)| m.len() as u64 + 26).sum();
    if size > MAX_BATCH_BYTES {
        return Err(LogsError::invalid(format!("Upload too large: {size} bytes exceeds limit of {MAX_BATCH_BYTES}")));
    }
    Ok(events)
}

/// Which events CloudWatch Logs would refuse by age: `(too new from, too old until, expired until)`.
fn rejections(
    events: &[(i64, String)],
    now: i64,
    retention_days: Option<i64>,
) -> (Option<usize>, Option<usize>, Option<usize>) {
    let too_new = events.iter().position(|(t, _)| *t > now + 2 * 3_600_000);
    let too_old = events.iter().rposition(|(t, _)| *t < now - 14 * DAY_MS);
    let expired = retention_days.and_then(|d| events.iter().rposition(|(t, _)| *t < now - d * DAY_MS));
    (too_new, too_old, expired)
}

pub async fn put(ctx: &Ctx, input: &Input) -> Result<Value> {
    let group = input.group()?;
    let stream = input.stream("logStreamName")?;
    let events = events_of(input)?;
    let g = store::group(ctx, &group).await?;
    let now = ctx.clock.now_ms();
    let (too_new, too_old, expired) = rejections(&events, now, g.retention_in_days);
    let keep_from = too_old.max(expired).map_or(0, |i| i + 1);
    let keep_to = too_new.unwrap_or(events.len()).max(keep_from);
    let kept = events[keep_from..keep_to].to_vec();
    let record = store::append(ctx, &group, &stream, &Batch { ingestion_time: now, events: kept }, None).await?;
    let mut body = json!({ "nextSequenceToken": record.sequence_token() });
    let mut rejected = serde_json::Map::new();
    for (field, index) in [
        ("tooNewLogEventStartIndex", too_new),
        ("tooOldLogEventEndIndex", too_old),
        ("expiredLogEventEndIndex", expired),
    ] {
        if let Some(i) = index {
            rejected.insert(field.into(), i.into());
        }
    }
    if !rejected.is_empty() {
        body["rejectedLogEventsInfo"] = Value::Object(rejected);
    }
    Ok(body)
}

/// One event read back with where it lies.
struct Found {
    at: Position,
    timestamp: i64,
    message: String,
    ingestion: i64,
}

/// Walks a stream's batches from `from` (inclusive) forward or, backward, below `from`, calling
/// `take` on each event in that order until it answers `false`.
async fn walk(
    ctx: &Ctx,
    s: &StreamRecord,
    from: Position,
    forward: bool,
    take: &mut (dyn FnMut(Position, i64, &str, i64) -> bool + Send),
) -> Result<()> {
    let mut seqs: Box<dyn Iterator<Item = u64> + Send> = if forward {
        Box::new(from.batch.max(s.first_batch)..s.next_batch)
    } else {
        Box::new((s.first_batch..s.next_batch.min(from.batch.saturating_add(1))).rev())
    };
    for seq in &mut seqs {
        let Some(batch) = store::batch(ctx, s.id, seq).await? else { continue };
        let indices: Box<dyn Iterator<Item = usize> + Send> =
            if forward { Box::new(0..batch.events.len()) } else { Box::new((0..batch.events.len()).rev()) };
        for i in indices {
            let at = Position { batch: seq, index: i as u64 };
            if (forward && at < from) || (!forward && at >= from) {
                continue;
            }
            let (t, m) = &batch.events[i];
            if !take(at, *t, m, batch.ingestion_time) {
                return Ok(());
            }
        }
    }
    Ok(())
}

pub async fn get(ctx: &Ctx, input: &Input) -> Result<Value> {
    let group = input.group()?;
    let stream = input.stream("logStreamName")?;
    let start = input.get("startTime").and_then(Value::as_i64).unwrap_or(i64::MIN);
    let end = input.get("endTime").and_then(Value::as_i64).unwrap_or(i64::MAX);
    let limit = input.int("limit", 1, MAX_EVENTS as i64)?.unwrap_or(MAX_EVENTS as i64) as usize;
    let from_head = input.bool("startFromHead")?.unwrap_or(false);
    let (s, _) = store::stream(ctx, &group, &stream).await?;
    let (forward, from) = match input.str("nextToken")? {
        Some(t) if !t.is_empty() => {
            Position::parse(t).ok_or_else(|| LogsError::invalid("The specified nextToken is invalid."))?
        }
        _ if from_head => (true, Position { batch: s.first_batch, index: 0 }),
        _ => (false, Position { batch: s.next_batch, index: 0 }),
    };
    let mut found: Vec<Found> = Vec::new();
    let mut bytes = 0u64;
    walk(ctx, &s, from, forward, &mut |at, timestamp, message, ingestion| {
        if timestamp < start || timestamp >= end {
            return true;
        }
        bytes += message.len() as u64 + 26;
        if found.len() == limit || (bytes > MAX_BATCH_BYTES && !found.is_empty()) {
            return false;
        }
        found.push(Found { at, timestamp, message: message.to_string(), ingestion });
        true
    })
    .await?;
    if !forward {
        found.reverse();
    }
    let (next_forward, next_backward) = match (found.first(), found.last()) {
        (Some(first), Some(last)) => (Position { index: last.at.index + 1, ..last.at }, first.at),
        _ => (from, from),
    };
    let events: Vec<Value> = found
        .iter()
        .map(|f| json!({ "timestamp": f.timestamp, "message": f.message, "ingestionTime": f.ingestion }))
        .collect();
    Ok(json!({
        "events": events,
        "nextForwardToken": next_forward.forward(),
        "nextBackwardToken": next_backward.backward(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_outside_the_accepted_ages_are_rejected_by_index() {
        let now = 100 * DAY_MS;
        let ev = |t: i64| (t, "m".to_string());
        let events = vec![ev(now - 20 * DAY_MS), ev(now - 5 * DAY_MS), ev(now), ev(now + 3 * 3_600_000)];
        assert_eq!(rejections(&events, now, None), (Some(3), Some(0), None));
        assert_eq!(rejections(&events, now, Some(7)), (Some(3), Some(0), Some(0)));
        assert_eq!(rejections(&events, now, Some(1)), (Some(3), Some(0), Some(1)));
        assert_eq!(rejections(&events[2..3], now, Some(1)), (None, None, None));
    }

    #[test]
    fn a_put_refuses_unordered_oversized_and_empty_batches() {
        let input = |v: Value| Input(v.as_object().cloned().unwrap_or_default());
        let e = events_of(&input(
            json!({"logEvents": [{"timestamp": 2, "message": "a"}, {"timestamp": 1, "message": "b"}]}),
        ));
        assert!(e.unwrap_err().message.contains("chronological"));
        let e = events_of(&input(json!({"logEvents": []})));
        assert!(e.unwrap_err().message.contains("'logEvents'"));
        let big = "x".repeat(200_000);
        let many: Vec<Value> = (0..6).map(|i| json!({"timestamp": i, "message": big})).collect();
        let e = events_of(&input(json!({"logEvents": many})));
        assert!(e.unwrap_err().message.starts_with("Upload too large"));
        let e = events_of(&input(json!({"logEvents": [{"timestamp": 1, "message": ""}]})));
        assert!(e.unwrap_err().message.contains("logEvents.1.member.message"));
    }
}
