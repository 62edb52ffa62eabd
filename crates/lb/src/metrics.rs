//! The node's Prometheus metrics: requests and 5xx answers per load balancer listener, and
//! requests and target response time per target group. Handles are looked up once per
//! configuration swap and kept in the routing table, so a request only bumps atomics.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn response_time() -> Histogram {
    // 0.25 ms to ~8 s.
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    http_5xx: Family<Labels, Counter>,
    target_requests: Family<Labels, Counter>,
    target_time: Family<Labels, Histogram, fn() -> Histogram>,
}

/// A listener's counters.
#[derive(Clone, Default)]
pub struct ListenerMetrics {
    pub requests: Counter,
    pub http_5xx: Counter,
}

/// A target group's counters.
#[derive(Clone)]
pub struct GroupMetrics {
    pub requests: Counter,
    pub response_time: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("flotilla_lb");
        let requests = Family::<Labels, Counter>::default();
        let http_5xx = Family::<Labels, Counter>::default();
        let target_requests = Family::<Labels, Counter>::default();
        let target_time = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(response_time);
        registry.register("requests", "Requests received by a listener", requests.clone());
        registry.register("http_5xx", "5xx answers a listener sent (its own and its targets')", http_5xx.clone());
        registry.register("target_requests", "Requests forwarded to a target group", target_requests.clone());
        registry.register(
            "target_response_seconds",
            "Time from sending a request to a target until its response headers",
            target_time.clone(),
        );
        Metrics { registry, requests, http_5xx, target_requests, target_time }
    }

    pub fn listener(&self, load_balancer: &str, port: u16) -> ListenerMetrics {
        let labels =
            vec![("load_balancer".to_string(), load_balancer.to_string()), ("port".to_string(), port.to_string())];
        ListenerMetrics {
            requests: self.requests.get_or_create_owned(&labels),
            http_5xx: self.http_5xx.get_or_create_owned(&labels),
        }
    }

    pub fn group(&self, name: &str) -> GroupMetrics {
        let labels = vec![("target_group".to_string(), name.to_string())];
        GroupMetrics {
            requests: self.target_requests.get_or_create_owned(&labels),
            response_time: self.target_time.get_or_create_owned(&labels),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
