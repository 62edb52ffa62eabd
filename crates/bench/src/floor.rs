//! The floor: the cheapest server the load generator could talk to. It is axum on hyper, as the
//! real server is, in its own process with the same multi-threaded tokio runtime, and it answers
//! every request (after reading its body) with one fixed DescribeTasks answer of one seeded task,
//! so it moves as many bytes as the real 1-task answer but does no signing check, no decoding,
//! no lookup and no encoding. What the API rows lose against it is the control plane's own cost.

use std::io::{Read, Write};

use axum::body::Bytes;
use axum::http::{header, HeaderValue, Response};
use axum::Router;

use crate::seed;

/// Runs the floor server until this process's stdin closes (the benchmark exited or died).
/// Prints `listening ADDR` on stdout once it accepts connections.
pub fn run() -> anyhow::Result<()> {
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let answer = Bytes::from(seed::describe_answer(1));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut out = std::io::stdout();
        writeln!(out, "listening {}", listener.local_addr()?)?;
        out.flush()?;
        let router = Router::new().fallback(move |_body: Bytes| {
            let answer = answer.clone();
            async move {
                let mut r = Response::new(axum::body::Body::from(answer));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-amz-json-1.1"));
                r
            }
        });
        axum::serve(listener, router).await?;
        anyhow::Ok(())
    })
}
