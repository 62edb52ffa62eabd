//! The AWS JSON 1.1 protocol: routing on `X-Amz-Target`, decoding bodies, shaping answers.

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;
use flotilla_model::Operation;

/// The target prefix every ECS operation name is qualified with.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Reads the operation from an `X-Amz-Target` header value.
pub fn operation_of(target: Option<&str>) -> Result<Operation, ApiError> {
    let unknown =
        || ApiError::new("UnknownOperationException", "The requested operation is not recognized by the service.");
    let target = target.ok_or_else(unknown)?;
    let name = target.strip_prefix(TARGET_PREFIX).ok_or_else(unknown)?;
    Operation::from_name(name).ok_or_else(unknown)
}

/// Decodes a request body: empty means `{}`; anything but a JSON object of the right member
/// types is a SerializationException. Unknown members are ignored, as AWS does.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::serialization("Start of structure or map found where not expected."));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::serialization(describe_json_error(&e)))
}

fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => format!("The request body does not match the operation's input shape: {e}"),
        Category::Syntax | Category::Eof | Category::Io => {
            format!("The request body is not valid JSON: {e}")
        }
    }
}

/// A successful answer.
pub fn ok_response<T: Serialize>(request_id: &str, output: &T) -> Response<Body> {
    match serde_json::to_vec(output) {
        Ok(bytes) => respond(StatusCode::OK, request_id, None, bytes),
        Err(e) => error_response(request_id, &ApiError::server(format!("could not encode the response: {e}"))),
    }
}

/// An error answer: status 400 (500 for faults), `{"__type","message"}` and the error headers.
pub fn error_response(request_id: &str, err: &ApiError) -> Response<Body> {
    let mut body = err.extra.clone().unwrap_or_default();
    body.insert("__type".into(), err.code.into());
    body.insert("message".into(), err.message.clone().into());
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
    respond(status, request_id, Some(err.code), bytes)
}

fn respond(status: StatusCode, request_id: &str, error_type: Option<&str>, bytes: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(code) = error_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert("x-amzn-errortype", code);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::ListClustersRequest;

    #[test]
    fn routes_known_targets_only() {
        assert_eq!(operation_of(Some("AmazonEC2ContainerServiceV20141113.ListClusters")), Ok(Operation::ListClusters));
        for bad in [None, Some("ListClusters"), Some("AmazonEC2ContainerServiceV20141113.Nope")] {
            assert_eq!(operation_of(bad).unwrap_err().code, "UnknownOperationException");
        }
    }

    #[test]
    fn decodes_empty_and_rejects_wrong_types() {
        let r: ListClustersRequest = decode(b"").unwrap();
        assert_eq!(r, ListClustersRequest::default());
        let r: ListClustersRequest = decode(br#"{"maxResults": 5, "unknownMember": [1]}"#).unwrap();
        assert_eq!(r.max_results, Some(5));
        for bad in [&br#"{"maxResults": "5"}"#[..], b"[]", b"nope", b"{", b"null", br#"{"maxResults": 1e99}"#] {
            assert_eq!(decode::<ListClustersRequest>(bad).unwrap_err().code, "SerializationException", "{bad:?}");
        }
    }
}
