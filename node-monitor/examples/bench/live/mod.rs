//! The live-traffic section: what the programs cost on real packets, not on one test packet
//! repeated with every map entry hot in cache.
//!
//! Two lab namespaces joined by a veth; trafgen (netsniff-ng) in one sends each traffic case
//! ([`Case`]) to the other, the node, as fast as it can on one CPU, in IPv6 (or IPv4 with
//! `--live-ipv4`, where the rules below are iptables ones). The node runs each mode
//! ([`Mode`]) in turn: no program, the daemon on XDP and on tc (`node-monitor run --iface eth0
//! --no-pin --attach xdp|tc`, the embedded default config; it attaches tc egress too), the
//! same hooks with empty programs (`examples/empty_xdp`), ip6tables
//! `-m conntrack --ctstate NEW -j LOG` and `-j NFLOG` (with tcpdump listening on the NFLOG
//! group), and tcpdump capturing the SYNs to 10250. Rounds alternate: the mode order rotates
//! from round to round, the cases run in a fixed order within a mode. BPF run statistics are
//! on for the whole section (`BPF_ENABLE_STATS`, which the kernel turns off again when the
//! last holder's fd closes, also if this process dies; `kernel.bpf_stats_enabled` is
//! not written).
//!
//! Measured per case and mode: the received packets (the node's eth0), their rate over
//! trafgen's send time, CPU per packet (busy time of all CPUs; beside it the mode's own work
//! measured directly, and the older attributed measure), and per-packet run time of the
//! programs on eth0 (`run_time_ns / run_cnt`, read by attachment). Reported: medians over rounds; overheads
//! over the empty program of the same hook, as the median of the per-round differences.
use std::{collections::BTreeMap, fmt::Write as _, path::Path, time::Instant};

use anyhow::{Context as _, bail};
use node_monitor::metrics::BpfStats;

use self::run::{Binaries, Case, DaemonCounts, Mode, Sample, Session};
pub(crate) use self::run::{Case as LiveCase, Mode as LiveMode};
use crate::{
    lab::{
        Bed, GEN, GEN4, InterruptGuard, NODE, NODE4, RANDOM_PREFIX, RANDOM_PREFIX4, TempDir,
        load_average, missing_tools, retry_trafgen, unpin_all_cpus, xtables_tool,
    },
    testrun::median,
};

mod run;
mod stats;

/// Targets of issue 10: overhead over the empty program (ns).
const UNWATCHED_NS: f64 = 20.0;
const ESTABLISHED_NS: f64 = 60.0;
const DENIED_ONE_NS: f64 = 250.0;
const DENIED_RANDOM_NS: f64 = 400.0;
const EGRESS_NON_ANSWER_NS: f64 = 20.0;
/// node-monitor on XDP against no program, unwatched case.
const MIN_XDP_RATE: f64 = 0.97;
/// Added CPU per denied packet, at most this share of iptables LOG's.
const MAX_CPU_SHARE_OF_LOG: f64 = 0.2;

type Samples = BTreeMap<(Case, Mode), Vec<Sample>>;

/// Whether a target is met by `measured` (`ok`); "not run" when a run restricted to some modes
/// and cases (`--live-mode`, `--live-case`) did not measure it.
fn met(measured: f64, ok: bool) -> &'static str {
    if measured.is_nan() {
        "not run"
    } else if ok {
        "met"
    } else {
        "**missed**"
    }
}

/// A figure of the report, formatted as an `f64` is (precision and sign flags included), or
/// "-" where the run did not measure it (NaN: a mode or case it left out).
#[derive(Clone, Copy)]
struct Fig(f64);

impl std::fmt::Display for Fig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_nan() {
            f.write_str("-")
        } else {
            std::fmt::Display::fmt(&self.0, f)
        }
    }
}

fn sysctl_bpf_stats() -> String {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned())
}

/// The figures of one case the report needs, from the samples.
struct Figures<'a> {
    s: &'a Samples,
}

