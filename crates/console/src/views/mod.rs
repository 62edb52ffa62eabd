//! The console's pages, each an HTML fragment rendered from the control plane's state. A page is
//! chosen by its path below `/console` ([`render`]); every page reads what it shows at one moment
//! (the cache, or the store for services that keep no cache) and escapes everything it writes.

use std::collections::HashMap;

use flotilla_api::{ApiError, Ctx};

mod capacity_providers;
mod cluster;
mod clusters;
mod instances;
mod load_balancers;
mod namespaces;
mod service;
mod task;
mod task_definitions;
mod tasks;

/// A rendered page: its HTML fragment (beginning with its breadcrumbs and `<h1>`).
#[derive(Debug)]
pub struct View {
    pub body: String,
}

/// What a page is asked for: the path's segments below `/console` (percent-decoded) and the query.
pub struct ViewRequest<'a> {
    pub ctx: &'a Ctx,
    pub segments: Vec<String>,
    pub query: HashMap<String, String>,
}

impl ViewRequest<'_> {
    /// A query parameter, if given and not empty.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// The page at `req.segments`, or a ClientException naming a path no page has.
pub async fn render(req: &ViewRequest<'_>) -> Result<View, ApiError> {
    let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        [] | ["clusters"] => clusters::index(req),
        ["clusters", cluster] => cluster::show(req, cluster).await,
        ["clusters", cluster, "instances", instance] => instances::show(req, cluster, instance).await,
        ["clusters", cluster, "services", service] => service::show(req, cluster, service).await,
        ["clusters", cluster, "tasks"] => tasks::index(req, cluster).await,
        ["clusters", cluster, "tasks", task] => task::show(req, cluster, task).await,
        ["task-definitions"] => task_definitions::families(req).await,
        ["task-definitions", family] => task_definitions::revisions(req, family).await,
        ["task-definitions", family, revision] => task_definitions::show(req, family, revision).await,
        ["capacity-providers"] => capacity_providers::index(req).await,
        ["capacity-providers", name] => capacity_providers::show(req, name).await,
        ["load-balancers"] => load_balancers::index(req).await,
        ["load-balancers", name] => load_balancers::show(req, name).await,
        ["namespaces"] => namespaces::index(req).await,
        ["namespaces", id] => namespaces::show(req, id).await,
        _ => Err(not_found(&segments)),
    }
}

/// The error for a path with no page.
pub fn not_found(segments: &[&str]) -> ApiError {
    ApiError::client(format!("The console has no page at /console/{}.", segments.join("/")))
}

/// The services (not INACTIVE) that `wanted` picks, each linked as `cluster/name`, one per line;
/// "none" when there is none.
pub(crate) fn service_links(
    ix: &flotilla_api::state::cache::Indexes,
    wanted: impl Fn(&flotilla_model::Service) -> bool,
) -> String {
    let found: Vec<String> = ix
        .services
        .values()
        .filter(|e| e.value.status.as_deref() != Some("INACTIVE") && wanted(&e.value))
        .map(|e| {
            let cluster =
                e.value.cluster_arn.as_deref().and_then(|a| a.rsplit_once(":cluster/")).map_or("", |(_, c)| c);
            let name = e.value.service_name.as_deref().unwrap_or_default();
            crate::html::link(
                &crate::html::href(&["clusters", cluster, "services", name]),
                &format!("{cluster}/{name}"),
            )
        })
        .collect();
    if found.is_empty() {
        "none".into()
    } else {
        found.join("<br>")
    }
}
