//! Cloud Map's errors: HTTP 400 and `{"__type": "<shape name>", "Message": "..."}`, some with
//! extra members (`NamespaceAlreadyExists` names the namespace and its request id).

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct SdError {
    pub code: &'static str,
    pub message: String,
    pub status: u16,
    pub extra: Map<String, Value>,
}

pub type Result<T> = std::result::Result<T, SdError>;

impl SdError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        SdError { code, message: message.into(), status: 400, extra: Map::new() }
    }
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.extra.insert(key.to_string(), Value::String(value.into()));
        self
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        SdError::new("InvalidInput", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        SdError { status: 500, ..SdError::new("InternalFailure", message) }
    }
    pub fn namespace_not_found(id: &str) -> Self {
        SdError::new("NamespaceNotFound", format!("Namespace not found: {id}"))
    }
    pub fn service_not_found(id: &str) -> Self {
        SdError::new("ServiceNotFound", format!("Service not found: {id}"))
    }
    pub fn instance_not_found(id: &str) -> Self {
        SdError::new("InstanceNotFound", format!("Instance not found: {id}"))
    }

    pub fn body(&self) -> Value {
        let mut body = self.extra.clone();
        body.insert("__type".into(), Value::String(self.code.into()));
        body.insert("Message".into(), Value::String(self.message.clone()));
        Value::Object(body)
    }
}

impl flotilla_api::json_service::JsonError for SdError {
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
        SdError::body(self)
    }
}
