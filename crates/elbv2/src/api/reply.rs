//! Between a handler's result and the HTTP answer: the query envelope or ELB's error document,
//! the operation label for metrics, and errors the server raised before the handler
//! (signatures, authorization) restated in ELB's codes.

use axum::body::Body;
use axum::http::Response;
use flotilla_api::{ApiError, ExtensionResponse};
use flotilla_query::{QueryError, Xml};

use super::{Result, DIALECT};

/// The answer to one request: the result (written inside the envelope) or its error.
pub fn respond(action: &str, operation: &'static str, request_id: &str, result: Result<Xml>) -> ExtensionResponse {
    match result {
        Ok(body) => ExtensionResponse {
            response: flotilla_query::xml::ok_response(DIALECT, action, request_id, |x| {
                x.append(body);
            })
            .map(Body::from),
            operation,
            error: None,
        },
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(operation, code = e.code, message = %e.message, "request failed");
            } else {
                tracing::debug!(operation, code = e.code, message = %e.message, "request refused");
            }
            ExtensionResponse {
                response: e.to_response(DIALECT, request_id).map(Body::from),
                operation,
                error: Some(e.code),
            }
        }
    }
}

/// An error of the server's own (`ApiError`, in ECS's codes) in ELB's codes and format.
pub fn server_error(request_id: &str, e: &ApiError) -> Response<Body> {
    let (code, status) = match e.code {
        "AccessDeniedException" => ("AccessDenied", 403),
        "ServerException" => ("InternalFailure", 500),
        "MissingAuthenticationTokenException" => ("MissingAuthenticationToken", 403),
        "IncompleteSignatureException" => ("IncompleteSignature", 403),
        "InvalidSignatureException" => ("SignatureDoesNotMatch", 403),
        "UnrecognizedClientException" => ("InvalidClientTokenId", 403),
        other => (other, 400),
    };
    QueryError { code, message: e.message.clone(), status }.to_response(DIALECT, request_id).map(Body::from)
}

/// `InvalidAction`: an action ELBv2 does not have.
pub fn invalid_action(action: &str) -> QueryError {
    QueryError::new("InvalidAction", format!("The action {action} is not valid for this web service."))
}
