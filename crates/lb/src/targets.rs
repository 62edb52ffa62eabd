//! Targets as the proxy sees them: one long-lived slot per (group, target, port) holding what
//! outlives a configuration swap (the node's own health judgement, in-flight requests, open
//! tunnels), and the choice of a target for a request (healthy ones, fail-open to all registered
//! ones, by round robin or least outstanding requests).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use flotilla_endpoints::elb::HealthState;

/// `(target group id, target id, port)`: how the control plane names a registered target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    pub group_id: String,
    pub target_id: String,
    pub port: u16,
}

/// What the node knows of one target between configuration swaps.
#[derive(Debug)]
pub struct TargetSlot {
    pub key: TargetKey,
    state: AtomicU8,
    /// Requests sent and not yet answered in full (least outstanding requests reads it).
    pub in_flight: AtomicU32,
    /// Tunnels open to the target: TCP listener connections and upgraded HTTP connections.
    pub tunnels: AtomicU32,
    /// ELB's reason and description for the current state.
    pub detail: Mutex<(Option<String>, Option<String>)>,
    /// Whether this node has finished a health check of the target yet.
    pub checked: std::sync::atomic::AtomicBool,
    /// Idle keep-alive connections to the target.
    pub pool: crate::upstream::Pool,
}

fn encode(s: HealthState) -> u8 {
    match s {
        HealthState::Initial => 0,
        HealthState::Healthy => 1,
        HealthState::Unhealthy => 2,
        HealthState::Unused => 3,
        HealthState::Draining => 4,
        HealthState::Unavailable => 5,
    }
}

fn decode(v: u8) -> HealthState {
    match v {
        1 => HealthState::Healthy,
        2 => HealthState::Unhealthy,
        3 => HealthState::Unused,
        4 => HealthState::Draining,
        5 => HealthState::Unavailable,
        _ => HealthState::Initial,
    }
}

impl TargetSlot {
    pub fn new(key: TargetKey, state: HealthState) -> TargetSlot {
        TargetSlot {
            key,
            state: AtomicU8::new(encode(state)),
            in_flight: AtomicU32::new(0),
            tunnels: AtomicU32::new(0),
            detail: Mutex::new((None, None)),
            checked: std::sync::atomic::AtomicBool::new(false),
            pool: crate::upstream::Pool::default(),
        }
    }

    pub fn state(&self) -> HealthState {
        decode(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, state: HealthState, reason: Option<String>, description: Option<String>) {
        *self.detail.lock().unwrap_or_else(|e| e.into_inner()) = (reason, description);
        self.state.store(encode(state), Ordering::Relaxed);
    }

    /// Requests and tunnels still open: a draining target with none left can go.
    pub fn open_connections(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed) + self.tunnels.load(Ordering::Relaxed)
    }
}

/// The slots of every target in the configuration, reused across swaps so that counts and
/// judgements survive them; slots of targets that left the configuration are dropped.
#[derive(Default)]
pub struct SlotBook {
    slots: Mutex<HashMap<TargetKey, Arc<TargetSlot>>>,
}

impl SlotBook {
    /// The slot of `key`, made with `initial` state when new.
    pub fn slot(&self, key: &TargetKey, initial: HealthState) -> Arc<TargetSlot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(key.clone()).or_insert_with(|| Arc::new(TargetSlot::new(key.clone(), initial))).clone()
    }

    /// Runs `f` on every slot.
    pub fn each(&self, f: impl Fn(&TargetSlot)) {
        for slot in self.slots.lock().unwrap_or_else(|e| e.into_inner()).values() {
            f(slot);
        }
    }

    /// Forgets the slots not in `keep` (still referenced ones live on in their requests).
    pub fn retain(&self, keep: &std::collections::HashSet<TargetKey>) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| keep.contains(k));
    }
}

/// One target of a compiled group: where to connect and its slot.
#[derive(Debug)]
pub struct RouteTarget {
    pub addr: SocketAddr,
    /// `IP:PORT`, the authority of upstream URIs (cheap to clone per request).
    pub authority: http::uri::Authority,
    pub slot: Arc<TargetSlot>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    LeastOutstandingRequests,
}

impl Algorithm {
    /// `load_balancing.algorithm.type`; ELB's default and anything unknown is round robin
    /// (weighted_random is served as round robin, which it averages to).
    pub fn from_attribute(v: Option<&str>) -> Algorithm {
        match v {
            Some("least_outstanding_requests") => Algorithm::LeastOutstandingRequests,
            _ => Algorithm::RoundRobin,
        }
    }
}

/// The registered (not draining) targets of one group and how to choose among them.
#[derive(Debug)]
pub struct Chooser {
    pub algorithm: Algorithm,
    pub targets: Vec<Arc<RouteTarget>>,
    next: AtomicUsize,
}

