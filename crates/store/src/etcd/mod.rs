//! `EtcdStore`: the [`Store`] on an etcd v3 cluster, for a highly available control plane where
//! several servers share one store and elect a leader among themselves.
//!
//! Every key lives under a prefix (`flotilla/` by default), so one etcd can serve several
//! control planes or other users; keys cross the trait without it. Revisions are etcd's own
//! global revision: they only go up, but skip numbers (writes outside the prefix, lease
//! expiries). [`Store::revision`] therefore is not etcd's current revision but the latest
//! revision of a change *under the prefix* that this process knows of, which a watch on the
//! prefix is sure to reach (see `seen`).
//!
//! The parts: `options` (URL, TLS, credentials), `txn` (our compare-and-swap onto etcd's),
//! `watch` (etcd's event stream as one batch per revision), `compaction` (trimming etcd's
//! history), `election` (leases and the leader key).

pub(crate) mod compaction;
mod election;
mod options;
mod txn;
mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, GetOptions};
use tokio::task::JoinHandle;

pub use compaction::CompactionPolicy;
pub use options::{EtcdOptions, DEFAULT_LEASE_TTL, DEFAULT_PREFIX};

use crate::types::{KeyValue, Listing, Revision, StoreError, Txn, TxnOutcome, Watch};
use crate::{Leadership, Store, SCAN_BATCH};

