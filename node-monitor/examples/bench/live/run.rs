//! What the live section runs: the modes set up in the node's namespace (no program, the
//! empty programs, the daemon on XDP or tc, ip6tables LOG or NFLOG, tcpdump), the traffic
//! cases trafgen sends, and one case's measurement: received packets, CPU, and the run
//! statistics of the programs on the node's eth0.
use std::{
    fs::File,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::Context as _;
use node_monitor_lab::Child;

use super::stats::{self, Counts, OnEth0};
use crate::lab::{
    Bed, Source, TcpPacket, children_cpu_ns, cpu_busy_ns, cpu_irq_ns, new_conn_rule,
    process_cpu_ns, spawn_until, xtables,
};

/// tcpdump's filter in the tcpdump mode: SYNs to 10250 (for IPv6, the SYN flag of a TCP
/// header right after the fixed IPv6 header, since libpcap has no `tcp[]` for IPv6).
pub(super) const TCPDUMP_FILTER: &str = "ip6 and tcp dst port 10250 and ip6[53] & 2 != 0";
pub(super) const TCPDUMP_FILTER4: &str = "ip and tcp dst port 10250 and tcp[13] & 2 != 0";
/// The NFLOG group of the NFLOG mode (its listener reads `nflog:NFLOG_GROUP`).
const NFLOG_GROUP: &str = "5";
/// After trafgen has sent the last packet: the daemon's backlog (ring buffer, answers) is part
/// of what a case costs.
const SETTLE: Duration = Duration::from_millis(1000);
/// The daemon's metrics endpoint in the embedded default config (`metrics.listen`), inside the
/// node's namespace.
const DAEMON_METRICS: ([u8; 4], u16) = ([127, 0, 0, 1], 9630);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, clap::ValueEnum)]
pub(crate) enum Mode {
    NoProgram,
    EmptyXdp,
    ReadXdp,
    Xdp,
    EmptyTc,
    ReadTc,
    Tc,
    IptablesLog,
    Nflog,
    Tcpdump,
}

impl Mode {
    pub(super) const ALL: [Mode; 10] = [
        Mode::NoProgram,
        Mode::EmptyXdp,
        Mode::ReadXdp,
        Mode::Xdp,
        Mode::EmptyTc,
        Mode::ReadTc,
        Mode::Tc,
        Mode::IptablesLog,
        Mode::Nflog,
        Mode::Tcpdump,
    ];
    pub(super) fn name(self) -> &'static str {
        match self {
            Mode::NoProgram => "no program",
            Mode::EmptyXdp => "empty XDP + empty tc egress",
            Mode::ReadXdp => "XDP reading the headers only + empty tc egress",
            Mode::Xdp => "node-monitor, XDP",
            Mode::EmptyTc => "empty tc ingress + egress",
            Mode::ReadTc => "tc ingress reading the headers only + empty tc egress",
            Mode::Tc => "node-monitor, tc",
            Mode::IptablesLog => "ip6tables conntrack NEW -j LOG",
            Mode::Nflog => "ip6tables conntrack NEW -j NFLOG, tcpdump on nflog",
            Mode::Tcpdump => "tcpdump capturing the SYNs",
        }
    }
    /// [`Mode::name`] for a run in IPv4 (`ipv4`), whose LOG and NFLOG rules are iptables ones.
    pub(super) fn label(self, ipv4: bool) -> String {
        if ipv4 {
            self.name().replace("ip6tables", "iptables")
        } else {
            self.name().to_owned()
        }
    }
    /// Whether the mode attaches programs to the node's eth0 (its work is then theirs and its
    /// process's, measured directly).
    pub(super) fn has_programs(self) -> bool {
        matches!(
            self,
            Mode::EmptyXdp | Mode::ReadXdp | Mode::Xdp | Mode::EmptyTc | Mode::ReadTc | Mode::Tc
        )
    }
    /// The ingress statistics of the programs this mode attaches (none: zero).
    pub(super) fn ingress(self, s: &OnEth0) -> Counts {
        match self {
            Mode::EmptyXdp | Mode::ReadXdp | Mode::Xdp => s.xdp,
            _ => s.tc_ingress,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, clap::ValueEnum)]
pub(crate) enum Case {
    Unwatched,
    Established,
    AllowedNew,
    DeniedOneSource,
    DeniedRandom,
}

