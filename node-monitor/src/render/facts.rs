//! The facts every format shares: the parts of an item (alert, record), the outcome, the
//! Community ID, epoch times, the action verb and category, and node-monitor's own facts
//! (`node_monitor` in ECS, `unmapped.node_monitor` in OCSF) both as JSON writers and as the
//! serde documents those writers are checked against.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use super::{
    community_id::{CommunityId, community_id_v1_text},
    json::{JsonOut, Members, Text, rfc3339_text},
};
use crate::{
    detect::{
        Alert, AlertKind, AnswerCounts, FloodAnswers, FloodScope, FloodSummary, OutputItem, rules,
    },
    record::{Action, Answer, FlowRecord, Hook, RecordType, TcpFlags, Verdict},
};

/// Community ID seed: 0, the interoperable default (every tool must use the same seed).
pub const COMMUNITY_ID_SEED: u16 = 0;

/// The alert of an item (none for a sampled flow) and the connection it is about (none for
/// a flood).
pub(crate) fn parts(item: &OutputItem) -> (Option<&Alert>, Option<&FlowRecord>) {
    match item {
        OutputItem::Alert(a) => (Some(a), alert_record(a)),
        OutputItem::Flow(r) => (None, Some(r)),
        OutputItem::Finding(_) => (None, None),
    }
}

/// The connection an alert is about: the record of a connection alert, the connection that
/// crossed the threshold of a sweep or scan; none for a flood.
pub(crate) fn alert_record(alert: &Alert) -> Option<&FlowRecord> {
    match &alert.kind {
        AlertKind::Connection { record } => Some(record),
        AlertKind::Sweep { last, .. } | AlertKind::Scan { last, .. } => Some(last),
        AlertKind::Flood { .. } => None,
    }
}

/// Whether the item is a sweep or a scan: it spans many connections, so no format writes its
/// ports or a single flow id.
pub(crate) fn spans_connections(alert: Option<&Alert>) -> bool {
    alert.is_some_and(|a| matches!(a.kind, AlertKind::Sweep { .. } | AlertKind::Scan { .. }))
}

/// The Community ID of a record's flow.
pub fn community_id(rec: &FlowRecord) -> String {
    community_id_text(rec).as_str().to_owned()
}

/// The Community ID of a record's flow, without allocating.
pub(crate) fn community_id_text(rec: &FlowRecord) -> CommunityId {
    community_id_v1_text(
        COMMUNITY_ID_SEED,
        rec.src_ip,
        rec.dst_ip,
        rec.protocol.number(),
        rec.src_port,
        rec.dst_port,
    )
}

pub(crate) fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The time of an item: the alert's, or the flow record's.
pub(crate) fn item_time(item: &OutputItem) -> SystemTime {
    match item {
        OutputItem::Alert(a) => a.time,
        OutputItem::Flow(r) => r.time,
        OutputItem::Finding(f) => f.time,
    }
}

/// A short action verb for `event.action` and friends.
pub(crate) fn action_name(item: &OutputItem) -> &'static str {
    match item {
        OutputItem::Flow(_) => "flow-sampled",
        OutputItem::Finding(_) => "posture-finding",
        OutputItem::Alert(a) => match a.kind {
            AlertKind::Connection { ref record } if record.record_type == RecordType::Unseen => {
                "unseen-accepted-connection"
            }
            AlertKind::Connection { .. } => "flagged-connection",
            AlertKind::Sweep { .. } => "nodeport-sweep",
            AlertKind::Scan { .. } => "port-scan",
            AlertKind::Flood { .. } => "event-flood",
        },
    }
}

/// ECS `rule.category` / OCSF `finding_info.types` / CEF `cat`.
pub(crate) fn rule_category(alert: &Alert) -> &'static str {
    rules::category(alert.rule.id)
}

/// `success` when the node accepted the connection, `failure` when it refused or did not
/// answer, `unknown` when no answer is known (sampled flows, floods).
pub(crate) fn outcome(rec: Option<&FlowRecord>) -> &'static str {
    match rec.and_then(|r| r.answer) {
        Some(Answer::Accepted) => "success",
        Some(Answer::Refused | Answer::NoAnswer) => "failure",
        None => "unknown",
    }
}

