//! The Auto Scaling API (`autoscaling`, version 2011-01-01): groups over launch templates (plain
//! or with a MixedInstancesPolicy), their capacity, instances, tags, activities and policies.

mod activities;
mod groups;
mod input;
mod instances;
mod shapes;
mod tags;

use axum::body::Body;
use axum::http::Response;
use flotilla_api::supervisor::LoopHandle;
use flotilla_api::{ApiError, Ctx, Extension, ExtensionRequest, ExtensionResponse};
use flotilla_query::{Dialect, Params, Xml};
use futures::future::BoxFuture;

use super::Result;
use flotilla_api::query_reply::{invalid_action, respond, server_error};

pub const VERSION: &str = "2011-01-01";
pub const DIALECT: Dialect = Dialect::Query { xmlns: "http://autoscaling.amazonaws.com/doc/2011-01-01/" };

/// The Auto Scaling API, and the loops that act on what it writes.
pub struct AutoScalingApi {
    loops: super::Starter,
}

impl AutoScalingApi {
    pub fn new(loops: super::Starter) -> Self {
        AutoScalingApi { loops }
    }
}

/// The actions served, as the metrics label them.
const ACTIONS: &[&str] = &[
    "CreateAutoScalingGroup",
    "UpdateAutoScalingGroup",
    "DescribeAutoScalingGroups",
    "DeleteAutoScalingGroup",
    "SetDesiredCapacity",
    "SetInstanceProtection",
    "TerminateInstanceInAutoScalingGroup",
    "DescribeAutoScalingInstances",
    "DescribeScalingActivities",
    "DescribePolicies",
    "CreateOrUpdateTags",
    "DeleteTags",
    "DescribeTags",
];

async fn dispatch(ctx: &Ctx, action: &str, p: &Params) -> Result<Xml> {
    match action {
        "CreateAutoScalingGroup" => groups::create(ctx, p).await,
        "UpdateAutoScalingGroup" => groups::update(ctx, p).await,
        "DescribeAutoScalingGroups" => groups::describe(ctx, p).await,
        "DeleteAutoScalingGroup" => groups::delete(ctx, p).await,
        "SetDesiredCapacity" => groups::set_desired_capacity(ctx, p).await,
        "SetInstanceProtection" => instances::set_protection(ctx, p).await,
        "TerminateInstanceInAutoScalingGroup" => instances::terminate(ctx, p).await,
        "DescribeAutoScalingInstances" => instances::describe(ctx, p).await,
        "DescribeScalingActivities" => activities::describe_activities(ctx, p).await,
        "DescribePolicies" => activities::describe_policies(ctx, p).await,
        "CreateOrUpdateTags" => tags::create_or_update(ctx, p).await,
        "DeleteTags" => tags::delete(ctx, p).await,
        "DescribeTags" => tags::describe(ctx, p).await,
        other => Err(invalid_action(other)),
    }
}

impl Extension for AutoScalingApi {
    fn signing_names(&self) -> &'static [&'static str] {
        &["autoscaling"]
    }

    fn claims(&self, action: &str, version: Option<&str>) -> Option<&'static str> {
        (version.is_none_or(|v| v == VERSION) && ACTIONS.contains(&action)).then_some("autoscaling")
    }

    fn handle<'a>(&'a self, r: ExtensionRequest<'a>) -> BoxFuture<'a, ExtensionResponse> {
        Box::pin(async move {
            let p = Params::parse(r.body, DIALECT);
            let action = p.action().unwrap_or_default().to_string();
            let operation = ACTIONS.iter().find(|a| **a == action).copied().unwrap_or("Unknown");
            let result = match p.required("Action") {
                Ok(_) => dispatch(r.ctx, &action, &p).await,
                Err(e) => Err(e),
            };
            respond(DIALECT, &action, operation, r.request_id, result)
        })
    }

    fn error(&self, _signing_name: &'static str, request_id: &str, error: &ApiError) -> Response<Body> {
        server_error(DIALECT, request_id, error)
    }

    fn start(&self, ctx: &Ctx) -> Vec<LoopHandle> {
        (self.loops)(ctx)
    }

    /// The admin endpoint that gives Spot hosts their interruption notice (`flotilla spot interrupt`).
    fn routes(
        &self,
        ctx: &flotilla_api::Ctx,
        auth: Option<std::sync::Arc<flotilla_api::auth::Authenticator>>,
    ) -> Option<axum::Router> {
        Some(crate::spot::router(ctx.clone(), auth))
    }
}
