//! Reading a task's container output through the session: the control plane asks the agent that
//! ran the task ([`LogsRequest`]), and the agent answers with [`LogsBatch`]es until one says
//! `done`.
//!
//! Every answer names the request it belongs to, so several reads share one session. Batches are
//! bounded ([`MAX_BATCH_LINES`] lines, about [`MAX_BATCH_BYTES`] bytes, lines cut at
//! [`MAX_LINE_BYTES`]) so no frame is ever large, and [`LogBatcher`] is the one place that cuts
//! them. The first batch comes at once: `done` with an error if the read cannot be served, else
//! empty, so the server knows the read is under way even before the task prints a line. A read
//! is free of side effects: a request sent twice is answered twice, or, while the
//! first is still streaming, ignored. With `follow`, the agent keeps sending new lines until the
//! server sends [`LogsCancel`](crate::ServerMessage::LogsCancel) or the task's containers have all
//! stopped and their output is drained; then it sends the final batch with `done`.

use serde::{Deserialize, Serialize};

/// At most this many lines in one batch.
pub const MAX_BATCH_LINES: usize = 1000;
/// A batch is closed once its lines reach this many bytes.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Longer lines are cut to this many bytes (on a character boundary) and marked `truncated`.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The server wants a task's logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsRequest {
    /// Chosen by the server; every batch of the answer carries it.
    pub request_id: String,
    pub task_arn: String,
    /// Only this container's lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Only lines with a greater sequence number (to resume a read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_after_seq: Option<u64>,
    /// At most this many lines in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Keep sending new lines until the task is done or the server cancels.
    #[serde(default)]
    pub follow: bool,
}

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Increases by one per line within a task (lines of other containers take numbers too).
    pub seq: u64,
    /// When the agent received the line, in epoch milliseconds.
    pub timestamp_ms: i64,
    pub container: String,
    pub stream: LogStream,
    pub line: String,
    /// The line was longer than [`MAX_LINE_BYTES`] and was cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl LogEntry {
    /// A line as it goes on the wire: cut to [`MAX_LINE_BYTES`] if longer.
    pub fn new(seq: u64, timestamp_ms: i64, container: String, stream: LogStream, mut line: String) -> LogEntry {
        let truncated = line.len() > MAX_LINE_BYTES;
        if truncated {
            let mut end = MAX_LINE_BYTES;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
        }
        LogEntry { seq, timestamp_ms, container, stream, line, truncated }
    }

    /// Roughly what the entry costs in a frame.
    fn weight(&self) -> usize {
        self.line.len() + self.container.len() + 64
    }
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsError {
    /// One of the `LOGS_*` codes.
    pub code: String,
    pub message: String,
}

/// The agent holds no logs for the task (it never ran here, or they were cleaned up).
pub const LOGS_NO_SUCH_TASK: &str = "NoSuchTask";
/// The agent cannot serve logs at all (a hollow agent).
pub const LOGS_UNSUPPORTED: &str = "Unsupported";
/// Reading the stored logs failed.
pub const LOGS_READ_FAILED: &str = "ReadFailed";

/// Part of the answer to a [`LogsRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsBatch {
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<LogEntry>,
    /// The last batch of the answer.
    #[serde(default)]
    pub done: bool,
    /// Set on a last batch when the read failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<LogsError>,
}

impl LogsBatch {
    /// A last batch that says why nothing (more) can be read.
    pub fn failed(request_id: &str, code: &str, message: impl Into<String>) -> LogsBatch {
        LogsBatch {
            request_id: request_id.to_string(),
            lines: Vec::new(),
            done: true,
            error: Some(LogsError { code: code.to_string(), message: message.into() }),
        }
    }
}

/// Cuts a sequence of lines into bounded batches.
#[derive(Debug, Default)]
pub struct LogBatcher {
    lines: Vec<LogEntry>,
    bytes: usize,
}

