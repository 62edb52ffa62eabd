//! `flotilla agent`: join a cluster as a container instance and run its tasks, or, with
//! `--simulate N`, hold N hollow agents with a simulated runtime.

use std::path::PathBuf;

use clap::Args;
use flotilla_agent::session::{ApiClient, RegistrationConfig};
use flotilla_sigv4::Credentials;

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// The control plane's URL, or the URLs of its servers separated by commas
    /// (`http://a:4580,http://b:4580`): the agent uses one of them (each agent starts at a random
    /// one) and moves to the next at once when its server cannot be reached, staying the same
    /// container instance.
    #[arg(long, env = "FLOTILLA_SERVER", default_value = "http://127.0.0.1:4580", value_name = "URL[,URL...]",
          value_parser = parse_servers)]
    pub server: String,
    /// The CA bundle (PEM) that signed the server's certificate, for an https:// server
    /// [default: the system's roots]
    #[arg(long, env = "FLOTILLA_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// The cluster to join.
    #[arg(long, env = "FLOTILLA_CLUSTER", default_value = "default")]
    pub cluster: String,
    /// Directory for the agent's identity, task logs and state [default: the user's data
    /// directory + /flotilla-agent, or ./.flotilla-agent]
    #[arg(long, env = "FLOTILLA_AGENT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Region of the control plane (used in request signatures).
    #[arg(long, env = "FLOTILLA_REGION", default_value = "us-east-1")]
    pub region: String,
    /// A join token (`flotilla token create`): the agent registers with it once and keeps the
    /// key pair it earns in the data directory; later starts need neither.
    #[arg(long, env = "FLOTILLA_JOIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Access key ID; the root key pair, for hollow agents and tests [env: FLOTILLA_ACCESS_KEY_ID]
    #[arg(long, env = "FLOTILLA_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key_id: Option<String>,
    /// Secret access key [env: FLOTILLA_SECRET_ACCESS_KEY]
    #[arg(long, env = "FLOTILLA_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: Option<String>,
    /// The `ecs.availability-zone` attribute [default: local-1a; with --fargate, the region's
    /// first zone, e.g. us-east-1a, where the default VPC's first subnet is]
    #[arg(long, env = "FLOTILLA_AVAILABILITY_ZONE")]
    pub availability_zone: Option<String>,
    /// Serve the Fargate pool instead of a cluster: register in the pool (with a join token
    /// minted for it: `flotilla token create --cluster fargate.pool`) and run each Fargate task
    /// in its own gVisor sandbox. Needs gVisor's `runsc` registered with the Docker Engine; the
    /// agent checks that a sandbox starts and refuses to run otherwise, saying how to set it up.
    #[arg(long, env = "FLOTILLA_FARGATE")]
    pub fargate: bool,
    /// The `ecs.instance-type` attribute.
    #[arg(long, default_value = "flotilla.local")]
    pub instance_type: String,
    /// A custom attribute, `key=value` or `key`; repeatable.
    #[arg(long = "attribute", value_parser = parse_attribute)]
    pub attributes: Vec<(String, Option<String>)>,
    /// CPU units to offer [default: 1024 per core]
    #[arg(long)]
    pub cpu: Option<i32>,
    /// Memory in MiB to offer [default: the host's less --memory-reserved]
    #[arg(long)]
    pub memory: Option<i32>,
    /// Memory in MiB kept back for the host when measuring what to offer.
    #[arg(long, default_value_t = 256)]
    pub memory_reserved: i32,
    /// Run N hollow agents with a simulated runtime instead of one real agent.
    #[arg(long, value_name = "N")]
    pub simulate: Option<usize>,
    /// Let task definitions run privileged containers, bind-mount any host path (the Docker
    /// socket and the agent's data directory included) and add any capability.
    #[arg(long, env = "FLOTILLA_ALLOW_PRIVILEGED")]
    pub allow_privileged: bool,
    /// Let tasks bind-mount host paths under PREFIX (`host.sourcePath` volumes); repeatable.
    /// The Docker socket and the agent's data directory stay out of reach without --allow-privileged.
    #[arg(long = "allow-host-path", value_name = "PREFIX")]
    pub allow_host_paths: Vec<PathBuf>,
    /// Let tasks add the kernel capability CAP (`linuxParameters.capabilities.add`), with or
    /// without `CAP_`; repeatable.
    #[arg(long = "allow-capability", value_name = "CAP")]
    pub allow_capabilities: Vec<String>,
    /// The Docker CLI config.json whose `auths` entries give registry credentials to images whose
    /// container definition names no repositoryCredentials (credential helpers are not run; a
    /// missing file means none) [default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json]
    #[arg(long, env = "FLOTILLA_DOCKER_CONFIG", value_name = "PATH")]
    pub docker_config: Option<PathBuf>,
    /// When to pull images: default (only when absent), always, prefer-cached, never.
    #[arg(long, default_value = "default", value_parser = parse_pull)]
    pub pull_behavior: flotilla_agent::PullBehavior,
    /// Publish bridge-mode host ports on this address only (e.g. 127.0.0.1) [default: every address]
    #[arg(long)]
    pub host_ip: Option<String>,
    /// The EC2 instance this host is, `i-` and 17 hex digits (set by a provisioner): it becomes
    /// the container instance's `ec2InstanceId` [default: one the server makes up]
    #[arg(long, env = "FLOTILLA_EC2_INSTANCE_ID")]
    pub ec2_instance_id: Option<String>,
    /// The host's GPUs to offer to tasks, by id (`0,1` or GPU UUIDs), comma separated; `--gpus ''`
    /// offers none [default: the NVIDIA GPUs under /dev (nvidia0, nvidia1, ...); none for
    /// --simulate]. Hollow agents (--simulate) each register these ids.
    #[arg(long, value_delimiter = ',', value_name = "ID,ID,...")]
    pub gpus: Option<Vec<String>>,
    /// Seconds between SIGTERM and SIGKILL for containers without a `stopTimeout`
    /// (the ECS agent's ECS_CONTAINER_STOP_TIMEOUT).
    #[arg(long, env = "FLOTILLA_CONTAINER_STOP_TIMEOUT", value_name = "SECONDS", default_value_t = 30)]
    pub container_stop_timeout: u64,
    /// Where the task metadata endpoint (ECS_CONTAINER_METADATA_URI_V4) listens: `gateway[:PORT]`
    /// (the Docker bridge's gateway, which bridge, host and awsvpc containers reach; port 51679,
    /// or a free one when another agent holds it), `ADDR:PORT`, or `off`.
    #[arg(long, env = "FLOTILLA_METADATA_LISTEN", value_name = "WHERE", default_value = "gateway")]
    pub metadata_listen: flotilla_agent::metadata::address::ListenChoice,
    /// The control plane's DNS server (`flotilla server --dns-listen`), as ADDR:PORT. Given, the
    /// agent forwards DNS to it from port 53 on the Docker bridge's gateway (bridge and awsvpc
    /// containers, Fargate's included) and on 127.0.0.153 (host-mode containers), and gives every
    /// task container that resolver unless its definition names `dnsServers`, so containers
    /// resolve Cloud Map names with no configuration. Not given: no forwarder, and containers
    /// keep Docker's default resolver.
    #[arg(long, env = "FLOTILLA_DNS_SERVER", value_name = "ADDR")]
    pub dns_server: Option<std::net::SocketAddr>,
    /// The address other hosts (load balancer nodes, Cloud Map clients) reach this host's
    /// published ports at, advertised as the attribute `flotilla.host-address`: instance targets
    /// and bridge-mode Cloud Map records point there [default: --host-ip when it names one
    /// address, else 127.0.0.1, right when everything runs on one machine]
    #[arg(long, env = "FLOTILLA_HOST_ADDRESS", value_name = "IP")]
    pub host_address: Option<std::net::IpAddr>,
}

