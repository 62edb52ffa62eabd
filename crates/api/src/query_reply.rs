//! What the query-protocol extensions (EC2, Auto Scaling, ELBv2) share between a handler's result
//! and the HTTP answer: the dialect's envelope or error document, the operation label for
//! metrics, and errors the server raised before the handler (signatures, authorization) restated
//! in the service's own codes.

use axum::body::Body;
use axum::http::Response;
use flotilla_query::{Dialect, QueryError, Xml};

use crate::error::ApiError;
use crate::extensions::ExtensionResponse;

type Result<T> = std::result::Result<T, QueryError>;

/// The answer to one request: the result (written inside the envelope) or its error.
pub fn respond(
    dialect: Dialect,
    action: &str,
    operation: &'static str,
    request_id: &str,
    result: Result<Xml>,
) -> ExtensionResponse {
    match result {
        Ok(body) => ExtensionResponse {
            response: flotilla_query::xml::ok_response(dialect, action, request_id, |x| {
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
                response: e.to_response(dialect, request_id).map(Body::from),
                operation,
                error: Some(e.code),
            }
        }
    }
}

/// An error of the server's own (`ApiError`, in ECS's codes) in the service's codes and format.
pub fn server_error(dialect: Dialect, request_id: &str, e: &ApiError) -> Response<Body> {
    let ec2 = dialect == Dialect::Ec2;
    let (code, status) = match e.code {
        "AccessDeniedException" if ec2 => ("UnauthorizedOperation", 403),
        "AccessDeniedException" => ("AccessDenied", 403),
        "ServerException" if ec2 => ("InternalError", 500),
        "ServerException" => ("InternalFailure", 500),
        "MissingAuthenticationTokenException" => ("MissingAuthenticationToken", 403),
        "IncompleteSignatureException" => ("IncompleteSignature", 403),
        "InvalidSignatureException" => ("SignatureDoesNotMatch", 403),
        "UnrecognizedClientException" if ec2 => ("AuthFailure", 401),
        "UnrecognizedClientException" => ("InvalidClientTokenId", 403),
        other => (other, 400),
    };
    QueryError { code, message: e.message.clone(), status }.to_response(dialect, request_id).map(Body::from)
}

/// `InvalidAction`: an action the service does not have.
pub fn invalid_action(action: &str) -> QueryError {
    QueryError::new("InvalidAction", format!("The action {action} is not valid for this web service."))
}
