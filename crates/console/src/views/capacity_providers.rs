//! The capacity providers pages: every provider as DescribeCapacityProviders gives it (the
//! reserved FARGATE and FARGATE_SPOT among them) with its Auto Scaling group, managed scaling and,
//! per associated cluster, the CapacityProviderReservation `/metrics` exports and the tasks
//! waiting in PROVISIONING; one provider's page adds the group's hosts and scaling activities.
//!
//! Groups, hosts and activities live in the store (Auto Scaling keeps no cache): they are read
//! first, then the cache is read once, without awaiting, to render.

use std::collections::HashMap;

use flotilla_api::capacity::waiting::waiting_in;
use flotilla_api::domain::hosts::{self, Read};
use flotilla_api::state::cache::{range_prefix, Indexes};
use flotilla_api::state::keys;
use flotilla_api::{ApiError, Ctx};
use flotilla_hosts::{Activity, AutoScalingGroup, Host, Lifecycle};
use flotilla_model::CapacityProvider;

use super::{View, ViewRequest};
use crate::html::{badge, crumbs, esc, href, link, table, time_ms};

/// The providers every account has (DescribeCapacityProviders lists them among the others).
const RESERVED: [&str; 2] = ["FARGATE", "FARGATE_SPOT"];
/// Scaling activities shown on a provider's page.
const ACTIVITIES: usize = 20;

fn server(e: impl std::fmt::Display) -> ApiError {
    ApiError::server(e.to_string())
}

fn reserved(ctx: &Ctx, name: &str) -> CapacityProvider {
    CapacityProvider {
        capacity_provider_arn: Some(ctx.arns.capacity_provider(name)),
        name: Some(name.to_string()),
        status: Some("ACTIVE".into()),
        ..Default::default()
    }
}