/// Checks a `--server` list, naming the entry that is wrong.
pub fn parse_servers(s: &str) -> Result<String, String> {
    flotilla_agent::session::endpoints::parse_list(s).map_err(|e| e.to_string())
}

fn parse_pull(s: &str) -> Result<flotilla_agent::PullBehavior, String> {
    s.parse().map_err(|_| format!("'{s}' is not a pull behavior: default, always, prefer-cached or never"))
}

fn parse_attribute(s: &str) -> Result<(String, Option<String>), String> {
    let (k, v) = match s.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (s, None),
    };
    if k.is_empty() {
        return Err("an attribute needs a name: key=value or key".into());
    }
    Ok((k.to_string(), v))
}

/// The zone a host is in when `--availability-zone` is not given.
pub fn default_zone(region: &str, fargate: bool) -> String {
    if fargate {
        format!("{region}a")
    } else {
        "local-1a".into()
    }
}

pub fn default_data_dir() -> PathBuf {
    dirs::data_dir().map(|d| d.join("flotilla-agent")).unwrap_or_else(|| PathBuf::from(".flotilla-agent"))
}

impl AgentArgs {
    /// The cluster the agent registers in: its own, or the Fargate pool's.
    pub fn cluster(&self) -> &str {
        if self.fargate {
            flotilla_protocol::FARGATE_POOL
        } else {
            &self.cluster
        }
    }

