//! Server-side verification: given a request as received, decide who signed it or say why not.

use std::fmt;
use std::time::{Duration, SystemTime};

use http::header::{AUTHORIZATION, DATE};
use http::{HeaderMap, Method, Uri};

use crate::authorization::Authorization;
use crate::canonical::{CanonicalRequest, Sha256Hex};
use crate::credentials::SecretLookup;
use crate::error::AuthError;
use crate::key::{signature_matches, KeyCache, SigningKey};
use crate::time::AmzDate;
use crate::{UNSIGNED_PAYLOAD, X_AMZ_CONTENT_SHA256, X_AMZ_DATE, X_AMZ_SECURITY_TOKEN};

/// Who a verified request came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedPrincipal {
    pub access_key_id: String,
    /// The region the client signed for, one the verifier accepts.
    pub region: String,
}

/// Checks SigV4 `Authorization` headers for one service. Share one per server (it is `Sync`): it
/// keeps the derived signing keys so most requests cost two SHA-256 passes and one HMAC.
pub struct Verifier {
    service: String,
    regions: Vec<String>,
    max_skew: Duration,
    /// Whether `X-Amz-Content-SHA256: UNSIGNED-PAYLOAD` may stand for the body's hash.
    unsigned_payload: bool,
    cache: KeyCache,
}

