//! A service's page, as DescribeServices shows it: counts, the desired count form and Force new
//! deployment, deployments with their rollout, load balancers and registries, its tasks by zone
//! and instance (from the cache's group index: only the service's own tasks are read), and its
//! latest events.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use flotilla_api::state::keys;
use flotilla_api::state::tasks::CachedTask;
use flotilla_api::ApiError;
use flotilla_model::{Service, Task};
use serde_json::json;

use super::cluster::{cluster_of, launch_of, trail};
use super::tasks::definition_link;
use super::{View, ViewRequest};
use crate::html::{action_button, action_form, badge, cards, esc, facts, href, link, opt, section, short, table, time};

/// Stopped tasks shown (newest first), with their stop reasons.
const STOPPED_SHOWN: usize = 10;
/// Events shown (newest first).
const EVENTS_SHOWN: usize = 50;

pub async fn show(req: &ViewRequest<'_>, cluster: &str, service: &str) -> Result<View, ApiError> {
    let name = short(service);
    let (svc, live, stopped) = {
        let ix = req.ctx.cache.read();
        cluster_of(&ix, cluster)?;
        let svc = ix.services.get(&keys::service(cluster, name)).map(|e| e.value.clone());
        let svc = svc.ok_or_else(ApiError::service_not_found)?;
        let group = format!("service:{name}");
        let (stopped, live): (Vec<Arc<CachedTask>>, Vec<Arc<CachedTask>>) = ix
            .task_index
            .in_group(cluster, &group)
            .filter_map(|k| ix.tasks.get(k).map(|e| e.value.clone()))
            .partition(|t| t.is_stopped());
        (svc, live, stopped)
    };
    let live: Vec<Task> = live.iter().map(|t| t.task()).collect();
    let mut stopped: Vec<Task> = stopped.iter().map(|t| t.task()).collect();
    stopped.sort_by_key(|t| std::cmp::Reverse(t.stopped_at.map(|s| s.as_millis())));
    stopped.truncate(STOPPED_SHOWN);
    Ok(View { body: page(cluster, &svc, &live, &stopped) })
}

fn page(cluster: &str, s: &Service, live: &[Task], stopped: &[Task]) -> String {
    let name = s.service_name.as_deref().unwrap_or("");
    let this = href(&["clusters", cluster, "services", name]);
    let desired = s.desired_count.unwrap_or(0);
    let summary = cards(&[
        ("Status", badge(s.status.as_deref().unwrap_or(""))),
        ("Desired", desired.to_string()),
        ("Running", s.running_count.unwrap_or(0).to_string()),
        ("Pending", s.pending_count.unwrap_or(0).to_string()),
    ]);
    let mut actions = action_form(
        "UpdateService",
        &json!({"cluster": cluster, "service": name}),
        "desired-count",
        "Desired count updated",
    );
    let _ = write!(
        actions,
        "<label>Desired count <input name=\"desiredCount\" type=\"number\" min=\"0\" data-type=\"int\" value=\"{desired}\"></label> <button type=\"submit\">Update</button></form>"
    );
    actions.push_str(&action_button(
        "UpdateService",
        &json!({"cluster": cluster, "service": name, "forceNewDeployment": true}),
        "Force new deployment",
        Some(&format!("Start a new deployment of {name}, replacing every task?")),
        "New deployment started",
    ));
    let config = s.deployment_configuration.clone().unwrap_or_default();
    let about = facts(&[
        ("ARN", opt(s.service_arn.as_deref())),
        ("Task definition", s.task_definition.as_deref().map(definition_link).unwrap_or_default()),
        ("Launch", esc(&launch_of(s.launch_type.as_deref(), s.capacity_provider_strategy.as_deref()))),
        ("Scheduling", opt(s.scheduling_strategy.as_deref())),
        (
            "Deployment",
            format!(
                "min {}% / max {}% healthy",
                config.minimum_healthy_percent.unwrap_or(100),
                config.maximum_percent.unwrap_or(200)
            ),
        ),
        (
            "Circuit breaker",
            config
                .deployment_circuit_breaker
                .map(|c| {
                    format!(
                        "{}{}",
                        if c.enable.unwrap_or(false) { "enabled" } else { "disabled" },
                        if c.rollback.unwrap_or(false) { ", rollback" } else { "" }
                    )
                })
                .unwrap_or_default(),
        ),
        ("Created", esc(&time(s.created_at))),
        ("Created by", opt(s.created_by.as_deref())),
    ]);
    let deployments = table(
        "deployments",
        &[
            "Deployment",
            "Status",
            "Task definition",
            "Desired",
            "Pending",
            "Running",
            "Failed",
            "Rollout",
            "Progress",
            "Created",
            "Updated",
        ],
        s.deployments.as_deref().unwrap_or_default().iter().map(|d| {
            let desired = d.desired_count.unwrap_or(0);
            let running = d.running_count.unwrap_or(0);
            let rollout = match d.rollout_state.as_deref() {
                Some(state) => {
                    format!("{} <span class=\"reason\">{}</span>", badge(state), opt(d.rollout_state_reason.as_deref()))
                }
                None => String::new(),
            };
            vec![
                opt(d.id.as_deref()),
                badge(d.status.as_deref().unwrap_or("")),
                d.task_definition.as_deref().map(definition_link).unwrap_or_default(),
                desired.to_string(),
                d.pending_count.unwrap_or(0).to_string(),
                running.to_string(),
                d.failed_tasks.unwrap_or(0).to_string(),
                rollout,
                format!("<progress value=\"{}\" max=\"{}\"></progress>", running.min(desired).max(0), desired.max(0)),
                esc(&time(d.created_at)),
                esc(&time(d.updated_at)),
            ]
        }),
    );
    let mut endpoints = String::new();
    let lbs = s.load_balancers.as_deref().unwrap_or_default();
    if !lbs.is_empty() {
        endpoints.push_str(&section(
            "Load balancers",
            &table(
                "load-balancers",
                &["Target group", "Container", "Port"],
                lbs.iter().map(|l| {
                    vec![
                        opt(l.target_group_arn.as_deref().or(l.load_balancer_name.as_deref())),
                        opt(l.container_name.as_deref()),
                        l.container_port.map(|p| p.to_string()).unwrap_or_default(),
                    ]
                }),
            ),
        ));
    }
    let registries = s.service_registries.as_deref().unwrap_or_default();
    if !registries.is_empty() {
        endpoints.push_str(&section(
            "Service registries",
            &table(
                "service-registries",
                &["Registry", "Container", "Container port", "Port"],
                registries.iter().map(|r| {
                    vec![
                        opt(r.registry_arn.as_deref()),
                        opt(r.container_name.as_deref()),
                        r.container_port.map(|p| p.to_string()).unwrap_or_default(),
                        r.port.map(|p| p.to_string()).unwrap_or_default(),
                    ]
                }),
            ),
        ));
    }
    let mut events: Vec<_> = s.events.as_deref().unwrap_or_default().iter().collect();
    events.sort_by_key(|e| std::cmp::Reverse(e.created_at.map(|t| t.as_millis())));
    let events = table(
        "events",
        &["Time", "Message"],
        events.iter().take(EVENTS_SHOWN).map(|e| vec![esc(&time(e.created_at)), opt(e.message.as_deref())]),
    );
    let tasks_link = link(
        &crate::html::href_query(&["clusters", cluster, "tasks"], &[("service", name)]),
        "All tasks of this service",
    );
    format!(
        "{}<h1>Service {}</h1>{summary}<div class=\"actions\">{actions}</div>{about}{}{endpoints}{}{}{}",
        trail(cluster, &[(name, &this)]),
        esc(name),
        section("Deployments", &deployments),
        section("Tasks", &format!("<p class=\"links\">{tasks_link}</p>{}", by_zone(cluster, live))),
        section("Recently stopped tasks", &stopped_table(cluster, stopped)),
        section("Events", &events),
    )
}

