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
//! must run on the elected leader only. The server campaigns once (`crate::leader`) and tells the
//! supervisor when a term of leadership begins ([`Supervisor::begin_term`]) and ends (the
//! [`TermGuard`] is dropped). A loop started with [`Supervisor::spawn_leader`] is
//! [`LoopState::Standby`] while this server does not lead; when a term begins its factory is
//! given the term's fence and the run starts (restarted on failure as above); when the term ends
//! the run is dropped at once and the loop goes back to Standby until the next term.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_store::Compare;
use futures::FutureExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

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
    /// A leader-only loop on a server that does not lead now (see the module docs).
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
    /// 1 while this server leads (its leader loops run), 0 otherwise.
    pub leader: Gauge,
    /// Terms of leadership this server has begun.
    pub terms: Counter,
}

/// One term of this server's leadership, as its leader loops see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// Counts this process's terms from 1, to tell one term from the next.
    pub number: u64,
    /// The compare every write of the term carries (`None` when nobody else can lead).
    pub fence: Option<Compare>,
}

/// Runs loops, restarts the ones that fail and tells what each is doing.
pub struct Supervisor {
    states: Arc<Mutex<BTreeMap<&'static str, LoopState>>>,
    metrics: LoopMetrics,
    /// The current term, `None` while this server does not lead.
    term: Arc<watch::Sender<Option<Term>>>,
    /// The task that campaigns and holds the terms (see `crate::leader`), stopped by `resign`.
    leadership: Mutex<Option<LoopHandle>>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor {
            states: Default::default(),
            metrics: Default::default(),
            term: Arc::new(watch::channel(None).0),
            leadership: Mutex::new(None),
        }
    }
}

/// A term this server holds: dropping it ends the term, and every leader loop's run with it.
pub struct TermGuard {
    term: Arc<watch::Sender<Option<Term>>>,
    number: u64,
    leader: Gauge,
}

