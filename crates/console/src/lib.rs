//! The web console, served by `flotilla server` at `/console`.
//!
//! The browser holds the access key pair (in the tab's `sessionStorage`, never sent) and signs
//! every request with SigV4 as the AWS SDKs do. The server answers three kinds of request
//! (`routes`):
//! - `GET /console[/...]`: the shell, one static page with no data in it (sign-in form, navigation,
//!   an empty `<main>`), whatever the path, so every console URL can be bookmarked;
//! - `GET /console/static/FILE`: the script and style sheet (`assets/`), no build step;
//! - `GET /console/view/PATH?QUERY`: the HTML fragment of one page, rendered on the server from the
//!   control plane's cache (`views`), SigV4-signed like the ECS API and refused to any key but the
//!   root pair's, with an ETag so the script's once-a-second refresh costs a 304 when nothing changed.
//!
//! Actions never go through the console: the script calls the ECS API itself (`POST /` with
//! `X-Amz-Target`), and follows logs on `GET /v1/logs?follow=true`, so a user sees the same errors
//! the aws CLI prints.
//!
//! # The fragment markup the script understands
//! - `<a href="/console/...">`: navigation inside the console (no page reload).
//! - `<button class="action" data-target="AmazonEC2ContainerServiceV20141113.OP" data-body='JSON'
//!   [data-confirm="question"] [data-done="message"]>`: one signed API call with that body.
//! - `<form class="action" data-target=... data-body='JSON' [data-done=...]>` with named fields: on
//!   submit the body is `data-body` with each field set on it: `data-type="int"` as a number,
//!   `"bool"` (a checkbox) as true/false, `"json"` parsed as JSON, `"body"` parsed as JSON and
//!   merged over the whole body; otherwise the field's text.
//! - `<pre class="logs" id=... data-keep data-logs-cluster=C data-logs-task=ARN>`: the task's
//!   output, followed live.
//! - `data-keep` with an `id`: the element is carried over unchanged when the view refreshes (a
//!   form being filled, a log being followed).
//! - The fragment's first `<h1>` is the page title.

pub mod html;
mod routes;
pub mod views;

use std::sync::Arc;

use axum::body::Body;
use axum::http::Response;
use axum::Router;
use flotilla_api::auth::Authenticator;
use flotilla_api::{ApiError, Ctx, Extension, ExtensionRequest, ExtensionResponse};
use futures::future::BoxFuture;

pub use routes::{router, CONSOLE_PATH, VIEW_PATH};

/// The console as a server extension: it adds routes and serves no AWS service.
pub struct Console;

/// The console, for `flotilla server`'s extension list.
pub fn extension() -> Arc<dyn Extension> {
    Arc::new(Console)
}

impl Extension for Console {
    fn signing_names(&self) -> &'static [&'static str] {
        &[]
    }

    fn claims(&self, _action: &str, _version: Option<&str>) -> Option<&'static str> {
        None
    }

    fn handle<'a>(&'a self, request: ExtensionRequest<'a>) -> BoxFuture<'a, ExtensionResponse> {
        // Unreachable: with no signing name, no request is routed here.
        let error = ApiError::new("UnknownOperationException", "The console serves no AWS operation.");
        let response = self.error(request.signing_name, request.request_id, &error);
        Box::pin(async move { ExtensionResponse { response, operation: "Unknown", error: Some(error.code) } })
    }

    fn error(&self, _signing_name: &'static str, request_id: &str, error: &ApiError) -> Response<Body> {
        flotilla_api::protocol::error_response(request_id, error)
    }

    fn routes(&self, ctx: &Ctx, auth: Option<Arc<Authenticator>>) -> Option<Router> {
        Some(router(ctx.clone(), auth))
    }
}
