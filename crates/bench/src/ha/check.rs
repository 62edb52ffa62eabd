//! The checker: reads the final state of the cluster through the API and holds it against what the
//! load was told. Every acknowledged task exists (no acknowledged write lost), no clientToken has
//! more tasks than one call places (none placed twice) and no container instance holds more than
//! it offers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use super::client::MultiClient;
use super::load::{Ledger, PER_CALL};
use crate::runtask;

/// What the checker found.
#[derive(Debug, Default)]
pub struct Verdict {
    pub tasks_seen: usize,
    pub acknowledged: usize,
    /// Acknowledged tasks the cluster does not know.
    pub lost: Vec<String>,
    /// Tokens with more tasks than one call places, or other tasks than the acknowledged answer listed.
    pub doubled: Vec<String>,
    /// Instances holding more CPU than they offer.
    pub over_capacity: Vec<String>,
}

impl Verdict {
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty() && self.doubled.is_empty() && self.over_capacity.is_empty()
    }
}

struct Seen {
    started_by: String,
    instance: String,
    stopped: bool,
}

async fn all_tasks(client: &MultiClient) -> anyhow::Result<BTreeMap<String, Seen>> {
    let mut arns = Vec::new();
    for status in ["RUNNING", "STOPPED"] {
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"desiredStatus": status, "maxResults": 100});
            if let Some(t) = &token {
                body["nextToken"] = json!(t);
            }
            let page = client.ok("ListTasks", &body).await?;
            arns.extend(
                page["taskArns"].as_array().into_iter().flatten().filter_map(|a| a.as_str()).map(str::to_string),
            );
            match page["nextToken"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
    }
    let mut seen = BTreeMap::new();
    for chunk in arns.chunks(100) {
        let out = client.ok("DescribeTasks", &json!({"tasks": chunk})).await?;
        for t in out["tasks"].as_array().into_iter().flatten() {
            let arn = t["taskArn"].as_str().unwrap_or_default().to_string();
            seen.insert(
                arn,
                Seen {
                    started_by: t["startedBy"].as_str().unwrap_or_default().to_string(),
                    instance: t["containerInstanceArn"].as_str().unwrap_or_default().to_string(),
                    stopped: t["lastStatus"].as_str() == Some("STOPPED"),
                },
            );
        }
    }
    Ok(seen)
}

/// Checks the cluster against `ledger`; instances offer `instance_cpu` units each.
pub async fn check(client: &MultiClient, ledger: &Ledger, instance_cpu: u32) -> anyhow::Result<Verdict> {
    // Let in-flight StopTask calls and reports settle into every server's cache.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = all_tasks(client).await?;
    let mut verdict = Verdict { tasks_seen: seen.len(), ..Default::default() };
    let mut by_token: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (arn, s) in &seen {
        if !s.started_by.is_empty() {
            by_token.entry(s.started_by.as_str()).or_default().insert(arn.as_str());
        }
    }
    for (token, arns) in &ledger.acked {
        verdict.acknowledged += arns.len();
        verdict.lost.extend(arns.iter().filter(|a| !seen.contains_key(*a)).cloned());
        let found = by_token.get(token.as_str()).cloned().unwrap_or_default();
        let acked: BTreeSet<&str> = arns.iter().map(String::as_str).collect();
        if found.len() > PER_CALL || found != acked {
            verdict.doubled.push(format!("{token}: acknowledged {acked:?}, found {found:?}"));
        }
    }
    for token in &ledger.unknown {
        if by_token.get(token.as_str()).is_some_and(|f| f.len() > PER_CALL) {
            verdict.doubled.push(format!("{token}: more than {PER_CALL} tasks"));
        }
    }
    let mut cpu: BTreeMap<&str, u32> = BTreeMap::new();
    for s in seen.values().filter(|s| !s.stopped && !s.instance.is_empty()) {
        *cpu.entry(s.instance.as_str()).or_default() += runtask::TASK_CPU;
    }
    verdict.over_capacity = cpu
        .iter()
        .filter(|(_, used)| **used > instance_cpu)
        .map(|(i, used)| format!("{i}: {used} CPU units"))
        .collect();
    Ok(verdict)
}
