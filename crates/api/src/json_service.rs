//! What the JSON 1.1 services served beside ECS (Cloud Map, CloudWatch Logs, SSM, Secrets
//! Manager) share: the operation an `X-Amz-Target` header names, and the answer, with its
//! content type, request id, HTTP status and the labels the server's metrics count.

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode};
use serde_json::Value;

use crate::extensions::ExtensionResponse;

/// The content type of every JSON 1.1 answer.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// An error of one of these services, as its own wire format writes it.
pub trait JsonError {
    fn code(&self) -> &'static str;
    fn status(&self) -> u16;
    fn message(&self) -> &str;
    /// The error's JSON body (`__type` and the service's spelling of the message).
    fn body(&self) -> Value;
}

/// The operation `target` (`PREFIX.Operation`) names, if it is one of `operations`.
pub fn operation(target: &str, prefix: &str, operations: &[&'static str]) -> Option<&'static str> {
    let name = target.strip_prefix(prefix)?.strip_prefix('.')?;
    operations.iter().find(|o| **o == name).copied()
}

/// A JSON answer with the request's id.
pub fn respond(request_id: &str, status: u16, body: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    r.headers_mut().insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = request_id.parse() {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

/// The extension's answer to one request of `operation`; server errors are logged under
/// `service`, since the client sees only their code.
pub fn answer<E: JsonError>(
    request_id: &str,
    service: &str,
    operation: &'static str,
    result: Result<Value, E>,
) -> ExtensionResponse {
    match result {
        Ok(body) => ExtensionResponse { response: respond(request_id, 200, &body), operation, error: None },
        Err(e) => {
            if e.status() >= 500 {
                tracing::error!(service, operation, code = e.code(), message = %e.message(), "request failed");
            }
            ExtensionResponse { response: respond(request_id, e.status(), &e.body()), operation, error: Some(e.code()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Oops;
    impl JsonError for Oops {
        fn code(&self) -> &'static str {
            "ResourceNotFoundException"
        }
        fn status(&self) -> u16 {
            400
        }
        fn message(&self) -> &str {
            "gone"
        }
        fn body(&self) -> Value {
            serde_json::json!({"__type": self.code(), "message": self.message()})
        }
    }

    #[test]
    fn the_target_names_one_of_the_operations() {
        let ops = ["GetLogEvents", "PutLogEvents"];
        assert_eq!(operation("Logs_20140328.GetLogEvents", "Logs_20140328", &ops), Some("GetLogEvents"));
        assert_eq!(operation("Logs_20140328.Nope", "Logs_20140328", &ops), None);
        assert_eq!(operation("Other.GetLogEvents", "Logs_20140328", &ops), None);
        assert_eq!(operation("Logs_20140328GetLogEvents", "Logs_20140328", &ops), None);
    }

    #[test]
    fn errors_answer_with_their_status_code_and_body() {
        let out = answer::<Oops>("r-1", "test", "GetLogEvents", Err(Oops));
        assert_eq!(out.response.status(), 400);
        assert_eq!(out.error, Some("ResourceNotFoundException"));
        assert_eq!(out.response.headers()["x-amzn-requestid"], "r-1");
        let ok = answer::<Oops>("r-2", "test", "GetLogEvents", Ok(serde_json::json!({})));
        assert_eq!((ok.response.status().as_u16(), ok.error), (200, None));
        assert_eq!(ok.response.headers()["content-type"], CONTENT_TYPE);
    }
}
