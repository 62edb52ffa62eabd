//! Keeps `console-bench` from rotting: its `--quick` run (a real server and hollow fleet, a few
//! services) must finish and print a row for every page. Times are printed, never asserted.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn quick_run_prints_every_page() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_console-bench"));
    let flotilla = bench.with_file_name(format!("flotilla{}", std::env::consts::EXE_SUFFIX));
    assert!(
        flotilla.is_file(),
        "console-bench needs the flotilla binary at {} (build it with `cargo build -p flotilla`; \
         `cargo test --workspace` builds it)",
        flotilla.display()
    );
    let out = Command::new(&bench).arg("--quick").output().expect("console-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "console-bench --quick failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for page in ["| clusters |", "| cluster (all services) |", "| service |", "| tasks (first 100) |", "| task |"] {
        assert!(stdout.contains(page), "no row {page} in:\n{stdout}");
    }
    assert!(stdout.contains("20 services x 2 tasks = 40 tasks"), "{stdout}");
}
