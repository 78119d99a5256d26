//! The lab flood section: SYN floods to the kubelet port over a veth between two lab
//! namespaces, sent by trafgen (netsniff-ng), against the node namespace with no program,
//! with the daemon on XDP (the embedded default config), and with an iptables
//! `-m conntrack --ctstate NEW -j LOG` rule, alternating round by round. Two floods each:
//! random sources (a new source address in 2001:db8:2::/64 per packet, trafgen's `drnd`) and
//! one source with a new source port per packet.
//!
//! The daemon runs the embedded default config, so the kernel's node-wide group budget
//! (`limits.events_per_group_per_second`, 1,000) is on here, unlike in the other sections.
//!
//! Measured per run: packets the node's interface received and their rate over trafgen's
//! send time; CPU per received packet, all CPUs (busy time from `/proc/stat`, trafgen and the
//! daemon included) from the start of the flood to one second after it (so that the daemon's
//! backlog is counted); for the daemon, its peak resident memory (`VmHWM`), the alert lines
//! it wrote per port group and flood window, and its exit counters. Everything lives in
//! namespaces made here and removed by their guards; the addresses are documentation ones.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};
use node_monitor_lab::{Child, Netns, output_with_timeout};
use serde_json::Value;

use crate::testrun::median;

/// The node's and the generator's addresses on the flood link; random sources come from
/// [`RANDOM_PREFIX`], routed back to the generator (the node's RSTs go there and die).
const NODE: &str = "2001:db8:1::1";
const GEN: &str = "2001:db8:1::2";
const RANDOM_PREFIX: &str = "2001:db8:2::/64";
/// The one source of the single-source flood (in [`RANDOM_PREFIX`]).
const ONE_SOURCE: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 2];
/// The embedded default config's flood window (`alerts.flood_window_s`).
const FLOOD_WINDOW: Duration = Duration::from_secs(10);
/// Targets of issue 9.
const MAX_ALERT_LINES: u64 = 20;
const MAX_RSS_MIB: f64 = 64.0;
const MAX_CPU_RATIO: f64 = 1.25;
const MIN_RX_RATIO: f64 = 0.90;
/// Where an NM-1020 alert carries the kernel's distinct-source estimate of the withheld
/// connections, and their count (ECS); absent, the report says "n/a".
const DISTINCT_SOURCES_FIELD: &str = "/node_monitor/flood/distinct_sources";
const WITHHELD_FIELD: &str = "/node_monitor/flood/withheld";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Mode {
    NoProgram,
    EmptyXdp,
    Daemon,
    IptablesLog,
}

