//! The event-pipeline section: denied SYNs pushed into the ring buffer, then read on one
//! core through decode, answer tracker, identity (off, or a cache of 100,000 pods whose
//! pods include the sources), alert engine and an ECS file sink, with dedup off and on.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use node_monitor::{
    answers::Tracker,
    cluster::{Snapshot, testing::synthetic},
    config::{AlertSettings, Config, Format, SinkKind, SinkSpec},
    datapath::{Datapath, LoadOptions},
    detect::{Engine, OutputItem},
    record::{self, Clock},
    render::{self, Observer},
    sinks::{Renderer, Sinks},
};

use crate::{
    packets::{Frame, SYN},
    testrun::{NODE, run},
};

/// Results of one pipeline run.
struct PipelineRun {
    events: u64,
    alerts_written: u64,
    sink_dropped: u64,
    kernel_lost: u64,
    absorb: std::time::Duration,
    total: std::time::Duration,
}

/// Pins this thread, and so every thread it starts from now on, to the CPU it runs on.
/// Returns that CPU.
fn pin_to_one_cpu() -> anyhow::Result<usize> {
    // SAFETY: plain libc calls on a zeroed cpu_set_t that lives for the whole call.
    unsafe {
        let cpu = libc::sched_getcpu();
        anyhow::ensure!(
            cpu >= 0,
            "sched_getcpu: {}",
            std::io::Error::last_os_error()
        );
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set) != 0 {
            anyhow::bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
        Ok(cpu as usize)
    }
}

