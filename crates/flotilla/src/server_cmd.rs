//! `flotilla server`: flags, credentials, the export lines a user pastes, and the serve loop.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use flotilla_api::credentials::CredentialSource;
use flotilla_api::{AuthMode, RootCredentials, ServerConfig};
use flotilla_autoscaling::provision::{ControlPlane, ProvisionerKind};

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address the ECS API listens on.
    #[arg(long, env = "FLOTILLA_LISTEN", default_value = "127.0.0.1:4580")]
    pub listen: SocketAddr,
    /// Directory for the store and the generated credentials [default: the user's data
    /// directory + /flotilla, or ./.flotilla]
    #[arg(long, env = "FLOTILLA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Region named in ARNs and accepted in request signatures.
    #[arg(long, env = "FLOTILLA_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Account ID named in ARNs.
    #[arg(long, env = "FLOTILLA_ACCOUNT_ID", default_value = "000000000000")]
    pub account_id: String,
    /// Accept unsigned requests. Development only, and only on a loopback address.
    #[arg(long, env = "FLOTILLA_DISABLE_AUTH")]
    pub disable_auth: bool,
    /// Seconds an agent may stay disconnected before the service controller replaces its
    /// services' tasks on other instances.
    #[arg(long, env = "FLOTILLA_LOST_INSTANCE_GRACE_SECONDS", default_value_t = 60)]
    pub lost_instance_grace_seconds: u64,
    /// Seconds a STOPPED task stays visible to DescribeTasks and ListTasks before it is
    /// forgotten (ECS keeps them for at least an hour); 0 keeps them forever.
    #[arg(long, env = "FLOTILLA_STOPPED_TASK_RETENTION_SECONDS", default_value_t = flotilla_api::reaper::DEFAULT_RETENTION.as_secs())]
    pub stopped_task_retention_seconds: u64,
    /// Seconds between managed scaling's measurements of CapacityProviderReservation (ECS: 60).
    #[arg(long, env = "FLOTILLA_SCALING_PERIOD_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub scaling_period_seconds: u64,
    /// Seconds a task may wait in PROVISIONING for a capacity provider's hosts before it is stopped.
    #[arg(long, env = "FLOTILLA_PROVISIONING_TIMEOUT_SECONDS", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..))]
    pub provisioning_timeout_seconds: u64,
    /// How Auto Scaling groups get their hosts: `local` (`flotilla agent` processes on this
    /// machine), `simulate` (hollow agents in this process) or `command:PATH` (an executable given
    /// a JSON document on stdin). Without one, launches fail with a scaling activity saying so.
    #[arg(long, env = "FLOTILLA_PROVISIONER", value_name = "local|simulate|command:PATH", value_parser = parse_provisioner)]
    pub provisioner: Option<ProvisionerKind>,
    /// Serve Cloud Map's private DNS namespaces on this address (UDP and TCP) [default: off]
    #[arg(long, env = "FLOTILLA_DNS_LISTEN", value_name = "ADDR")]
    pub dns_listen: Option<SocketAddr>,
    /// This server's name among the servers sharing one store (in `/health`, the leader key and
    /// the session records) [default: a fresh uuid each start]
    #[arg(long, env = "FLOTILLA_SERVER_ID", value_parser = parse_server_id)]
    pub server_id: Option<String>,
    /// The URL the other servers reach this one at, when it is not `http(s)://` and --listen
    /// (a wildcard or NATed address)
    #[arg(long, env = "FLOTILLA_ADVERTISE_URL", value_name = "URL", value_parser = parse_advertise_url)]
    pub advertise_url: Option<String>,
    /// The CA (PEM) that signed the other servers' certificates, when they serve HTTPS with a
    /// private CA [default: the system's roots]
    #[arg(long, env = "FLOTILLA_PEER_CA", value_name = "PEM")]
    pub peer_ca: Option<PathBuf>,
    /// Where the state lives: `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (or `etcds://` for
    /// TLS) to share it with other servers through etcd (see README, "High availability")
    /// [default: the embedded store in the data directory].
    #[arg(long, env = "FLOTILLA_STORE", value_name = "etcd://...")]
    pub store: Option<String>,
    #[command(flatten)]
    pub etcd: crate::store_cmd::EtcdArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub secrets: crate::secrets_key_cmd::SecretsKeyFile,
}

