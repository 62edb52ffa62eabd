//! Property tests: signing round-trips, any change to a signed part is caught, and no input makes
//! the verifier panic.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{at, creds, Req};
use flotilla_sigv4::Verifier;
use http::{HeaderValue, Method};
use proptest::prelude::*;

const T: &str = "20150830T123600Z";

fn verifier() -> Verifier {
    Verifier::new("ecs")
}

fn verify(req: &Req, now: SystemTime) -> Result<flotilla_sigv4::VerifiedPrincipal, flotilla_sigv4::AuthError> {
    verifier().verify(&req.method, &req.uri, &req.headers, &req.body, now, &creds())
}

/// How the canonical request sees a header value.
fn normalized(value: &[u8]) -> Vec<u8> {
    value.split(|b| b" \t\r\n\x0b\x0c".contains(b)).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(&b' ')
}

fn header_text() -> impl Strategy<Value = String> {
    "[ -~]{0,40}"
}

#[derive(Clone, Debug)]
enum Mutation {
    FlipBodyBit { index: usize, bit: u8 },
    AppendBody(Vec<u8>),
    TruncateBody(usize),
    ReplaceHeader { which: usize, value: String },
    RepeatHeader { which: usize, value: String },
    RemoveHeader(usize),
    Method(usize),
    Path(String),
    Query(String),
}

const SIGNED: [&str; 4] = ["content-type", "host", "x-amz-date", "x-amz-target"];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(index, bit)| Mutation::FlipBodyBit { index, bit }),
        proptest::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::AppendBody),
        any::<usize>().prop_map(Mutation::TruncateBody),
        (0..SIGNED.len(), header_text()).prop_map(|(which, value)| Mutation::ReplaceHeader { which, value }),
        (0..SIGNED.len(), header_text()).prop_map(|(which, value)| Mutation::RepeatHeader { which, value }),
        (0..SIGNED.len()).prop_map(Mutation::RemoveHeader),
        (0..4usize).prop_map(Mutation::Method),
        // Not starting with a dot: `/.` and `/..` canonicalize to `/`, the original path.
        "/[a-z0-9_~-][a-z0-9._~-]{0,11}".prop_map(Mutation::Path),
        "[a-z]{1,5}=[a-z0-9]{0,5}".prop_map(Mutation::Query),
    ]
}

