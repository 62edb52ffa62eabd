//! `GET /v1/logs`: a task's container output, read from the agent that ran it, while the task runs
//! and after it has stopped (until the agent cleans the task up), as newline-delimited JSON.
//!
//! Query: `task` (an ID or ARN, required), `cluster` (name or ARN; default: the cluster in the
//! task ARN, else `default`),
//! `container` (one container's lines), `startAfterSeq` (resume after a line), `limit` (at most
//! this many lines) and `follow=true` (stream new lines until the task's containers have all
//! stopped and their output is drained, or the client goes away). Each line of the answer is one
//! [`LogEntry`]: `{"seq", "timestampMs", "container", "stream", "line"}`, plus `"truncated": true`
//! on lines cut at 64 KiB. Requests are SigV4-signed exactly like the ECS API (service `ecs`, an
//! empty body). Errors before the first line are ECS error responses; an error after it (the
//! agent disconnected mid-stream) is a last line in the same shape, `{"__type", "message"}`.
//!
//! With several servers, the agent's session may be on another one: the read is then forwarded
//! there, signed with the root credentials, and its answer streams back (`crate::servers::forward`).

use std::sync::Arc;

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Response, Uri};
use flotilla_model::arn::Resource;
use flotilla_protocol::{LogEntry, LogsRequest};

use crate::auth::Authenticator;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::gateway::logs::{self, LogRead};
use crate::gateway::percent_decode;
use crate::gateway::Sessions;
use crate::handlers;
use crate::protocol::error_response;
use crate::servers::forward;
use crate::state::keys;

/// Where the API is served.
pub const LOGS_PATH: &str = "/v1/logs";
/// The largest `limit` accepted.
pub const MAX_LIMIT: u64 = 1_000_000;

/// A logs request, as the query gives it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LogsQuery {
    pub cluster: Option<String>,
    pub task: String,
    pub container: Option<String>,
    pub start_after_seq: Option<u64>,
    pub limit: Option<u64>,
    pub follow: bool,
}

impl LogsQuery {
    /// Parses the query string, naming the parameter that is wrong.
    pub fn parse(query: Option<&str>) -> Result<LogsQuery, ApiError> {
        let mut q = LogsQuery::default();
        let mut task = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            let number = |name: &str| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::invalid_parameter(format!("{name} must be a whole number; got '{v}'.")))
            };
            match k {
                "cluster" => q.cluster = Some(v.clone()),
                "task" => task = Some(v.clone()),
                "container" if v.is_empty() => {
                    return Err(ApiError::invalid_parameter("container can not be empty."));
                }
                "container" => q.container = Some(v.clone()),
                "startAfterSeq" => q.start_after_seq = Some(number("startAfterSeq")?),
                "limit" => {
                    let n = number("limit")?;
                    if !(1..=MAX_LIMIT).contains(&n) {
                        return Err(ApiError::invalid_parameter(format!(
                            "limit must be between 1 and {MAX_LIMIT}; got {n}."
                        )));
                    }
                    q.limit = Some(n);
                }
                "follow" => {
                    q.follow = match v.as_str() {
                        "true" | "1" | "" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(ApiError::invalid_parameter(format!(
                                "follow must be true or false; got '{v}'."
                            )))
                        }
                    }
                }
                other => {
                    return Err(ApiError::invalid_parameter(format!(
                        "Unknown parameter '{}'. Accepted: cluster, task, container, startAfterSeq, limit, follow.",
                        percent_decode(other)
                    )))
                }
            }
        }
        q.task = task.filter(|t| !t.is_empty()).ok_or_else(|| ApiError::invalid_parameter("task is required."))?;
        Ok(q)
    }
}

/// The task's ARN and the container instance whose agent holds its logs.
fn locate(ctx: &Ctx, q: &LogsQuery) -> Result<(String, String), ApiError> {
    let from_arn = match ctx.arns.parse(&q.task) {
        Ok(Resource::Task { cluster, .. }) => cluster,
        _ => None,
    };
    let (cluster, _) = handlers::active_cluster(ctx, q.cluster.as_deref().or(from_arn.as_deref()))?;
    let id = handlers::tasks::task_id(ctx, &cluster, &q.task).ok_or_else(|| {
        ApiError::invalid_parameter(format!("task '{}' is not a task ID or ARN of cluster {cluster}.", q.task))
    })?;
    let ix = ctx.cache.read();
    let entry = ix.tasks.get(keys::task(&cluster, id).as_str()).ok_or_else(|| {
        ApiError::invalid_parameter(format!("The referenced task was not found: {} in cluster {cluster}.", q.task))
    })?;
    let arn = entry.value.task().task_arn.unwrap_or_else(|| q.task.clone());
    let instance = entry.value.summary.instance.as_deref().map(str::to_string).ok_or_else(|| {
        ApiError::client(format!("Task {arn} was never placed on a container instance, so no agent holds its logs."))
    })?;
    Ok((arn, instance))
}

/// Serves `GET /v1/logs`.
pub async fn get_logs(
    ctx: Ctx,
    sessions: &Arc<Sessions>,
    auth: Option<&Authenticator>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().to_string();
    match start(&ctx, sessions, auth, method, uri, headers).await {
        Ok(Source::Forwarded(r)) => r,
        Ok(Source::Local(read)) => {
            let mut r = Response::new(Body::from_stream(body(read)));
            r.headers_mut().insert("content-type", "application/x-ndjson".parse().expect("static"));
            if let Ok(v) = request_id.parse() {
                r.headers_mut().insert("x-amzn-requestid", v);
            }
            r
        }
        Err(e) => {
            tracing::debug!(code = e.code, message = %e.message, "log read refused");
            error_response(&request_id, &e)
        }
    }
}

