//! The service discovery pages: every Cloud Map namespace with its service count; one
//! namespace's page shows each service (DNS and health check settings, the DNS name it answers
//! to, the ECS services registering into it) and its instances with their attributes, their
//! health as GetInstancesHealthStatus gives it (the record's status) and the ECS task each
//! belongs to.
//!
//! Cloud Map keeps no cache: its records are read from the store (`flotilla_endpoints`), then the
//! ECS cache is read once, without awaiting, for the services.

use flotilla_api::state::cache::Indexes;
use flotilla_api::ApiError;
use flotilla_endpoints::cloudmap::{self as cm, HealthStatus, Instance, Namespace, NamespaceType, Service};
use flotilla_endpoints::keys;

use super::load_balancers::{count, records, task_link};
use super::{View, ViewRequest};
use crate::html::{badge, crumbs, esc, href, link, table};

fn kind(ns: &Namespace) -> &'static str {
    match ns.kind {
        NamespaceType::DnsPrivate => "DNS_PRIVATE",
        NamespaceType::DnsPublic => "DNS_PUBLIC",
        NamespaceType::Http => "HTTP",
    }
}

fn health(h: HealthStatus) -> &'static str {
    match h {
        HealthStatus::Healthy => "HEALTHY",
        HealthStatus::Unhealthy => "UNHEALTHY",
        HealthStatus::Unknown => "UNKNOWN",
    }
}

/// Every namespace, with how many services it has.
pub async fn index(req: &ViewRequest<'_>) -> Result<View, ApiError> {
    let mut namespaces: Vec<Namespace> = records(req.ctx, keys::NAMESPACE).await?;
    namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    let services: Vec<Service> = records(req.ctx, keys::SERVICE).await?;
    let trail = crumbs(&[("Namespaces", &href(&["namespaces"]))]);
    if namespaces.is_empty() {
        let body = format!(
            "{trail}<h1>Namespaces</h1><p class=\"empty\">No namespaces. Create one with \
             <code>aws servicediscovery create-private-dns-namespace</code> or \
             <code>create-http-namespace</code>.</p>"
        );
        return Ok(View { body });
    }
    let rows = namespaces.iter().map(|ns| {
        vec![
            link(&href(&["namespaces", &ns.id]), &ns.name),
            esc(kind(ns)),
            esc(&ns.id),
            services.iter().filter(|s| s.namespace_id == ns.id).count().to_string(),
            esc(ns.description.as_deref().unwrap_or("")),
        ]
    });
    let body = format!(
        "{trail}<h1>Namespaces</h1><p class=\"summary\">{}</p>{}",
        count(namespaces.len(), "namespace", "namespaces"),
        table("namespaces", &["Namespace", "Type", "Id", "Services", "Description"], rows)
    );
    Ok(View { body })
}

fn dns_config(s: &Service) -> String {
    let Some(c) = &s.dns_config else { return "none (API calls only)".into() };
    let policy = match c.routing_policy {
        cm::RoutingPolicy::Multivalue => "MULTIVALUE",
        cm::RoutingPolicy::Weighted => "WEIGHTED",
    };
    let records: Vec<String> = c
        .records
        .iter()
        .map(|r| {
            let kind = match r.kind {
                cm::RecordType::A => "A",
                cm::RecordType::Aaaa => "AAAA",
                cm::RecordType::Srv => "SRV",
                cm::RecordType::Cname => "CNAME",
            };
            format!("{kind} (TTL {} s)", r.ttl)
        })
        .collect();
    esc(&format!("{policy}: {}", records.join(", ")))
}

fn health_check(s: &Service) -> String {
    if s.custom_health {
        return "custom (UpdateInstanceCustomHealthStatus)".into();
    }
    match &s.health_check_config {
        Some(v) => {
            let field = |k: &str| v.get(k).map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string));
            let mut text = field("Type").unwrap_or_else(|| "health check".into());
            if let Some(path) = field("ResourcePath") {
                text.push_str(&format!(" {path}"));
            }
            if let Some(n) = field("FailureThreshold") {
                text.push_str(&format!(", unhealthy after {n} failures"));
            }
            esc(&text)
        }
        None => "none".into(),
    }
}

