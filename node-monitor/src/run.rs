//! The daemon's event loop: read the ring buffer (tokio `AsyncFd`), track answers, write
//! JSON lines to stdout through a bounded queue, and print a counters summary at exit.
use std::io::Write as _;

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use node_monitor_common::reason;
use serde::Serialize;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    time::{Duration, interval},
};
use tracing::{info, warn};

use crate::{
    config::Config,
    datapath::{Datapath, GroupIds},
    events::{self, Clock, FlowRecord},
    flows::{GroupNames, Tracker, TrackerStats},
};

/// Records queued for stdout before new ones are dropped (and counted).
const OUTPUT_QUEUE: usize = 65_536;
/// How often pending attempts are checked against the answer timeout.
const TICK: Duration = Duration::from_millis(50);

impl GroupNames for GroupIds {
    fn group_name(&self, id: u8) -> String {
        self.name(id)
            .map_or_else(|| format!("group-{id}"), str::to_owned)
    }
}

/// Userspace counters, reported with the kernel's in the exit summary.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct UserStats {
    pub events_read: u64,
    pub events_malformed: u64,
    pub records_written: u64,
    pub records_dropped_output_full: u64,
    #[serde(flatten)]
    pub tracker: TrackerStats,
}

pub async fn event_loop(mut dp: Datapath, cfg: Config) -> anyhow::Result<()> {
    let ring = dp
        .take_events()
        .context("the ring buffer was already taken")?;
    // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd owns the RingBuf, and
    // as_raw_fd always returns that same fd.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering the ring buffer with tokio: {e}"))?;
    let mut tracker = Tracker::new(cfg.limits.answer_timeout_ms);
    let mut stats = UserStats::default();
    let (tx, rx) = mpsc::channel::<FlowRecord>(OUTPUT_QUEUE);
    let writer = tokio::task::spawn_blocking(move || write_records(rx));
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut tick = interval(TICK);
    let mut out: Vec<FlowRecord> = Vec::new();
    info!(
        attachments = ?dp.attachments().map(|a| format!("{}@{} ({}{})", a.hook.as_str(), a.iface, a.mode, if a.adopted { ", adopted" } else { "" })).collect::<Vec<_>>(),
        "ready"
    );
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting on the ring buffer")?;
                drain(guard.get_inner_mut(), &mut tracker, &dp, &mut stats, &mut out);
                guard.clear_ready();
                // The kernel wakes the reader only when it had caught up; a record committed
                // between the last read and clear_ready() would otherwise wait for the next
                // drain. Reading again after clearing closes that window.
                drain(guard.get_inner_mut(), &mut tracker, &dp, &mut stats, &mut out);
            }
            _ = tick.tick() => {
                // Safety net: bounded delay even if a wakeup was ever missed.
                drain(ring.get_mut(), &mut tracker, &dp, &mut stats, &mut out);
                let clock = Clock::now();
                tracker.expire(Clock::ktime_now(), |k| dp.flow(k), dp.group_ids(), &clock, &mut out);
            }
            _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
        }
        send(&tx, &mut out, &mut stats);
    }
    // Drain what the kernel already queued, then report every pending attempt.
    drain(ring.get_mut(), &mut tracker, &dp, &mut stats, &mut out);
    let clock = Clock::now();
    tracker.flush(|k| dp.flow(k), dp.group_ids(), &clock, &mut out);
    send(&tx, &mut out, &mut stats);
    drop(tx);
    let written = writer.await.context("output writer")?;
    stats.records_written = written;
    stats.tracker = tracker.stats;
    print_summary(&dp, &stats)?;
    Ok(())
}

/// Reads every record the ring buffer holds now.
fn drain(
    ring: &mut RingBuf<MapData>,
    tracker: &mut Tracker,
    dp: &Datapath,
    stats: &mut UserStats,
    out: &mut Vec<FlowRecord>,
) {
    let clock = Clock::now();
    let now = Clock::ktime_now();
    while let Some(item) = ring.next() {
        stats.events_read += 1;
        match events::decode(&item) {
            Ok(ev) => tracker.handle(ev, now, dp.group_ids(), &clock, out),
            Err(e) => {
                stats.events_malformed += 1;
                warn!(error = %e, "malformed ring buffer record");
            }
        }
    }
}

fn send(tx: &mpsc::Sender<FlowRecord>, out: &mut Vec<FlowRecord>, stats: &mut UserStats) {
    for r in out.drain(..) {
        if tx.try_send(r).is_err() {
            stats.records_dropped_output_full += 1;
        }
    }
}

/// Writes records as JSON lines; returns how many were written.
fn write_records(mut rx: mpsc::Receiver<FlowRecord>) -> u64 {
    let stdout = std::io::stdout();
    let mut n = 0u64;
    while let Some(r) = rx.blocking_recv() {
        let mut lock = stdout.lock();
        let mut batch = vec![r];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
            if batch.len() >= 1024 {
                break;
            }
        }
        for r in &batch {
            if serde_json::to_writer(&mut lock, r).is_ok() && lock.write_all(b"\n").is_ok() {
                n += 1;
            }
        }
        let _ = lock.flush();
    }
    n
}

#[derive(Serialize)]
struct GroupSummary<'a> {
    group: &'a str,
    protocol: &'static str,
    verdict: &'static str,
    #[serde(flatten)]
    stats: node_monitor_common::GroupStats,
}

/// The last line on stdout: every kernel and userspace counter, so that a run's
/// flagged = emitted + counted losses can be checked from its output alone.
fn print_summary(dp: &Datapath, user: &UserStats) -> anyhow::Result<()> {
    let counters = dp.group_counters()?;
    let groups: Vec<GroupSummary<'_>> = counters
        .iter()
        .filter(|c| c.stats != Default::default())
        .map(|c| GroupSummary {
            group: &c.group,
            protocol: match c.proto {
                crate::config::Protocol::Tcp => "tcp",
                crate::config::Protocol::Udp => "udp",
            },
            verdict: if c.verdict == node_monitor_common::VERDICT_DENIED {
                "denied"
            } else {
                "allowed"
            },
            stats: c.stats,
        })
        .collect();
    let reasons = dp.reason_counters()?;
    let reasons: serde_json::Map<String, serde_json::Value> = reason::NAMES
        .iter()
        .zip(reasons)
        .filter(|(_, v)| *v != 0)
        .map(|(k, v)| ((*k).to_owned(), v.into()))
        .collect();
    let summary = serde_json::json!({
        "type": "counters",
        "time": events::rfc3339(std::time::SystemTime::now()),
        "groups": groups,
        "reasons": reasons,
        "userspace": user,
    });
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, &summary)?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}
