//! CloudWatch Logs' errors: HTTP 400 (500 for the store's failures) and
//! `{"__type": "<code>", "message": "..."}`.

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct LogsError {
    pub code: &'static str,
    pub message: String,
    pub status: u16,
}

pub type Result<T> = std::result::Result<T, LogsError>;

impl LogsError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        LogsError { code, message: message.into(), status: 400 }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        LogsError::new("InvalidParameterException", message)
    }
    /// AWS's wording for a member that breaks its model's constraint.
    pub fn constraint(field: &str, value: &str, constraint: &str) -> Self {
        LogsError::invalid(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
        ))
    }
    pub fn internal(message: impl Into<String>) -> Self {
        LogsError { status: 500, ..LogsError::new("ServiceUnavailableException", message) }
    }
    pub fn group_not_found() -> Self {
        LogsError::new("ResourceNotFoundException", "The specified log group does not exist.")
    }
    pub fn stream_not_found() -> Self {
        LogsError::new("ResourceNotFoundException", "The specified log stream does not exist.")
    }
    pub fn group_exists() -> Self {
        LogsError::new("ResourceAlreadyExistsException", "The specified log group already exists")
    }
    pub fn stream_exists() -> Self {
        LogsError::new("ResourceAlreadyExistsException", "The specified log stream already exists")
    }

    pub fn body(&self) -> Value {
        json!({ "__type": self.code, "message": self.message })
    }
}

impl flotilla_api::json_service::JsonError for LogsError {
    fn code(&self) -> &'static str {
        self.code
    }
    fn status(&self) -> u16 {
        self.status
    }
    fn message(&self) -> &str {
        &self.message
    }
    fn body(&self) -> Value {
        LogsError::body(self)
    }
}
