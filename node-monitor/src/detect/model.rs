//! The alert model shared by the rule engine, the formatters and the sinks.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

pub use crate::datapath::{TopPortCount, TopSourceCount};
use crate::record::{Answer, FlowRecord};

/// Alert severity, as SIEMs rank it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A detection rule: a stable id, a version bumped whenever its logic changes, a severity.
/// Every rule is a constant of the catalog, so an alert carries it without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Stable id, e.g. `NM-1001`.
    pub id: &'static str,
    pub name: &'static str,
    pub version: u32,
    pub severity: Severity,
    pub description: &'static str,
}

/// Whom a flood alert is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FloodScope {
    /// One source hit its per-source event limit.
    Source(IpAddr),
    /// The node as a whole lost events that no group accounts for (an answer the ring
    /// buffer had no room for).
    Node,
    /// One port group: its events withheld by the budgets or lost to a full ring buffer,
    /// with the group's flood summary.
    Group(Arc<str>),
}

/// What an alert is about.
#[derive(Clone, Debug, PartialEq)]
pub enum AlertKind {
    /// A connection attempt from a source outside its group's allowlist.
    Connection { record: FlowRecord },
    /// One source touched at least N distinct ports of a sweep-watched group within T.
    Sweep {
        source: IpAddr,
        group: Arc<str>,
        /// The distinct destination ports seen, ascending.
        ports: Vec<u16>,
        window: Duration,
        /// The connection that crossed the threshold (destination address, interface...).
        last: FlowRecord,
    },
    /// One source's flagged connections reached at least N distinct ports, of at least two
    /// groups, within `window`: a port scan of the node (NM-1011).
    Scan {
        source: IpAddr,
        /// The distinct destination ports seen, ascending.
        ports: Vec<u16>,
        /// The distinct groups of those ports, sorted by name.
        groups: Vec<Arc<str>>,
        window: Duration,
        /// Flagged connections to those ports within the window ...
        connections: u64,
        /// ... and how many of them raised a connection alert of their own (the others were
        /// folded into dedup series). The connection alerts are not held back: the scan
        /// counts them.
        connection_alerts: u64,
        /// The connection that crossed the threshold (destination address, interface...).
        last: FlowRecord,
    },
    /// Events withheld by the limits within `window`: one aggregate alert, not one per packet.
    Flood {
        scope: FloodScope,
        rate_limited: u64,
        ringbuf_full: u64,
        window: Duration,
        /// A group's flood summary (group scope only).
        summary: Option<Box<FloodSummary>>,
    },
}

/// What a group's flood alert says beyond its loss counts: the window's new connections,
/// what the node-wide budget withheld, the data path's summary of the withheld connections
/// (distinct sources, top sources and ports) and the node's answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FloodSummary {
    /// New connections of the group in the window (every verdict).
    pub new_connections: u64,
    /// Events sent (connections reported one by one).
    pub events: u64,
    /// Events withheld by the group's node-wide budget.
    pub group_budget: u64,
    /// Distinct sources of the withheld connections (HyperLogLog estimate, ±5%).
    pub distinct_sources: u64,
    /// The sources with the most withheld connections, most first.
    pub top_sources: Vec<TopSourceCount>,
    /// The destination ports with the most withheld connections, most first.
    pub top_ports: Vec<TopPortCount>,
    /// When the window opened (the first loss seen) and closed.
    pub start: SystemTime,
    pub end: SystemTime,
    /// Nearly every withheld connection came from a source of its own: the sources are
    /// likely spoofed (see [`spoofed_likely`]).
    pub spoofed_likely: bool,
    /// The node's answers from the group's TCP ports in the window.
    pub answered: FloodAnswers,
    /// Connection alerts of the group the daemon folded into this one, past its cap per
    /// group and window (`alerts.connection_alerts_per_group`), and their answers.
    pub folded_alerts: u64,
    pub folded_by_answer: AnswerCounts,
}

/// The node's answers counted in a flood window: SYN-ACKs (accepted) and RSTs (refused).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FloodAnswers {
    pub accepted: u64,
    pub refused: u64,
}

/// Spoofed sources are likely when at least 64 connections were withheld and the distinct
/// sources are at least 80% of them (the estimate is within 5%): a real client, or a few,
/// repeat their address; random spoofed addresses almost never do.
pub fn spoofed_likely(withheld: u64, distinct_sources: u64) -> bool {
    withheld >= 64 && distinct_sources.saturating_mul(5) >= withheld.saturating_mul(4)
}

/// How the node answered the repeats a dedup follow-up folds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AnswerCounts {
    pub accepted: u64,
    pub refused: u64,
    pub no_answer: u64,
}

impl AnswerCounts {
    /// Counts one repeat answered `answer` (a record without an answer counts nowhere).
    pub fn add(&mut self, answer: Option<Answer>) {
        match answer {
            Some(Answer::Accepted) => self.accepted += 1,
            Some(Answer::Refused) => self.refused += 1,
            Some(Answer::NoAnswer) => self.no_answer += 1,
            None => {}
        }
    }
}

/// One alert, ready to format.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Unique id (a UUID v4 in text form): ECS `event.id`, OCSF `finding_info.uid`.
    pub id: String,
    pub time: SystemTime,
    pub rule: Rule,
    pub kind: AlertKind,
    /// Repeats of the same rule, source and group folded into this alert (a dedup follow-up
    /// carries the count; the first alert carries 0).
    pub suppressed: u64,
    /// For a dedup follow-up: the id of the first alert of the series.
    pub follow_up_of: Option<String>,
    /// For a dedup follow-up of connection alerts: the folded repeats by answer.
    pub repeats_by_answer: Option<AnswerCounts>,
    /// Events lost since the previous alert, by reason (`rate_limited`, `ringbuf_full`,
    /// `sink_queue_full`, ...): a SIEM sees the gaps.
    pub losses_since_previous: BTreeMap<String, u64>,
}

/// What goes to the sinks: alerts, and sampled flow records of allowed sources.
#[expect(
    clippy::large_enum_variant,
    reason = "items travel as `Arc<OutputItem>`, allocated once: boxing the alert would only add one more allocation"
)]
#[derive(Clone, Debug, PartialEq)]
pub enum OutputItem {
    Alert(Alert),
    Flow(FlowRecord),
    /// A finding of the periodic posture audit (`audit:` in the config).
    Finding(crate::posture::FindingEvent),
}
