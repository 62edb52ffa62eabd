//! Stub: the cluster pages, not built yet.

use flotilla_api::ApiError;

use super::{not_built, View, ViewRequest};

pub async fn show(_req: &ViewRequest<'_>, _cluster: &str) -> Result<View, ApiError> {
    Err(not_built("cluster"))
}
