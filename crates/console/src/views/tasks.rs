//! Stub: the tasks pages, not built yet.

use flotilla_api::ApiError;

use super::{not_built, View, ViewRequest};

pub async fn index(_req: &ViewRequest<'_>, _cluster: &str) -> Result<View, ApiError> {
    Err(not_built("tasks"))
}

pub async fn show(_req: &ViewRequest<'_>, _cluster: &str, _task: &str) -> Result<View, ApiError> {
    Err(not_built("task"))
}
