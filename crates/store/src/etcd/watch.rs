//! etcd's watch as the store's: one [`WatchBatch`] per revision, in order.
//!
//! etcd sends a revision's events together in one response (we never ask it to fragment), so
//! each response is cut into batches by mod revision. The channel to the consumer is bounded: a
//! consumer that reads slowly stops this task, which stops reading the gRPC stream, whose flow
//! control makes etcd hold the events (etcd then treats the watcher as slow and catches it up
//! from its history later). Memory stays bounded here; the watcher falls behind instead, and
//! fails with `Compacted` only once it falls behind what compaction keeps.
//!
//! A watch whose start is already compacted fails at the call: a cheap range read at that
//! revision tells. A watch etcd cancels later (compaction overtook it) or whose stream breaks
//! yields its error and ends; the consumer lists again.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchFilterType, WatchOptions, WatchResponse, WatchStream};
use tokio::sync::{mpsc, watch};

use super::{key_value, prefix_end, request, strip, to_revision, Inner, Seen, MAX_MESSAGE_BYTES, REQUEST_TIMEOUT};
use crate::types::{Event, Revision, StoreError, Watch, WatchBatch};

/// How many batches a watcher's channel holds before the stream waits for the consumer.
const WATCH_CHANNEL: usize = 256;

pub(crate) async fn start(inner: &Inner, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
    let (tx, rx) = mpsc::channel(WATCH_CHANNEL);
    let closed = inner.closed.subscribe();
    // etcd's revisions are i64: nothing is ever after a revision beyond that.
    let Some(start) = after.checked_add(1).and_then(|s| i64::try_from(s).ok()) else {
        tokio::spawn(wait_for_nothing(tx, closed));
        return Ok(rx);
    };
    let key = inner.full_key(prefix);
    let end = prefix_end(&key);
    if let Some(oldest) = compacted_before(inner, &key, &end, start).await? {
        return Err(StoreError::Compacted { requested: after, oldest });
    }
    let options = WatchOptions::new().with_range(end).with_start_revision(start);
    let mut stream = open(inner, key, options).await?;
    // The first answer says whether etcd created the watch.
    let first = tokio::time::timeout(REQUEST_TIMEOUT, stream.message())
        .await
        .map_err(|_| StoreError::Io("etcd did not confirm a watch in time".into()))?
        .map_err(|e| StoreError::Io(format!("etcd watch: {e}")))?
        .ok_or_else(|| StoreError::Io("etcd ended a watch before confirming it".into()))?;
    let mut pending = None;
    if first.canceled() {
        return Err(canceled(&first, after));
    } else if !first.events().is_empty() {
        pending = Some(first);
    }
    let forward = Forward { prefix: inner.prefix.clone(), seen: inner.seen.clone(), tx, closed, last: after };
    tokio::spawn(forward.run(stream, pending));
    Ok(rx)
}

async fn open(inner: &Inner, key: Vec<u8>, options: WatchOptions) -> Result<WatchStream, StoreError> {
    request("watch", true, || {
        let mut client = inner.client.watch_client().max_decoding_message_size(MAX_MESSAGE_BYTES);
        let (key, options) = (key.clone(), options.clone());
        async move { client.watch(key, Some(options)).await }
    })
    .await
}

/// The oldest kept revision if history from `start` on is gone, `None` if it is all there.
async fn compacted_before(inner: &Inner, key: &[u8], end: &[u8], start: i64) -> Result<Option<Revision>, StoreError> {
    let probe = GetOptions::new().with_range(end.to_vec()).with_count_only().with_revision(start);
    let probed = tokio::time::timeout(REQUEST_TIMEOUT, inner.kv().get(key.to_vec(), Some(probe)))
        .await
        .map_err(|_| StoreError::Io("etcd did not answer a range read in time".into()))?;
    match probed {
        Ok(_) => Ok(None),
        Err(e) if e.to_string().contains("future revision") => Ok(None),
        Err(e) if e.to_string().contains("compacted") => {
            // The range error does not say how far; a watch from there is cancelled with it.
            let options = WatchOptions::new().with_range(end.to_vec()).with_start_revision(start);
            let mut stream = open(inner, key.to_vec(), options).await?;
            let oldest = tokio::time::timeout(Duration::from_secs(3), async {
                while let Ok(Some(response)) = stream.message().await {
                    if response.compact_revision() > 0 {
                        return to_revision(response.compact_revision());
                    }
                }
                0
            })
            .await
            .unwrap_or(0);
            Ok(Some(oldest.max(to_revision(start) + 1)))
        }
        Err(e) => Err(super::etcd_error("range", e)),
    }
}