impl Case {
    pub(super) const ALL: [Case; 5] = [
        Case::Unwatched,
        Case::Established,
        Case::AllowedNew,
        Case::DeniedOneSource,
        Case::DeniedRandom,
    ];
    pub(super) fn name(self) -> &'static str {
        match self {
            Case::Unwatched => "unwatched: SYNs to 8080",
            Case::Established => "watched, allowed, established: ACKs to 10250, one flow",
            Case::AllowedNew => "watched, allowed, new: SYNs to 10250, new source ports",
            Case::DeniedOneSource => "denied new, one source, new source ports",
            Case::DeniedRandom => "denied new, random sources",
        }
    }
    /// What the node sends back, which the tc egress program sees.
    pub(super) fn answers(self) -> &'static str {
        match self {
            Case::Unwatched => "RSTs from 8080 (answer no flagged attempt)",
            Case::Established => "RSTs from 10250 to the allowed ACKs (answer no flagged attempt)",
            Case::AllowedNew => "RSTs from 10250 to the allowed SYNs (answer no flagged attempt)",
            Case::DeniedOneSource => "RSTs answering the denied SYNs of one source",
            Case::DeniedRandom => "RSTs answering the denied SYNs of random sources",
        }
    }
    /// The case's packet, in IPv4 if `ipv4`.
    pub(super) fn packet(self, ipv4: bool) -> TcpPacket {
        let syn = |source, dest_port| TcpPacket {
            source,
            source_port: None,
            dest_port,
            ack: false,
            ipv4,
        };
        match self {
            Case::Unwatched => syn(Source::Generator, 8080),
            Case::Established => TcpPacket {
                source: Source::Generator,
                source_port: Some(40000),
                dest_port: 10250,
                ack: true,
                ipv4,
            },
            Case::AllowedNew => syn(Source::Generator, 10250),
            Case::DeniedOneSource => syn(Source::One, 10250),
            Case::DeniedRandom => syn(Source::Random, 10250),
        }
    }
}

/// What one case measured under one mode.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sample {
    pub(super) received: u64,
    /// Received packets/s while they arrived (see `RxWatch::rate`).
    pub(super) rate: f64,
    /// Busy time of all CPUs (ns), whoever used it ([`cpu_busy_ns`]): what the targets judge.
    pub(super) cpu_all_ns: f64,
    /// Interrupt and softirq time of all CPUs (tick samples), plus trafgen's and the mode's
    /// process's own CPU time (ns). Softirq work done in trafgen's context (most of the node's
    /// receive path, run when trafgen's send re-enables bottom halves) is in both: the kernel
    /// here has no IRQ time accounting, so a tick in it counts as softirq and as trafgen's.
    pub(super) cpu_ns: f64,
    /// The mode's own process's CPU time (ns): the daemon, tcpdump; 0 for the others.
    pub(super) own_ns: f64,
    pub(super) ingress: Counts,
    pub(super) egress: Counts,
    /// What the daemon's data path did with the case's events (node-monitor modes only).
    pub(super) daemon: Option<DaemonCounts>,
}

/// The daemon's event counters over one case, from its /metrics: the events its programs
/// wrote to the ring buffer, and the ones they withheld or lost, by reason.
#[derive(Clone, Copy, Default, Debug)]
pub(super) struct DaemonCounts {
    pub(super) events: f64,
    pub(super) rate_limited: f64,
    pub(super) group_budget: f64,
    pub(super) ringbuf_full: f64,
}

impl DaemonCounts {
    /// The counters now (`GET /metrics` on the daemon's default address, from inside the
    /// node's namespace).
    fn read(bed: &Bed) -> anyhow::Result<DaemonCounts> {
        let (status, body) = crate::http::http_get(&bed.node, DAEMON_METRICS.into(), "/metrics")
            .context("scraping the daemon")?;
        anyhow::ensure!(status == 200, "GET /metrics: {status}");
        let lost = |reason: &str| {
            crate::http::metric_value(
                &body,
                "node_monitor_lost_events_total",
                &[("reason", reason)],
            )
            .unwrap_or(0.0)
        };
        Ok(DaemonCounts {
            events: crate::http::metric_value(&body, "node_monitor_events_total", &[])
                .unwrap_or(0.0),
            rate_limited: lost("rate_limited"),
            group_budget: lost("group_budget"),
            ringbuf_full: lost("ringbuf_full"),
        })
    }
}

