//! Leader election on etcd: a lease and one key per election.
//!
//! A candidate takes a lease of `lease_ttl`, keeps it alive every third of that, and creates
//! `prefix + leader_key(election)` bound to the lease, only if the key is absent. If another
//! server holds it, the candidate watches the key until it is deleted (its holder resigned, or
//! its lease expired) and tries again. The term's fence is the key's create revision.
//!
//! The term ends, as far as this process knows, as soon as a keep-alive fails, the leader key
//! is deleted, or more than the lease's TTL less a margin has passed since the last keep-alive
//! etcd confirmed: a process that was paused past its lease (a SIGSTOP, a long GC-like stall)
//! learns at once on resuming that its term is over, before another keep-alive could mislead
//! it. Dropping the term revokes the lease, so a clean shutdown hands over at once.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, EventType, PutOptions, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{request, to_revision, Inner};
use crate::types::{Compare, StoreError};
use crate::{leader_key, Leadership};

pub(crate) async fn campaign(inner: &Inner, election: &str, candidate: &str) -> Result<Leadership, StoreError> {
    let key = leader_key(election);
    let full = inner.full_key(&key);
    let ttl_secs = i64::try_from(inner.lease_ttl.as_millis().div_ceil(1000)).unwrap_or(i64::MAX).max(1);
    loop {
        let granting = Instant::now();
        let lease = request("lease grant", false, || {
            let mut leases = inner.client.lease_client();
            async move { leases.grant(ttl_secs, None).await }
        })
        .await?;
        // etcd may raise a TTL below its minimum; the term is measured against what it granted.
        let ttl = Duration::from_secs(u64::try_from(lease.ttl()).unwrap_or(1).max(1));
        let (ended_tx, ended) = watch::channel(false);
        let ended_tx = Arc::new(ended_tx);
        let keeper = tokio::spawn(keep_alive(inner.client.clone(), lease.id(), ttl, granting, ended_tx.clone()));
        let mut holder = Holder { client: inner.client.clone(), lease: lease.id(), tasks: vec![keeper] };

        while !*ended.borrow() {
            let claim = etcd_client::Txn::new()
                .when([EtcdCompare::create_revision(full.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(full.clone(), candidate, Some(PutOptions::new().with_lease(lease.id())))])
                .or_else([TxnOp::get(full.clone(), None)]);
            let response = request("leader claim", false, || {
                let (mut kv, claim) = (inner.kv(), claim.clone());
                async move { kv.txn(claim).await }
            })
            .await?;
            let revision = response.header().map_or(0, |h| h.revision());
            if response.succeeded() {
                let created = to_revision(revision);
                inner.seen.raise(created);
                holder.tasks.push(tokio::spawn(watch_key(inner.client.clone(), full.clone(), revision, ended_tx)));
                return Ok(Leadership::new(Compare::created(key, created), ended, holder));
            }
            let held =
                response.op_responses().into_iter().any(|r| matches!(r, TxnOpResponse::Get(g) if !g.kvs().is_empty()));
            if held {
                wait_for_delete(&inner.client, &full, revision, ended.clone()).await;
            }
        }
        // The lease lapsed while we waited: start over with a fresh one.
    }
}

/// Returns once `key` is deleted after `revision`, the lease's term ends, or the watch breaks
/// (after a short pause, so a broken etcd is not hammered).
async fn wait_for_delete(client: &Client, key: &[u8], revision: i64, mut ended: watch::Receiver<bool>) {
    let options = WatchOptions::new().with_start_revision(revision + 1);
    let mut watcher = client.watch_client();
    let waiting = async {
        let Ok(mut stream) = watcher.watch(key.to_vec(), Some(options)).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        };
        while let Ok(Some(response)) = stream.message().await {
            if response.canceled() || response.events().iter().any(|e| e.event_type() == EventType::Delete) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::select! {
        () = waiting => {}
        _ = ended.wait_for(|e| *e) => {}
    }
}

/// Ends the term when the leader key is deleted or recreated (an operator removed it, or the
/// lease expired while a keep-alive was still believed).
async fn watch_key(client: Client, key: Vec<u8>, created: i64, ended: Arc<watch::Sender<bool>>) {
    let options = WatchOptions::new().with_start_revision(created + 1);
    let mut watcher = client.watch_client();
    let Ok(mut stream) = watcher.watch(key, Some(options)).await else { return };
    while let Ok(Some(response)) = stream.message().await {
        let gone = response
            .events()
            .iter()
            .any(|e| e.event_type() == EventType::Delete || e.kv().is_some_and(|kv| kv.create_revision() != created));
        if gone || response.canceled() && response.compact_revision() == 0 {
            ended.send_replace(true);
            return;
        }
    }
}

/// Keeps the lease alive until a keep-alive fails or its deadline passes, then ends the term.
async fn keep_alive(client: Client, lease: i64, ttl: Duration, granted: Instant, ended: Arc<watch::Sender<bool>>) {
    // The lease runs at least `ttl` from when its last keep-alive was sent; stop believing in it
    // a margin before that, for clock rates and the time etcd takes to notice.
    let believe = ttl - ttl / 5;
    let every = ttl / 3;
    let mut leases = client.lease_client();
    let started = Instant::now();
    let (mut keeper, mut stream) = match tokio::time::timeout_at(granted + believe, leases.keep_alive(lease)).await {
        Ok(Ok(pair)) => pair,
        _ => {
            ended.send_replace(true);
            return;
        }
    };
    // Opening the stream sent the first keep-alive and awaited its answer.
    let mut confirmed = started;
    loop {
        tokio::time::sleep_until(confirmed + every).await;
        let sent = Instant::now();
        // Woken late (the process was paused): the lease may be gone and another leader in.
        if sent >= confirmed + believe {
            break;
        }
        if keeper.keep_alive().await.is_err() {
            break;
        }
        match tokio::time::timeout_at(confirmed + believe, stream.message()).await {
            Ok(Ok(Some(response))) if response.ttl() > 0 => confirmed = sent,
            _ => break,
        }
    }
    ended.send_replace(true);
}

/// What keeps a term alive; dropped, it stops the keep-alive and revokes the lease.
struct Holder {
    client: Client,
    lease: i64,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Holder {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let mut leases = self.client.lease_client();
        let lease = self.lease;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // Best effort: a lease nobody revokes expires within its TTL anyway.
                let _ = tokio::time::timeout(Duration::from_secs(2), leases.revoke(lease)).await;
            });
        }
    }
}
