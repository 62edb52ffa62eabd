//! What every handler works with: the store, the cache, ARN minting, paging and the clock.

use std::sync::Arc;
use std::time::Duration;

use flotilla_model::arn::ArnScope;
use flotilla_store::{Compare, Op, Revision, Store, Txn, TxnOutcome};

use crate::error::{ApiError, ApiResult};
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
    /// The background loops (controller, reaper, cache follower) and what each is doing.
    pub loops: Arc<Supervisor>,
    /// Gauges the loops set, shown on `/metrics`.
    pub gauges: Arc<crate::metrics::Gauges>,
    /// This server among those sharing the store: what it campaigns as (`ServerConfig::server_id`,
    /// else a fresh uuid per process).
    pub server_id: Arc<str>,
    /// The leader fence every write of this context carries (a leader loop's context, see
    /// [`Ctx::fenced`]); `None` for request handlers, which any server serves.
    pub fence: Option<Compare>,
}

/// How many times a read-modify-write retries when another writer got there first.
pub const MAX_CAS_ATTEMPTS: usize = 32;

/// How long a write waits for the cache to show it before answering with an error instead: the
/// follower normally takes microseconds, and one that is down is restarted within seconds, so a
/// wait this long means something is wrong, and a client is better told than left hanging.
pub const CACHE_DEADLINE: Duration = Duration::from_secs(10);

/// How many deletes go in one transaction.
const DELETE_BATCH: usize = 256;

impl Ctx {
    /// A context whose every write (through [`Ctx::commit`] or `store.txn` alike) also requires
    /// `fence`, a term's fence: for a leader loop's run. A write the fence refuses fails with
    /// [`crate::leader::NOT_LEADING`] (a ServerException) rather than a conflict to retry, and
    /// ends the term in this process. `None` (nobody else can lead) fences nothing.
    pub fn fenced(&self, fence: Option<Compare>) -> Ctx {
        let mut ctx = self.clone();
        if let Some(fence) = &fence {
            ctx.store =
                Arc::new(crate::leader::FencedStore::new(self.store.clone(), fence.clone(), self.loops.clone()));
        }
        ctx.fence = fence;
        ctx
    }

    /// Deletes each key that is still at the revision it was read at, in batches; returns how
    /// many were deleted. A key that changed since is left for the next sweep to look at again.
    pub async fn delete_unchanged<K: AsRef<str>>(&self, expired: &[(K, Revision)]) -> ApiResult<usize> {
        let deletes = |batch: &[(K, Revision)]| {
            batch.iter().fold(Txn::new(), |txn, (key, revision)| {
                txn.when(Compare::unchanged(key.as_ref(), *revision)).then(Op::delete(key.as_ref()))
            })
        };
        let mut deleted = 0;
        for batch in expired.chunks(DELETE_BATCH) {
            if self.commit(deletes(batch)).await?.is_some() {
                deleted += batch.len();
                continue;
            }
            // Something in the batch changed since it was read: the rest go one by one.
            for one in batch {
                if self.commit(deletes(std::slice::from_ref(one))).await?.is_some() {
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    pub fn now(&self) -> flotilla_model::Timestamp {
        flotilla_model::Timestamp::from_millis(self.clock.now_ms())
    }

    /// Commits `txn`; on success waits (up to [`CACHE_DEADLINE`]) until the cache reflects it.
    /// `None` means a compare failed: re-read and try again. Before saying so it waits until the
    /// cache holds what beat the transaction, or the caller's retry would read the same stale
    /// revision and lose again, burning its attempts in microseconds.
    pub async fn commit(&self, txn: Txn) -> ApiResult<Option<Revision>> {
        let outcome = match self.store.txn(txn).await {
            Err(e) if crate::leader::is_fenced_out(&e) => {
                return Err(ApiError::server(format!("The write was refused: {}.", crate::leader::NOT_LEADING)))
            }
            outcome => outcome?,
        };
        match outcome {
            TxnOutcome::Committed { revision } => {
                self.caught_up(revision).await?;
                Ok(Some(revision))
            }
            TxnOutcome::Conflict { .. } => {
                self.caught_up(self.store.revision()).await?;
                Ok(None)
            }
        }
    }

    /// Waits until the cache reflects `revision`, for at most [`CACHE_DEADLINE`]: a
    /// ServerException rather than a request that hangs.
    pub async fn caught_up(&self, revision: Revision) -> ApiResult<()> {
        if tokio::time::timeout(CACHE_DEADLINE, self.cache.wait_for(revision)).await.is_err() {
            return Err(ApiError::server(format!(
                "The server's cache did not catch up with the store (revision {revision}) within {} s; \
                 any change this request made is stored and will show once it does.",
                CACHE_DEADLINE.as_secs()
            )));
        }
        Ok(())
    }
}

/// A context over a fresh in-memory store, for unit tests.
#[cfg(test)]
pub(crate) async fn test_ctx(clock: Clock) -> Ctx {
    test_ctx_over(Arc::new(flotilla_store::MemoryStore::new()), clock).await
}

/// The configuration of [`test_ctx`].
#[cfg(test)]
pub(crate) fn test_config() -> crate::server::ServerConfig {
    crate::server::ServerConfig {
        data_dir: std::env::temp_dir(),
        region: "us-east-1".into(),
        account_id: "000000000000".into(),
        auth: crate::server::AuthMode::Disabled,
        credentials: crate::RootCredentials { access_key_id: "AKID".into(), secret_access_key: "secret".into() },
        controller: Default::default(),
        stopped_task_retention: Duration::ZERO,
        capacity: Default::default(),
        extensions: Default::default(),
        server_id: None,
        advertise_url: None,
        peer_tls: None,
    }
}

/// A context like [`test_ctx`]'s over `store`.
#[cfg(test)]
pub(crate) async fn test_ctx_over(store: Arc<dyn Store>, clock: Clock) -> Ctx {
    crate::server::build_ctx(store, &test_config(), clock).await.expect("context")
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_store::Op;

    /// With its follower gone, the cache never catches up: a write answers ServerException after
    /// the deadline instead of hanging.
    #[tokio::test]
    async fn a_commit_the_cache_never_shows_is_an_error_not_a_hang() {
        let ctx = test_ctx(Clock::system()).await;
        ctx.cache.stop().await;
        let commit = ctx.commit(Txn::new().then(Op::put("account/x", b"1".to_vec())));
        let err = tokio::time::timeout(CACHE_DEADLINE * 3, commit).await.expect("no hang").unwrap_err();
        assert_eq!(err.code, "ServerException");
        assert!(err.message.contains("did not catch up"), "{}", err.message);
    }
}
