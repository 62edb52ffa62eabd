//! The supervisor of `flotilla server`'s background loops (the service controller, the reaper,
//! the cache's watch follower, and whatever loop comes next).
//!
//! Each loop is registered by name with a factory that makes a fresh run of it. A run that
//! returns an error or panics is logged, counted in `/metrics` and started again after an
//! exponential back-off (100 ms doubling to 30 s; a run that lasted longer than the longest
//! back-off starts the count again), so one bad record or one bug costs a moment of one loop,
//! not the server. A run that returns `Ok` has finished on purpose and is not restarted. What
//! each loop is doing right now is what `GET /health` reports.
//!
//! Leader-only loops: with several servers on one etcd, some loops (the controller, the reaper)
//! must run on the elected leader only. That step will add a gate in front of the factory: a
//! `spawn_gated(name, gate, factory)` whose supervising task waits for the gate (this server
//! leads), runs the factory while the lease holds, drops the run when it is lost and reports the
//! loop as [`LoopState::Standby`] meanwhile. Restarts and reporting stay as they are here.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// Why a run of a loop ended early.
pub type LoopError = Box<dyn std::error::Error + Send + Sync>;

/// One run of a loop.
pub type LoopRun = Pin<Box<dyn Future<Output = Result<(), LoopError>> + Send>>;

/// The first pause before a failed loop starts again.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause before a failed loop starts again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a loop is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopState {
    Running,
    /// Failed and waiting out its back-off before the next run.
    Restarting,
    /// Returned `Ok`: done on purpose.
    Finished,
    /// Waiting to lead (reserved for leader-only loops; see the module docs).
    Standby,
}

impl LoopState {
    pub fn as_str(self) -> &'static str {
        match self {
            LoopState::Running => "running",
            LoopState::Restarting => "restarting",
            LoopState::Finished => "finished",
            LoopState::Standby => "standby",
        }
    }

    /// Whether the loop is up, or not meant to run here: anything but a loop that is down.
    pub fn is_healthy(self) -> bool {
        self != LoopState::Restarting
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoopLabels {
    pub r#loop: &'static str,
}

/// The supervisor's metrics, registered into the server's registry by [`crate::metrics`].
#[derive(Clone, Default)]
pub struct LoopMetrics {
    /// Runs that failed (error or panic) and were restarted, per loop.
    pub restarts: Family<LoopLabels, Counter>,
    /// 1 while the loop runs, 0 otherwise.
    pub running: Family<LoopLabels, Gauge>,
    /// Errors a loop logged and carried on past (one service of the controller's pass), per loop.
    pub errors: Family<LoopLabels, Counter>,
}

/// Runs loops, restarts the ones that fail and tells what each is doing.
#[derive(Default)]
pub struct Supervisor {
    states: Arc<Mutex<BTreeMap<&'static str, LoopState>>>,
    metrics: LoopMetrics,
}

/// The supervising task of one loop: aborting it drops the loop's run too.
pub struct LoopHandle(tokio::task::JoinHandle<()>);

impl LoopHandle {
    /// Stops the loop and waits until its run has been dropped (and let go of what it held).
    pub async fn stop(self) {
        self.0.abort();
        let _ = self.0.await;
    }
}

impl Supervisor {
    pub fn new() -> Arc<Self> {
        Arc::new(Supervisor::default())
    }

    pub fn metrics(&self) -> &LoopMetrics {
        &self.metrics
    }

    /// Starts supervising the loop `name`: `factory` makes each run.
    pub fn spawn<F, Fut>(&self, name: &'static str, factory: F) -> LoopHandle
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), LoopError>> + Send + 'static,
    {
        let states = self.states.clone();
        let metrics = self.metrics.clone();
        let labels = LoopLabels { r#loop: name };
        let set = move |state: LoopState| {
            crate::locks::lock(&states).insert(name, state);
            metrics.running.get_or_create(&labels).set(i64::from(state == LoopState::Running));
        };
        set(LoopState::Running);
        let restarts = self.metrics.restarts.get_or_create(&LoopLabels { r#loop: name }).clone();
        LoopHandle(tokio::spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                set(LoopState::Running);
                let started = Instant::now();
                let failure = match std::panic::AssertUnwindSafe(factory()).catch_unwind().await {
                    Ok(Ok(())) => {
                        tracing::info!(r#loop = name, "background loop finished");
                        set(LoopState::Finished);
                        return;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(panic) => panic_message(&*panic),
                };
                if started.elapsed() > MAX_BACKOFF {
                    backoff = FIRST_BACKOFF;
                }
                set(LoopState::Restarting);
                restarts.inc();
                tracing::error!(r#loop = name, error = %failure, retry_in_ms = backoff.as_millis() as u64, "background loop failed; restarting it");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }))
    }

    /// Counts an error that the loop `name` logged and carried on past.
    pub fn count_error(&self, name: &'static str) {
        self.metrics.errors.get_or_create(&LoopLabels { r#loop: name }).inc();
    }

    /// What each loop is doing, by name.
    pub fn states(&self) -> BTreeMap<&'static str, LoopState> {
        crate::locks::lock(&self.states).clone()
    }

    /// Whether every loop is up (or not meant to run here).
    pub fn healthy(&self) -> bool {
        self.states().values().all(|s| s.is_healthy())
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!("panicked: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn a_panicking_loop_is_restarted_counted_and_reported() {
        let sup = Supervisor::new();
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let _h = sup.spawn("flaky", move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    panic!("injected");
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        until("the third run", || runs.load(Ordering::SeqCst) == 3).await;
        tokio::task::yield_now().await;
        assert_eq!(sup.states()["flaky"], LoopState::Running);
        assert!(sup.healthy());
        assert_eq!(sup.metrics().restarts.get_or_create(&LoopLabels { r#loop: "flaky" }).get(), 2);
        assert_eq!(sup.metrics().running.get_or_create(&LoopLabels { r#loop: "flaky" }).get(), 1);
    }

    #[tokio::test]
    async fn a_failing_loop_backs_off_exponentially_and_shows_as_down() {
        let sup = Supervisor::new();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let s = starts.clone();
        let t0 = std::time::Instant::now();
        let _h = sup.spawn("broken", move || {
            s.lock().unwrap().push(t0.elapsed());
            async { Err::<(), LoopError>("always".into()) }
        });
        until("five runs", || starts.lock().unwrap().len() >= 5).await;
        assert_eq!(sup.states()["broken"], LoopState::Restarting);
        assert!(!sup.healthy());
        let starts = starts.lock().unwrap().clone();
        let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        for (gap, want) in gaps.iter().zip([100u64, 200, 400, 800]) {
            assert!(*gap >= Duration::from_millis(want), "gap {gap:?} shorter than {want} ms");
        }
    }

    #[tokio::test]
    async fn a_loop_that_finishes_is_not_restarted_and_stop_drops_the_run() {
        let sup = Supervisor::new();
        let _done = sup.spawn("once", || async { Ok(()) });
        until("the loop to finish", || sup.states().get("once") == Some(&LoopState::Finished)).await;
        assert!(sup.healthy());
        let held = Arc::new(());
        let h2 = held.clone();
        let forever = sup.spawn("forever", move || {
            let h = h2.clone();
            async move {
                let _h = h;
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        until("the run to start", || Arc::strong_count(&held) == 3).await;
        forever.stop().await;
        assert_eq!(Arc::strong_count(&held), 1, "stopping dropped the run and the factory");
    }
}