/// Why etcd cancelled a watch, as our error.
fn canceled(response: &WatchResponse, last: Revision) -> StoreError {
    if response.compact_revision() > 0 {
        StoreError::Compacted { requested: last, oldest: to_revision(response.compact_revision()) }
    } else {
        StoreError::Io(format!("etcd cancelled the watch: {}", response.cancel_reason()))
    }
}

/// Holds a watch that can never see anything open until its consumer or the store goes.
async fn wait_for_nothing(tx: mpsc::Sender<Result<WatchBatch, StoreError>>, mut closed: watch::Receiver<bool>) {
    tokio::select! {
        () = tx.closed() => {}
        _ = closed.wait_for(|c| *c) => { let _ = tx.try_send(Err(StoreError::Closed)); }
    }
}

struct Forward {
    prefix: String,
    seen: Arc<Seen>,
    tx: mpsc::Sender<Result<WatchBatch, StoreError>>,
    closed: watch::Receiver<bool>,
    /// The last revision handed to the consumer.
    last: Revision,
}

impl Forward {
    async fn run(mut self, mut stream: WatchStream, mut pending: Option<WatchResponse>) {
        loop {
            let response = match pending.take() {
                Some(response) => response,
                None => {
                    let received = tokio::select! {
                        received = stream.message() => received,
                        () = self.tx.closed() => return,
                        _ = self.closed.wait_for(|c| *c) => {
                            let _ = self.tx.try_send(Err(StoreError::Closed));
                            return;
                        }
                    };
                    match received {
                        Ok(Some(response)) => response,
                        Ok(None) => return self.fail(StoreError::Io("etcd ended the watch".into())).await,
                        Err(e) => return self.fail(StoreError::Io(format!("etcd watch broke: {e}"))).await,
                    }
                }
            };
            if response.canceled() {
                let error = canceled(&response, self.last);
                return self.fail(error).await;
            }
            let batches = match batches(&self.prefix, &response) {
                Ok(batches) => batches,
                Err(e) => return self.fail(e).await,
            };
            for batch in batches {
                let revision = batch.revision;
                let sent = tokio::select! {
                    sent = self.tx.send(Ok(batch)) => sent.is_ok(),
                    _ = self.closed.wait_for(|c| *c) => false,
                };
                if !sent {
                    return;
                }
                self.last = revision;
                self.seen.raise(revision);
            }
        }
    }

    async fn fail(mut self, error: StoreError) {
        tokio::select! {
            _ = self.tx.send(Err(error)) => {}
            _ = self.closed.wait_for(|c| *c) => {}
        }
    }
}

/// A response's events as one batch per revision.
fn batches(prefix: &str, response: &WatchResponse) -> Result<Vec<WatchBatch>, StoreError> {
    let mut out: Vec<WatchBatch> = Vec::new();
    for event in response.events() {
        let Some(kv) = event.kv() else { continue };
        let revision = to_revision(kv.mod_revision());
        let event = match event.event_type() {
            EventType::Put => Event::Put(key_value(prefix, kv)?),
            EventType::Delete => Event::Delete { key: strip(prefix, kv.key())? },
        };
        match out.last_mut() {
            Some(batch) if batch.revision == revision => batch.events.push(event),
            _ => out.push(WatchBatch { revision, events: vec![event] }),
        }
    }
    Ok(out)
}

/// Raises `seen` with every delete under `prefix`, for as long as the store lives (the task is
/// aborted with it). A conflict's failure branch reads the mod revisions of the keys that beat
/// a transaction, but a deleted key has none left to read: this is how the revision of a
/// delete by another server reaches [`crate::Store::revision`]. Only deletes are asked for, so
/// the values other servers write do not travel twice.
pub(crate) async fn follow_deletes(client: etcd_client::Client, prefix: String, seen: Arc<Seen>) {
    let key = prefix.clone().into_bytes();
    let end = prefix_end(&key);
    loop {
        let options = WatchOptions::new().with_range(end.clone()).with_filters([WatchFilterType::NoPut]);
        let mut watcher = client.watch_client();
        if let Ok(Ok(mut stream)) =
            tokio::time::timeout(REQUEST_TIMEOUT, watcher.watch(key.clone(), Some(options))).await
        {
            while let Ok(Some(response)) = stream.message().await {
                if response.canceled() {
                    break;
                }
                for event in response.events() {
                    if let Some(kv) = event.kv() {
                        seen.raise(to_revision(kv.mod_revision()));
                    }
                }
            }
        }
        // etcd is unreachable or cancelled the watch: try again shortly, from now on (a delete
        // missed meanwhile only makes one retry of a conflicting writer wait less).
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