impl Figures<'_> {
    fn of(&self, case: Case, mode: Mode) -> &[Sample] {
        self.s.get(&(case, mode)).map_or(&[], Vec::as_slice)
    }
    fn med(&self, case: Case, mode: Mode, f: impl Fn(&Sample) -> f64) -> f64 {
        let mut v: Vec<f64> = self.of(case, mode).iter().map(f).collect();
        if v.is_empty() {
            return f64::NAN;
        }
        median(&mut v)
    }
    /// Median over rounds of `f(mode) - f(base)`, both of the same round; and the rounds.
    fn diff(
        &self,
        case: Case,
        mode: Mode,
        base: Mode,
        f: impl Fn(&Sample) -> f64,
    ) -> (f64, Vec<f64>) {
        let rounds: Vec<f64> = self
            .of(case, mode)
            .iter()
            .zip(self.of(case, base))
            .map(|(a, b)| f(a) - f(b))
            .collect();
        let mut v = rounds.clone();
        let m = if v.is_empty() {
            f64::NAN
        } else {
            median(&mut v)
        };
        (m, rounds)
    }
    /// Median over rounds of `f(mode) / f(base)`.
    fn ratio(&self, case: Case, mode: Mode, base: Mode, f: impl Fn(&Sample) -> f64) -> f64 {
        let mut v: Vec<f64> = self
            .of(case, mode)
            .iter()
            .zip(self.of(case, base))
            .map(|(a, b)| f(a) / f(b))
            .collect();
        if v.is_empty() {
            return f64::NAN;
        }
        median(&mut v)
    }
}

