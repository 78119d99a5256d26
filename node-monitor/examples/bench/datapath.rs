//! The data-path section: ns/packet of the XDP program through BPF_PROG_TEST_RUN for each
//! case, against an empty XDP_PASS program measured in the same rounds, and the cost of a
//! flow-table insert.

use std::{fmt::Write as _, net::Ipv4Addr, time::Instant};

use anyhow::Context as _;
use node_monitor::{
    config::Config,
    datapath::{Datapath, LoadOptions},
};

use crate::{
    packets::{ACK, Frame, SYN},
    testrun::{NODE, median, run},
};

const ALLOWED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 200);
const DENIED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);

/// A config with the kubelet group's allowlist holding 1,000 CIDRs (500 IPv4 /32s and
/// 500 IPv6 /64s, all in documentation ranges), sampling 1-in-100.
fn bench_config() -> anyhow::Result<Config> {
    let mut allow = Vec::new();
    for i in 0..=255u8 {
        allow.push(format!("\"203.0.113.{i}/32\""));
    }
    for i in 0..=255u8 {
        if allow.len() == 500 {
            break;
        }
        if i != 77 {
            allow.push(format!("\"198.51.100.{i}/32\""));
        }
    }
    for i in 0..500u32 {
        allow.push(format!(
            "\"2001:db8:{:x}:{:x}::/64\"",
            0x100 + i / 256,
            i % 256
        ));
    }
    if let Ok(n) = std::env::var("NM_BENCH_CIDRS") {
        allow.truncate(n.parse()?);
    }
    let yaml = format!(
        "groups:\n  kubelet: {{ protocols: [tcp], ports: [\"10250\"], allow: [{}] }}\n\
         sampling: {{ allowed_flows_one_in: 100 }}\n\
         limits: {{ events_per_source_per_second: {rate}, events_per_group_per_second: 0, \
         ring_buffer_bytes: 268435456 }}\n",
        allow.join(", "),
        rate = std::env::var("NM_BENCH_RATE").unwrap_or_else(|_| "4294967295".into())
    );
    Ok(Config::from_yaml(&yaml, "bench")?)
}

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    target_ns: Option<f64>,
    /// Every repeat is a new connection (idle timeout 0): the event path runs each time.
    fresh_each_repeat: bool,
}