    /// The root key pair for hollow agents; else none (a real agent joins with a token, or has
    /// joined, and is refused the root pair so that it never needs to be on its host).
    pub fn credentials(&self) -> anyhow::Result<Credentials> {
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() && self.simulate.is_some() => {
                Ok(Credentials::new(a, s))
            }
            (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => anyhow::bail!(
                "a container instance's agent joins with a join token (--token, from `flotilla token create --cluster {}`), never with the control plane's root key pair: unset FLOTILLA_ACCESS_KEY_ID and FLOTILLA_SECRET_ACCESS_KEY on this host (the root pair is for hollow agents, --simulate)",
                self.cluster()
            ),
            _ if self.simulate.is_some() => anyhow::bail!(
                "hollow agents need the control plane's key pair: set FLOTILLA_ACCESS_KEY_ID and FLOTILLA_SECRET_ACCESS_KEY (or --access-key-id/--secret-access-key)"
            ),
            _ => {
                let dir = self.data_dir.clone().unwrap_or_else(default_data_dir);
                let joined = dir.join(flotilla_agent::session::join::CREDENTIALS_FILE).exists();
                if self.token.is_none() && !joined {
                    anyhow::bail!(
                        "the agent needs a join token (--token, from `flotilla token create --cluster {}`) the first time it starts",
                        self.cluster()
                    );
                }
                // Replaced by the agent's own pair once it has joined.
                Ok(Credentials::new("", ""))
            }
        }
    }

