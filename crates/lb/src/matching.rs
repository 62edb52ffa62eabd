//! The small matchers ALB rule conditions are made of: `*`/`?` globs (case-sensitive for paths,
//! case-insensitive for hosts, header values and query strings) and CIDR blocks for source-ip.
//! Hand-written because ALB's globs have no character classes or escapes, unlike glob crates.

use std::net::IpAddr;

/// A compiled `*`/`?` pattern. `*` matches any run of bytes (also none), `?` exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<u8>,
    /// Compare ASCII letters without case (the pattern is stored lowercased).
    fold: bool,
}

impl Glob {
    pub fn new(pattern: &str, case_sensitive: bool) -> Glob {
        let pattern =
            if case_sensitive { pattern.as_bytes().to_vec() } else { pattern.to_ascii_lowercase().into_bytes() };
        Glob { pattern, fold: !case_sensitive }
    }

    /// Whether `text` matches the whole pattern. Greedy with one backtrack point (the last
    /// `*`), which is linear enough for ALB's patterns (at most five wildcards per rule).
    pub fn matches(&self, text: &str) -> bool {
        let (p, t) = (&self.pattern, text.as_bytes());
        let (mut pi, mut ti) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            let c = if self.fold { t[ti].to_ascii_lowercase() } else { t[ti] };
            if pi < p.len() && (p[pi] == b'?' || (p[pi] != b'*' && p[pi] == c)) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                // Let the last `*` swallow one more byte and try again from there.
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&b| b == b'*')
    }
}

/// An IPv4 or IPv6 block (`10.0.0.0/8`, `2001:db8::/32`); a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { network: addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // A client that reached us over IPv6 with a mapped IPv4 address is that IPv4 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => masked(u32::from(n) as u128, u32::from(a) as u128, self.prefix, 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => masked(u128::from(n), u128::from(a), self.prefix, 128),
            _ => false,
        }
    }
}

fn masked(net: u128, addr: u128, prefix: u8, bits: u32) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix as u32;
    (net >> shift) == (addr >> shift)
}

/// The host of a `Host` header without its port (`example.com:8080` -> `example.com`,
/// `[::1]:80` -> `[::1]`).
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map(|i| &host[..=i]).unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_alb() {
        let g = Glob::new("/img/*", true);
        assert!(g.matches("/img/a.png"));
        assert!(g.matches("/img/"));
        assert!(!g.matches("/IMG/a.png"), "paths are case-sensitive");
        assert!(!g.matches("/im"));
        let q = Glob::new("/a?c", true);
        assert!(q.matches("/abc"));
        assert!(!q.matches("/ac"));
        assert!(!q.matches("/abbc"));
        let m = Glob::new("*.example.com", false);
        assert!(m.matches("WWW.Example.COM"));
        assert!(!m.matches("example.com"), "*.example.com does not match example.com");
        let multi = Glob::new("/a*b*c", true);
        assert!(multi.matches("/aXbYc"));
        assert!(multi.matches("/abbbc"));
        assert!(!multi.matches("/aXbY"));
        assert!(Glob::new("*", true).matches(""));
        assert!(Glob::new("", true).matches(""));
        assert!(!Glob::new("", true).matches("x"));
    }

    #[test]
    fn cidr_blocks() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()), "mapped IPv4");
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("nope/8"), None);
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
    }
}
