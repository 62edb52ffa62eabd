//! Stub: the capacity providers pages, not built yet.

use flotilla_api::ApiError;

use super::{not_built, View, ViewRequest};

pub async fn index(_req: &ViewRequest<'_>) -> Result<View, ApiError> {
    Err(not_built("capacity providers"))
}

pub async fn show(_req: &ViewRequest<'_>, _name: &str) -> Result<View, ApiError> {
    Err(not_built("capacity provider"))
}
