//! Parsing the `Authorization` header:
//! `AWS4-HMAC-SHA256 Credential=<akid>/<yyyymmdd>/<region>/<service>/aws4_request,
//! SignedHeaders=<h1;h2>, Signature=<hex>`.
//!
//! Everything borrows from the header value, so parsing allocates nothing unless it fails.

use crate::error::AuthError;
use crate::ALGORITHM;

/// The parsed header. The slices point into the header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Authorization<'a> {
    pub access_key_id: &'a str,
    /// `<yyyymmdd>` from the credential scope.
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    /// `<yyyymmdd>/<region>/<service>/aws4_request`, as it goes into the string to sign.
    pub scope: &'a str,
    /// `<akid>/<yyyymmdd>/<region>`, which identifies a signing key.
    pub key_id: &'a str,
    pub signed_headers: &'a str,
    pub signature: &'a str,
}

impl<'a> Authorization<'a> {
    pub(crate) fn parse(value: &'a str) -> Result<Self, AuthError> {
        let value = value.trim_matches(is_ows);
        let (algorithm, params) = value.split_once(is_ows).unwrap_or((value, ""));
        if algorithm != ALGORITHM {
            return Err(AuthError::incomplete(format!(
                "Unsupported AWS 'algorithm': '{}'. Only '{ALGORITHM}' is supported.",
                truncate(algorithm)
            )));
        }

        let mut credential = None;
        let mut signed_headers = None;
        let mut signature = None;
        // Both `, ` and `,` separate parameters, in any order.
        for part in params.split(',').map(|p| p.trim_matches(is_ows)) {
            if part.is_empty() {
                continue;
            }
            let Some((key, val)) = part.split_once('=') else {
                return Err(AuthError::incomplete(format!(
                    "'{}' not a valid key=value pair (missing equal-sign) in Authorization header.",
                    truncate(part)
                )));
            };
            let slot = match key.trim_matches(is_ows) {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed_headers,
                "Signature" => &mut signature,
                // Tolerated: the signature, not the header's tidiness, decides authenticity.
                _ => continue,
            };
            if slot.is_some() {
                return Err(AuthError::incomplete(format!(
                    "Authorization header has '{}' more than once.",
                    truncate(key)
                )));
            }
            *slot = Some(val.trim_matches(is_ows)).filter(|v| !v.is_empty());
        }

        let mut missing = String::new();
        for (name, slot) in [("Credential", credential), ("Signature", signature), ("SignedHeaders", signed_headers)] {
            if slot.is_none() {
                missing.push_str(&format!("Authorization header requires '{name}' parameter. "));
            }
        }
        let (Some(credential), Some(signed_headers), Some(signature)) = (credential, signed_headers, signature) else {
            return Err(AuthError::Incomplete(missing.trim_end().to_owned()));
        };

        let mut auth = parse_credential(credential)?;
        check_signed_headers(signed_headers)?;
        auth.signed_headers = signed_headers;
        auth.signature = signature;
        Ok(auth)
    }

    /// Whether `name` (lowercase) is among the signed headers.
    pub(crate) fn signs(&self, name: &str) -> bool {
        self.signed_headers.split(';').any(|h| h == name)
    }
}

fn parse_credential(credential: &str) -> Result<Authorization<'_>, AuthError> {
    let malformed = || {
        AuthError::incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. \
             keyid/date/region/service/term, got '{}'",
            truncate(credential)
        ))
    };
    let mut parts = credential.splitn(5, '/');
    let (Some(akid), Some(date), Some(region), Some(service), Some(terminator)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    if akid.is_empty() || region.is_empty() || service.is_empty() || terminator.contains('/') {
        return Err(malformed());
    }
    if terminator != "aws4_request" {
        return Err(AuthError::incomplete(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
            truncate(terminator)
        )));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::incomplete(format!(
            "Invalid credential date '{}'. Date is not the required format: yyyyMMdd.",
            truncate(date)
        )));
    }
    let scope_start = akid.len() + 1;
    let key_id_end = scope_start + date.len() + 1 + region.len();
    Ok(Authorization {
        access_key_id: akid,
        date,
        region,
        service,
        scope: &credential[scope_start..],
        key_id: &credential[..key_id_end],
        signed_headers: "",
        signature: "",
    })
}

/// Names must be non-empty lowercase header tokens: a client that signed anything else cannot
/// have produced a canonical request that we would reproduce.
fn check_signed_headers(signed_headers: &str) -> Result<(), AuthError> {
    let valid = signed_headers.split(';').all(|name| {
        !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b))
    });
    if valid {
        Ok(())
    } else {
        Err(AuthError::incomplete(format!(
            "SignedHeaders must be lowercase header names separated by ';', got '{}'.",
            truncate(signed_headers)
        )))
    }
}

