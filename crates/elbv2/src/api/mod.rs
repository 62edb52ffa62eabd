//! The ELBv2 query API (`elasticloadbalancing`, version 2015-12-01), served on the control
//! plane's listener as a [`flotilla_api::Extension`].
//!
//! It reads and writes the records of `flotilla_endpoints::elb` only: load balancers, target
//! groups, listeners, rules and registered targets. The data plane (load balancer nodes, health
//! checks, draining) acts on what it writes and writes back target health and load balancer
//! state, which Describe calls read. Every write is one compare-and-swap transaction, retried
//! when another writer got there first; writes that change which groups a load balancer
//! forwards to keep `TargetGroup::load_balancer_arns` right in the same transaction
//! ([`routing`]).
//!
//! Classic Load Balancers share the signing name with `Version=2012-06-01`: they are refused
//! with a clear error rather than answered as if they were ELBv2 calls.

mod actions;
mod arns;
mod attributes;
mod conditions;
mod errors;
mod limits;
mod listeners;
mod load_balancer_settings;
mod load_balancers;
mod paging;
mod routing;
mod rules;
mod shapes;
mod store;
mod tags;

mod target_groups;
mod targets;

use std::sync::Arc;

use axum::body::Body;
use axum::http::Response;
use flotilla_api::{ApiError, Ctx, Extension, ExtensionRequest, ExtensionResponse};
use flotilla_query::{Dialect, Params, QueryError, Xml};
use futures::future::BoxFuture;

pub use arns::{listener_arn, load_balancer_arn, rule_arn, target_group_arn};
pub use targets::{targets_with_health, DescribedTarget};

/// The API version ELBv2 calls carry.
pub const VERSION: &str = "2015-12-01";
/// Classic ELB's version: same signing name, overlapping action names.
pub const CLASSIC_VERSION: &str = "2012-06-01";
pub const XMLNS: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";
pub const DIALECT: Dialect = Dialect::Query { xmlns: XMLNS };
pub const SIGNING_NAME: &str = "elasticloadbalancing";

type Result<T> = std::result::Result<T, QueryError>;

/// The ELBv2 API alone, to register with the server (`ServerConfig::extensions`): no node
/// routes or loops.
pub fn extension() -> Arc<dyn Extension> {
    Arc::new(ElbApi { nodes: None })
}

/// The ELBv2 API with what load balancer nodes need: `/v1/lb/*` (join tokens are checked with
/// `root_secret`, the key that signs them) and the draining and load balancer state loops.
pub fn extension_with_nodes(root_secret: &str) -> Arc<dyn Extension> {
    Arc::new(ElbApi { nodes: Some(root_secret.to_string()) })
}

/// The ELBv2 API.
pub struct ElbApi {
    /// The root secret, when the server also serves load balancer nodes.
    nodes: Option<String>,
}

/// The actions served, as the metrics label them.
const ACTIONS: &[&str] = &[
    "CreateLoadBalancer",
    "DescribeLoadBalancers",
    "DeleteLoadBalancer",
    "DescribeLoadBalancerAttributes",
    "ModifyLoadBalancerAttributes",
    "SetSubnets",
    "SetSecurityGroups",
    "SetIpAddressType",
    "CreateTargetGroup",
    "DescribeTargetGroups",
    "ModifyTargetGroup",
    "DeleteTargetGroup",
    "DescribeTargetGroupAttributes",
    "ModifyTargetGroupAttributes",
    "CreateListener",
    "DescribeListeners",
    "ModifyListener",
    "DeleteListener",
    "CreateRule",
    "DescribeRules",
    "ModifyRule",
    "DeleteRule",
    "SetRulePriorities",
    "RegisterTargets",
    "DeregisterTargets",
    "DescribeTargetHealth",
    "AddTags",
    "RemoveTags",
    "DescribeTags",
    "DescribeAccountLimits",
    "DescribeSSLPolicies",
];

/// Actions Classic ELB (or Auto Scaling) also has: an unsigned call without a `Version` could
/// mean either, so it is claimed only when it says 2015-12-01.
const SHARED: &[&str] = &[
    "CreateLoadBalancer",
    "DescribeLoadBalancers",
    "DeleteLoadBalancer",
    "DescribeLoadBalancerAttributes",
    "ModifyLoadBalancerAttributes",
    "AddTags",
    "RemoveTags",
    "DescribeTags",
    "DescribeAccountLimits",
];

