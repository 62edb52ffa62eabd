//! Our compare-and-swap transactions as etcd transactions.
//!
//! Compares map one to one (a revision of 0 means "absent" on both sides). etcd refuses two
//! operations on one key in a transaction, so the ops are coalesced first: the last op on a key
//! wins, in the place of the key's first op. The end state is the same as applying them in
//! order; what differs is that the watch sees one event per key instead of each step, and a key
//! that existed, was deleted and put again in one transaction keeps its create revision (etcd
//! saw a rewrite, not a new life).
//!
//! The failure branch reads every compared key, so a conflict names the key that failed and
//! tells what the caller's cache must reach before it retries (their mod revisions).

use std::collections::HashMap;

use etcd_client::{Compare as EtcdCompare, CompareOp, TxnOp, TxnOpResponse};

use super::{request, to_revision, Inner};
use crate::types::{Compare, Op, Revision, StoreError, Txn, TxnOutcome};

pub(crate) async fn run(inner: &Inner, txn: Txn) -> Result<TxnOutcome, StoreError> {
    let ops = coalesce(&txn.ops);
    let mut compared: Vec<&str> = Vec::new();
    for compare in &txn.compares {
        if !compared.contains(&compare.key()) {
            compared.push(compare.key());
        }
    }
    let compares: Vec<EtcdCompare> = txn
        .compares
        .iter()
        .map(|c| match c {
            Compare::ModRevision { key, revision } => {
                EtcdCompare::mod_revision(inner.full_key(key), CompareOp::Equal, to_etcd(*revision))
            }
            Compare::CreateRevision { key, revision } => {
                EtcdCompare::create_revision(inner.full_key(key), CompareOp::Equal, to_etcd(*revision))
            }
        })
        .collect();
    let success: Vec<TxnOp> = ops
        .iter()
        .map(|op| match op {
            Op::Put { key, value } => TxnOp::put(inner.full_key(key), value.to_vec(), None),
            Op::Delete { key } => TxnOp::delete(inner.full_key(key), None),
        })
        .collect();
    let failure: Vec<TxnOp> = compared.iter().map(|key| TxnOp::get(inner.full_key(key), None)).collect();
    let request_txn = etcd_client::Txn::new().when(compares).and_then(success).or_else(failure);
    let response = request("transaction", false, || {
        let (mut kv, txn) = (inner.kv(), request_txn.clone());
        async move { kv.txn(txn).await }
    })
    .await?;
    let revision = to_revision(response.header().map_or(0, |h| h.revision()));
    let answers = response.op_responses();

    if response.succeeded() {
        let changed = ops.iter().any(|op| matches!(op, Op::Put { .. }))
            || answers.iter().any(|a| matches!(a, TxnOpResponse::Delete(d) if d.deleted() > 0));
        if !changed {
            // Nothing changed, so etcd took no revision; its header revision may be another
            // client's write outside the prefix, which no watch of ours would ever reach.
            return Ok(TxnOutcome::Committed { revision: inner.seen.get() });
        }
        inner.seen.raise(revision);
        return Ok(TxnOutcome::Committed { revision });
    }

    // The compares saw exactly what the failure branch read: same transaction, same revision.
    let mut found: HashMap<&str, (Revision, Revision)> = HashMap::new();
    for (key, answer) in compared.iter().zip(&answers) {
        if let TxnOpResponse::Get(get) = answer {
            if let Some(kv) = get.kvs().first() {
                let (created, modified) = (to_revision(kv.create_revision()), to_revision(kv.mod_revision()));
                inner.seen.raise(modified);
                found.insert(key, (created, modified));
            }
        }
    }
    let failed = txn.compares.iter().find(|c| {
        let (created, modified) = found.get(c.key()).copied().unwrap_or((0, 0));
        match c {
            Compare::ModRevision { revision, .. } => modified != *revision,
            Compare::CreateRevision { revision, .. } => created != *revision,
        }
    });
    let key = failed.or(txn.compares.first()).map(|c| c.key().to_string()).unwrap_or_default();
    Ok(TxnOutcome::Conflict { key })
}

/// A revision no etcd key can have stands for one beyond etcd's range, so the compare fails.
fn to_etcd(revision: Revision) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

/// One op per key: the last op on each key, at the position of the key's first op.
pub(crate) fn coalesce(ops: &[Op]) -> Vec<Op> {
    let mut out: Vec<Op> = Vec::with_capacity(ops.len());
    let mut slots: HashMap<&str, usize> = HashMap::new();
    for op in ops {
        let key = match op {
            Op::Put { key, .. } | Op::Delete { key } => key.as_str(),
        };
        match slots.get(key) {
            Some(&i) => out[i] = op.clone(),
            None => {
                slots.insert(key, out.len());
                out.push(op.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_op_on_a_key_wins_in_its_first_place() {
        let ops = [
            Op::put("a", b"1".to_vec()),
            Op::put("b", b"1".to_vec()),
            Op::delete("a"),
            Op::put("c", b"1".to_vec()),
            Op::put("a", b"2".to_vec()),
            Op::delete("c"),
        ];
        assert_eq!(coalesce(&ops), [Op::put("a", b"2".to_vec()), Op::put("b", b"1".to_vec()), Op::delete("c")]);
        assert!(coalesce(&[]).is_empty());
    }
}
