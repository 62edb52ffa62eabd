//! Registering until the control plane answers, as the ECS agent does: an agent started before
//! its control plane (a host booting, the server restarting, a network not up yet) waits for it
//! instead of exiting.
//!
//! Each failure is logged with why and when the next attempt is: 1 s, doubling to 30 s, each wait
//! jittered by up to a fifth so that a fleet of agents does not come back in step. Only failures
//! that could pass retry: the server unreachable, a 5xx, throttling. An answer that will never
//! change (a refused signature, a malformed request, any other 4xx) ends the wait with the error.
//! With several servers, each attempt has already tried every one of them (`endpoints.rs`): the
//! wait comes only after a full round failed.

use std::time::Duration;

use rand::Rng;

use super::api_client::{ApiClient, ApiClientError};
use super::join::enroll;
use super::registration::{AgentIdentity, RegistrationConfig};

/// The first wait after a failure.
pub const FIRST: Duration = Duration::from_secs(1);
/// The longest wait.
pub const MAX: Duration = Duration::from_secs(30);

/// Waits of 1 s, 2 s, 4 s ... up to 30 s, before jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST }
    }
}

impl Backoff {
    /// The next wait without jitter, and the one after it doubled.
    pub fn step(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(MAX);
        now
    }

    /// The next wait, jittered by up to a fifth either way.
    pub fn next_jittered(&mut self) -> Duration {
        let base = self.step();
        base.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
    }
}

/// Whether a failed call may succeed if made again unchanged.
pub fn is_retryable(e: &ApiClientError) -> bool {
    match e {
        ApiClientError::Transport { .. } => true,
        ApiClientError::Api { status, code, .. } => {
            *status >= 500 || *status == 429 || code == "ThrottlingException" || code == "ServerException"
        }
        ApiClientError::Request(_) | ApiClientError::Decode(_) => false,
    }
}

/// [`enroll`] (join with a token, or register), retried with back-off while the failure may
/// pass.
pub async fn enroll_with_retry(
    client: &ApiClient,
    cfg: &RegistrationConfig,
    token: Option<&str>,
) -> Result<(ApiClient, AgentIdentity), ApiClientError> {
    let mut backoff = Backoff::default();
    loop {
        match enroll(client, cfg, token).await {
            Ok(done) => return Ok(done),
            Err(e) if is_retryable(&e) => {
                let wait = backoff.next_jittered();
                tracing::warn!(
                    servers = %client.endpoints(),
                    error = %e,
                    retry_in_ms = wait.as_millis() as u64,
                    "cannot register with the control plane yet; retrying"
                );
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_one_second_to_thirty_with_jitter() {
        let mut b = Backoff::default();
        let steps: Vec<u64> = (0..8).map(|_| b.step().as_secs()).collect();
        assert_eq!(steps, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..50).map(|_| b.next_jittered()).collect();
        assert!(waits[0] >= Duration::from_millis(800) && waits[0] < Duration::from_millis(1200), "{waits:?}");
        assert!(waits[10..].iter().all(|w| *w >= Duration::from_secs(24) && *w < Duration::from_secs(36)));
        // Jittered: not every wait at the cap is the same.
        assert!(waits[10..].windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn only_failures_that_may_pass_are_retried() {
        let api = |status: u16, code: &str| ApiClientError::Api { code: code.into(), message: String::new(), status };
        assert!(is_retryable(&api(500, "ServerException")));
        assert!(is_retryable(&api(503, "ServiceUnavailable")));
        assert!(is_retryable(&api(400, "ThrottlingException")));
        assert!(is_retryable(&api(429, "TooManyRequests")));
        assert!(!is_retryable(&api(400, "UnrecognizedClientException")));
        assert!(!is_retryable(&api(403, "InvalidSignatureException")));
        assert!(!is_retryable(&api(400, "ClusterNotFoundException")));
        assert!(!is_retryable(&ApiClientError::Request("bad endpoint".into())));
    }
}
