//! The botocore-signed test vector from `shared/reference/ecs-api.md` §6.

mod common;

use common::{at, creds, headers, Req, AKID};
use flotilla_sigv4::{sha256_hex, CanonicalRequest, SigningParams, Verifier};
use http::Method;
use sha2::{Digest, Sha256};

const SIGNATURE: &str = "d8cc7e922bf005ca5716df1ac4f459d7e462d10a52c27a969d20cb8a5ee87d0a";
const BODY: &str = r#"{"maxResults": 2}"#;
const TIME: &str = "20150830T123600Z";

fn botocore_request() -> Req {
    Req::new(
        Method::POST,
        "http://localhost:8080/",
        headers(&[
            ("host", "localhost:8080"),
            ("x-amz-target", "AmazonEC2ContainerServiceV20141113.ListClusters"),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-date", TIME),
            ("user-agent", "Botocore/1.44.8 md/awscrt#0.23.8"),
            ("content-length", "17"),
            (
                "authorization",
                &format!(
                    "AWS4-HMAC-SHA256 Credential={AKID}/20150830/us-east-1/ecs/aws4_request, \
                     SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={SIGNATURE}"
                ),
            ),
        ]),
        BODY.as_bytes(),
    )
}

#[test]
fn canonical_request_and_string_to_sign() {
    let req = botocore_request();
    let body_hash = sha256_hex(BODY.as_bytes());
    assert_eq!(body_hash, "5fa3f552feb13399d66909320a0d9b4a4ddc1c1bd9de819874d55ad39abf84bf");
    let creq = CanonicalRequest {
        method: "POST",
        path: req.uri.path(),
        query: req.uri.query(),
        headers: &req.headers,
        authority: None,
        signed_headers: "content-type;host;x-amz-date;x-amz-target",
        payload_hash: &body_hash,
    };
    assert_eq!(
        creq.to_string_lossy(),
        "POST\n/\n\n\
         content-type:application/x-amz-json-1.1\n\
         host:localhost:8080\n\
         x-amz-date:20150830T123600Z\n\
         x-amz-target:AmazonEC2ContainerServiceV20141113.ListClusters\n\n\
         content-type;host;x-amz-date;x-amz-target\n\
         5fa3f552feb13399d66909320a0d9b4a4ddc1c1bd9de819874d55ad39abf84bf"
    );
    // The reference's "StringToSign hash line": the canonical request's digest.
    assert_eq!(hex::encode(creq.digest()), "04a070411047dce719640e08d95e98474bebe95384c4bf0e712d602a33349e2d");
    assert_eq!(hex::encode(Sha256::digest(creq.to_bytes())), hex::encode(creq.digest()));
}

#[test]
fn verifies() {
    let req = botocore_request();
    let verifier = Verifier::new("ecs").with_regions(["us-east-1"]);
    let who = verifier.verify(&req.method, &req.uri, &req.headers, &req.body, at(TIME), &creds()).unwrap();
    assert_eq!(who.access_key_id, AKID);
    assert_eq!(who.region, "us-east-1");
    // A second time through the key cache.
    let who = verifier.verify(&req.method, &req.uri, &req.headers, &req.body, at(TIME), &creds()).unwrap();
    assert_eq!(who.access_key_id, AKID);
}

#[test]
fn signer_reproduces_botocore() {
    let mut req = botocore_request();
    req.headers.remove("authorization");
    req.headers.remove("x-amz-date");
    let creds = creds();
    let params = SigningParams { credentials: &creds, region: "us-east-1", service: "ecs", time: at(TIME) };
    flotilla_sigv4::sign(&req.method, &req.uri, &mut req.headers, &req.body, &params).unwrap();
    assert_eq!(req.headers["x-amz-date"], TIME);
    assert_eq!(req.authorization(), botocore_request().authorization(), "same header, byte for byte");
}
