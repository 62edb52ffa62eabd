//! Client-side signing, for the agent's API calls and its websocket upgrade `GET`.
//!
//! It signs the same header set botocore signs for ECS (`content-type`, `host`, `x-amz-date`,
//! `x-amz-target`, plus `x-amz-content-sha256` when the caller set it) and nothing hop-by-hop, so
//! proxies and HTTP libraries that add or rewrite `user-agent`, `connection` or the websocket
//! headers cannot break the signature.

use std::time::SystemTime;

use http::header::{AUTHORIZATION, HOST};
use http::{HeaderMap, HeaderValue, Method, Uri};

use crate::canonical::{sha256_hex, CanonicalRequest};
use crate::credentials::Credentials;
use crate::key::SigningKey;
use crate::time::AmzDate;
use crate::{ALGORITHM, X_AMZ_CONTENT_SHA256, X_AMZ_DATE, X_AMZ_TARGET};

/// Who signs, for which scope, and when.
#[derive(Clone, Copy, Debug)]
pub struct SigningParams<'a> {
    pub credentials: &'a Credentials,
    pub region: &'a str,
    pub service: &'a str,
    pub time: SystemTime,
}

/// Why a request could not be signed. Both are caller mistakes, not transient conditions.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    #[error("the request has no Host header and its URI has no host to derive one from")]
    MissingHost,
    #[error(
        "access key id, region and service must be non-empty and free of '/', ',', '=', \
         whitespace and control characters"
    )]
    InvalidScope,
}

/// Headers signed when present, in canonical (sorted) order. `host` and `x-amz-date` are always
/// present by the time they are consulted.
const SIGNED_CANDIDATES: [&str; 5] = ["content-type", "host", X_AMZ_CONTENT_SHA256, X_AMZ_DATE, X_AMZ_TARGET];

/// Signs a request in place: sets `X-Amz-Date`, `Host` (from the URI, if absent) and
/// `Authorization`, replacing any earlier signature so a retried request can be signed afresh.
///
/// The `Host` header is set explicitly because the signature covers it: leaving it to the HTTP
/// library risks a different spelling (a default port written out, say) being sent.
pub fn sign(
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
    body: &[u8],
    params: &SigningParams<'_>,
) -> Result<(), SignError> {
    let payload_hash = payload_hash(headers, body);
    sign_with_payload_hash(method, uri, headers, &payload_hash, params)
}

/// [`sign`] for the parts of an `http::Request`.
pub fn sign_parts(parts: &mut http::request::Parts, body: &[u8], params: &SigningParams<'_>) -> Result<(), SignError> {
    sign(&parts.method, &parts.uri, &mut parts.headers, body, params)
}

/// [`sign`] for a whole `http::Request` whose body is in memory (use `&[u8]`/`()`-like bodies
/// through `AsRef<[u8]>`; the websocket upgrade has an empty one).
pub fn sign_request<B: AsRef<[u8]>>(
    request: &mut http::Request<B>,
    params: &SigningParams<'_>,
) -> Result<(), SignError> {
    let payload_hash = payload_hash(request.headers(), request.body().as_ref());
    let method = request.method().clone();
    let uri = request.uri().clone();
    sign_with_payload_hash(&method, &uri, request.headers_mut(), &payload_hash, params)
}

/// A caller that set `X-Amz-Content-SHA256` (a precomputed hash, or `UNSIGNED-PAYLOAD`) has
/// chosen the payload line; otherwise it is the body's hash.
fn payload_hash(headers: &HeaderMap, body: &[u8]) -> String {
    match headers.get(X_AMZ_CONTENT_SHA256).map(|v| v.to_str()) {
        Some(Ok(claimed)) => claimed.to_owned(),
        _ => sha256_hex(body),
    }
}

