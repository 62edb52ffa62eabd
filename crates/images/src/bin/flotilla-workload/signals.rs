//! How the workload answers SIGTERM and SIGINT. Inside a container the workload is PID 1, and the
//! kernel never applies a signal's *default* action to PID 1 of a PID namespace: without a handler
//! `docker stop` would wait out its whole grace period and SIGKILL. So every run installs a handler
//! that exits the way a normal process killed by the signal would look (128 + signal), and the
//! `trap-term`, `ignore-term` and `pause` commands swap in their own behaviour.
//!
//! std has no signal API, so this file declares the three glibc functions it needs by hand rather
//! than pulling in the `libc` crate: the workload is compiled by a bare `rustc` call from the
//! images crate's build script (see build.rs), which cannot link crates from the registry.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// glibc's `sighandler_t` is a pointer-sized integer; these are its two special values we use.
const SIG_IGN: usize = 1;
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// The last signal a `Record` handler saw (0: none yet). An atomic store is async-signal-safe.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

// SAFETY (of the declarations): these match glibc's prototypes on x86_64 Linux, the only target
// the build script compiles the workload for: `sighandler_t signal(int, sighandler_t)` and
// `void _exit(int)`. Declaring them is the whole of the unsafe surface of the workload.
#[allow(unsafe_code)]
unsafe extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
    fn _exit(status: i32) -> !;
}

/// What the process does when SIGTERM or SIGINT arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTerm {
    /// Exit at once with 128 + signal, as if the default action had run (143 for SIGTERM).
    ExitLikeDefault,
    /// Exit at once with status 0: a clean stop (the `pause` container).
    ExitZero,
    /// Remember the signal for [`wait_for_term`] to pick up (the `trap-term` command).
    Record,
    /// Ignore it, so only SIGKILL ends the process (the `ignore-term` command).
    Ignore,
}

extern "C" fn exit_like_default(sig: i32) {
    // SAFETY: `_exit` is async-signal-safe; it skips atexit handlers and stdio flushing, which
    // would not be safe in a handler. Stdout is line-buffered, so whole lines already went out.
    #[allow(unsafe_code)]
    unsafe {
        _exit(128 + sig)
    }
}

extern "C" fn exit_zero(_sig: i32) {
    // SAFETY: as in `exit_like_default`.
    #[allow(unsafe_code)]
    unsafe {
        _exit(0)
    }
}

extern "C" fn record(sig: i32) {
    RECEIVED.store(sig, Ordering::SeqCst);
}

/// Installs `on_term` for both SIGTERM and SIGINT.
pub fn install(on_term: OnTerm) {
    let handler = match on_term {
        OnTerm::ExitLikeDefault => exit_like_default as extern "C" fn(i32) as usize,
        OnTerm::ExitZero => exit_zero as extern "C" fn(i32) as usize,
        OnTerm::Record => record as extern "C" fn(i32) as usize,
        OnTerm::Ignore => SIG_IGN,
    };
    for sig in [SIGTERM, SIGINT] {
        // SAFETY: `handler` is SIG_IGN or an `extern "C" fn(i32)` that only does
        // async-signal-safe work (an atomic store or `_exit`). glibc's `signal` gives BSD
        // semantics: the handler stays installed and interrupted system calls restart.
        #[allow(unsafe_code)]
        unsafe {
            signal(sig, handler);
        }
    }
}

/// Blocks until a `Record` handler has seen a signal; returns its number. Polling keeps this free
/// of pipes and further unsafe code; 20 ms is far below any stop timeout a test would use.
pub fn wait_for_term() -> i32 {
    loop {
        let sig = RECEIVED.load(Ordering::SeqCst);
        if sig != 0 {
            return sig;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The name a test expects to see in the logs.
pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "signal",
    }
}
