//! Copying a whole store into another, for moving a control plane between backends (the
//! embedded redb file onto etcd when it becomes highly available, or back).
//!
//! The source is read at one revision with [`Store::scan`]; the destination is written in
//! transactions small enough for etcd's default limits (`--max-txn-ops` 128, `--max-request-bytes`
//! 1.5 MiB), each creating its keys only if they are absent, so a destination that someone else
//! writes to during the copy fails it instead of being silently merged. Values are copied,
//! revisions are not: the destination numbers them its own way. Run it with the servers stopped:
//! what the source commits after the scan's revision is not copied.
//!
//! Leader keys (under [`LEADER_PREFIX`]) are skipped: they are bound to a lease of the source
//! etcd, and copied without it they would name a leader forever.

use tokio::sync::mpsc;

use crate::types::{Compare, KeyValue, Op, Revision, StoreError, Txn, TxnOutcome};
use crate::{Store, LEADER_PREFIX};

/// The most keys one destination transaction writes (each is a compare and a put).
pub const COPY_BATCH_KEYS: usize = 100;
/// The most bytes of keys and values one destination transaction carries, under etcd's default
/// request limit of 1.5 MiB with room for the transaction's framing.
pub const COPY_BATCH_BYTES: usize = 1024 * 1024;

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// The source's revision the copy reflects.
    pub source_revision: Revision,
    /// Keys written to the destination.
    pub keys: u64,
    /// Bytes of keys and values written.
    pub bytes: u64,
    /// Destination transactions committed.
    pub transactions: u64,
    /// Leader keys left behind (see the module's doc).
    pub skipped: u64,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CopyError {
    #[error(
        "the destination store is not empty ({keys} keys or more, e.g. {example:?}): copy only into an empty store"
    )]
    DestinationNotEmpty { keys: u64, example: String },
    #[error("reading the source store: {0}")]
    Read(StoreError),
    #[error("writing the destination store: {0}")]
    Write(StoreError),
    #[error("key {key:?} appeared in the destination during the copy: something else writes to it")]
    DestinationChanged { key: String },
}

/// Copies every key of `from` into `to`, which must be empty.
pub async fn copy(from: &dyn Store, to: &dyn Store) -> Result<CopyReport, CopyError> {
    let mut found = 0u64;
    let mut example = None;
    to.scan("", &mut |page| {
        found += page.len() as u64;
        if example.is_none() {
            example = page.first().map(|kv| kv.key.clone());
        }
    })
    .await
    .map_err(CopyError::Read)?;
    if let Some(example) = example {
        return Err(CopyError::DestinationNotEmpty { keys: found, example });
    }

    // The scan's visitor cannot wait, so pages go to the writer through a channel; the writer
    // runs alongside the scan, so only what it has not written yet is held in memory.
    let (pages, mut incoming) = mpsc::unbounded_channel::<Vec<KeyValue>>();
    let scanning = async move {
        let pages = pages;
        from.scan("", &mut |page| {
            let _ = pages.send(page);
        })
        .await
    };
    let writing = async {
        let mut report = CopyReport::default();
        let mut batch = Batch::default();
        while let Some(page) = incoming.recv().await {
            for kv in page {
                if kv.key.starts_with(LEADER_PREFIX) {
                    report.skipped += 1;
                    continue;
                }
                let size = kv.key.len() + kv.value.len();
                if !batch.keys.is_empty()
                    && (batch.keys.len() >= COPY_BATCH_KEYS || batch.bytes + size > COPY_BATCH_BYTES)
                {
                    write(to, std::mem::take(&mut batch), &mut report).await?;
                }
                batch.bytes += size;
                batch.keys.push(kv);
            }
        }
        if !batch.keys.is_empty() {
            write(to, batch, &mut report).await?;
        }
        Ok::<_, CopyError>(report)
    };
    let (scanned, written) = tokio::join!(scanning, writing);
    let source_revision = scanned.map_err(CopyError::Read)?;
    let mut report = written?;
    report.source_revision = source_revision;
    Ok(report)
}

#[derive(Default)]
struct Batch {
    keys: Vec<KeyValue>,
    bytes: usize,
}

async fn write(to: &dyn Store, batch: Batch, report: &mut CopyReport) -> Result<(), CopyError> {
    let mut txn = Txn::new();
    for kv in &batch.keys {
        txn = txn.when(Compare::absent(kv.key.clone())).then(Op::Put { key: kv.key.clone(), value: kv.value.clone() });
    }
    match to.txn(txn).await.map_err(CopyError::Write)? {
        TxnOutcome::Committed { .. } => {
            report.keys += batch.keys.len() as u64;
            report.bytes += batch.bytes as u64;
            report.transactions += 1;
            Ok(())
        }
        TxnOutcome::Conflict { key } => Err(CopyError::DestinationChanged { key }),
    }
}
