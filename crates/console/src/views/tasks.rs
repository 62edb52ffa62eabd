//! The tasks pages: a cluster's tasks, filtered as ListTasks filters them (desired status,
//! service, family, instance) and paged 100 at a time from the cache's task indexes (only the
//! page's tasks are decoded); and one task as DescribeTasks shows it: lifecycle, containers,
//! network, overrides, a Stop task button, and its logs followed live by the script.

use std::fmt::Write;
use std::sync::Arc;

use flotilla_api::state::cache::{Entry, Indexes};
use flotilla_api::state::keys;
use flotilla_api::state::tasks::{scope_of, CachedTask, TaskKeys};
use flotilla_api::ApiError;
use flotilla_model::{Container, Task};
use serde_json::json;

use super::cluster::{cluster_of, trail};
use super::{View, ViewRequest};
use crate::html::{
    action_button, badge, cards, esc, facts, href, href_query, json_pre, link, opt, section, short, table, time,
};

/// Tasks per page of the list.
pub const PAGE_SIZE: usize = 100;

/// `family:revision` from a task definition ARN (or the string itself).
pub fn definition_name(arn: &str) -> &str {
    arn.rsplit_once(":task-definition/").map(|(_, r)| r).unwrap_or(arn)
}

/// A link to a task definition's page, its text `family:revision`.
pub fn definition_link(arn: &str) -> String {
    let name = definition_name(arn);
    match name.rsplit_once(':') {
        Some((family, revision)) => link(&href(&["task-definitions", family, revision]), name),
        None => esc(name),
    }
}

/// The list's filters, as the query gives them.
struct Filters<'q> {
    status: Option<&'q str>,
    service: Option<&'q str>,
    family: Option<&'q str>,
    instance: Option<&'q str>,
    page: usize,
}

impl<'q> Filters<'q> {
    fn parse(req: &'q ViewRequest<'_>) -> Result<Self, ApiError> {
        let status = match req.param("status") {
            None => None,
            Some(s @ ("RUNNING" | "STOPPED")) => Some(s),
            Some(other) => {
                return Err(ApiError::invalid_parameter(format!(
                    "status '{other}' is not valid: it is RUNNING or STOPPED."
                )))
            }
        };
        let page = match req.param("page") {
            None => 1,
            Some(p) => p.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                ApiError::invalid_parameter(format!("page '{p}' is not valid: it is a number from 1."))
            })?,
        };
        Ok(Filters {
            status,
            service: req.param("service"),
            family: req.param("family"),
            instance: req.param("instance").map(short),
            page,
        })
    }

    /// The query of these filters with `change` applied (a value of `None` removes it).
    fn url(&self, cluster: &str, change: &[(&str, Option<&str>)]) -> String {
        let page = self.page.to_string();
        let mut q: Vec<(&str, Option<&str>)> = vec![
            ("status", self.status),
            ("service", self.service),
            ("family", self.family),
            ("instance", self.instance),
            ("page", Some(page.as_str()).filter(|p| *p != "1")),
        ];
        for (k, v) in change {
            if let Some(slot) = q.iter_mut().find(|(n, _)| n == k) {
                slot.1 = *v;
            }
        }
        let pairs: Vec<(&str, &str)> = q.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
        href_query(&["clusters", cluster, "tasks"], &pairs)
    }
}

pub async fn index(req: &ViewRequest<'_>, cluster: &str) -> Result<View, ApiError> {
    let f = Filters::parse(req)?;
    let (total, page) = select(req, cluster, &f)?;
    // Decoding happens here, with the cache unlocked.
    let tasks: Vec<Task> = page.iter().map(|e| e.task()).collect();
    Ok(View { body: index_page(cluster, &f, total, &tasks) })
}

