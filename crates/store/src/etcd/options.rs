//! How to reach etcd: the endpoints, the key prefix, TLS and credentials, parsed from the
//! server's `--store etcd://...` URL and its `--etcd-*` flags, and turned into a client.

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use crate::types::StoreError;

/// The prefix every Flotilla key lives under when the URL names none.
pub const DEFAULT_PREFIX: &str = "flotilla/";
/// How long a leader's lease lives without a keep-alive, by default.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(3);

/// Where and how to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Client URLs (`http://HOST:PORT` or `https://HOST:PORT`); set by `--store etcd://...`.
    pub endpoints: Vec<String>,
    /// Prepended to every key Flotilla reads or writes, so one etcd can serve other users too;
    /// the path of the `--store` URL (default `flotilla/`).
    pub prefix: String,
    /// The CA that signed etcd's server certificates (`--etcd-ca`); the system roots otherwise.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate for mutual TLS (`--etcd-cert`), with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (`--etcd-key`).
    pub client_key: Option<PathBuf>,
    /// etcd user for role-based access (`--etcd-user`).
    pub user: Option<String>,
    /// That user's password (`--etcd-password`, or the environment's `FLOTILLA_ETCD_PASSWORD`).
    pub password: Option<String>,
    /// How long a leader's term outlives its last keep-alive (default 3 s).
    pub lease_ttl: Duration,
    /// How the store trims etcd's history; `None` leaves it to etcd's own auto-compaction.
    pub compaction: Option<crate::etcd::compaction::CompactionPolicy>,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: DEFAULT_PREFIX.into(),
            ca_cert: None,
            client_cert: None,
            client_key: None,
            user: None,
            password: None,
            lease_ttl: DEFAULT_LEASE_TTL,
            compaction: Some(Default::default()),
        }
    }
}

impl EtcdOptions {
    /// Parses `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (plain HTTP) or `etcds://...` (TLS).
    /// A prefix that does not end in `/` gets one, so `/prod` and `/prod/` both mean `prod/`.
    pub fn parse(url: &str) -> Result<EtcdOptions, String> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("etcd://") {
            ("http", rest)
        } else if let Some(rest) = url.strip_prefix("etcds://") {
            ("https", rest)
        } else {
            return Err(format!("etcd URL {url:?} must start with etcd:// (plain) or etcds:// (TLS)"));
        };
        let (hosts, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        if hosts.contains('@') {
            return Err(format!(
                "etcd URL {url:?} carries credentials: pass them with --etcd-user and --etcd-password instead"
            ));
        }
        if hosts.contains('?') || path.contains('?') || path.contains('#') {
            return Err(format!("etcd URL {url:?} has a query or fragment; only hosts and a prefix are understood"));
        }
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            check_host_port(host).map_err(|why| format!("etcd URL {url:?}: endpoint {host:?} {why}"))?;
            endpoints.push(format!("{scheme}://{host}"));
        }
        let prefix = match path.trim_start_matches('/') {
            "" => DEFAULT_PREFIX.to_string(),
            p if p.ends_with('/') => p.to_string(),
            p => format!("{p}/"),
        };
        Ok(EtcdOptions { endpoints, prefix, ..EtcdOptions::default() })
    }

    /// Whether the endpoints speak TLS.
    pub fn tls(&self) -> bool {
        self.endpoints.iter().any(|e| e.starts_with("https://"))
    }

    /// The client's connect options: TLS material read from disk, credentials, timeouts.
    pub(crate) fn connect_options(&self) -> Result<ConnectOptions, StoreError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            // HTTP/2 pings find a dead connection (a partitioned member) in seconds, not minutes.
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_keep_alive_while_idle(true)
            // Only a member that is part of a quorum answers: a partitioned one would serve stale
            // reads and hold watches that never fire.
            .with_require_leader(true);
        if let (Some(user), password) = (&self.user, &self.password) {
            options =
                options.with_user(user.clone(), password.clone().unwrap_or_default()).with_auto_token_refresh(true);
        } else if self.password.is_some() {
            return Err(StoreError::Io("an etcd password was given without a user (--etcd-user)".into()));
        }
        let wants_tls = self.ca_cert.is_some() || self.client_cert.is_some() || self.client_key.is_some();
        if !self.tls() {
            if wants_tls {
                return Err(StoreError::Io(
                    "etcd TLS files (--etcd-ca, --etcd-cert, --etcd-key) need an etcds:// store URL".into(),
                ));
            }
            return Ok(options);
        }
        let mut tls = TlsOptions::new();
        tls = match &self.ca_cert {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca, "--etcd-ca")?)),
            None => tls.with_native_roots(),
        };
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(read(cert, "--etcd-cert")?, read(key, "--etcd-key")?));
            }
            (None, None) => {}
            _ => return Err(StoreError::Io("an etcd client certificate needs both --etcd-cert and --etcd-key".into())),
        }
        Ok(options.with_tls(tls))
    }
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| StoreError::Io(format!("reading {flag} file {}: {e}", path.display())))
}

