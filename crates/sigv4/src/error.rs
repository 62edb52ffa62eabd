//! Why a request failed authentication, in the terms AWS clients understand: each variant maps to
//! one of the four non-modeled error codes AWS answers with, and a message worded like AWS's.

use std::time::Duration;

use crate::time::AmzDate;

/// A rejected request. [`AuthError::code`] is the `__type` to answer with and
/// [`AuthError::message`] the `message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header at all.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,

    /// The `Authorization` header or the headers it depends on are malformed. The text says what.
    #[error("{0}")]
    Incomplete(String),

    /// The access key is not one of ours.
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey,

    /// `X-Amz-Security-Token` was sent. Flotilla issues no session credentials, so no token can
    /// be valid; AWS answers an unknown token the same way.
    #[error("The security token included in the request is invalid.")]
    SessionTokenNotSupported,

    /// The signature is well-formed but not the one we computed.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check \
         your AWS Secret Access Key and signing method. Consult the service documentation for \
         details."
    )]
    SignatureMismatch,

    /// `X-Amz-Content-SHA256` does not describe the body that arrived.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    PayloadHashMismatch,

    /// The request was signed more than the allowed skew before now.
    #[error(
        "Signature expired: {signed} is now earlier than {limit} ({now} - {})",
        skew_text(*max_skew)
    )]
    Expired { signed: AmzDate, now: AmzDate, limit: AmzDate, max_skew: Duration },

    /// The request was signed more than the allowed skew after now.
    #[error(
        "Signature not yet current: {signed} is still later than {limit} ({now} + {})",
        skew_text(*max_skew)
    )]
    NotYetValid { signed: AmzDate, now: AmzDate, limit: AmzDate, max_skew: Duration },

    /// The credential scope's date is not the date of `X-Amz-Date`.
    #[error(
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
         HTTP: '{scope_date}' != '{request_date}', from '{request_time}'."
    )]
    ScopeDateMismatch { scope_date: String, request_date: String, request_time: String },

    /// The credential is scoped to another service.
    #[error("Credential should be scoped to correct service: '{expected}'. ")]
    WrongService { expected: String },

    /// The credential is scoped to a region this server does not accept.
    #[error("Credential should be scoped to a valid region. ")]
    RegionNotAccepted { region: String },
}

fn skew_text(max_skew: Duration) -> String {
    let secs = max_skew.as_secs();
    if secs.is_multiple_of(60) {
        format!("{} min.", secs / 60)
    } else {
        format!("{secs} sec.")
    }
}

impl AuthError {
    /// The AWS error code (`__type` / `x-amzn-ErrorType`).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            AuthError::Incomplete(_) => "IncompleteSignatureException",
            AuthError::UnknownAccessKey | AuthError::SessionTokenNotSupported => "UnrecognizedClientException",
            AuthError::SignatureMismatch
            | AuthError::PayloadHashMismatch
            | AuthError::Expired { .. }
            | AuthError::NotYetValid { .. }
            | AuthError::ScopeDateMismatch { .. }
            | AuthError::WrongService { .. }
            | AuthError::RegionNotAccepted { .. } => "InvalidSignatureException",
        }
    }

    /// The human-readable message, worded as AWS words it.
    pub fn message(&self) -> String {
        self.to_string()
    }

    pub(crate) fn incomplete(message: impl Into<String>) -> Self {
        AuthError::Incomplete(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_wording_matches_aws() {
        let at = |s| AmzDate::parse_basic(s).unwrap();
        let err = AuthError::Expired {
            signed: at("20150830T123600Z"),
            now: at("20150830T130600Z"),
            limit: at("20150830T125100Z"),
            max_skew: Duration::from_secs(15 * 60),
        };
        assert_eq!(err.code(), "InvalidSignatureException");
        assert_eq!(
            err.message(),
            "Signature expired: 20150830T123600Z is now earlier than 20150830T125100Z \
             (20150830T130600Z - 15 min.)"
        );
        let err = AuthError::NotYetValid {
            signed: at("20150830T130600Z"),
            now: at("20150830T123600Z"),
            limit: at("20150830T125100Z"),
            max_skew: Duration::from_secs(90),
        };
        assert_eq!(
            err.message(),
            "Signature not yet current: 20150830T130600Z is still later than 20150830T125100Z \
             (20150830T123600Z + 90 sec.)"
        );
    }
}