fn sign_with_payload_hash(
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
    payload_hash: &str,
    params: &SigningParams<'_>,
) -> Result<(), SignError> {
    let akid = params.credentials.access_key_id.as_str();
    if ![akid, params.region, params.service].iter().all(|s| is_scope_element(s)) {
        return Err(SignError::InvalidScope);
    }
    if !headers.contains_key(HOST) {
        headers.insert(HOST, host_header(uri)?);
    }
    let now = AmzDate::from_system_time(params.time);
    let amz_date = now.basic_bytes();
    headers.insert(X_AMZ_DATE, HeaderValue::from_bytes(&amz_date).expect("digits, 'T' and 'Z' are valid header bytes"));
    headers.remove(AUTHORIZATION);

    let signed_headers =
        SIGNED_CANDIDATES.iter().copied().filter(|name| headers.contains_key(*name)).collect::<Vec<_>>().join(";");
    let digest = CanonicalRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query(),
        headers,
        authority: None,
        signed_headers: &signed_headers,
        payload_hash,
    }
    .digest();

    let date = &amz_date[..8];
    let date = std::str::from_utf8(date).expect("ASCII digits");
    let scope = format!("{date}/{}/{}/aws4_request", params.region, params.service);
    let key = SigningKey::derive(&params.credentials.secret_access_key, date, params.region, params.service);
    let signature = hex::encode(key.sign(&amz_date, &scope, &digest));
    let authorization = format!(
        "{ALGORITHM} Credential={akid}/{scope}, SignedHeaders={signed_headers}, \
         Signature={signature}"
    );
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&authorization).map_err(|_| SignError::InvalidScope)?);
    Ok(())
}

/// Anything that would split the credential or the header when the verifier parses it back.
fn is_scope_element(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b',' && b != b'=')
}

/// `host[:port]`, leaving out the scheme's default port as browsers and HTTP clients do.
fn host_header(uri: &Uri) -> Result<HeaderValue, SignError> {
    let host = uri.host().ok_or(SignError::MissingHost)?;
    let default_port = match uri.scheme_str() {
        Some("https" | "wss") => Some(443),
        Some("http" | "ws") => Some(80),
        _ => None,
    };
    let value = match uri.port_u16() {
        Some(port) if Some(port) != default_port => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    HeaderValue::from_str(&value).map_err(|_| SignError::MissingHost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CONTENT_TYPE;

    #[test]
    fn host_from_uri() {
        let host = |u: &str| host_header(&u.parse().unwrap()).unwrap();
        assert_eq!(host("http://localhost:8080/"), "localhost:8080");
        assert_eq!(host("http://localhost:80/"), "localhost");
        assert_eq!(host("https://ecs.local:443/"), "ecs.local");
        assert_eq!(host("wss://ecs.local:443/ws?x=1"), "ecs.local");
        assert_eq!(host("wss://ecs.local:8443/ws"), "ecs.local:8443");
        assert_eq!(host("http://[::1]:9/"), "[::1]:9");
        assert_eq!(host_header(&"/relative".parse().unwrap()), Err(SignError::MissingHost));
    }

    #[test]
    fn rejects_unparseable_scopes() {
        let bad = Credentials::new("AK/X", "s");
        let params =
            SigningParams { credentials: &bad, region: "us-east-1", service: "ecs", time: SystemTime::UNIX_EPOCH };
        let mut headers = HeaderMap::new();
        let r = sign(&Method::GET, &"http://h/".parse().unwrap(), &mut headers, b"", &params);
        assert_eq!(r, Err(SignError::InvalidScope));
        let good = Credentials::new("AK", "s");
        for region in ["", "us east", "a,b"] {
            let params = SigningParams { credentials: &good, region, ..params };
            let r = sign(&Method::GET, &"http://h/".parse().unwrap(), &mut headers, b"", &params);
            assert_eq!(r, Err(SignError::InvalidScope), "{region:?}");
        }
    }

    #[test]
    fn resigning_replaces_the_old_signature() {
        let creds = Credentials::new("AK", "s");
        let mut params =
            SigningParams { credentials: &creds, region: "us-east-1", service: "ecs", time: SystemTime::UNIX_EPOCH };
        let uri: Uri = "http://h/".parse().unwrap();
        let mut headers = HeaderMap::new();
        sign(&Method::POST, &uri, &mut headers, b"{}", &params).unwrap();
        let first = headers[AUTHORIZATION].clone();
        params.time += std::time::Duration::from_secs(1);
        sign(&Method::POST, &uri, &mut headers, b"{}", &params).unwrap();
        assert_eq!(headers.get_all(AUTHORIZATION).iter().count(), 1);
        assert_ne!(headers[AUTHORIZATION], first);
        assert_eq!(headers[X_AMZ_DATE], "19700101T000001Z");
    }

    #[test]
    fn candidate_order_is_canonical() {
        let mut sorted = SIGNED_CANDIDATES;
        sorted.sort_unstable();
        assert_eq!(sorted, SIGNED_CANDIDATES);
        assert_eq!(CONTENT_TYPE.as_str(), SIGNED_CANDIDATES[0]);
    }
}
