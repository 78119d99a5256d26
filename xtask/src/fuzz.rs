//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/` (config loader, ring-buffer record
//! decoder, the three renderers, Community ID, the CEF escapers), each run for a bounded
//! time from the committed seeds in `fuzz/seeds/<target>/`, on the pinned nightly (libFuzzer
//! and AddressSanitizer need it). New corpus entries and crash artifacts go under
//! `target/fuzz/`, never into the tree: a crash is turned into a regression test by hand.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::Context as _;

use crate::{tasks::run_step, toolchain};

/// Every fuzz target (`fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: [&str; 5] = ["config", "decode", "render", "community_id", "cef_escape"];

/// Seconds each target runs inside `cargo xtask test`.
pub const SMOKE_SECONDS: u64 = 8;

/// How the targets are built. Both keep AddressSanitizer, debug assertions and overflow
/// checks (cargo-fuzz's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// `cargo xtask test`'s few seconds a target: unoptimised (`cargo fuzz build --dev`).
    /// Optimising the whole daemon library with sanitizer instrumentation took 11 of the
    /// suite's 30 minutes on a 2-core machine, for runs of 8 seconds.
    Smoke,
    /// `cargo xtask fuzz`: optimised, as many executions a second as the target allows.
    Long,
}

impl Build {
    fn args(self) -> &'static [&'static str] {
        match self {
            Build::Smoke => &["--dev"],
            Build::Long => &[],
        }
    }
}

fn cargo_fuzz(root: &Path) -> anyhow::Result<Command> {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(root)
        .stdin(Stdio::null())
        .env_remove("CARGO")
        .env_remove("RUSTC")
        // The targets need no eBPF object; its build would get the sanitizer flags.
        .env("AYA_BUILD_SKIP", "1")
        .args(["run", &toolchain::nightly_channel(root)?, "cargo", "fuzz"]);
    Ok(cmd)
}

fn work_dir(root: &Path) -> PathBuf {
    root.join("target").join("fuzz")
}

/// `cargo fuzz build` of every target.
pub fn build_command(root: &Path, build: Build) -> anyhow::Result<Command> {
    let mut cmd = cargo_fuzz(root)?;
    cmd.arg("build")
        .args(build.args())
        .arg("--target-dir")
        .arg(work_dir(root).join("build"));
    Ok(cmd)
}

/// `cargo fuzz run TARGET` for `seconds`, from a working corpus seeded from the tree, built
/// as `build` (as [`build_command`] built it: nothing is rebuilt).
pub fn run_command(
    root: &Path,
    target: &str,
    seconds: u64,
    build: Build,
) -> anyhow::Result<Command> {
    let corpus = work_dir(root).join("corpus").join(target);
    let artifacts = work_dir(root).join("artifacts").join(target);
    for d in [&corpus, &artifacts] {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    let seeds = root.join("fuzz").join("seeds").join(target);
    let mut cmd = cargo_fuzz(root)?;
    cmd.args(["run", target])
        .args(build.args())
        .arg("--target-dir")
        .arg(work_dir(root).join("build"))
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1");
    Ok(cmd)
}

/// Builds every target, then runs `only` (or every target) for `seconds` each.
pub fn run(root: &Path, seconds: u64, only: Option<&str>) -> anyhow::Result<()> {
    let targets: Vec<&str> = match only {
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => anyhow::bail!("no fuzz target `{t}` (targets: {})", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    run_step("fuzz build", build_command(root, Build::Long)?)?;
    for t in targets {
        run_step(
            &format!("fuzz {t} ({seconds} s)"),
            run_command(root, t, seconds, Build::Long)?,
        )?;
    }
    Ok(())
}