/// How many tasks match `f`, and the cached tasks of the requested page.
fn select(req: &ViewRequest<'_>, cluster: &str, f: &Filters<'_>) -> Result<(usize, Vec<Arc<CachedTask>>), ApiError> {
    let ix = req.ctx.cache.read();
    cluster_of(&ix, cluster)?;
    let instance_arn: Option<Arc<str>> = match f.instance {
        None => None,
        Some(id) => Some(
            ix.instances
                .get(&keys::instance(cluster, id))
                .and_then(|e| e.value.instance.container_instance_arn.as_deref().map(Arc::from))
                .ok_or_else(|| {
                    ApiError::invalid_parameter(format!(
                        "instance '{id}' is not a container instance of cluster {cluster}."
                    ))
                })?,
        ),
    };
    let group = f.service.map(|s| format!("service:{s}"));
    let desired: Vec<&str> = match f.status {
        Some(s) => vec![s],
        None => vec!["RUNNING", "STOPPED"],
    };
    // The narrowest index that applies gives the candidates; every filter is then checked on
    // the candidates' summaries.
    let sets: Vec<&TaskKeys> = if let Some(arn) = &instance_arn {
        ix.task_index.by_instance.get(arn).into_iter().collect()
    } else if let Some(g) = &group {
        scoped(&ix.task_index.by_group, cluster, &desired, g)
    } else if let Some(family) = f.family {
        scoped(&ix.task_index.by_family, cluster, &desired, family)
    } else {
        ix.task_index
            .by_cluster_desired
            .iter()
            .filter(|((c, d), _)| &**c == cluster && (f.status.is_none() || f.status == Some(&**d)))
            .map(|(_, keys)| keys)
            .collect()
    };
    let mut matching: Vec<(&Arc<str>, &Entry<CachedTask>)> = sets
        .into_iter()
        .flatten()
        .filter_map(|k| ix.tasks.get(k).map(|e| (k, e)))
        .filter(|(_, e)| {
            let s = &e.value.summary;
            &*s.cluster == cluster
                && f.status.is_none_or(|d| &*s.desired == d)
                && group.as_deref().is_none_or(|g| s.group.as_deref() == Some(g))
                && f.family.is_none_or(|fam| s.family.as_deref() == Some(fam))
                && instance_arn.as_ref().is_none_or(|a| s.instance.as_ref() == Some(a))
        })
        .collect();
    // Tasks meant to run first, then the stopped; the key (the task's ID) keeps the order stable.
    matching.sort_unstable_by(|(ka, a), (kb, b)| {
        (&*a.value.summary.desired != "RUNNING", ka).cmp(&(&*b.value.summary.desired != "RUNNING", kb))
    });
    let total = matching.len();
    let page = matching
        .iter()
        .skip((f.page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|(_, e)| e.value.clone())
        .collect::<Vec<_>>();
    Ok((total, page))
}

/// The key sets of an index keyed by (`cluster/desired`, value).
fn scoped<'a>(
    index: &'a std::collections::HashMap<(Arc<str>, Arc<str>), TaskKeys>,
    cluster: &str,
    desired: &[&str],
    value: &str,
) -> Vec<&'a TaskKeys> {
    let value: Arc<str> = value.into();
    desired.iter().filter_map(|d| index.get(&(Arc::from(scope_of(cluster, d)), value.clone()))).collect()
}

fn index_page(cluster: &str, f: &Filters<'_>, total: usize, tasks: &[Task]) -> String {
    let this = href(&["clusters", cluster, "tasks"]);
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let mut filters = String::from("<p class=\"filters\">Desired status: ");
    for (label, value) in [("All", None), ("Running", Some("RUNNING")), ("Stopped", Some("STOPPED"))] {
        let url = f.url(cluster, &[("status", value), ("page", None)]);
        if f.status == value {
            let _ = write!(filters, "<strong>{}</strong> ", esc(label));
        } else {
            let _ = write!(filters, "{} ", link(&url, label));
        }
    }
    for (name, value) in [("service", f.service), ("family", f.family), ("instance", f.instance)] {
        if let Some(v) = value {
            let _ = write!(
                filters,
                "· {} <strong>{}</strong> ({}) ",
                esc(name),
                esc(v),
                link(&f.url(cluster, &[(name, None), ("page", None)]), "clear")
            );
        }
    }
    filters.push_str("</p>");
    let rows = tasks.iter().map(|t| {
        let arn = t.task_arn.as_deref().unwrap_or("");
        let group = t.group.as_deref().unwrap_or("");
        let group_cell = match group.strip_prefix("service:") {
            Some(s) => link(&f.url(cluster, &[("service", Some(s)), ("page", None)]), group),
            None => esc(group),
        };
        let instance = t.container_instance_arn.as_deref().map(short).unwrap_or("");
        vec![
            link(&href(&["clusters", cluster, "tasks", short(arn)]), short(arn)),
            badge(t.last_status.as_deref().unwrap_or("")),
            badge(t.desired_status.as_deref().unwrap_or("")),
            t.task_definition_arn.as_deref().map(definition_link).unwrap_or_default(),
            group_cell,
            if instance.is_empty() {
                String::new()
            } else {
                link(&href(&["clusters", cluster, "instances", instance]), instance)
            },
            opt(t.availability_zone.as_deref()),
            esc(&time(t.started_at)),
            esc(&time(t.stopped_at)),
            opt(t.stop_code.as_deref()),
        ]
    });
    let mut pager = format!("<p class=\"pager\">{} tasks · page {} of {}", total, f.page, pages);
    if f.page > 1 {
        let prev = (f.page - 1).min(pages).to_string();
        let _ = write!(pager, " · {}", link(&f.url(cluster, &[("page", Some(&prev))]), "Previous"));
    }
    if f.page < pages {
        let next = (f.page + 1).to_string();
        let _ = write!(pager, " · {}", link(&f.url(cluster, &[("page", Some(&next))]), "Next"));
    }
    pager.push_str("</p>");
    format!(
        "{}<h1>Tasks of {}</h1>{filters}{pager}{}",
        trail(cluster, &[("Tasks", &this)]),
        esc(cluster),
        table(
            "tasks",
            &[
                "Task",
                "Last status",
                "Desired status",
                "Task definition",
                "Group",
                "Container instance",
                "Zone",
                "Started at",
                "Stopped at",
                "Stop code"
            ],
            rows
        ),
    )
}

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

    #[test]
    fn definition_links_name_family_and_revision() {
        let arn = "arn:aws:ecs:us-east-1:0:task-definition/web:12";
        assert_eq!(definition_name(arn), "web:12");
        assert_eq!(definition_link(arn), "<a href=\"/console/task-definitions/web/12\">web:12</a>");
    }
}
