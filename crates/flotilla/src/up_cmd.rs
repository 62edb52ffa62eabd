//! `flotilla up`: everything on one machine. The control plane with its embedded store, and a
//! local agent on the local Docker Engine joined to the `default` cluster, in one process. It
//! builds the local demo images first (no registry is needed) and prints the aws CLI lines. When
//! gVisor's `runsc` is registered with the Docker Engine, a second in-process agent on the same
//! engine serves the Fargate pool, so FARGATE tasks run here too, each in its own sandbox.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use flotilla_api::credentials::CredentialSource;
use flotilla_api::{AuthMode, RootCredentials, ServerConfig};

#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// Address of the ECS API.
    #[arg(long, env = "FLOTILLA_LISTEN", default_value = "127.0.0.1:4580")]
    pub listen: SocketAddr,
    /// Directory for the store, credentials and the local agent's state [default: the user's
    /// data directory + /flotilla, or ./.flotilla]
    #[arg(long, env = "FLOTILLA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, env = "FLOTILLA_REGION", default_value = "us-east-1")]
    pub region: String,
    #[arg(long, env = "FLOTILLA_ACCOUNT_ID", default_value = "000000000000")]
    pub account_id: String,
    /// The local agent's `ecs.availability-zone`.
    #[arg(long, default_value = "local-1a")]
    pub availability_zone: String,
    /// Do not serve the Fargate pool from this host, even when gVisor's runsc is registered.
    #[arg(long)]
    pub no_fargate: bool,
    /// Publish bridge-mode host ports on this address only [default: 127.0.0.1]
    #[arg(long, default_value = "127.0.0.1")]
    pub host_ip: String,
    /// Where Cloud Map's private DNS namespaces are served (UDP and TCP).
    #[arg(long, env = "FLOTILLA_DNS_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:8053")]
    pub dns_listen: SocketAddr,
    #[command(flatten)]
    pub tls: crate::server_cmd::TlsArgs,
    #[command(flatten)]
    pub secrets: crate::secrets_key_cmd::SecretsKeyFile,
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.clone().unwrap_or_else(crate::server_cmd::default_data_dir);
    flotilla_agent::disk::create_private_dir(&data_dir)?; // 0700: the store and the root credentials
    let (credentials, source) = RootCredentials::load_or_create(&data_dir)?;

    eprintln!("Preparing the local images (flotilla/workload, flotilla/pause)...");
    let docker = flotilla_images::connect().await?;
    flotilla_images::ensure_standard_images(&docker).await?;

    let listener = crate::listen::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let tls = crate::server_cmd::tls_setup(&args.tls, &data_dir, addr)?;
    let endpoint = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
    let ca = tls.as_ref().and_then(|(_, ca)| ca.clone());
    let listening = match tls {
        Some((tls, _)) => flotilla_api::tls::Listening::Tls(listener, tls),
        None => flotilla_api::tls::Listening::Plain(listener),
    };
    let config = ServerConfig {
        data_dir: data_dir.clone(),
        region: args.region.clone(),
        account_id: args.account_id.clone(),
        auth: AuthMode::Verify,
        credentials: credentials.clone(),
        controller: Default::default(),
        stopped_task_retention: flotilla_api::reaper::DEFAULT_RETENTION,
        capacity: Default::default(),
        // EC2, Auto Scaling, ELBv2 and Cloud Map on the same listener, routed by the SigV4
        // service name.
        extensions: crate::secrets_key_cmd::with_secrets(
            crate::server_cmd::extensions(&credentials.secret_access_key),
            &args.secrets,
            &data_dir,
        )?,
        server_id: None,
        advertise_url: None,
        peer_tls: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let store = crate::store_cmd::open_embedded(&data_dir)?;
    // Auto Scaling groups launch their hosts as local agent processes.
    let server = {
        let (endpoint, ca, stop) = (endpoint.clone(), ca.clone(), stopped(stop_rx.clone()));
        let dns = Some(args.dns_listen);
        tokio::spawn(async move {
            let provisioner = flotilla_autoscaling::provision::ProvisionerKind::Local;
            let hosting = crate::server_cmd::Hosting { endpoint, ca, provisioner, dns };
            crate::server_cmd::serve_with_hosts(config, listening, hosting, store, stop).await
        })
    };

    // The local agent joins with a token like any other: it never holds the root key pair.
    let agent_dir = data_dir.join("agent");
    let joined = agent_dir.join(flotilla_agent::session::join::CREDENTIALS_FILE).exists();
    let root = flotilla_sigv4::Credentials::new(&credentials.access_key_id, &credentials.secret_access_key);
    let mint = |cluster: &'static str| {
        let (endpoint, region, root, ca) = (endpoint.clone(), args.region.clone(), root.clone(), ca.clone());
        async move {
            let path = format!("/v1/tokens?cluster={cluster}&ttlSeconds=600");
            let minted = crate::signed::Endpoint::new(endpoint, region, root, ca.as_deref())?
                .json(http::Method::POST, &path)
                .await?;
            anyhow::Ok(minted["token"].as_str().map(str::to_string))
        }
    };
    let join_token = if joined { None } else { mint("default").await? };
    let client = flotilla_agent::session::ApiClient::with_ca(
        &endpoint,
        &args.region,
        flotilla_sigv4::Credentials::new("", ""),
        ca.as_deref(),
    )?;
    let agent_args = crate::agent_cmd::AgentArgs {
        server: endpoint.clone(),
        cluster: "default".into(),
        data_dir: Some(agent_dir),
        region: args.region.clone(),
        token: None,
        ca_cert: ca.clone(),
        access_key_id: None,
        secret_access_key: None,
        availability_zone: Some(args.availability_zone.clone()),
        fargate: false,
        instance_type: "flotilla.local".into(),
        attributes: Vec::new(),
        cpu: None,
        memory: None,
        memory_reserved: 256,
        simulate: None,
        allow_privileged: false,
        pull_behavior: flotilla_agent::PullBehavior::default(),
        docker_config: None,
        host_ip: Some(args.host_ip.clone()),
        allow_host_paths: Vec::new(),
        allow_capabilities: Vec::new(),
        ec2_instance_id: None,
        gpus: None,
        container_stop_timeout: 30,
        metadata_listen: Default::default(),
        // Containers resolve Cloud Map names through the agent's forwarder to this DNS server.
        dns_server: Some(args.dns_listen),
        host_address: None,
    };
    let options = flotilla_agent::run::AgentOptions {
        allow_privileged: false,
        pull_behavior: flotilla_agent::PullBehavior::default(),
        host_ip: Some(args.host_ip.clone()),
        dns_server: Some(args.dns_listen),
        join_token,
        ..Default::default()
    };
    // Let the server accept connections before the agent registers.
    tokio::task::yield_now().await;
    let agent = tokio::spawn(flotilla_agent::run::run_agent(
        client,
        agent_args.registration("unknown"),
        options,
        stopped(stop_rx.clone()),
    ));
    let fargate = if args.no_fargate {
        None
    } else {
        let sandbox =
            flotilla_agent::runtime::sandbox::registered(&docker, flotilla_agent::runtime::sandbox::RUNSC).await;
        start_fargate_agent(
            &agent_args,
            &data_dir,
            sandbox,
            mint(flotilla_protocol::FARGATE_POOL),
            stopped(stop_rx.clone()),
        )
        .await
    };

    // A load balancer node in this process, joined with a token like any other node; its
    // listeners open on the address host ports are published on.
    let lb = if ca.is_some() {
        Err("over TLS, run `flotilla lb --server URL --token ...` beside it".to_string())
    } else {
        let lb_dir = data_dir.join("lb");
        let token = match lb_dir.join(flotilla_lb::control::CREDENTIALS_FILE).exists() {
            true => Ok(None),
            false => mint(flotilla_api::identity::tokens::LOAD_BALANCER_NODES).await,
        };
        start_lb_node(&endpoint, &args, &lb_dir, token, stopped(stop_rx.clone())).await
    };

    if source == CredentialSource::Generated {
        eprintln!(
            "Generated a root key pair and saved it in {} (mode 0600).",
            data_dir.join("credentials.json").display()
        );
    }
    eprintln!(
        "Flotilla is up: control plane on {endpoint}, a local agent in cluster default (data in {}).",
        data_dir.display()
    );
    eprintln!(
        "Web console: {endpoint}/console (sign in with the access key pair below; the secret never leaves the browser)."
    );
    eprintln!("Use the aws CLI after pasting:");
    println!("{}", crate::server_cmd::export_lines(&credentials, &endpoint, &args.region));
    if let Some(ca) = &ca {
        println!("{}", crate::server_cmd::ca_line(ca));
    }
    eprintln!(
        "Images built locally for your task definitions: {} and {}.",
        flotilla_images::WORKLOAD_IMAGE,
        flotilla_images::PAUSE_IMAGE
    );
    match &lb {
        Ok(()) => eprintln!(
            "Load balancers created with `aws elbv2` are served here: listeners open on {}, and \
             NAME-ID.{}.elb.localhost names resolve to this host in curl and browsers.",
            args.host_ip, args.region
        ),
        Err(why) => eprintln!("No load balancer node in this process: {why}"),
    }
    match &fargate {
        Some(Ok(zone)) => eprintln!(
            "This host serves the Fargate pool too: FARGATE tasks run here in gVisor sandboxes (runsc), in zone {zone}."
        ),
        Some(Err(why)) => eprintln!("Fargate is off on this host: {why}"),
        None => {}
    }

    crate::shutdown_signal().await;
    let _ = stop_tx.send(true);
    if let Ok(Err(e)) = agent.await {
        eprintln!("agent: {e}");
    }
    if let Some(Ok(_)) = fargate {
        // The pool agent stops with the same signal; its containers keep running, as the
        // first agent's do, and are adopted at the next start.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    server.await??;
    Ok(())
}

