//! The client-side signer: which headers it sets and signs, and that its output verifies.

mod common;

use common::{at, creds, Req, AKID};
use flotilla_sigv4::{sign_parts, sign_request, SigningParams, Verifier, EMPTY_PAYLOAD_SHA256};
use http::Method;

const T: &str = "20261125T123942Z";

fn params(creds: &flotilla_sigv4::Credentials) -> SigningParams<'_> {
    SigningParams { credentials: creds, region: "us-east-1", service: "ecs", time: at(T) }
}

fn signed_headers(auth: &str) -> &str {
    auth.split("SignedHeaders=").nth(1).unwrap().split(',').next().unwrap()
}

#[test]
fn api_call_signs_the_botocore_header_set() {
    let req = Req::ecs_call("CreateCluster", r#"{"clusterName": "x"}"#).signed(at(T));
    assert_eq!(req.headers["x-amz-date"], T);
    assert_eq!(req.headers["host"], "localhost:8080");
    let auth = req.authorization();
    assert!(auth.starts_with(&format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/20261125/us-east-1/ecs/aws4_request, SignedHeaders="
    )));
    assert_eq!(signed_headers(auth), "content-type;host;x-amz-date;x-amz-target");
    let sig = auth.split("Signature=").nth(1).unwrap();
    assert_eq!(sig.len(), 64);
    assert!(sig.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
}

#[test]
fn websocket_upgrade_signs_only_host_and_date() {
    let req = Req::agent_ws().signed(at(T));
    assert_eq!(signed_headers(req.authorization()), "host;x-amz-date");
    let v = Verifier::default();
    v.verify(&req.method, &req.uri, &req.headers, b"", at(T), &creds()).unwrap();

    // The websocket library may rewrite its own headers after signing; that must not matter.
    let mut rewritten = req.clone();
    rewritten.set("sec-websocket-key", "x3JJHMbDL1EzLkh9GBhXDw==");
    rewritten.set("connection", "keep-alive, Upgrade");
    rewritten.set("user-agent", "tungstenite");
    v.verify(&rewritten.method, &rewritten.uri, &rewritten.headers, b"", at(T), &creds()).unwrap();
}

#[test]
fn explicit_host_header_is_kept() {
    // An agent reaching the server through a tunnel names the host it wants, not the socket's.
    let mut req = Req::ecs_call("ListClusters", "{}");
    req.uri = "http://127.0.0.1:18080/".parse().unwrap();
    req.set("host", "ecs.flotilla.internal");
    let req = req.signed(at(T));
    assert_eq!(req.headers["host"], "ecs.flotilla.internal");
    let v = Verifier::default();
    v.verify(&req.method, &req.uri, &req.headers, &req.body, at(T), &creds()).unwrap();
}

#[test]
fn request_and_parts_helpers() {
    let creds = creds();
    let mut request = http::Request::builder()
        .method(Method::POST)
        .uri("https://ecs.example.com/")
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "AmazonEC2ContainerServiceV20141113.ListClusters")
        .body(b"{}".to_vec())
        .unwrap();
    sign_request(&mut request, &params(&creds)).unwrap();
    assert_eq!(request.headers()["host"], "ecs.example.com");
    let (parts, body) = request.into_parts();
    let v = Verifier::default();
    v.verify_parts(&parts, &body, at(T), &creds).unwrap();

    let (mut parts, ()) = http::Request::get("wss://ecs.example.com:8443/ws?seqNum=1").body(()).unwrap().into_parts();
    sign_parts(&mut parts, b"", &params(&creds)).unwrap();
    assert_eq!(parts.headers["host"], "ecs.example.com:8443");
    v.verify_parts(&parts, b"", at(T), &creds).unwrap();
}

#[test]
fn precomputed_payload_hash_is_signed() {
    let mut req = Req::agent_ws();
    req.set("x-amz-content-sha256", EMPTY_PAYLOAD_SHA256);
    let req = req.signed(at(T));
    assert_eq!(signed_headers(req.authorization()), "host;x-amz-content-sha256;x-amz-date");
    Verifier::default().verify(&req.method, &req.uri, &req.headers, b"", at(T), &creds()).unwrap();
}
