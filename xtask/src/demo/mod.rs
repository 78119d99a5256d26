//! `cargo xtask demo`: the release daemon in the lab's node namespace, a scripted attack
//! and access scenario from the control-plane peer and from outside, then a summary of
//! what the daemon reported. Every command has a timeout; the lab is removed at the end
//! (and on any error or panic, by its guards).

use std::{
    io::{BufRead as _, BufReader, Read},
    path::{Path, PathBuf},
    process::Stdio,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use node_monitor_lab::{self as lab, BpfPinDir, Child, Lab, addr};

use crate::{setup, tasks};

mod report;
mod scenario;

/// Options of `cargo xtask demo`.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Skip setup and the release build (use the binary as it is).
    pub no_build: bool,
    /// The daemon binary; default `<target>/release/node-monitor`.
    pub daemon: Option<PathBuf>,
}

const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Events echoed live per step.
const LIVE_LINES: usize = 4;

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => root.join(d),
        None => root.join("target"),
    }
}

fn banner(text: &str) {
    println!("\n=== {text}");
}

/// Reads lines from `pipe` on a thread; each line goes to `tx`.
fn line_reader(pipe: impl Read + Send + 'static, tx: mpsc::Sender<String>) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

/// Runs the demo (see the module doc).
pub fn run(root: &Path, opts: &Options) -> anyhow::Result<()> {
    if !opts.no_build {
        setup::run(root)?;
        tasks::build_release(root)?;
    }
    let daemon = opts
        .daemon
        .clone()
        .unwrap_or_else(|| target_dir(root).join("release/node-monitor"));
    if !daemon.is_file() {
        bail!(
            "{} not found: build it with `cargo xtask build`",
            daemon.display()
        );
    }
    let daemon = daemon.to_str().context("non-UTF-8 daemon path")?.to_owned();
    let started = Instant::now();

    banner("building the lab (network namespaces; nothing touches the root namespace)");
    let lab = Lab::new()?;
    for ns in lab.namespaces() {
        println!("  {}", ns.name);
    }
    println!(
        "  node {} / {}, control plane {} / {}, outside {} / {} (routed)",
        addr::NODE_V4,
        addr::NODE_V6,
        addr::CP_V4,
        addr::CP_V6,
        addr::OUTSIDE_V4,
        addr::OUTSIDE_V6
    );
    let pins = BpfPinDir::new("demo")?;
    let services = scenario::start_services(&lab)?;

    banner("starting node-monitor in the node namespace");
    // nsenter keeps the host's mounts, so the pins land in the shared bpffs (`ip netns
    // exec` would hide it behind a fresh /sys).
    let mut cmd = lab.node.nsenter(&daemon);
    let pin_dir = pins.path.to_str().context("non-UTF-8 pin dir")?;
    cmd.args(["run", "--iface", lab::NODE_IFACE, "--pin-dir", pin_dir])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    println!(
        "$ [node] {} run --iface {} --pin-dir {pin_dir}",
        daemon,
        lab::NODE_IFACE
    );
    let mut d = Child::spawn(&mut cmd)?;
    let (out_tx, out_rx) = mpsc::channel();
    let (err_tx, err_rx) = mpsc::channel();
    if let Some(p) = d.take_stdout() {
        line_reader(p, out_tx);
    }
    if let Some(p) = d.take_stderr() {
        line_reader(p, err_tx);
    }
    let mut lines: Vec<String> = Vec::new();
    let mut errs: Vec<String> = Vec::new();
    // Echoes at most LIVE_LINES events per step as they arrive (a sweep makes hundreds).
    let drain = |lines: &mut Vec<String>, errs: &mut Vec<String>| {
        errs.extend(err_rx.try_iter());
        let mut shown = 0;
        let mut more = 0;
        for l in out_rx.try_iter() {
            if shown < LIVE_LINES {
                println!("  [node-monitor] {}", report::compact(&l));
                shown += 1;
            } else {
                more += 1;
            }
            lines.push(l);
        }
        if more > 0 {
            println!("  [node-monitor] ... and {more} more");
        }
    };
    let ready_by = Instant::now() + READY_TIMEOUT;
    loop {
        drain(&mut lines, &mut errs);
        if let Some(status) = d.try_wait()? {
            thread::sleep(Duration::from_millis(100));
            drain(&mut lines, &mut errs);
            bail!(
                "node-monitor exited early ({status}); its stderr:\n{}",
                tail(&errs, 30)
            );
        }
        // The daemon pins each link only once it is attached, egress last: that pin
        // means every program is in place and every map is written.
        if pins
            .path
            .join("links")
            .join(format!("tc-egress@{}", lab::NODE_IFACE))
            .exists()
        {
            println!(
                "  ready: attached and pinned ({})",
                pins.entries().join(", ")
            );
            break;
        }
        if Instant::now() >= ready_by {
            bail!(
                "node-monitor did not attach within {READY_TIMEOUT:?}; its stderr:\n{}",
                tail(&errs, 30)
            );
        }
        thread::sleep(Duration::from_millis(100));
    }

    let steps = scenario::steps(&lab);
    for (i, step) in steps.iter().enumerate() {
        banner(&format!("step {}: {}", i + 1, step.title));
        scenario::run_step(step)?;
        thread::sleep(Duration::from_millis(300)); // let its events arrive
        drain(&mut lines, &mut errs);
    }

    banner("stopping node-monitor (SIGTERM)");
    thread::sleep(Duration::from_millis(500)); // let the last events reach stdout
    let status = d.stop(Duration::from_secs(5))?;
    // The pipes close when the daemon exits; wait a bounded time for the readers.
    let until = Instant::now() + Duration::from_secs(2);
    let mut late = Vec::new();
    while Instant::now() < until {
        match out_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) => late.push(l),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    errs.extend(err_rx.try_iter());
    for l in late.iter().take(LIVE_LINES) {
        println!("  [node-monitor] {}", report::compact(l));
    }
    if late.len() > LIVE_LINES {
        println!("  [node-monitor] ... and {} more", late.len() - LIVE_LINES);
    }
    lines.extend(late);
    println!("  node-monitor exited: {status}");
    if !status.success() {
        println!("  its stderr (last lines):\n{}", tail(&errs, 20));
    }

    banner("what node-monitor reported");
    // The daemon's closing counters line is the last JSON object on its stderr.
    if let Some(c) = errs
        .iter()
        .rev()
        .find(|l| l.contains("\"type\":\"counters\""))
    {
        lines.push(c.clone());
    }
    print!("{}", report::summarize(&lines));

    banner("tearing down");
    drop(d);
    drop(services);
    drop(pins);
    let names: Vec<String> = lab.namespaces().iter().map(|n| n.name.clone()).collect();
    drop(lab);
    let left: Vec<String> = lab::list_namespaces()?
        .into_iter()
        .filter(|n| names.contains(n))
        .collect();
    if left.is_empty() {
        println!(
            "  lab removed; demo took {:.1} s",
            started.elapsed().as_secs_f64()
        );
    } else {
        bail!("namespaces left behind: {left:?} (`cargo xtask lab down`)");
    }
    Ok(())
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}
