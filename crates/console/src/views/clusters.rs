//! The clusters page: every cluster with its counts, as DescribeClusters gives them.

use flotilla_api::ApiError;

use super::{View, ViewRequest};
use crate::html::{badge, crumbs, esc, href, link, table};

/// Every cluster (ACTIVE first, then by name) with its instances, services and tasks.
pub fn index(req: &ViewRequest<'_>) -> Result<View, ApiError> {
    let ix = req.ctx.cache.read();
    let mut clusters: Vec<_> = ix.clusters.values().map(|e| e.value.clone()).collect();
    clusters.sort_by(|a, b| {
        (a.status.as_deref() != Some("ACTIVE"), &a.cluster_name)
            .cmp(&(b.status.as_deref() != Some("ACTIVE"), &b.cluster_name))
    });
    let rows = clusters.iter().map(|c| {
        let name = c.cluster_name.clone().unwrap_or_default();
        let stats = ix.cluster_stats.get(&name).cloned().unwrap_or_default();
        vec![
            link(&href(&["clusters", &name]), &name),
            badge(c.status.as_deref().unwrap_or("")),
            stats.registered_instances.to_string(),
            stats.active_services.to_string(),
            stats.running_tasks.to_string(),
            stats.pending_tasks.to_string(),
        ]
    });
    let body = format!(
        "{}<h1>Clusters</h1><p class=\"summary\">{} clusters</p>{}",
        crumbs(&[("Clusters", &href(&[]))]),
        esc(&clusters.len().to_string()),
        table(
            "clusters",
            &["Cluster", "Status", "Container instances", "Services", "Running tasks", "Pending tasks"],
            rows
        )
    );
    Ok(View { body })
}