fn rounds_list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:+.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The live section. `daemon`: the node-monitor binary; the empty-program example is found
/// by [`empty_xdp`](crate::lab::empty_xdp).
///
/// `sendto`: trafgen sends with sendto(2) instead of its TX ring, so that the node's skbs are
/// linear (see `Bed::send`).
pub(crate) fn live(
    packets: u64,
    rounds: usize,
    sendto: bool,
    ipv4: bool,
    only: (&[Mode], &[Case]),
    daemon: &Path,
    report: &mut String,
) -> anyhow::Result<()> {
    // Tuning runs may restrict the modes and cases; the report's tables then show "-" for
    // what did not run, and its targets "not run".
    let (only_modes, only_cases) = only;
    let run_mode = |m: &Mode| only_modes.is_empty() || only_modes.contains(m);
    let run_case = |c: &Case| only_cases.is_empty() || only_cases.contains(c);
    writeln!(
        report,
        "## Live traffic (trafgen over veth, BPF run statistics{})\n",
        if ipv4 { ", IPv4" } else { "" }
    )?;
    let missing = missing_tools(&["trafgen", xtables_tool(ipv4), "nsenter", "tcpdump"]);
    if !missing.is_empty() {
        writeln!(
            report,
            "Skipped: {} not installed (`cargo xtask setup` installs netsniff-ng, iptables and \
             tcpdump).\n",
            missing.join(", ")
        )?;
        eprintln!("live section skipped: {missing:?} missing");
        return Ok(());
    }
    let empty = crate::lab::empty_xdp(daemon)?;
    if !daemon.exists() {
        bail!(
            "no {} (`cargo xtask bench` builds it; or pass --daemon)",
            daemon.display()
        );
    }
    let bins = Binaries {
        daemon,
        empty: &empty,
    };
    let interrupt = InterruptGuard::install();
    let sysctl_before = sysctl_bpf_stats();
    let bpf_stats = BpfStats::enable().context("enabling BPF run statistics")?;
    let cpus = unpin_all_cpus()?;
    let load_before = load_average();
    let wall = Instant::now();
    let bed = Bed::new("l")?;
    let dir = TempDir(std::env::temp_dir().join(format!("nm-bench-live-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let conf = dir.0.join("packet.cfg");
    let mut samples: Samples = BTreeMap::new();
    let mut retries: Vec<String> = Vec::new();
    let mut tcpdump_said: Vec<String> = Vec::new();
    let mut xdp_modes = std::collections::BTreeSet::new();
    let mut seq = 0;
    for round in 0..rounds {
        let mut modes = Mode::ALL.to_vec();
        modes.rotate_left(round % Mode::ALL.len());
        for mode in modes.into_iter().filter(run_mode) {
            interrupt.check()?;
            seq += 1;
            eprintln!("live round {}/{rounds}: {}", round + 1, mode.label(ipv4));
            let session = Session::start(&bed, mode, &bins, &dir.0, seq, ipv4)
                .with_context(|| format!("starting {}", mode.label(ipv4)))?;
            if let Some(m) = session.xdp_mode {
                xdp_modes.insert(format!("{}: {m}", mode.label(ipv4)));
            }
            for case in Case::ALL.into_iter().filter(run_case) {
                let sample = retry_trafgen(
                    &format!("{} / {}", case.name(), mode.label(ipv4)),
                    &mut retries,
                    || interrupt.check(),
                    || session.run_case(case, packets, sendto, &conf),
                )?;
                samples.entry((case, mode)).or_default().push(sample);
            }
            let said = session.finish()?;
            if !said.is_empty() {
                tcpdump_said.push(format!(
                    "{} (round {}): {said}",
                    mode.label(ipv4),
                    round + 1
                ));
            }
        }
    }
    drop(bed);
    drop(bpf_stats);
    let sysctl_after = sysctl_bpf_stats();
    let took = wall.elapsed().as_secs_f64();
    let load_after = load_average();
    let f = Figures { s: &samples };

    writeln!(
        report,
        "Two lab namespaces joined by a veth, nothing else on them. trafgen (netsniff-ng) in \
         one sends {packets} {family} packets per case to the other, the node ({node}), as fast \
         as it can on one CPU, {how}. Cases: SYNs to 8080 (unwatched) from the generator \
         ({gen}, inside the node's subnet, which the embedded default config allows on the \
         kubelet port), a new random source port each; ACKs to 10250 from the generator, one \
         5-tuple (watched, allowed, established); SYNs to 10250 from the generator, a new \
         random source port each (watched, allowed, new); SYNs to 10250 from one denied source \
         in {prefix}, a new random source port each; SYNs to 10250 from a new random source in \
         {prefix} each{few_sources}. Nothing listens on the node, so it answers every packet with a \
         RST, which the tc egress program sees: the egress rows. Modes, one after the other \
         for all the cases, their order rotating from round to round: {modes}. node-monitor is \
         `node-monitor run --iface eth0 --no-pin --attach xdp|tc` on the embedded default \
         config (group budget 1,000 events/s, per-source token bucket on), which attaches tc \
         egress as well; the empty programs are attached the same way by `examples/empty_xdp` \
         (the object's `nm_baseline` on XDP, native first and generic where that fails, as the daemon attaches; a \
         two-instruction `TC_ACT_OK` classifier on tcx ingress and egress; and programs that \
         read the headers only: on XDP and tcx ingress, a few instructions that load the bytes \
         node-monitor's first look reads of these {family} TCP segments ({read}) and return, \
         the tc one copying the first {headers} bytes to its stack with `bpf_skb_load_bytes` \
         instead when the skb's headers are not linear, as node-monitor's tc program does). \
         NFLOG has a listener: tcpdump on `nflog:5`, \
         writing to /dev/null. tcpdump: `tcpdump -i eth0 -w /dev/null '{filter}'`. \
         {rounds} round(s); medians over rounds; overheads and ratios are the median of the \
         per-round differences and ratios, each pair measured in the same round.\n\n\
         Per-packet run time: the kernel's BPF statistics (`run_time_ns / run_cnt`) of the \
         programs attached to the node's eth0 (found by attachment, not by name), over each \
         case, with `BPF_ENABLE_STATS` held for the section (`kernel.bpf_stats_enabled` read \
         {sysctl_before} before it and {sysctl_after} after). Rate: received packets per second \
         at the node's eth0 while they arrive (its rx counter read every 2 ms from a thread in \
         the node's namespace, from the first packet seen to the last, so that trafgen's start \
         and exit are not counted). CPU per packet, all CPUs (what the targets judge, as the \
         flood section does, and as issue 10 measured): the busy time of all CPUs from the \
         start of the case to 1 s after it (the daemon's backlog is part of a case), per \
         received packet, whoever used it (trafgen, the node's receive path, the mode's \
         process): the CPUs' time on the monotonic clock less the idle, iowait and steal time \
         the kernel measures (`/proc/stat`, 10 ms units), not the sum of user, system and \
         softirq tick samples. It is a measure only while nothing else runs on the machine, \
         and even then this VM's speed drifts by 10 to 20% over tens of seconds: see the \
         rounds. \"Its programs and process\": the mode's own work, measured directly, with \
         none of that drift: the run time of its programs on the node's eth0 (ingress and \
         egress, BPF statistics) plus its process's CPU time (the daemon's, tcpdump's), per \
         received packet; a floor under what it adds (it leaves out what it costs the rest \
         of the node: caches, and on a veth the copy any XDP program makes it do). \
         Attributed CPU (what runs before 2026-12-08 judged): interrupt and softirq tick \
         samples of all CPUs plus the CPU time of trafgen and of the mode's process; without \
         IRQ time accounting (this kernel has none) the softirq work done in trafgen's \
         context, most of the node's receive path here, counts in both, and which context \
         runs it moves from mode to mode. {cpus} CPUs; wall time {took:.0} s; 1-minute load \
         average {load_before} before and {load_after} after. The machine is shared with other builds: absolute figures move \
         from run to run; compare within a run.\n",
        modes = Mode::ALL.map(|m| m.label(ipv4)).join("; "),
        family = if ipv4 { "IPv4" } else { "IPv6" },
        node = if ipv4 { NODE4 } else { NODE },
        gen = if ipv4 { GEN4 } else { GEN },
        prefix = if ipv4 { RANDOM_PREFIX4 } else { RANDOM_PREFIX },
        few_sources = if ipv4 {
            " (256 addresses, the most the lab's documentation ranges leave: each source \
             comes back every 256 packets or so, unlike the IPv6 case's new source per packet)"
        } else {
            ""
        },
        read = if ipv4 {
            "EtherType, version and header length, total length, protocol, destination port, \
             data offset, flags"
        } else {
            "EtherType, payload length, next header, destination port, data offset, flags"
        },
        headers = if ipv4 { 54 } else { 74 },
        filter = if ipv4 {
            run::TCPDUMP_FILTER4
        } else {
            run::TCPDUMP_FILTER
        },
        how = if sendto {
            "with one sendto(2) per packet (`-t 0`; `--live-sendto`), so that the node's skbs \
             are linear, as the headers of a NIC's received packets mostly are"
        } else {
            "from its TX ring, which hands the node skbs with only the Ethernet header linear \
             and the rest in page fragments (`--live-sendto` sends with sendto(2) instead: \
             linear skbs)"
        },
    )?;

    // Per-packet run time.
    writeln!(
        report,
        "| case | program | empty XDP (ns) | node-monitor XDP (ns) | overhead (rounds) | \
         empty tc (ns) | node-monitor tc (ns) | overhead (rounds) | target |\n\
         |---|---|---:|---:|---|---:|---:|---|---:|"
    )?;
    let ingress = |s: &Sample| s.ingress.per_run();
    let egress = |s: &Sample| s.egress.per_run();
    let target = |case: Case| match case {
        Case::Unwatched => Some(UNWATCHED_NS),
        Case::Established => Some(ESTABLISHED_NS),
        Case::AllowedNew => None,
        Case::DeniedOneSource => Some(DENIED_ONE_NS),
        Case::DeniedRandom => Some(DENIED_RANDOM_NS),
    };
    let egress_target = |case: Case| {
        matches!(case, Case::Unwatched | Case::Established | Case::AllowedNew)
            .then_some(EGRESS_NON_ANSWER_NS)
    };
    for case in Case::ALL {
        for (what, get, tgt) in [
            (
                "ingress (XDP or tc)".to_owned(),
                &ingress as &dyn Fn(&Sample) -> f64,
                target(case),
            ),
            (
                format!("tc egress: {}", case.answers()),
                &egress,
                egress_target(case),
            ),
        ] {
            let (ox, rx) = f.diff(case, Mode::Xdp, Mode::EmptyXdp, get);
            let (ot, rt) = f.diff(case, Mode::Tc, Mode::EmptyTc, get);
            let (ox, ot) = (Fig(ox), Fig(ot));
            writeln!(
                report,
                "| {} | {what} | {:.0} | {:.0} | {ox:+.0} ({}) | {:.0} | {:.0} | {ot:+.0} ({}) | {} |",
                case.name(),
                Fig(f.med(case, Mode::EmptyXdp, get)),
                Fig(f.med(case, Mode::Xdp, get)),
                rounds_list(&rx),
                Fig(f.med(case, Mode::EmptyTc, get)),
                Fig(f.med(case, Mode::Tc, get)),
                rounds_list(&rt),
                tgt.map_or(String::new(), |t| format!("<= +{t:.0}")),
            )?;
        }
    }
    writeln!(report)?;

    // Ingress against programs that only read the headers.
    writeln!(
        report,
        "Ingress against programs that only read the headers (the bytes node-monitor's first \
         look reads, in place; on tc, a copy of the first {} bytes made with \
         `bpf_skb_load_bytes` when the skb's headers are not linear, as node-monitor's tc \
         program makes it) and decide nothing. What such a program costs over the empty one is \
         what reading the headers costs any program on that hook (on tc, with the copy out of \
         a non-linear skb); what node-monitor costs over it is its own work.\n\n\
         | case | hook | empty (ns) | headers read only (ns) | read over empty (rounds) | \
         node-monitor (ns) | node-monitor over the read (rounds) |\n\
         |---|---|---:|---:|---|---:|---|",
        if ipv4 { 54 } else { 74 }
    )?;
    for case in Case::ALL {
        for (hook, empty, read, nm) in [
            ("XDP", Mode::EmptyXdp, Mode::ReadXdp, Mode::Xdp),
            ("tc", Mode::EmptyTc, Mode::ReadTc, Mode::Tc),
        ] {
            let (or, rr) = f.diff(case, read, empty, ingress);
            let (on, rn) = f.diff(case, nm, read, ingress);
            let (or, on) = (Fig(or), Fig(on));
            writeln!(
                report,
                "| {} | {hook} | {:.0} | {:.0} | {or:+.0} ({}) | {:.0} | {on:+.0} ({}) |",
                case.name(),
                Fig(f.med(case, empty, ingress)),
                Fig(f.med(case, read, ingress)),
                rounds_list(&rr),
                Fig(f.med(case, nm, ingress)),
                rounds_list(&rn),
            )?;
        }
    }
    writeln!(report)?;

    // Rate and CPU.
    writeln!(
        report,
        "| case | mode | received/s | vs no program | CPU ns/packet, all CPUs | added over no \
         program (rounds) | its programs and process | attributed CPU ns/packet | added over \
         no program |\n|---|---|---:|---:|---:|---|---:|---:|---:|"
    )?;
    let rate = |s: &Sample| s.rx_rate();
    let cpu = |s: &Sample| s.cpu_all_per_packet();
    let attributed = |s: &Sample| s.cpu_per_packet();
    for case in Case::ALL {
        for mode in Mode::ALL {
            let (added, rounds) = f.diff(case, mode, Mode::NoProgram, cpu);
            writeln!(
                report,
                "| {} | {} | {:.0} | {:.2} | {:.0} | {:+.0} ({}) | {:.0} | {:.0} | {:+.0} |",
                case.name(),
                mode.label(ipv4),
                Fig(f.med(case, mode, rate)),
                Fig(f.ratio(case, mode, Mode::NoProgram, rate)),
                Fig(f.med(case, mode, cpu)),
                Fig(added),
                rounds_list(&rounds),
                Fig(if mode.has_programs() {
                    f.med(case, mode, Sample::own_work_per_packet)
                } else {
                    // Netfilter's and the capture's work is not measured apart.
                    f64::NAN
                }),
                Fig(f.med(case, mode, attributed)),
                Fig(f.diff(case, mode, Mode::NoProgram, attributed).0),
            )?;
        }
    }
    writeln!(report)?;

    // Targets.
    writeln!(
        report,
        "| target (issue 10) | measured | |\n|---|---|:---:|"
    )?;
    for case in Case::ALL {
        if let Some(t) = target(case) {
            for (hook, mode, empty) in [
                ("XDP", Mode::Xdp, Mode::EmptyXdp),
                ("tc", Mode::Tc, Mode::EmptyTc),
            ] {
                let (o, _) = f.diff(case, mode, empty, ingress);
                writeln!(
                    report,
                    "| {}, {hook}: overhead <= +{t:.0} ns | {:+.0} ns | {} |",
                    case.name(),
                    Fig(o),
                    met(o, o <= t)
                )?;
            }
        }
    }
    for case in Case::ALL {
        if let Some(t) = egress_target(case) {
            let (ox, _) = f.diff(case, Mode::Xdp, Mode::EmptyXdp, egress);
            let (ot, _) = f.diff(case, Mode::Tc, Mode::EmptyTc, egress);
            writeln!(
                report,
                "| tc egress, {}: overhead <= +{t:.0} ns | {:+.0} ns (XDP run), {:+.0} ns (tc run) | {} |",
                case.answers(),
                Fig(ox),
                Fig(ot),
                met(ox + ot, ox <= t && ot <= t)
            )?;
        }
    }
    let r = f.ratio(Case::Unwatched, Mode::Xdp, Mode::NoProgram, rate);
    writeln!(
        report,
        "| {}: node-monitor XDP's rate >= {:.0}% of no program's | {:.1}% | {} |",
        Case::Unwatched.name(),
        MIN_XDP_RATE * 100.0,
        Fig(r * 100.0),
        met(r, r >= MIN_XDP_RATE)
    )?;
    for case in [Case::DeniedOneSource, Case::DeniedRandom] {
        let (log, _) = f.diff(case, Mode::IptablesLog, Mode::NoProgram, cpu);
        let (log_attr, _) = f.diff(case, Mode::IptablesLog, Mode::NoProgram, attributed);
        for (hook, mode) in [("XDP", Mode::Xdp), ("tc", Mode::Tc)] {
            let (added, _) = f.diff(case, mode, Mode::NoProgram, cpu);
            let (added_attr, _) = f.diff(case, mode, Mode::NoProgram, attributed);
            let own = f.med(case, mode, Sample::own_work_per_packet);
            writeln!(
                report,
                "| {}, node-monitor {hook}: added CPU (all CPUs) <= 1/5 of iptables LOG's \
                 ({:+.0} ns) | {:+.0} ns ({:.2} of LOG's); its programs and daemon: {:.0} ns \
                 ({:.2}); attributed: {:+.0} ns ({:.2} of LOG's {:+.0}) | {} |",
                case.name(),
                Fig(log),
                Fig(added),
                Fig(added / log),
                Fig(own),
                Fig(own / log),
                Fig(added_attr),
                Fig(added_attr / log_attr),
                Fig(log_attr),
                met(added / log, added <= MAX_CPU_SHARE_OF_LOG * log)
            )?;
        }
    }
    writeln!(report)?;
    // What the daemon's programs did with each case's events.
    writeln!(
        report,
        "What node-monitor's programs did with each case's events (the daemon's \
         `node_monitor_events_total` and `node_monitor_lost_events_total` over the case, read \
         from its /metrics after the settle time; medians over rounds): events written to the \
         ring buffer, withheld by the per-source budget, by the group budget, lost to a full \
         ring.\n\n\
         | case | XDP: events | per-source | group | ring full | tc: events | per-source | \
         group | ring full |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for case in Case::ALL {
        let mut row = format!("| {} |", case.name());
        for mode in [Mode::Xdp, Mode::Tc] {
            for get in [
                |c: &DaemonCounts| c.events,
                |c: &DaemonCounts| c.rate_limited,
                |c: &DaemonCounts| c.group_budget,
                |c: &DaemonCounts| c.ringbuf_full,
            ] {
                let v = Fig(f.med(case, mode, |s| s.daemon.as_ref().map_or(f64::NAN, get)));
                write!(row, " {v:.0} |")?;
            }
        }
        writeln!(report, "{row}")?;
    }
    writeln!(report)?;
    // Sanity: the programs ran once per received packet.
    let mut runs = Vec::new();
    for case in Case::ALL {
        for mode in Mode::ALL.into_iter().filter(|m| m.has_programs()) {
            let ratio = f.med(case, mode, |s| {
                s.ingress.runs as f64 / s.received.max(1) as f64
            });
            runs.push(format!("{:.3}", Fig(ratio)));
        }
    }
    writeln!(
        report,
        "Ingress program runs per received packet (every case and program mode, medians): {}.\n",
        runs.join(", ")
    )?;
    writeln!(
        report,
        "XDP attached as: {}.\n",
        xdp_modes.into_iter().collect::<Vec<_>>().join("; ")
    )?;
    if !tcpdump_said.is_empty() {
        writeln!(
            report,
            "tcpdump at exit, over all cases of its mode: {}.\n",
            tcpdump_said.join("; ")
        )?;
    }
    if !retries.is_empty() {
        writeln!(
            report,
            "Runs made again after trafgen failed (its TX ring flush returned EAGAIN): {}.\n",
            retries.join("; ")
        )?;
    }
    let nf_log_all_netns = std::fs::read_to_string("/proc/sys/net/netfilter/nf_log_all_netns")
        .map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned());
    writeln!(
        report,
        "iptables LOG: the kernel writes nothing from a LOG rule in a namespace other than the \
         initial one unless `net.netfilter.nf_log_all_netns` is 1 (here: {nf_log_all_netns}); \
         the bench does not change that host-wide setting, so with 0 the LOG row costs \
         conntrack and the rule, not the log lines. NFLOG is per namespace and has its \
         listener here.\n"
    )?;
    Ok(())
}