/// Every provider, by name, as DescribeCapacityProviders lists them.
fn providers(ctx: &Ctx, ix: &Indexes) -> Vec<CapacityProvider> {
    let mut all: Vec<CapacityProvider> =
        range_prefix(&ix.capacity_providers, keys::CAPACITY_PROVIDER).map(|(_, e)| (*e.value).clone()).collect();
    all.extend(RESERVED.iter().map(|n| reserved(ctx, n)));
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

fn group_arn(p: &CapacityProvider) -> Option<&str> {
    p.auto_scaling_group_provider.as_ref().and_then(|a| a.auto_scaling_group_arn.as_deref())
}

/// One cluster a provider is associated with.
struct Association {
    cluster: String,
    /// The gauge `/metrics` shows; `None` until managed scaling measures it.
    reservation: Option<f64>,
    waiting: usize,
    /// Whether managed scaling measures the reservation at all.
    scaled: bool,
}

fn managed_scaling_on(p: &CapacityProvider) -> bool {
    let scaling = p.auto_scaling_group_provider.as_ref().and_then(|a| a.managed_scaling.as_ref());
    scaling.is_some_and(|s| s.status.as_deref() == Some("ENABLED"))
}

fn associations(ctx: &Ctx, ix: &Indexes, p: &CapacityProvider) -> Vec<Association> {
    let name = p.name.as_deref().unwrap_or_default();
    let scaled = managed_scaling_on(p);
    range_prefix(&ix.clusters, keys::CLUSTER)
        .filter(|(_, c)| c.value.capacity_providers.iter().flatten().any(|p| p == name))
        .map(|(_, c)| {
            let cluster = c.value.cluster_name.clone().unwrap_or_default();
            let waiting = waiting_in(ix, &cluster).iter().filter(|w| w.provider == name).count();
            Association { reservation: ctx.gauges.reservation(&cluster, name), cluster, waiting, scaled }
        })
        .collect()
}

fn percent(a: &Association) -> String {
    if !a.scaled && a.reservation.is_none() {
        return "- (no managed scaling)".into();
    }
    match a.reservation {
        Some(v) if v.fract() == 0.0 => format!("{v:.0}%"),
        Some(v) => format!("{v:.1}%"),
        None => "not measured yet".into(),
    }
}

fn opt_num(v: Option<i32>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

/// `cluster (reservation, N waiting)` lines, escaped and linked.
fn association_cell(list: &[Association]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter()
        .map(|a| {
            format!(
                "<div>{}: reservation <span class=\"reservation\">{}</span>, {} waiting</div>",
                link(&href(&["clusters", &a.cluster]), &a.cluster),
                esc(&percent(a)),
                a.waiting
            )
        })
        .collect()
}

fn live(h: &Host) -> bool {
    matches!(h.lifecycle, Lifecycle::Pending | Lifecycle::InService)
}

/// `name min/desired/max, N in service (S Spot, D on-demand)`.
fn group_cell(group: Option<&AutoScalingGroup>, arn: Option<&str>, hosts: &[&Host]) -> String {
    let Some(g) = group else {
        return match arn {
            Some(arn) => format!("{} (missing)", esc(hosts::group_name(arn))),
            None => "-".into(),
        };
    };
    let in_service: Vec<&&Host> = hosts.iter().filter(|h| h.lifecycle == Lifecycle::InService).collect();
    let spot = in_service.iter().filter(|h| h.spot).count();
    format!(
        "{} <span class=\"sizes\">min {} / desired {} / max {}</span>, {} in service ({} Spot, {} on-demand)",
        esc(&g.name),
        g.min_size,
        g.desired_capacity,
        g.max_size,
        in_service.len(),
        spot,
        in_service.len() - spot
    )
}

fn scaling_cell(p: &CapacityProvider) -> String {
    let Some(s) = p.auto_scaling_group_provider.as_ref().and_then(|a| a.managed_scaling.as_ref()) else {
        return "-".into();
    };
    format!(
        "{} target {}%, steps {}-{}",
        badge(s.status.as_deref().unwrap_or("DISABLED")),
        esc(&opt_num(s.target_capacity)),
        esc(&opt_num(s.minimum_scaling_step_size)),
        esc(&opt_num(s.maximum_scaling_step_size))
    )
}

fn protection(p: &CapacityProvider) -> String {
    let v = p.auto_scaling_group_provider.as_ref().and_then(|a| a.managed_termination_protection.as_deref());
    esc(v.unwrap_or("-"))
}

/// The groups and hosts the providers stand on, read from the store.
struct Groups {
    groups: HashMap<String, AutoScalingGroup>,
    hosts: Vec<Host>,
}

impl Groups {
    async fn read(ctx: &Ctx) -> Result<Groups, ApiError> {
        let groups = hosts::groups(ctx).await?.into_iter().map(|r: Read<_>| (r.value.name.clone(), r.value)).collect();
        let hosts = hosts::hosts(ctx).await?.into_iter().map(|r| r.value).collect();
        Ok(Groups { groups, hosts })
    }

    fn of(&self, p: &CapacityProvider) -> (Option<&AutoScalingGroup>, Vec<&Host>) {
        let Some(arn) = group_arn(p) else { return (None, Vec::new()) };
        let group = self.groups.get(hosts::group_name(arn)).filter(|g| !arn.starts_with("arn:") || g.arn == arn);
        let hosts = match group {
            Some(g) => self.hosts.iter().filter(|h| h.group.as_deref() == Some(g.name.as_str())).collect(),
            None => Vec::new(),
        };
        (group, hosts)
    }
}

/// Every capacity provider with its group, scaling and clusters.
pub async fn index(req: &ViewRequest<'_>) -> Result<View, ApiError> {
    let ctx = req.ctx;
    let groups = Groups::read(ctx).await?;
    let ix = ctx.cache.read();
    let all = providers(ctx, &ix);
    let rows = all.iter().map(|p| {
        let name = p.name.clone().unwrap_or_default();
        let (group, hosts) = groups.of(p);
        let live: Vec<&Host> = hosts.into_iter().filter(|h| live(h)).collect();
        vec![
            link(&href(&["capacity-providers", &name]), &name),
            badge(p.status.as_deref().unwrap_or("")),
            group_cell(group, group_arn(p), &live),
            scaling_cell(p),
            protection(p),
            association_cell(&associations(ctx, &ix, p)),
        ]
    });
    let body = format!(
        "{}<h1>Capacity providers</h1><p class=\"summary\">{} capacity providers</p>{}",
        crumbs(&[("Capacity providers", &href(&["capacity-providers"]))]),
        all.len(),
        table(
            "capacity-providers",
            &[
                "Capacity provider",
                "Status",
                "Auto Scaling group",
                "Managed scaling",
                "Termination protection",
                "Clusters (CapacityProviderReservation, waiting tasks)"
            ],
            rows
        )
    );
    Ok(View { body })
}

/// The group's scaling activities, newest first.
async fn activities(ctx: &Ctx, group: &str) -> Result<Vec<Activity>, ApiError> {
    let listing = ctx.store.list(&flotilla_hosts::keys::activities_of(group)).await.map_err(server)?;
    let mut out: Vec<Activity> = listing
        .kvs
        .iter()
        .rev()
        .filter_map(|kv| flotilla_hosts::codec::decode(&kv.value).ok())
        .take(ACTIVITIES)
        .collect();
    out.sort_by_key(|a| std::cmp::Reverse(a.started_at_ms));
    Ok(out)
}

/// The container instance a host registered as: `(cluster, id)` and its running tasks; a live
/// registration before one deregistered earlier.
fn container_instance(ix: &Indexes, ec2_id: &str) -> Option<(String, String, i64)> {
    let mut found: Vec<_> =
        ix.instances.values().filter(|e| e.value.instance.ec2_instance_id.as_deref() == Some(ec2_id)).collect();
    found.sort_by_key(|e| e.value.instance.status.as_deref() == Some("INACTIVE"));
    found.into_iter().find_map(|e| {
        let ci = &e.value.instance;
        let arn = ci.container_instance_arn.as_deref()?;
        let (cluster, id) = arn.rsplit_once(":container-instance/")?.1.split_once('/')?;
        let running = ix.instance_usage.get(arn).map_or(0, |u| u.running_tasks);
        Some((cluster.to_string(), id.to_string(), running))
    })
}

fn host_row(ix: &Indexes, h: &Host) -> Vec<String> {
    let registered = match container_instance(ix, &h.instance_id) {
        Some((cluster, id, running)) => vec![
            link(&href(&["clusters", &cluster, "instances", &id]), &format!("{cluster}/{id}")),
            running.to_string(),
        ],
        None => vec!["not registered".into(), "0".into()],
    };
    let mut row = vec![
        esc(&h.instance_id),
        esc(&h.instance_type),
        esc(&h.availability_zone),
        badge(h.lifecycle.as_str()),
        (if h.spot { "Spot" } else { "On-Demand" }).into(),
        (if h.protected_from_scale_in { "yes" } else { "no" }).into(),
    ];
    row.extend(registered);
    row
}

/// One provider: its settings, clusters, its group's hosts and recent scaling activities.
pub async fn show(req: &ViewRequest<'_>, name: &str) -> Result<View, ApiError> {
    let ctx = req.ctx;
    let name = name.rsplit_once(":capacity-provider/").map_or(name, |(_, n)| n);
    let groups = Groups::read(ctx).await?;
    let provider = {
        let ix = ctx.cache.read();
        providers(ctx, &ix).into_iter().find(|p| p.name.as_deref() == Some(name))
    };
    let Some(p) = provider else {
        return Err(ApiError::client(format!(
            "The specified capacity provider '{name}' does not exist. Specify a valid capacity provider and try again."
        )));
    };
    let (group, group_hosts) = groups.of(&p);
    let history = match group {
        Some(g) => activities(ctx, &g.name).await?,
        None => Vec::new(),
    };
    let ix = ctx.cache.read();
    let mut out =
        crumbs(&[("Capacity providers", &href(&["capacity-providers"])), (name, &href(&["capacity-providers", name]))]);
    out.push_str(&format!("<h1>Capacity provider {}</h1>", esc(name)));
    if RESERVED.contains(&name) {
        out.push_str("<p class=\"note\">A reserved provider: every account has it, and it runs no hosts here.</p>");
    }
    let live: Vec<&Host> = group_hosts.iter().copied().filter(|h| live(h)).collect();
    let details = [
        ("ARN", esc(p.capacity_provider_arn.as_deref().unwrap_or(""))),
        ("Status", badge(p.status.as_deref().unwrap_or(""))),
        ("Update status", esc(p.update_status.as_deref().unwrap_or("-"))),
        ("Auto Scaling group", group_cell(group, group_arn(&p), &live)),
        ("Managed scaling", scaling_cell(&p)),
        (
            "Instance warm-up",
            esc(&p
                .auto_scaling_group_provider
                .as_ref()
                .and_then(|a| a.managed_scaling.as_ref())
                .and_then(|s| s.instance_warmup_period)
                .map(|s| format!("{s} s"))
                .unwrap_or_else(|| "-".into())),
        ),
        ("Managed termination protection", protection(&p)),
    ];
    out.push_str("<dl class=\"details\">");
    for (k, v) in details {
        out.push_str(&format!("<dt>{}</dt><dd>{v}</dd>", esc(k)));
    }
    out.push_str("</dl>");
    let assoc = associations(ctx, &ix, &p);
    out.push_str("<h2>Clusters</h2>");
    out.push_str(&table(
        "provider-clusters",
        &["Cluster", "CapacityProviderReservation", "Tasks waiting in PROVISIONING"],
        assoc.iter().map(|a| {
            vec![
                link(&href(&["clusters", &a.cluster]), &a.cluster),
                format!("<span class=\"reservation\">{}</span>", esc(&percent(a))),
                a.waiting.to_string(),
            ]
        }),
    ));
    if group_arn(&p).is_some() {
        let mut shown: Vec<&Host> =
            group_hosts.iter().copied().filter(|h| h.lifecycle != Lifecycle::Terminated).collect();
        shown.sort_by(|a, b| (a.launched_at_ms, &a.instance_id).cmp(&(b.launched_at_ms, &b.instance_id)));
        out.push_str("<h2>Hosts</h2>");
        out.push_str(&table(
            "hosts",
            &[
                "EC2 instance",
                "Type",
                "Zone",
                "Lifecycle",
                "Market",
                "Protected from scale-in",
                "Container instance",
                "Running tasks",
            ],
            shown.iter().map(|h| host_row(&ix, h)),
        ));
        out.push_str("<h2>Scaling activities</h2>");
        out.push_str(&table(
            "activities",
            &["Started", "Ended", "Status", "Description", "Cause"],
            history.iter().map(|a| {
                vec![
                    esc(&time_ms(Some(a.started_at_ms))),
                    esc(&time_ms(a.ended_at_ms)),
                    badge(&a.status_code),
                    esc(&a.description)
                        + &a.status_message
                            .as_deref()
                            .map(|m| format!("<div class=\"reason\">{}</div>", esc(m)))
                            .unwrap_or_default(),
                    esc(&a.cause),
                ]
            }),
        ));
    }
    Ok(View { body: out })
}
