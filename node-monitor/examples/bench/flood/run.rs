//! One flood run and what it measures: the mode under test started in the node's namespace
//! (no program, the empty XDP program, the daemon on XDP or on tc, or an ip6tables LOG rule), trafgen's
//! flood, the received packets and CPU time around it, and the daemon's peak memory, alert
//! lines by group and flood window, and exit counters.
use std::{
    collections::BTreeMap,
    fs::File,
    path::Path,
    process::Stdio,
    time::{Duration, SystemTime},
};

use anyhow::bail;
use node_monitor_lab::Child;
use serde_json::Value;

use crate::lab::{
    Bed, Source, TcpPacket, cpu_busy_ns, new_conn_rule, process_cpu_ns, spawn_until, xtables,
};

/// The embedded default config's flood window (`alerts.flood_window_s`).
pub(super) const FLOOD_WINDOW: Duration = Duration::from_secs(10);

/// Where an NM-1020 alert carries the kernel's distinct-source estimate of the withheld
/// connections, and their count (ECS); absent, the report says "n/a".
pub(super) const DISTINCT_SOURCES_FIELD: &str = "/node_monitor/flood/distinct_sources";
pub(super) const WITHHELD_FIELD: &str = "/node_monitor/flood/withheld";
/// The start of the window a flood alert summarises.
pub(super) const FLOOD_WINDOW_START_FIELD: &str = "/node_monitor/flood/window_start";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(super) enum Mode {
    NoProgram,
    EmptyXdp,
    Daemon,
    /// The daemon attached with `--attach tc` (tcx ingress): no XDP copy of the frame.
    DaemonTc,
    IptablesLog,
}

impl Mode {
    pub(super) const ALL: [Mode; 5] = [
        Mode::NoProgram,
        Mode::EmptyXdp,
        Mode::Daemon,
        Mode::DaemonTc,
        Mode::IptablesLog,
    ];
    /// For the daemon's modes: its `--attach` value and the hook's name in the report.
    pub(super) fn daemon_hook(self) -> Option<(&'static str, &'static str)> {
        match self {
            Mode::Daemon => Some(("xdp", "XDP")),
            Mode::DaemonTc => Some(("tc", "tc")),
            _ => None,
        }
    }
    pub(super) fn name(self) -> &'static str {
        match self {
            Mode::NoProgram => "no program",
            Mode::EmptyXdp => "empty XDP program (examples/empty_xdp)",
            Mode::Daemon => "daemon, XDP, default config",
            Mode::DaemonTc => "daemon, tc, default config",
            Mode::IptablesLog => "ip6tables conntrack NEW -j LOG",
        }
    }
    /// A mode that runs the daemon (its alerts, memory and counters are measured).
    pub(super) fn is_daemon(self) -> bool {
        matches!(self, Mode::Daemon | Mode::DaemonTc)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(super) enum Traffic {
    RandomSources,
    OneSource,
}

impl Traffic {
    pub(super) const ALL: [Traffic; 2] = [Traffic::RandomSources, Traffic::OneSource];
    pub(super) fn name(self) -> &'static str {
        match self {
            Traffic::RandomSources => "random sources",
            Traffic::OneSource => "one source, new source port each",
        }
    }
    /// trafgen's SYN to the kubelet port, a new source port each.
    pub(super) fn packet(self) -> TcpPacket {
        TcpPacket {
            source: match self {
                Traffic::RandomSources => Source::Random,
                Traffic::OneSource => Source::One,
            },
            source_port: None,
            dest_port: 10250,
            ack: false,
            ipv4: false,
        }
    }
}

/// Alert lines by (group or rule, the start of the daemon's flood window in ms since the
/// flood's start).
pub(super) type AlertLines = BTreeMap<(String, u64), u64>;

