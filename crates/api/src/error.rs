//! API errors in ECS's shapes: a code that SDKs map to an exception class, and a message.

use flotilla_model::Invalid;
use flotilla_store::StoreError;

/// An error answered to a client: `{"__type": code, "message": ...}` plus any modeled members.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    /// Extra modeled members, such as ConflictException's `resourceIds`.
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), extra: None }
    }

    /// HTTP status: 500 for faults, 400 for everything the client can fix.
    pub fn status(&self) -> u16 {
        match self.code {
            "ServerException" => 500,
            _ => 400,
        }
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterException", message)
    }
    pub fn client(message: impl Into<String>) -> Self {
        Self::new("ClientException", message)
    }
    pub fn server(message: impl Into<String>) -> Self {
        Self::new("ServerException", message)
    }
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new("SerializationException", message)
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new("UnsupportedFeatureException", message)
    }
    pub fn cluster_not_found() -> Self {
        Self::new("ClusterNotFoundException", "Cluster not found.")
    }
    pub fn service_not_found() -> Self {
        Self::new("ServiceNotFoundException", "Service not found.")
    }
    pub fn service_not_active() -> Self {
        Self::new("ServiceNotActiveException", "Service was not ACTIVE.")
    }
    pub fn target_not_found(message: impl Into<String>) -> Self {
        Self::new("TargetNotFoundException", message)
    }
    pub fn resource_not_found(message: impl Into<String>) -> Self {
        Self::new("ResourceNotFoundException", message)
    }
    pub fn conflict(message: impl Into<String>, resource_ids: Vec<String>) -> Self {
        let mut extra = serde_json::Map::new();
        extra.insert("resourceIds".into(), resource_ids.into());
        ApiError { code: "ConflictException", message: message.into(), extra: Some(extra) }
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::invalid_parameter(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::server(format!("The store could not complete the request: {e}"))
    }
}

impl From<flotilla_model::rules::RuleError> for ApiError {
    fn from(e: flotilla_model::rules::RuleError) -> Self {
        match e.kind {
            flotilla_model::rules::RuleErrorKind::InvalidParameter => ApiError::invalid_parameter(e.message),
            flotilla_model::rules::RuleErrorKind::Client => ApiError::client(e.message),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
