//! What the binary's end-to-end tests share: starting `flotilla server` or `flotilla up` as a
//! user does, on a free loopback port with a given key pair, reading the endpoint from the export
//! line it prints, and an SDK client for that endpoint.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Runs `flotilla COMMAND --listen 127.0.0.1:0 --data-dir DATA_DIR` with the key pair; returns
/// the process and the endpoint named by the first line it prints.
pub fn start_printing_endpoint(command: &str, data_dir: &Path, akid: &str, secret: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args([command, "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("FLOTILLA_ACCESS_KEY_ID", akid)
        .env("FLOTILLA_SECRET_ACCESS_KEY", secret)
        .env("FLOTILLA_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start flotilla {command}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("export line");
    let endpoint = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("AWS_ENDPOINT_URL=").or_else(|| w.strip_prefix("AWS_ENDPOINT_URL_ECS=")))
        .unwrap_or_else(|| panic!("no endpoint in {line:?}"))
        .to_string();
    (child, endpoint)
}

/// The official SDK against `endpoint`, without retries (a test wants to see every answer).
pub fn client(endpoint: &str, akid: &str, secret: &str) -> aws_sdk_ecs::Client {
    let creds = aws_credential_types::Credentials::new(akid, secret, None, None, "flotilla-cli-test");
    let conf = aws_sdk_ecs::Config::builder()
        .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
        .region(aws_sdk_ecs::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .retry_config(aws_sdk_ecs::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_ecs::Client::from_conf(conf)
}
