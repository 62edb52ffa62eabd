//! The little of the DNS wire format the forwarder needs: the message ID, whether a message is a
//! query, and a SERVFAIL answer built from a query (its header flags and first question). The
//! forwarder relays everything else byte for byte, so it never parses records.

/// The fixed header every DNS message starts with.
pub const HEADER_LEN: usize = 12;

/// RCODE 2: the server could not answer (here: the control plane's DNS did not, in time).
pub const SERVFAIL: u8 = 2;

/// The message ID, if `msg` is long enough to be a DNS message.
pub fn id(msg: &[u8]) -> Option<u16> {
    (msg.len() >= HEADER_LEN).then(|| u16::from_be_bytes([msg[0], msg[1]]))
}

pub fn set_id(msg: &mut [u8], id: u16) {
    msg[..2].copy_from_slice(&id.to_be_bytes());
}

/// Whether `msg` is a query (QR clear) with a whole header: what a client may send. Answers
/// arriving on the listening socket are dropped, so no one can make the forwarder loop.
pub fn is_query(msg: &[u8]) -> bool {
    msg.len() >= HEADER_LEN && msg[2] & 0x80 == 0
}

/// The end of the first question of `msg` (after its name, type and class), if it has exactly one
/// well-formed question. Compression pointers end a name, as in any message.
fn first_question_end(msg: &[u8]) -> Option<usize> {
    if msg.len() < HEADER_LEN || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    let mut pos = HEADER_LEN;
    loop {
        let len = *msg.get(pos)?;
        match len {
            0 => {
                pos += 1;
                break;
            }
            l if l & 0xc0 == 0xc0 => {
                pos += 2;
                break;
            }
            l if l > 63 => return None,
            l => pos += 1 + usize::from(l),
        }
        if pos - HEADER_LEN > 255 {
            return None;
        }
    }
    let end = pos + 4;
    (end <= msg.len()).then_some(end)
}

/// Whether `answer` carries the question of `query` (names compared without regard to case, as
/// servers may change it). A query without one well-formed question has nothing to compare.
pub fn same_question(query: &[u8], answer: &[u8]) -> bool {
    let Some(end) = first_question_end(query) else { return true };
    let Some(theirs) = answer.get(HEADER_LEN..end) else { return false };
    let (ours, split) = (&query[HEADER_LEN..end], end - HEADER_LEN - 4);
    // The name without regard to case; type and class exactly.
    theirs[..split].eq_ignore_ascii_case(&ours[..split]) && theirs[split..] == ours[split..]
}

/// Writes into `out` (cleared first) the answer `rcode` to `query`: same ID, opcode and RD flag,
/// QR and RA set, and the query's question when it has one. `false` (and `out` empty) when the
/// query has no whole header.
pub fn error_answer(query: &[u8], rcode: u8, out: &mut Vec<u8>) -> bool {
    out.clear();
    if query.len() < HEADER_LEN {
        return false;
    }
    let question = first_question_end(query);
    out.extend_from_slice(&query[..2]);
    // QR, the query's opcode, its RD bit; then RA and the code.
    out.push(0x80 | (query[2] & 0x78) | (query[2] & 0x01));
    out.push(0x80 | (rcode & 0x0f));
    out.extend_from_slice(&[0, u8::from(question.is_some()), 0, 0, 0, 0, 0, 0]);
    if let Some(end) = question {
        out.extend_from_slice(&query[HEADER_LEN..end]);
    }
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A recursive query for `name`'s A records with ID `id`.
    pub(crate) fn query(id: u16, name: &str) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    #[test]
    fn servfail_keeps_the_id_flags_and_question() {
        let q = query(0xbeef, "web.ns.example");
        let mut out = Vec::new();
        assert!(error_answer(&q, SERVFAIL, &mut out));
        assert_eq!(id(&out), Some(0xbeef));
        assert!(!is_query(&out));
        assert_eq!(out[2], 0x81, "QR and RD");
        assert_eq!(out[3], 0x82, "RA and SERVFAIL");
        assert_eq!(&out[4..6], &[0, 1]);
        assert_eq!(&out[HEADER_LEN..], &q[HEADER_LEN..]);
    }

    #[test]
    fn an_answer_must_carry_the_querys_question() {
        let q = query(1, "web.ns.test");
        let mut a = query(2, "WEB.ns.test");
        a.extend_from_slice(&[0xc0, 12]);
        assert!(same_question(&q, &a), "IDs are not compared here, case is ignored");
        assert!(!same_question(&q, &query(1, "web.ns.tesu")));
        let mut other_type = query(1, "web.ns.test");
        let n = other_type.len();
        other_type[n - 3] = 28;
        assert!(!same_question(&q, &other_type), "AAAA is not A");
        assert!(!same_question(&q, &q[..20]));
        assert!(same_question(&q[..11], &a), "no question to compare");
    }

    #[test]
    fn a_malformed_question_gives_an_answer_without_one() {
        let mut q = query(7, "a.b");
        q.truncate(q.len() - 2);
        let mut out = Vec::new();
        assert!(error_answer(&q, SERVFAIL, &mut out));
        assert_eq!((out.len(), &out[4..6]), (HEADER_LEN, &[0u8, 0][..]));
        // A label longer than 63 is not a name.
        let mut bad = query(7, "a");
        bad[HEADER_LEN] = 64;
        assert!(error_answer(&bad, SERVFAIL, &mut out));
        assert_eq!(out.len(), HEADER_LEN);
        assert!(!error_answer(&q[..5], SERVFAIL, &mut out));
        assert!(out.is_empty());
        assert_eq!(id(&q[..11]), None);
        assert!(!is_query(&q[..11]));
    }
}
