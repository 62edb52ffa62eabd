//! The EC2 API (`ec2`, version 2016-11-15) as far as Auto Scaling needs it: launch templates,
//! DescribeInstances over the hosts, the region's default VPC (`flotilla_hosts::network`) and the
//! subnets made in it with CreateSubnet.

mod filters;
mod instances;
pub(crate) mod launch_templates;
mod network;
pub mod subnets;
mod template_xml;

use axum::body::Body;
use axum::http::Response;
use flotilla_api::{ApiError, Ctx, Extension, ExtensionRequest, ExtensionResponse};
use flotilla_query::{Dialect, Params, QueryError, Xml};
use futures::future::BoxFuture;

use super::Result;
use flotilla_api::query_reply::{invalid_action, respond, server_error};

pub const VERSION: &str = "2016-11-15";

/// The EC2 API.
pub struct Ec2Api;

/// The actions served, as the metrics label them.
const ACTIONS: &[&str] = &[
    "CreateLaunchTemplate",
    "CreateLaunchTemplateVersion",
    "DescribeLaunchTemplates",
    "DescribeLaunchTemplateVersions",
    "ModifyLaunchTemplate",
    "DeleteLaunchTemplate",
    "DescribeInstances",
    "DescribeVpcs",
    "DescribeSubnets",
    "CreateSubnet",
    "DeleteSubnet",
    "DescribeSecurityGroups",
    "DescribeAvailabilityZones",
];

async fn dispatch(ctx: &Ctx, action: &str, p: &Params) -> Result<Xml> {
    match action {
        "CreateLaunchTemplate" => launch_templates::create(ctx, p).await,
        "CreateLaunchTemplateVersion" => launch_templates::create_version(ctx, p).await,
        "DescribeLaunchTemplates" => launch_templates::describe(ctx, p).await,
        "DescribeLaunchTemplateVersions" => launch_templates::describe_versions(ctx, p).await,
        "ModifyLaunchTemplate" => launch_templates::modify(ctx, p).await,
        "DeleteLaunchTemplate" => launch_templates::delete(ctx, p).await,
        "DescribeInstances" => instances::describe(ctx, p).await,
        "DescribeVpcs" => network::describe_vpcs(ctx, p),
        "DescribeSubnets" => subnets::describe(ctx, p).await,
        "CreateSubnet" => subnets::create(ctx, p).await,
        "DeleteSubnet" => subnets::delete(ctx, p).await,
        "DescribeSecurityGroups" => network::describe_security_groups(ctx, p),
        "DescribeAvailabilityZones" => network::describe_availability_zones(ctx, p),
        other => Err(invalid_action(other)),
    }
}

impl Extension for Ec2Api {
    fn signing_names(&self) -> &'static [&'static str] {
        &["ec2"]
    }

    fn claims(&self, action: &str, version: Option<&str>) -> Option<&'static str> {
        (version.is_none_or(|v| v == VERSION) && ACTIONS.contains(&action)).then_some("ec2")
    }

    fn handle<'a>(&'a self, r: ExtensionRequest<'a>) -> BoxFuture<'a, ExtensionResponse> {
        Box::pin(async move {
            let p = Params::parse(r.body, Dialect::Ec2);
            let action = p.action().unwrap_or_default().to_string();
            let operation = ACTIONS.iter().find(|a| **a == action).copied().unwrap_or("Unknown");
            let result = match (p.required("Action"), p.bool("DryRun")) {
                (Err(e), _) | (_, Err(e)) => Err(e),
                // Flotilla has no permissions to check: a dry run would always have succeeded.
                (Ok(_), Ok(Some(true))) => Err(QueryError {
                    code: "DryRunOperation",
                    message: "Request would have succeeded, but DryRun flag is set.".into(),
                    status: 412,
                }),
                (Ok(_), Ok(_)) => dispatch(r.ctx, &action, &p).await,
            };
            respond(Dialect::Ec2, &action, operation, r.request_id, result)
        })
    }

    fn error(&self, _signing_name: &'static str, request_id: &str, error: &ApiError) -> Response<Body> {
        server_error(Dialect::Ec2, request_id, error)
    }
}
