//! Copies a container's output from the runtime into its task's log.
//!
//! One capture per container, started when the container starts (or is re-adopted). It follows
//! the runtime's log stream from the last line already stored, so an agent restart or a dropped
//! connection to the daemon resumes without duplicates; it ends once the container has exited
//! and its stream is drained.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::FusedStream;
use futures::{FutureExt, StreamExt};
use tokio::task::JoinHandle;

use super::TaskLog;
use crate::runtime::{LogChunk, Runtime};

/// Delay before resuming a stream that broke while the container still ran.
const RETRY: Duration = Duration::from_millis(500);
/// Streams in a row that may end while the container runs before the capture gives up.
const MAX_RETRIES: u32 = 20;
/// Longest wait between two looks at a daemon that does not answer.
const MAX_UNREACHABLE_WAIT: Duration = Duration::from_secs(30);
/// Unanswered looks in a row before the capture gives up (about an hour at the longest wait).
const MAX_UNREACHABLE: u32 = 120;

/// Lines appended in one trip to the blocking pool, at most.
const BATCH: usize = 256;

type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The next item and whatever else is ready, up to [`BATCH`]; `None` once the stream ends. (Not
/// `ready_chunks`, which keeps a buffer of `BATCH` items per container even while it waits.)
async fn ready_batch<T>(stream: &mut (impl FusedStream<Item = T> + Unpin)) -> Option<Vec<T>> {
    let mut items = vec![stream.next().await?];
    while items.len() < BATCH {
        match stream.next().now_or_never() {
            Some(Some(item)) => items.push(item),
            _ => break,
        }
    }
    Some(items)
}

/// Appends `lines` to the task's log on the blocking pool.
async fn store(log: &Arc<TaskLog>, container: &str, lines: Vec<LogChunk>, clock: &Clock) {
    let (log, container, clock) = (log.clone(), container.to_string(), clock.clone());
    let appended = tokio::task::spawn_blocking(move || {
        for chunk in lines {
            if let Err(e) = log.append(&container, chunk.source, chunk.line, chunk.timestamp_ns, clock()) {
                tracing::warn!(container = %container, error = %e, "cannot store a log line");
            }
        }
    })
    .await;
    if let Err(e) = appended {
        tracing::warn!(error = %e, "storing log lines failed");
    }
}

/// Starts capturing `runtime_id`'s output as `container`'s lines.
pub fn spawn(
    runtime: Arc<dyn Runtime>,
    log: Arc<TaskLog>,
    container: String,
    runtime_id: String,
    clock: Clock,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut failures = 0;
        let mut unreachable = 0;
        loop {
            let since = log.last_runtime_ns(&container);
            // Whatever lines are ready are written together, off the async runtime.
            let mut stream = runtime.logs(&runtime_id, since, true).fuse();
            let mut broke = false;
            while let Some(items) = ready_batch(&mut stream).await {
                let mut lines = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Ok(chunk) => lines.push(chunk),
                        Err(e) => {
                            tracing::debug!(container = %container, error = %e, "log stream broke");
                            broke = true;
                            break;
                        }
                    }
                }
                if !lines.is_empty() {
                    failures = 0;
                    store(&log, &container, lines, &clock).await;
                }
                if broke {
                    break;
                }
            }
            // A stream ends when the container exits; if it is still running the daemon dropped
            // us, so resume from the last stored line. A daemon that does not answer (restarting,
            // say) leaves the container's fate open: wait for it, backing off.
            let live = match runtime.inspect_container(&runtime_id).await {
                Ok(info) => info.state.is_live(),
                Err(e) if e.is_transient() => {
                    unreachable += 1;
                    if unreachable > MAX_UNREACHABLE {
                        tracing::warn!(container = %container, error = %e, "giving up on capturing logs");
                        return;
                    }
                    tokio::time::sleep((RETRY * 2u32.pow(unreachable.min(6))).min(MAX_UNREACHABLE_WAIT)).await;
                    continue;
                }
                Err(_) => false,
            };
            unreachable = 0;
            if !live && !broke {
                return;
            }
            failures += 1;
            if failures > MAX_RETRIES {
                tracing::warn!(container = %container, "giving up on capturing logs");
                return;
            }
            tokio::time::sleep(RETRY).await;
            if !live {
                // One last pass to drain what the exited container wrote.
                let since = log.last_runtime_ns(&container);
                let mut rest = runtime.logs(&runtime_id, since, false).fuse();
                while let Some(items) = ready_batch(&mut rest).await {
                    let n = items.len();
                    let lines: Vec<LogChunk> = items.into_iter().map_while(Result::ok).collect();
                    let broke = lines.len() < n;
                    store(&log, &container, lines, &clock).await;
                    if broke {
                        break;
                    }
                }
                return;
            }
        }
    })
}