async fn dispatch(ctx: &Ctx, action: &str, p: &Params) -> Result<Xml> {
    match action {
        "CreateLoadBalancer" => load_balancers::create(ctx, p).await,
        "DescribeLoadBalancers" => load_balancers::describe(ctx, p).await,
        "DeleteLoadBalancer" => load_balancers::delete(ctx, p).await,
        "DescribeLoadBalancerAttributes" => load_balancers::describe_attributes(ctx, p).await,
        "ModifyLoadBalancerAttributes" => load_balancers::modify_attributes(ctx, p).await,
        "SetSubnets" => load_balancer_settings::set_subnets(ctx, p).await,
        "SetSecurityGroups" => load_balancer_settings::set_security_groups(ctx, p).await,
        "SetIpAddressType" => load_balancer_settings::set_ip_address_type(ctx, p).await,
        "CreateTargetGroup" => target_groups::create(ctx, p).await,
        "DescribeTargetGroups" => target_groups::describe(ctx, p).await,
        "ModifyTargetGroup" => target_groups::modify(ctx, p).await,
        "DeleteTargetGroup" => target_groups::delete(ctx, p).await,
        "DescribeTargetGroupAttributes" => target_groups::describe_attributes(ctx, p).await,
        "ModifyTargetGroupAttributes" => target_groups::modify_attributes(ctx, p).await,
        "CreateListener" => listeners::create(ctx, p).await,
        "DescribeListeners" => listeners::describe(ctx, p).await,
        "ModifyListener" => listeners::modify(ctx, p).await,
        "DeleteListener" => listeners::delete(ctx, p).await,
        "CreateRule" => rules::create(ctx, p).await,
        "DescribeRules" => rules::describe(ctx, p).await,
        "ModifyRule" => rules::modify(ctx, p).await,
        "DeleteRule" => rules::delete(ctx, p).await,
        "SetRulePriorities" => rules::set_priorities(ctx, p).await,
        "RegisterTargets" => targets::register(ctx, p).await,
        "DeregisterTargets" => targets::deregister(ctx, p).await,
        "DescribeTargetHealth" => targets::describe_health(ctx, p).await,
        "AddTags" => tags::add(ctx, p).await,
        "RemoveTags" => tags::remove(ctx, p).await,
        "DescribeTags" => tags::describe(ctx, p).await,
        "DescribeAccountLimits" => limits::describe_account_limits(p),
        "DescribeSSLPolicies" => limits::describe_ssl_policies(p),
        other => Err(flotilla_api::query_reply::invalid_action(other)),
    }
}

/// Refuses calls of another API version: Classic ELB's with a pointer to ELBv2.
fn check_version(p: &Params) -> Result<()> {
    match p.version() {
        None | Some(VERSION) => Ok(()),
        Some(CLASSIC_VERSION) => Err(QueryError::new(
            "InvalidAction",
            format!(
                "Classic Load Balancers (Elastic Load Balancing API version {CLASSIC_VERSION}) are not supported; \
                 use Elastic Load Balancing v2 (version {VERSION}) with an application or network load balancer."
            ),
        )),
        Some(other) => Err(QueryError::new(
            "InvalidAction",
            format!("Elastic Load Balancing API version {other} is not supported; use version {VERSION}."),
        )),
    }
}

impl Extension for ElbApi {
    fn signing_names(&self) -> &'static [&'static str] {
        &[SIGNING_NAME]
    }

    fn claims(&self, action: &str, version: Option<&str>) -> Option<&'static str> {
        let ours = match version {
            Some(VERSION) => ACTIONS.contains(&action),
            // Claimed so that the caller is told Classic ELB is not here, not "unknown action".
            Some(CLASSIC_VERSION) => true,
            None => ACTIONS.contains(&action) && !SHARED.contains(&action),
            Some(_) => false,
        };
        ours.then_some(SIGNING_NAME)
    }

    fn handle<'a>(&'a self, r: ExtensionRequest<'a>) -> BoxFuture<'a, ExtensionResponse> {
        Box::pin(async move {
            let p = Params::parse(r.body, DIALECT);
            let action = p.action().unwrap_or_default().to_string();
            let operation = ACTIONS.iter().find(|a| **a == action).copied().unwrap_or("Unknown");
            let result = match p.required("Action").and_then(|_| check_version(&p)) {
                Ok(()) => dispatch(r.ctx, &action, &p).await,
                Err(e) => Err(e),
            };
            flotilla_api::query_reply::respond(DIALECT, &action, operation, r.request_id, result)
        })
    }

    fn start(&self, ctx: &flotilla_api::Ctx) -> Vec<flotilla_api::supervisor::LoopHandle> {
        match &self.nodes {
            Some(_) => crate::nodes::start(ctx),
            None => Vec::new(),
        }
    }

    fn routes(
        &self,
        ctx: &flotilla_api::Ctx,
        auth: Option<Arc<flotilla_api::auth::Authenticator>>,
    ) -> Option<axum::Router> {
        self.nodes.as_deref().map(|secret| crate::nodes::routes(ctx, auth, secret))
    }

    fn error(&self, _signing_name: &'static str, request_id: &str, error: &ApiError) -> Response<Body> {
        flotilla_api::query_reply::server_error(DIALECT, request_id, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_only_unambiguous_actions_without_a_version() {
        let api = ElbApi { nodes: None };
        assert_eq!(api.claims("CreateTargetGroup", None), Some(SIGNING_NAME));
        assert_eq!(api.claims("CreateLoadBalancer", None), None);
        assert_eq!(api.claims("DescribeTags", None), None);
        assert_eq!(api.claims("DescribeTags", Some(VERSION)), Some(SIGNING_NAME));
        assert_eq!(api.claims("CreateLoadBalancer", Some(CLASSIC_VERSION)), Some(SIGNING_NAME));
        assert_eq!(api.claims("CreateTargetGroup", Some("2011-01-01")), None);
        assert_eq!(api.claims("DescribeVpcs", Some(VERSION)), None);
    }

    #[test]
    fn classic_calls_are_refused_with_a_pointer_to_v2() {
        let p = Params::from_pairs(DIALECT, [("Action", "CreateLoadBalancer"), ("Version", CLASSIC_VERSION)]);
        let e = check_version(&p).unwrap_err();
        assert_eq!(e.code, "InvalidAction");
        assert!(e.message.contains("Classic Load Balancers") && e.message.contains(VERSION), "{}", e.message);
        assert!(check_version(&Params::from_pairs(DIALECT, [("Version", VERSION)])).is_ok());
    }
}