/// The services served beside ECS: EC2 and Auto Scaling, ELBv2 (with its nodes, whose join tokens
/// `root_secret` signs) and Cloud Map, routed by the SigV4
/// service name (or, unsigned, by action or `X-Amz-Target`).
pub fn extensions(root_secret: &str) -> flotilla_api::Extensions {
    let mut extensions = flotilla_autoscaling::api::extensions();
    extensions.0.push(flotilla_elbv2::api::extension_with_nodes(root_secret));
    extensions.0.push(flotilla_servicediscovery::extension());
    extensions.0.push(flotilla_cwlogs::extension());
    extensions.0.push(flotilla_console::extension());
    extensions
}

fn parse_server_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    ok.then(|| s.to_string()).ok_or_else(|| format!("{s:?}: 1 to 64 letters, digits, '-', '_' or '.'"))
}

fn parse_advertise_url(s: &str) -> Result<String, String> {
    let rest = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() => Ok(s.trim_end_matches('/').to_string()),
        _ => Err(format!("{s:?} is not a URL: it must start with http:// or https:// and name a host")),
    }
}

fn parse_provisioner(s: &str) -> Result<ProvisionerKind, String> {
    s.parse()
}

/// What a server runs besides the API: where hosts it launches find it, and the DNS server.
pub struct Hosting {
    /// The URL agents it launches are given.
    pub endpoint: String,
    /// The CA bundle of a `--tls auto` listener, for those agents.
    pub ca: Option<PathBuf>,
    pub provisioner: ProvisionerKind,
    /// Where the Cloud Map DNS server listens, if it runs.
    pub dns: Option<SocketAddr>,
}

/// Builds the control plane over `store`, starts the Auto Scaling group loop and the Cloud Map
/// DNS server (if asked), and serves until `shutdown`.
pub async fn serve_with_hosts(
    config: ServerConfig,
    listening: flotilla_api::tls::Listening,
    hosting: Hosting,
    store: std::sync::Arc<dyn flotilla_store::Store>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let ctx = flotilla_api::server::build_ctx(store, &config, flotilla_api::Clock::system()).await?;
    let cp = ControlPlane {
        endpoint: hosting.endpoint.clone(),
        region: config.region.clone(),
        access_key_id: config.credentials.access_key_id.clone(),
        secret_access_key: config.credentials.secret_access_key.clone(),
        ca_cert: hosting.ca.clone(),
        data_dir: config.data_dir.clone(),
    };
    let groups = flotilla_autoscaling::start(&ctx, &hosting.provisioner, cp)?;
    let dns = match hosting.dns {
        Some(addr) => {
            let server = flotilla_servicediscovery::dns::start(&ctx, addr, Default::default()).await?;
            eprintln!("Cloud Map DNS (private namespaces) on {} (UDP and TCP).", server.local_addr());
            Some(server)
        }
        None => None,
    };
    let served = flotilla_api::server::serve_ctx(ctx, &config, listening, shutdown).await;
    groups.stop().await;
    if let Some(dns) = dns {
        dns.stop().await;
    }
    served
}

/// How the server speaks TLS.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// `auto`: make a CA and a server certificate in the data directory on first start and serve
    /// HTTPS with them; `off`: plain HTTP (the default, unless --tls-cert is given).
    #[arg(long, env = "FLOTILLA_TLS", value_parser = ["auto", "off"])]
    pub tls: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "FLOTILLA_TLS_CERT", requires = "tls_key", conflicts_with = "tls")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "FLOTILLA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// The server's TLS, if any: its configuration and the CA file clients should trust (when
/// `--tls auto` made one).
pub fn tls_setup(
    args: &TlsArgs,
    data_dir: &std::path::Path,
    listen: SocketAddr,
) -> anyhow::Result<Option<(std::sync::Arc<flotilla_api::tls::RustlsServerConfig>, Option<PathBuf>)>> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok(Some((flotilla_api::tls::server_config(cert, key)?, None)));
    }
    if args.tls.as_deref() == Some("auto") {
        let made = flotilla_api::tls::auto(data_dir, listen)?;
        return Ok(Some((flotilla_api::tls::server_config(&made.cert, &made.key)?, Some(made.ca))));
    }
    if !listen.ip().is_loopback() {
        tracing::warn!(%listen, "serving plain HTTP on a non-loopback address: signatures protect requests from tampering but not from being read (join tokens, task data); use --tls auto or --tls-cert/--tls-key");
    }
    Ok(None)
}

/// The line that makes the aws CLI, boto3 and the SDKs trust `--tls auto`'s CA.
pub fn ca_line(ca: &std::path::Path) -> String {
    format!("export AWS_CA_BUNDLE={}", ca.display())
}

pub fn default_data_dir() -> PathBuf {
    dirs::data_dir().map(|d| d.join("flotilla")).unwrap_or_else(|| PathBuf::from(".flotilla"))
}

