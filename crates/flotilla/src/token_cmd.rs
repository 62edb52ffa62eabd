//! `flotilla token create|list|revoke`: join tokens, through the control plane's `/v1/tokens`
//! (signed with the root key pair, like the aws CLI's calls). `create` prints the token alone on
//! stdout, for `flotilla agent --token "$(flotilla token create --cluster prod)"`.

use clap::{Args, Subcommand};
use http::Method;

use crate::signed::Endpoint;

#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
    /// The control plane's URL, or its servers' URLs separated by commas: the first that
    /// answers is used [env: AWS_ENDPOINT_URL_ECS, AWS_ENDPOINT_URL, then FLOTILLA_SERVER; default: http://127.0.0.1:4580]
    #[arg(long, global = true, value_name = "URL[,URL...]", value_parser = crate::agent_cmd::parse_servers)]
    pub server: Option<String>,
    /// Region used in the signature [env: AWS_REGION, AWS_DEFAULT_REGION, FLOTILLA_REGION;
    /// default: us-east-1]
    #[arg(long, global = true)]
    pub region: Option<String>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum TokenCommand {
    /// Mint a token that lets one agent join CLUSTER (or, with --fargate, the Fargate pool; with
    /// --lb, a load balancer node); prints the token.
    Create {
        #[arg(long, required_unless_present_any = ["fargate", "lb"], conflicts_with_all = ["fargate", "lb"])]
        cluster: Option<String>,
        /// For a Fargate pool host (`flotilla agent --fargate`) instead of a cluster's instance.
        #[arg(long, conflicts_with = "lb")]
        fargate: bool,
        /// For a load balancer node (`flotilla lb`) instead of a cluster's instance.
        #[arg(long)]
        lb: bool,
        /// How long the token may be used to join, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 24 * 3600)]
        ttl: u64,
    },
    /// List tokens: id, cluster, status (ACTIVE, EXPIRED, REVOKED), expiry.
    List,
    /// Revoke a token so that no agent joins with it any more.
    Revoke { id: String },
}

fn encode(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    v.get(name).and_then(|s| s.as_str()).unwrap_or("")
}

pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let endpoint = Endpoint::resolve(args.server, args.region)?;
    match args.command {
        TokenCommand::Create { cluster, fargate, lb, ttl } => {
            let cluster = match (fargate, lb) {
                (true, _) => flotilla_protocol::FARGATE_POOL.to_string(),
                (_, true) => flotilla_api::identity::tokens::LOAD_BALANCER_NODES.to_string(),
                _ => cluster.unwrap_or_default(),
            };
            let path = format!("/v1/tokens?cluster={}&ttlSeconds={ttl}", encode(&cluster));
            let v = endpoint.json(Method::POST, &path).await?;
            let what = match lb {
                true => "load balancer nodes".to_string(),
                false => format!("cluster {}", field(&v, "cluster")),
            };
            eprintln!(
                "Join token {} for {what}, valid until {}:",
                field(&v, "id"),
                crate::logs_cmd::rfc3339((v["expiresAt"].as_f64().unwrap_or(0.0) * 1000.0) as i64)
            );
            println!("{}", field(&v, "token"));
        }
        TokenCommand::List => {
            let v = endpoint.json(Method::GET, "/v1/tokens").await?;
            println!("{:<18} {:<8} {:<24} CLUSTER", "ID", "STATUS", "EXPIRES");
            for t in v["tokens"].as_array().into_iter().flatten() {
                let expires = crate::logs_cmd::rfc3339((t["expiresAt"].as_f64().unwrap_or(0.0) * 1000.0) as i64);
                println!("{:<18} {:<8} {:<24} {}", field(t, "id"), field(t, "status"), expires, field(t, "cluster"));
            }
        }
        TokenCommand::Revoke { id } => {
            let v = endpoint.json(Method::DELETE, &format!("/v1/tokens?id={}", encode(&id))).await?;
            eprintln!("Join token {} is {}.", field(&v, "id"), field(&v, "status"));
        }
    }
    Ok(())
}
