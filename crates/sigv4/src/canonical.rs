//! The canonical request: the six-line text both sides hash, built from the request exactly as the
//! client will have seen it.
//!
//! The rules follow botocore's `SigV4Auth` (the reference client) and agree with aws-sdk-go-v2 (the
//! agent) and aws-sigv4 (Rust) for every request those clients make to ECS. The writer streams into
//! a hasher, so verification hashes the request without first building it as a string.

use http::HeaderMap;
use percent_encoding::{percent_decode, percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// Everything but RFC 3986's unreserved characters is percent-encoded in query keys and values.
const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The path keeps `/` as a separator. Applying this to the already-encoded path is what "encode
/// twice" means for non-S3 services: a `%` on the wire becomes `%25` in the canonical URI.
const PATH_ENCODE: &AsciiSet = &QUERY_ENCODE.remove(b'/');

/// The hex SHA-256 of an empty payload, which every bodiless request (the agent's websocket GET)
/// signs.
pub const EMPTY_PAYLOAD_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Where canonical text goes: a buffer when it is wanted for display, a hasher when only its
/// digest matters.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        Digest::update(self, bytes);
    }
}

/// The inputs to a canonical request, borrowed from the request being signed or verified.
#[derive(Clone, Copy, Debug)]
pub struct CanonicalRequest<'a> {
    /// The HTTP method, uppercase (as `http::Method::as_str` gives it).
    pub method: &'a str,
    /// The path as sent on the wire, still percent-encoded.
    pub path: &'a str,
    /// The raw query string without `?`, if any.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// Stands in for a missing `Host` header: HTTP/2 carries the host as `:authority`, which the
    /// http crate leaves in the URI.
    pub authority: Option<&'a str>,
    /// The semicolon-separated, lowercase header names, exactly as in `SignedHeaders=`.
    pub signed_headers: &'a str,
    /// Lowercase hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
    pub payload_hash: &'a str,
}

impl CanonicalRequest<'_> {
    /// The canonical request text. Header values are bytes and may not be UTF-8, hence `Vec<u8>`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write(&mut out);
        out
    }

    /// The canonical request as text, for logs and tests; non-UTF-8 header bytes become U+FFFD.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.to_bytes()).into_owned()
    }

    /// SHA-256 of the canonical request, the value the string to sign carries.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        self.write(&mut hasher);
        hasher.finalize().into()
    }

    pub(crate) fn write(&self, out: &mut impl Sink) {
        out.put(self.method.as_bytes());
        out.put(b"\n");
        write_canonical_uri(self.path, out);
        out.put(b"\n");
        write_canonical_query(self.query.unwrap_or(""), out);
        out.put(b"\n");
        for name in self.signed_headers.split(';') {
            out.put(name.as_bytes());
            out.put(b":");
            self.write_header_value(name, out);
            out.put(b"\n");
        }
        out.put(b"\n");
        out.put(self.signed_headers.as_bytes());
        out.put(b"\n");
        out.put(self.payload_hash.as_bytes());
    }

    /// Repeated headers are joined with `,` in the order received, each value normalized on its
    /// own, as botocore does. A signed header that is absent contributes an empty value, so the
    /// signature simply fails to match rather than the request being called malformed.
    fn write_header_value(&self, name: &str, out: &mut impl Sink) {
        let mut values = self.headers.get_all(name).iter().peekable();
        if values.peek().is_none() && name == "host" {
            if let Some(authority) = self.authority {
                write_trimmed(authority.as_bytes(), out);
            }
            return;
        }
        let mut first = true;
        for value in values {
            if !first {
                out.put(b",");
            }
            first = false;
            write_trimmed(value.as_bytes(), out);
        }
    }
}

/// Trims the value and collapses inner whitespace runs to one space (botocore's
/// `' '.join(v.split())`).
fn write_trimmed(value: &[u8], out: &mut impl Sink) {
    let mut words = value.split(|b| is_space(*b)).filter(|word| !word.is_empty());
    if let Some(first) = words.next() {
        out.put(first);
        for word in words {
            out.put(b" ");
            out.put(word);
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Removes `.`/`..` and empty segments (botocore's `remove_dot_segments`, which also collapses
/// `//` because AWS services do), then encodes the result once more.
pub(crate) fn write_canonical_uri(path: &str, out: &mut impl Sink) {
    // The only paths ECS sees are `/` and `/ws`: skip the segment bookkeeping for them.
    if path.is_empty() || path == "/" {
        out.put(b"/");
        return;
    }
    if !path.contains("//") && !path.split('/').any(|s| s == "." || s == "..") {
        put_encoded(path.as_bytes(), PATH_ENCODE, out);
        return;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    if path.starts_with('/') || segments.is_empty() {
        out.put(b"/");
    }
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            out.put(b"/");
        }
        put_encoded(segment.as_bytes(), PATH_ENCODE, out);
    }
    if path.ends_with('/') && !segments.is_empty() {
        out.put(b"/");
    }
}

/// Decodes every key and value, re-encodes them with the unreserved set, and sorts by key then
/// value. Decoding first makes `%3a`, `%3A` and a bare `:` sign alike, so the agent's URL encoder
/// and ours need not agree byte for byte. `+` decodes to a space, as in Go's `url.ParseQuery` and
/// aws-sigv4, which are the clients that actually send queries (the websocket URL).
pub(crate) fn write_canonical_query(query: &str, out: &mut impl Sink) {
    if query.is_empty() {
        return;
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (reencode_query_part(key), reencode_query_part(value))
        })
        .collect();
    pairs.sort_unstable();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.put(b"&");
        }
        out.put(key.as_bytes());
        out.put(b"=");
        out.put(value.as_bytes());
    }
}

