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
//! send time; CPU per received packet, all CPUs (busy time: the monotonic clock less
//! `/proc/stat`'s idle, iowait and steal; trafgen and the daemon included) from the start of
//! the flood to one second after it (so that the daemon's backlog is counted); for the
//! daemon, its peak resident memory (`VmHWM`), the alert lines it wrote per port group and
//! flood window, and its exit counters. Everything lives in
//! namespaces made here and removed by their guards; the addresses are documentation ones.
use std::{collections::BTreeMap, fmt::Write as _, path::Path, time::Instant};

use anyhow::bail;
use serde_json::Value;

use self::run::{Mode, Run, Traffic, run_once};
use crate::{
    lab::{
        Bed, NODE, RANDOM_PREFIX, TempDir, load_average, missing_tools, retry_trafgen,
        unpin_all_cpus,
    },
    testrun::median,
};

mod run;

/// Targets of issue 9.
const MAX_ALERT_LINES: u64 = 20;
const MAX_RSS_MIB: f64 = 64.0;
const MAX_CPU_RATIO: f64 = 1.25;
const MIN_RX_RATIO: f64 = 0.90;

/// The daemon's figures of one flood, against its targets.
struct DaemonVerdict {
    traffic: Traffic,
    /// `Mode::Daemon` (XDP) or `Mode::DaemonTc`.
    mode: Mode,
    /// Received rate and CPU per packet, as ratios to no program.
    rx_ratio: f64,
    cpu_ratio: f64,
    /// The same, as ratios to the empty XDP program attached the same way.
    rx_vs_empty: f64,
    cpu_vs_empty: f64,
    /// CPU per packet below iptables LOG's.
    below_ipt: bool,
    /// Peak RSS (MiB).
    rss: Option<f64>,
    /// The most alert lines of one group in one window (and the group), and of all groups.
    lines: Option<(u64, String)>,
    window_lines: Option<u64>,
    runs: Vec<Run>,
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
    let missing = missing_tools(&["trafgen", "ip6tables", "nsenter"]);
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
    let bed = Bed::new("f")?;
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
                let run = retry_trafgen(
                    &format!("{} / {}", traffic.name(), mode.name()),
                    &mut retries,
                    || Ok(()),
                    || run_once(&bed, mode, traffic, packets, daemon, &dir.0, seq),
                )?;
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
         `node-monitor run --iface eth0 --no-pin --attach xdp` and `--attach tc` on the embedded \
         default config (its group budget, 1,000 events per second per group, on), and \
         with `ip6tables -A INPUT -p tcp --dport 10250 -m conntrack --ctstate NEW -j LOG` in \
         the node's namespace, and with the object's empty XDP program attached the same way \
         (the cost of XDP on a veth itself, which the daemon pays too: attaching any XDP \
         program makes the veth queue each frame to its own NAPI poll and copy it into a \
         linear buffer with XDP's headroom before the program runs (trafgen's frames are not \
         linear), costs that native XDP on a NIC does not have; so the XDP rows are judged against it as \
         well as against no program); {rounds} round(s), the \
         five modes one after the other for each flood, their order rotating from round to \
         round; medians over the rounds (one round: single runs, and this VM's run-to-run \
         noise is large). Received: the node interface's rx packets; rate: received over \
         trafgen's send time. CPU: busy time of all CPUs (trafgen and the daemon included: the \
         CPUs' time on the monotonic clock less the idle, iowait and steal time of \
         `/proc/stat`, which the kernel measures, unlike its tick-sampled user and system \
         time) from the start of the flood to 1 s after it, per received packet; the \
         daemon's own share of it is its process's user and system time over the same \
         interval (`/proc/PID/stat`). Peak RSS: \
         the daemon's `VmHWM` before it is stopped. Alert lines: the daemon's stdout (ECS) by \
         port group (rule id for alerts without one) and the daemon's 10 s flood window (the \
         first alert opens one, the first alert past it the next; a flood alert counts in \
         the window it summarises), the largest count. The bench process and what it starts may use all {cpus} CPUs (the \
         pipeline section's pinning is undone). Wall time {took:.0} s; 1-minute load average \
         {load_before} before and {load_after} after (other work on the machine shares its CPUs \
         with every mode alike, but widens the spread).\n"
    )?;
    writeln!(
        report,
        "| flood | mode | received (median) | received/s | ratio to no program | ratio to empty XDP | CPU ns/packet | ratio to no program | ratio to empty XDP | of which the daemon's process (ns/packet) | daemon peak RSS (MiB) | most alert lines per group and window | alert lines in all |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
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
        let empty = &runs[&(traffic, Mode::EmptyXdp)];
        let (empty_rate, empty_cpu) = (
            med(empty, &|r| r.rx_rate()),
            med(empty, &|r| r.cpu_per_packet()),
        );
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
                "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} |",
                traffic.name(),
                mode.name(),
                med(v, &|r| r.received as f64),
                rate,
                rate / base_rate,
                rate / empty_rate,
                cpu,
                cpu / base_cpu,
                cpu / empty_cpu,
                if mode.is_daemon() {
                    format!("{:.0}", med(v, &Run::daemon_cpu_per_packet))
                } else {
                    "-".to_owned()
                },
                rss.map_or("-".to_owned(), |m| format!("{m:.1}")),
                match &lines {
                    Some((n, g)) if mode.is_daemon() => format!("{n} ({g})"),
                    _ => "-".to_owned(),
                },
                match total {
                    Some(t) if mode.is_daemon() => t.to_string(),
                    _ => "-".to_owned(),
                },
            )?;
            if mode.is_daemon() {
                verdicts.push(DaemonVerdict {
                    traffic,
                    mode,
                    rx_ratio: rate / base_rate,
                    cpu_ratio: cpu / base_cpu,
                    rx_vs_empty: rate / empty_rate,
                    cpu_vs_empty: cpu / empty_cpu,
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
        mode,
        rx_ratio,
        cpu_ratio,
        rx_vs_empty,
        cpu_vs_empty,
        below_ipt,
        rss,
        lines,
        window_lines,
        runs: v,
    } in &verdicts
    {
        let t = format!(
            "{}, {}",
            traffic.name(),
            mode.daemon_hook().map_or("XDP", |(_, hook)| hook)
        );
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
        if *mode == Mode::Daemon {
            // On a veth, attaching any XDP program makes the veth copy every frame that is
            // not linear with XDP's headroom (all of trafgen's) before the program runs: the
            // empty program's row. What the
            // daemon's own program and process add is judged against that row too.
            writeln!(
                report,
                "| {t} | received rate >= {:.0}% of the empty XDP program's (veth's XDP copy in both) | {:.0}% | {} |",
                MIN_RX_RATIO * 100.0,
                rx_vs_empty * 100.0,
                yes(*rx_vs_empty >= MIN_RX_RATIO)
            )?;
            writeln!(
                report,
                "| {t} | CPU/packet <= {MAX_CPU_RATIO} x the empty XDP program's | {cpu_vs_empty:.2} x | {} |",
                yes(*cpu_vs_empty <= MAX_CPU_RATIO)
            )?;
        }
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
    for (traffic, mode) in Traffic::ALL
        .into_iter()
        .flat_map(|t| [(t, Mode::Daemon), (t, Mode::DaemonTc)])
    {
        let v = &runs[&(traffic, mode)];
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
                "{}, {} (last round): kubelet new connections {}, events {}, rate-limited {}, \
                 withheld by the group budget {}, lost to a full ring buffer {}; records read {} \
                 (the events above plus the egress program's answer events, which no group \
                 counter counts); \
                 tables at exit: {}, {}, {}, {}.\n",
                if mode == Mode::DaemonTc {
                    "Daemon on tc"
                } else {
                    "Daemon on XDP"
                },
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
