//! The alert model shared by the rule engine, the formatters and the sinks.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

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
    /// The node as a whole lost events (ring buffer full).
    Node,
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
    },
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
}
