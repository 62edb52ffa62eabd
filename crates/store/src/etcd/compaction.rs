//! Trimming etcd's history so it stays within etcd's space quota.
//!
//! etcd keeps every revision until someone compacts. Watchers need only recent history (the
//! gap between a listing and its watch, a watcher briefly behind), so every `interval` this task
//! notes etcd's current revision and compacts to the revision noted `retention` ago, but never
//! into the last `keep_revisions` revisions. Every server runs it; a compaction another server
//! already did is not an error. Compaction is etcd-wide, not per prefix: other users of a shared
//! etcd see their history trimmed the same way (as etcd's own `--auto-compaction` would).

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::{Client, CompactionOptions, GetOptions};
use tokio::time::Instant;

use super::REQUEST_TIMEOUT;
use crate::DEFAULT_HISTORY;

/// When and how far the store compacts etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// How often to compact (default one minute).
    pub interval: Duration,
    /// How old a revision must be before it is compacted away (default five minutes).
    pub retention: Duration,
    /// How many of the latest revisions are always kept (default [`DEFAULT_HISTORY`]).
    pub keep_revisions: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            interval: Duration::from_secs(60),
            retention: Duration::from_secs(300),
            keep_revisions: DEFAULT_HISTORY,
        }
    }
}

/// Runs until aborted (with the store).
pub(crate) async fn run(client: Client, prefix: String, policy: CompactionPolicy) {
    let mut noted: VecDeque<(Instant, i64)> = VecDeque::new();
    let mut compacted = 0;
    let mut ticks = tokio::time::interval(policy.interval.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = Instant::now();
        let Some(current) = current_revision(&client, &prefix).await else { continue };
        noted.push_back((now, current));
        // The newest revision noted at least `retention` ago; older notes are no longer needed.
        while noted.len() >= 2 && noted.get(1).is_some_and(|(at, _)| now.duration_since(*at) >= policy.retention) {
            noted.pop_front();
        }
        let target = noted.front().filter(|(at, _)| now.duration_since(*at) >= policy.retention).map(|(_, r)| *r);
        let Some(target) = target else { continue };
        let keep = i64::try_from(policy.keep_revisions).unwrap_or(i64::MAX);
        let target = target.min(current.saturating_sub(keep));
        if target <= compacted {
            continue;
        }
        match compact(&client, target).await {
            Ok(()) => compacted = target,
            Err(e) if e.contains("compacted") => compacted = target,
            Err(e) => tracing::warn!(error = %e, revision = target, "etcd compaction failed; trying again later"),
        }
    }
}

/// etcd's current revision, read through a key of ours (a user of a shared etcd may read
/// nothing else).
async fn current_revision(client: &Client, prefix: &str) -> Option<i64> {
    let mut kv = client.kv_client();
    let probe = kv.get(prefix, Some(GetOptions::new().with_count_only()));
    match tokio::time::timeout(REQUEST_TIMEOUT, probe).await {
        Ok(Ok(response)) => response.header().map(|h| h.revision()),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "reading etcd's revision for compaction");
            None
        }
        Err(_) => None,
    }
}

async fn compact(client: &Client, revision: i64) -> Result<(), String> {
    let mut kv = client.kv_client();
    match tokio::time::timeout(REQUEST_TIMEOUT, kv.compact(revision, Some(CompactionOptions::new()))).await {
        Ok(Ok(_)) => {
            tracing::debug!(revision, "compacted etcd");
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("etcd did not answer in time".into()),
    }
}
