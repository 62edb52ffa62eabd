//! `flotilla spot interrupt --instance-id ID [--warning-seconds 120]`: gives a Spot host EC2's
//! interruption notice through the control plane's `/v1/spot/interrupt` (signed with the root
//! key pair, like `flotilla token`). The host drains if its user data enables Spot draining and
//! is terminated at the deadline. `--task ARN` interrupts one FARGATE_SPOT task instead, and the
//! instance id of a Fargate pool host interrupts all of its FARGATE_SPOT tasks.

use clap::{Args, Subcommand};
use http::Method;

use crate::signed::Endpoint;

#[derive(Args, Debug, Clone)]
pub struct SpotArgs {
    #[command(subcommand)]
    pub command: SpotCommand,
    /// The control plane's URL, or its servers' URLs separated by commas: the first that
    /// answers is used [env: AWS_ENDPOINT_URL_ECS, then FLOTILLA_SERVER; default: http://127.0.0.1:4580]
    #[arg(long, global = true, value_name = "URL[,URL...]", value_parser = crate::agent_cmd::parse_servers)]
    pub server: Option<String>,
    /// Region used in the signature [env: AWS_REGION, AWS_DEFAULT_REGION, FLOTILLA_REGION;
    /// default: us-east-1]
    #[arg(long, global = true)]
    pub region: Option<String>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum SpotCommand {
    /// Send a Spot interruption notice to a host launched as Spot, a Fargate pool host's Spot
    /// tasks, or one FARGATE_SPOT task.
    Interrupt {
        /// The host's instance id (`i-...`), as DescribeInstances or ec2InstanceId shows it; for a
        /// Fargate pool host, its id as `flotilla agent --fargate` logged it.
        #[arg(long, required_unless_present = "task", conflicts_with = "task")]
        instance_id: Option<String>,
        /// A FARGATE_SPOT task's ARN: it gets the warning and SIGTERM at once.
        #[arg(long)]
        task: Option<String>,
        /// Seconds between the notice and the host's termination.
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        warning_seconds: u64,
        /// What EC2 says it will do: terminate, stop or hibernate.
        #[arg(long, default_value = "terminate", value_parser = ["terminate", "stop", "hibernate"])]
        action: String,
    },
}

pub async fn run(args: SpotArgs) -> anyhow::Result<()> {
    let endpoint = Endpoint::resolve(args.server, args.region)?;
    match args.command {
        SpotCommand::Interrupt { instance_id, task, warning_seconds, action } => {
            let enc =
                |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
            let target = match (&instance_id, &task) {
                (_, Some(t)) => format!("taskArn={}", enc(t)),
                (Some(i), None) => format!("instanceId={}", enc(i)),
                (None, None) => anyhow::bail!("give --instance-id or --task"),
            };
            let path = format!("/v1/spot/interrupt?{target}&warningSeconds={warning_seconds}&action={action}");
            let v = endpoint.json(Method::POST, &path).await?;
            if let Some(tasks) = v["tasks"].as_array() {
                let grace = v["warningSeconds"].as_u64().unwrap_or(0);
                eprintln!(
                    "Fargate Spot interruption: {} task(s) told to stop (SpotInterruption), SIGTERM now, SIGKILL after at most {grace} s.",
                    tasks.len()
                );
                for t in tasks {
                    println!("{}", t.as_str().unwrap_or_default());
                }
                return Ok(());
            }
            let instance_id = instance_id.unwrap_or_default();
            let deadline = crate::logs_cmd::rfc3339((v["deadline"].as_f64().unwrap_or(0.0) * 1000.0) as i64);
            let drain = if v["draining"].as_bool() == Some(true) {
                "its container instance is DRAINING"
            } else {
                "its container instance was not drained (ECS_ENABLE_SPOT_INSTANCE_DRAINING is not true, or it has not registered)"
            };
            eprintln!(
                "Spot interruption ({}) for {instance_id}: it goes at {deadline}; {drain}.",
                v["action"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}