impl LogBatcher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a line; returns a full batch's lines once the bounds are reached.
    pub fn push(&mut self, entry: LogEntry) -> Option<Vec<LogEntry>> {
        self.bytes += entry.weight();
        self.lines.push(entry);
        (self.lines.len() >= MAX_BATCH_LINES || self.bytes >= MAX_BATCH_BYTES).then(|| self.take())
    }

    /// The lines gathered so far (possibly none).
    pub fn take(&mut self) -> Vec<LogEntry> {
        self.bytes = 0;
        std::mem::take(&mut self.lines)
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentMessage, ServerMessage};

    fn entry(seq: u64, line: &str) -> LogEntry {
        LogEntry::new(seq, 1_700_000_000_000, "web".into(), LogStream::Stdout, line.into())
    }

    #[test]
    fn requests_and_batches_round_trip_as_tagged_frames() {
        let req = ServerMessage::LogsRequest(LogsRequest {
            request_id: "r1".into(),
            task_arn: "arn:aws:ecs:us-east-1:000000000000:task/default/abc".into(),
            container: Some("web".into()),
            start_after_seq: Some(4),
            limit: None,
            follow: true,
        });
        let json = req.to_json();
        assert!(json.starts_with(r#"{"type":"LogsRequest","message":{"requestId":"r1","#), "{json}");
        assert!(json.contains(r#""startAfterSeq":4"#) && !json.contains("limit"), "{json}");
        assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), req);

        let cancel = ServerMessage::LogsCancel { request_id: "r1".into() };
        assert_eq!(cancel.to_json(), r#"{"type":"LogsCancel","message":{"requestId":"r1"}}"#);

        let batch = AgentMessage::LogsBatch(LogsBatch {
            request_id: "r1".into(),
            lines: vec![LogEntry::new(7, 5, "web".into(), LogStream::Stderr, "oops".into())],
            done: true,
            error: None,
        });
        let json = batch.to_json();
        assert!(json.contains(r#""stream":"stderr""#) && !json.contains("truncated"), "{json}");
        assert_eq!(serde_json::from_str::<AgentMessage>(&json).unwrap(), batch);
    }

    #[test]
    fn a_request_with_only_the_required_fields_decodes_with_defaults() {
        let json = r#"{"type":"LogsRequest","message":{"requestId":"r","taskArn":"t"}}"#;
        let ServerMessage::LogsRequest(req) = serde_json::from_str(json).unwrap() else { panic!("not a request") };
        assert!(!req.follow && req.container.is_none() && req.limit.is_none());
        // A batch without the fields an older agent might leave out is still a batch.
        let json = r#"{"type":"LogsBatch","message":{"requestId":"r"}}"#;
        let AgentMessage::LogsBatch(b) = serde_json::from_str(json).unwrap() else { panic!("not a batch") };
        assert!(b.lines.is_empty() && !b.done && b.error.is_none());
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_LINE_BYTES); // two bytes each
        let e = entry(0, &long);
        assert!(e.truncated);
        assert!(e.line.len() <= MAX_LINE_BYTES && e.line.len() > MAX_LINE_BYTES - 2);
        assert!(e.line.chars().all(|c| c == 'é'));
        let short = entry(1, "fine");
        assert!(!short.truncated);
        assert_eq!(short.line, "fine");
    }

    #[test]
    fn batches_stay_within_both_bounds_and_keep_every_line_in_order() {
        let mut b = LogBatcher::new();
        let mut batches = Vec::new();
        for i in 0..2500u64 {
            if let Some(full) = b.push(entry(i, "x")) {
                batches.push(full);
            }
        }
        batches.push(b.take());
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![1000, 1000, 500]);
        let seqs: Vec<u64> = batches.iter().flatten().map(|e| e.seq).collect();
        assert_eq!(seqs, (0..2500).collect::<Vec<_>>());
        assert!(b.is_empty());

        // Big lines close a batch by size long before the line count.
        let big = "y".repeat(MAX_LINE_BYTES);
        let mut sizes = Vec::new();
        for i in 0..10 {
            if let Some(full) = b.push(entry(i, &big)) {
                sizes.push(full.len());
                let json = serde_json::to_string(&full).unwrap();
                assert!(json.len() < MAX_BATCH_BYTES + MAX_LINE_BYTES + 1024, "{}", json.len());
            }
        }
        assert_eq!(sizes, vec![4, 4]);
        assert_eq!(b.take().len(), 2);
    }
}
