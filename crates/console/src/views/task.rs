//! One task's page, as DescribeTasks shows it: lifecycle, containers (exit codes, reasons, health,
//! network bindings, addresses), attachments, overrides and tags, a Stop task button, and its logs,
//! followed live by the script.

use std::sync::Arc;

use flotilla_api::state::cache::Indexes;
use flotilla_api::state::keys;
use flotilla_api::state::tasks::CachedTask;
use flotilla_api::ApiError;
use flotilla_model::{Container, Task};
use serde_json::json;

use super::cluster::{cluster_of, trail};
use super::tasks::definition_link;
use super::{View, ViewRequest};
use crate::html::{action_button, badge, cards, esc, facts, href, json_pre, link, opt, section, short, table, time};

/// Tasks per page of the list.
pub async fn show(req: &ViewRequest<'_>, cluster: &str, task: &str) -> Result<View, ApiError> {
    let id = short(task);
    let cached = {
        let ix = req.ctx.cache.read();
        cluster_of(&ix, cluster)?;
        lookup(&ix, cluster, id)?
    };
    Ok(View { body: task_page(cluster, &cached.task()) })
}

fn lookup(ix: &Indexes, cluster: &str, id: &str) -> Result<Arc<CachedTask>, ApiError> {
    ix.tasks
        .get(keys::task(cluster, id).as_str())
        .map(|e| e.value.clone())
        .ok_or_else(|| ApiError::invalid_parameter("The referenced task was not found."))
}