/// Checks `HOST:PORT` (a bracketed IPv6 host allowed), saying what is wrong.
fn check_host_port(endpoint: &str) -> Result<(), &'static str> {
    if endpoint.is_empty() {
        return Err("is empty");
    }
    let (host, port) = if let Some(rest) = endpoint.strip_prefix('[') {
        let close = rest.find(']').ok_or("has an unclosed [")?;
        (&rest[..close], rest[close + 1..].strip_prefix(':').ok_or("needs a port (HOST:PORT)")?)
    } else {
        endpoint.rsplit_once(':').ok_or("needs a port (HOST:PORT)")?
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if host.contains(|c: char| c.is_whitespace()) {
        return Err("has a space in its host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("has a port that is not a number from 1 to 65535"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_schemes_and_prefixes() {
        let o = EtcdOptions::parse("etcd://10.0.0.1:2379").unwrap();
        assert_eq!(o.endpoints, ["http://10.0.0.1:2379"]);
        assert_eq!(o.prefix, "flotilla/");
        assert_eq!(o.lease_ttl, Duration::from_secs(3));
        assert!(!o.tls());

        let o = EtcdOptions::parse("etcds://a:2379,b:2379,[::1]:2379/prod").unwrap();
        assert_eq!(o.endpoints, ["https://a:2379", "https://b:2379", "https://[::1]:2379"]);
        assert_eq!(o.prefix, "prod/");
        assert!(o.tls());

        assert_eq!(EtcdOptions::parse("etcd://a:1/x/y/").unwrap().prefix, "x/y/");
        assert_eq!(EtcdOptions::parse("etcd://a:1/").unwrap().prefix, "flotilla/");
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let err = |url: &str| EtcdOptions::parse(url).unwrap_err();
        assert!(err("http://a:1").contains("etcd://"));
        assert!(err("etcd://a").contains("needs a port"));
        assert!(err("etcd://a:1,,b:2").contains("is empty"));
        assert!(err("etcd://a:x").contains("not a number"));
        assert!(err("etcd://:2379").contains("no host"));
        assert!(err("etcd://u:p@a:1").contains("--etcd-user"));
        assert!(err("etcd://[::1:2379").contains("unclosed"));
    }

    #[test]
    fn tls_files_need_an_etcds_url_and_come_in_pairs() {
        let plain = EtcdOptions { ca_cert: Some("/ca.pem".into()), ..EtcdOptions::parse("etcd://a:1").unwrap() };
        assert!(plain.connect_options().unwrap_err().to_string().contains("etcds://"));
        let half = EtcdOptions { client_cert: Some("/c.pem".into()), ..EtcdOptions::parse("etcds://a:1").unwrap() };
        assert!(half.connect_options().unwrap_err().to_string().contains("--etcd-key"));
        let missing = EtcdOptions { ca_cert: Some("/nonexistent/ca.pem".into()), ..half.clone() };
        assert!(missing.connect_options().unwrap_err().to_string().contains("--etcd-ca"));
    }
}
