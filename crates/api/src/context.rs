//! What every handler works with: the store, the cache, ARN minting, paging and the clock.

use std::sync::Arc;
use std::time::Duration;

use flotilla_model::arn::ArnScope;
use flotilla_store::{Revision, Store, Txn, TxnOutcome};

use crate::error::{ApiError, ApiResult};
use crate::gateway::Sessions;
use crate::pagination::Paginator;
use crate::state::cache::Cache;
use crate::supervisor::Supervisor;

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
    /// A clock that reads `now` (tests move time forward with it).
    pub fn from_fn(now: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now))
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
    /// The background loops (controller, reaper, cache follower) and what each is doing.
    pub loops: Arc<Supervisor>,
}

/// How many times a read-modify-write retries when another writer got there first.
pub const MAX_CAS_ATTEMPTS: usize = 32;

/// How long a write waits for the cache to show it before answering with an error instead: the
/// follower normally takes microseconds, and one that is down is restarted within seconds, so a
/// wait this long means something is wrong, and a client is better told than left hanging.
pub const CACHE_DEADLINE: Duration = Duration::from_secs(10);

impl Ctx {
    pub fn now(&self) -> flotilla_model::Timestamp {
        flotilla_model::Timestamp::from_millis(self.clock.now_ms())
    }

    /// Commits `txn`; on success waits (up to [`CACHE_DEADLINE`]) until the cache reflects it.
    /// `None` means a compare failed: re-read and try again.
    pub async fn commit(&self, txn: Txn) -> ApiResult<Option<Revision>> {
        match self.store.txn(txn).await? {
            TxnOutcome::Committed { revision } => {
                if tokio::time::timeout(CACHE_DEADLINE, self.cache.wait_for(revision)).await.is_err() {
                    return Err(ApiError::server(format!(
                        "The change was stored (revision {revision}) but the server's cache did not catch up within {} s; \
                         it will show the change once it does.",
                        CACHE_DEADLINE.as_secs()
                    )));
                }
                Ok(Some(revision))
            }
            TxnOutcome::Conflict { .. } => Ok(None),
        }
    }
}
