//! Cross-checks against the official signer, `aws-sigv4` (smithy-rs): what it signs we verify, and
//! for the same header set our signer writes the same `Authorization` header.

mod common;

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use common::{at, creds, headers, Req, AKID, SECRET};
use flotilla_sigv4::Verifier;
use http::Method;

/// Signs `req` in place with aws-sigv4, over every header the request carries (aws-sigv4 leaves
/// out only `authorization`, `user-agent`, `x-amzn-trace-id` and `transfer-encoding`).
fn official_sign(req: &mut Req, region: &str, time: SystemTime) {
    let identity: Identity = aws_credential_types::Credentials::new(AKID, SECRET, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("ecs")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let header_pairs: Vec<(String, String)> =
        req.headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned())).collect();
    let uri = req.uri.to_string();
    let signable = SignableRequest::new(
        req.method.as_str(),
        uri.as_str(),
        header_pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(&req.body),
    )
    .unwrap();
    let (instructions, _signature) = sign(signable, &params).unwrap().into_parts();
    let mut http_req = http::Request::new(());
    instructions.apply_to_request_http1x(&mut http_req);
    for (name, value) in http_req.headers() {
        req.headers.insert(name.clone(), value.clone());
    }
}

fn verify(req: &Req, now: SystemTime) -> Result<flotilla_sigv4::VerifiedPrincipal, flotilla_sigv4::AuthError> {
    Verifier::new("ecs").with_regions(["us-east-1"]).verify(
        &req.method,
        &req.uri,
        &req.headers,
        &req.body,
        now,
        &creds(),
    )
}

fn post_with_body() -> Req {
    Req::new(
        Method::POST,
        "http://localhost:8080/",
        headers(&[
            ("host", "localhost:8080"),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "AmazonEC2ContainerServiceV20141113.RegisterTaskDefinition"),
            ("content-length", "132"),
            ("user-agent", "aws-sdk-rust/1.0"),
            ("amz-sdk-invocation-id", "b1a1c3a8-0f4e-4b6b-8c2d-3f1e2d4c5b6a"),
            ("amz-sdk-request", "attempt=1; max=3"),
        ]),
        br#"{"family":"web","containerDefinitions":[{"name":"nginx","image":"nginx:1.27","memory":128,"portMappings":[{"containerPort":80}]}]}"#,
    )
}

fn get_with_query() -> Req {
    let mut req = Req::agent_ws();
    req.set("host", "localhost:8080");
    req
}

#[test]
fn official_post_verifies() {
    let now = at("20261125T123942Z");
    let mut req = post_with_body();
    official_sign(&mut req, "us-east-1", now);
    let auth = req.authorization().to_owned();
    assert!(auth.contains("amz-sdk-request"), "aws-sigv4 signs every header: {auth}");
    assert_eq!(verify(&req, now).unwrap().access_key_id, AKID);

    let mut tampered = req.clone();
    tampered.body[2] ^= 1;
    assert_eq!(verify(&tampered, now).unwrap_err().code(), "InvalidSignatureException");
    let mut retried = req.clone();
    retried.set("amz-sdk-request", "attempt=2; max=3");
    assert!(verify(&retried, now).is_err());
}

#[test]
fn official_get_with_query_verifies() {
    let now = at("20261125T000001Z");
    let mut req = get_with_query();
    official_sign(&mut req, "us-east-1", now);
    assert!(req.authorization().contains("sec-websocket-key"));
    verify(&req, now).unwrap();
    // Around midnight the scope date and the clock's date differ; the request's own date rules.
    verify(&req, now - Duration::from_secs(120)).unwrap();
}

#[test]
fn official_signatures_over_odd_inputs_verify() {
    let now = at("20150830T123600Z");
    for uri in [
        "http://localhost:8080/a/./b/../c//d/",
        "http://localhost:8080/%E1%88%B4/x%20y",
        "http://localhost:8080/?b=2&a=1&a=0&empty=&flag",
        "http://localhost:8080/?k=a%2Bb&k2=a+b&k3=%7E%41",
        "http://localhost:8080/ws?x=arn%3Aaws%3Aecs%3Aus-east-1%3A1%3Acluster%2Fa%20b",
    ] {
        let mut req = Req::new(
            Method::GET,
            uri,
            headers(&[("host", "localhost:8080"), ("x-spaced", "  a   b  "), ("x-repeated", "1"), ("x-repeated", "2")]),
            b"",
        );
        official_sign(&mut req, "us-east-1", now);
        verify(&req, now).unwrap_or_else(|e| panic!("{uri}: {e:?} ({})", req.authorization()));
    }
}

#[test]
fn our_signer_matches_the_official_one() {
    let now = at("20261125T123942Z");
    let cases = [
        Req::ecs_call("ListClusters", r#"{"maxResults": 2}"#),
        Req::new(
            Method::GET,
            "http://ecs.local:8443/ws?seqNum=1&clusterArn=arn%3Aaws%3Aecs%3Aus-east-1%3A1%3Acluster%2Fdefault",
            headers(&[]),
            b"",
        ),
    ];
    for base in cases {
        let mut ours = base.clone();
        ours.headers.remove("user-agent");
        ours.sign_at(&creds(), "us-east-1", now);

        // Give the official signer exactly the headers ours chose to sign.
        let mut official = base.clone();
        official.headers.remove("user-agent");
        official.headers.insert("host", ours.headers["host"].clone());
        official_sign(&mut official, "us-east-1", now);

        assert_eq!(ours.headers["x-amz-date"], official.headers["x-amz-date"]);
        assert_eq!(ours.authorization(), official.authorization(), "{}", base.uri);
    }
}
