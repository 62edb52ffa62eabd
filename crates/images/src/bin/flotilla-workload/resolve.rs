//! `resolve NAME`: asks the container's own resolver (the first `nameserver` of
//! /etc/resolv.conf) for NAME's A records over UDP, as an application's stub resolver would, and
//! prints each address on a line. Written by hand because the image has no libc resolver to lean
//! on (a static glibc cannot load its NSS modules), and a raw query shows exactly which server
//! answered what.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Per attempt; a resolver that says nothing twice is a failure.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
const ATTEMPTS: usize = 2;

/// The addresses NAME resolves to, or why not.
pub fn resolve(name: &str) -> Result<Vec<Ipv4Addr>, String> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").map_err(|e| format!("/etc/resolv.conf: {e}"))?;
    let server = conf
        .lines()
        .find_map(|l| l.strip_prefix("nameserver"))
        .map(str::trim)
        .ok_or("/etc/resolv.conf has no nameserver")?;
    let server: SocketAddr =
        format!("{server}:53").parse().map_err(|_| format!("nameserver {server} is not an IPv4 address"))?;
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let query = query(id, name)?;
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(ATTEMPT_TIMEOUT)).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    for _ in 0..ATTEMPTS {
        socket.send_to(&query, server).map_err(|e| format!("{server}: {e}"))?;
        let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
        if from != server || n < 12 || buf[..2] != id.to_be_bytes() {
            continue;
        }
        return answers(&buf[..n]);
    }
    Err(format!("{server} did not answer"))
}

/// A recursive A query for `name`.
fn query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name} is not a domain name"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    Ok(q)
}

/// The A records of an answer; an error names the response code otherwise.
fn answers(msg: &[u8]) -> Result<Vec<Ipv4Addr>, String> {
    let rcode = msg[3] & 0x0f;
    if rcode != 0 {
        return Err(format!("response code {rcode}"));
    }
    let count = |i: usize| usize::from(u16::from_be_bytes([msg[i], msg[i + 1]]));
    let (qd, an) = (count(4), count(6));
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        pos = skip_name(msg, pos)?;
        let fixed = msg.get(pos..pos + 10).ok_or("truncated record")?;
        let (rtype, len) =
            (u16::from_be_bytes([fixed[0], fixed[1]]), usize::from(u16::from_be_bytes([fixed[8], fixed[9]])));
        let data = msg.get(pos + 10..pos + 10 + len).ok_or("truncated record data")?;
        if rtype == 1 && len == 4 {
            out.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        pos += 10 + len;
    }
    if out.is_empty() {
        return Err("no A records".into());
    }
    Ok(out)
}

/// The position after the (possibly compressed) name at `pos`.
fn skip_name(msg: &[u8], mut pos: usize) -> Result<usize, String> {
    loop {
        let len = *msg.get(pos).ok_or("truncated name")?;
        match len {
            0 => return Ok(pos + 1),
            l if l & 0xc0 == 0xc0 => return Ok(pos + 2),
            l => pos += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_names_each_label_and_asks_for_a() {
        let q = query(0x0102, "web.ns.test.").unwrap();
        assert_eq!(&q[..4], &[1, 2, 1, 0], "ID and RD");
        assert_eq!(&q[12..], b"\x03web\x02ns\x04test\x00\x00\x01\x00\x01");
        assert!(query(1, "a..b").is_err());
        assert!(query(1, &"x".repeat(64)).is_err());
    }

    #[test]
    fn answers_give_the_a_records_or_name_the_failure() {
        let mut msg = query(7, "web.ns.test").unwrap();
        msg[2] |= 0x80;
        msg[7] = 2; // two answers: a CNAME-like record to skip, then an A record
        msg.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 9, 0, 2, 0xc0, 12]);
        msg.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 10, 1, 2, 3]);
        assert_eq!(answers(&msg), Ok(vec![Ipv4Addr::new(10, 1, 2, 3)]));
        let mut nx = query(7, "nope.test").unwrap();
        nx[3] = 0x83;
        assert_eq!(answers(&nx), Err("response code 3".to_string()));
        let mut cut = msg.clone();
        cut.truncate(cut.len() - 2);
        assert!(answers(&cut).is_err());
    }
}
