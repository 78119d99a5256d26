//! The benchmark's entry point: its arguments, the run of the sections asked for, and the
//! Markdown report they write. Three sections, each in its own file: the data path
//! (`datapath`: ns/packet of the XDP program through BPF_PROG_TEST_RUN, against an empty
//! XDP_PASS program measured in the same run, interleaved round by round), the userspace
//! event pipeline (`pipeline`), rendering (`rendering`), SYN floods over veth in lab
//! namespaces against the daemon, no program and iptables LOG (`flood`), and live traffic
//! (`live`): per-packet run time of the programs on XDP and tc against empty programs, and
//! received rate and CPU against no program, iptables LOG, NFLOG and tcpdump. `flood` and
//! `live` share the lab in `lab.rs`. The identity cache (`identity`): heap, resident memory,
//! build time and lookup latency with 100,000 pods; the pipeline section runs with and
//! without that cache.
//!
//! Run with `cargo xtask bench` (root needed). Writes a Markdown report.
//!
//! The property section (`property.rs`) runs generated frames through every program with the
//! tests' property checks (`--property-frames`, 10 million by default).
//!
//! For tuning runs: `--only data-path|pipeline|rendering|identity|flood|live|property` runs one
//! section, into the file `--output` names (a partial run never replaces BENCHMARKS.md);
//! `NM_BENCH_CIDRS=N` keeps only the first N CIDRs of the allowlist; `NM_BENCH_RATE=N` sets
//! `events_per_source_per_second` (default 4294967295, so that no event is rate-limited;
//! 0 skips the token bucket altogether). The node-wide group budget is off
//! (`events_per_group_per_second: 0`) in the data-path, pipeline and rendering sections, so
//! that the figures stay those of the paths they name; the flood section runs the daemon on
//! the embedded default config, group budget on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly; it shares the tests' frame builder"
)]
#[path = "../../tests/common/framegen.rs"]
mod framegen;
#[path = "../../tests/common/http.rs"]
mod http;
#[path = "../../tests/common/packets.rs"]
mod packets;
#[path = "../../tests/common/progrun.rs"]
#[allow(
    dead_code,
    reason = "the tests' BPF_PROG_TEST_RUN harness; the property section uses part of it"
)]
mod progrun;
#[path = "../../tests/common/property.rs"]
mod property_run;

mod alloc_count;
mod datapath;
mod flood;
mod identity;
mod lab;
mod live;
mod pipeline;
mod property;
mod rendering;
mod testrun;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Where to write the Markdown report (default: node-monitor/BENCHMARKS.md, which a partial
    /// run, `--only`, `--live-mode` or `--live-case`, may not replace: it needs `--output`).
    #[arg(long)]
    output: Option<PathBuf>,
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
    /// Rounds of the identity section's lookup measurements.
    #[arg(long, default_value_t = 3)]
    identity_rounds: usize,
    /// Generated frames per program in the property section.
    #[arg(long, default_value_t = 10_000_000)]
    property_frames: u64,
    /// SYNs per flood run (flood section).
    #[arg(long, default_value_t = 1_000_000)]
    flood_packets: u64,
    /// Rounds of the flood section; each runs both floods against the five modes (about
    /// 2.5 minutes a round with 1,000,000 SYNs per flood on a 2-CPU machine).
    #[arg(long, default_value_t = 1)]
    flood_rounds: usize,
    /// Packets trafgen sends per case and mode in the live section.
    #[arg(long, default_value_t = 200_000)]
    live_packets: u64,
    /// Rounds of the live section; each runs every case under the eight modes (about
    /// 100 s a round with 200,000 packets per case on a 2-CPU machine).
    #[arg(long, default_value_t = 3)]
    live_rounds: usize,
    /// Live section: trafgen sends with sendto(2) instead of its TX ring, so that the node's
    /// skbs are linear (slower sending).
    #[arg(long)]
    live_sendto: bool,
    /// Live section: send every case as IPv4 (198.51.100.0/24, denied sources from
    /// 203.0.113.0/24) instead of IPv6, with iptables instead of ip6tables.
    #[arg(long)]
    live_ipv4: bool,
    /// Live section, for tuning runs: run only these modes (repeatable; default all).
    #[arg(long, value_enum)]
    live_mode: Vec<live::LiveMode>,
    /// Live section, for tuning runs: run only these cases (repeatable; default all).
    #[arg(long, value_enum)]
    live_case: Vec<live::LiveCase>,
    /// The node-monitor binary the flood and live sections run (default: `node-monitor` beside the
    /// `examples/` directory of this binary, i.e. `target/release/node-monitor`).
    #[arg(long)]
    daemon: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    DataPath,
    Pipeline,
    Rendering,
    Identity,
    Flood,
    Live,
    Property,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark loads eBPF programs: run it as root (cargo xtask bench does)");
    }
    let partial = args.only.is_some() || !args.live_mode.is_empty() || !args.live_case.is_empty();
    let output = match (&args.output, partial) {
        (Some(p), _) => p.clone(),
        (None, false) => PathBuf::from("node-monitor/BENCHMARKS.md"),
        (None, true) => bail!(
            "a partial run (--only, --live-mode or --live-case) writes a report of just that part: \
             give --output FILE, so that node-monitor/BENCHMARKS.md is not replaced by it"
        ),
    };
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
    if wanted(Section::Identity) {
        identity::identity(args.identity_rounds.max(1), &mut report)?;
    }
    let daemon = match &args.daemon {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("no directory above this binary's")?
            .join("node-monitor"),
    };
    if wanted(Section::Flood) {
        flood::flood(
            args.flood_packets,
            args.flood_rounds.max(1),
            &daemon,
            &mut report,
        )?;
    }
    if wanted(Section::Live) {
        live::live(
            args.live_packets,
            args.live_rounds.max(1),
            args.live_sendto,
            args.live_ipv4,
            (&args.live_mode, &args.live_case),
            &daemon,
            &mut report,
        )?;
    }
    if wanted(Section::Property) {
        property::property(args.property_frames, &mut report)?;
    }
    print!("{report}");
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(&output, &report).with_context(|| format!("writing {}", output.display()))?;
    eprintln!("wrote {}", output.display());
    Ok(())
}