    /// `--attribute`s, with `flotilla.host-address` added unless one of them sets it.
    fn attributes_with_host_address(&self) -> Vec<(String, Option<String>)> {
        let mut out = self.attributes.clone();
        let key = flotilla_api::domain::hosts::HOST_ADDRESS_ATTRIBUTE;
        let given = self.host_address.map(|a| a.to_string()).or_else(|| {
            self.host_ip
                .as_deref()
                .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok_and(|a| !a.is_unspecified()))
                .map(String::from)
        });
        if let (Some(address), false) = (given, out.iter().any(|(k, _)| k == key)) {
            out.push((key.to_string(), Some(address)));
        }
        out
    }

    pub fn registration(&self, docker_version: &str) -> RegistrationConfig {
        RegistrationConfig {
            cluster: self.cluster().to_string(),
            data_dir: self.data_dir.clone().unwrap_or_else(default_data_dir),
            availability_zone: self
                .availability_zone
                .clone()
                .unwrap_or_else(|| default_zone(&self.region, self.fargate)),
            instance_type: self.instance_type.clone(),
            attributes: self.attributes_with_host_address(),
            cpu: self.cpu,
            memory: self.memory,
            memory_reserved_mib: self.memory_reserved,
            network_modes: vec!["bridge".into(), "host".into(), "awsvpc".into(), "none".into()],
            agent_version: env!("CARGO_PKG_VERSION").into(),
            docker_version: docker_version.into(),
            state_file: "agent.json".into(),
            ec2_instance_id: self.ec2_instance_id.clone(),
            gpus: match (&self.gpus, self.simulate) {
                (Some(ids), _) => ids.iter().map(|g| g.trim().to_string()).filter(|g| !g.is_empty()).collect(),
                (None, Some(_)) => Vec::new(),
                (None, None) => flotilla_agent::session::detect_gpus(std::path::Path::new("/dev")),
            },
        }
    }
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let client = ApiClient::with_ca(&args.server, &args.region, args.credentials()?, args.ca_cert.as_deref())?;
    match args.simulate {
        Some(n) => run_hollow_fleet(client, &args, n).await,
        None => {
            let options = flotilla_agent::run::AgentOptions {
                allow_privileged: args.allow_privileged,
                allowed_host_paths: args.allow_host_paths.clone(),
                allowed_capabilities: args.allow_capabilities.clone(),
                pull_behavior: args.pull_behavior,
                host_ip: args.host_ip.clone(),
                join_token: args.token.clone(),
                default_stop_timeout: Some(std::time::Duration::from_secs(args.container_stop_timeout)),
                metadata_listen: args.metadata_listen,
                dns_server: args.dns_server,
                sandbox_runtime: args.fargate.then(|| flotilla_agent::runtime::sandbox::RUNSC.to_string()),
                docker_config: args.docker_config.clone(),
            };
            flotilla_agent::run::run_agent(client, args.registration("unknown"), options, crate::shutdown_signal())
                .await?;
            Ok(())
        }
    }
}

async fn run_hollow_fleet(client: ApiClient, args: &AgentArgs, n: usize) -> anyhow::Result<()> {
    let base = args.registration("simulated");
    flotilla_agent::disk::create_private_dir(&flotilla_agent::hollow::hollow_dir(&base))?;
    // The same opt-ins as a real agent's, so a simulated fleet refuses what a real one would.
    let policy = flotilla_agent::engine::policy::HostPolicy::new(
        args.allow_privileged,
        &args.allow_host_paths,
        &args.allow_capabilities,
        &base.data_dir,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut agents = tokio::task::JoinSet::new();
    for i in 0..n {
        let cfg = flotilla_agent::hollow::hollow_config(&base, i);
        let (client, stop) = (client.clone(), stop_rx.clone());
        let policy = Some(policy.clone());
        agents.spawn(async move { flotilla_agent::hollow::run_hollow_with_policy(client, cfg, policy, stop).await });
        // Registering thousands at once would only make them all retry; a short stagger keeps
        // the start orderly.
        if i % 100 == 99 {
            tokio::task::yield_now().await;
        }
    }
    eprintln!("{n} hollow agents joining cluster {} at {}", args.cluster(), args.server.replace(',', ", "));
    // A hollow agent ends early only when it fails (registration refused or unreachable); the
    // failure is told at once, and a fleet with no agent left exits, as a single agent would.
    let mut shutdown = std::pin::pin!(crate::shutdown_signal());
    let mut last_error = None;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            ended = agents.join_next() => match ended {
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "a hollow agent failed");
                    last_error = Some(e.to_string());
                }
                Some(Err(e)) => last_error = Some(e.to_string()),
                None => anyhow::bail!(
                    "no hollow agent is left running: {}",
                    last_error.unwrap_or_else(|| "they all ended".into())
                ),
            },
        }
    }
    let _ = stop_tx.send(true);
    while let Some(r) = agents.join_next().await {
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "a hollow agent failed");
        }
    }
    Ok(())
}
