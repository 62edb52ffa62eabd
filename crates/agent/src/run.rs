//! A whole agent: Docker, the task engine, registration and the session, wired together. The
//! binary's `flotilla agent` and `flotilla up` call [`run_agent`].

use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::engine::{Engine, EngineConfig, PullBehavior};
use crate::metadata::address::ListenChoice;
use crate::metadata::{MetadataEndpoint, MetadataState};
use crate::runtime::docker::{DockerRuntime, DockerTimeouts};
use crate::session::{enroll_with_retry, run_session, ApiClient, RegistrationConfig, SessionConfig, SessionEvent};

/// How the agent runs containers.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// Privileged containers, every host path and every capability (see `engine::policy`).
    pub allow_privileged: bool,
    /// Host path prefixes tasks may bind-mount.
    pub allowed_host_paths: Vec<std::path::PathBuf>,
    /// Kernel capabilities tasks may add.
    pub allowed_capabilities: Vec<String>,
    pub pull_behavior: PullBehavior,
    /// Publish bridge-mode host ports on this address only (e.g. 127.0.0.1 for a local setup).
    pub host_ip: Option<String>,
    /// A join token: register with it and run with the key pair it earns (see `session::join`).
    pub join_token: Option<String>,
    /// SIGTERM-to-SIGKILL grace for containers without `stopTimeout` (the engine's default when
    /// `None`).
    pub default_stop_timeout: Option<std::time::Duration>,
    /// Where the task metadata endpoint listens (`--metadata-listen`; see `metadata::address`).
    pub metadata_listen: ListenChoice,
    /// The control plane's DNS server (`--dns-server`): task containers get the agent's
    /// forwarder to it as their resolver (see `dns`); `None` leaves Docker's default.
    pub dns_server: Option<std::net::SocketAddr>,
    /// The OCI runtime Fargate tasks run under (`runsc` on a Fargate pool host, `--fargate`): the
    /// agent checks at start that a sandbox under it starts, and refuses to run otherwise.
    pub sandbox_runtime: Option<String>,
    /// The Docker CLI config whose `auths` give registry credentials to images whose container
    /// names no `repositoryCredentials` (`--docker-config`; `None`: `$DOCKER_CONFIG/config.json`,
    /// else `~/.docker/config.json`; see `registry_auth`).
    pub docker_config: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the Docker Engine is not reachable: {0}")]
    Docker(String),
    #[error("registering with the control plane failed: {0}")]
    Register(#[from] crate::session::ApiClientError),
    #[error("the task engine failed: {0}")]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    RegistryAuth(#[from] crate::registry_auth::RegistryAuthError),
    #[error("this host cannot serve the Fargate pool: {0}")]
    Sandbox(#[from] crate::runtime::sandbox::SandboxError),
}

/// Checks that the Docker Engine runs sandboxes under `runtime` (see `runtime::sandbox`): the
/// runtime is registered and a probe sandbox starts. Builds the pause image it probes with.
pub async fn check_sandbox(
    runtime: &DockerRuntime,
    sandbox: &str,
) -> Result<crate::runtime::sandbox::SandboxInfo, AgentError> {
    use crate::runtime::Runtime as _;
    let image = crate::network::DEFAULT_PAUSE_IMAGE;
    // Asked before building anything: without the runtime, the setup steps are the news.
    crate::runtime::sandbox::registered(runtime.docker(), sandbox).await?;
    if !runtime.image_present(image).await.unwrap_or(false) {
        runtime.pull_image(image, None).await.map_err(|e| AgentError::Docker(e.to_string()))?;
    }
    Ok(crate::runtime::sandbox::check(runtime.docker(), sandbox, image).await?)
}

/// Runs the agent until `shutdown` resolves. Containers keep running when the agent stops; the
/// next start re-adopts them.
pub async fn run_agent(
    client: ApiClient,
    registration: RegistrationConfig,
    options: AgentOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    // Task records and logs are the agent's alone (`disk`).
    crate::disk::create_private_dir(&registration.data_dir)
        .map_err(|source| AgentError::DataDir { path: registration.data_dir.clone(), source })?;
    // Read once at start: a malformed file stops the agent rather than failing pulls later.
    let host_registry_auth = match options.docker_config.clone().or_else(crate::registry_auth::default_path) {
        Some(path) => crate::registry_auth::HostCredentials::load(&path)?,
        None => crate::registry_auth::HostCredentials::default(),
    };
    let runtime =
        DockerRuntime::connect(DockerTimeouts::default()).await.map_err(|e| AgentError::Docker(e.to_string()))?;
    if let Some(sandbox) = &options.sandbox_runtime {
        let found = check_sandbox(&runtime, sandbox).await?;
        tracing::info!(runtime = %sandbox, path = %found.path, args = ?found.args, "sandboxes start; serving the Fargate pool");
        if !found.args.iter().any(|a| a == "--network=host") {
            // Each container of a task is a sandbox of its own, joined to the pause container's
            // namespace; gVisor's own network stack takes that namespace's interface over for
            // one sandbox, so the others may find none. (Only --network=host is tested here.)
            tracing::warn!(
                runtime = %sandbox,
                "the sandbox runtime is registered without \"--network=host\": tasks of more than one container \
                 may not share their network; add it to runtimeArgs in /etc/docker/daemon.json"
            );
        }
    }
    let docker_version = runtime.server_version().await.unwrap_or_else(|_| "unknown".into());
    let mut registration =
        RegistrationConfig { docker_version: format!("DockerVersion: {docker_version}"), ..registration };
    // The log drivers this Docker has, as ECS agents advertise them (tasks using one need it).
    for driver in runtime.log_drivers().await.unwrap_or_default() {
        let name = flotilla_model::rules::driver_attribute(&driver);
        if !registration.attributes.iter().any(|(k, _)| *k == name) {
            registration.attributes.push((name, None));
        }
    }
    let mut shutdown = std::pin::pin!(shutdown);
    // A control plane not up yet is waited for (`session::backoff`); a refusal ends the agent.
    let (client, identity) = tokio::select! {
        r = enroll_with_retry(&client, &registration, options.join_token.as_deref()) => r?,
        _ = &mut shutdown => return Ok(()),
    };
    tracing::info!(instance = %identity.container_instance_arn, "registered");

    let (report_tx, report_rx) = mpsc::unbounded_channel();
    let mut config = EngineConfig::new(&registration.data_dir, &identity.cluster_arn, &identity.container_instance_arn);
    config.allow_privileged = options.allow_privileged;
    config.allowed_host_paths = options.allowed_host_paths.clone();
    config.allowed_capabilities = options.allowed_capabilities.clone();
    config.pull_behavior = options.pull_behavior;
    config.network.host_ip = options.host_ip.clone();
    config.sandbox_runtime = options.sandbox_runtime.clone();
    config.host_registry_auth = Arc::new(host_registry_auth);
    if let Some(t) = options.default_stop_timeout {
        config.default_stop_timeout = t;
    }
    let gateway = match runtime.bridge_gateway().await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "cannot inspect the Docker bridge network");
            None
        }
    };
    let metadata_listener = crate::metadata::address::bind(options.metadata_listen, gateway).await;
    if let Some(addr) = metadata_listener.as_ref().and_then(|l| l.local_addr().ok()) {
        tracing::info!(%addr, "task metadata endpoint");
        config.metadata = Some(MetadataEndpoint { base_url: format!("http://{addr}") });
    }
    // Held until the agent stops: dropping it stops the forwarder.
    let _dns = match options.dns_server {
        Some(upstream) => {
            let (forwarder, resolvers) = crate::dns::start_for_tasks(upstream, gateway, &registration.data_dir).await;
            config.network.dns = resolvers;
            Some(forwarder)
        }
        None => None,
    };
    let (calls, call_inbox) = crate::calls::SessionCalls::new();
    config.calls = Some(Arc::new(calls));
    let engine = Engine::new(config, Arc::new(runtime), report_tx.clone());
    let (metadata_stop, metadata_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(listener) = metadata_listener {
        let state = MetadataState {
            runtime: engine.runtime().clone(),
            tasks: Arc::new(engine.clone()),
            instance_arn: identity.container_instance_arn.clone(),
            cluster_arn: identity.cluster_arn.clone(),
            availability_zone: Some(registration.availability_zone.clone()),
        };
        tokio::spawn(async move {
            if let Err(e) = crate::metadata::serve(listener, state, async move { drop(metadata_stopped.await) }).await {
                tracing::warn!(error = %e, "the task metadata endpoint stopped");
            }
        });
    }
    let adopted = engine.adopt().await?;
    if !adopted.is_empty() {
        tracing::info!(tasks = adopted.len(), "re-adopted running tasks");
    }
    // The server may have missed reports while the agent was down: send the latest of each task.
    for r in engine.latest_reports() {
        let _ = report_tx.send(r);
    }
    drop(report_tx);

    let (ev_tx, mut events) = mpsc::unbounded_channel();
    let session_config =
        SessionConfig { logs: Some(Arc::new(engine.clone())), calls: Some(call_inbox), ..SessionConfig::default() };
    let session = tokio::spawn(run_session(client, identity, session_config, ev_tx, report_rx));
    let mut reaped = false;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(SessionEvent::Assign(tasks)) => {
                    for a in tasks {
                        if let Err(e) = engine.apply(a) {
                            tracing::warn!(error = %e, "could not take a task");
                        }
                    }
                }
                Some(SessionEvent::Manifest(manifest)) => {
                    engine.reconcile(&manifest);
                    if !reaped {
                        // Only once the server has said what the instance runs is it safe to
                        // remove containers no task owns. A daemon away now is asked again with
                        // the next manifest.
                        match engine.reap().await {
                            Ok(_) => reaped = true,
                            Err(e) => tracing::warn!(error = %e, "reaping orphaned containers failed; retrying with the next manifest"),
                        }
                    }
                }
                Some(SessionEvent::Rejected(why)) => {
                    // Revoked credentials (the instance was deregistered) are no use to a restart:
                    // forget them so that the next start joins afresh with a new token.
                    if why.contains("AccessDeniedException") {
                        crate::session::join::forget(&registration.data_dir);
                    }
                    tracing::error!(reason = %why, "the control plane no longer knows this instance; restart the agent to register again");
                    break;
                }
                Some(SessionEvent::Connected) => tracing::info!("session up"),
                Some(SessionEvent::Disconnected(why)) => tracing::warn!(reason = %why, "session down; reconnecting"),
                None => break,
            },
            _ = &mut shutdown => break,
        }
    }
    engine.shutdown().await;
    let _ = metadata_stop.send(());
    session.abort();
    Ok(())
}
