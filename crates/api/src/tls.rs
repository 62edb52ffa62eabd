//! TLS for the API and the agent sessions: rustls (aws-lc-rs) behind axum through a listener
//! that completes handshakes off the accept loop, so one slow client cannot hold up the others.
//!
//! Certificates come from the operator (`--tls-cert`/`--tls-key`, PEM) or are made on first
//! start (`--tls auto`): a CA kept in `DATA_DIR/tls/ca.pem` (its key beside it, mode 0600), which
//! clients trust through `AWS_CA_BUNDLE` or `--ca-cert`, and a server certificate it signs,
//! made afresh at every start for the names the server answers on.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

pub use rustls::ServerConfig as RustlsServerConfig;

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} holds no usable {what}: {detail}")]
    Pem { path: PathBuf, what: &'static str, detail: String },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("making a certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_path_buf(), source }
}

/// The crypto provider everything here uses, named rather than left to the process default.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn pem_error(path: &Path, what: &'static str, e: rustls_pki_types::pem::Error) -> TlsError {
    TlsError::Pem { path: path.into(), what, detail: e.to_string() }
}

/// A server configuration from PEM files: the certificate chain and its private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_bytes = std::fs::read(cert).map_err(io(cert))?;
    let chain = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, "certificate", e))?;
    if chain.is_empty() {
        return Err(TlsError::Pem { path: cert.into(), what: "certificate", detail: "no CERTIFICATE block".into() });
    }
    let key_bytes = std::fs::read(key).map_err(io(key))?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| pem_error(key, "private key", e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // The agent session is a websocket upgrade, which is HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The files `--tls auto` made.
#[derive(Debug, Clone)]
pub struct AutoTls {
    /// The CA clients trust (`AWS_CA_BUNDLE`, `flotilla agent --ca-cert`).
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn write(path: &Path, bytes: &[u8], private: bool) -> Result<(), TlsError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let tmp = path.with_extension("tmp");
    let mut f = opts.open(&tmp).map_err(io(&tmp))?;
    std::io::Write::write_all(&mut f, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Makes (once) a CA under `data_dir/tls` and (every time) a server certificate it signs for
/// `listen`'s address, localhost, 127.0.0.1, ::1 and this host's name.
pub fn auto(data_dir: &Path, listen: SocketAddr) -> Result<AutoTls, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, SanType};
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let (ca_path, ca_key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params.distinguished_name.push(DnType::CommonName, "Flotilla local CA");
    ca_params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let ca_key = match std::fs::read_to_string(&ca_key_path) {
        Ok(pem) => KeyPair::from_pem(&pem)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate()?;
            let ca_cert = ca_params.self_signed(&key)?;
            write(&ca_key_path, key.serialize_pem().as_bytes(), true)?;
            write(&ca_path, ca_cert.pem().as_bytes(), false)?;
            key
        }
        Err(e) => return Err(TlsError::Io { path: ca_key_path, source: e }),
    };
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec![SanType::DnsName("localhost".try_into()?)];
    let mut ips: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from(std::net::Ipv6Addr::LOCALHOST)];
    if !listen.ip().is_unspecified() && !ips.contains(&listen.ip()) {
        ips.push(listen.ip());
    }
    names.extend(ips.into_iter().map(SanType::IpAddress));
    if let Some(host) = hostname().filter(|h| h != "localhost") {
        if let Ok(name) = host.as_str().try_into() {
            names.push(SanType::DnsName(name));
        }
    }
    let mut params = CertificateParams::default();
    params.subject_alt_names = names;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "flotilla server");
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server-key.pem"));
    write(&key_path, key.serialize_pem().as_bytes(), true)?;
    write(&cert_path, cert.pem().as_bytes(), false)?;
    Ok(AutoTls { ca: ca_path, cert: cert_path, key: key_path })
}

/// This host's name, as the kernel knows it.
fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_string()).filter(|n| !n.is_empty())
}

/// Where the server listens: plain HTTP, or TLS with this configuration.
pub enum Listening {
    Plain(TcpListener),
    Tls(TcpListener, Arc<rustls::ServerConfig>),
}

impl Listening {
    /// `http://ADDR` or `https://ADDR` for the address listened on.
    pub fn default_url(&self) -> std::io::Result<String> {
        Ok(match self {
            Listening::Plain(l) => format!("http://{}", l.local_addr()?),
            Listening::Tls(l, _) => format!("https://{}", l.local_addr()?),
        })
    }
}

impl From<TcpListener> for Listening {
    fn from(l: TcpListener) -> Self {
        Listening::Plain(l)
    }
}

/// Accepts TCP connections and hands on those whose TLS handshake completed.
struct TlsListener {
    local: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors and the like: wait rather than spin.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Serves `router` until `shutdown`, then drains in-flight requests.
pub async fn serve(
    listening: Listening,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match listening {
        Listening::Plain(l) => {
            axum::serve(l, router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(shutdown)
                .await
        }
        Listening::Tls(l, config) => {
            axum::serve(TlsListener::new(l, config)?, router.into_make_service()).with_graceful_shutdown(shutdown).await
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn auto_keeps_its_ca_and_makes_a_usable_server_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let addr = "127.0.0.1:4580".parse().unwrap();
        let first = super::auto(dir.path(), addr).unwrap();
        let ca = std::fs::read(&first.ca).unwrap();
        let second = super::auto(dir.path(), addr).unwrap();
        assert_eq!(std::fs::read(&second.ca).unwrap(), ca, "the CA stays the one clients trust");
        super::server_config(&second.cert, &second.key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("tls/ca-key.pem")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