impl Default for Verifier {
    /// Service `ecs`, any region, ±15 minutes.
    fn default() -> Self {
        Verifier::new("ecs")
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("service", &self.service)
            .field("regions", &self.regions)
            .field("max_skew", &self.max_skew)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// AWS's own window; clients do not retry with a fresh date, so do not tighten it casually.
    pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(15 * 60);

    /// A verifier for `service` accepting any region.
    pub fn new(service: impl Into<String>) -> Self {
        Verifier {
            service: service.into(),
            regions: Vec::new(),
            max_skew: Self::DEFAULT_MAX_SKEW,
            unsigned_payload: true,
            cache: KeyCache::default(),
        }
    }

    /// Restricts the accepted credential-scope regions; an empty list accepts any.
    pub fn with_regions<I, S>(mut self, regions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.regions = regions.into_iter().map(Into::into).collect();
        self
    }

    /// How far the request's date may be from `now`, either way.
    pub fn with_max_skew(mut self, max_skew: Duration) -> Self {
        self.max_skew = max_skew;
        self
    }

    /// Refuses `UNSIGNED-PAYLOAD`: the body is then hashed like any other and the header's
    /// claim does not match it, which is how AWS answers it on services other than S3 (a JSON API
    /// whose body is not signed would let anyone on the path rewrite the call).
    pub fn refuse_unsigned_payload(mut self) -> Self {
        self.unsigned_payload = false;
        self
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn regions(&self) -> &[String] {
        &self.regions
    }

    pub fn max_skew(&self) -> Duration {
        self.max_skew
    }

    /// Verifies the request parts of an `http::Request`.
    pub fn verify_parts(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        now: SystemTime,
        secrets: &(impl SecretLookup + ?Sized),
    ) -> Result<VerifiedPrincipal, AuthError> {
        self.verify(&parts.method, &parts.uri, &parts.headers, body, now, secrets)
    }

    /// Verifies a request as received: `uri` and `headers` exactly as they arrived (behind a
    /// proxy, the `Host` must still be the one the client used) and the complete body.
    ///
    /// Structural problems are reported before credential problems, and those before a signature
    /// mismatch, so a client learns the most useful thing first.
    pub fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
        secrets: &(impl SecretLookup + ?Sized),
    ) -> Result<VerifiedPrincipal, AuthError> {
        let auth_value =
            single_header(headers, AUTHORIZATION.as_str())?.ok_or(AuthError::MissingAuthenticationToken)?;
        let auth = Authorization::parse(auth_value)?;

        let (date_header, signed_at) = request_date(headers)?;
        if !auth.signs("host") {
            return Err(AuthError::incomplete(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
            ));
        }
        if !auth.signs(date_header) {
            return Err(AuthError::incomplete(format!(
                "'{}' must be a 'SignedHeader' in the AWS Authorization.",
                if date_header == X_AMZ_DATE { "X-Amz-Date" } else { "Date" }
            )));
        }
        if headers.contains_key(X_AMZ_SECURITY_TOKEN) {
            return Err(AuthError::SessionTokenNotSupported);
        }

        self.check_scope(&auth, signed_at)?;
        self.check_skew(signed_at, now)?;

        let secret = secrets.secret(auth.access_key_id).ok_or(AuthError::UnknownAccessKey)?;

        let body_hash;
        let payload_hash = match single_header(headers, X_AMZ_CONTENT_SHA256)? {
            Some(UNSIGNED_PAYLOAD) if self.unsigned_payload => UNSIGNED_PAYLOAD,
            Some(claimed) => {
                body_hash = Sha256Hex::of(body);
                if !claimed.eq_ignore_ascii_case(body_hash.as_str()) {
                    return Err(AuthError::PayloadHashMismatch);
                }
                // The client signed the header's spelling, not ours.
                claimed
            }
            None => {
                body_hash = Sha256Hex::of(body);
                body_hash.as_str()
            }
        };

        let canonical = CanonicalRequest {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query(),
            headers,
            authority: uri.authority().map(|a| a.as_str()),
            signed_headers: auth.signed_headers,
            payload_hash,
        };
        let digest = canonical.digest();
        let amz_date = signed_at.basic_bytes();

        let cached = self.cache.get(auth.key_id, &secret);
        let key = match &cached {
            Some(key) => key.clone(),
            None => SigningKey::derive(&secret, auth.date, auth.region, auth.service),
        };
        let expected = key.sign(&amz_date, auth.scope, &digest);
        if !signature_matches(&expected, auth.signature) {
            return Err(AuthError::SignatureMismatch);
        }
        // Only keys that just verified a request are cached, so forged requests cannot churn it.
        if cached.is_none() {
            self.cache.insert(auth.key_id, &secret, key);
        }
        Ok(VerifiedPrincipal { access_key_id: auth.access_key_id.to_owned(), region: auth.region.to_owned() })
    }

    fn check_scope(&self, auth: &Authorization<'_>, signed_at: AmzDate) -> Result<(), AuthError> {
        if auth.service != self.service {
            return Err(AuthError::WrongService { expected: self.service.clone() });
        }
        if !self.regions.is_empty() && !self.regions.iter().any(|r| r == auth.region) {
            return Err(AuthError::RegionNotAccepted { region: auth.region.to_owned() });
        }
        if auth.date.as_bytes() != signed_at.date_stamp() {
            let request_time = signed_at.to_string();
            return Err(AuthError::ScopeDateMismatch {
                scope_date: auth.date.to_owned(),
                request_date: request_time[..8].to_owned(),
                request_time,
            });
        }
        Ok(())
    }

    /// Rejects requests signed more than `max_skew` before or after `now`; exactly `max_skew`
    /// away is still accepted.
    fn check_skew(&self, signed_at: AmzDate, now: SystemTime) -> Result<(), AuthError> {
        let now = AmzDate::from_system_time(now);
        let skew = i64::try_from(self.max_skew.as_secs()).unwrap_or(i64::MAX);
        let offset = signed_at.unix_seconds().saturating_sub(now.unix_seconds());
        if offset < -skew {
            return Err(AuthError::Expired {
                signed: signed_at,
                now,
                limit: now.add_seconds(-skew),
                max_skew: self.max_skew,
            });
        }
        if offset > skew {
            return Err(AuthError::NotYetValid {
                signed: signed_at,
                now,
                limit: now.add_seconds(skew),
                max_skew: self.max_skew,
            });
        }
        Ok(())
    }
}

/// The request's signing time and the header it came from: `X-Amz-Date`, else `Date` (botocore
/// signs `Date` when it finds no `X-Amz-Date`). `Date` may be an ordinary HTTP date.
fn request_date(headers: &HeaderMap) -> Result<(&'static str, AmzDate), AuthError> {
    if let Some(value) = single_header(headers, X_AMZ_DATE)? {
        return AmzDate::parse_basic(value).map(|d| (X_AMZ_DATE, d)).ok_or_else(|| bad_date(value));
    }
    if let Some(value) = single_header(headers, DATE.as_str())? {
        return AmzDate::parse_any(value).map(|d| (DATE.as_str(), d)).ok_or_else(|| bad_date(value));
    }
    Err(AuthError::incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."))
}

fn bad_date(value: &str) -> AuthError {
    let shown: String = value.chars().take(64).collect();
    AuthError::incomplete(format!(
        "Date must be in ISO-8601 'basic format'. Got '{shown}'. See \
         http://en.wikipedia.org/wiki/ISO_8601"
    ))
}

/// A header that must appear at most once and be text, without surrounding whitespace. Two `Authorization` headers, say, would
/// leave it ambiguous which one was meant, so that is malformed rather than first-wins.
fn single_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::incomplete(format!("The request has more than one '{name}' header.")));
    }
    // HTTP parsers strip optional whitespace around values; do the same for HeaderMaps built
    // by other means so the verdict does not depend on how the request was assembled.
    value
        .to_str()
        .map(|v| Some(v.trim_matches([' ', '\t'])))
        .map_err(|_| AuthError::incomplete(format!("The '{name}' header is not valid text.")))
}
