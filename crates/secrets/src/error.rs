//! The errors both services answer with: HTTP 400 (500 for the server's own failures) and the
//! JSON 1.1 body `{"__type": "<code>", "message": "..."}` that the SDKs read.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    pub code: &'static str,
    pub message: String,
    pub status: u16,
}

pub type Result<T> = std::result::Result<T, AwsError>;

impl AwsError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        AwsError { code, message: message.into(), status: 400 }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        AwsError { status: 500, ..AwsError::new("InternalServerError", message) }
    }
    /// SSM's validation error, naming the member.
    pub fn validation(message: impl Into<String>) -> Self {
        AwsError::new("ValidationException", message)
    }
    /// Secrets Manager's error for a bad member value.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        AwsError::new("InvalidParameterException", message)
    }
    pub fn body(&self) -> Value {
        serde_json::json!({ "__type": self.code, "message": self.message, "Message": self.message })
    }
}

impl flotilla_api::json_service::JsonError for AwsError {
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
        AwsError::body(self)
    }
}