/// The userspace event pipeline on one core: ring buffer → decode → answer tracker → alert
/// engine → ECS file sink, with dedup off (every event an alert) and on (60 s window).
pub(crate) fn pipeline(pipeline_events: u32, report: &mut String) -> anyhow::Result<()> {
    const SOURCES: u8 = 64;
    let cpu = pin_to_one_cpu()?;
    let yaml = "groups:\n  kubelet: { protocols: [tcp], ports: [\"10250\"], allow: [] }\n\
                limits: { events_per_source_per_second: 0, events_per_group_per_second: 0, \
                ring_buffer_bytes: 268435456 }\n";
    let cfg = Config::from_yaml(yaml, "pipeline-bench")?;
    let mut dp = Datapath::load(&cfg, &[], &LoadOptions { pin_dir: None })?;
    let normal = dp.settings()?;
    dp.set_settings(node_monitor_common::Settings {
        flow_idle_ns: 0,
        ..normal
    })?;
    let mut ring = dp.take_events().context("ring buffer")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let per_source = (pipeline_events / u32::from(SOURCES)).max(1);
    let source = |i: u8| Ipv4Addr::new(203, 0, 113, i);
    // The identity section's cluster, the sources among its pods (each alert names a pod,
    // its Deployment and node).
    let extra: Vec<IpAddr> = (0..SOURCES).map(|i| IpAddr::V4(source(i))).collect();
    let (stores, _) = synthetic::stores_with(1_000, 100_000, 5_000, &extra);
    let snapshot = Arc::new(Snapshot::build(&stores, true));
    drop(stores);
    let mut runs = Vec::new();
    for (label, window, identity) in [
        ("dedup off", Duration::ZERO, false),
        ("dedup off, identity on", Duration::ZERO, true),
        ("dedup on (60 s window)", Duration::from_secs(60), false),
        (
            "dedup on (60 s window), identity on",
            Duration::from_secs(60),
            true,
        ),
    ] {
        let lost_before: u64 = dp
            .group_counters()?
            .iter()
            .map(|c| c.stats.lost_ringbuf_full)
            .sum();
        // Fill the ring: SOURCES denied sources, each SYN repeated (idle timeout 0: each
        // repeat is a new connection and an event).
        for i in 0..SOURCES {
            let frame = Frame::tcp(source(i), NODE, 40000, 10250, SYN).build();
            run(dp.xdp_program()?, &frame, per_source)?;
        }
        let lost_after: u64 = dp
            .group_counters()?
            .iter()
            .map(|c| c.stats.lost_ringbuf_full)
            .sum();
        let dir =
            std::env::temp_dir().join(format!("nm-bench-{}-{}", std::process::id(), runs.len()));
        std::fs::create_dir_all(&dir)?;
        let observer = Observer::local();
        let render: Renderer =
            Arc::new(move |item, f, out| render::render_into(item, f, &observer, out));
        let spec = SinkSpec {
            name: "bench-file".to_owned(),
            kind: SinkKind::File {
                path: dir.join("alerts.json"),
                max_size_bytes: 0,
                keep: 0,
            },
            format: Format::Ecs,
            queue: pipeline_events as usize + 1024,
            flows: false,
        };
        // No cap on connection alerts: past the default cap (per group and flood window)
        // every connection alert would fold into the flood alert, and the run would measure
        // the fold, not the pipeline.
        let settings = AlertSettings {
            dedup_window: window,
            connection_alerts_per_group: 0,
            ..AlertSettings::DEFAULT
        };
        let ids = dp.group_ids().clone();
        let r = rt.block_on(async {
            let sinks = Sinks::start(&[spec], render)?;
            let mut engine = Engine::new(&settings, Vec::new());
            let mut tracker = Tracker::new(0);
            let (mut records, mut alerts) = (Vec::new(), Vec::new());
            let mut events = 0u64;
            let t0 = std::time::Instant::now();
            loop {
                let clock = Clock::now();
                let now = Clock::ktime_now();
                let mut got = 0u32;
                while let Some(item) = ring.next() {
                    let ev = record::decode(&item)?;
                    tracker.handle(ev, now, &ids, &clock, &mut records);
                    got += 1;
                    if got == 4096 {
                        break;
                    }
                }
                events += u64::from(got);
                tracker.expire(Clock::ktime_now(), |_| None, &ids, &clock, &mut records);
                // One view per batch, as the daemon takes it.
                if identity && !records.is_empty() {
                    synthetic::view_of(&snapshot).enrich_all(&mut records);
                }
                let t = std::time::Instant::now();
                for rec in records.drain(..) {
                    engine.on_record(&rec, t, &mut alerts);
                }
                for a in alerts.drain(..) {
                    sinks.send(Arc::new(OutputItem::Alert(a)));
                }
                // Let the sink task write between batches, as the daemon's loop does.
                tokio::task::yield_now().await;
                if got == 0 {
                    break;
                }
            }
            engine.flush(&mut alerts);
            for a in alerts.drain(..) {
                sinks.send(Arc::new(OutputItem::Alert(a)));
            }
            let absorb = t0.elapsed();
            let stats = sinks.shutdown(Duration::from_secs(120)).await;
            let total = t0.elapsed();
            let s = stats.first().context("sink stats")?;
            anyhow::Ok(PipelineRun {
                events,
                alerts_written: s.sent,
                sink_dropped: s.dropped_total(),
                kernel_lost: lost_after - lost_before,
                absorb,
                total,
            })
        })?;
        std::fs::remove_dir_all(&dir).ok();
        eprintln!(
            "pipeline {label}: {} events, {} alerts written in {:.2?}",
            r.events, r.alerts_written, r.total
        );
        runs.push((label, r));
    }
    writeln!(report)?;
    writeln!(report, "## Event pipeline (userspace, one core)")?;
    writeln!(report)?;
    writeln!(
        report,
        "Denied SYNs from {SOURCES} sources are pushed into the ring buffer by BPF_PROG_TEST_RUN (not timed), then read on a single-threaded tokio runtime: decode, answer tracker, identity (in the `identity on` runs: a view of the identity section's cache, 100,000 pods, whose pods include the {SOURCES} sources, taken per batch as the daemon does, and every record enriched; the alerts then carry and render the pod, Deployment and node), alert engine, and an ECS file sink on the same thread (which hands each rendered batch to a blocking thread for the write). The whole process is pinned to CPU {cpu} (sched_setaffinity) from here on, so that every thread, the blocking writer too, shares one core. The cap on connection alerts per group (`connection_alerts_per_group`) is off, so that every alert is written. `absorbed` is events read and processed per second until the engine has seen the last one; `written` is alerts per second until the sink has written and closed its file."
    )?;
    writeln!(report)?;
    writeln!(
        report,
        "| run | events | alerts written | events absorbed/s | alerts written/s | kernel ring losses | sink drops | target | met |"
    )?;
    writeln!(report, "|---|---:|---:|---:|---:|---:|---:|---|:---:|")?;
    for (label, r) in &runs {
        let absorbed = r.events as f64 / r.absorb.as_secs_f64();
        let written = r.alerts_written as f64 / r.total.as_secs_f64();
        let dedup = label.starts_with("dedup on");
        let (target, met) = if dedup {
            (">= 1,000,000 events/s absorbed", absorbed >= 1_000_000.0)
        } else {
            (">= 200,000 alerts/s written", written >= 200_000.0)
        };
        writeln!(
            report,
            "| {label} | {} | {} | {absorbed:.0} | {written:.0} | {} | {} | {target} | {} |",
            r.events,
            r.alerts_written,
            r.kernel_lost,
            r.sink_dropped,
            if met { "yes" } else { "NO" }
        )?;
    }
    // Identity's cost per alert: the difference in time per event, on versus off.
    let per_event = |label: &str| {
        runs.iter()
            .find(|(l, _)| *l == label)
            .map(|(_, r)| r.total.as_secs_f64() * 1e9 / r.events.max(1) as f64)
    };
    if let (Some(off), Some(on)) = (per_event("dedup off"), per_event("dedup off, identity on")) {
        writeln!(report)?;
        writeln!(
            report,
            "Identity on, dedup off: {:.0} ns per alert from ring buffer to written file, against {:.0} ns off: {:+.0} ns per alert for the enrichment and the identity fields rendered.",
            on,
            off,
            on - off
        )?;
    }
    writeln!(report)?;
    writeln!(
        report,
        "No uncounted loss: every event pushed was either read or counted as a kernel ring loss, and every alert offered to the sink was either written or counted as a sink drop (both columns above)."
    )?;
    Ok(())
}