/// The data-path section: ns/packet per case against the empty program.
pub(crate) fn data_path(repeat: u32, rounds: usize, report: &mut String) -> anyhow::Result<()> {
    if repeat < 1_000_000 {
        eprintln!("note: repeat {repeat} is below the 1,000,000 the report asks for");
    }
    let cfg = bench_config()?;
    let mut dp = Datapath::load(&cfg, &[], &LoadOptions { pin_dir: None })?;
    dp.baseline_program()?;
    let normal = dp.settings()?;
    let fresh = node_monitor_common::Settings {
        flow_idle_ns: 0,
        ..normal
    };
    let mut ring = dp.take_events().context("ring buffer")?;

    let cases = [
        Case {
            name: "unwatched TCP packet (dport 8080)",
            frame: Frame::tcp(DENIED, NODE, 40000, 8080, ACK).build(),
            target_ns: Some(15.0),
            fresh_each_repeat: false,
        },
        Case {
            name: "watched, allowed source, established (ACK), 1,000 CIDRs",
            frame: Frame::tcp(ALLOWED, NODE, 40000, 10250, ACK).build(),
            target_ns: Some(60.0),
            fresh_each_repeat: false,
        },
        Case {
            name: "watched, allowed source, new connection (SYN), sampled 1-in-100",
            frame: Frame::tcp(ALLOWED, NODE, 40001, 10250, SYN).build(),
            target_ns: None,
            fresh_each_repeat: true,
        },
        Case {
            name: "watched, denied source, new connection with event",
            frame: Frame::tcp(DENIED, NODE, 40002, 10250, SYN).build(),
            target_ns: Some(200.0),
            fresh_each_repeat: true,
        },
    ];
    let mut base = Vec::new();
    let mut per_case: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let started = Instant::now();
    for round in 0..rounds {
        // Baseline first and last in each round, so drift shows up in both.
        let b0 = run(dp.baseline_program()?, &cases[0].frame, repeat)?;
        for (i, c) in cases.iter().enumerate() {
            dp.set_settings(if c.fresh_each_repeat { fresh } else { normal })?;
            per_case[i].push(run(dp.xdp_program()?, &c.frame, repeat)?);
            // Empty the ring so the next round measures emits, not a full ring.
            while ring.next().is_some() {}
        }
        let b1 = run(dp.baseline_program()?, &cases[0].frame, repeat)?;
        base.push((b0 + b1) / 2.0);
        eprintln!("round {}/{} done", round + 1, rounds);
    }
    dp.set_settings(normal)?;

    // Check that the denied case really emitted events rather than losing them.
    let counters = dp.group_counters()?;
    let denied: u64 = counters
        .iter()
        .filter(|c| c.verdict == 1)
        .map(|c| c.stats.events)
        .sum();
    let lost: u64 = counters
        .iter()
        .filter(|c| c.verdict == 1)
        .map(|c| c.stats.lost_ringbuf_full + c.stats.lost_rate_limited + c.stats.lost_group_budget)
        .sum();

    let inserts = insert_path(&mut dp, &mut ring, rounds)?;

    let baseline = median(&mut base);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    writeln!(report, "# Data-path benchmark")?;
    writeln!(report)?;
    writeln!(
        report,
        "Produced by `cargo xtask bench` ({}). Each figure is the median over {} rounds of the kernel's mean ns per run of BPF_PROG_TEST_RUN with repeat = {}; every round also measures an empty XDP_PASS program (baseline, before and after the cases), so overheads are differences measured side by side in one run.",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        rounds,
        repeat
    )?;
    writeln!(report)?;
    writeln!(
        report,
        "Machine: {} CPUs, {}, kernel {}.",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        cpu,
        kernel.trim()
    )?;
    writeln!(report)?;
    writeln!(
        report,
        "| case | ns/packet | overhead over empty program (ns) | ratio to empty program | target overhead | met |"
    )?;
    writeln!(report, "|---|---:|---:|---:|---:|:---:|")?;
    writeln!(
        report,
        "| empty XDP_PASS program (baseline) | {baseline:.1} | 0 | 1.00 | | |"
    )?;
    for (c, v) in cases.iter().zip(per_case.iter_mut()) {
        let m = median(v);
        let over = m - baseline;
        let (target, met) = match c.target_ns {
            Some(t) => (format!("<= {t:.0}"), if over <= t { "yes" } else { "NO" }),
            None => (String::new(), ""),
        };
        writeln!(
            report,
            "| {} | {m:.1} | {over:.1} | {:.2} | {target} | {met} |",
            c.name,
            m / baseline
        )?;
    }
    writeln!(report)?;
    writeln!(
        report,
        "The denied case emitted {denied} events to the ring buffer and lost {lost} (ring full or rate limited) over all rounds; the ring buffer was drained between measurements. Wall time {:.1} s.",
        started.elapsed().as_secs_f64()
    )?;
    writeln!(report)?;
    writeln!(
        report,
        "Notes: the allowed and denied new-connection cases run with the flow idle timeout at 0 so that every repeat of the same packet counts as a new connection: its flow-table entry is found idle and renewed in place, and for the denied case a token is taken and a ring-buffer record written each time. The established case touches no flow state. BPF_PROG_TEST_RUN timing includes the kernel's per-run loop overhead, which the baseline subtracts. This machine is shared and noisy; compare ratios, not absolute numbers, across machines."
    )?;
    writeln!(report)?;
    writeln!(
        report,
        "A repeated packet cannot show what a never-seen 5-tuple costs: the flow-table insert (an LRU hash update, which evicts once the table is full). So each round also runs {n} distinct denied SYNs (new source ports; a new source address per round) once each (repeat 1), alternating with the empty program on the same frame, then the same {n} frames once each again with the idle timeout at 0, so that each renews its entry in place. Single runs pay cold caches that a repeated run does not, so compare the two: overhead of a never-seen 5-tuple {:.1} ns (median of rounds; range {:.1} to {:.1}); of the same frames renewing their entries {:.1} ns ({:.1} to {:.1}); the difference, {:.1} ns, is the insert. No target. {} inserts in all against a {}-entry table, so the later rounds evict.",
        inserts.fresh[0],
        inserts.fresh[1],
        inserts.fresh[2],
        inserts.renewed[0],
        inserts.renewed[1],
        inserts.renewed[2],
        inserts.fresh[0] - inserts.renewed[0],
        INSERT_FRAMES as usize * rounds,
        cfg.limits.flows,
        n = INSERT_FRAMES
    )?;
    Ok(())
}

/// Distinct frames per round in the flow-insert measurement.
const INSERT_FRAMES: u16 = 20_000;

struct InsertCost {
    /// Overhead of a never-seen 5-tuple, run once each (median over rounds, min, max).
    fresh: [f64; 3],
    /// The same frames run once each again, now renewing their entries in place.
    renewed: [f64; 3],
}

fn spread(mut v: Vec<f64>) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    [v[v.len() / 2], v[0], v[v.len() - 1]]
}

/// Overhead of a denied SYN whose 5-tuple the flow table has never seen: each frame is run
/// once (repeat 1), right after the empty program on the same frame. Then the same frames
/// again with the idle timeout at 0, so that each renews its entry in place: the difference
/// is the insert, with the cold caches of single runs common to both.
fn insert_path(
    dp: &mut Datapath,
    ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
    rounds: usize,
) -> anyhow::Result<InsertCost> {
    let normal = dp.settings()?;
    let (mut fresh, mut renewed) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let src = Ipv4Addr::new(198, 51, 100, 100 + round as u8);
        let frames: Vec<Vec<u8>> = (0..INSERT_FRAMES)
            .map(|i| Frame::tcp(src, NODE, 1024 + i, 10250, SYN).build())
            .collect();
        for (settings, out) in [
            (normal, &mut fresh),
            (
                node_monitor_common::Settings {
                    flow_idle_ns: 0,
                    ..normal
                },
                &mut renewed,
            ),
        ] {
            dp.set_settings(settings)?;
            let (mut prog_ns, mut base_ns) = (0.0, 0.0);
            for frame in &frames {
                base_ns += run(dp.baseline_program()?, frame, 1)?;
                prog_ns += run(dp.xdp_program()?, frame, 1)?;
            }
            while ring.next().is_some() {}
            out.push((prog_ns - base_ns) / f64::from(INSERT_FRAMES));
        }
    }
    dp.set_settings(normal)?;
    Ok(InsertCost {
        fresh: spread(fresh),
        renewed: spread(renewed),
    })
}