impl Mode {
    const ALL: [Mode; 4] = [
        Mode::NoProgram,
        Mode::EmptyXdp,
        Mode::Daemon,
        Mode::IptablesLog,
    ];
    fn name(self) -> &'static str {
        match self {
            Mode::NoProgram => "no program",
            Mode::EmptyXdp => "empty XDP program (examples/empty_xdp)",
            Mode::Daemon => "daemon, XDP, default config",
            Mode::IptablesLog => "ip6tables conntrack NEW -j LOG",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Traffic {
    RandomSources,
    OneSource,
}

impl Traffic {
    const ALL: [Traffic; 2] = [Traffic::RandomSources, Traffic::OneSource];
    fn name(self) -> &'static str {
        match self {
            Traffic::RandomSources => "random sources",
            Traffic::OneSource => "one source, new source port each",
        }
    }
}

/// Alert lines by (group or rule, flood window index).
type AlertLines = BTreeMap<(String, u64), u64>;

/// What one flood run measured.
#[derive(Default, Clone)]
struct Run {
    received: u64,
    send_s: f64,
    cpu_ns: f64,
    /// Daemon only.
    vm_hwm_kib: Option<u64>,
    alert_lines: AlertLines,
    alerts_total: u64,
    /// The flood alerts' distinct-source estimates and withheld connections, summed.
    distinct_estimate: Option<(u64, u64)>,
    /// The daemon's exit counters line.
    summary: Option<Value>,
}

impl Run {
    fn rx_rate(&self) -> f64 {
        self.received as f64 / self.send_s.max(1e-9)
    }
    fn cpu_per_packet(&self) -> f64 {
        self.cpu_ns / (self.received.max(1) as f64)
    }
    /// The most alert lines one group (or group-less rule) wrote in one flood window.
    fn max_lines(&self) -> (u64, String) {
        self.alert_lines
            .iter()
            .map(|((g, _), n)| (*n, g.clone()))
            .max()
            .unwrap_or((0, String::from("-")))
    }
    /// The most alert lines of all groups together in one flood window.
    fn max_window_lines(&self) -> u64 {
        let mut by_window: BTreeMap<u64, u64> = BTreeMap::new();
        for ((_, w), n) in &self.alert_lines {
            *by_window.entry(*w).or_default() += n;
        }
        by_window.into_values().max().unwrap_or(0)
    }
}

/// The daemon's figures of one flood, against its targets.
struct DaemonVerdict {
    traffic: Traffic,
    /// Received rate and CPU per packet, as ratios to no program.
    rx_ratio: f64,
    cpu_ratio: f64,
    /// CPU per packet below iptables LOG's.
    below_ipt: bool,
    /// Peak RSS (MiB).
    rss: Option<f64>,
    /// The most alert lines of one group in one window (and the group), and of all groups.
    lines: Option<(u64, String)>,
    window_lines: Option<u64>,
    runs: Vec<Run>,
}

/// A temp directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The two namespaces and their veth.
struct Bed {
    generator: Netns,
    node: Netns,
    node_mac: String,
    gen_mac: String,
}

fn mac_of(ns: &Netns) -> anyhow::Result<String> {
    let j: Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", "eth0"])?)?;
    j[0]["address"]
        .as_str()
        .map(str::to_owned)
        .context("no MAC address on eth0")
}

impl Bed {
    fn new() -> anyhow::Result<Bed> {
        let generator = Netns::new("fgen")?;
        let node = Netns::new("fnode")?;
        // The veth is made inside the generator's namespace, its peer sent straight into
        // the node's: no end ever exists in the root namespace.
        generator.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &node.name,
        ])?;
        generator.ip(&["addr", "add", &format!("{GEN}/64"), "dev", "eth0", "nodad"])?;
        node.ip(&["addr", "add", &format!("{NODE}/64"), "dev", "eth0", "nodad"])?;
        generator.ip(&["link", "set", "eth0", "up"])?;
        node.ip(&["link", "set", "eth0", "up"])?;
        node.ip(&["route", "add", RANDOM_PREFIX, "via", GEN])?;
        let ping = generator.exec("ping", &["-6", "-c1", "-W2", NODE])?;
        if !ping.status.success() {
            bail!("the flood link does not work: ping {NODE} failed");
        }
        Ok(Bed {
            node_mac: mac_of(&node)?,
            gen_mac: mac_of(&generator)?,
            generator,
            node,
        })
    }

    fn rx_packets(&self) -> anyhow::Result<u64> {
        let j: Value = serde_json::from_str(&self.node.ip(&["-j", "-s", "link", "show", "eth0"])?)?;
        j[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .context("no rx packet count on eth0")
    }

    /// trafgen's packet: Ethernet, IPv6, a TCP SYN to 10250 (checksummed by trafgen).
    fn trafgen_config(&self, traffic: Traffic) -> String {
        let hex = |mac: &str| {
            mac.split(':')
                .map(|b| format!("0x{b}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (src_low, src_port) = match traffic {
            Traffic::RandomSources => ("drnd(8)".to_owned(), "drnd(2)"),
            Traffic::OneSource => (
                ONE_SOURCE
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                "drnd(2)",
            ),
        };
        format!(
            "{{\n  {dst}, {src}, c16(0x86dd),\n  \
             0x60, 0, 0, 0, c16(20), 6, 64,\n  \
             0x20, 0x01, 0x0d, 0xb8, 0, 0x02, 0, 0, {src_low},\n  \
             0x20, 0x01, 0x0d, 0xb8, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,\n  \
             {src_port}, c16(10250), drnd(4), c32(0), 0x50, 0x02, c16(64240), csumtcp6(14, 54), c16(0)\n}}\n",
            dst = hex(&self.node_mac),
            src = hex(&self.gen_mac),
        )
    }
}

/// Busy time of all CPUs so far (ns): user, nice, system, irq, softirq, steal.
fn cpu_busy_ns() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum();
    // SAFETY: sysconf reads a constant of the C library; no memory is involved.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(busy as f64 * 1e9 / hz)
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Waits (bounded) until the daemon's stderr says it is ready.
fn wait_ready(stderr: &Path, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::fs::read_to_string(stderr).is_ok_and(|s| s.contains(": ready")) {
            return Ok(());
        }
        if let Some(st) = child.try_wait()? {
            bail!(
                "the daemon exited ({st}) before it was ready:\n{}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "the daemon was not ready within 20 s:\n{}",
        std::fs::read_to_string(stderr).unwrap_or_default()
    )
}

/// The alert lines of the daemon's stdout by (group, flood window since `start`), their
/// total, and the distinct-source estimate of its flood alerts with their withheld
/// connections (each summed), if they carry one.
fn count_alerts(stdout: &str, start: SystemTime) -> (AlertLines, u64, Option<(u64, u64)>) {
    let mut lines = BTreeMap::new();
    let mut total = 0;
    let mut distinct: Option<(u64, u64)> = None;
    for l in stdout.lines() {
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        if v.pointer("/event/kind").and_then(Value::as_str) != Some("alert") {
            continue;
        }
        total += 1;
        let group = v
            .pointer("/node_monitor/port_group")
            .and_then(Value::as_str)
            .map_or_else(
                || {
                    let rule = v.pointer("/rule/id").and_then(Value::as_str).unwrap_or("?");
                    format!("({rule})")
                },
                str::to_owned,
            );
        let t = v
            .pointer("/@timestamp")
            .and_then(Value::as_str)
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .unwrap_or(start);
        let window = t
            .duration_since(start)
            .map_or(0, |d| d.as_secs() / FLOOD_WINDOW.as_secs());
        *lines.entry((group, window)).or_default() += 1;
        if let Some(n) = v.pointer(DISTINCT_SOURCES_FIELD).and_then(Value::as_u64) {
            let withheld = v
                .pointer(WITHHELD_FIELD)
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let d = distinct.get_or_insert((0, 0));
            d.0 += n;
            d.1 += withheld;
        }
    }
    (lines, total, distinct)
}

fn run_once(
    bed: &Bed,
    mode: Mode,
    traffic: Traffic,
    packets: u64,
    daemon: &Path,
    dir: &Path,
    seq: usize,
) -> anyhow::Result<Run> {
    let conf = dir.join(format!("syn-{seq}.cfg"));
    std::fs::write(&conf, bed.trafgen_config(traffic))?;
    let (out_path, err_path) = (
        dir.join(format!("daemon-{seq}.out")),
        dir.join(format!("daemon-{seq}.err")),
    );
    let mut child: Option<Child> = None;
    match mode {
        Mode::NoProgram => {}
        Mode::EmptyXdp => {
            let empty = daemon
                .parent()
                .map(|d| d.join("examples").join("empty_xdp"))
                .context("no directory above the daemon binary")?;
            let mut cmd = bed.node.command(&empty.to_string_lossy());
            // Stopped (SIGTERM) when the run is over, long before its time is up.
            cmd.args(["eth0", "600"])
                .stdout(Stdio::from(File::create(&err_path)?))
                .stderr(Stdio::null());
            let mut c = Child::spawn(&mut cmd)?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while !std::fs::read_to_string(&err_path).is_ok_and(|s| s.contains("attached")) {
                if Instant::now() >= deadline || c.try_wait()?.is_some() {
                    bail!("empty_xdp did not attach ({})", empty.display());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            child = Some(c);
        }
        Mode::Daemon => {
            let mut cmd = bed.node.nsenter(&daemon.to_string_lossy());
            cmd.args(["run", "--iface", "eth0", "--no-pin"])
                .env("NO_COLOR", "1")
                .env_remove("RUST_LOG")
                .stdout(Stdio::from(File::create(&out_path)?))
                .stderr(Stdio::from(File::create(&err_path)?));
            let mut c = Child::spawn(&mut cmd)?;
            wait_ready(&err_path, &mut c)?;
            child = Some(c);
        }
        Mode::IptablesLog => {
            ip6tables(
                bed,
                &[
                    "-A",
                    "INPUT",
                    "-p",
                    "tcp",
                    "--dport",
                    "10250",
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "NEW",
                    "-j",
                    "LOG",
                    "--log-prefix",
                    "nm-bench ",
                ],
            )?;
        }
    }
    let start_wall = SystemTime::now();
    let (rx0, cpu0) = (bed.rx_packets()?, cpu_busy_ns()?);
    let t0 = Instant::now();
    let mut trafgen = bed.generator.command("trafgen");
    trafgen.args([
        "--dev",
        "eth0",
        "--conf",
        &conf.to_string_lossy(),
        "-n",
        &packets.to_string(),
        "-P",
        "1",
        "-C",
        "-Q",
        "--no-sock-mem",
    ]);
    let out = output_with_timeout(trafgen, Duration::from_secs(120))?;
    let send_s = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "trafgen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // The daemon's backlog (ring buffer, answer timeout) is part of what the flood costs.
    std::thread::sleep(Duration::from_secs(1));
    let (rx1, cpu1) = (bed.rx_packets()?, cpu_busy_ns()?);
    let mut run = Run {
        received: rx1.saturating_sub(rx0),
        send_s,
        cpu_ns: cpu1 - cpu0,
        ..Run::default()
    };
    if mode == Mode::EmptyXdp
        && let Some(mut c) = child.take()
    {
        c.stop(Duration::from_secs(5))?;
    }
    if let Some(mut c) = child {
        run.vm_hwm_kib = vm_hwm_kib(c.id());
        let st = c.stop(Duration::from_secs(15))?;
        if !st.success() {
            bail!("the daemon exited with {st}");
        }
        let stdout = std::fs::read_to_string(&out_path)?;
        let (lines, total, distinct) = count_alerts(&stdout, start_wall);
        run.alert_lines = lines;
        run.alerts_total = total;
        run.distinct_estimate = distinct;
        run.summary = std::fs::read_to_string(&err_path)?
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok());
        let _ = std::fs::remove_file(&out_path);
    }
    if mode == Mode::IptablesLog {
        ip6tables(bed, &["-F", "INPUT"])?;
        // A fresh conntrack table for the next run: the namespace's entries time out on their
        // own; flushing needs conntrack-tools, so the next iptables run may find some left.
    }
    Ok(run)
}

/// `ip6tables ARGS` in the node's namespace; fails unless it exits 0.
fn ip6tables(bed: &Bed, args: &[&str]) -> anyhow::Result<()> {
    let out = bed
        .node
        .exec_timeout(Duration::from_secs(10), "ip6tables", args)?;
    if !out.status.success() {
        bail!(
            "ip6tables {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Undoes the pipeline section's pinning: this process and what it starts (trafgen, the
/// daemon) may run on every CPU, as they would on a node.
fn unpin_all_cpus() -> anyhow::Result<usize> {
    // Not available_parallelism(): it counts the CPUs of the current (pinned) mask.
    // SAFETY: sysconf reads a constant of the C library.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let n = usize::try_from(online).unwrap_or(1).clamp(1, 1024);
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it (n is at most
    // 1024, CPU_SETSIZE); sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..n {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set) != 0 {
            bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
    }
    Ok(n)
}

/// The 1-minute load average (`/proc/loadavg`): the machine may be shared.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn missing_tools() -> Vec<&'static str> {
    ["trafgen", "ip6tables", "nsenter"]
        .into_iter()
        .filter(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
        })
        .collect()
}

fn kernel_counter(summary: &Value, key: &str) -> u64 {
    summary["groups"].as_array().map_or(0, |g| {
        g.iter()
            .filter(|e| e["group"] == "kubelet")
            .map(|e| e[key].as_u64().unwrap_or(0))
            .sum()
    })
}

fn yes(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

/// The flood section. `daemon`: the node-monitor binary.
pub(crate) fn flood(
    packets: u64,
    rounds: usize,
    daemon: &Path,
    report: &mut String,
) -> anyhow::Result<()> {
    writeln!(report, "## Lab floods (live traffic, trafgen over veth)\n")?;
    let missing = missing_tools();
    if !missing.is_empty() {
        writeln!(
            report,
            "Skipped: {} not installed (`cargo xtask setup` installs netsniff-ng and iptables).\n",
            missing.join(", ")
        )?;
        eprintln!("flood section skipped: {missing:?} missing");
        return Ok(());
    }
    if !daemon.exists() {
        bail!(
            "no daemon binary at {} (`cargo xtask bench` builds it; or pass --daemon)",
            daemon.display()
        );
    }
    let nf_log_all_netns = std::fs::read_to_string("/proc/sys/net/netfilter/nf_log_all_netns")
        .map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned());
    let cpus = unpin_all_cpus()?;
    let load_before = load_average();
    let wall = Instant::now();
    let bed = Bed::new()?;
    let dir = TempDir(std::env::temp_dir().join(format!("nm-bench-flood-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let mut runs: BTreeMap<(Traffic, Mode), Vec<Run>> = BTreeMap::new();
    let mut seq = 0;
    let mut retries: Vec<String> = Vec::new();
    for round in 0..rounds {
        for traffic in Traffic::ALL {
            // Alternate the order of the modes from round to round.
            let mut modes = Mode::ALL.to_vec();
            modes.rotate_left(round % Mode::ALL.len());
            for mode in modes {
                seq += 1;
                eprintln!(
                    "flood round {}/{rounds}: {} / {}",
                    round + 1,
                    traffic.name(),
                    mode.name()
                );
                // trafgen's TX ring flush may fail with EAGAIN under load: run again (at most
                // twice more), and say so in the report.
                let mut attempt = 0;
                let run = loop {
                    match run_once(&bed, mode, traffic, packets, daemon, &dir.0, seq) {
                        Ok(run) => break run,
                        Err(e) if attempt < 2 && format!("{e:#}").contains("trafgen failed") => {
                            attempt += 1;
                            retries.push(format!("{} / {}: {e:#}", traffic.name(), mode.name()));
                            eprintln!("retrying: {e:#}");
                            std::thread::sleep(Duration::from_secs(1));
                        }
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("{} / {}", traffic.name(), mode.name()));
                        }
                    }
                };
                runs.entry((traffic, mode)).or_default().push(run);
            }
        }
    }
    drop(bed);
    let took = wall.elapsed().as_secs_f64();
    let load_after = load_average();

    writeln!(
        report,
        "Two lab namespaces joined by a veth, nothing else on them. trafgen (netsniff-ng) in one \
         sends {packets} TCP SYNs to port 10250 of the other (the node, {NODE}; nothing listens, \
         so it answers RST) as fast as it can, on one CPU: once from random sources (a new \
         source address in {RANDOM_PREFIX} per packet) and once from one source with a new \
         source port per packet. Each flood runs against the node with no program, with \
         `node-monitor run --iface eth0 --no-pin` on the embedded default config (XDP; its group \
         budget, 1,000 events per second per group, on), and \
         with `ip6tables -A INPUT -p tcp --dport 10250 -m conntrack --ctstate NEW -j LOG` in \
         the node's namespace, and with the object's empty XDP program attached the same way \
         (the cost of XDP on a veth itself, which the daemon pays too); {rounds} round(s), the \
         four modes one after the other for each flood, their order rotating from round to \
         round; medians over the rounds (one round: single runs, and this VM's run-to-run \
         noise is large). Received: the node interface's rx packets; rate: received over \
         trafgen's send time. CPU: busy time of all CPUs (`/proc/stat`, trafgen and the daemon \
         included) from the start of the flood to 1 s after it, per received packet. Peak RSS: \
         the daemon's `VmHWM` before it is stopped. Alert lines: the daemon's stdout (ECS) by \
         port group (rule id for alerts without one) and 10 s flood window from the start of \
         the flood, the largest count. The bench process and what it starts may use all {cpus} CPUs (the \
         pipeline section's pinning is undone). Wall time {took:.0} s; 1-minute load average \
         {load_before} before and {load_after} after (other work on the machine shares its CPUs \
         with every mode alike, but widens the spread).\n"
    )?;
    writeln!(
        report,
        "| flood | mode | received (median) | received/s | ratio to no program | CPU ns/packet | ratio to no program | ratio to empty XDP | daemon peak RSS (MiB) | most alert lines per group and window | alert lines in all |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"
    )?;
    let med = |v: &[Run], f: &dyn Fn(&Run) -> f64| {
        let mut xs: Vec<f64> = v.iter().map(f).collect();
        median(&mut xs)
    };
    let mut verdicts = Vec::new();
    for traffic in Traffic::ALL {
        let base = &runs[&(traffic, Mode::NoProgram)];
        let (base_rate, base_cpu) = (
            med(base, &|r| r.rx_rate()),
            med(base, &|r| r.cpu_per_packet()),
        );
        let ipt_cpu = med(&runs[&(traffic, Mode::IptablesLog)], &|r| {
            r.cpu_per_packet()
        });
        let empty_cpu = med(&runs[&(traffic, Mode::EmptyXdp)], &|r| r.cpu_per_packet());
        for mode in Mode::ALL {
            let v = &runs[&(traffic, mode)];
            let rate = med(v, &|r| r.rx_rate());
            let cpu = med(v, &|r| r.cpu_per_packet());
            let rss = v
                .iter()
                .filter_map(|r| r.vm_hwm_kib)
                .max()
                .map(|k| k as f64 / 1024.0);
            let lines = v.iter().map(Run::max_lines).max();
            let window_lines = v.iter().map(Run::max_window_lines).max();
            let total = v.iter().map(|r| r.alerts_total).max();
            writeln!(
                report,
                "| {} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.2} | {:.2} | {} | {} | {} |",
                traffic.name(),
                mode.name(),
                med(v, &|r| r.received as f64),
                rate,
                rate / base_rate,
                cpu,
                cpu / base_cpu,
                cpu / empty_cpu,
                rss.map_or("-".to_owned(), |m| format!("{m:.1}")),
                match (&lines, mode) {
                    (Some((n, g)), Mode::Daemon) => format!("{n} ({g})"),
                    _ => "-".to_owned(),
                },
                match (total, mode) {
                    (Some(t), Mode::Daemon) => t.to_string(),
                    _ => "-".to_owned(),
                },
            )?;
            if mode == Mode::Daemon {
                verdicts.push(DaemonVerdict {
                    traffic,
                    rx_ratio: rate / base_rate,
                    cpu_ratio: cpu / base_cpu,
                    below_ipt: cpu < ipt_cpu,
                    rss,
                    lines,
                    window_lines,
                    runs: v.clone(),
                });
            }
        }
    }
    writeln!(
        report,
        "\n| flood | target | measured | met |\n|---|---|---|:---:|"
    )?;
    for DaemonVerdict {
        traffic,
        rx_ratio,
        cpu_ratio,
        below_ipt,
        rss,
        lines,
        window_lines,
        runs: v,
    } in &verdicts
    {
        let t = traffic.name();
        if *traffic == Traffic::RandomSources {
            let (n, g) = lines.clone().unwrap_or((0, "-".into()));
            writeln!(
                report,
                "| {t} | <= {MAX_ALERT_LINES} alert lines per group per flood window | {n} ({g}) | {} |",
                yes(n <= MAX_ALERT_LINES)
            )?;
            let n = window_lines.unwrap_or(0);
            writeln!(
                report,
                "| {t} | <= {MAX_ALERT_LINES} alert lines per flood window, all groups | {n} | {} |",
                yes(n <= MAX_ALERT_LINES)
            )?;
        }
        let rss = rss.unwrap_or(f64::NAN);
        writeln!(
            report,
            "| {t} | daemon peak RSS <= {MAX_RSS_MIB} MiB | {rss:.1} MiB | {} |",
            yes(rss <= MAX_RSS_MIB)
        )?;
        writeln!(
            report,
            "| {t} | CPU/packet <= {MAX_CPU_RATIO} x no program | {cpu_ratio:.2} x | {} |",
            yes(*cpu_ratio <= MAX_CPU_RATIO)
        )?;
        writeln!(
            report,
            "| {t} | CPU/packet below iptables LOG | {} | {} |",
            if *below_ipt { "below" } else { "not below" },
            yes(*below_ipt)
        )?;
        writeln!(
            report,
            "| {t} | received rate >= {:.0}% of no program | {:.0}% | {} |",
            MIN_RX_RATIO * 100.0,
            rx_ratio * 100.0,
            yes(*rx_ratio >= MIN_RX_RATIO)
        )?;
        if *traffic == Traffic::RandomSources {
            // Every packet has its own 64-bit random source (collisions are negligible): the
            // distinct sources of the withheld connections are the withheld connections.
            let estimate = v.iter().find_map(|r| r.distinct_estimate);
            match estimate {
                Some((e, truth)) => {
                    let err = (e as f64 - truth as f64).abs() / (truth.max(1) as f64);
                    writeln!(
                        report,
                        "| {t} | distinct-source estimate within 5% | {e} for {truth} withheld ({:.1}%) | {} |",
                        err * 100.0,
                        yes(err <= 0.05)
                    )?;
                }
                None => writeln!(
                    report,
                    "| {t} | distinct-source estimate within 5% | n/a: no NM-1020 alert carries `node_monitor.flood.distinct_sources` | n/a |"
                )?,
            }
        }
    }
    writeln!(report)?;
    // The daemon's own counters: what the kernel sent it and what it held.
    for traffic in Traffic::ALL {
        let v = &runs[&(traffic, Mode::Daemon)];
        if let Some(s) = v.iter().rev().find_map(|r| r.summary.as_ref()) {
            let det = |d: &str| {
                let e = &s["detectors"][d];
                format!(
                    "{} {}/{} ({} evicted)",
                    d,
                    e["entries"].as_u64().unwrap_or(0),
                    e["capacity"].as_u64().unwrap_or(0),
                    e["evictions"].as_u64().unwrap_or(0)
                )
            };
            writeln!(
                report,
                "Daemon, {} (last round): kubelet new connections {}, events {}, rate-limited {}, \
                 withheld by the group budget {}, lost to a full ring buffer {}; events read {}; \
                 tables at exit: {}, {}, {}, {}.\n",
                traffic.name(),
                kernel_counter(s, "new_conns"),
                kernel_counter(s, "events"),
                kernel_counter(s, "lost_rate_limited"),
                kernel_counter(s, "lost_group_budget"),
                kernel_counter(s, "lost_ringbuf_full"),
                s["userspace"]["events_read"].as_u64().unwrap_or(0),
                det("dedup"),
                det("scan"),
                det("answers"),
                det("answers_unanswered"),
            )?;
        }
    }
    if !retries.is_empty() {
        writeln!(
            report,
            "Runs made again after trafgen failed (its TX ring flush returned EAGAIN): {}.\n",
            retries.join("; ")
        )?;
    }
    writeln!(
        report,
        "iptables LOG: the kernel writes nothing from a LOG rule in a namespace other than the \
         initial one unless `net.netfilter.nf_log_all_netns` is 1 (here: {nf_log_all_netns}); the \
         bench does not change that host-wide setting, so with 0 this row costs conntrack and \
         the rule, not the log lines.\n"
    )?;
    Ok(())
}
