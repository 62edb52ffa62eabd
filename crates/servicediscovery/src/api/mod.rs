//! The Cloud Map API (`servicediscovery`, JSON 1.1, `X-Amz-Target:
//! Route53AutoNaming_v20170314.<Operation>`), served on the control plane's listener as a
//! [`flotilla_api::Extension`]: routed by the SigV4 signing name, or by the target prefix when
//! unsigned. Every operation reads and writes the `flotilla-endpoints` Cloud Map records.

mod discover;
mod error;
mod filters;
mod input;
mod instances;
mod namespaces;
mod operations;
mod paging;
mod services;
mod shapes;
mod store;
mod tags;

use axum::body::Body;
use axum::http::Response;
use flotilla_api::{ApiError, Ctx, Extension, ExtensionRequest, ExtensionResponse};
use flotilla_endpoints::cloudmap::NamespaceType;
use futures::future::BoxFuture;
use serde_json::Value;

pub use discover::{select, HealthFilter};
pub use error::SdError;

pub const SIGNING_NAME: &str = "servicediscovery";
pub const TARGET_PREFIX: &str = "Route53AutoNaming_v20170314";

/// Every operation, with its name as `'static` for the metrics.
const OPERATIONS: &[&str] = &[
    "CreatePrivateDnsNamespace",
    "CreatePublicDnsNamespace",
    "CreateHttpNamespace",
    "GetNamespace",
    "ListNamespaces",
    "DeleteNamespace",
    "UpdatePrivateDnsNamespace",
    "UpdateHttpNamespace",
    "UpdatePublicDnsNamespace",
    "GetOperation",
    "ListOperations",
    "CreateService",
    "GetService",
    "ListServices",
    "UpdateService",
    "DeleteService",
    "RegisterInstance",
    "DeregisterInstance",
    "GetInstance",
    "ListInstances",
    "DiscoverInstances",
    "DiscoverInstancesRevision",
    "GetInstancesHealthStatus",
    "UpdateInstanceCustomHealthStatus",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
];

pub struct CloudMapApi;

async fn dispatch(ctx: &Ctx, op: &str, input: &input::Input) -> error::Result<Value> {
    match op {
        "CreatePrivateDnsNamespace" => namespaces::create(ctx, input, NamespaceType::DnsPrivate).await,
        "CreatePublicDnsNamespace" => namespaces::create(ctx, input, NamespaceType::DnsPublic).await,
        "CreateHttpNamespace" => namespaces::create(ctx, input, NamespaceType::Http).await,
        "GetNamespace" => namespaces::get(ctx, input).await,
        "ListNamespaces" => namespaces::list(ctx, input).await,
        "DeleteNamespace" => namespaces::delete(ctx, input).await,
        "UpdatePrivateDnsNamespace" => namespaces::update(ctx, input, NamespaceType::DnsPrivate).await,
        "UpdateHttpNamespace" => namespaces::update(ctx, input, NamespaceType::Http).await,
        "UpdatePublicDnsNamespace" => Err(SdError::invalid("Public DNS namespaces are not supported by Flotilla.")),
        "GetOperation" => operations::get(ctx, input).await,
        "ListOperations" => operations::list(ctx, input).await,
        "CreateService" => services::create(ctx, input).await,
        "GetService" => services::get(ctx, input).await,
        "ListServices" => services::list(ctx, input).await,
        "UpdateService" => services::update(ctx, input).await,
        "DeleteService" => services::delete(ctx, input).await,
        "RegisterInstance" => instances::register(ctx, input).await,
        "DeregisterInstance" => instances::deregister(ctx, input).await,
        "GetInstance" => instances::get(ctx, input).await,
        "ListInstances" => instances::list(ctx, input).await,
        "DiscoverInstances" => discover::discover(ctx, input).await,
        "DiscoverInstancesRevision" => discover::revision(ctx, input).await,
        "GetInstancesHealthStatus" => instances::health_status(ctx, input).await,
        "UpdateInstanceCustomHealthStatus" => instances::update_custom_health(ctx, input).await,
        "TagResource" => tags::tag_resource(ctx, input).await,
        "UntagResource" => tags::untag_resource(ctx, input).await,
        "ListTagsForResource" => tags::list_tags(ctx, input).await,
        _ => Err(SdError::new("UnknownOperationException", format!("Unknown operation {op}."))),
    }
}

impl Extension for CloudMapApi {
    fn signing_names(&self) -> &'static [&'static str] {
        &[SIGNING_NAME]
    }

    fn claims(&self, _action: &str, _version: Option<&str>) -> Option<&'static str> {
        None
    }

    fn claims_target(&self, prefix: &str) -> Option<&'static str> {
        (prefix == TARGET_PREFIX).then_some(SIGNING_NAME)
    }

    fn handle<'a>(&'a self, request: ExtensionRequest<'a>) -> BoxFuture<'a, ExtensionResponse> {
        Box::pin(async move {
            let target = request.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let op = flotilla_api::json_service::operation(target, TARGET_PREFIX, OPERATIONS);
            let result = match op {
                None => Err(SdError::new("UnknownOperationException", format!("Unknown operation {target:?}."))),
                Some(op) => match input::Input::parse(request.body) {
                    Ok(input) => dispatch(request.ctx, op, &input).await,
                    Err(e) => Err(e),
                },
            };
            flotilla_api::json_service::answer(request.request_id, "Cloud Map", op.unwrap_or("Unknown"), result)
        })
    }

    fn error(&self, _signing_name: &'static str, request_id: &str, error: &ApiError) -> Response<Body> {
        let body = serde_json::json!({ "__type": error.code, "Message": error.message });
        flotilla_api::json_service::respond(request_id, error.status(), &body)
    }
}
