//! One cluster's page: its counts, its container instances (with Drain and Activate) and its
//! services, all read from the cache in one pass over the cluster's key ranges. Counts come from
//! what the cache keeps up to date (`cluster_stats`, `instance_usage`, the services' own counts),
//! so the page never scans tasks: it stays fast with thousands of services and tasks.

use std::sync::Arc;

use flotilla_api::handlers::container_instances;
use flotilla_api::state::cache::{range_prefix, Indexes};
use flotilla_api::state::keys;
use flotilla_api::ApiError;
use flotilla_model::{CapacityProviderStrategyItem, Cluster, ContainerInstance, Resource, Service};
use serde_json::json;

use super::{View, ViewRequest};
use crate::html::{action_button, badge, cards, crumbs, esc, href, link, opt, section, short, table, yes_no};

/// The cluster named `name` (any status), or ClusterNotFoundException.
pub(super) fn cluster_of(ix: &Indexes, name: &str) -> Result<Arc<Cluster>, ApiError> {
    ix.clusters.get(&keys::cluster(name)).map(|e| e.value.clone()).ok_or_else(ApiError::cluster_not_found)
}

/// The breadcrumbs down to a cluster, then `rest`.
pub(super) fn trail(cluster: &str, rest: &[(&str, &str)]) -> String {
    let clusters = href(&["clusters"]);
    let this = href(&["clusters", cluster]);
    let mut all: Vec<(&str, &str)> = vec![("Clusters", &clusters), (cluster, &this)];
    all.extend_from_slice(rest);
    crumbs(&all)
}

/// The zone an instance registered in (its `ecs.availability-zone` attribute).
pub(super) fn zone_of(ci: &ContainerInstance) -> Option<&str> {
    ci.attributes.as_deref()?.iter().find(|a| a.name.as_deref() == Some("ecs.availability-zone"))?.value.as_deref()
}

/// The integer value of resource `name` in `resources`.
pub(super) fn int_resource(resources: Option<&[Resource]>, name: &str) -> Option<i64> {
    resources?.iter().find(|r| r.name.as_deref() == Some(name))?.integer_value.map(i64::from)
}

/// `remaining / registered` of an integer resource.
pub(super) fn remaining_of(ci: &ContainerInstance, name: &str) -> String {
    let show = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    format!(
        "{} / {}",
        show(int_resource(ci.remaining_resources.as_deref(), name)),
        show(int_resource(ci.registered_resources.as_deref(), name))
    )
}

/// The Drain or Activate button of an instance, whichever changes its status.
pub(super) fn state_button(cluster: &str, ci: &ContainerInstance) -> String {
    let arn = ci.container_instance_arn.as_deref().unwrap_or("");
    let id = short(arn);
    match ci.status.as_deref() {
        Some("ACTIVE") => action_button(
            "UpdateContainerInstancesState",
            &json!({"cluster": cluster, "containerInstances": [arn], "status": "DRAINING"}),
            "Drain",
            Some(&format!("Drain container instance {id}? Its service tasks move elsewhere.")),
            "Instance draining",
        ),
        Some("DRAINING") => action_button(
            "UpdateContainerInstancesState",
            &json!({"cluster": cluster, "containerInstances": [arn], "status": "ACTIVE"}),
            "Activate",
            None,
            "Instance active",
        ),
        _ => String::new(),
    }
}