impl std::ops::Sub for DaemonCounts {
    type Output = DaemonCounts;
    fn sub(self, o: DaemonCounts) -> DaemonCounts {
        DaemonCounts {
            events: self.events - o.events,
            rate_limited: self.rate_limited - o.rate_limited,
            group_budget: self.group_budget - o.group_budget,
            ringbuf_full: self.ringbuf_full - o.ringbuf_full,
        }
    }
}

impl Sample {
    pub(super) fn rx_rate(&self) -> f64 {
        self.rate
    }
    pub(super) fn cpu_per_packet(&self) -> f64 {
        self.cpu_ns / (self.received.max(1) as f64)
    }
    pub(super) fn cpu_all_per_packet(&self) -> f64 {
        self.cpu_all_ns / (self.received.max(1) as f64)
    }
    pub(super) fn own_per_packet(&self) -> f64 {
        self.own_ns / (self.received.max(1) as f64)
    }
    /// The run time of the programs on the node's eth0 (ingress and egress) and the mode's
    /// process's CPU time, per received packet: the mode's own work, measured directly, with
    /// none of the stack's or the machine's variation in it; not what it costs the rest of the
    /// node (caches, a veth's copy for XDP).
    pub(super) fn own_work_per_packet(&self) -> f64 {
        (self.ingress.ns + self.egress.ns) as f64 / (self.received.max(1) as f64)
            + self.own_per_packet()
    }
}

/// A mode set up in the node's namespace: its process, if it has one (stopped on drop), and
/// the id of the XDP program it attached.
pub(super) struct Session<'a> {
    bed: &'a Bed,
    mode: Mode,
    child: Option<Child>,
    log: PathBuf,
    xdp_id: Option<u32>,
    /// How the XDP program is attached ("native", "generic"), if there is one.
    pub(super) xdp_mode: Option<&'static str>,
    /// The cases are sent as IPv4 (`--live-ipv4`).
    ipv4: bool,
}

/// The programs the session needs: the daemon and the empty-program example.
pub(super) struct Binaries<'a> {
    pub(super) daemon: &'a Path,
    pub(super) empty: &'a Path,
}

