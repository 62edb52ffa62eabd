//! AWS's generic SigV4 test suite (the subset in `aws-signing-test-suite/`, see its README):
//! every header-signed request verifies, and our canonical request matches AWS's byte for byte.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use flotilla_sigv4::{sha256_hex, AmzDate, AuthError, CanonicalRequest, Credentials, Verifier};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

struct SignedRequest {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws-signing-test-suite/v4")
}

fn cases() -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(suite_dir()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// Parses the suite's HTTP/1.1 text: request line, `Name:value` lines, blank line, body.
fn parse_request(text: &str) -> SignedRequest {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let request_line = lines.next().unwrap();
    let mut words = request_line.split(' ');
    let method = words.next().unwrap().parse().unwrap();
    let target = words.next().unwrap();
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value.trim_matches([' ', '\t'])).unwrap(),
        );
    }
    SignedRequest { method, uri: target.parse().unwrap(), headers, body: body.as_bytes().to_vec() }
}

struct Context {
    creds: Credentials,
    region: String,
    service: String,
    time: AmzDate,
}

/// The suite's `context.json`, read with string matching to avoid a JSON dependency for five
/// flat fields.
fn context(case: &str) -> Option<Context> {
    let text = fs::read_to_string(suite_dir().join(case).join("context.json")).ok()?;
    let field = |name: &str| -> String {
        let key = format!("\"{name}\": \"");
        let start = text.find(&key).unwrap() + key.len();
        let end = start + text[start..].find('"').unwrap();
        text[start..end].to_owned()
    };
    let timestamp = field("timestamp").replace(['-', ':'], "");
    Some(Context {
        creds: Credentials::new(field("access_key_id"), field("secret_access_key")),
        region: field("region"),
        service: field("service"),
        time: AmzDate::parse_basic(&timestamp).unwrap(),
    })
}

fn signed_headers(req: &SignedRequest) -> String {
    let auth = req.headers["authorization"].to_str().unwrap();
    let start = auth.find("SignedHeaders=").unwrap() + "SignedHeaders=".len();
    auth[start..].split(',').next().unwrap().to_owned()
}

#[test]
fn canonical_requests_match() {
    let mut checked = 0;
    for case in cases() {
        let dir = suite_dir().join(&case);
        let req = parse_request(&fs::read_to_string(dir.join("header-signed-request.txt")).unwrap());
        let expected = fs::read_to_string(dir.join("header-canonical-request.txt")).unwrap();
        let payload_hash = sha256_hex(&req.body);
        let signed_headers = signed_headers(&req);
        let creq = CanonicalRequest {
            method: req.method.as_str(),
            path: req.uri.path(),
            query: req.uri.query(),
            headers: &req.headers,
            authority: None,
            signed_headers: &signed_headers,
            payload_hash: &payload_hash,
        };
        let ours = creq.to_string_lossy();
        if context(&case).is_some() {
            assert_eq!(ours, expected, "{case}");
        } else {
            // These two fixtures sign a different date than their request carries; only the
            // method, URI and query lines are meaningful.
            let head = |s: &str| s.lines().take(3).collect::<Vec<_>>().join("\n");
            assert_eq!(head(&ours), head(&expected), "{case}");
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} cases found");
}

#[test]
fn signed_requests_verify() {
    let mut verified = 0;
    for case in cases() {
        // The two cases without a context only pin down the canonical URI.
        let Some(ctx) = context(&case) else { continue };
        let dir = suite_dir().join(&case);
        let req = parse_request(&fs::read_to_string(dir.join("header-signed-request.txt")).unwrap());
        let secrets: HashMap<String, String> =
            [(ctx.creds.access_key_id.clone(), ctx.creds.secret_access_key.clone())].into();
        let verifier = Verifier::new(ctx.service.clone()).with_regions([ctx.region.clone()]);
        let result =
            verifier.verify(&req.method, &req.uri, &req.headers, &req.body, ctx.time.to_system_time(), &secrets);
        if req.headers.contains_key("x-amz-security-token") {
            // We issue no session tokens, so a token can never be valid.
            assert_eq!(result, Err(AuthError::SessionTokenNotSupported), "{case}");
            assert_eq!(result.unwrap_err().code(), "UnrecognizedClientException", "{case}");
        } else {
            let who = result.unwrap_or_else(|e| panic!("{case}: {e:?}"));
            assert_eq!(who.access_key_id, ctx.creds.access_key_id, "{case}");
            verified += 1;
        }
    }
    assert!(verified >= 20, "only {verified} cases verified");
}
