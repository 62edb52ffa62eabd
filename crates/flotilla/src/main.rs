//! The `flotilla` binary: thin subcommands that parse flags and call the libraries' `run`
//! functions. `flotilla server` runs the control plane; `flotilla agent` joins a cluster;
//! `flotilla up` runs both on one machine; `flotilla logs` prints a task's container output.

mod agent_cmd;
mod lb_cmd;
mod listen;
mod logs_cmd;
mod secrets_key_cmd;
mod server_cmd;
mod signed;
mod spot_cmd;
mod store_cmd;
mod token_cmd;
mod up_cmd;

use std::io::IsTerminal;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// The server allocates and frees many small, short-lived buffers per request and per agent
/// message (JSON, store values, websocket frames); glibc's allocator spent about a sixth of the
/// server's time on them under load, mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Threads for a single agent's blocking file and cgroup work.
const AGENT_BLOCKING_THREADS: usize = 2;

#[derive(Parser)]
#[command(name = "flotilla", version, about = "A self-hosted container orchestrator that speaks the Amazon ECS API.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: the ECS API on a durable embedded store.
    Server(Box<server_cmd::ServerArgs>),
    // Boxed: the agent's many flags would make every `Command` as large as they are.
    /// Join a cluster as a container instance (or, with --simulate N, as N hollow ones).
    Agent(Box<agent_cmd::AgentArgs>),
    /// Everything on this machine: the control plane and a local agent on the local Docker Engine.
    Up(up_cmd::UpArgs),
    /// Print a task's container output (stdout and stderr), also after it stopped; --follow streams.
    Logs(logs_cmd::LogsArgs),
    /// Join tokens for agents: create, list, revoke.
    Token(token_cmd::TokenArgs),
    /// Spot instances: send a host an interruption notice.
    Spot(spot_cmd::SpotArgs),
    /// Run a load balancer node: serve the listeners of the ELBv2 load balancers assigned to it.
    Lb(lb_cmd::LbArgs),
    /// The control plane's store: copy it between a data directory and etcd.
    Store(store_cmd::StoreArgs),
    /// The key file sealing SSM and Secrets Manager values: rotate.
    SecretsKey(secrets_key_cmd::SecretsKeyArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in files and journald.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Command::Agent(args) = &cli.command {
        if args.simulate.is_none() {
            // The agent's blocking work (task records, log lines, cgroup files) is small and
            // short; every extra blocking thread keeps its own allocator heap, which was most of
            // what 50 tasks' file writes added to the agent's memory.
            builder.max_blocking_threads(AGENT_BLOCKING_THREADS).thread_keep_alive(Duration::from_secs(2));
        }
    }
    let runtime = builder.build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server_cmd::run(*args).await,
            Command::Agent(args) => agent_cmd::run(*args).await,
            Command::Up(args) => up_cmd::run(args).await,
            Command::Logs(args) => logs_cmd::run(args).await,
            Command::Token(args) => token_cmd::run(args).await,
            Command::Spot(args) => spot_cmd::run(args).await,
            Command::Lb(args) => lb_cmd::run(args).await,
            Command::Store(args) => store_cmd::run(args).await,
            Command::SecretsKey(args) => secrets_key_cmd::run(args),
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