impl TermGuard {
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Resolves when the term has been ended from inside this process (a write was refused by
    /// the fence: see [`Supervisor::fenced_out`]).
    pub async fn ended(&self) {
        let mut rx = self.term.subscribe();
        let _ = rx.wait_for(|t| !is_term(t, self.number)).await;
    }
}

impl Drop for TermGuard {
    fn drop(&mut self) {
        let number = self.number;
        self.term.send_if_modified(|t| {
            let ours = is_term(t, number);
            if ours {
                *t = None;
            }
            ours
        });
        self.leader.set(0);
    }
}

fn is_term(t: &Option<Term>, number: u64) -> bool {
    t.as_ref().is_some_and(|t| t.number == number)
}

/// Records what one loop is doing, in the states `/health` shows and the `running` gauge.
#[derive(Clone)]
struct Reporter {
    states: Arc<Mutex<BTreeMap<&'static str, LoopState>>>,
    running: Gauge,
    name: &'static str,
}

impl Reporter {
    fn set(&self, state: LoopState) {
        crate::locks::lock(&self.states).insert(self.name, state);
        self.running.set(i64::from(state == LoopState::Running));
    }
}

/// Runs `factory`'s runs one after another, restarting a failed one after its back-off, until
/// one returns `Ok`.
async fn supervise<F, Fut>(name: &'static str, factory: F, report: &Reporter, restarts: &Counter)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), LoopError>>,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        report.set(LoopState::Running);
        let started = Instant::now();
        let failure = match std::panic::AssertUnwindSafe(factory()).catch_unwind().await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => panic_message(&*panic),
        };
        if started.elapsed() > MAX_BACKOFF {
            backoff = FIRST_BACKOFF;
        }
        report.set(LoopState::Restarting);
        restarts.inc();
        tracing::error!(r#loop = name, error = %failure, retry_in_ms = backoff.as_millis() as u64, "background loop failed; restarting it");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
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

    fn reporter(&self, name: &'static str) -> Reporter {
        let running = self.metrics.running.get_or_create(&LoopLabels { r#loop: name }).clone();
        Reporter { states: self.states.clone(), running, name }
    }

    /// Starts supervising the loop `name`, which every server runs: `factory` makes each run.
    pub fn spawn<F, Fut>(&self, name: &'static str, factory: F) -> LoopHandle
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), LoopError>> + Send + 'static,
    {
        let report = self.reporter(name);
        report.set(LoopState::Running);
        let restarts = self.metrics.restarts.get_or_create(&LoopLabels { r#loop: name }).clone();
        LoopHandle(tokio::spawn(async move {
            supervise(name, factory, &report, &restarts).await;
            tracing::info!(r#loop = name, "background loop finished");
            report.set(LoopState::Finished);
        }))
    }

    /// Starts supervising the leader-only loop `name`: while this server leads, `factory` makes
    /// each run from the term's fence (to hand to [`crate::Ctx::fenced`]); when the term ends
    /// the run is dropped, wherever it was, and the loop waits in Standby for the next term. A
    /// run that returns `Ok` is not restarted within its term.
    pub fn spawn_leader<F, Fut>(&self, name: &'static str, factory: F) -> LoopHandle
    where
        F: Fn(Option<Compare>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), LoopError>> + Send + 'static,
    {
        let report = self.reporter(name);
        // As `spawn` does, say at once what the task is about to do.
        report.set(if self.leads() { LoopState::Running } else { LoopState::Standby });
        let restarts = self.metrics.restarts.get_or_create(&LoopLabels { r#loop: name }).clone();
        let mut terms = self.term.subscribe();
        LoopHandle(tokio::spawn(async move {
            loop {
                let term = match terms.wait_for(Option::is_some).await {
                    Ok(current) => current.clone(),
                    Err(_) => return, // the supervisor is gone
                };
                let Some(term) = term else { continue };
                tracing::info!(r#loop = name, term = term.number, "this server leads: leader loop starting");
                let mut ended = terms.clone();
                let over = ended.wait_for(|t| !is_term(t, term.number));
                let fence = term.fence.clone();
                let runs = async {
                    supervise(name, || factory(fence.clone()), &report, &restarts).await;
                    tracing::info!(r#loop = name, "leader loop finished for this term");
                    report.set(LoopState::Finished);
                    std::future::pending::<()>().await;
                };
                // The end of the term comes first: the run is dropped before anything else.
                tokio::select! {
                    biased;
                    _ = over => tracing::info!(r#loop = name, term = term.number, "the term ended: leader loop stopped"),
                    _ = runs => {}
                }
                report.set(LoopState::Standby);
            }
        }))
    }

    /// Begins a term of leadership fenced by `fence`: every leader loop starts. The term lasts
    /// until the guard is dropped (or a write is refused by its fence).
    pub fn begin_term(&self, fence: Option<Compare>) -> TermGuard {
        self.metrics.terms.inc();
        let number = self.metrics.terms.get();
        self.term.send_replace(Some(Term { number, fence }));
        self.metrics.leader.set(1);
        TermGuard { term: self.term.clone(), number, leader: self.metrics.leader.clone() }
    }

    /// Ends the current term if `fence` is its fence: a write carrying it was refused, so another
    /// server leads now, whatever this one's lease says.
    pub fn fenced_out(&self, fence: &Compare) {
        let ended = self.term.send_if_modified(|t| {
            let ours = t.as_ref().and_then(|t| t.fence.as_ref()) == Some(fence);
            if ours {
                *t = None;
            }
            ours
        });
        if ended {
            self.metrics.leader.set(0);
            tracing::warn!("a write was refused by the leader fence: another server leads; this one stands down");
        }
    }

    /// The current term, if this server leads.
    pub fn term(&self) -> Option<Term> {
        self.term.borrow().clone()
    }

    /// Whether this server leads now.
    pub fn leads(&self) -> bool {
        self.term.borrow().is_some()
    }

    /// Keeps the task that campaigns and holds the terms, to stop it with [`Supervisor::resign`].
    pub fn hold_leadership(&self, handle: LoopHandle) {
        if let Some(old) = crate::locks::lock(&self.leadership).replace(handle) {
            old.0.abort();
        }
    }

    /// Stops campaigning and gives up the term held, if any (on shutdown, so that another
    /// server takes over without waiting for a lease to run out).
    pub async fn resign(&self) {
        let handle = crate::locks::lock(&self.leadership).take();
        if let Some(handle) = handle {
            handle.stop().await;
        }
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

    #[tokio::test]
    async fn a_leader_loop_waits_for_a_term_restarts_within_it_and_stands_by_after_it() {
        let sup = Supervisor::new();
        let runs = Arc::new(AtomicU32::new(0));
        let held = Arc::new(());
        let (r, h) = (runs.clone(), held.clone());
        let _h = sup.spawn_leader("lead", move |fence| {
            let n = r.fetch_add(1, Ordering::SeqCst);
            let h = h.clone();
            async move {
                let _h = h;
                assert_eq!(fence, Some(Compare::created("control/leader/loops", 3)));
                if n == 0 {
                    return Err::<(), LoopError>("the first run fails".into());
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        assert_eq!(sup.states()["lead"], LoopState::Standby);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 0);

        let term = sup.begin_term(Some(Compare::created("control/leader/loops", 3)));
        assert!(sup.leads() && term.number() == 1);
        until("the restarted run", || runs.load(Ordering::SeqCst) == 2).await;
        until("running", || sup.states()["lead"] == LoopState::Running).await;
        assert_eq!(sup.metrics().restarts.get_or_create(&LoopLabels { r#loop: "lead" }).get(), 1);

        drop(term);
        assert!(!sup.leads());
        until("the run to be dropped", || Arc::strong_count(&held) == 2).await;
        until("standby", || sup.states()["lead"] == LoopState::Standby).await;
        assert!(sup.healthy());

        // A fence that is not the term's ends nothing; the term's own does.
        let _term = sup.begin_term(Some(Compare::created("control/leader/loops", 3)));
        until("the next term's run", || runs.load(Ordering::SeqCst) == 3).await;
        sup.fenced_out(&Compare::created("control/leader/loops", 2));
        assert!(sup.leads());
        sup.fenced_out(&Compare::created("control/leader/loops", 3));
        assert!(!sup.leads());
        until("standby again", || sup.states()["lead"] == LoopState::Standby).await;
        assert_eq!(sup.metrics().terms.get(), 2);
    }
}