/// The ECS services registering into the Cloud Map service `arn`, linked.
fn ecs_services(ix: &Indexes, arn: &str) -> String {
    super::service_links(ix, |s| s.service_registries.iter().flatten().any(|r| r.registry_arn.as_deref() == Some(arn)))
}

fn instance_row(i: &Instance) -> Vec<String> {
    let address = match (i.attributes.get(cm::IPV4), i.attributes.get(cm::PORT)) {
        (Some(ip), Some(port)) => format!("{ip}:{port}"),
        (Some(ip), None) => ip.clone(),
        (None, _) => i.attributes.get(cm::CNAME).or(i.attributes.get(cm::IPV6)).cloned().unwrap_or_default(),
    };
    let others: Vec<String> = i
        .attributes
        .iter()
        .filter(|(k, _)| ![cm::IPV4, cm::PORT].contains(&k.as_str()))
        .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
        .collect();
    // The registrar records the task; an instance registered by hand may name one in an attribute.
    let task = i.task_arn.as_deref().or(i.attributes.get("ECS_TASK_ARN").map(String::as_str));
    vec![
        esc(&i.id),
        esc(&address),
        badge(health(i.health)),
        task.map(task_link).unwrap_or_else(|| "-".into()),
        others.join("<br>"),
    ]
}

/// One namespace: its services and their instances.
pub async fn show(req: &ViewRequest<'_>, id: &str) -> Result<View, ApiError> {
    let ctx = req.ctx;
    let namespaces: Vec<Namespace> = records(ctx, keys::NAMESPACE).await?;
    let Some(ns) = namespaces.into_iter().find(|n| n.id == id || n.arn == id) else {
        return Err(ApiError::new("NamespaceNotFound", format!("Namespace not found: {id}")));
    };
    let mut services: Vec<Service> =
        records::<Service>(ctx, keys::SERVICE).await?.into_iter().filter(|s| s.namespace_id == ns.id).collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let mut instances = Vec::new();
    for s in &services {
        let mut list: Vec<Instance> = records(ctx, &keys::instances_of(&s.id)).await?;
        list.sort_by(|a, b| a.id.cmp(&b.id));
        instances.push(list);
    }

    let mut out = crumbs(&[("Namespaces", &href(&["namespaces"])), (&ns.name, &href(&["namespaces", &ns.id]))]);
    out.push_str(&format!("<h1>Namespace {}</h1>", esc(&ns.name)));
    let details = [
        ("Id", esc(&ns.id)),
        ("ARN", esc(&ns.arn)),
        ("Type", esc(kind(&ns))),
        ("Description", esc(ns.description.as_deref().unwrap_or("-"))),
    ];
    out.push_str("<dl class=\"details\">");
    for (k, v) in details {
        out.push_str(&format!("<dt>{}</dt><dd>{v}</dd>", esc(k)));
    }
    out.push_str("</dl><h2>Services</h2>");
    if services.is_empty() {
        out.push_str(
            "<p class=\"empty\">No services. Create one with <code>aws servicediscovery create-service</code>.</p>",
        );
    }
    let dns = ns.kind != NamespaceType::Http;
    let ix = req.ctx.cache.read();
    for (s, list) in services.iter().zip(&instances) {
        let name = if dns { esc(&format!("{}.{}", s.name, ns.name)) } else { "none (HTTP namespace)".into() };
        out.push_str(&format!(
            "<h3 class=\"sd-service\">{}</h3><dl class=\"details\"><dt>Id</dt><dd>{}</dd><dt>DNS name</dt><dd>{name}</dd>\
             <dt>DNS records</dt><dd>{}</dd><dt>Health check</dt><dd>{}</dd><dt>ECS services</dt><dd>{}</dd></dl>",
            esc(&s.name),
            esc(&s.id),
            dns_config(s),
            health_check(s),
            ecs_services(&ix, &s.arn)
        ));
        out.push_str(&table(
            "sd-instances",
            &["Instance", "Address", "Health", "ECS task", "Attributes"],
            list.iter().map(instance_row),
        ));
    }
    Ok(View { body: out })
}
