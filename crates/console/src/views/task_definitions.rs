//! Stub: the task definitions pages, not built yet.

use flotilla_api::ApiError;

use super::{not_built, View, ViewRequest};

pub async fn families(_req: &ViewRequest<'_>) -> Result<View, ApiError> {
    Err(not_built("task definitions"))
}

pub async fn revisions(_req: &ViewRequest<'_>, _family: &str) -> Result<View, ApiError> {
    Err(not_built("task definition revisions"))
}

pub async fn show(_req: &ViewRequest<'_>, _family: &str, _revision: &str) -> Result<View, ApiError> {
    Err(not_built("task definition"))
}