impl Chooser {
    pub fn new(algorithm: Algorithm, targets: Vec<Arc<RouteTarget>>) -> Chooser {
        Chooser { algorithm, targets, next: AtomicUsize::new(0) }
    }

    /// A target for the next request: among the healthy ones, or, when none is healthy, among
    /// all registered ones (ELB fails open). `None` when the group has no registered target.
    pub fn choose(&self) -> Option<&Arc<RouteTarget>> {
        let healthy = |t: &&Arc<RouteTarget>| t.slot.state() == HealthState::Healthy;
        let any_healthy = self.targets.iter().any(|t| healthy(&t));
        let eligible = |t: &&Arc<RouteTarget>| !any_healthy || healthy(t);
        match self.algorithm {
            Algorithm::RoundRobin => {
                let n = self.targets.len();
                if n == 0 {
                    return None;
                }
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|i| &self.targets[(start + i) % n]).find(eligible)
            }
            Algorithm::LeastOutstandingRequests => {
                // Ties go round robin, so that idle targets share the load.
                let n = self.targets.len();
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|i| &self.targets[(start + i) % n.max(1)])
                    .filter(eligible)
                    .min_by_key(|t| t.slot.in_flight.load(Ordering::Relaxed))
            }
        }
    }
}

/// Counts a request or tunnel against its target until dropped.
pub struct Outstanding {
    pub slot: Arc<TargetSlot>,
    tunnel: bool,
}

impl Outstanding {
    pub fn request(slot: &Arc<TargetSlot>) -> Outstanding {
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        Outstanding { slot: slot.clone(), tunnel: false }
    }

    pub fn tunnel(slot: &Arc<TargetSlot>) -> Outstanding {
        slot.tunnels.fetch_add(1, Ordering::Relaxed);
        Outstanding { slot: slot.clone(), tunnel: true }
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        let counter = if self.tunnel { &self.slot.tunnels } else { &self.slot.in_flight };
        counter.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(i: u16, state: HealthState) -> Arc<RouteTarget> {
        let key = TargetKey { group_id: "g".into(), target_id: format!("10.0.0.{i}"), port: 80 };
        Arc::new(RouteTarget {
            addr: format!("10.0.0.{i}:80").parse().unwrap(),
            authority: format!("10.0.0.{i}:80").parse().unwrap(),
            slot: Arc::new(TargetSlot::new(key, state)),
        })
    }

    #[test]
    fn round_robin_skips_unhealthy_targets() {
        let c = Chooser::new(
            Algorithm::RoundRobin,
            vec![target(1, HealthState::Healthy), target(2, HealthState::Unhealthy), target(3, HealthState::Healthy)],
        );
        let ips: Vec<String> = (0..4).map(|_| c.choose().unwrap().addr.ip().to_string()).collect();
        assert!(!ips.contains(&"10.0.0.2".to_string()), "{ips:?}");
        assert!(ips.contains(&"10.0.0.1".to_string()) && ips.contains(&"10.0.0.3".to_string()), "{ips:?}");
    }

    #[test]
    fn no_healthy_target_fails_open_and_initial_is_not_healthy() {
        let c = Chooser::new(
            Algorithm::RoundRobin,
            vec![target(1, HealthState::Unhealthy), target(2, HealthState::Initial)],
        );
        let ips: std::collections::HashSet<String> =
            (0..4).map(|_| c.choose().unwrap().addr.ip().to_string()).collect();
        assert_eq!(ips.len(), 2, "both registered targets serve when none is healthy");
        let c =
            Chooser::new(Algorithm::RoundRobin, vec![target(1, HealthState::Healthy), target(2, HealthState::Initial)]);
        for _ in 0..4 {
            assert_eq!(c.choose().unwrap().addr.ip().to_string(), "10.0.0.1");
        }
        assert!(Chooser::new(Algorithm::RoundRobin, vec![]).choose().is_none());
    }

    #[test]
    fn least_outstanding_requests_prefers_the_idle_target() {
        let (a, b) = (target(1, HealthState::Healthy), target(2, HealthState::Healthy));
        let c = Chooser::new(Algorithm::LeastOutstandingRequests, vec![a.clone(), b.clone()]);
        let _busy = [Outstanding::request(&a.slot), Outstanding::request(&a.slot)];
        for _ in 0..4 {
            assert_eq!(c.choose().unwrap().addr, b.addr);
        }
        drop(_busy);
        assert_eq!(a.slot.in_flight.load(Ordering::Relaxed), 0);
        let _t = Outstanding::tunnel(&b.slot);
        assert_eq!(b.slot.open_connections(), 1);
        assert_eq!(Algorithm::from_attribute(Some("least_outstanding_requests")), Algorithm::LeastOutstandingRequests);
        assert_eq!(Algorithm::from_attribute(None), Algorithm::RoundRobin);
    }
}