/// How a service launches its tasks: its launch type, or its capacity provider strategy.
pub(super) fn launch_of(launch_type: Option<&str>, strategy: Option<&[CapacityProviderStrategyItem]>) -> String {
    match strategy.filter(|s| !s.is_empty()) {
        Some(items) => items
            .iter()
            .map(|i| {
                format!(
                    "{} (weight {}, base {})",
                    i.capacity_provider.as_deref().unwrap_or(""),
                    i.weight.unwrap_or(0),
                    i.base.unwrap_or(0)
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        None => launch_type.unwrap_or("EC2").to_string(),
    }
}

/// The rollout state of a service's PRIMARY deployment.
pub(super) fn primary_rollout(s: &Service) -> Option<&str> {
    s.deployments.as_deref()?.iter().find(|d| d.status.as_deref() == Some("PRIMARY"))?.rollout_state.as_deref()
}

pub async fn show(req: &ViewRequest<'_>, cluster: &str) -> Result<View, ApiError> {
    render(req, cluster).map(|body| View { body })
}

fn render(req: &ViewRequest<'_>, cluster: &str) -> Result<String, ApiError> {
    let ix = req.ctx.cache.read();
    let c = cluster_of(&ix, cluster)?;
    let stats = ix.cluster_stats.get(cluster).copied().unwrap_or_default();
    let prefix = format!("{}{cluster}/", keys::INSTANCE);
    let instances: Vec<ContainerInstance> = range_prefix(&ix.instances, &prefix)
        .map(|(k, e)| container_instances::present(&ix, k, &e.value, false))
        .collect();
    let prefix = format!("{}{cluster}/", keys::SERVICE);
    let services: Vec<String> =
        range_prefix(&ix.services, &prefix).map(|(_, e)| service_row(cluster, &e.value)).collect();
    drop(ix);

    let instance_rows = instances.iter().map(|ci| {
        let arn = ci.container_instance_arn.as_deref().unwrap_or("");
        vec![
            link(&href(&["clusters", cluster, "instances", short(arn)]), short(arn)),
            opt(ci.ec2_instance_id.as_deref()),
            opt(zone_of(ci)),
            badge(ci.status.as_deref().unwrap_or("")),
            yes_no(ci.agent_connected.unwrap_or(false)).into(),
            ci.running_tasks_count.unwrap_or(0).to_string(),
            ci.pending_tasks_count.unwrap_or(0).to_string(),
            esc(&remaining_of(ci, "CPU")),
            esc(&remaining_of(ci, "MEMORY")),
            opt(ci.capacity_provider_name.as_deref()),
            state_button(cluster, ci),
        ]
    });
    let instances_table = table(
        "instances",
        &[
            "Container instance",
            "EC2 instance",
            "Zone",
            "Status",
            "Agent connected",
            "Running",
            "Pending",
            "CPU remaining / registered",
            "Memory remaining / registered",
            "Capacity provider",
            "",
        ],
        instance_rows,
    );
    let services_table = format!(
        "<table class=\"services\"><thead><tr><th>Service</th><th>Status</th><th>Desired</th><th>Running</th>\
         <th>Pending</th><th>Launch</th><th>Rollout</th></tr></thead><tbody>{}</tbody></table>",
        if services.is_empty() {
            "<tr><td class=\"empty\" colspan=\"7\">None.</td></tr>".to_string()
        } else {
            services.concat()
        }
    );
    let summary = cards(&[
        ("Status", badge(c.status.as_deref().unwrap_or(""))),
        ("Container instances", stats.registered_instances.to_string()),
        ("Services", (stats.active_services + stats.draining_services).to_string()),
        ("Running tasks", stats.running_tasks.to_string()),
        ("Pending tasks", stats.pending_tasks.to_string()),
    ]);
    Ok(format!(
        "{}<h1>Cluster {}</h1>{summary}<p class=\"links\">{}</p>{}{}",
        trail(cluster, &[]),
        esc(cluster),
        link(&href(&["clusters", cluster, "tasks"]), "Tasks"),
        section("Container instances", &instances_table),
        section("Services", &services_table),
    ))
}

/// One service's row, written straight from the cached service (no clone of its events).
fn service_row(cluster: &str, s: &Service) -> String {
    let name = s.service_name.as_deref().unwrap_or("");
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        link(&href(&["clusters", cluster, "services", name]), name),
        badge(s.status.as_deref().unwrap_or("")),
        s.desired_count.unwrap_or(0),
        s.running_count.unwrap_or(0),
        s.pending_count.unwrap_or(0),
        esc(&launch_of(s.launch_type.as_deref(), s.capacity_provider_strategy.as_deref())),
        primary_rollout(s).map(badge).unwrap_or_default(),
    )
}
