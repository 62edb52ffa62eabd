//! The agents' `awslogs` output into CloudWatch Logs: each batch an agent sends is stored as one
//! batch of its stream, once per (stream, sequence) however often the agent resends it. The
//! group is created when the container asked for it (`awslogs-create-group`), the stream always,
//! as Docker's awslogs driver does.

use flotilla_api::{Ctx, LogSink, LogSinkError};
use flotilla_protocol::LogEventsBatch;
use futures::future::BoxFuture;

use crate::api::input::{valid_group_name, valid_stream_name};
use crate::error::LogsError;
use crate::records::Batch;
use crate::store;

pub struct StoreSink;

fn failure(e: LogsError) -> LogSinkError {
    LogSinkError { code: e.code.to_string(), transient: e.status >= 500, message: e.message }
}

pub async fn put(ctx: &Ctx, batch: &LogEventsBatch) -> Result<(), LogsError> {
    if !valid_group_name(&batch.log_group) {
        return Err(LogsError::invalid(format!("awslogs-group {:?} is not a valid log group name.", batch.log_group)));
    }
    if !valid_stream_name(&batch.log_stream) {
        return Err(LogsError::invalid(format!("The log stream name {:?} is not valid.", batch.log_stream)));
    }
    if batch.create_group {
        store::create_group(ctx, &batch.log_group).await?;
    }
    match store::stream(ctx, &batch.log_group, &batch.log_stream).await {
        Ok(_) => {}
        Err(e) if e.message == LogsError::stream_not_found().message => {
            store::create_stream(ctx, &batch.log_group, &batch.log_stream).await?;
        }
        Err(e) => return Err(e),
    }
    let events = batch
        .events
        .iter()
        .map(|e| {
            let mut m = e.message.clone();
            if m.len() > crate::api::MAX_MESSAGE_BYTES {
                let mut cut = crate::api::MAX_MESSAGE_BYTES;
                while !m.is_char_boundary(cut) {
                    cut -= 1;
                }
                m.truncate(cut);
            }
            (e.timestamp, m)
        })
        .collect();
    let stored = Batch { ingestion_time: ctx.clock.now_ms(), events };
    store::append(ctx, &batch.log_group, &batch.log_stream, &stored, Some(batch.sequence)).await?;
    Ok(())
}

impl LogSink for StoreSink {
    fn put<'a>(&'a self, ctx: &'a Ctx, batch: &'a LogEventsBatch) -> BoxFuture<'a, Result<(), LogSinkError>> {
        Box::pin(async move { put(ctx, batch).await.map_err(failure) })
    }
}
