//! The threads that serve client connections: one single-threaded runtime per thread, each with
//! its own `SO_REUSEPORT` socket per listener port, so that the kernel spreads connections over
//! them and a request's work (client connection, target connection, body) stays on one thread,
//! as HAProxy's threads do. Measured with lb-bench, this beat one work-stealing runtime, where
//! every request hopped between threads on its way to the target and back.

use std::cell::Cell;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker the caller runs on (0 elsewhere): picks per-worker resources such
/// as the target connection pools.
pub fn current() -> usize {
    WORKER.with(Cell::get)
}

pub struct Workers {
    pub handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    pub fn start(count: usize) -> std::io::Result<Workers> {
        let (mut handles, mut stops, mut threads) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            threads.push(std::thread::Builder::new().name(format!("lb-worker-{i}")).spawn(move || {
                WORKER.with(|w| w.set(i));
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // Dropping the runtime ends the connections still open on it.
            })?);
        }
        Ok(Workers { handles, stops, threads })
    }

    /// Stops every worker and waits for its thread.
    pub async fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}
