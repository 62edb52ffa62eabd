//! A cluster's tasks, filtered as ListTasks filters them (desired status, service, family,
//! instance) and paged 100 at a time from the cache's task indexes (only the page's tasks are
//! decoded).

use std::fmt::Write;
use std::sync::Arc;

use flotilla_api::state::cache::Entry;
use flotilla_api::state::keys;
use flotilla_api::state::tasks::{scope_of, CachedTask, TaskKeys};
use flotilla_api::ApiError;
use flotilla_model::Task;

use super::cluster::{cluster_of, trail};
use super::{View, ViewRequest};
use crate::html::{badge, esc, href, href_query, link, opt, short, table, time};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_links_name_family_and_revision() {
        let arn = "arn:aws:ecs:us-east-1:0:task-definition/web:12";
        assert_eq!(definition_name(arn), "web:12");
        assert_eq!(definition_link(arn), "<a href=\"/console/task-definitions/web/12\">web:12</a>");
    }
}
