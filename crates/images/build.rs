//! Compiles the workload program (src/bin/flotilla-workload) into `$OUT_DIR/flotilla-workload` as a
//! statically linked executable, which the library then embeds with `include_bytes!`. That way any
//! program linking flotilla-images (tests, benchmarks, `flotilla up` after a plain `cargo build`)
//! carries the contents of its images and needs neither cargo nor a source tree at run time.
//!
//! Why a bare `rustc` call rather than a nested `cargo build`: the workload is std-only, so one
//! rustc invocation (about a second) does it, with no second target directory, no lock on the
//! package cache or Cargo.lock shared with the outer cargo, and no registry access. The price is
//! that the workload may not use crates; it declares the three glibc symbols it needs itself.
//!
//! Static linking: glibc's `libc.a` with `-C target-feature=+crt-static`, which yields a
//! static-pie that runs in an image `FROM scratch`. The result is checked for an ELF interpreter,
//! because a dynamically linked binary would fail in the container with a bare "no such file".
//! `FLOTILLA_WORKLOAD_BIN=/path/to/static/binary` skips the compile (for a machine without a
//! static libc); off Linux an empty file is embedded and building an image reports why.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/bin/flotilla-workload");
    println!("cargo:rerun-if-env-changed=FLOTILLA_WORKLOAD_BIN");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("flotilla-workload");
    if let Some(prebuilt) = env::var_os("FLOTILLA_WORKLOAD_BIN") {
        fs::copy(&prebuilt, &out).unwrap_or_else(|e| panic!("FLOTILLA_WORKLOAD_BIN={prebuilt:?}: {e}"));
        check_static(&out);
        return;
    }

    let target = env::var("TARGET").expect("cargo sets TARGET");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        println!("cargo:warning=flotilla-images: no workload binary for {target}; image builds will fail");
        fs::write(&out, b"").expect("write empty workload placeholder");
        return;
    }

    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let main_rs = manifest.join("src/bin/flotilla-workload/main.rs");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.args(["--edition", "2021", "--crate-type", "bin", "--crate-name", "flotilla_workload"])
        .args(["--target", &target, "--cap-lints", "allow"])
        // Small and quick to compile; the workload's speed hardly matters next to Docker's.
        .args(["-C", "opt-level=s", "-C", "panic=abort", "-C", "strip=symbols", "-C", "debuginfo=0"])
        .args(["-C", "target-feature=+crt-static"])
        // Panic locations embed source paths; without this, every checkout (a CI clone, a second
        // worktree) would make a different binary and so rebuild the images on a shared daemon.
        .arg(format!("--remap-path-prefix={}=flotilla-images", manifest.display()))
        .arg("-o")
        .arg(&out)
        .arg(&main_rs);
    // A linker configured for this target in cargo's config reaches build scripts only this way.
    if let Some(linker) = env::var_os("RUSTC_LINKER") {
        cmd.arg("-C").arg(format!("linker={}", linker.to_string_lossy()));
    }
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run rustc for the workload: {e}"));
    if !output.status.success() {
        panic!(
            "compiling the static workload failed ({}). It needs glibc's static libc.a (Debian: libc6-dev, \
             Fedora: glibc-static), or set FLOTILLA_WORKLOAD_BIN to a static binary.\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    check_static(&out);
}

/// Panics unless `path` is a 64-bit little-endian ELF executable without a PT_INTERP program
/// header, i.e. one that needs no dynamic loader.
fn check_static(path: &Path) {
    const PT_INTERP: u32 = 3;
    let elf = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().expect("8 bytes")) as usize;
    assert!(
        elf.len() > 64 && elf.starts_with(b"\x7fELF") && elf[4] == 2 && elf[5] == 1,
        "{} is not a 64-bit little-endian ELF file",
        path.display()
    );
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        assert!(at + 4 <= elf.len(), "{}: truncated program headers", path.display());
        assert!(
            u32_at(at) != PT_INTERP,
            "{} is dynamically linked (it has an ELF interpreter); an image FROM scratch cannot run it",
            path.display()
        );
    }
}