/// `bindIP:hostPort->containerPort/protocol` for each binding.
fn bindings(c: &Container) -> String {
    c.network_bindings
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|b| {
            let host = b.host_port.map(|p| p.to_string()).or(b.host_port_range.clone()).unwrap_or_default();
            let container =
                b.container_port.map(|p| p.to_string()).or(b.container_port_range.clone()).unwrap_or_default();
            format!(
                "{}:{}->{}/{}",
                b.bind_ip.as_deref().unwrap_or("0.0.0.0"),
                host,
                container,
                b.protocol.as_deref().unwrap_or("tcp")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn container_addresses(c: &Container) -> Vec<String> {
    c.network_interfaces
        .as_deref()
        .unwrap_or_default()
        .iter()
        .flat_map(|n| [n.private_ipv4_address.clone(), n.ipv6_address.clone()])
        .flatten()
        .collect()
}

/// The task's addresses: its interfaces' (attachments' details) and its containers'.
fn task_addresses(t: &Task) -> Vec<String> {
    let mut out: Vec<String> = t
        .attachments
        .as_deref()
        .unwrap_or_default()
        .iter()
        .flat_map(|a| a.details.as_deref().unwrap_or_default())
        .filter(|d| matches!(d.name.as_deref(), Some("privateIPv4Address" | "ipv6Address")))
        .filter_map(|d| d.value.clone())
        .collect();
    for c in t.containers.as_deref().unwrap_or_default() {
        for a in container_addresses(c) {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

fn task_page(cluster: &str, t: &Task) -> String {
    let arn = t.task_arn.as_deref().unwrap_or("");
    let id = short(arn);
    let this = href(&["clusters", cluster, "tasks", id]);
    let tasks = href(&["clusters", cluster, "tasks"]);
    let last = t.last_status.as_deref().unwrap_or("");
    let desired = t.desired_status.as_deref().unwrap_or("");
    let summary = cards(&[("Last status", badge(last)), ("Desired status", badge(desired))]);
    let stop = if desired != "STOPPED" {
        action_button(
            "StopTask",
            &json!({"cluster": cluster, "task": arn, "reason": "Stopped from the Flotilla console"}),
            "Stop task",
            Some(&format!("Stop task {id}?")),
            "Task stopping",
        )
    } else {
        String::new()
    };
    let instance = t.container_instance_arn.as_deref().map(short).unwrap_or("");
    let group = t.group.as_deref().unwrap_or("");
    let about = facts(&[
        ("ARN", esc(arn)),
        ("Task definition", t.task_definition_arn.as_deref().map(definition_link).unwrap_or_default()),
        (
            "Group",
            match group.strip_prefix("service:") {
                Some(s) => link(&href(&["clusters", cluster, "services", s]), group),
                None => esc(group),
            },
        ),
        ("Started by", opt(t.started_by.as_deref())),
        (
            "Container instance",
            if instance.is_empty() {
                String::new()
            } else {
                link(&href(&["clusters", cluster, "instances", instance]), instance)
            },
        ),
        ("Zone", opt(t.availability_zone.as_deref())),
        ("Launch type", opt(t.launch_type.as_deref())),
        ("Capacity provider", opt(t.capacity_provider_name.as_deref())),
        ("CPU", opt(t.cpu.as_deref())),
        ("Memory", opt(t.memory.as_deref())),
        ("Health", opt(t.health_status.as_deref())),
        ("Connectivity", opt(t.connectivity.as_deref())),
        ("IP addresses", esc(&task_addresses(t).join(", "))),
        ("Stop code", opt(t.stop_code.as_deref())),
        ("Stopped reason", opt(t.stopped_reason.as_deref())),
    ]);
    let lifecycle = facts(&[
        ("Created", esc(&time(t.created_at))),
        ("Connectivity at", esc(&time(t.connectivity_at))),
        ("Pull started", esc(&time(t.pull_started_at))),
        ("Pull stopped", esc(&time(t.pull_stopped_at))),
        ("Started", esc(&time(t.started_at))),
        ("Stopping", esc(&time(t.stopping_at))),
        ("Execution stopped", esc(&time(t.execution_stopped_at))),
        ("Stopped", esc(&time(t.stopped_at))),
    ]);
    let containers = table(
        "containers",
        &["Container", "Image", "Last status", "Exit code", "Reason", "Health", "Network bindings", "Addresses"],
        t.containers.as_deref().unwrap_or_default().iter().map(|c| {
            vec![
                opt(c.name.as_deref()),
                opt(c.image.as_deref()),
                badge(c.last_status.as_deref().unwrap_or("")),
                c.exit_code.map(|e| e.to_string()).unwrap_or_default(),
                opt(c.reason.as_deref()),
                opt(c.health_status.as_deref()),
                esc(&bindings(c)),
                esc(&container_addresses(c).join(", ")),
            ]
        }),
    );
    let attachments = table(
        "attachments",
        &["Attachment", "Type", "Status", "Details"],
        t.attachments.as_deref().unwrap_or_default().iter().map(|a| {
            let details = a
                .details
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|d| format!("{}={}", d.name.as_deref().unwrap_or(""), d.value.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", ");
            vec![opt(a.id.as_deref()), opt(a.r#type.as_deref()), opt(a.status.as_deref()), esc(&details)]
        }),
    );
    // ECS shows empty override lists on every task: only overrides actually given are shown.
    let mut given = serde_json::to_value(&t.overrides).unwrap_or_default();
    if let Some(o) = given.as_object_mut() {
        o.retain(|_, v| !(v.is_null() || v.as_array().is_some_and(|a| a.is_empty())));
    }
    let overrides = match given.as_object() {
        Some(o) if !o.is_empty() => section("Overrides", &json_pre(&given)),
        _ => String::new(),
    };
    let tags = table(
        "tags",
        &["Key", "Value"],
        t.tags.as_deref().unwrap_or_default().iter().map(|t| vec![opt(t.key.as_deref()), opt(t.value.as_deref())]),
    );
    let logs = format!(
        "<pre class=\"logs\" id=\"logs-{}\" data-keep data-logs-cluster=\"{}\" data-logs-task=\"{}\"></pre>",
        esc(id),
        esc(cluster),
        esc(arn)
    );
    format!(
        "{}<h1>Task {}</h1>{summary}<p class=\"actions\">{stop}</p>{about}{}{}{}{overrides}{}{}",
        trail(cluster, &[("Tasks", &tasks), (id, &this)]),
        esc(id),
        section("Lifecycle", &lifecycle),
        section("Containers", &containers),
        section("Attachments", &attachments),
        section("Tags", &tags),
        section("Logs", &logs),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::NetworkBinding;

    #[test]
    fn bindings_read_host_to_container() {
        let c = Container {
            network_bindings: Some(vec![
                NetworkBinding {
                    bind_ip: Some("0.0.0.0".into()),
                    host_port: Some(32768),
                    container_port: Some(80),
                    protocol: Some("tcp".into()),
                    ..Default::default()
                },
                NetworkBinding {
                    host_port_range: Some("9000-9001".into()),
                    container_port_range: Some("53-54".into()),
                    protocol: Some("udp".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        assert_eq!(bindings(&c), "0.0.0.0:32768->80/tcp, 0.0.0.0:9000-9001->53-54/udp");
    }
}
