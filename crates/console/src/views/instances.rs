//! A container instance's page: its resources as DescribeContainerInstances shows them
//! (registered and remaining CPU, memory and ports), attributes, agent, status with Drain or
//! Activate, and the tasks on it (those not stopped first).

use flotilla_api::handlers::container_instances;
use flotilla_api::state::keys;
use flotilla_api::ApiError;
use flotilla_model::{ContainerInstance, Resource, Task};

use super::cluster::{cluster_of, state_button, trail, zone_of};
use super::{View, ViewRequest};
use crate::html::{badge, cards, esc, facts, href, link, opt, section, short, table, time, yes_no};

/// At most this many tasks listed (stopped ones are kept for a while and may be many).
const MAX_TASKS: usize = 200;

pub async fn show(req: &ViewRequest<'_>, cluster: &str, instance: &str) -> Result<View, ApiError> {
    render(req, cluster, instance).map(|body| View { body })
}

fn render(req: &ViewRequest<'_>, cluster: &str, instance: &str) -> Result<String, ApiError> {
    let id = short(instance);
    let ix = req.ctx.cache.read();
    cluster_of(&ix, cluster)?;
    let key = keys::instance(cluster, id);
    let entry = ix.instances.get(&key).ok_or_else(|| {
        ApiError::invalid_parameter(format!("containerInstance '{id}' does not exist in cluster {cluster}."))
    })?;
    let ci = container_instances::present(&ix, &key, &entry.value, true);
    let arn = ci.container_instance_arn.clone().unwrap_or_default();
    // Collect the entries under the lock, decode them after it.
    let entries: Vec<_> = ix
        .task_index
        .by_instance
        .get(arn.as_str())
        .into_iter()
        .flatten()
        .filter_map(|k| ix.tasks.get(k).map(|e| e.value.clone()))
        .collect();
    drop(ix);
    let total = entries.len();
    // Tasks not stopped first, newest first; stopped ones (kept a while, possibly many) only
    // decoded up to the page's cap.
    let (stopped, live): (Vec<_>, Vec<_>) = entries.iter().partition(|e| e.is_stopped());
    let newest_first =
        |a: &Task, b: &Task| b.created_at.map(|t| t.as_millis()).cmp(&a.created_at.map(|t| t.as_millis()));
    let mut tasks: Vec<Task> = live.iter().map(|e| e.task()).collect();
    tasks.sort_by(newest_first);
    let mut old: Vec<Task> = stopped.iter().take(MAX_TASKS.saturating_sub(tasks.len())).map(|e| e.task()).collect();
    old.sort_by(newest_first);
    tasks.extend(old);
    tasks.truncate(MAX_TASKS);
    Ok(page(cluster, &ci, &tasks, total))
}

fn page(cluster: &str, ci: &ContainerInstance, tasks: &[Task], total: usize) -> String {
    let id = short(ci.container_instance_arn.as_deref().unwrap_or(""));
    let this = href(&["clusters", cluster, "instances", id]);
    let summary = cards(&[
        ("Status", badge(ci.status.as_deref().unwrap_or(""))),
        ("Agent connected", yes_no(ci.agent_connected.unwrap_or(false)).into()),
        ("Running tasks", ci.running_tasks_count.unwrap_or(0).to_string()),
        ("Pending tasks", ci.pending_tasks_count.unwrap_or(0).to_string()),
    ]);
    let version = ci.version_info.clone().unwrap_or_default();
    let about = facts(&[
        ("ARN", opt(ci.container_instance_arn.as_deref())),
        ("EC2 instance", opt(ci.ec2_instance_id.as_deref())),
        ("Zone", opt(zone_of(ci))),
        ("Status reason", opt(ci.status_reason.as_deref())),
        ("Capacity provider", opt(ci.capacity_provider_name.as_deref())),
        ("Agent version", opt(version.agent_version.as_deref())),
        ("Agent hash", opt(version.agent_hash.as_deref())),
        ("Docker version", opt(version.docker_version.as_deref())),
        ("Agent update", opt(ci.agent_update_status.as_deref())),
        ("Registered at", esc(&time(ci.registered_at))),
        ("Version", ci.version.map(|v| v.to_string()).unwrap_or_default()),
    ]);
    let registered = ci.registered_resources.as_deref().unwrap_or_default();
    let remaining = ci.remaining_resources.as_deref().unwrap_or_default();
    let resources = table(
        "resources",
        &["Resource", "Registered", "Remaining"],
        registered.iter().map(|r| {
            let name = r.name.as_deref().unwrap_or("");
            let left = remaining.iter().find(|x| x.name.as_deref() == Some(name));
            vec![esc(name), esc(&resource_value(r)), left.map(|l| esc(&resource_value(l))).unwrap_or_default()]
        }),
    );
    let attributes = table(
        "attributes",
        &["Attribute", "Value"],
        ci.attributes
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|a| vec![opt(a.name.as_deref()), opt(a.value.as_deref())]),
    );
    let tags = table(
        "tags",
        &["Key", "Value"],
        ci.tags.as_deref().unwrap_or_default().iter().map(|t| vec![opt(t.key.as_deref()), opt(t.value.as_deref())]),
    );
    let task_rows = tasks.iter().map(|t| {
        let arn = t.task_arn.as_deref().unwrap_or("");
        vec![
            link(&href(&["clusters", cluster, "tasks", short(arn)]), short(arn)),
            badge(t.last_status.as_deref().unwrap_or("")),
            badge(t.desired_status.as_deref().unwrap_or("")),
            esc(t.task_definition_arn.as_deref().map(super::tasks::definition_name).unwrap_or("")),
            opt(t.group.as_deref()),
            esc(&time(t.started_at)),
        ]
    });
    let shown = if total > tasks.len() { format!(" ({} of {total} shown)", tasks.len()) } else { String::new() };
    format!(
        "{}<h1>Container instance {}</h1>{summary}<p class=\"actions\">{}</p>{about}{}{}{}{}",
        trail(cluster, &[(id, &this)]),
        esc(id),
        state_button(cluster, ci),
        section("Resources", &resources),
        section(
            &format!("Tasks{shown}"),
            &format!(
                "<p class=\"links\">{}</p>{}",
                link(&crate::html::href_query(&["clusters", cluster, "tasks"], &[("instance", id)]), "All its tasks"),
                table(
                    "tasks",
                    &["Task", "Last status", "Desired status", "Task definition", "Group", "Started at"],
                    task_rows
                )
            )
        ),
        section("Attributes", &attributes),
        section("Tags", &tags),
    )
}

/// A resource's value: an integer, or a port set (sorted).
fn resource_value(r: &Resource) -> String {
    match r.r#type.as_deref() {
        Some("STRINGSET") => {
            let mut v: Vec<&String> = r.string_set_value.as_deref().unwrap_or_default().iter().collect();
            v.sort_by_key(|p| p.parse::<u32>().unwrap_or(u32::MAX));
            v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        }
        Some("LONG") => r.long_value.unwrap_or(0).to_string(),
        Some("DOUBLE") => r.double_value.unwrap_or(0.0).to_string(),
        _ => r.integer_value.unwrap_or(0).to_string(),
    }
}
