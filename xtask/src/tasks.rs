//! `cargo xtask build | test | bench`: thin wrappers around cargo, run from the
//! workspace root with no stdin.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};
use node_monitor_lab as lab;

use crate::{setup, toolchain};

/// `cargo` (the one that runs xtask, from `$CARGO`) in the workspace root, stdin closed.
pub fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root).stdin(Stdio::null());
    cmd
}

/// Runs `cmd` with inherited stdout/stderr; fails unless it exits 0.
pub fn run_step(name: &str, mut cmd: Command) -> anyhow::Result<()> {
    let desc = lab::describe(&cmd);
    println!("==> {name}: {desc}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{desc}`"))?;
    if !status.success() {
        bail!("{name} failed: `{desc}` exited with {status}");
    }
    Ok(())
}

/// `cargo build --release` of the default members (node-monitor's build.rs builds the
/// eBPF object).
pub fn build_release(root: &Path) -> anyhow::Result<()> {
    let mut cmd = cargo(root);
    cmd.args(["build", "--release"]);
    run_step("build", cmd)
}

/// setup, then the release build.
pub fn build(root: &Path) -> anyhow::Result<()> {
    setup::run(root)?;
    build_release(root)
}

/// setup, then every test, clippy on the userspace crates, clippy on the eBPF crate,
/// rustfmt, the fuzz targets' short runs and the deploy checks. Runs all parts
/// even when one fails, then fails naming the parts that failed.
pub fn test(root: &Path) -> anyhow::Result<()> {
    setup::run(root)?;
    // Every test binary runs even when one fails, so one failure hides no other.
    let mut tests = cargo(root);
    tests.args([
        "test",
        "--workspace",
        "--exclude",
        "node-monitor-ebpf",
        "--no-fail-fast",
    ]);
    let mut clippy = cargo(root);
    clippy.args([
        "clippy",
        "--workspace",
        "--exclude",
        "node-monitor-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    // The eBPF crate is linted on its own, on its nightly toolchain and target.
    let mut clippy_ebpf = Command::new("rustup");
    clippy_ebpf
        .current_dir(root.join("node-monitor-ebpf"))
        .stdin(Stdio::null())
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .args(["run", &toolchain::nightly_channel(root)?, "cargo", "clippy"])
        .args([
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--release",
        ])
        .args(["--", "-D", "warnings"]);
    let fmt = rustfmt(root, true)?;
    let mut fmt_fuzz = rustfmt(root, true)?;
    fmt_fuzz.current_dir(root.join("fuzz"));
    let smoke = crate::fuzz::Build::Smoke;
    let mut fuzz = vec![(
        "fuzz build".to_owned(),
        crate::fuzz::build_command(root, smoke)?,
    )];
    for t in crate::fuzz::TARGETS {
        fuzz.push((
            format!("fuzz {t}"),
            crate::fuzz::run_command(root, t, crate::fuzz::SMOKE_SECONDS, smoke)?,
        ));
    }

    let mut failed = Vec::new();
    let summary = match run_tests_step(tests) {
        Ok(()) => Vec::new(),
        Err((e, summary)) => {
            eprintln!("xtask test: {e:#}");
            failed.push("tests".to_owned());
            summary
        }
    };
    let steps = [
        ("clippy".to_owned(), clippy),
        ("clippy (eBPF)".to_owned(), clippy_ebpf),
        ("rustfmt".to_owned(), fmt),
        ("rustfmt (fuzz)".to_owned(), fmt_fuzz),
    ];
    for (name, cmd) in steps.into_iter().chain(fuzz) {
        let name = name.as_str();
        if let Err(e) = run_step(name, cmd) {
            eprintln!("xtask test: {e:#}");
            failed.push(name.to_owned());
        }
    }
    println!("==> deploy checks");
    if let Err(e) = crate::deploy::checks(root) {
        eprintln!("xtask test: {e:#}");
        failed.push("deploy checks".to_owned());
    }
    if !summary.is_empty() {
        // Last, where a log read from its tail shows it.
        eprintln!("==> the tests that failed (their whole output is above)");
        for line in &summary {
            eprintln!("{line}");
        }
    }
    if !failed.is_empty() {
        bail!("xtask test: FAILED: {}", failed.join(", "));
    }
    println!(
        "xtask test: all parts passed (tests, clippy, clippy (eBPF), rustfmt, fuzz targets {} s each, deploy checks)",
        crate::fuzz::SMOKE_SECONDS
    );
    Ok(())
}

/// The tests step: like [`run_step`], its output also kept, so that a failure comes back
/// with the account of the failed tests ([`crate::test_log::failure_summary`]).
fn run_tests_step(mut cmd: Command) -> Result<(), (anyhow::Error, Vec<String>)> {
    let desc = lab::describe(&cmd);
    println!("==> tests: {desc}");
    match crate::test_log::run_teed(&mut cmd) {
        Ok((status, _)) if status.success() => Ok(()),
        Ok((status, log)) => Err((
            anyhow::anyhow!("tests failed: `{desc}` exited with {status}"),
            crate::test_log::failure_summary(&log),
        )),
        Err(e) => Err((e, Vec::new())),
    }
}

/// `cargo fmt --all` with the pinned nightly's rustfmt: the import style in rustfmt.toml
/// (`imports_granularity`, `group_imports`) is a nightly-only rustfmt option, and a stable
/// rustfmt would ignore it. `check`: report, change nothing.
pub fn rustfmt(root: &Path, check: bool) -> anyhow::Result<Command> {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(root)
        .stdin(Stdio::null())
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .args([
            "run",
            &toolchain::nightly_channel(root)?,
            "cargo",
            "fmt",
            "--all",
        ]);
    if check {
        cmd.arg("--check");
    }
    Ok(cmd)
}

/// setup, then every file formatted as rustfmt.toml says.
pub fn fmt(root: &Path) -> anyhow::Result<()> {
    setup::run(root)?;
    run_step("rustfmt", rustfmt(root, false)?)
}

/// `cargo build --release` of the daemon binary and the node-monitor `examples` named, one
/// step.
pub(crate) fn build_daemon_release(root: &Path, examples: &[&str]) -> anyhow::Result<()> {
    let mut build = cargo(root);
    build.args([
        "build",
        "--release",
        "-p",
        "node-monitor",
        "--bin",
        "node-monitor",
    ]);
    for e in examples {
        build.args(["--example", e]);
    }
    let name = std::iter::once("daemon")
        .chain(examples.iter().copied())
        .collect::<Vec<_>>()
        .join(", ");
    run_step(&format!("build ({name})"), build)
}

/// The node-monitor benchmark example, results in node-monitor/BENCHMARKS.md (the example's
/// default `--output`); `extra` is passed on. The daemon binary and the empty_xdp example are
/// built first: the flood section runs them. The example writes BENCHMARKS.md whole; the
/// Soak section `cargo xtask soak` wrote there is put back after it.
pub fn bench(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    build_daemon_release(root, &["empty_xdp"])?;
    let benchmarks = root.join("node-monitor/BENCHMARKS.md");
    let before = std::fs::read_to_string(&benchmarks).unwrap_or_default();
    let mut cmd = cargo(root);
    cmd.args([
        "run",
        "--release",
        "-p",
        "node-monitor",
        "--example",
        "bench",
        "--",
    ])
    .args(extra);
    run_step("bench", cmd)?;
    let after = std::fs::read_to_string(&benchmarks).unwrap_or_default();
    if let Some(kept) = crate::soak_section::keep_soak(&before, &after) {
        std::fs::write(&benchmarks, kept).with_context(|| {
            format!("putting the Soak section back in {}", benchmarks.display())
        })?;
        println!("bench: kept the Soak section of {}", benchmarks.display());
    }
    Ok(())
}
