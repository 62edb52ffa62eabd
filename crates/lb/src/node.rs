//! The node's shared state: the routing table behind an `ArcSwap`, the long-lived target slots,
//! the metrics and the pooled client to targets; and the report of what it judged.

use std::sync::Arc;

use arc_swap::ArcSwap;
use flotilla_endpoints::elb::{HealthObservation, NodeConfig, NodeReport};
use tokio::sync::{watch, Notify};

use crate::metrics::Metrics;
use crate::table::{compile, Table};
use crate::targets::SlotBook;

pub struct Node {
    node_id: String,
    pub(crate) table: ArcSwap<Table>,
    slots: SlotBook,
    pub(crate) metrics: Metrics,
    /// Woken when a target's health changes.
    pub(crate) health_changed: Arc<Notify>,
    applied: watch::Sender<i64>,
}

impl Node {
    pub fn new(node_id: &str) -> Arc<Node> {
        Arc::new(Node {
            node_id: node_id.to_string(),
            table: ArcSwap::from_pointee(Table::empty()),
            slots: SlotBook::default(),
            metrics: Metrics::new(),
            health_changed: Arc::new(Notify::new()),
            applied: watch::channel(0).0,
        })
    }

    /// Compiles `config` and swaps it in; requests in flight keep the table they started with.
    pub(crate) fn apply(&self, config: &NodeConfig) -> Arc<Table> {
        let table = Arc::new(compile(config, &self.slots, &self.metrics));
        self.table.store(table.clone());
        self.applied.send_replace(config.revision);
        table
    }

    /// The revision of the configuration being served (0 before the first).
    pub fn revision(&self) -> i64 {
        *self.applied.borrow()
    }

    /// Waits until a configuration of at least `revision` is being served.
    pub async fn wait_for_revision(&self, revision: i64) {
        let mut rx = self.applied.subscribe();
        let _ = rx.wait_for(|r| *r >= revision).await;
    }

    /// What the node judges: every checked target's health, and the open connections of
    /// draining targets.
    pub fn report(&self) -> NodeReport {
        let table = self.table.load();
        let health = table
            .checks
            .iter()
            .map(|(spec, slot)| {
                let (reason, description) = slot.detail.lock().unwrap_or_else(|e| e.into_inner()).clone();
                HealthObservation {
                    target_group_id: spec.key.group_id.clone(),
                    target_id: spec.key.target_id.clone(),
                    port: spec.key.port,
                    state: slot.state(),
                    reason,
                    description,
                }
            })
            .collect();
        let draining_connections = table
            .draining
            .iter()
            .map(|s| (s.key.group_id.clone(), s.key.target_id.clone(), s.key.port, s.open_connections()))
            .collect();
        NodeReport { node_id: self.node_id.clone(), health, draining_connections }
    }

    /// Closes upstream connections idle for too long.
    pub(crate) fn prune_pools(&self) {
        self.slots.each(|slot| slot.pool.prune());
    }

    /// The Prometheus text exposition of the node's metrics.
    pub fn metrics_text(&self) -> String {
        self.metrics.render()
    }
}