fn task_link(cluster: &str, t: &Task) -> String {
    let id = short(t.task_arn.as_deref().unwrap_or(""));
    link(&href(&["clusters", cluster, "tasks", id]), id)
}

/// The tasks not stopped, grouped by zone, then by container instance.
fn by_zone(cluster: &str, tasks: &[Task]) -> String {
    let mut groups: BTreeMap<(&str, &str), Vec<&Task>> = BTreeMap::new();
    for t in tasks {
        let zone = t.availability_zone.as_deref().unwrap_or("");
        let instance = t.container_instance_arn.as_deref().map(short).unwrap_or("");
        groups.entry((zone, instance)).or_default().push(t);
    }
    if groups.is_empty() {
        return "<p class=\"empty\">No tasks.</p>".into();
    }
    let mut out = String::new();
    let mut zone_open: Option<&str> = None;
    for ((zone, instance), mut list) in groups {
        if zone_open != Some(zone) {
            if zone_open.is_some() {
                out.push_str("</div>");
            }
            let _ = write!(out, "<div class=\"zone\"><h3>{}</h3>", esc(if zone.is_empty() { "No zone" } else { zone }));
            zone_open = Some(zone);
        }
        let heading = if instance.is_empty() {
            "Not placed".to_string()
        } else {
            link(&href(&["clusters", cluster, "instances", instance]), instance)
        };
        list.sort_by(|a, b| a.task_arn.cmp(&b.task_arn));
        let _ = write!(
            out,
            "<div class=\"instance-tasks\"><h4>{heading}</h4>{}</div>",
            table(
                "tasks",
                &["Task", "Last status", "Desired status", "Task definition", "Health", "Started at"],
                list.iter().map(|t| vec![
                    task_link(cluster, t),
                    badge(t.last_status.as_deref().unwrap_or("")),
                    badge(t.desired_status.as_deref().unwrap_or("")),
                    t.task_definition_arn.as_deref().map(definition_link).unwrap_or_default(),
                    opt(t.health_status.as_deref()),
                    esc(&time(t.started_at)),
                ])
            )
        );
    }
    out.push_str("</div>");
    out
}

fn stopped_table(cluster: &str, tasks: &[Task]) -> String {
    table(
        "stopped-tasks",
        &["Task", "Task definition", "Stopped at", "Stop code", "Stopped reason", "Exit codes"],
        tasks.iter().map(|t| {
            let exits = t
                .containers
                .as_deref()
                .unwrap_or_default()
                .iter()
                .filter_map(|c| c.exit_code.map(|e| format!("{}: {e}", c.name.as_deref().unwrap_or(""))))
                .collect::<Vec<_>>()
                .join(", ");
            vec![
                task_link(cluster, t),
                t.task_definition_arn.as_deref().map(definition_link).unwrap_or_default(),
                esc(&time(t.stopped_at)),
                opt(t.stop_code.as_deref()),
                opt(t.stopped_reason.as_deref()),
                esc(&exits),
            ]
        }),
    )
}
