//! `flotilla logs TASK`: print a task's container output, while it runs or after it has stopped,
//! and with `--follow` keep printing new lines until the task's containers have all stopped.
//!
//! It reads the control plane's `GET /v1/logs` (newline-delimited JSON, see `flotilla_api::logs_api`),
//! signing the request with SigV4 like any ECS call, with the same key pair and endpoint
//! variables the aws CLI uses. Lines print as `container | line`: stdout lines on stdout, stderr
//! lines on stderr, as `docker logs` does.

use anyhow::{bail, Context};
use clap::Args;
use flotilla_protocol::{LogEntry, LogStream};
use http::Method;
use std::io::Write;

use crate::signed::Endpoint;

#[derive(Args, Debug, Clone)]
pub struct LogsArgs {
    /// The task: its ID or ARN.
    pub task: String,
    /// The task's cluster [default: the one in the task ARN, else `default`]
    #[arg(long, env = "FLOTILLA_CLUSTER")]
    pub cluster: Option<String>,
    /// Only this container's lines.
    #[arg(long)]
    pub container: Option<String>,
    /// Keep printing new lines until the task's containers have all stopped.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Prefix each line with the time the agent received it (RFC 3339, UTC).
    #[arg(long, short = 't')]
    pub timestamps: bool,
    /// Print only lines after this sequence number.
    #[arg(long, value_name = "SEQ")]
    pub start_after_seq: Option<u64>,
    /// Print at most this many lines.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// The control plane's URL, or its servers' URLs separated by commas: the first that
    /// answers is used [env: AWS_ENDPOINT_URL_ECS, AWS_ENDPOINT_URL, then FLOTILLA_SERVER; default: http://127.0.0.1:4580]
    #[arg(long, value_name = "URL[,URL...]", value_parser = crate::agent_cmd::parse_servers)]
    pub server: Option<String>,
    /// Region used in the signature [env: AWS_REGION, AWS_DEFAULT_REGION, FLOTILLA_REGION;
    /// default: us-east-1]
    #[arg(long)]
    pub region: Option<String>,
}

fn encode(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The request's path and query for `args`.
pub fn logs_path(args: &LogsArgs) -> String {
    let mut q = vec![format!("task={}", encode(&args.task))];
    if let Some(c) = &args.cluster {
        q.push(format!("cluster={}", encode(c)));
    }
    if let Some(c) = &args.container {
        q.push(format!("container={}", encode(c)));
    }
    if let Some(s) = args.start_after_seq {
        q.push(format!("startAfterSeq={s}"));
    }
    if let Some(l) = args.limit {
        q.push(format!("limit={l}"));
    }
    if args.follow {
        q.push("follow=true".into());
    }
    format!("/v1/logs?{}", q.join("&"))
}

/// A line as printed: `container | line`, after the time with `--timestamps`.
pub fn format_line(entry: &LogEntry, timestamps: bool) -> String {
    let mut out = String::with_capacity(entry.line.len() + entry.container.len() + 32);
    if timestamps {
        out.push_str(&rfc3339(entry.timestamp_ms));
        out.push(' ');
    }
    out.push_str(&entry.container);
    out.push_str(" | ");
    out.push_str(&entry.line);
    if entry.truncated {
        out.push_str(" [truncated]");
    }
    out
}

/// Epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`: the one formatter the query APIs use too.
pub use flotilla_model::timestamp::rfc3339_millis as rfc3339;

/// One line of the answer: a log line, or the error that ended the read.
#[derive(Debug, PartialEq)]
pub enum Item {
    Line(LogEntry),
    Error(String),
}

pub fn parse_item(text: &str) -> anyhow::Result<Item> {
    let v: serde_json::Value = serde_json::from_str(text).with_context(|| format!("unreadable answer line: {text}"))?;
    if let Some(code) = v.get("__type").and_then(|c| c.as_str()) {
        let message = v.get("message").and_then(|m| m.as_str()).unwrap_or_default();
        return Ok(Item::Error(format!("{code}: {message}")));
    }
    Ok(Item::Line(serde_json::from_value(v).with_context(|| format!("unreadable log line: {text}"))?))
}

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    let endpoint = Endpoint::resolve(args.server.clone(), args.region.clone())?;
    let mut resp = endpoint.send(Method::GET, &logs_path(&args)).await?;
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await.context("the log stream broke")? {
        pending.extend_from_slice(&chunk);
        let Some(end) = pending.iter().rposition(|b| *b == b'\n') else { continue };
        let complete: Vec<u8> = pending.drain(..=end).collect();
        let (mut out, mut err) = (stdout.lock(), stderr.lock());
        for text in String::from_utf8_lossy(&complete).lines().filter(|l| !l.trim().is_empty()) {
            match parse_item(text)? {
                Item::Line(entry) => {
                    let line = format_line(&entry, args.timestamps);
                    let w: &mut dyn Write = if entry.stream == LogStream::Stderr { &mut err } else { &mut out };
                    writeln!(w, "{line}")?;
                }
                Item::Error(e) => bail!(e),
            }
        }
        out.flush()?;
    }
    if !pending.iter().all(u8::is_ascii_whitespace) {
        bail!("the log stream ended mid-line");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(task: &str) -> LogsArgs {
        LogsArgs {
            task: task.into(),
            cluster: None,
            container: None,
            follow: false,
            timestamps: false,
            start_after_seq: None,
            limit: None,
            server: None,
            region: None,
        }
    }

    #[test]
    fn the_url_carries_every_option_encoded() {
        let a = LogsArgs {
            cluster: Some("prod".into()),
            container: Some("web app".into()),
            follow: true,
            start_after_seq: Some(7),
            limit: Some(50),
            ..args("arn:aws:ecs:us-east-1:000000000000:task/prod/abc")
        };
        assert_eq!(
            logs_path(&a),
            "/v1/logs?task=arn%3Aaws%3Aecs%3Aus%2Deast%2D1%3A000000000000%3Atask%2Fprod%2Fabc\
             &cluster=prod&container=web%20app&startAfterSeq=7&limit=50&follow=true"
        );
        assert_eq!(logs_path(&args("abc")), "/v1/logs?task=abc");
    }

    #[test]
    fn lines_print_with_their_container_and_optionally_the_time() {
        let e = LogEntry::new(3, 1_700_000_000_123, "web".into(), LogStream::Stdout, "hello".into());
        assert_eq!(format_line(&e, false), "web | hello");
        assert_eq!(format_line(&e, true), "2023-11-14T22:13:20.123Z web | hello");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn answer_lines_are_log_lines_or_the_error_that_ended_the_read() {
        let line = r#"{"seq":1,"timestampMs":5,"container":"web","stream":"stderr","line":"oops"}"#;
        let Item::Line(e) = parse_item(line).unwrap() else { panic!("not a line") };
        assert_eq!((e.seq, e.stream, e.line.as_str()), (1, LogStream::Stderr, "oops"));
        let err = r#"{"__type":"ClientException","message":"The agent disconnected"}"#;
        assert_eq!(parse_item(err).unwrap(), Item::Error("ClientException: The agent disconnected".into()));
        assert!(parse_item("not json").is_err());
        assert!(parse_item(r#"{"seq":"x"}"#).is_err());
    }
}