/// What one flood run measured.
#[derive(Default, Clone)]
pub(super) struct Run {
    pub(super) received: u64,
    pub(super) send_s: f64,
    pub(super) cpu_ns: f64,
    /// Daemon only.
    pub(super) vm_hwm_kib: Option<u64>,
    /// The daemon's own CPU time (user and system) over the same interval as `cpu_ns`.
    pub(super) daemon_cpu_ns: Option<f64>,
    pub(super) alert_lines: AlertLines,
    /// The most alert lines of all groups together in one window.
    pub(super) window_lines_all: u64,
    pub(super) alerts_total: u64,
    /// The flood alerts' distinct-source estimates and withheld connections, summed.
    pub(super) distinct_estimate: Option<(u64, u64)>,
    /// The daemon's exit counters line.
    pub(super) summary: Option<Value>,
}

impl Run {
    pub(super) fn rx_rate(&self) -> f64 {
        self.received as f64 / self.send_s.max(1e-9)
    }
    pub(super) fn cpu_per_packet(&self) -> f64 {
        self.cpu_ns / (self.received.max(1) as f64)
    }
    /// The daemon's own share of [`Run::cpu_per_packet`] (NaN for the other modes).
    pub(super) fn daemon_cpu_per_packet(&self) -> f64 {
        self.daemon_cpu_ns
            .map_or(f64::NAN, |ns| ns / (self.received.max(1) as f64))
    }
    /// The most alert lines one group (or group-less rule) wrote in one flood window.
    pub(super) fn max_lines(&self) -> (u64, String) {
        self.alert_lines
            .iter()
            .map(|((g, _), n)| (*n, g.clone()))
            .max()
            .unwrap_or((0, String::from("-")))
    }
    /// The most alert lines of all groups together in one flood window.
    pub(super) fn max_window_lines(&self) -> u64 {
        self.window_lines_all
    }
}

pub(super) fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The alert lines of the daemon's stdout by (group, flood window), their total, and the
/// most lines of all groups together in one window (windows opened the same way over all
/// lines), and the distinct-source estimate of its flood alerts with their withheld
/// connections (each summed), if they carry one. Windows are the daemon's, not fixed bins from the flood's
/// start: as `connection_alerts_per_group` counts them, a group's first alert opens one of
/// `FLOOD_WINDOW`, and the first alert after it opens the next; a flood alert (NM-1020)
/// belongs to the window it summarises (`flood.window_start`), not to the moment it is
/// written, which is the next window's first. (Fixed bins that straddle two of the daemon's
/// windows counted up to twice the cap plus two flood alerts in one bin.) The key's window is
/// its start in ms since `start`. Lines without a group (scans) are keyed by rule id in
/// parentheses.
pub(super) fn count_alerts(
    stdout: &str,
    start: SystemTime,
) -> (AlertLines, u64, u64, Option<(u64, u64)>) {
    let mut timed: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut total = 0;
    let mut distinct: Option<(u64, u64)> = None;
    let ms_since = |t: Option<&str>| {
        t.and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| t.duration_since(start).ok())
            .map_or(0, |d| d.as_millis() as u64)
    };
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
        let at = v
            .pointer(FLOOD_WINDOW_START_FIELD)
            .or_else(|| v.pointer("/@timestamp"))
            .and_then(Value::as_str);
        timed.entry(group).or_default().push(ms_since(at));
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
    let mut lines = BTreeMap::new();
    let mut all: Vec<u64> = Vec::new();
    for (group, mut times) in timed {
        times.sort_unstable();
        for (window, n) in daemon_windows(&times) {
            lines.insert((group.clone(), window), n);
        }
        all.extend(times);
    }
    all.sort_unstable();
    let all_max = daemon_windows(&all)
        .into_iter()
        .map(|(_, n)| n)
        .max()
        .unwrap_or(0);
    (lines, total, all_max, distinct)
}

