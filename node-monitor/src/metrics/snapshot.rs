//! The plain data the daemon hands to [`Metrics::update`](super::Metrics::update) once a
//! second, and the kernel reads that fill it (BPF run statistics).
use std::{
    io,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
};

use node_monitor_common::{GroupStats, reason};

use crate::record::Verdict;

/// Every counter and gauge the daemon exports, as plain data. The daemon fills it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Kernel counters per (group, protocol, verdict).
    pub groups: Vec<GroupSnapshot>,
    /// Packets passed unclassified or malformed, by reason (`reason::NAMES`).
    pub reasons: Vec<(&'static str, u64)>,
    /// Flagged connections by how the node answered: (group, proto, answer, count).
    pub answers: Vec<(String, &'static str, &'static str, u64)>,
    /// Flagged connections by source workload, with a cluster watched (bounded by the
    /// daemon: past its cap, new sources of a group count in one `(other)` series).
    pub flagged_by_source: Vec<SourceWorkloadCount>,
    /// Alerts raised: (rule id, severity, count).
    pub alerts: Vec<(String, &'static str, u64)>,
    /// Alerts suppressed by dedup/suppression: (rule id, count).
    pub alerts_suppressed: Vec<(String, u64)>,
    /// Events lost in userspace, by reason (output queue full, malformed record, ...).
    /// Kernel losses (`rate_limited`, `ringbuf_full`, `group_budget`) are summed from `groups` by
    /// [`Metrics::update`]; entries here with those two reasons are ignored, so that a
    /// caller that also lists them cannot count them twice.
    pub lost_events: Vec<(String, u64)>,
    /// Output sinks.
    pub sinks: Vec<SinkSnapshot>,
    pub flow_table_entries: u64,
    pub flow_table_capacity: u64,
    /// Per-program BPF run statistics (see [`program_stats`]).
    pub programs: Vec<ProgramSnapshot>,
    /// Config reloads by result (`success` | `failure`).
    pub config_reloads: Vec<(&'static str, u64)>,
    pub attached_interfaces: u64,
    /// Flagged attempts waiting for the node's answer.
    pub pending_answers: u64,
    /// The daemon's bounded per-source tables (dedup, sweep, scan, answers): size, cap and
    /// entries evicted because the table was full.
    pub detectors: Vec<DetectorSnapshot>,
    /// The cluster cache, when the daemon watches a cluster.
    pub cluster: Option<ClusterSnapshot>,
}

/// Flagged connections of one group from one source workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceWorkloadCount {
    pub group: String,
    /// `pod`, `node`, `host_network`, `external`, `unresolved`; empty for `(other)`.
    pub source_kind: &'static str,
    /// The pod's namespace; empty for the other kinds.
    pub namespace: String,
    /// The pod's workload kind (`Deployment`, `DaemonSet`, ..., `Pod` for a bare pod), or
    /// `Node` for a node and a host-network source; empty for the others.
    pub workload_kind: String,
    /// The workload's name, or the node's; `(other)` for the sources past the cap.
    pub workload: String,
    pub count: u64,
}

/// One bounded per-source table of the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetectorSnapshot {
    /// `dedup` | `sweep` | `scan` | `answers` | `answers_unanswered`.
    pub detector: &'static str,
    pub entries: u64,
    pub capacity: u64,
    /// Entries evicted (forgotten, or closed early) because the table was full.
    pub evictions: u64,
}

/// The cluster cache's watches (issue 8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterSnapshot {
    pub kinds: Vec<ClusterKindSnapshot>,
    /// The published index was built after every kind had completed its first list.
    pub synced: bool,
    /// Seconds since the longest-failing watch first failed; 0 while all are healthy.
    pub cache_age_s: u64,
    /// The heap the identity cache (stores and index) held at its last index build.
    pub cache_bytes: u64,
    /// The NodePorts' `loadBalancerSourceRanges` in the data path, once written.
    pub node_port_ranges: Option<NodePortRangesSnapshot>,
    /// Writes of those ranges to the data path that failed.
    pub node_port_ranges_write_failures: u64,
}

/// The per-port source ranges (NodePorts whose Service sets `loadBalancerSourceRanges`) as
/// last written to the data path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePortRangesSnapshot {
    /// Ports whose ranges are enforced (marked).
    pub enforced: u64,
    /// Ports whose ranges did not fit in the per-port tables: left unmarked (fail open).
    pub not_enforced: u64,
    /// Entries each table holds (IPv4, IPv6).
    pub entries: [u64; 2],
    /// Entries all the ranges want in each table (IPv4, IPv6).
    pub wanted: [u64; 2],
    /// Entries each table can hold.
    pub capacity: u64,
}