impl<'a> Session<'a> {
    pub(super) fn start(
        bed: &'a Bed,
        mode: Mode,
        bins: &Binaries<'_>,
        dir: &Path,
        seq: usize,
        ipv4: bool,
    ) -> anyhow::Result<Session<'a>> {
        let log = dir.join(format!("mode-{seq}.log"));
        let out = dir.join(format!("mode-{seq}.out"));
        let logged = || -> anyhow::Result<(Stdio, Stdio)> {
            Ok((
                Stdio::from(File::create(&out)?),
                Stdio::from(File::create(&log)?),
            ))
        };
        let tcpdump = |iface: &str, filter: &[&str]| -> anyhow::Result<Child> {
            let mut cmd = bed.node.command("tcpdump");
            let (o, e) = logged()?;
            cmd.args(["-i", iface, "-n", "-w", "/dev/null"])
                .args(filter)
                .stdout(o)
                .stderr(e);
            spawn_until(&mut cmd, &log, "listening on", Duration::from_secs(10))
        };
        let child = match mode {
            Mode::NoProgram => None,
            Mode::EmptyXdp | Mode::ReadXdp | Mode::EmptyTc | Mode::ReadTc => {
                // The read-only programs read the headers of the family sent.
                let hooks = match (mode, ipv4) {
                    (Mode::EmptyXdp, _) => "xdp,tc-egress",
                    (Mode::ReadXdp, false) => "xdp-read,tc-egress",
                    (Mode::ReadXdp, true) => "xdp-read4,tc-egress",
                    (Mode::ReadTc, false) => "tc-ingress-read,tc-egress",
                    (Mode::ReadTc, true) => "tc-ingress-read4,tc-egress",
                    _ => "tc-ingress,tc-egress",
                };
                let mut cmd = bed.node.command(&bins.empty.to_string_lossy());
                let (_, e) = logged()?;
                // Stopped (SIGTERM) when the mode is over, long before its time is up.
                cmd.args(["eth0", "900", hooks])
                    .stdout(e)
                    .stderr(Stdio::null());
                Some(spawn_until(
                    &mut cmd,
                    &log,
                    "attached",
                    Duration::from_secs(10),
                )?)
            }
            Mode::Xdp | Mode::Tc => {
                let mut cmd = bed.node.nsenter(&bins.daemon.to_string_lossy());
                let (o, e) = logged()?;
                cmd.args(["run", "--iface", "eth0", "--no-pin", "--attach"])
                    .arg(if mode == Mode::Xdp { "xdp" } else { "tc" })
                    .env("NO_COLOR", "1")
                    .env_remove("RUST_LOG")
                    .stdout(o)
                    .stderr(e);
                Some(spawn_until(
                    &mut cmd,
                    &log,
                    ": ready",
                    Duration::from_secs(20),
                )?)
            }
            Mode::IptablesLog => {
                new_conn_rule(bed, ipv4, &["LOG", "--log-prefix", "nm-bench "])?;
                None
            }
            Mode::Nflog => {
                new_conn_rule(bed, ipv4, &["NFLOG", "--nflog-group", NFLOG_GROUP])?;
                Some(tcpdump(&format!("nflog:{NFLOG_GROUP}"), &[])?)
            }
            Mode::Tcpdump => Some(tcpdump(
                "eth0",
                &[if ipv4 {
                    TCPDUMP_FILTER4
                } else {
                    TCPDUMP_FILTER
                }],
            )?),
        };
        let xdp = stats::xdp_program(bed)?;
        Ok(Session {
            bed,
            mode,
            child,
            log,
            xdp_id: xdp.map(|(id, _)| id),
            xdp_mode: xdp.map(|(_, m)| m),
            ipv4,
        })
    }

    /// Sends `packets` of `case` (with sendto(2) if `sendto`) and measures them.
    pub(super) fn run_case(
        &self,
        case: Case,
        packets: u64,
        sendto: bool,
        conf: &Path,
    ) -> anyhow::Result<Sample> {
        std::fs::write(conf, self.bed.trafgen_config(case.packet(self.ipv4)))?;
        let pid = self.child.as_ref().map(Child::id);
        let own = || pid.map_or(0.0, process_cpu_ns);
        // No process of ours starts between the two readings but trafgen, so that the
        // children's CPU time is trafgen's.
        let daemon = || -> anyhow::Result<Option<DaemonCounts>> {
            matches!(self.mode, Mode::Xdp | Mode::Tc)
                .then(|| DaemonCounts::read(self.bed))
                .transpose()
        };
        // Scraped outside the CPU readings: a scrape is not part of the case's cost.
        let d0 = daemon()?;
        let rx0 = self.bed.rx_packets()?;
        let s0 = stats::read(self.bed, self.xdp_id)?;
        let watch = self.bed.watch_rx()?;
        let (all0, irq0, kids0, own0) = (cpu_busy_ns()?, cpu_irq_ns()?, children_cpu_ns(), own());
        let sent = self.bed.send(conf, packets, sendto);
        std::thread::sleep(SETTLE);
        let rate = watch.rate()?;
        let send_s = sent?;
        let (all1, irq1, kids1, own1) = (cpu_busy_ns()?, cpu_irq_ns()?, children_cpu_ns(), own());
        let s1 = stats::read(self.bed, self.xdp_id)?;
        let rx1 = self.bed.rx_packets()?;
        let d1 = daemon()?;
        let d = s1 - s0;
        let received = rx1.saturating_sub(rx0);
        Ok(Sample {
            received,
            rate: rate.unwrap_or(received as f64 / send_s.max(1e-9)),
            cpu_all_ns: all1 - all0,
            cpu_ns: (irq1 - irq0) + (kids1 - kids0) + (own1 - own0),
            own_ns: own1 - own0,
            ingress: self.mode.ingress(&d),
            egress: d.tc_egress,
            daemon: d1.zip(d0).map(|(b, a)| b - a),
        })
    }

    /// Ends the mode: stops its process (which must exit cleanly, but for tcpdump's and the
    /// empty programs' SIGTERM), removes its rules; what its process said last (tcpdump's
    /// packet counts).
    pub(super) fn finish(mut self) -> anyhow::Result<String> {
        if let Some(mut c) = self.child.take() {
            let st = c.stop(Duration::from_secs(15))?;
            if matches!(self.mode, Mode::Xdp | Mode::Tc) && !st.success() {
                anyhow::bail!(
                    "the daemon exited with {st}:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
        }
        if matches!(self.mode, Mode::IptablesLog | Mode::Nflog) {
            xtables(self.bed, self.ipv4, &["-F", "INPUT"]).context("removing the rule")?;
        }
        let said = std::fs::read_to_string(&self.log).unwrap_or_default();
        Ok(said
            .lines()
            .filter(|l| l.contains("packets captured") || l.contains("dropped by kernel"))
            .collect::<Vec<_>>()
            .join(", "))
    }
}
