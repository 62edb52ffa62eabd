//! The configuration nodes long-poll for, with a revision that moves only when what they serve
//! changes. The store's revision moves with every write anywhere (a task report, a node's
//! last-seen time); a node told "newer than yours" at each of those would refetch for nothing.
//! So the feed rebuilds the configuration when the store has moved, keeps the revision it had
//! while the content stays the same, and takes the listing's revision when it differs. Revisions
//! only grow; after a restart the first build takes the store's current revision, which makes
//! every node refetch once.
//!
//! A node asking for changes after a revision the store has not reached yet got it from another
//! store (the control plane's data was replaced): it gets the current configuration at once.
//!
//! Revisions are the store's [`flotilla_store::Store::revision`] as this server knows it when it
//! rebuilds (see `current`), so a node's `after` and the server's view compare like with like.
//!
//! Waiting nodes wake on the cache's change notices (every applied revision), and the rebuild
//! is shared: a waiter that finds the configuration already built at the store's revision takes
//! it as is.

use std::sync::Arc;
use std::time::Duration;

use flotilla_api::{ApiResult, Ctx};
use flotilla_endpoints::elb::NodeConfig;
use flotilla_store::Revision;
use tokio::sync::Mutex;

use super::config::{build_config, same_content};

/// The longest a config request waits for a change.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

struct Built {
    /// The store revision when it was built.
    at: Revision,
    config: Arc<NodeConfig>,
}

pub struct Feed {
    ctx: Ctx,
    built: Mutex<Option<Built>>,
}

impl Feed {
    pub fn new(ctx: Ctx) -> Self {
        Feed { ctx, built: Mutex::new(None) }
    }

    /// The configuration as of now, rebuilt if the store has moved since the last build.
    pub async fn current(&self) -> ApiResult<Arc<NodeConfig>> {
        let mut built = self.built.lock().await;
        let now = self.ctx.store.revision();
        if let Some(b) = built.as_ref().filter(|b| b.at >= now) {
            return Ok(b.config.clone());
        }
        let mut fresh = build_config(&self.ctx).await?;
        // Versioned by the store revision this server knew of before listing, not the listing's:
        // on etcd a listing carries the cluster's global revision, which writes outside
        // Flotilla's prefix move too, and `store.revision()` (what `wait` compares against) may
        // never reach it. Any change after `now` has a greater revision, so none is missed.
        fresh.revision = now as i64;
        let at = now;
        if let Some(b) = built.as_ref().filter(|b| same_content(&b.config, &fresh)) {
            fresh.revision = b.config.revision;
        }
        let config = Arc::new(fresh);
        *built = Some(Built { at, config: config.clone() });
        Ok(config)
    }

    /// The configuration once its revision is greater than `after`, or `None` when `wait`
    /// (capped at [`MAX_WAIT`]) passes first.
    pub async fn wait(&self, after: i64, wait: Duration) -> ApiResult<Option<Arc<NodeConfig>>> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        // Subscribed before the first build, so a change made during it still wakes the wait.
        let mut changes = self.ctx.cache.changes();
        loop {
            let config = self.current().await?;
            // A revision beyond the store's own comes from another store's history (the control
            // plane's data was replaced): the node's configuration means nothing here.
            if config.revision > after || after > self.ctx.store.revision() as i64 {
                return Ok(Some(config));
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The cache is gone: the server is shutting down.
                        return Ok(None);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
            }
        }
    }
}