fn reencode_query_part(raw: &str) -> String {
    let decoded: Vec<u8> = if raw.contains('+') {
        percent_decode(raw.replace('+', " ").as_bytes()).collect()
    } else {
        percent_decode(raw.as_bytes()).collect()
    };
    percent_encode(&decoded, QUERY_ENCODE).collect()
}

fn put_encoded(bytes: &[u8], set: &'static AsciiSet, out: &mut impl Sink) {
    for chunk in percent_encode(bytes, set) {
        out.put(chunk.as_bytes());
    }
}

/// Lowercase hex SHA-256 of `body`.
pub fn sha256_hex(body: &[u8]) -> String {
    Sha256Hex::of(body).as_str().to_owned()
}

/// A hex digest on the stack, so the verifier's per-request body hash does not allocate.
pub(crate) struct Sha256Hex([u8; 64]);

impl Sha256Hex {
    pub(crate) fn of(body: &[u8]) -> Self {
        let mut out = [0u8; 64];
        hex::encode_to_slice(Sha256::digest(body), &mut out).expect("64-byte buffer");
        Sha256Hex(out)
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex is ASCII")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(path: &str) -> String {
        let mut out = Vec::new();
        write_canonical_uri(path, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn query(q: &str) -> String {
        let mut out = Vec::new();
        write_canonical_query(q, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn canonical_uri() {
        assert_eq!(uri(""), "/");
        assert_eq!(uri("/"), "/");
        assert_eq!(uri("/ws"), "/ws");
        assert_eq!(uri("/a/b/"), "/a/b/");
        assert_eq!(uri("//a//b"), "/a/b");
        assert_eq!(uri("/a/./b/../c"), "/a/c");
        assert_eq!(uri("/.."), "/");
        assert_eq!(uri("/../"), "/");
        assert_eq!(uri("/a/.."), "/");
        assert_eq!(uri("/a/../b/"), "/b/");
        // Encoded once on the wire, encoded again here.
        assert_eq!(uri("/foo%20bar"), "/foo%2520bar");
        assert_eq!(uri("/~user/a-b_c.d"), "/~user/a-b_c.d");
        assert_eq!(uri("/a:b@c"), "/a%3Ab%40c");
        assert_eq!(uri("//x%2F/./y"), "/x%252F/y");
    }

    #[test]
    fn canonical_query() {
        assert_eq!(query(""), "");
        assert_eq!(query("b=2&a=1"), "a=1&b=2");
        assert_eq!(query("a=2&a=1&a=10"), "a=1&a=10&a=2");
        assert_eq!(query("flag&x="), "flag=&x=");
        assert_eq!(query("k=a b"), "k=a%20b");
        assert_eq!(query("k=a+b"), "k=a%20b");
        assert_eq!(query("k=a%2Bb"), "k=a%2Bb");
        assert_eq!(query("k=%7e%41"), "k=~A");
        assert_eq!(query("k=a:b"), "k=a%3Ab");
        assert_eq!(query("k=a%3ab"), "k=a%3Ab");
        assert_eq!(query("k=%zz"), "k=%25zz");
        assert_eq!(query("&&k=v&"), "k=v");
        assert_eq!(query("k=v=w"), "k=v%3Dw");
        // Sorting is on the encoded form, so `%` (0x25) sorts before letters.
        assert_eq!(query("b=1&%21=2"), "%21=2&b=1");
        assert_eq!(
            query("seqNum=1&clusterArn=arn%3Aaws%3Aecs%3Aus-east-1%3A123456789012%3Acluster%2Fdefault"),
            "clusterArn=arn%3Aaws%3Aecs%3Aus-east-1%3A123456789012%3Acluster%2Fdefault&seqNum=1"
        );
    }

    #[test]
    fn header_values_are_trimmed_and_joined() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.com".parse().unwrap());
        headers.append("my-header", "  a   b \t c  ".parse().unwrap());
        headers.append("my-header", "d".parse().unwrap());
        headers.insert("empty", "".parse().unwrap());
        let creq = CanonicalRequest {
            method: "GET",
            path: "/",
            query: None,
            headers: &headers,
            authority: None,
            signed_headers: "empty;host;missing;my-header",
            payload_hash: EMPTY_PAYLOAD_SHA256,
        };
        assert_eq!(
            creq.to_string_lossy(),
            format!(
                "GET\n/\n\nempty:\nhost:example.com\nmissing:\nmy-header:a b c,d\n\n\
                 empty;host;missing;my-header\n{EMPTY_PAYLOAD_SHA256}"
            )
        );
        assert_eq!(creq.digest(), <[u8; 32]>::from(Sha256::digest(creq.to_bytes())));
    }

    #[test]
    fn host_falls_back_to_authority() {
        let headers = HeaderMap::new();
        let creq = CanonicalRequest {
            method: "GET",
            path: "/ws",
            query: None,
            headers: &headers,
            authority: Some("localhost:8080"),
            signed_headers: "host",
            payload_hash: EMPTY_PAYLOAD_SHA256,
        };
        assert!(creq.to_string_lossy().contains("\nhost:localhost:8080\n"));
    }

    #[test]
    fn empty_hash() {
        assert_eq!(sha256_hex(b""), EMPTY_PAYLOAD_SHA256);
    }
}