/// The lines that point the aws CLI and the SDKs at this server: `AWS_ENDPOINT_URL` for every
/// service, since ECS, EC2 and Auto Scaling all answer on the one listener.
pub fn export_lines(creds: &RootCredentials, endpoint: &str, region: &str) -> String {
    format!(
        "export AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_ENDPOINT_URL={endpoint} AWS_DEFAULT_REGION={region}",
        creds.access_key_id, creds.secret_access_key
    )
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    flotilla_agent::disk::create_private_dir(&data_dir)?; // 0700: the store and the root credentials
    if args.disable_auth && !args.listen.ip().is_loopback() {
        anyhow::bail!("--disable-auth is only allowed on a loopback address; {} is not one", args.listen);
    }
    let (credentials, source) = RootCredentials::load_or_create(&data_dir)?;
    let store = match &args.store {
        Some(url) => {
            anyhow::ensure!(
                crate::store_cmd::is_etcd(url),
                "--store {url}: expected etcd://HOST:PORT[,HOST:PORT...][/PREFIX] or etcds://..."
            );
            crate::store_cmd::open(url, &args.etcd).await?
        }
        None => crate::store_cmd::open_embedded(&data_dir)?,
    };
    let listener = crate::listen::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let tls = tls_setup(&args.tls, &data_dir, addr)?;
    let endpoint = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
    let config = ServerConfig {
        data_dir: data_dir.clone(),
        region: args.region.clone(),
        account_id: args.account_id.clone(),
        auth: if args.disable_auth { AuthMode::Disabled } else { AuthMode::Verify },
        credentials: credentials.clone(),
        controller: flotilla_api::controller::Settings {
            lost_grace_ms: (args.lost_instance_grace_seconds as i64).saturating_mul(1000),
        },
        stopped_task_retention: std::time::Duration::from_secs(args.stopped_task_retention_seconds),
        capacity: flotilla_api::capacity::Settings {
            scaling_period: std::time::Duration::from_secs(args.scaling_period_seconds),
            provisioning_timeout: std::time::Duration::from_secs(args.provisioning_timeout_seconds),
        },
        // EC2, Auto Scaling, ELBv2 and Cloud Map on the same listener, routed by the SigV4
        // service name.
        extensions: crate::secrets_key_cmd::with_secrets(
            extensions(&credentials.secret_access_key),
            &args.secrets,
            &data_dir,
        )?,
        server_id: args.server_id.clone(),
        advertise_url: args.advertise_url.clone(),
        peer_tls: match &args.peer_ca {
            Some(ca) => Some(
                flotilla_agent::session::tls::client_config(Some(ca))
                    .map_err(|e| anyhow::anyhow!("--peer-ca {}: {e}", ca.display()))?,
            ),
            None => None,
        },
    };
    if args.disable_auth {
        tracing::warn!("!!! SIGNATURE VERIFICATION IS DISABLED: any local process can call this API unsigned. Development only. !!!");
    }
    match source {
        CredentialSource::Generated => eprintln!(
            "Generated a root key pair and saved it in {} (mode 0600).",
            data_dir.join("credentials.json").display()
        ),
        CredentialSource::DataDir => {
            eprintln!("Using the root key pair saved in {}.", data_dir.join("credentials.json").display())
        }
        CredentialSource::Environment => {
            eprintln!("Using the root key pair from FLOTILLA_ACCESS_KEY_ID/FLOTILLA_SECRET_ACCESS_KEY.")
        }
    }
    let state = match &args.store {
        Some(url) => format!("state in {url}, data in {}", data_dir.display()),
        None => format!("data in {}", data_dir.display()),
    };
    eprintln!("Flotilla control plane listening on {endpoint} ({state}); web console at {endpoint}/console. To use the aws CLI:");
    println!("{}", export_lines(&credentials, &endpoint, &args.region));
    let ca_file = tls.as_ref().and_then(|(_, ca)| ca.clone());
    let listening = match tls {
        Some((tls, ca)) => {
            if let Some(ca) = ca {
                println!("{}", ca_line(&ca));
                eprintln!("Agents: flotilla agent --server {endpoint} --ca-cert {} --token ...", ca.display());
            }
            flotilla_api::tls::Listening::Tls(listener, tls)
        }
        None => flotilla_api::tls::Listening::Plain(listener),
    };
    let provisioner = args.provisioner.clone().unwrap_or_default();
    let hosting = Hosting { endpoint, ca: ca_file, provisioner, dns: args.dns_listen };
    serve_with_hosts(config, listening, hosting, store, crate::shutdown_signal()).await
}
