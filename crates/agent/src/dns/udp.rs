//! The UDP half of the forwarder: one task per listening socket, relaying each query to the
//! control plane's DNS server over a socket of its own and each answer back to whoever asked.
//!
//! Clients' IDs may collide (every container's resolver counts on its own), so each query goes
//! upstream under an ID of the forwarder's choosing: the index of its slot in a table of queries
//! in flight and the slot's generation, XORed with a random key, and the answer's ID finds the
//! slot again. An answer arriving after its query timed out must not reach the next query in the
//! same slot: freed slots are reused oldest first, the generation changes the ID, and an answer
//! whose question is not the query's is dropped. The upstream socket is connected, so the kernel
//! drops datagrams from anyone but the upstream server.
//! Slots, their copies of the queries (kept to build a SERVFAIL) and the receive buffers are
//! reused, so a steady stream of queries allocates nothing. A query unanswered after `timeout`
//! gets SERVFAIL, so a client's resolver moves on at once instead of waiting out its own
//! timeout; since every query waits the same `timeout`, deadlines come in order and a queue
//! holds them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::packet;

/// Queries in flight per listening socket; beyond this a query is answered SERVFAIL at once.
/// A slot's index takes the low 12 bits of the upstream ID, its generation the high 4.
const MAX_IN_FLIGHT: usize = 1 << INDEX_BITS;
const INDEX_BITS: u32 = 12;
/// Large enough for any UDP DNS message (EDNS allows up to 65535 in theory).
const BUF: usize = 65535;
/// The largest query relayed. Real ones are a few hundred bytes (a name of at most 255 and an
/// EDNS record); the bound keeps the slots' copies (at most `MAX_IN_FLIGHT` of them) from
/// growing to megabytes at a misbehaving container's wish.
const MAX_QUERY: usize = 4096;

struct Slot {
    live: bool,
    /// Bumped when the slot is freed, so a stale deadline for an earlier query is ignored.
    generation: u32,
    client: SocketAddr,
    client_id: u16,
    query: Vec<u8>,
}

/// The queries in flight.
struct Table {
    slots: Vec<Slot>,
    /// Oldest freed first, so a slot rests as long as possible before its next query.
    free: VecDeque<usize>,
    deadlines: VecDeque<(Instant, usize, u32)>,
    key: u16,
}

impl Table {
    fn new() -> Table {
        Table { slots: Vec::new(), free: VecDeque::new(), deadlines: VecDeque::new(), key: rand::random() }
    }

    /// Takes a slot for `query` from `client`; the upstream ID, or `None` when full.
    fn insert(&mut self, client: SocketAddr, query: &[u8], deadline: Instant) -> Option<u16> {
        let client_id = packet::id(query)?;
        let index = match self.free.pop_front() {
            Some(i) => i,
            None if self.slots.len() < MAX_IN_FLIGHT => {
                self.slots.push(Slot { live: false, generation: 0, client, client_id: 0, query: Vec::new() });
                self.slots.len() - 1
            }
            None => return None,
        };
        let slot = &mut self.slots[index];
        slot.live = true;
        slot.client = client;
        slot.client_id = client_id;
        slot.query.clear();
        slot.query.extend_from_slice(query);
        self.deadlines.push_back((deadline, index, slot.generation));
        let generation = (slot.generation as u16 & 0xf) << INDEX_BITS;
        Some((index as u16 | generation) ^ self.key)
    }

    /// The live slot an upstream ID names, if `answer` answers its query's question.
    fn find(&self, upstream_id: u16, answer: &[u8]) -> Option<usize> {
        let raw = upstream_id ^ self.key;
        let index = usize::from(raw & ((1 << INDEX_BITS) - 1));
        let slot = self.slots.get(index)?;
        let current = slot.live && (slot.generation as u16 & 0xf) == raw >> INDEX_BITS;
        (current && packet::same_question(&slot.query, answer)).then_some(index)
    }

    fn release(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        slot.live = false;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push_back(index);
    }

