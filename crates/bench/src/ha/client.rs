//! An ECS client over several servers, as a user's SDK with several endpoints behaves: a call
//! goes to one server; when that server cannot be reached or answers 5xx, the same request (with
//! the same clientToken) goes to the next, until `deadline`. A 4xx answer is final.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::load::{connect, exchange, signed_request, Target};

/// Where a call ended.
#[derive(Debug)]
pub enum Outcome {
    /// 200, and its body.
    Ok(Value),
    /// A modeled refusal (4xx): `(code, message)`.
    Refused(String, String),
    /// No server answered with anything but transport errors or 5xx before the deadline: the
    /// request may or may not have been applied.
    Unknown(String),
}

/// A client that spreads calls over `targets` and moves on when one fails.
pub struct MultiClient {
    targets: Vec<Target>,
    next: AtomicUsize,
    /// Until when each target is passed over after it failed (while another is left to try), as
    /// clients with several endpoints do.
    down_until: std::sync::Mutex<Vec<Option<Instant>>>,
    /// How long one attempt may take.
    pub attempt_timeout: Duration,
}

impl MultiClient {
    pub fn new(targets: Vec<Target>) -> Self {
        let down_until = std::sync::Mutex::new(vec![None; targets.len()]);
        MultiClient { targets, next: AtomicUsize::new(0), down_until, attempt_timeout: Duration::from_secs(2) }
    }

    async fn attempt(&self, target: &Target, operation: &str, body: &[u8]) -> anyhow::Result<(u16, Value)> {
        let once = async {
            let mut sender = connect(target.addr).await?;
            let (status, bytes) = exchange(&mut sender, signed_request(target, operation, body.to_vec())?).await?;
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            anyhow::Ok((status, value))
        };
        tokio::time::timeout(self.attempt_timeout, once)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {:?}", self.attempt_timeout))?
    }

    /// The next target in turn that is not passed over (any, when all are).
    fn pick(&self) -> usize {
        let now = Instant::now();
        let down = self.down_until.lock().map(|d| d.clone()).unwrap_or_default();
        for _ in 0..self.targets.len() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len();
            if down.get(i).copied().flatten().is_none_or(|until| until <= now) {
                return i;
            }
        }
        self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len()
    }

    fn mark_down(&self, i: usize) {
        if let Ok(mut down) = self.down_until.lock() {
            down[i] = Some(Instant::now() + Duration::from_secs(2));
        }
    }

    /// Calls `operation`, retrying on other servers until `within` has passed.
    pub async fn call(&self, operation: &str, body: &Value, within: Duration) -> Outcome {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let started = Instant::now();
        loop {
            let i = self.pick();
            let last = match self.attempt(&self.targets[i], operation, &bytes).await {
                Ok((200, v)) => return Outcome::Ok(v),
                Ok((status, v)) if (400..500).contains(&status) => {
                    let code = v["__type"].as_str().unwrap_or("?").rsplit('#').next().unwrap_or("?").to_string();
                    return Outcome::Refused(code, v["message"].as_str().unwrap_or_default().to_string());
                }
                Ok((status, v)) => format!("{operation} at {}: {status} {v}", self.targets[i].addr),
                Err(e) => format!("{operation} at {}: {e}", self.targets[i].addr),
            };
            self.mark_down(i);
            if started.elapsed() > within {
                return Outcome::Unknown(last);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`MultiClient::call`] that must succeed.
    pub async fn ok(&self, operation: &str, body: &Value) -> anyhow::Result<Value> {
        match self.call(operation, body, Duration::from_secs(20)).await {
            Outcome::Ok(v) => Ok(v),
            Outcome::Refused(code, message) => anyhow::bail!("{operation}: {code}: {message}"),
            Outcome::Unknown(e) => anyhow::bail!("{operation}: no server answered: {e}"),
        }
    }
}
