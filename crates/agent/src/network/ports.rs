//! Dynamic host ports from a configured range, for agents that should not leave the choice to
//! Docker (which picks from the kernel's ephemeral range).
//!
//! The allocator hands out ports round-robin, skipping ports it already gave to a running task and
//! ports some other process holds (checked by binding a socket on the wildcard address, then
//! dropping it). Two agents on one host should be given disjoint ranges; within one agent the
//! bookkeeping is exact.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::Mutex;

/// Hands out host ports from a range; `None` leaves the choice to the runtime.
#[derive(Debug, Default)]
pub struct PortAllocator {
    range: Option<RangeInclusive<u16>>,
    state: Mutex<AllocState>,
}

#[derive(Debug, Default)]
struct AllocState {
    in_use: BTreeSet<u16>,
    cursor: u16,
}

impl PortAllocator {
    pub fn new(range: Option<RangeInclusive<u16>>) -> Self {
        let cursor = range.as_ref().map_or(0, |r| *r.start());
        PortAllocator { range, state: Mutex::new(AllocState { in_use: BTreeSet::new(), cursor }) }
    }

    pub fn range(&self) -> Option<&RangeInclusive<u16>> {
        self.range.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AllocState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A free port for `protocol` ("tcp"/"udp"), or `None` when the range is unset (the runtime
    /// picks) — `Err(())` when every port in the range is taken.
    #[allow(clippy::result_unit_err)]
    pub fn allocate(&self, protocol: &str) -> Result<Option<u16>, ()> {
        let Some(range) = self.range.clone() else { return Ok(None) };
        let (first, last) = (*range.start(), *range.end());
        let size = u32::from(last - first) + 1;
        let mut st = self.lock();
        for _ in 0..size {
            let port = st.cursor;
            st.cursor = if port >= last { first } else { port + 1 };
            if st.in_use.contains(&port) || !free_on_host(port, protocol) {
                continue;
            }
            st.in_use.insert(port);
            return Ok(Some(port));
        }
        Err(())
    }

    /// Marks ports as taken (ports of adopted tasks).
    pub fn claim(&self, ports: &[u16]) {
        self.lock().in_use.extend(ports.iter().copied());
    }

    pub fn release(&self, ports: &[u16]) {
        let mut st = self.lock();
        for p in ports {
            st.in_use.remove(p);
        }
    }
}

fn free_on_host(port: u16, protocol: &str) -> bool {
    match protocol {
        "udp" => UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok(),
        _ => TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_range_the_runtime_picks() {
        assert_eq!(PortAllocator::new(None).allocate("tcp"), Ok(None));
    }

    #[test]
    fn ports_come_from_the_range_skip_held_ones_and_come_back() {
        // A port some other socket holds is skipped. Its neighbour must be free for the test to
        // mean anything, and other tests bind ephemeral ports in parallel: look for a held port
        // whose next one can be bound.
        let (_held, p) = (0..100)
            .find_map(|_| {
                let held = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
                let p = held.local_addr().ok()?.port();
                let next = p.checked_add(1)?;
                TcpListener::bind((Ipv4Addr::UNSPECIFIED, next)).ok()?;
                Some((held, p))
            })
            .expect("a held port with a free neighbour");
        let alloc = PortAllocator::new(Some(p..=p.saturating_add(1)));
        let got = alloc.allocate("tcp").unwrap().unwrap();
        assert_ne!(got, p);
        // The range is now exhausted: one port held elsewhere, one handed out.
        assert_eq!(alloc.allocate("tcp"), Err(()));
        alloc.release(&[got]);
        assert_eq!(alloc.allocate("tcp"), Ok(Some(got)));
    }
}