/// Starts the agent that serves the Fargate pool from the local Docker host, when gVisor's runsc
/// is registered there: its own data directory (`fargate-agent/`), a pool join token, the
/// region's first zone, and a metadata endpoint on a free port of the bridge gateway (the first
/// agent holds the default one). `None` when runsc is not registered (with the line to print
/// about enabling Fargate as `Some(Err)`); a pool that cannot be joined is a warning, not the end
/// of `flotilla up`.
async fn start_fargate_agent(
    local: &crate::agent_cmd::AgentArgs,
    data_dir: &std::path::Path,
    sandbox: Result<flotilla_agent::runtime::sandbox::SandboxInfo, flotilla_agent::runtime::sandbox::SandboxError>,
    mint: impl std::future::Future<Output = anyhow::Result<Option<String>>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Option<Result<String, String>> {
    use flotilla_agent::runtime::sandbox::RUNSC;
    if let Err(e) = sandbox {
        let why = match e {
            flotilla_agent::runtime::sandbox::SandboxError::NotRegistered { .. } => format!(
                "gVisor's runsc is not registered with the Docker Engine. To run FARGATE tasks here, set it up \
                 (scripts/setup-gvisor.sh, or: apt-get install -y runsc; add {} to /etc/docker/daemon.json; \
                 kill -HUP $(pidof dockerd)) and restart flotilla up.",
                flotilla_agent::runtime::sandbox::DAEMON_JSON
            ),
            e => e.to_string(),
        };
        return Some(Err(why));
    }
    let pool_dir = data_dir.join("fargate-agent");
    let joined = pool_dir.join(flotilla_agent::session::join::CREDENTIALS_FILE).exists();
    let join_token = if joined {
        None
    } else {
        match mint.await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot mint a join token for the Fargate pool; this host serves clusters only");
                return Some(Err(format!("the control plane would not mint a Fargate pool join token ({e})")));
            }
        }
    };
    let args = crate::agent_cmd::AgentArgs {
        cluster: flotilla_protocol::FARGATE_POOL.into(),
        data_dir: Some(pool_dir),
        availability_zone: None,
        fargate: true,
        metadata_listen: flotilla_agent::metadata::address::ListenChoice::BridgeGateway { port: 0 },
        ..local.clone()
    };
    let zone = crate::agent_cmd::default_zone(&args.region, true);
    let client = match flotilla_agent::session::ApiClient::with_ca(
        &args.server,
        &args.region,
        flotilla_sigv4::Credentials::new("", ""),
        args.ca_cert.as_deref(),
    ) {
        Ok(c) => c,
        Err(e) => return Some(Err(e.to_string())),
    };
    let options = flotilla_agent::run::AgentOptions {
        pull_behavior: args.pull_behavior,
        host_ip: args.host_ip.clone(),
        join_token,
        metadata_listen: args.metadata_listen,
        dns_server: args.dns_server,
        sandbox_runtime: Some(RUNSC.to_string()),
        ..Default::default()
    };
    let registration = args.registration("unknown");
    tokio::spawn(async move {
        if let Err(e) = flotilla_agent::run::run_agent(client, registration, options, stop).await {
            tracing::warn!(error = %e, "the Fargate pool agent stopped; this host serves clusters only");
        }
    });
    Some(Ok(zone))
}

/// Joins and runs the in-process load balancer node (`flotilla lb`'s work) until `stop`.
async fn start_lb_node(
    endpoint: &str,
    args: &UpArgs,
    dir: &std::path::Path,
    token: anyhow::Result<Option<String>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let token = token.map_err(|e| format!("the control plane would not mint a node token ({e:#})"))?;
    let bind: std::net::IpAddr =
        args.host_ip.parse().map_err(|_| format!("--host-ip {} is not an address", args.host_ip))?;
    let advertise = if bind.is_unspecified() { "127.0.0.1".to_string() } else { bind.to_string() };
    let servers = flotilla_lb::Endpoints::parse(endpoint).map_err(|e| e.to_string())?;
    let control = flotilla_lb::HttpControlPlane::enroll(&servers, &args.region, dir, token.as_deref(), &advertise)
        .await
        .map_err(|e| format!("the node could not join ({e:#})"))?;
    let mut settings = flotilla_lb::NodeSettings::new(control.node_id());
    settings.bind = bind;
    tokio::spawn(async move {
        if let Err(e) = flotilla_lb::run(settings, std::sync::Arc::new(control), stop).await {
            tracing::warn!(error = %format!("{e:#}"), "load balancer node stopped");
        }
    });
    Ok(())
}