/// Optional whitespace as HTTP defines it.
fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Messages echo client input; cap it so a huge header does not make a huge error body.
fn truncate(s: &str) -> &str {
    const MAX: usize = 128;
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "d8cc7e922bf005ca5716df1ac4f459d7e462d10a52c27a969d20cb8a5ee87d0a";

    fn incomplete(value: &str) -> String {
        match Authorization::parse(value) {
            Err(AuthError::Incomplete(msg)) => msg,
            other => panic!("{value:?} gave {other:?}"),
        }
    }

    #[test]
    fn parses_botocore_form() {
        let value = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecs/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={SIG}"
        );
        let auth = Authorization::parse(&value).unwrap();
        assert_eq!(
            auth,
            Authorization {
                access_key_id: "AKIDEXAMPLE",
                date: "20150830",
                region: "us-east-1",
                service: "ecs",
                scope: "20150830/us-east-1/ecs/aws4_request",
                key_id: "AKIDEXAMPLE/20150830/us-east-1",
                signed_headers: "content-type;host;x-amz-date;x-amz-target",
                signature: SIG,
            }
        );
        assert!(auth.signs("host"));
        assert!(!auth.signs("hos"));
    }

    #[test]
    fn any_order_and_separator() {
        let value = format!(
            "AWS4-HMAC-SHA256   Signature={SIG},SignedHeaders=host;x-amz-date ,\
             Credential=AK/20150830/eu-west-1/ecs/aws4_request,"
        );
        let auth = Authorization::parse(&value).unwrap();
        assert_eq!(auth.access_key_id, "AK");
        assert_eq!(auth.region, "eu-west-1");
        assert_eq!(auth.signed_headers, "host;x-amz-date");
        assert_eq!(auth.signature, SIG);
    }

    #[test]
    fn malformed_headers() {
        assert!(incomplete("").contains("algorithm"));
        assert!(incomplete("Bearer abc").contains("'Bearer'"));
        assert!(incomplete("AWS4-HMAC-SHA512 Credential=a").contains("algorithm"));
        let msg = incomplete("AWS4-HMAC-SHA256 ");
        assert!(msg.contains("'Credential'") && msg.contains("'Signature'"));
        assert!(msg.contains("'SignedHeaders'"));
        let msg = incomplete("AWS4-HMAC-SHA256 Credential=AK/20150830/r/ecs/aws4_request");
        assert!(!msg.contains("'Credential'") && msg.contains("'Signature'"));
        assert!(incomplete("AWS4-HMAC-SHA256 Credential").contains("missing equal-sign"));
        assert!(incomplete("AWS4-HMAC-SHA256 Signature=a, Signature=b, Credential=c, SignedHeaders=host")
            .contains("more than once"));
        assert!(incomplete("AWS4-HMAC-SHA256 Credential=, SignedHeaders=host, Signature=a").contains("'Credential'"));
    }

    #[test]
    fn malformed_credentials() {
        let with = |cred: &str| {
            incomplete(&format!("AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=host;x-amz-date, Signature={SIG}"))
        };
        for cred in [
            "AK/20150830/us-east-1/ecs",
            "AK/20150830/us-east-1/ecs/aws4_request/extra",
            "/20150830/us-east-1/ecs/aws4_request",
            "AK/20150830//ecs/aws4_request",
            "AK/20150830/us-east-1//aws4_request",
            "AK",
        ] {
            assert!(with(cred).contains("exactly 5"), "{cred}");
        }
        assert!(with("AK/20150830/us-east-1/ecs/aws5_request").contains("terminator"));
        assert!(with("AK/2015083/us-east-1/ecs/aws4_request").contains("yyyyMMdd"));
        assert!(with("AK/2015083x/us-east-1/ecs/aws4_request").contains("yyyyMMdd"));
    }

    #[test]
    fn malformed_signed_headers() {
        for sh in ["Host;x-amz-date", "host;;x-amz-date", "host;", "host x-amz-date"] {
            let value = format!(
                "AWS4-HMAC-SHA256 Credential=AK/20150830/r/ecs/aws4_request, \
                 SignedHeaders={sh}, Signature={SIG}"
            );
            assert!(incomplete(&value).contains("SignedHeaders"), "{sh}");
        }
    }

    #[test]
    fn long_input_is_truncated_in_messages() {
        let long = "x".repeat(10_000);
        assert!(incomplete(&long).len() < 300);
    }
}
