//! Reading and writing groups, streams and batches, shared by the API and the agents' sink:
//! every change is one compare-and-swap transaction that the caller retries on a race.

use flotilla_api::Ctx;
use flotilla_store::{Compare, Op, Revision, Txn};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{LogsError, Result};
use crate::records::{self, Batch, GroupRecord, StreamRecord};

/// How often a request retries its transaction after losing a race.
pub const ATTEMPTS: usize = flotilla_api::context::MAX_CAS_ATTEMPTS;

fn store_error(e: impl std::fmt::Display) -> LogsError {
    LogsError::internal(format!("the log store could not be read or written: {e}"))
}

pub async fn get<T: DeserializeOwned>(ctx: &Ctx, key: &str) -> Result<Option<(T, Revision)>> {
    match ctx.store.get(key).await.map_err(store_error)? {
        Some(kv) => serde_json::from_slice(&kv.value)
            .map(|v| Some((v, kv.mod_revision)))
            .map_err(|e| LogsError::internal(format!("the record {key} could not be read: {e}"))),
        None => Ok(None),
    }
}

pub async fn list<T: DeserializeOwned>(ctx: &Ctx, prefix: &str) -> Result<Vec<(T, Revision)>> {
    let listing = ctx.store.list(prefix).await.map_err(store_error)?;
    listing
        .kvs
        .iter()
        .map(|kv| {
            serde_json::from_slice(&kv.value)
                .map(|v| (v, kv.mod_revision))
                .map_err(|e| LogsError::internal(format!("the record {} could not be read: {e}", kv.key)))
        })
        .collect()
}

pub fn put<T: Serialize>(key: String, value: &T) -> Op {
    Op::put(key, serde_json::to_vec(value).unwrap_or_default())
}

/// Commits `txn`; `false` when a compare failed (the caller reads again and retries).
pub async fn commit(ctx: &Ctx, txn: Txn) -> Result<bool> {
    Ok(ctx.commit(txn).await.map_err(|e| LogsError::internal(e.message))?.is_some())
}

pub fn lost_race(what: &str) -> LogsError {
    LogsError::internal(format!("{what} kept changing while this request tried to update it; try again"))
}

pub async fn group(ctx: &Ctx, name: &str) -> Result<GroupRecord> {
    Ok(get::<GroupRecord>(ctx, &records::group_key(name)).await?.ok_or_else(LogsError::group_not_found)?.0)
}

/// Creates the group; `Ok(false)` when it exists already.
pub async fn create_group(ctx: &Ctx, name: &str) -> Result<bool> {
    let key = records::group_key(name);
    let record = GroupRecord { name: name.to_string(), creation_time: ctx.clock.now_ms(), retention_in_days: None };
    commit(ctx, Txn::new().when(Compare::absent(key.clone())).then(put(key, &record))).await
}

/// Creates the stream in an existing group; `Ok(false)` when it exists already.
pub async fn create_stream(ctx: &Ctx, group: &str, name: &str) -> Result<bool> {
    let (_, group_rev) =
        get::<GroupRecord>(ctx, &records::group_key(group)).await?.ok_or_else(LogsError::group_not_found)?;
    let key = records::stream_key(group, name);
    let record = StreamRecord::new(name, ctx.clock.now_ms());
    let txn = Txn::new()
        .when(Compare::unchanged(records::group_key(group), group_rev))
        .when(Compare::absent(key.clone()))
        .then(put(key.clone(), &record));
    if commit(ctx, txn).await? {
        return Ok(true);
    }
    // Lost to a change of the group (deleted?) or the stream's creation: say which.
    group_exists(ctx, group).await?;
    Ok(get::<StreamRecord>(ctx, &key).await?.is_none() && Box::pin(create_stream(ctx, group, name)).await?)
}

async fn group_exists(ctx: &Ctx, group: &str) -> Result<()> {
    self::group(ctx, group).await.map(|_| ())
}

pub async fn stream(ctx: &Ctx, group: &str, name: &str) -> Result<(StreamRecord, Revision)> {
    match get::<StreamRecord>(ctx, &records::stream_key(group, name)).await? {
        Some(s) => Ok(s),
        None => {
            group_exists(ctx, group).await?;
            Err(LogsError::stream_not_found())
        }
    }
}

/// Appends `batch` to the stream. `agent_sequence`: the agent's number for it; a number already
/// stored is a resend and stores nothing. Returns the stream as it is after.
pub async fn append(
    ctx: &Ctx,
    group: &str,
    stream: &str,
    batch: &Batch,
    agent_sequence: Option<u64>,
) -> Result<StreamRecord> {
    let key = records::stream_key(group, stream);
    let encoded = batch.encode();
    for _ in 0..ATTEMPTS {
        let (mut record, rev) = self::stream(ctx, group, stream).await?;
        if let Some(seq) = agent_sequence {
            if seq < record.agent_next {
                return Ok(record);
            }
            record.agent_next = seq + 1;
        }
        let batch_key = records::batch_key(record.id, record.next_batch);
        if batch.events.is_empty() {
            if agent_sequence.is_none() {
                return Ok(record);
            }
        } else {
            record.account(batch);
        }
        let mut txn = Txn::new().when(Compare::unchanged(key.clone(), rev)).then(put(key.clone(), &record));
        if !batch.events.is_empty() {
            txn = txn.then(Op::put(batch_key, encoded.clone()));
        }
        if commit(ctx, txn).await? {
            return Ok(record);
        }
    }
    Err(lost_race("The log stream"))
}

/// Reads batch `seq` of a stream; `None` when retention removed it meanwhile.
pub async fn batch(ctx: &Ctx, stream_id: u64, seq: u64) -> Result<Option<Batch>> {
    let key = records::batch_key(stream_id, seq);
    match ctx.store.get(&key).await.map_err(store_error)? {
        Some(kv) => Batch::decode(&kv.value).map(Some).map_err(|e| LogsError::internal(format!("{key}: {e}"))),
        None => Ok(None),
    }
}

/// Deletes batches `from..to` of a stream, in transactions etcd accepts (at most 100 ops).
pub async fn delete_batches(ctx: &Ctx, stream_id: u64, from: u64, to: u64) -> Result<()> {
    let mut seq = from;
    while seq < to {
        let end = (seq + 100).min(to);
        let txn = (seq..end).fold(Txn::new(), |t, s| t.then(Op::delete(records::batch_key(stream_id, s))));
        commit(ctx, txn).await?;
        seq = end;
    }
    Ok(())
}