    /// The next deadline still worth waiting for.
    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&(at, index, generation)) = self.deadlines.front() {
            let slot = &self.slots[index];
            if slot.live && slot.generation == generation {
                return Some(at);
            }
            self.deadlines.pop_front();
        }
        None
    }

    /// Pops one slot whose deadline has passed by `now`.
    fn pop_expired(&mut self, now: Instant) -> Option<usize> {
        let at = self.next_deadline()?;
        if at > now {
            return None;
        }
        let (_, index, _) = self.deadlines.pop_front()?;
        Some(index)
    }
}

/// Relays queries arriving on `listen` to `upstream` until the task is aborted.
pub async fn serve(listen: Arc<UdpSocket>, upstream: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    let local: SocketAddr = if upstream.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("address");
    let up = UdpSocket::bind(local).await?;
    up.connect(upstream).await?;
    let mut table = Table::new();
    let mut query = vec![0u8; BUF];
    let mut answer = vec![0u8; BUF];
    let mut failure = Vec::with_capacity(512);
    loop {
        let deadline = table.next_deadline();
        tokio::select! {
            r = listen.recv_from(&mut query) => {
                let Ok((n, client)) = r else { continue };
                let msg = &mut query[..n];
                if !packet::is_query(msg) || n > MAX_QUERY {
                    continue;
                }
                match table.insert(client, msg, Instant::now() + timeout) {
                    Some(upstream_id) => {
                        packet::set_id(msg, upstream_id);
                        // A failed send (the server's host unreachable) ends as a SERVFAIL at the deadline.
                        let _ = up.send(msg).await;
                    }
                    None => {
                        if packet::error_answer(msg, packet::SERVFAIL, &mut failure) {
                            let _ = listen.send_to(&failure, client).await;
                        }
                    }
                }
            }
            r = up.recv(&mut answer) => {
                // Errors here are ICMP news about an earlier send (port unreachable): the
                // deadline answers that query.
                let Ok(n) = r else { continue };
                let msg = &mut answer[..n];
                let Some(index) = packet::id(msg).and_then(|id| table.find(id, msg)) else { continue };
                let slot = &table.slots[index];
                packet::set_id(msg, slot.client_id);
                let _ = listen.send_to(msg, slot.client).await;
                table.release(index);
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                while let Some(index) = table.pop_expired(Instant::now()) {
                    let slot = &table.slots[index];
                    if packet::error_answer(&slot.query, packet::SERVFAIL, &mut failure) {
                        let _ = listen.send_to(&failure, slot.client).await;
                    }
                    table.release(index);
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(at) = deadline {
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_stale_deadlines_skipped() {
        let mut t = Table::new();
        let now = Instant::now();
        let client: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let q = packet::tests::query(9, "a.b");
        let first = t.insert(client, &q, now).unwrap();
        let i = t.find(first, &q).unwrap();
        assert_eq!(t.slots[i].client_id, 9);
        assert_eq!(t.find(first, &packet::tests::query(9, "c.d")), None, "another question's answer");
        t.release(i);
        assert_eq!(t.find(first, &q), None, "an answer after release finds nothing");
        let later = now + Duration::from_secs(1);
        let second = t.insert(client, &q, later).unwrap();
        assert_ne!(second, first, "the freed slot is taken again, under another ID");
        assert_eq!(t.find(first, &q), None, "the late answer to the first query finds nothing");
        assert_eq!(t.find(second, &q), Some(i));
        // The first query's deadline is stale: the next one is the second query's.
        assert_eq!(t.next_deadline(), Some(later));
        assert_eq!(t.pop_expired(now), None);
        assert_eq!(t.pop_expired(later), Some(i));
        assert_eq!(t.slots.len(), 1);
    }

    #[test]
    fn a_full_table_refuses() {
        let mut t = Table::new();
        let client: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let q = packet::tests::query(1, "a");
        let now = Instant::now();
        let ids: std::collections::HashSet<u16> =
            (0..MAX_IN_FLIGHT).map(|_| t.insert(client, &q, now).unwrap()).collect();
        assert_eq!(ids.len(), MAX_IN_FLIGHT, "every query in flight has its own upstream ID");
        assert_eq!(t.insert(client, &q, now), None);
    }
}