impl From<crate::datapath::PortRangesApplied> for NodePortRangesSnapshot {
    fn from(a: crate::datapath::PortRangesApplied) -> Self {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        NodePortRangesSnapshot {
            enforced: n(a.ports),
            not_enforced: n(a.not_enforced),
            entries: [n(a.entries_v4), n(a.entries_v6)],
            wanted: [n(a.wanted_v4), n(a.wanted_v6)],
            capacity: u64::from(node_monitor_common::PORT_ALLOW_ENTRIES),
        }
    }
}

/// One watched kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterKindSnapshot {
    /// `node`, `pod`, `service`, `endpointslice`, `replicaset`, `job`.
    pub kind: &'static str,
    /// `starting`, `synced` or `failing`.
    pub state: &'static str,
    pub objects: u64,
    /// When its last list completed (seconds since the epoch); 0: never.
    pub last_sync_unix_s: u64,
    pub errors: u64,
    pub lists: u64,
}

/// Kernel counters of one (group, protocol, verdict) slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSnapshot {
    pub group: String,
    /// `tcp` | `udp`.
    pub proto: &'static str,
    /// `allowed` | `denied`.
    pub verdict: &'static str,
    pub stats: GroupStats,
}

impl From<&crate::datapath::GroupCounters> for GroupSnapshot {
    fn from(c: &crate::datapath::GroupCounters) -> Self {
        GroupSnapshot {
            group: c.group.clone(),
            proto: c.proto.name(),
            verdict: Verdict::from_raw(c.verdict).as_str(),
            stats: c.stats,
        }
    }
}

/// Pairs `Datapath::reason_counters()` with their names.
pub fn reasons_snapshot(counters: &[u64; reason::COUNT as usize]) -> Vec<(&'static str, u64)> {
    reason::NAMES
        .iter()
        .copied()
        .zip(counters.iter().copied())
        .collect()
}

/// One output sink.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkSnapshot {
    /// The sink's configured name.
    pub name: String,
    /// `stdout` | `file` | `syslog` | `http` | ...
    pub kind: &'static str,
    /// Records delivered.
    pub sent: u64,
    /// Records dropped, by reason (queue_full, write_error, ...).
    pub dropped: Vec<(String, u64)>,
    /// Records waiting in the sink's queue now.
    pub queue_len: u64,
}

impl From<&crate::sinks::SinkStats> for SinkSnapshot {
    fn from(s: &crate::sinks::SinkStats) -> Self {
        SinkSnapshot {
            name: s.name.clone(),
            kind: s.kind,
            sent: s.sent,
            dropped: s.dropped.iter().map(|(r, n)| (r.clone(), *n)).collect(),
            queue_len: u64::try_from(s.queue_len).unwrap_or(u64::MAX),
        }
    }
}

/// BPF run statistics of one program (cumulative while [`BpfStats`] is held).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgramSnapshot {
    /// `xdp` | `tc_ingress` | `tc_egress`.
    pub program: &'static str,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// Reads run count and run time of loaded programs, e.g.
/// `program_stats([("xdp", dp.xdp_program()?.info()), ("tc_ingress", dp.tc_ingress_program()?.info())])`.
/// A program whose info cannot be read is left out (and logged at debug level).
/// The kernel only counts while BPF stats are enabled ([`BpfStats::enable`]).
pub fn program_stats(
    programs: impl IntoIterator<
        Item = (
            &'static str,
            Result<aya::programs::ProgramInfo, aya::programs::ProgramError>,
        ),
    >,
) -> Vec<ProgramSnapshot> {
    programs
        .into_iter()
        .filter_map(|(program, info)| match info {
            Ok(info) => Some(ProgramSnapshot {
                program,
                run_count: info.run_count(),
                run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
            }),
            Err(error) => {
                tracing::debug!(program, %error, "reading BPF program info");
                None
            }
        })
        .collect()
}

/// Kernel BPF run-time statistics (`BPF_ENABLE_STATS`), on for as long as this is held.
#[derive(Debug)]
pub struct BpfStats(OwnedFd);

impl BpfStats {
    /// Turns on run count / run time accounting for every BPF program (needs
    /// CAP_SYS_ADMIN; kernel ≥ 5.8). Keep the value for as long as the daemon runs.
    pub fn enable() -> io::Result<BpfStats> {
        aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .map(BpfStats)
            .map_err(|e| io::Error::new(e.io_error.kind(), e))
    }
}

impl AsFd for BpfStats {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
