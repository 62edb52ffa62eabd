//! Prometheus metrics: requests and latency per operation, errors per operation and code, the
//! background loops' restarts and whether each runs (from `crate::supervisor`), and the gauges
//! the loops set ([`Gauges`]: managed scaling's CapacityProviderReservation).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    operation: &'static str,
    code: &'static str,
}

/// Gauges that background loops set and `/metrics` shows, held by the context.
#[derive(Debug)]
pub struct Gauges {
    registry: Registry,
    reservation: Family<ProviderLabels, Gauge<f64, AtomicU64>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    cluster: String,
    capacity_provider: String,
}

impl Default for Gauges {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("flotilla");
        let reservation = Family::<ProviderLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "capacity_provider_reservation",
            "CapacityProviderReservation (percent) of each capacity provider with managed scaling",
            reservation.clone(),
        );
        Gauges { registry, reservation }
    }
}

impl Gauges {
    pub fn set_reservation(&self, cluster: &str, provider: &str, percent: f64) {
        let labels = ProviderLabels { cluster: cluster.to_string(), capacity_provider: provider.to_string() };
        self.reservation.get_or_create(&labels).set(percent);
    }

    /// The CapacityProviderReservation last set for `provider` on `cluster` (what `/metrics`
    /// shows), `None` before managed scaling has measured it.
    pub fn reservation(&self, cluster: &str, provider: &str) -> Option<f64> {
        let labels = ProviderLabels { cluster: cluster.to_string(), capacity_provider: provider.to_string() };
        self.reservation.get(&labels).map(|g| g.get())
    }
}

pub struct Metrics {
    registry: Registry,
    gauges: Option<std::sync::Arc<Gauges>>,
    /// The leadership's metrics, named `flotilla_leader*` like the gauges.
    leader: Option<Registry>,
    requests: Family<OpLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    latency: Family<OpLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("flotilla_api");
        let requests = Family::<OpLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let latency = Family::<OpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register("requests", "API requests by operation", requests.clone());
        registry.register("errors", "API errors by operation and error code", errors.clone());
        registry.register("request_duration_seconds", "API request latency by operation", latency.clone());
        Metrics { registry, gauges: None, leader: None, requests, errors, latency }
    }

    /// Adds the supervisor's `loop_restarts_total{loop}`, `loop_running{loop}` and
    /// `loop_errors_total{loop}`.
    pub fn register_loops(&mut self, loops: &crate::supervisor::LoopMetrics) {
        let registry = &mut self.registry;
        registry.register(
            "loop_restarts",
            "Background loop runs that failed and were restarted",
            loops.restarts.clone(),
        );
        registry.register("loop_running", "1 while the background loop runs", loops.running.clone());
        registry.register("loop_errors", "Errors a background loop logged and carried on past", loops.errors.clone());
        let mut leader = Registry::with_prefix("flotilla");
        leader.register("leader", "1 while this server leads the background loops", loops.leader.clone());
        leader.register("leader_terms", "Terms of leadership this server has begun", loops.terms.clone());
        self.leader = Some(leader);
    }

    /// Shows the loops' gauges too.
    pub fn register_gauges(&mut self, gauges: std::sync::Arc<Gauges>) {
        self.gauges = Some(gauges);
    }

    pub fn observe(&self, operation: &'static str, seconds: f64, error: Option<&'static str>) {
        let op = OpLabels { operation };
        self.requests.get_or_create(&op).inc();
        self.latency.get_or_create(&op).observe(seconds);
        if let Some(code) = error {
            self.errors.get_or_create(&ErrorLabels { operation, code }).inc();
        }
    }

    pub fn render(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        let _ = encode_registry(&mut out, &self.registry);
        if let Some(g) = &self.gauges {
            let _ = encode_registry(&mut out, &g.registry);
        }
        if let Some(leader) = &self.leader {
            let _ = encode_registry(&mut out, leader);
        }
        let _ = encode_eof(&mut out);
        out
    }
}