/// The port group of an item: the record's; for a sweep, the swept group; for a group's
/// flood, the group; none for a scan (it spans groups: they are in its `scan.groups`).
pub(crate) fn port_group<'a>(
    alert: Option<&'a Alert>,
    rec: Option<&'a FlowRecord>,
) -> Option<&'a str> {
    match alert.map(|a| &a.kind) {
        Some(AlertKind::Sweep { group, .. }) => Some(group),
        Some(AlertKind::Flood {
            scope: FloodScope::Group(group),
            ..
        }) => Some(group),
        Some(AlertKind::Scan { .. }) => None,
        _ => rec.map(|r| &*r.group),
    }
}

/// node-monitor's own facts of a connection: port group, verdict, action, answer, TCP flags
/// and hook (the serde document that [`write_connection_facts`] writes by hand).
#[derive(Serialize)]
pub(crate) struct ConnectionFacts<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    port_group: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<Answer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer_corrects: Option<Answer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer_corrects_alert: Option<&'a str>,
    /// `true` for a connection that was open when a reload revoked its source.
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_flags: Option<TcpFlags>,
    /// Written only when true: the attempt was an IPv4 first fragment.
    #[serde(skip_serializing_if = "Option::is_none")]
    fragmented: Option<bool>,
    /// Written only when true: NM-1030 named by the ACK that completed the handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    handshake_completed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hook: Option<Hook>,
}

impl ConnectionFacts<'_> {
    pub(crate) fn of<'a>(
        alert: Option<&'a Alert>,
        rec: Option<&'a FlowRecord>,
    ) -> ConnectionFacts<'a> {
        ConnectionFacts {
            port_group: port_group(alert, rec),
            verdict: rec.map(|r| r.verdict),
            action: rec.map(|r| r.action),
            answer: rec.and_then(|r| r.answer),
            answer_corrects: rec.and_then(|r| r.answer_corrects),
            answer_corrects_alert: rec.and_then(|r| r.answer_corrects_alert.as_deref()),
            revoked: rec
                .is_some_and(|r| r.record_type == RecordType::Revoked)
                .then_some(true),
            tcp_flags: rec.and_then(|r| r.tcp_flags),
            fragmented: rec.and_then(|r| r.fragmented.then_some(true)),
            handshake_completed: rec.and_then(|r| r.handshake_completed.then_some(true)),
            hook: rec.map(|r| r.hook),
        }
    }
}

/// Writes [`ConnectionFacts`]: the members of the ECS `node_monitor` and OCSF
/// `unmapped.node_monitor` objects that describe the connection.
pub(crate) fn write_connection_facts(
    m: &mut Members,
    j: &mut JsonOut<'_>,
    alert: Option<&Alert>,
    rec: Option<&FlowRecord>,
) {
    if let Some(g) = port_group(alert, rec) {
        m.key(j, "port_group");
        j.str(g);
    }
    if let Some(r) = rec {
        m.key(j, "verdict");
        j.str(r.verdict.as_str());
        m.key(j, "action");
        j.str(r.action.as_str());
        if let Some(a) = r.answer {
            m.key(j, "answer");
            j.str(a.as_str());
        }
        if let Some(a) = r.answer_corrects {
            m.key(j, "answer_corrects");
            j.str(a.as_str());
        }
        if let Some(id) = &r.answer_corrects_alert {
            m.key(j, "answer_corrects_alert");
            j.str(id);
        }
        if r.record_type == RecordType::Revoked {
            m.key(j, "revoked");
            j.raw("true");
        }
        if let Some(f) = r.tcp_flags {
            m.key(j, "tcp_flags");
            j.str(f.as_str());
        }
        if r.fragmented {
            m.key(j, "fragmented");
            j.raw("true");
        }
        if r.handshake_completed {
            m.key(j, "handshake_completed");
            j.raw("true");
        }
        m.key(j, "hook");
        j.str(r.hook.as_str());
    }
}