/// Applies `m`; `false` if it happened to leave the request meaning the same thing.
fn apply(req: &mut Req, m: &Mutation) -> bool {
    match m {
        Mutation::FlipBodyBit { index, bit } => {
            let i = index % req.body.len();
            req.body[i] ^= 1 << bit;
        }
        Mutation::AppendBody(extra) => req.body.extend_from_slice(extra),
        Mutation::TruncateBody(n) => {
            let keep = n % req.body.len();
            req.body.truncate(keep);
        }
        Mutation::ReplaceHeader { which, value } => {
            let name = SIGNED[*which];
            let current = req.headers.get(name).map(|v| normalized(v.as_bytes()));
            if current == Some(normalized(value.as_bytes())) {
                return false;
            }
            req.headers.insert(name, HeaderValue::from_str(value).unwrap());
        }
        Mutation::RepeatHeader { which, value } => {
            req.headers.append(SIGNED[*which], HeaderValue::from_str(value).unwrap());
        }
        Mutation::RemoveHeader(which) => {
            // Without a Host header the URI's authority stands in, which here is the same host.
            if SIGNED[*which] == "host" {
                return false;
            }
            req.headers.remove(SIGNED[*which]);
        }
        Mutation::Method(i) => req.method = [Method::GET, Method::PUT, Method::DELETE, Method::PATCH][*i].clone(),
        Mutation::Path(p) => req.uri = format!("http://localhost:8080{p}").parse().unwrap(),
        Mutation::Query(q) => req.uri = format!("http://localhost:8080/?{q}").parse().unwrap(),
    }
    true
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn sign_then_verify_round_trips(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        op in "[A-Za-z]{1,30}",
        region in "[a-z]{2}-[a-z]{4,9}-[1-9]",
        secs in 0u64..4_102_444_800,
        skew in -900i64..=900,
    ) {
        let time = UNIX_EPOCH + Duration::from_secs(secs);
        let mut req = Req::ecs_call(&op, "");
        req.body = body;
        req.sign_at(&creds(), &region, time);
        let now = if skew >= 0 {
            time + Duration::from_secs(skew as u64)
        } else {
            time - Duration::from_secs(skew.unsigned_abs())
        };
        let who = verify(&req, now).unwrap();
        prop_assert_eq!(who.region, region);
    }

    #[test]
    fn mutated_requests_never_verify(body in body(), mutations in proptest::collection::vec(mutation(), 1..4)) {
        let mut req = Req::ecs_call("RunTask", "");
        req.body = body;
        let original = req.signed(at(T));
        prop_assert!(verify(&original, at(T)).is_ok());
        let mut req = original.clone();
        let mut changed = false;
        for m in &mutations {
            if req.body.is_empty() && matches!(m, Mutation::FlipBodyBit { .. } | Mutation::TruncateBody(_)) {
                continue;
            }
            changed |= apply(&mut req, m);
        }
        let same = req.body == original.body
            && req.method == original.method
            && req.uri == original.uri
            && SIGNED.iter().all(|h| {
                let values = |r: &Req| r.headers.get_all(*h).iter().map(|v| normalized(v.as_bytes())).collect::<Vec<_>>();
                values(&req) == values(&original)
            });
        prop_assume!(changed && !same);
        prop_assert!(verify(&req, at(T)).is_err(), "{:?}", mutations);
    }

    #[test]
    fn garbage_authorization_never_panics(value in "[ -~]{0,200}") {
        let mut req = Req::ecs_call("ListClusters", "{}").signed(at(T));
        req.set("authorization", &value);
        prop_assert!(verify(&req, at(T)).is_err());
    }

    #[test]
    fn structured_garbage_authorization_never_panics(
        algorithm in prop_oneof![Just("AWS4-HMAC-SHA256".to_owned()), "[ -~]{0,20}"],
        parts in proptest::collection::vec(
            prop_oneof![
                "Credential=[ -~]{0,60}",
                "Credential=AKIDEXAMPLE/[0-9]{0,9}/[a-z0-9/-]{0,12}/e?c?s?/aws4_request",
                "SignedHeaders=[a-z;-]{0,40}",
                "Signature=[0-9a-f]{0,70}",
                "[A-Za-z]{0,12}=?[ -~]{0,20}",
            ],
            0..6,
        ),
        separator in prop_oneof![Just(", "), Just(","), Just(" , "), Just(" ")],
    ) {
        let mut req = Req::ecs_call("ListClusters", "{}").signed(at(T));
        req.set("authorization", &format!("{algorithm} {}", parts.join(separator)));
        let result = verify(&req, at(T));
        if let Err(e) = result {
            prop_assert!(!e.message().is_empty());
            prop_assert!(e.code().ends_with("Exception"));
        }
    }

    #[test]
    fn non_utf8_and_odd_headers_never_panic(
        auth in proptest::collection::vec(any::<u8>(), 0..80),
        date in proptest::collection::vec(any::<u8>(), 0..40),
        sha in proptest::collection::vec(any::<u8>(), 0..70),
    ) {
        let clean = |v: Vec<u8>| v.into_iter().filter(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f)).collect::<Vec<u8>>();
        let mut req = Req::ecs_call("ListClusters", "{}").signed(at(T));
        let good = req.clone();
        req.headers.insert("authorization", HeaderValue::from_bytes(&clean(auth)).unwrap());
        let _ = verify(&req, at(T));
        let mut req = good.clone();
        req.headers.insert("x-amz-date", HeaderValue::from_bytes(&clean(date.clone())).unwrap());
        prop_assert!(verify(&req, at(T)).is_err());
        let mut req = good.clone();
        req.headers.remove("x-amz-date");
        req.headers.insert("date", HeaderValue::from_bytes(&clean(date)).unwrap());
        prop_assert!(verify(&req, at(T)).is_err());
        let mut req = good;
        req.headers.insert("x-amz-content-sha256", HeaderValue::from_bytes(&clean(sha)).unwrap());
        let _ = verify(&req, at(T));
    }

    #[test]
    fn any_uri_canonicalizes_without_panicking(
        path in "(/[!$&'()*+,;=:@a-zA-Z0-9._~%-]{0,10}){0,5}/?",
        query in "[!$&'()*+,;=:@/?a-zA-Z0-9._~%-]{0,40}",
    ) {
        let uri = format!("http://localhost:8080{path}?{query}");
        prop_assume!(uri.parse::<http::Uri>().is_ok());
        let mut req = Req::new(Method::GET, &uri, common::headers(&[]), b"");
        req = req.signed(at(T));
        prop_assert!(verify(&req, at(T)).is_ok(), "{}", uri);
    }
}
