//! The exit summary: every kernel, userspace and sink counter as one JSON line on stderr.

use serde::Serialize;

use crate::{answers::TrackerStats, datapath::Datapath, record};

/// Userspace counters, reported in metrics and in the exit summary.
#[derive(Debug, Default, Clone, Serialize)]
pub struct UserStats {
    pub events_read: u64,
    pub events_malformed: u64,
    pub config_reloads_ok: u64,
    pub config_reloads_failed: u64,
    #[serde(flatten)]
    pub tracker: TrackerStats,
}

#[derive(Serialize)]
struct GroupSummary<'a> {
    group: &'a str,
    protocol: &'static str,
    verdict: &'static str,
    #[serde(flatten)]
    stats: node_monitor_common::GroupStats,
}

/// The last line on stderr: every kernel, userspace and sink counter as one JSON object
/// (`{"type":"counters",...}`), so that a run's flagged = emitted + counted losses can be
/// checked from its output alone. stdout carries only records in the sinks' formats.
pub(super) fn print_summary(
    dp: &Datapath,
    user: &UserStats,
    sinks: &[crate::sinks::SinkStats],
    detectors: &[crate::metrics::DetectorSnapshot],
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let counters = dp.group_counters()?;
    let groups: Vec<GroupSummary<'_>> = counters
        .iter()
        .filter(|c| c.stats != Default::default())
        .map(|c| GroupSummary {
            group: &c.group,
            protocol: c.proto.name(),
            verdict: record::Verdict::from_raw(c.verdict).as_str(),
            stats: c.stats,
        })
        .collect();
    let reasons = dp.reason_counters()?;
    let reasons: serde_json::Map<String, serde_json::Value> = node_monitor_common::reason::NAMES
        .iter()
        .zip(reasons)
        .filter(|(_, v)| *v != 0)
        .map(|(k, v)| ((*k).to_owned(), v.into()))
        .collect();
    let sinks: Vec<serde_json::Value> = sinks
        .iter()
        .map(|s| serde_json::json!({"sink": s.name, "kind": s.kind, "sent": s.sent, "dropped": s.dropped}))
        .collect();
    // The bounded per-source tables: `{"scan": {"entries", "capacity", "evictions"}, ...}`.
    let detectors: serde_json::Map<String, serde_json::Value> = detectors
        .iter()
        .map(|d| {
            (
                d.detector.to_owned(),
                serde_json::json!({"entries": d.entries, "capacity": d.capacity, "evictions": d.evictions}),
            )
        })
        .collect();
    let summary = serde_json::json!({
        "type": "counters",
        "time": record::rfc3339(std::time::SystemTime::now()),
        "groups": groups,
        "reasons": reasons,
        "userspace": user,
        "sinks": sinks,
        "detectors": detectors,
    });
    let mut err = std::io::stderr().lock();
    serde_json::to_writer(&mut err, &summary)?;
    err.write_all(b"\n")?;
    err.flush()?;
    Ok(())
}
