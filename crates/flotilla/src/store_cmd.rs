//! Where the control plane keeps its state (`--store` and the `--etcd-*` flags of `flotilla
//! server`) and `flotilla store copy`, which moves that state between the embedded store of a
//! data directory and etcd, so a single-server install can grow into a highly available one (and
//! back).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use flotilla_store::{EtcdOptions, EtcdStore, RedbStore, Store};

/// The file of the embedded store inside a data directory.
pub const EMBEDDED_FILE: &str = "store.redb";

/// How to reach etcd, besides the `etcd://` URL itself.
#[derive(Args, Debug, Clone, Default)]
pub struct EtcdArgs {
    /// The CA certificate (PEM) that signed etcd's server certificates, for `etcds://` URLs
    /// [default: the system's roots].
    #[arg(long, env = "FLOTILLA_ETCD_CA", value_name = "PEM")]
    pub etcd_ca: Option<PathBuf>,
    /// A client certificate (PEM) for etcd's mutual TLS (`--client-cert-auth`), with --etcd-key.
    #[arg(long, env = "FLOTILLA_ETCD_CERT", value_name = "PEM", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "FLOTILLA_ETCD_KEY", value_name = "PEM", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// The etcd user, when etcd has authentication on (its role needs read and write on the
    /// prefix, and lease grants).
    #[arg(long, env = "FLOTILLA_ETCD_USER")]
    pub etcd_user: Option<String>,
    /// That user's password (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "FLOTILLA_ETCD_PASSWORD", hide_env_values = true, requires = "etcd_user")]
    pub etcd_password: Option<String>,
}

impl EtcdArgs {
    /// The options for `url` (`etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`, or `etcds://` for TLS).
    pub fn options(&self, url: &str) -> anyhow::Result<EtcdOptions> {
        let mut opts = EtcdOptions::parse(url).map_err(|e| anyhow::anyhow!("--store {url}: {e}"))?;
        opts.ca_cert = self.etcd_ca.clone();
        opts.client_cert = self.etcd_cert.clone();
        opts.client_key = self.etcd_key.clone();
        opts.user = self.etcd_user.clone();
        opts.password = self.etcd_password.clone();
        Ok(opts)
    }
}

/// Whether `spec` names etcd rather than a data directory.
pub fn is_etcd(spec: &str) -> bool {
    spec.starts_with("etcd://") || spec.starts_with("etcds://")
}

/// Opens the store `spec` names: an `etcd://`/`etcds://` URL, or the embedded store of the data
/// directory `spec`.
pub async fn open(spec: &str, etcd: &EtcdArgs) -> anyhow::Result<Arc<dyn Store>> {
    if is_etcd(spec) {
        let opts = etcd.options(spec)?;
        let endpoints = opts.endpoints.join(",");
        let store = EtcdStore::connect(opts).await.map_err(|e| anyhow::anyhow!("etcd at {endpoints}: {e}"))?;
        return Ok(Arc::new(store));
    }
    open_embedded(Path::new(spec))
}

/// The embedded store of data directory `dir` (created if missing).
pub fn open_embedded(dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    let file = dir.join(EMBEDDED_FILE);
    let store = RedbStore::open(&file).map_err(|e| {
        anyhow::anyhow!("opening {}: {e} (is a flotilla server still running on this data directory?)", file.display())
    })?;
    Ok(Arc::new(store))
}

#[derive(Args, Debug)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Copy every record from one store into another, empty one: a data directory's embedded
    /// store into etcd (to grow into several servers) or etcd into a data directory. Stop the
    /// servers of the source first.
    Copy(CopyArgs),
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The source: a server's data directory (its embedded store) or `etcd://HOST:PORT,...[/PREFIX]`.
    #[arg(long, value_name = "DIR|etcd://...")]
    pub from: String,
    /// The destination, which must hold nothing yet: a data directory or an etcd URL.
    #[arg(long, value_name = "DIR|etcd://...")]
    pub to: String,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    match args.command {
        StoreCommand::Copy(copy) => run_copy(copy).await,
    }
}

async fn run_copy(args: CopyArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.from != args.to, "--from and --to name the same store");
    if !is_etcd(&args.from) {
        let file = Path::new(&args.from).join(EMBEDDED_FILE);
        anyhow::ensure!(file.is_file(), "--from {}: no embedded store there (no {})", args.from, file.display());
    }
    if !is_etcd(&args.to) {
        flotilla_agent::disk::create_private_dir(Path::new(&args.to))?;
    }
    let from = open(&args.from, &args.etcd).await?;
    let to = open(&args.to, &args.etcd).await?;
    let report = flotilla_store::copy(from.as_ref(), to.as_ref()).await?;
    eprintln!(
        "Copied {} keys ({} bytes, {} transactions) from {} (revision {}) to {}{}.",
        report.keys,
        report.bytes,
        report.transactions,
        args.from,
        report.source_revision,
        args.to,
        if report.skipped > 0 { format!("; left {} leader keys behind", report.skipped) } else { String::new() }
    );
    if !is_etcd(&args.to) {
        eprintln!(
            "The root key pair stays in the source's data directory (credentials.json) or environment: give the \
             servers of {} the same one.",
            args.to
        );
    }
    Ok(())
}