/// An alert's own facts: the dedup count, the alert it follows up, the losses since the
/// previous alert, and the sweep or flood details (the serde document that
/// [`write_alert_facts`] writes by hand).
#[derive(Serialize)]
pub(crate) struct AlertFacts<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    suppressed_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    follow_up_of: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repeats_by_answer: Option<AnswerCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    losses_since_previous: Option<&'a BTreeMap<String, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sweep: Option<SweepDoc<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scan: Option<ScanDoc<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flood: Option<FloodDoc<'a>>,
}

impl AlertFacts<'_> {
    pub(crate) fn of(alert: Option<&Alert>) -> AlertFacts<'_> {
        let (sweep, flood) = alert.map_or((None, None), sweep_flood);
        AlertFacts {
            suppressed_count: alert.map(|a| a.suppressed),
            follow_up_of: alert.and_then(|a| a.follow_up_of.as_deref()),
            repeats_by_answer: alert.and_then(|a| a.repeats_by_answer),
            losses_since_previous: alert.map(|a| &a.losses_since_previous),
            sweep,
            scan: alert.and_then(scan_doc),
            flood,
        }
    }
}

/// Writes [`AlertFacts`] of an alert.
pub(crate) fn write_alert_facts(m: &mut Members, j: &mut JsonOut<'_>, a: &Alert) {
    m.key(j, "suppressed_count");
    j.num(a.suppressed);
    if let Some(f) = &a.follow_up_of {
        m.key(j, "follow_up_of");
        j.str(f);
    }
    if let Some(c) = &a.repeats_by_answer {
        m.key(j, "repeats_by_answer");
        j.serde(c);
    }
    m.key(j, "losses_since_previous");
    // Small maps, rare sweeps and floods: serde writes these few.
    j.serde(&a.losses_since_previous);
    let (sweep, flood) = sweep_flood(a);
    if let Some(s) = sweep {
        m.key(j, "sweep");
        j.serde(&s);
    }
    if let Some(s) = scan_doc(a) {
        m.key(j, "scan");
        j.serde(&s);
    }
    if let Some(f) = flood {
        m.key(j, "flood");
        j.serde(&f);
    }
}

/// `node_monitor.sweep` (ECS) / `unmapped.node_monitor.sweep` (OCSF).
#[derive(Serialize)]
pub(crate) struct SweepDoc<'a> {
    pub ports: &'a [u16],
    pub port_count: usize,
    pub window_s: u64,
}

/// `node_monitor.scan` (ECS) / `unmapped.node_monitor.scan` (OCSF): a port scan across
/// groups (NM-1011).
#[derive(Serialize)]
pub(crate) struct ScanDoc<'a> {
    pub ports: &'a [u16],
    pub port_count: usize,
    pub groups: Vec<&'a str>,
    pub window_s: u64,
    /// Flagged connections to the scanned ports within the window ...
    pub connections: u64,
    /// ... of which this many raised a connection alert of their own.
    pub connection_alerts: u64,
}

/// The scan details of an alert, if it is a scan.
pub(crate) fn scan_doc(alert: &Alert) -> Option<ScanDoc<'_>> {
    match &alert.kind {
        AlertKind::Scan {
            ports,
            groups,
            window,
            connections,
            connection_alerts,
            ..
        } => Some(ScanDoc {
            ports,
            port_count: ports.len(),
            groups: groups.iter().map(|g| &**g).collect(),
            window_s: window.as_secs(),
            connections: *connections,
            connection_alerts: *connection_alerts,
        }),
        _ => None,
    }
}

/// `node_monitor.flood` (ECS) / `unmapped.node_monitor.flood` and the evidence (OCSF).
#[derive(Serialize)]
pub(crate) struct FloodDoc<'a> {
    /// `"node"`, `"group"` (the group is `port_group`), or the source address.
    pub scope: FloodScopeDoc,
    pub rate_limited: u64,
    pub ringbuf_full: u64,
    pub window_s: u64,
    /// A group's flood summary (group scope only).
    #[serde(flatten)]
    pub summary: Option<FloodSummaryDoc<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum FloodScopeDoc {
    Node(&'static str),
    Source(IpAddr),
}

/// The members a group's flood adds to [`FloodDoc`].
#[derive(Serialize)]
pub(crate) struct FloodSummaryDoc<'a> {
    pub group_budget: u64,
    /// `rate_limited` + `group_budget`: what the budgets withheld.
    pub withheld: u64,
    pub new_connections: u64,
    pub events: u64,
    pub distinct_sources: u64,
    pub spoofed_likely: bool,
    pub top_sources: Vec<TopSourceDoc>,
    pub top_ports: Vec<TopPortDoc>,
    pub window_start: Text<humantime::Rfc3339Timestamp>,
    pub window_end: Text<humantime::Rfc3339Timestamp>,
    pub answered: &'a FloodAnswers,
    /// Connection alerts of the group folded into this one (past the cap per group and
    /// window), and their answers.
    pub folded_alerts: u64,
    pub folded_by_answer: &'a AnswerCounts,
}