/// How long `connect` waits for some endpoint to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one unary request may take before it fails with `Io` (its outcome then unknown).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response the client decodes: a page of a scan or a watch response that carries
/// many revisions. etcd's own request limit (1.5 MiB by default) bounds each transaction.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A [`Store`] on etcd. Clones share one connection and one revision counter; the background
/// tasks (compaction, the delete watcher) stop when the last clone is dropped.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub client: Client,
    pub prefix: String,
    pub seen: Arc<Seen>,
    pub lease_ttl: Duration,
    /// Turned `true` when the store is dropped: watches end with `Closed`.
    pub closed: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.closed.send_replace(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The highest revision of a change under the prefix this process has seen: its own commits,
/// the mod revisions a conflict read, the deletes the background watcher saw, and every batch a
/// watch delivered. Never a revision from outside the prefix, which a watch on the prefix would
/// never reach (a cache waiting for it would wait forever).
#[derive(Debug, Default)]
pub(crate) struct Seen(AtomicU64);

impl Seen {
    pub fn raise(&self, revision: Revision) {
        self.0.fetch_max(revision, Ordering::AcqRel);
    }
    pub fn get(&self) -> Revision {
        self.0.load(Ordering::Acquire)
    }
}

impl EtcdStore {
    /// Connects to etcd, checking within a few seconds that some endpoint answers, and starts
    /// the background compaction (if `opts.compaction` asks for it).
    pub async fn connect(opts: EtcdOptions) -> Result<EtcdStore, StoreError> {
        if opts.endpoints.is_empty() {
            return Err(StoreError::Io("no etcd endpoints given".into()));
        }
        let connect_options = opts.connect_options()?;
        let endpoints = opts.endpoints.join(",");
        let connecting = async {
            let mut client = Client::connect(&opts.endpoints, Some(connect_options)).await?;
            // The client connects lazily: ask something to know that a member answers.
            client.get(opts.prefix.as_bytes(), Some(GetOptions::new().with_count_only())).await?;
            Ok::<_, etcd_client::Error>(client)
        };
        let client = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(StoreError::Io(format!("connecting to etcd at {endpoints}: {e}"))),
            Err(_) => {
                return Err(StoreError::Io(format!(
                    "no etcd endpoint answered within {} s at {endpoints}",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        };
        let seen = Arc::new(Seen::default());
        let (closed, _) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        if let Some(policy) = opts.compaction.clone() {
            tasks.push(tokio::spawn(compaction::run(client.clone(), opts.prefix.clone(), policy)));
        }
        tasks.push(tokio::spawn(watch::follow_deletes(client.clone(), opts.prefix.clone(), seen.clone())));
        Ok(EtcdStore {
            inner: Arc::new(Inner { client, prefix: opts.prefix, seen, lease_ttl: opts.lease_ttl, closed, tasks }),
        })
    }

    /// The etcd client this store uses, for tools and tests that need etcd itself.
    pub fn client(&self) -> Client {
        self.inner.client.clone()
    }

    /// The prefix under which this store keeps its keys.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }
}

impl Inner {
    pub fn full_key(&self, key: &str) -> Vec<u8> {
        format!("{}{key}", self.prefix).into_bytes()
    }

    /// Turns an etcd key-value under the prefix into ours.
    pub fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        key_value(&self.prefix, kv)
    }

    pub fn kv(&self) -> etcd_client::KvClient {
        self.client.kv_client().max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// An etcd key-value under `prefix` as ours, the prefix taken off its key.
pub(crate) fn key_value(prefix: &str, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    Ok(KeyValue {
        key: strip(prefix, kv.key())?,
        value: Arc::from(kv.value()),
        create_revision: to_revision(kv.create_revision()),
        mod_revision: to_revision(kv.mod_revision()),
    })
}

/// An etcd key with `prefix` taken off.
pub(crate) fn strip(prefix: &str, key: &[u8]) -> Result<String, StoreError> {
    let key = key.strip_prefix(prefix.as_bytes()).unwrap_or(key);
    String::from_utf8(key.to_vec())
        .map_err(|_| StoreError::Io(format!("etcd key under {prefix:?} is not UTF-8: {key:?}")))
}

/// etcd's revisions are `i64`; ours `u64`.
pub(crate) fn to_revision(revision: i64) -> Revision {
    u64::try_from(revision).unwrap_or(0)
}

/// The end of etcd's range for every key starting with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // An empty prefix (or all 0xff): every key from here on.
    vec![0]
}

/// How long a request keeps being retried on another member while members cannot be reached.
const RETRY_WINDOW: Duration = Duration::from_secs(3);

/// Whether a request may be sent again after `e`: always for a read (`idempotent`), and for a
/// write only when it never left this process (no connection to the member it went to), so
/// that a member gone down costs a retry on another rather than an error.
fn may_retry(e: &etcd_client::Error, idempotent: bool) -> bool {
    let text = e.to_string();
    let unsent = text.contains("tcp connect error") || text.contains("Connection refused");
    let broken = text.contains("transport error") || text.contains("h2 protocol error") || text.contains("unavailable");
    unsent || (idempotent && broken)
}

/// Runs one unary request with [`REQUEST_TIMEOUT`], naming `what` in the error; `call` makes
/// each attempt. Attempts that failed for want of a reachable member are made again for up to
/// [`RETRY_WINDOW`] (see `may_retry`): the client's balancer then takes another member.
pub(crate) async fn request<T, F, Fut>(what: &str, idempotent: bool, mut call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(25);
    loop {
        match tokio::time::timeout(REQUEST_TIMEOUT, call()).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) if may_retry(&e, idempotent) && started.elapsed() + pause < RETRY_WINDOW => {
                tracing::debug!(what, error = %e, "etcd request failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(400));
            }
            Ok(Err(e)) => return Err(etcd_error(what, e)),
            Err(_) => {
                return Err(StoreError::Io(format!(
                    "etcd did not answer {what} within {} s",
                    REQUEST_TIMEOUT.as_secs()
                )))
            }
        }
    }
}

/// Names the etcd limit behind an error where there is one.
pub(crate) fn etcd_error(what: &str, e: etcd_client::Error) -> StoreError {
    let text = e.to_string();
    let hint = if text.contains("too many operations in txn") {
        " (etcd's --max-txn-ops, 128 by default, caps the operations of one transaction)"
    } else if text.contains("request is too large") || text.contains("message larger than max") {
        " (etcd's --max-request-bytes, 1.5 MiB by default, caps the size of one request)"
    } else if text.contains("database space exceeded") {
        " (etcd's --quota-backend-bytes: compact and defragment etcd, or raise the quota)"
    } else {
        ""
    };
    StoreError::Io(format!("etcd {what}: {text}{hint}"))
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let inner = &self.inner;
        let response = request("get", true, || {
            let (mut kv, key) = (inner.kv(), inner.full_key(key));
            async move { kv.get(key, None).await }
        })
        .await?;
        response.kvs().first().map(|kv| inner.key_value(kv)).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let mut kvs = Vec::new();
        let revision = self.scan(prefix, &mut |page| kvs.extend(page)).await?;
        Ok(Listing { revision, kvs })
    }

    async fn scan(&self, prefix: &str, visit: &mut (dyn FnMut(Vec<KeyValue>) + Send)) -> Result<Revision, StoreError> {
        let inner = &self.inner;
        let start = inner.full_key(prefix);
        let end = prefix_end(&start);
        let mut from = start;
        let mut at: Option<i64> = None;
        loop {
            // etcd returns a range in key order.
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(SCAN_BATCH as i64);
            if let Some(revision) = at {
                options = options.with_revision(revision);
            }
            let response = request("range", true, || {
                let (mut kv, from, options) = (inner.kv(), from.clone(), options.clone());
                async move { kv.get(from, Some(options)).await }
            })
            .await?;
            let revision = response.header().map_or(0, |h| h.revision());
            let at = *at.get_or_insert(revision);
            let page = response.kvs().iter().map(|kv| inner.key_value(kv)).collect::<Result<Vec<_>, _>>()?;
            if let Some(last) = response.kvs().last() {
                from = last.key().to_vec();
                from.push(0);
            }
            let more = response.more() && !page.is_empty();
            if !page.is_empty() {
                visit(page);
            }
            if !more {
                return Ok(to_revision(at));
            }
        }
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        txn::run(&self.inner, txn).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
        watch::start(&self.inner, prefix, after).await
    }

    fn revision(&self) -> Revision {
        self.inner.seen.get()
    }

    async fn campaign(&self, election: &str, candidate: &str) -> Result<Leadership, StoreError> {
        election::campaign(&self.inner, election, candidate).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_cover_exactly_the_prefix() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b""), [0]);
    }

    #[test]
    fn seen_only_goes_up() {
        let seen = Seen::default();
        seen.raise(5);
        seen.raise(3);
        assert_eq!(seen.get(), 5);
    }
}
