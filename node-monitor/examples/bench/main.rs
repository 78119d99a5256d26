//! The benchmark's entry point: its arguments, the run of the sections asked for, and the
//! Markdown report they write. Three sections, each in its own file: the data path
//! (`datapath`: ns/packet of the XDP program through BPF_PROG_TEST_RUN, against an empty
//! XDP_PASS program measured in the same run, interleaved round by round), the userspace
//! event pipeline (`pipeline`) and rendering (`rendering`).
//!
//! Run with `cargo xtask bench` (root needed). Writes a Markdown report.
//!
//! For tuning runs: `--only data-path|pipeline|rendering` runs one section;
//! `NM_BENCH_CIDRS=N` keeps only the first N CIDRs of the allowlist; `NM_BENCH_RATE=N` sets
//! `events_per_source_per_second` (default 4294967295, so that no event is rate-limited;
//! 0 skips the token bucket altogether). The node-wide group budget is off
//! (`events_per_group_per_second: 0`) in every section, so that the figures stay those of
//! the paths they name.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly; it shares the tests' frame builder"
)]
#[path = "../../tests/common/packets.rs"]
mod packets;

mod datapath;
mod pipeline;
mod rendering;
mod testrun;

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Where to write the Markdown report.
    #[arg(long, default_value = "node-monitor/BENCHMARKS.md")]
    output: PathBuf,
    /// BPF_PROG_TEST_RUN repeat count per measurement (>= 1,000,000 for the report).
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Rounds; each round measures every case once, baseline included. Median is reported.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Events pushed through the userspace pipeline in each of its two runs.
    #[arg(long, default_value_t = 1_000_000)]
    pipeline_events: u32,
    /// Run one section only (for tuning runs and profiles); the report then holds just it.
    #[arg(long, value_enum)]
    only: Option<Section>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    DataPath,
    Pipeline,
    Rendering,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark loads eBPF programs: run it as root (cargo xtask bench does)");
    }
    let wanted = |s: Section| args.only.is_none_or(|o| o == s);
    let mut report = String::new();
    if wanted(Section::DataPath) {
        datapath::data_path(args.repeat, args.rounds, &mut report)?;
    }
    if wanted(Section::Pipeline) {
        pipeline::pipeline(args.pipeline_events, &mut report)?;
    }
    if wanted(Section::Rendering) {
        rendering::rendering(&mut report)?;
    }
    print!("{report}");
    if let Some(dir) = args.output.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(&args.output, &report)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
