//! The UDP hot path's shortcut: most queries are plain (one question, class IN, at most an EDNS0
//! OPT) and, for a given table, get the same bytes back except for the id, the RD/CD flags and the
//! question's letter case. Each responder thread keeps the encoded answers it has sent for the
//! current table and, for a repeated question, copies one and patches those bytes instead of
//! parsing, answering and encoding again. Answers with a random part (more instances than fit,
//! WEIGHTED) and forwarded names are never cached. The cache is dropped when the table changes.

use std::collections::HashMap;
use std::sync::Arc;

use flotilla_endpoints::cloudmap::RoutingPolicy;

use super::answer::{EDNS_PAYLOAD, MAX_ANSWERS};
use super::table::{Lookup, Node, Table};

/// What the shortcut reads from a plain query.
#[derive(Debug, PartialEq, Eq)]
pub struct Plain {
    /// The name, lowercased, without the final dot (the table's key).
    pub key: String,
    pub qtype: u16,
    /// The end of the question section: bytes 12..end are echoed.
    pub question_end: usize,
    /// The UDP answer size the client takes.
    pub limit: usize,
    /// Whether the query has an OPT (its answer then has one too).
    pub edns: bool,
}

/// Reads a plain query; `None` for anything else (the full path handles it).
pub fn parse(q: &[u8]) -> Option<Plain> {
    if q.len() < 17 || q[2] & 0xf8 != 0 || q[4..6] != [0, 1] || q[6..10] != [0, 0, 0, 0] || q[10] != 0 || q[11] > 1 {
        return None; // a response, another opcode, not exactly one question, or extra records
    }
    let mut key = String::with_capacity(64);
    let mut at = 12;
    loop {
        let len = *q.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 || key.len() + len > 253 {
            return None;
        }
        let label = q.get(at..at + len)?;
        if !label.iter().all(|b| b.is_ascii_graphic() && *b != b'.') {
            return None;
        }
        if !key.is_empty() {
            key.push('.');
        }
        key.extend(label.iter().map(|b| b.to_ascii_lowercase() as char));
        at += len;
    }
    let qtype = u16::from_be_bytes([*q.get(at)?, *q.get(at + 1)?]);
    if q.get(at + 2..at + 4)? != [0, 1] {
        return None;
    }
    let question_end = at + 4;
    let limit = if q[11] == 1 {
        // Only a bare OPT: root name, type 41, payload size as class, then ttl and an empty rdata.
        let opt = q.get(question_end..)?;
        if opt.len() != 11 || opt[0] != 0 || opt[1..3] != [0, 41] || opt[9..11] != [0, 0] {
            return None;
        }
        (u16::from_be_bytes([opt[3], opt[4]]).clamp(512, EDNS_PAYLOAD)) as usize
    } else {
        if q.len() != question_end {
            return None;
        }
        512
    };
    Some(Plain { key, qtype, question_end, limit, edns: q[11] == 1 })
}

/// Whether the answer for `key` is the same every time for this table.
pub fn fixed(table: &Table, key: &str) -> bool {
    match table.lookup(key) {
        Lookup::Outside => false,
        Lookup::NxDomain(_) => true,
        Lookup::Found(Node::Service(s)) => {
            let pool = if s.healthy.is_empty() { s.unhealthy.len() } else { s.healthy.len() };
            match s.policy {
                RoutingPolicy::Multivalue => pool <= MAX_ANSWERS,
                RoutingPolicy::Weighted => pool <= 1,
            }
        }
        Lookup::Found(_) => true,
    }
}

/// What else than the name an answer depends on: query type, UDP size limit, EDNS.
type Variant = (u16, usize, bool);

/// One responder thread's answers for one table.
#[derive(Default)]
pub struct Cache {
    table: Option<Arc<Table>>,
    /// By name, then (type, size limit, EDNS) to the encoded answer.
    answers: HashMap<String, Vec<(Variant, Vec<u8>)>>,
    entries: usize,
}

/// How many answers a thread keeps before starting over.
const MAX_ENTRIES: usize = 16_384;

impl Cache {
    /// Forgets everything when `table` is not the one the answers came from.
    pub fn follow(&mut self, table: &Arc<Table>) {
        if !self.table.as_ref().is_some_and(|t| Arc::ptr_eq(t, table)) {
            self.table = Some(table.clone());
            self.answers.clear();
            self.entries = 0;
        }
    }

    /// The cached answer to `query`, patched for it, into `out`.
    pub fn answer(&self, plain: &Plain, query: &[u8], out: &mut Vec<u8>) -> bool {
        let want = (plain.qtype, plain.limit, plain.edns);
        let Some((_, cached)) = self.answers.get(plain.key.as_str()).and_then(|v| v.iter().find(|(k, _)| *k == want))
        else {
            return false;
        };
        out.clear();
        out.extend_from_slice(cached);
        patch(out, query, plain.question_end);
        true
    }

    pub fn insert(&mut self, plain: Plain, answer: &[u8]) {
        if self.entries >= MAX_ENTRIES {
            self.answers.clear();
            self.entries = 0;
        }
        self.entries += 1;
        self.answers.entry(plain.key).or_default().push(((plain.qtype, plain.limit, plain.edns), answer.to_vec()));
    }
}

/// Gives `answer` the query's id, RD and CD flags and question bytes (same length: same name).
fn patch(answer: &mut [u8], query: &[u8], question_end: usize) {
    answer[..2].copy_from_slice(&query[..2]);
    answer[2] = (answer[2] & !0x01) | (query[2] & 0x01);
    answer[3] = (answer[3] & !0x10) | (query[3] & 0x10);
    answer[12..question_end].copy_from_slice(&query[12..question_end]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::{Name, RecordType};

    fn wire(name: &str, edns: bool) -> Vec<u8> {
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::SRV));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            q.set_edns(e);
        }
        q.to_vec().unwrap()
    }

    #[test]
    fn plain_queries_are_read_and_others_left_to_the_full_path() {
        let p = parse(&wire("Web.Example.LOCAL.", false)).unwrap();
        assert_eq!((p.key.as_str(), p.qtype, p.limit), ("web.example.local", 33, 512));
        assert_eq!(parse(&wire("web.example.local.", true)).unwrap().limit, EDNS_PAYLOAD as usize);
        let mut response = wire("web.example.local.", false);
        response[2] |= 0x80;
        assert_eq!(parse(&response), None);
        assert_eq!(parse(&[0u8; 11]), None);
    }

    #[test]
    fn a_cached_answer_takes_the_querys_id_flags_and_case() {
        let first = wire("web.example.local.", false);
        let plain = parse(&first).unwrap();
        let mut answer = first.clone();
        answer[2] |= 0x84; // QR, AA
        let mut cache = Cache::default();
        cache.follow(&Arc::new(Table::default()));
        cache.insert(plain, &answer);
        let mut second = wire("WEB.example.local.", false);
        second[0] = 0xab;
        second[2] &= !0x01;
        let mut out = Vec::new();
        assert!(cache.answer(&parse(&second).unwrap(), &second, &mut out));
        assert_eq!(out[0], 0xab);
        assert_eq!(out[2] & 0x85, 0x84);
        assert_eq!(&out[12..16], &second[12..16]);
        cache.follow(&Arc::new(Table::default()));
        assert!(!cache.answer(&parse(&second).unwrap(), &second, &mut out), "a new table empties the cache");
    }
}
