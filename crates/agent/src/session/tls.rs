//! The TLS settings of the agent's connections to the control plane (`https://`, `wss://`): the
//! CA given (`--ca-cert`, a PEM bundle such as the one `flotilla server --tls auto` prints), or
//! else the system's roots. rustls with the aws-lc-rs provider, named rather than left to the
//! process default, so two providers in one build cannot make it ambiguous.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the CA bundle {path}: {detail}")]
    Bundle { path: String, detail: String },
    #[error("no trusted CA: {0}")]
    NoRoots(String),
    #[error("TLS settings: {0}")]
    Config(#[from] rustls::Error),
}

/// A client configuration trusting `ca` (PEM), or the system's roots when `None`.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let bad = |detail: String| TlsError::Bundle { path: path.display().to_string(), detail };
            let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                roots.add(cert.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("no CERTIFICATE in it".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(TlsError::NoRoots(format!("the system has no CA certificates ({:?})", found.errors)));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The session is a websocket upgrade, and the API calls are plain HTTP/1.1 too.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
