//! What every handler works with: the store, the cache, ARN minting, paging and the clock.

use std::sync::Arc;

use flotilla_model::arn::ArnScope;
use flotilla_store::{Revision, Store, Txn, TxnOutcome};

use crate::error::ApiResult;
use crate::gateway::Sessions;
use crate::pagination::Paginator;
use crate::state::cache::Cache;

/// The source of "now", injectable so that tests control time.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Clock(Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0)
        }))
    }
    pub fn fixed(ms: i64) -> Self {
        Clock(Arc::new(move || ms))
    }
    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

/// Shared state of one control plane.
#[derive(Clone)]
pub struct Ctx {
    pub store: Arc<dyn Store>,
    pub cache: Arc<Cache>,
    pub arns: ArnScope,
    pub pager: Paginator,
    pub clock: Clock,
    /// The live agent sessions, to reach an agent (reading a task's logs).
    pub sessions: Arc<Sessions>,
}

/// How many times a read-modify-write retries when another writer got there first.
pub const MAX_CAS_ATTEMPTS: usize = 32;

impl Ctx {
    pub fn now(&self) -> flotilla_model::Timestamp {
        flotilla_model::Timestamp::from_millis(self.clock.now_ms())
    }

    /// Commits `txn`; on success waits until the cache reflects it. `None` means a compare
    /// failed: re-read and try again.
    pub async fn commit(&self, txn: Txn) -> ApiResult<Option<Revision>> {
        match self.store.txn(txn).await? {
            TxnOutcome::Committed { revision } => {
                self.cache.wait_for(revision).await;
                Ok(Some(revision))
            }
            TxnOutcome::Conflict { .. } => Ok(None),
        }
    }
}