#[derive(Serialize)]
pub(crate) struct TopSourceDoc {
    pub ip: IpAddr,
    pub withheld: u64,
    pub rate_limited: u64,
}

#[derive(Serialize)]
pub(crate) struct TopPortDoc {
    pub port: u16,
    pub withheld: u64,
}

impl<'a> FloodSummaryDoc<'a> {
    fn of(s: &'a FloodSummary, rate_limited: u64) -> FloodSummaryDoc<'a> {
        FloodSummaryDoc {
            group_budget: s.group_budget,
            withheld: rate_limited + s.group_budget,
            new_connections: s.new_connections,
            events: s.events,
            distinct_sources: s.distinct_sources,
            spoofed_likely: s.spoofed_likely,
            top_sources: s
                .top_sources
                .iter()
                .map(|t| TopSourceDoc {
                    ip: t.ip,
                    withheld: t.withheld,
                    rate_limited: t.rate_limited,
                })
                .collect(),
            top_ports: s
                .top_ports
                .iter()
                .map(|t| TopPortDoc {
                    port: t.port,
                    withheld: t.withheld,
                })
                .collect(),
            window_start: rfc3339_text(s.start),
            window_end: rfc3339_text(s.end),
            answered: &s.answered,
            folded_alerts: s.folded_alerts,
            folded_by_answer: &s.folded_by_answer,
        }
    }
}

/// The sweep and flood details of an alert (at most one is `Some`; a scan's are in
/// [`scan_doc`]).
pub(crate) fn sweep_flood(alert: &Alert) -> (Option<SweepDoc<'_>>, Option<FloodDoc<'_>>) {
    match &alert.kind {
        AlertKind::Connection { .. } | AlertKind::Scan { .. } => (None, None),
        AlertKind::Sweep { ports, window, .. } => (
            Some(SweepDoc {
                ports,
                port_count: ports.len(),
                window_s: window.as_secs(),
            }),
            None,
        ),
        AlertKind::Flood {
            scope,
            rate_limited,
            ringbuf_full,
            window,
            summary,
        } => (
            None,
            Some(FloodDoc {
                scope: match scope {
                    FloodScope::Node => FloodScopeDoc::Node("node"),
                    FloodScope::Group(_) => FloodScopeDoc::Node("group"),
                    FloodScope::Source(ip) => FloodScopeDoc::Source(*ip),
                },
                rate_limited: *rate_limited,
                ringbuf_full: *ringbuf_full,
                window_s: window.as_secs(),
                summary: summary
                    .as_deref()
                    .map(|s| FloodSummaryDoc::of(s, *rate_limited)),
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fixture::{CID, TIME_MS, flagged, sampled};

    #[test]
    fn outcomes() {
        let mut r = flagged();
        assert_eq!(outcome(Some(&r)), "failure");
        r.answer = Some(Answer::Accepted);
        assert_eq!(outcome(Some(&r)), "success");
        r.answer = Some(Answer::NoAnswer);
        assert_eq!(outcome(Some(&r)), "failure");
        r.answer = None;
        assert_eq!(outcome(Some(&r)), "unknown");
        assert_eq!(outcome(None), "unknown");
        assert!(flagged().action.denies());
        r.action = Action::Dropped;
        assert!(r.action.denies());
        r.action = Action::Pass;
        assert!(!r.action.denies());
    }

    #[test]
    fn community_id_and_times() {
        assert_eq!(community_id(&flagged()), CID);
        assert_eq!(epoch_ms(item_time(&OutputItem::Flow(sampled()))), TIME_MS);
    }
}
