//! Verification outcomes: what passes, and which AWS error code each failure gets.

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use common::{at, creds, headers, manual_signature, Req, AKID, SECRET};
use flotilla_sigv4::{AuthError, Credentials, SecretFn, SecretLookup, VerifiedPrincipal, Verifier, UNSIGNED_PAYLOAD};
use http::Method;

const T: &str = "20150830T123600Z";

fn verifier() -> Verifier {
    Verifier::new("ecs").with_regions(["us-east-1", "eu-west-1"])
}

fn check(req: &Req, now: SystemTime) -> Result<VerifiedPrincipal, AuthError> {
    check_with(req, now, &creds())
}

fn check_with(
    req: &Req,
    now: SystemTime,
    secrets: &(impl SecretLookup + ?Sized),
) -> Result<VerifiedPrincipal, AuthError> {
    verifier().verify(&req.method, &req.uri, &req.headers, &req.body, now, secrets)
}

fn code(req: &Req) -> &'static str {
    check(req, at(T)).unwrap_err().code()
}

fn call() -> Req {
    Req::ecs_call("ListClusters", r#"{"maxResults": 2}"#).signed(at(T))
}

/// Replaces one `k=v` parameter of the Authorization header.
fn with_auth(req: &Req, from: &str, to: &str) -> Req {
    let mut req = req.clone();
    let auth = req.authorization().replace(from, to);
    assert_ne!(auth, req.authorization(), "{from} not in header");
    req.set("authorization", &auth);
    req
}

#[test]
fn signed_call_verifies() {
    let who = check(&call(), at(T)).unwrap();
    assert_eq!(who, VerifiedPrincipal { access_key_id: AKID.into(), region: "us-east-1".into() });
}

#[test]
fn missing_authorization() {
    let mut req = call();
    req.headers.remove("authorization");
    let err = check(&req, at(T)).unwrap_err();
    assert_eq!(err.code(), "MissingAuthenticationTokenException");
    assert_eq!(err.message(), "Missing Authentication Token");
}

#[test]
fn malformed_authorization_is_incomplete() {
    let good = call();
    let sig_start = good.authorization().find("Signature=").unwrap();
    let cases: Vec<(&str, Req)> = vec![
        ("garbage", with_auth(&good, good.authorization(), "garbage")),
        ("empty", with_auth(&good, good.authorization(), "")),
        ("other algorithm", with_auth(&good, "AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")),
        ("basic auth", with_auth(&good, good.authorization(), "Basic dXNlcjpwYXNz")),
        ("no signature", with_auth(&good, &good.authorization()[sig_start - 2..], "")),
        ("no credential", with_auth(&good, "Credential=", "Cred=")),
        ("no signed headers", with_auth(&good, "SignedHeaders=", "Signed=")),
        ("four-part credential", with_auth(&good, "/ecs/aws4_request", "/aws4_request")),
        ("bad terminator", with_auth(&good, "aws4_request", "aws4_requests")),
        ("bad scope date", with_auth(&good, "/20150830/", "/2015-08-30/")),
        ("no equals", with_auth(&good, "SignedHeaders=", "SignedHeaders ")),
        ("host unsigned", with_auth(&good, "content-type;host;x-amz-date", "content-type;x-amz-date")),
        ("date unsigned", with_auth(&good, "host;x-amz-date;x-amz-target", "host;x-amz-target")),
        ("uppercase signed header", with_auth(&good, "content-type;host", "content-type;Host")),
    ];
    for (name, req) in cases {
        let err = check(&req, at(T)).unwrap_err();
        assert_eq!(err.code(), "IncompleteSignatureException", "{name}: {err:?}");
        assert!(!err.message().is_empty());
    }
}

#[test]
fn date_problems_are_incomplete() {
    let mut no_date = call();
    no_date.headers.remove("x-amz-date");
    let err = check(&no_date, at(T)).unwrap_err();
    assert_eq!(err.code(), "IncompleteSignatureException");
    assert!(err.message().contains("'X-Amz-Date' or a 'Date'"), "{err}");

    let mut bad_date = call();
    bad_date.set("x-amz-date", "2015-08-30T12:36:00Z");
    let err = check(&bad_date, at(T)).unwrap_err();
    assert_eq!(err.code(), "IncompleteSignatureException");
    assert!(err.message().contains("ISO-8601"), "{err}");

    let mut two_dates = call();
    two_dates.headers.append("x-amz-date", T.parse().unwrap());
    assert_eq!(code(&two_dates), "IncompleteSignatureException");

    let mut two_auth = call();
    let auth = two_auth.headers["authorization"].clone();
    two_auth.headers.append("authorization", auth);
    assert_eq!(code(&two_auth), "IncompleteSignatureException");
}

#[test]
fn unknown_key_and_session_tokens_are_unrecognized() {
    let req = call();
    let other = Credentials::new("AKIDOTHER", SECRET);
    let err = check_with(&req, at(T), &other).unwrap_err();
    assert_eq!(err.code(), "UnrecognizedClientException");
    assert_eq!(err.message(), "The security token included in the request is invalid.");

    let mut with_token = Req::ecs_call("ListClusters", "{}");
    with_token.set("x-amz-security-token", "FQoGZXIvYXdzEJr//////////wEaDM");
    let with_token = with_token.signed(at(T));
    let err = check(&with_token, at(T)).unwrap_err();
    assert_eq!(err, AuthError::SessionTokenNotSupported);
    assert_eq!(err.code(), "UnrecognizedClientException");
}

#[test]
fn wrong_secret_is_invalid_signature() {
    let req = call();
    let wrong = Credentials::new(AKID, "not-the-secret");
    let err = check_with(&req, at(T), &wrong).unwrap_err();
    assert_eq!(err, AuthError::SignatureMismatch);
    assert_eq!(err.code(), "InvalidSignatureException");
    assert_eq!(
        err.message(),
        "The request signature we calculated does not match the signature you provided. Check \
         your AWS Secret Access Key and signing method. Consult the service documentation for \
         details."
    );
}

#[test]
fn clock_skew_window() {
    let minutes = |m: u64| Duration::from_secs(m * 60);
    let req = call();
    for ok in [0, 1, 14, 15] {
        assert!(check(&req, at(T) + minutes(ok)).is_ok(), "now = signed + {ok} min");
        assert!(check(&req, at(T) - minutes(ok)).is_ok(), "now = signed - {ok} min");
    }
    assert!(check(&req, at(T) + minutes(15) + Duration::from_millis(999)).is_ok());

    let err = check(&req, at(T) + minutes(16)).unwrap_err();
    assert_eq!(err.code(), "InvalidSignatureException");
    assert_eq!(
        err.message(),
        "Signature expired: 20150830T123600Z is now earlier than 20150830T123700Z \
         (20150830T125200Z - 15 min.)"
    );
    assert!(check(&req, at(T) + minutes(15) + Duration::from_secs(1)).is_err());

    let err = check(&req, at(T) - minutes(16)).unwrap_err();
    assert_eq!(err.code(), "InvalidSignatureException");
    assert_eq!(
        err.message(),
        "Signature not yet current: 20150830T123600Z is still later than 20150830T123500Z \
         (20150830T122000Z + 15 min.)"
    );

    let tight = Verifier::new("ecs").with_max_skew(Duration::from_secs(30));
    let verify_at = |now| tight.verify(&req.method, &req.uri, &req.headers, &req.body, now, &creds());
    assert!(verify_at(at(T) + Duration::from_secs(30)).is_ok());
    assert!(verify_at(at(T) + Duration::from_secs(31)).is_err());
}

#[test]
fn scope_problems_are_invalid_signature() {
    // A scope date that is a real date but not the request's.
    let req = with_auth(&call(), "/20150830/", "/20150831/");
    let err = check(&req, at(T)).unwrap_err();
    assert!(matches!(err, AuthError::ScopeDateMismatch { .. }), "{err:?}");
    assert_eq!(err.code(), "InvalidSignatureException");
    assert!(err.message().contains("'20150831' != '20150830'"), "{err}");

    let mut sts = Req::ecs_call("ListClusters", "{}");
    let sts_creds = creds();
    let params =
        flotilla_sigv4::SigningParams { credentials: &sts_creds, region: "us-east-1", service: "sts", time: at(T) };
    flotilla_sigv4::sign(&sts.method, &sts.uri, &mut sts.headers, &sts.body, &params).unwrap();
    let err = check(&sts, at(T)).unwrap_err();
    assert_eq!(err, AuthError::WrongService { expected: "ecs".into() });
    assert_eq!(err.code(), "InvalidSignatureException");

    let mut elsewhere = Req::ecs_call("ListClusters", "{}");
    elsewhere.sign_at(&creds(), "ap-south-1", at(T));
    let err = check(&elsewhere, at(T)).unwrap_err();
    assert_eq!(err.code(), "InvalidSignatureException");
    assert!(matches!(err, AuthError::RegionNotAccepted { ref region } if region == "ap-south-1"));

    // An empty region list accepts any region.
    let any = Verifier::new("ecs");
    let r = &elsewhere;
    assert_eq!(any.verify(&r.method, &r.uri, &r.headers, &r.body, at(T), &creds()).unwrap().region, "ap-south-1");
    let mut second_region = Req::ecs_call("ListClusters", "{}");
    second_region.sign_at(&creds(), "eu-west-1", at(T));
    assert!(check(&second_region, at(T)).is_ok());
}

#[test]
fn tampering_breaks_the_signature() {
    let good = call();
    let mut cases: Vec<(&str, Req)> = Vec::new();

    let mut r = good.clone();
    r.body = br#"{"maxResults": 3}"#.to_vec();
    cases.push(("body", r));
    let mut r = good.clone();
    r.body.push(b' ');
    cases.push(("body whitespace", r));
    let mut r = good.clone();
    r.set("x-amz-target", "AmazonEC2ContainerServiceV20141113.DeleteCluster");
    cases.push(("target", r));
    let mut r = good.clone();
    r.set("content-type", "application/json");
    cases.push(("content type", r));
    let mut r = good.clone();
    r.set("host", "127.0.0.1:8080");
    cases.push(("host", r));
    let mut r = good.clone();
    r.method = Method::PUT;
    cases.push(("method", r));
    let mut r = good.clone();
    r.uri = "http://localhost:8080/other".parse().unwrap();
    cases.push(("path", r));
    let mut r = good.clone();
    r.uri = "http://localhost:8080/?x=1".parse().unwrap();
    cases.push(("query", r));
    let mut r = good.clone();
    r.headers.append("x-amz-target", "Extra".parse().unwrap());
    cases.push(("repeated signed header", r));
    let sig_at = good.authorization().find("Signature=").unwrap() + "Signature=".len();
    let sig = &good.authorization()[sig_at..];
    let mut flipped = sig.to_owned();
    flipped.replace_range(..1, if sig.starts_with('0') { "1" } else { "0" });
    cases.push(("signature", with_auth(&good, sig, &flipped)));
    cases.push(("uppercase signature", with_auth(&good, sig, &sig.to_uppercase())));
    cases.push(("short signature", with_auth(&good, sig, &sig[..40])));

    for (name, req) in cases {
        let err = check(&req, at(T)).unwrap_err();
        assert_eq!(err.code(), "InvalidSignatureException", "{name}: {err:?}");
    }

    // Headers that were not signed may change freely.
    let mut r = good.clone();
    r.set("user-agent", "aws-cli/2");
    r.set("x-amzn-trace-id", "Root=1-5759e988-bd862e3fe1be46a994272793");
    r.headers.remove("content-length");
    assert!(check(&r, at(T)).is_ok());
}

#[test]
fn content_sha256_header() {
    let body = r#"{"cluster": "default"}"#;
    let mut req = Req::ecs_call("DescribeClusters", body);
    req.set("x-amz-content-sha256", &flotilla_sigv4::sha256_hex(body.as_bytes()));
    let req = req.signed(at(T));
    assert!(req.authorization().contains("x-amz-content-sha256"));
    assert!(check(&req, at(T)).is_ok());

    let mut tampered = req.clone();
    tampered.body = br#"{"cluster": "evil"}"#.to_vec();
    let err = check(&tampered, at(T)).unwrap_err();
    assert_eq!(err, AuthError::PayloadHashMismatch);
    assert_eq!(err.code(), "InvalidSignatureException");

    // The client may opt out of signing the body; then only the headers are protected.
    let mut unsigned = Req::ecs_call("DescribeClusters", body);
    unsigned.set("x-amz-content-sha256", UNSIGNED_PAYLOAD);
    let mut unsigned = unsigned.signed(at(T));
    assert!(check(&unsigned, at(T)).is_ok());
    unsigned.body = b"anything".to_vec();
    assert!(check(&unsigned, at(T)).is_ok());

    // A server can refuse the opt-out; the claim then does not match the body, as on AWS.
    let strict = Verifier::new("ecs").refuse_unsigned_payload();
    let err =
        strict.verify(&unsigned.method, &unsigned.uri, &unsigned.headers, &unsigned.body, at(T), &creds()).unwrap_err();
    assert_eq!(err, AuthError::PayloadHashMismatch);
}

#[test]
fn header_order_case_and_whitespace_do_not_matter() {
    let good = call();
    // Rebuild the headers in reverse order with padded values.
    let mut shuffled = good.clone();
    shuffled.headers.clear();
    let mut pairs: Vec<_> = good.headers.iter().collect();
    pairs.reverse();
    for (name, value) in pairs {
        let padded = format!("  {}\t ", value.to_str().unwrap());
        shuffled.headers.append(name.clone(), padded.parse().unwrap());
    }
    assert!(check(&shuffled, at(T)).is_ok());

    // Inner whitespace runs in a signed header collapse to one space.
    let mut req = Req::new(
        Method::POST,
        "http://localhost:8080/",
        headers(&[
            ("host", "localhost:8080"),
            ("x-amz-date", T),
            ("x-custom", "a   b \t c"),
            ("x-multi", "one"),
            ("x-multi", "two"),
        ]),
        b"{}",
    );
    let scope = "20150830/us-east-1/ecs/aws4_request";
    let signed = "host;x-amz-date;x-custom;x-multi";
    let sig = manual_signature(&req, signed, T, scope, SECRET);
    req.set(
        "authorization",
        &format!("AWS4-HMAC-SHA256 Credential={AKID}/{scope}, SignedHeaders={signed}, Signature={sig}"),
    );
    assert!(check(&req, at(T)).is_ok());
    req.set("x-custom", "a b c");
    assert!(check(&req, at(T)).is_ok());
    req.set("x-custom", "ab c");
    assert!(check(&req, at(T)).is_err());
    req.set("x-custom", "a b c");
    req.headers.remove("x-multi");
    req.headers.append("x-multi", "two".parse().unwrap());
    req.headers.append("x-multi", "one".parse().unwrap());
    assert!(check(&req, at(T)).is_err(), "repeated values keep their order");
}

#[test]
fn authorization_layout_is_flexible() {
    let good = call();
    let auth = good.authorization();
    let cred = auth.split("Credential=").nth(1).unwrap().split(',').next().unwrap();
    let sh = auth.split("SignedHeaders=").nth(1).unwrap().split(',').next().unwrap();
    let sig = auth.split("Signature=").nth(1).unwrap();
    for layout in [
        format!("AWS4-HMAC-SHA256 Credential={cred},SignedHeaders={sh},Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Signature={sig}, Credential={cred}, SignedHeaders={sh}"),
        format!("AWS4-HMAC-SHA256  SignedHeaders={sh} ,Signature={sig} , Credential={cred}"),
    ] {
        let mut req = good.clone();
        req.set("authorization", &layout);
        assert!(check(&req, at(T)).is_ok(), "{layout}");
    }
}

#[test]
fn date_header_fallback() {
    let date = "Sun, 30 Aug 2015 12:36:00 GMT";
    let mut req =
        Req::new(Method::POST, "http://localhost:8080/", headers(&[("host", "localhost:8080"), ("date", date)]), b"{}");
    let scope = "20150830/us-east-1/ecs/aws4_request";
    let sig = manual_signature(&req, "date;host", T, scope, SECRET);
    req.set(
        "authorization",
        &format!("AWS4-HMAC-SHA256 Credential={AKID}/{scope}, SignedHeaders=date;host, Signature={sig}"),
    );
    assert!(check(&req, at(T)).is_ok());

    // Date in basic format works too.
    let mut basic = req.clone();
    basic.set("date", T);
    let sig = manual_signature(&basic, "date;host", T, scope, SECRET);
    basic.set(
        "authorization",
        &format!("AWS4-HMAC-SHA256 Credential={AKID}/{scope}, SignedHeaders=date;host, Signature={sig}"),
    );
    assert!(check(&basic, at(T)).is_ok());

    // With Date as the date source, Date must be signed.
    let unsigned = with_auth(&req, "SignedHeaders=date;host", "SignedHeaders=host");
    assert_eq!(code(&unsigned), "IncompleteSignatureException");
}

#[test]
fn agent_websocket_query() {
    let req = Req::agent_ws().signed(at(T));
    assert!(check(&req, at(T)).is_ok());
    assert!(!req.authorization().contains("sec-websocket"));

    // Other spellings of the same query sign alike: lowercase escapes, unescaped `:`, reordering.
    let respelled = "http://localhost:8080/ws?seqNum=1&sendCredentials=true&agentVersion=1.80.0\
        &containerInstanceArn=arn:aws:ecs:us-east-1:123456789012:container-instance%2fdefault%2f0123\
        &clusterArn=arn%3aaws%3aecs%3aus-east-1%3a123456789012%3acluster%2Fdefault";
    let mut r = req.clone();
    r.uri = respelled.parse().unwrap();
    assert!(check(&r, at(T)).is_ok());

    for changed in ["seqNum=2", "seqNum=1&seqNum=1", "seqNum=1&extra="] {
        let mut r = req.clone();
        let uri = req.uri.to_string().replace("seqNum=1", changed);
        r.uri = uri.parse().unwrap();
        assert_eq!(code(&r), "InvalidSignatureException", "{changed}");
    }
}

#[test]
fn host_from_authority_when_header_is_absent() {
    // HTTP/2 carries the host as :authority, which the http crate keeps in the URI.
    let mut req = Req::ecs_call("ListClusters", "{}").signed(at(T));
    req.headers.remove("host");
    assert!(check(&req, at(T)).is_ok());
    req.uri = "http://localhost:9090/".parse().unwrap();
    assert!(check(&req, at(T)).is_err());
}

#[test]
fn rotated_secret_is_not_served_from_cache() {
    let verifier = verifier();
    let old = Credentials::new(AKID, "old-secret");
    let new = Credentials::new(AKID, "new-secret");
    let mut signed_old = Req::ecs_call("ListClusters", "{}");
    signed_old.sign_at(&old, "us-east-1", at(T));
    let mut signed_new = Req::ecs_call("ListClusters", "{}");
    signed_new.sign_at(&new, "us-east-1", at(T));
    let run = |r: &Req, s: &Credentials| verifier.verify(&r.method, &r.uri, &r.headers, &r.body, at(T), s);
    assert!(run(&signed_old, &old).is_ok());
    assert!(run(&signed_old, &old).is_ok());
    assert_eq!(run(&signed_old, &new), Err(AuthError::SignatureMismatch));
    assert!(run(&signed_new, &new).is_ok());
    assert_eq!(run(&signed_new, &old), Err(AuthError::SignatureMismatch));
}

#[test]
fn secret_lookups() {
    let req = call();
    let map: HashMap<String, String> = [(AKID.to_owned(), SECRET.to_owned())].into();
    assert!(check_with(&req, at(T), &map).is_ok());
    let list = vec![Credentials::new("AKIDOTHER", "x"), creds()];
    assert!(check_with(&req, at(T), &list).is_ok());
    let store = SecretFn(|akid: &str| (akid == AKID).then(|| SECRET.to_owned()));
    assert!(check_with(&req, at(T), &store).is_ok());
    let dynamic: std::sync::Arc<dyn SecretLookup + Send + Sync> = std::sync::Arc::new(map);
    assert!(check_with(&req, at(T), &*dynamic).is_ok());
    assert!(check_with(&req, at(T), &dynamic).is_ok());
    let empty: HashMap<String, String> = HashMap::new();
    assert_eq!(check_with(&req, at(T), &empty).unwrap_err().code(), "UnrecognizedClientException");
}

#[test]
fn verifier_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Verifier>();
    let v = Verifier::default();
    assert_eq!(v.service(), "ecs");
    assert!(v.regions().is_empty());
    assert_eq!(v.max_skew(), Duration::from_secs(900));
    assert!(format!("{v:?}").contains("ecs"));
}
