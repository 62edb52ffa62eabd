//! The CloudWatch Logs API (`logs`, JSON 1.1, `X-Amz-Target: Logs_20140328.<Operation>`), served
//! on the control plane's listener as a [`flotilla_api::Extension`]: routed by the SigV4 signing
//! name, or by the target prefix when unsigned. It also offers the agents' log sink and starts
//! the retention loop.

mod events;
mod filter_events;
mod groups;
pub mod input;
mod streams;
pub mod tokens;

use std::sync::Arc;

use axum::body::Body;
use axum::http::Response;
use flotilla_api::{ApiError, Ctx, Extension, ExtensionRequest, ExtensionResponse};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::error::{LogsError, Result};
pub use events::{MAX_BATCH_BYTES, MAX_EVENTS, MAX_MESSAGE_BYTES};
pub use groups::RETENTION_DAYS;

pub const SIGNING_NAME: &str = "logs";
pub const TARGET_PREFIX: &str = "Logs_20140328";

/// Every operation, with its name as `'static` for the metrics.
const OPERATIONS: &[&str] = &[
    "CreateLogGroup",
    "DescribeLogGroups",
    "DeleteLogGroup",
    "PutRetentionPolicy",
    "DeleteRetentionPolicy",
    "CreateLogStream",
    "DescribeLogStreams",
    "DeleteLogStream",
    "PutLogEvents",
    "GetLogEvents",
    "FilterLogEvents",
];

pub struct LogsApi;

async fn dispatch(ctx: &Ctx, op: &str, input: &input::Input) -> Result<Value> {
    match op {
        "CreateLogGroup" => groups::create(ctx, input).await,
        "DescribeLogGroups" => groups::describe(ctx, input).await,
        "DeleteLogGroup" => groups::delete(ctx, input).await,
        "PutRetentionPolicy" => groups::put_retention(ctx, input).await,
        "DeleteRetentionPolicy" => groups::delete_retention(ctx, input).await,
        "CreateLogStream" => streams::create(ctx, input).await,
        "DescribeLogStreams" => streams::describe(ctx, input).await,
        "DeleteLogStream" => streams::delete(ctx, input).await,
        "PutLogEvents" => events::put(ctx, input).await,
        "GetLogEvents" => events::get(ctx, input).await,
        "FilterLogEvents" => filter_events::filter(ctx, input).await,
        _ => Err(LogsError::new("UnknownOperationException", format!("Unknown operation {op}."))),
    }
}

impl Extension for LogsApi {
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
                None => Err(LogsError::new("UnknownOperationException", format!("Unknown operation {target:?}."))),
                Some(op) => match input::Input::parse(request.body) {
                    Ok(input) => dispatch(request.ctx, op, &input).await,
                    Err(e) => Err(e),
                },
            };
            flotilla_api::json_service::answer(request.request_id, "CloudWatch Logs", op.unwrap_or("Unknown"), result)
        })
    }

    fn error(&self, _signing_name: &'static str, request_id: &str, error: &ApiError) -> Response<Body> {
        let body = serde_json::json!({ "__type": error.code, "message": error.message });
        flotilla_api::json_service::respond(request_id, error.status(), &body)
    }

    fn start(&self, ctx: &Ctx) -> Vec<flotilla_api::supervisor::LoopHandle> {
        vec![crate::retention::start(ctx)]
    }

    fn log_sink(&self) -> Option<Arc<dyn flotilla_api::LogSink>> {
        Some(Arc::new(crate::sink::StoreSink))
    }
}
