//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::SystemTime;

use flotilla_sigv4::{AmzDate, Credentials, SigningParams};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

pub const AKID: &str = "AKIDEXAMPLE";
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";

pub fn creds() -> Credentials {
    Credentials::new(AKID, SECRET)
}

/// `YYYYMMDDTHHMMSSZ` to a `SystemTime`.
pub fn at(basic: &str) -> SystemTime {
    AmzDate::parse_basic(basic).expect(basic).to_system_time()
}

pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }
    map
}

/// A request as the tests pass it around: everything `Verifier::verify` needs.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Req {
    pub fn new(method: Method, uri: &str, headers: HeaderMap, body: &[u8]) -> Self {
        Req { method, uri: uri.parse().unwrap(), headers, body: body.to_vec() }
    }

    /// An ECS JSON 1.1 call like botocore makes.
    pub fn ecs_call(operation: &str, body: &str) -> Self {
        Req::new(
            Method::POST,
            "http://localhost:8080/",
            headers(&[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", &format!("{TARGET_PREFIX}.{operation}")),
                ("user-agent", "Botocore/1.44.8"),
            ]),
            body.as_bytes(),
        )
    }

    /// The agent's ACS websocket upgrade.
    pub fn agent_ws() -> Self {
        Req::new(
            Method::GET,
            "http://localhost:8080/ws?clusterArn=arn%3Aaws%3Aecs%3Aus-east-1%3A123456789012%3Acluster%2Fdefault\
             &containerInstanceArn=arn%3Aaws%3Aecs%3Aus-east-1%3A123456789012%3Acontainer-instance%2Fdefault%2F0123\
             &agentVersion=1.80.0&seqNum=1&sendCredentials=true",
            headers(&[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("sec-websocket-version", "13"),
            ]),
            b"",
        )
    }

    pub fn sign_at(&mut self, creds: &Credentials, region: &str, time: SystemTime) {
        let params = SigningParams { credentials: creds, region, service: "ecs", time };
        flotilla_sigv4::sign(&self.method, &self.uri, &mut self.headers, &self.body, &params).unwrap();
    }

    pub fn signed(mut self, time: SystemTime) -> Self {
        self.sign_at(&creds(), "us-east-1", time);
        self
    }

    pub fn authorization(&self) -> &str {
        self.headers["authorization"].to_str().unwrap()
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.headers.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }
}

/// An independent signer over our public canonicalizer, so tests can sign what `sign` never
/// produces: other header sets, the `Date` header, odd parameter layouts. Returns the hex
/// signature.
pub fn manual_signature(req: &Req, signed_headers: &str, amz_date: &str, scope: &str, secret: &str) -> String {
    use hmac::{Hmac, Mac};
    fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
    let body_hash = flotilla_sigv4::sha256_hex(&req.body);
    let creq = flotilla_sigv4::CanonicalRequest {
        method: req.method.as_str(),
        path: req.uri.path(),
        query: req.uri.query(),
        headers: &req.headers,
        authority: None,
        signed_headers,
        payload_hash: &body_hash,
    };
    let string_to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(creq.digest()));
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in scope.split('/') {
        key = mac(&key, part.as_bytes());
    }
    hex::encode(mac(&key, string_to_sign.as_bytes()))
}