/// Sorted times (ms) into the daemon's windows: the first opens one of `FLOOD_WINDOW`, the
/// first one past it the next. (window start, count) in order.
pub(super) fn daemon_windows(sorted_ms: &[u64]) -> Vec<(u64, u64)> {
    let len = FLOOD_WINDOW.as_millis() as u64;
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &t in sorted_ms {
        match out.last_mut() {
            Some((w, n)) if t < *w + len => *n += 1,
            _ => out.push((t, 1)),
        }
    }
    out
}

pub(super) fn run_once(
    bed: &Bed,
    mode: Mode,
    traffic: Traffic,
    packets: u64,
    daemon: &Path,
    dir: &Path,
    seq: usize,
) -> anyhow::Result<Run> {
    let conf = dir.join(format!("syn-{seq}.cfg"));
    std::fs::write(&conf, bed.trafgen_config(traffic.packet()))?;
    let (out_path, err_path) = (
        dir.join(format!("daemon-{seq}.out")),
        dir.join(format!("daemon-{seq}.err")),
    );
    let mut child: Option<Child> = None;
    match mode {
        Mode::NoProgram => {}
        Mode::EmptyXdp => {
            let empty = crate::lab::empty_xdp(daemon)?;
            let mut cmd = bed.node.command(&empty.to_string_lossy());
            // Stopped (SIGTERM) when the run is over, long before its time is up.
            cmd.args(["eth0", "600"])
                .stdout(Stdio::from(File::create(&err_path)?))
                .stderr(Stdio::null());
            child = Some(spawn_until(
                &mut cmd,
                &err_path,
                "attached",
                Duration::from_secs(10),
            )?);
        }
        Mode::Daemon | Mode::DaemonTc => {
            let attach = mode.daemon_hook().map_or("xdp", |(attach, _)| attach);
            let mut cmd = bed.node.nsenter(&daemon.to_string_lossy());
            cmd.args(["run", "--iface", "eth0", "--no-pin", "--attach", attach])
                .env("NO_COLOR", "1")
                .env_remove("RUST_LOG")
                .stdout(Stdio::from(File::create(&out_path)?))
                .stderr(Stdio::from(File::create(&err_path)?));
            child = Some(spawn_until(
                &mut cmd,
                &err_path,
                ": ready",
                Duration::from_secs(20),
            )?);
        }
        Mode::IptablesLog => {
            new_conn_rule(bed, false, &["LOG", "--log-prefix", "nm-bench "])?;
        }
    }
    let start_wall = SystemTime::now();
    let daemon_pid = child.as_ref().filter(|_| mode.is_daemon()).map(Child::id);
    let daemon_cpu = || daemon_pid.map(process_cpu_ns);
    let (rx0, cpu0, own0) = (bed.rx_packets()?, cpu_busy_ns()?, daemon_cpu());
    let send_s = bed.send(&conf, packets, false)?;
    // The daemon's backlog (ring buffer, answer timeout) is part of what the flood costs.
    std::thread::sleep(Duration::from_secs(1));
    let (rx1, cpu1, own1) = (bed.rx_packets()?, cpu_busy_ns()?, daemon_cpu());
    let mut run = Run {
        received: rx1.saturating_sub(rx0),
        send_s,
        cpu_ns: cpu1 - cpu0,
        daemon_cpu_ns: own1.zip(own0).map(|(b, a)| b - a),
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
        let (lines, total, all_max, distinct) = count_alerts(&stdout, start_wall);
        run.alert_lines = lines;
        run.window_lines_all = all_max;
        run.alerts_total = total;
        run.distinct_estimate = distinct;
        run.summary = std::fs::read_to_string(&err_path)?
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok());
        let _ = std::fs::remove_file(&out_path);
    }
    if mode == Mode::IptablesLog {
        xtables(bed, false, &["-F", "INPUT"])?;
        // A fresh conntrack table for the next run: the namespace's entries time out on their
        // own; flushing needs conntrack-tools, so the next iptables run may find some left.
    }
    Ok(run)
}
