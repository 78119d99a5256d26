//! `cargo xtask <command>`: the developer entry points of node-monitor.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use node_monitor_lab as lab;
use xtask::{demo, setup, tasks, workspace_root};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "node-monitor developer tasks", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check and install what the build, tests and demo need (idempotent).
    Setup,
    /// Setup, then `cargo build --release` (the eBPF object is built by node-monitor's build.rs).
    Build,
    /// Setup, then all tests, clippy (userspace and eBPF crates, -D warnings), rustfmt --check,
    /// the fuzz targets' short runs and the deploy checks.
    Test,
    /// Setup, then format every crate as rustfmt.toml says (with the pinned nightly's rustfmt).
    Fmt,
    /// Setup, release build, then the daemon in a lab against a scripted scenario.
    Demo {
        /// Use the daemon binary as it is: no setup, no build.
        #[arg(long)]
        no_build: bool,
        /// Daemon binary (default: <target>/release/node-monitor).
        #[arg(long, value_name = "PATH")]
        daemon: Option<PathBuf>,
    },
    /// The benchmark example (results in node-monitor/BENCHMARKS.md); extra arguments are passed on.
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, release build, then the soak with faults (a benchmark, never part of `test`):
    /// the daemon in a lab under traffic, reloads, interface churn, sink outages and a
    /// `kill -9`; writes the Soak section of node-monitor/BENCHMARKS.md.
    Soak {
        /// Length of the run (at least 1).
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Use the daemon binary as it is: no setup, no build.
        #[arg(long)]
        no_build: bool,
        /// Daemon binary, run as it is (default: <target>/release/node-monitor, built first
        /// unless --no-build).
        #[arg(long, value_name = "PATH")]
        daemon: Option<PathBuf>,
        /// The Markdown file whose `## Soak` section is replaced.
        #[arg(long, default_value = "node-monitor/BENCHMARKS.md")]
        output: PathBuf,
    },
    /// Setup, then build the fuzz targets (fuzz/) and run each for a bounded time.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target (config, decode, render, community_id, cef_escape).
        #[arg(long)]
        target: Option<String>,
    },
    /// Setup, then render the Helm chart with its default values into deploy/manifests/.
    DeployManifests,
    /// Setup, then only the deploy checks of `test` (chart, manifests, rules, systemd unit).
    DeployCheck,
    /// Create (and leave) or remove the lab network namespaces.
    Lab {
        #[command(subcommand)]
        action: LabCmd,
    },
}

#[derive(Subcommand)]
enum LabCmd {
    /// Build the demo lab and leave it running.
    Up,
    /// Remove every lab namespace (`nmlab-*`) and lab bpffs directory.
    Down,
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the context chain on one line, without a backtrace.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let root = workspace_root();
    match cli.command {
        Cmd::Setup => setup::run(&root),
        Cmd::Build => tasks::build(&root),
        Cmd::Test => tasks::test(&root),
        Cmd::Fmt => tasks::fmt(&root),
        Cmd::Demo { no_build, daemon } => demo::run(&root, &demo::Options { no_build, daemon }),
        Cmd::Bench { args } => tasks::bench(&root, &args),
        Cmd::Soak {
            minutes,
            no_build,
            daemon,
            output,
        } => xtask::soak::run(
            &root,
            &xtask::soak::Options {
                minutes,
                no_build,
                daemon,
                output,
            },
        ),
        Cmd::Fuzz { seconds, target } => {
            setup::run(&root)?;
            xtask::fuzz::run(&root, seconds, target.as_deref())
        }
        Cmd::DeployManifests => xtask::deploy::write_manifests(&root),
        Cmd::DeployCheck => {
            setup::run(&root)?;
            xtask::deploy::checks(&root)
        }
        Cmd::Lab { action: LabCmd::Up } => lab_up(),
        Cmd::Lab {
            action: LabCmd::Down,
        } => {
            let removed = lab::remove_all()?;
            if removed.is_empty() {
                println!("no lab namespaces or pin directories found");
            }
            for r in removed {
                println!("removed {r}");
            }
            Ok(())
        }
    }
}

fn lab_up() -> anyhow::Result<()> {
    use lab::addr::*;
    let l = lab::Lab::new()?;
    let [router, node, cp, outside] = l.keep();
    println!("lab up (IPv4 and IPv6 checked):");
    println!(
        "  router   {router:<32} br0 {ROUTER_LAN_V4} {ROUTER_LAN_V6}, vout {ROUTER_OUT_V4} {ROUTER_OUT_V6}"
    );
    println!("  node     {node:<32} eth0 {NODE_V4} {NODE_V6}");
    println!("  cp       {cp:<32} eth0 {CP_V4} {CP_V6}");
    println!("  outside  {outside:<32} eth0 {OUTSIDE_V4} {OUTSIDE_V6}");
    println!("enter one with:  ip netns exec {node} bash");
    println!(
        "daemon (sees the host's bpffs):  nsenter --net=/run/netns/{node} -- target/release/node-monitor run --iface eth0 --pin-dir /sys/fs/bpf/{}lab",
        lab::NAME_PREFIX
    );
    println!("remove with:     cargo xtask lab down");
    Ok(())
}
