//! `flotilla up`: everything on one machine. The control plane with its embedded store, and a
//! local agent on the local Docker Engine joined to the `default` cluster, in one process. It
//! builds the local demo images first (no registry is needed) and prints the aws CLI lines.

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
    /// Publish bridge-mode host ports on this address only [default: 127.0.0.1]
    #[arg(long, default_value = "127.0.0.1")]
    pub host_ip: String,
    #[command(flatten)]
    pub tls: crate::server_cmd::TlsArgs,
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
        // EC2 and Auto Scaling on the same listener, routed by the SigV4 service name.
        extensions: flotilla_autoscaling::api::extensions(),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // Auto Scaling groups launch their hosts as local agent processes.
    let server = {
        let (endpoint, ca, stop) = (endpoint.clone(), ca.clone(), stopped(stop_rx.clone()));
        tokio::spawn(async move {
            let local = flotilla_autoscaling::provision::ProvisionerKind::Local;
            crate::server_cmd::serve_with_hosts(config, listening, &endpoint, ca, &local, stop).await
        })
    };

    // The local agent joins with a token like any other: it never holds the root key pair.
    let agent_dir = data_dir.join("agent");
    let joined = agent_dir.join(flotilla_agent::session::join::CREDENTIALS_FILE).exists();
    let join_token = if joined {
        None
    } else {
        let root = flotilla_sigv4::Credentials::new(&credentials.access_key_id, &credentials.secret_access_key);
        let minted = crate::signed::Endpoint::new(endpoint.clone(), args.region.clone(), root, ca.as_deref())?
            .json(http::Method::POST, "/v1/tokens?cluster=default&ttlSeconds=600")
            .await?;
        minted["token"].as_str().map(str::to_string)
    };
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
        availability_zone: args.availability_zone.clone(),
        instance_type: "flotilla.local".into(),
        attributes: Vec::new(),
        cpu: None,
        memory: None,
        memory_reserved: 256,
        simulate: None,
        allow_privileged: false,
        pull_behavior: flotilla_agent::PullBehavior::default(),
        host_ip: Some(args.host_ip.clone()),
        allow_host_paths: Vec::new(),
        allow_capabilities: Vec::new(),
        ec2_instance_id: None,
        container_stop_timeout: 30,
        metadata_listen: Default::default(),
    };
    let options = flotilla_agent::run::AgentOptions {
        allow_privileged: false,
        pull_behavior: flotilla_agent::PullBehavior::default(),
        host_ip: Some(args.host_ip.clone()),
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

    crate::shutdown_signal().await;
    let _ = stop_tx.send(true);
    if let Ok(Err(e)) = agent.await {
        eprintln!("agent: {e}");
    }
    server.await??;
    Ok(())
}
