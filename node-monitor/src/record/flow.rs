//! The typed flow record: one flagged connection or sampled flow, as decode builds it and
//! every later stage reads it (enums and bit sets, never text).
use std::{net::IpAddr, sync::Arc, time::SystemTime};

use serde::Serialize;

use super::codes::{Action, Answer, Family, Hook, Protocol, RecordType, TcpFlags, Verdict};

/// One flagged connection or sampled flow, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowRecord {
    /// When the packet was seen (serialized as RFC 3339, UTC, microseconds).
    #[serde(serialize_with = "serialize_rfc3339")]
    pub time: SystemTime,
    #[serde(rename = "type")]
    pub record_type: RecordType,
    /// Shared with every record of the group (interned by [`crate::answers::Tracker`]).
    pub group: Arc<str>,
    pub verdict: Verdict,
    /// Pass, would drop (monitor mode) or dropped (enforced).
    pub action: Action,
    /// Flagged connections only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
    /// A late answer: the node answered after this attempt had been reported with this
    /// answer (`no_answer`, at the answer timeout); this record corrects that report. The
    /// record then describes the answer packet (its time, hook, interface and length).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_corrects: Option<Answer>,
    /// With `answer_corrects`: the id of the alert (the first of its dedup series) that
    /// reported the attempt as `no_answer`, while the engine remembers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_corrects_alert: Option<String>,
    pub protocol: Protocol,
    pub family: Family,
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    /// Interface name (None if it disappeared before the record was read); shared with
    /// every record of the interface.
    pub interface: Option<Arc<str>>,
    pub ifindex: u32,
    pub hook: Hook,
    /// VLAN ids, outer first; empty when untagged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vlan: Vec<u16>,
    /// TCP flags of the first packet (TCP only; [`TcpFlags::FRAGMENTED`] when that packet was
    /// a first fragment that ended before them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<TcpFlags>,
    /// The attempt was seen as the first fragment of an IPv4 datagram (ports read from it,
    /// the rest of the datagram never parsed).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fragmented: bool,
    /// NM-1030 only: reported from ingress on the peer's ACK that completed the handshake,
    /// after the event budgets had withheld both the attempt and the node's acceptance (a
    /// spoofed source never completes one).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub handshake_completed: bool,
    /// With `handshake_completed`: the acceptance this ACK completes had been reported itself
    /// (an attempt's answer, or an NM-1030 from egress), so the engine raises this record only
    /// when the per-group cap folded that report into a flood alert.
    #[serde(skip)]
    pub completes_reported: bool,
    pub packet_length: u32,
    /// Monotonic kernel time of the packet (ns), for ordering and correlation.
    pub ktime_ns: u64,
    /// For sampled records: chosen by 1-in-N sampling (reported as a flow record). A flow that
    /// was not sampled still reaches the alert engine (sweep detection) but no sink.
    #[serde(skip)]
    pub sampled: bool,
    /// Who is behind the flow, from the cluster cache (`crate::cluster`); `None` when the
    /// daemon runs without a cluster. Set by the daemon before the record reaches the alert
    /// engine, so that every alert and flow record made from it carries it.
    #[serde(skip)]
    pub identity: Option<Arc<super::identity::FlowIdentity>>,
}

fn serialize_rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_micros(*t))
}
