//! AWS Signature Version 4 for Flotilla, both directions. The API server and the agent gateway
//! use [`Verifier`] to authenticate every request they receive (the ECS JSON 1.1 calls from
//! botocore, Go SDK v2, Terraform and the agent, and the agent's ACS/TCS websocket upgrades)
//! against access keys in Flotilla's own credential store; the agent uses [`sign`] to sign its API
//! calls and its websocket upgrade `GET` the way aws-sdk-go-v2 would. Failures come back as
//! [`AuthError`], whose [`code`](AuthError::code) and [`message`](AuthError::message) are the
//! `__type` and `message` AWS itself would answer with.
//!
//! The canonicalization follows `shared/reference/ecs-api.md` §6 (botocore's `SigV4Auth`) and is
//! cross-checked in the tests against the official `aws-sigv4` signer. Presigned (query-string)
//! authentication and session tokens are not supported: ECS clients use neither, and Flotilla
//! issues no session credentials.
//!
//! ```
//! use std::time::SystemTime;
//! use flotilla_sigv4::{sign, Credentials, SigningParams, Verifier};
//!
//! let creds = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
//! let uri: http::Uri = "http://localhost:8080/".parse().unwrap();
//! let mut headers = http::HeaderMap::new();
//! headers.insert("x-amz-target", "AmazonEC2ContainerServiceV20141113.ListClusters".parse().unwrap());
//! let body = br#"{}"#;
//! let now = SystemTime::now();
//! let params = SigningParams { credentials: &creds, region: "us-east-1", service: "ecs", time: now };
//! sign(&http::Method::POST, &uri, &mut headers, body, &params).unwrap();
//!
//! let verifier = Verifier::new("ecs").with_regions(["us-east-1"]);
//! let who = verifier.verify(&http::Method::POST, &uri, &headers, body, now, &creds).unwrap();
//! assert_eq!(who.access_key_id, "AKIDEXAMPLE");
//! ```

mod authorization;
mod canonical;
mod credentials;
mod error;
mod key;
mod sign;
mod time;
mod verify;

pub use canonical::{sha256_hex, CanonicalRequest, EMPTY_PAYLOAD_SHA256};
pub use credentials::{Credentials, SecretFn, SecretLookup};
pub use error::AuthError;
pub use sign::{sign, sign_parts, sign_request, SignError, SigningParams};
pub use time::{format_amz_date, AmzDate};
pub use verify::{VerifiedPrincipal, Verifier};

/// The only algorithm SigV4 (as opposed to SigV4a) defines.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The payload-hash placeholder a client sends when it chose not to sign the body.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

pub(crate) const X_AMZ_DATE: &str = "x-amz-date";
pub(crate) const X_AMZ_TARGET: &str = "x-amz-target";
pub(crate) const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";
pub(crate) const X_AMZ_SECURITY_TOKEN: &str = "x-amz-security-token";
