//! The limits Flotilla's ELBv2 enforces, and DescribeAccountLimits / DescribeSSLPolicies, which
//! report them (Flotilla has no TLS listeners, so it has no SSL policies to list).

use flotilla_query::{Params, QueryError, Xml};

use super::{paging, Result};

pub const APPLICATION_LOAD_BALANCERS: usize = 50;
pub const NETWORK_LOAD_BALANCERS: usize = 50;
pub const TARGET_GROUPS: usize = 3000;
pub const LISTENERS_PER_LOAD_BALANCER: usize = 50;
pub const RULES_PER_LISTENER: usize = 100;
pub const TARGETS_PER_TARGET_GROUP: usize = 1000;
pub const TAGS_PER_RESOURCE: usize = 50;
pub const RESOURCES_PER_TAG_CALL: usize = 20;

const LIMITS: &[(&str, usize)] = &[
    ("application-load-balancers", APPLICATION_LOAD_BALANCERS),
    ("network-load-balancers", NETWORK_LOAD_BALANCERS),
    ("target-groups", TARGET_GROUPS),
    ("listeners-per-application-load-balancer", LISTENERS_PER_LOAD_BALANCER),
    ("listeners-per-network-load-balancer", LISTENERS_PER_LOAD_BALANCER),
    ("rules-per-application-load-balancer", RULES_PER_LISTENER),
    ("targets-per-target-group", TARGETS_PER_TARGET_GROUP),
];

pub fn describe_account_limits(p: &Params) -> Result<Xml> {
    let (page, next) = paging::page(p, LIMITS.to_vec(), |(name, _)| name.to_string())?;
    let mut x = Xml::new();
    x.list("Limits", "member", page, |x, (name, max)| {
        x.leaf("Name", name).leaf("Max", max.to_string());
    });
    x.opt_leaf("NextMarker", next);
    Ok(x)
}

pub fn describe_ssl_policies(p: &Params) -> Result<Xml> {
    if let Some(name) = p.list("Names")?.first() {
        return Err(QueryError::new(
            "SSLPolicyNotFound",
            format!("SSL policy '{name}' not found: Flotilla's load balancers have no TLS listeners"),
        ));
    }
    let mut x = Xml::new();
    x.elem("SslPolicies", |_| {});
    Ok(x)
}
