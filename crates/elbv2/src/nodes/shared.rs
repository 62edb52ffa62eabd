//! Node reports shared through the store (`elbv2/node-report/<node id>`), so that every server of
//! a highly available control plane judges a target from every node's report, whichever server
//! each node reports to. A server writes a node's report when what it says changed, or when the
//! stored copy is getting old (so the node stays live to the others); a steady fleet writes one
//! small record per node every [`REFRESH_MS`]. Records of nodes silent for [`FORGET_MS`] are
//! deleted by whoever reads them.

use std::collections::HashMap;

use flotilla_api::{ApiError, ApiResult, Ctx};
use flotilla_endpoints::codec::{decode, encode};
use flotilla_endpoints::elb::HealthObservation;
use flotilla_store::{Compare, Op, Txn};
use serde::{Deserialize, Serialize};

use super::records::LIVE_MS;

/// Where node reports live.
pub const REPORT_PREFIX: &str = "elbv2/node-report/";
/// How old a stored report may get before an unchanged one is written again.
pub const REFRESH_MS: i64 = LIVE_MS / 3;
/// Reports older than this are deleted.
pub const FORGET_MS: i64 = LIVE_MS * 10;

pub fn report_key(node_id: &str) -> String {
    format!("{REPORT_PREFIX}{node_id}")
}

/// A node's latest report, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredReport {
    pub node_id: String,
    pub at_ms: i64,
    pub health: Vec<HealthObservation>,
    /// `(target group id, target id, port, open connections)`.
    pub draining: Vec<(String, String, u16, u32)>,
}

impl StoredReport {
    fn says_the_same_as(&self, other: &StoredReport) -> bool {
        self.health == other.health && self.draining == other.draining
    }
}

fn server(e: impl std::fmt::Display) -> ApiError {
    ApiError::server(e.to_string())
}

/// Stores `report` unless the stored copy says the same and is recent; whether it wrote.
pub async fn publish(ctx: &Ctx, report: &StoredReport) -> ApiResult<bool> {
    let key = report_key(&report.node_id);
    let current = ctx.store.get(&key).await?;
    if let Some(kv) = &current {
        if let Ok(old) = decode::<StoredReport>(&kv.value) {
            if old.says_the_same_as(report) && report.at_ms - old.at_ms < REFRESH_MS {
                return Ok(false);
            }
        }
    }
    // A report that lost a race with another server's copy of the same node's report: theirs
    // is at least as new, so it stands.
    let txn = Txn::new()
        .when(Compare::unchanged(key.clone(), current.map_or(0, |kv| kv.mod_revision)))
        .then(Op::put(key, encode(report)));
    Ok(matches!(ctx.store.txn(txn).await?, flotilla_store::TxnOutcome::Committed { .. }))
}

/// The reports of nodes heard from within [`LIVE_MS`], by node id; deletes the forgotten ones.
pub async fn live(ctx: &Ctx, now: i64) -> ApiResult<HashMap<String, StoredReport>> {
    let listing = ctx.store.list(REPORT_PREFIX).await?;
    let mut live = HashMap::new();
    let mut forgotten = Vec::new();
    for kv in listing.kvs {
        let report: StoredReport = decode(&kv.value).map_err(server)?;
        if now - report.at_ms >= FORGET_MS {
            forgotten.push((kv.key, kv.mod_revision));
        } else if now - report.at_ms < LIVE_MS {
            live.insert(report.node_id.clone(), report);
        }
    }
    if !forgotten.is_empty() {
        ctx.delete_unchanged(&forgotten).await?;
    }
    Ok(live)
}