/// Where a read's lines come from.
enum Source {
    /// This server's session of the agent.
    Local(LogRead),
    /// The answer of the server that holds the agent's session.
    Forwarded(Response<Body>),
}

async fn start(
    ctx: &Ctx,
    sessions: &Arc<Sessions>,
    auth: Option<&Authenticator>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Source, ApiError> {
    if let Some(auth) = auth {
        auth.authenticate(ctx, method, uri, headers, b"").await?.require_root("flotilla:GetLogs")?;
    }
    if method != Method::GET {
        return Err(ApiError::invalid_parameter(format!("{LOGS_PATH} answers GET only.")));
    }
    let q = LogsQuery::parse(uri.query())?;
    let (task_arn, instance) = locate(ctx, &q)?;
    if let Some(r) = forward(ctx, sessions, &instance, uri, headers).await? {
        return Ok(Source::Forwarded(r));
    }
    let req = LogsRequest {
        request_id: String::new(),
        task_arn,
        container: q.container,
        start_after_seq: q.start_after_seq,
        limit: q.limit,
        follow: q.follow,
    };
    logs::open(sessions, &instance, req).await.map(Source::Local)
}

/// Forwards the read to the live server the instance record names as holding the agent's
/// session, unless that is this server, this server does not forward, or the request was itself
/// forwarded. The record, not a link here, decides: a link to an agent that has since moved to
/// another server may linger until its session times out.
async fn forward(
    ctx: &Ctx,
    sessions: &Sessions,
    instance: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Option<Response<Body>>, ApiError> {
    let Some(peers) = sessions.peers() else { return Ok(None) };
    if headers.contains_key(forward::FORWARDED_BY) {
        return Ok(None);
    }
    let Some(peer) = forward::holder(ctx, sessions.server_id(), instance).await? else { return Ok(None) };
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or(LOGS_PATH);
    tracing::debug!(instance, server = %peer.id, "forwarding a log read to the server holding the session");
    peers.forward(&peer, sessions.server_id(), path).await.map(Some)
}

/// The answer's body: one JSON line per log line, and the error (if any) as the last line.
fn body(read: LogRead) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    futures::stream::unfold(Some(read), |read| async move {
        let mut read = read?;
        match read.next().await {
            Ok(Some(lines)) => Some((Ok(encode_lines(&lines)), Some(read))),
            Ok(None) => None,
            Err(e) => {
                let mut out = serde_json::to_vec(&serde_json::json!({"__type": e.code, "message": e.message}))
                    .unwrap_or_default();
                out.push(b'\n');
                Some((Ok(Bytes::from(out)), None))
            }
        }
    })
}

fn encode_lines(lines: &[LogEntry]) -> Bytes {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.line.len() + 96).sum());
    for l in lines {
        if serde_json::to_writer(&mut out, l).is_ok() {
            out.push(b'\n');
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_parsed_and_decoded() {
        let q = LogsQuery::parse(Some(
            "cluster=prod&task=arn%3Aaws%3Aecs%3Aus-east-1%3A000000000000%3Atask%2Fprod%2Fabc&container=web\
             &startAfterSeq=41&limit=10&follow=true",
        ))
        .unwrap();
        assert_eq!(
            q,
            LogsQuery {
                cluster: Some("prod".into()),
                task: "arn:aws:ecs:us-east-1:000000000000:task/prod/abc".into(),
                container: Some("web".into()),
                start_after_seq: Some(41),
                limit: Some(10),
                follow: true,
            }
        );
        let q = LogsQuery::parse(Some("task=abc")).unwrap();
        assert!(!q.follow && q.cluster.is_none() && q.limit.is_none());
    }

    #[test]
    fn bad_queries_are_refused_naming_the_parameter() {
        for (query, needle) in [
            (None, "task is required"),
            (Some("task="), "task is required"),
            (Some("task=a&limit=0"), "limit must be between 1"),
            (Some("task=a&limit=x"), "limit must be a whole number"),
            (Some("task=a&startAfterSeq=-1"), "startAfterSeq must be a whole number"),
            (Some("task=a&follow=maybe"), "follow must be true or false"),
            (Some("task=a&container="), "container can not be empty"),
            (Some("task=a&tail=5"), "Unknown parameter 'tail'"),
        ] {
            let e = LogsQuery::parse(query).expect_err(needle);
            assert_eq!(e.code, "InvalidParameterException");
            assert!(e.message.contains(needle), "{query:?}: {}", e.message);
        }
    }

    #[test]
    fn lines_are_encoded_one_json_object_per_line() {
        let lines = vec![
            LogEntry::new(1, 5, "web".into(), flotilla_protocol::LogStream::Stdout, "hello \"you\"".into()),
            LogEntry::new(2, 6, "web".into(), flotilla_protocol::LogStream::Stderr, "oops".into()),
        ];
        let out = encode_lines(&lines);
        let text = std::str::from_utf8(&out).unwrap();
        let back: Vec<LogEntry> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(back, lines);
        assert!(text.ends_with('\n'));
    }
}
