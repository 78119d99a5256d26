//! Ring-buffer records → typed flow records with names and wall-clock times.
use std::{
    net::IpAddr,
    sync::{Arc, LazyLock},
    time::{Duration, SystemTime},
};

use node_monitor_common::{
    ACTION_DROPPED, ACTION_WOULD_DROP, ANSWER_ACCEPTED, ANSWER_REFUSED, EVENT_ANSWER,
    EVENT_FLAGGED, EVENT_SAMPLED, Event, FAMILY_V4, FAMILY_V6, FlowKey, HOOK_TC_EGRESS,
    HOOK_TC_INGRESS, HOOK_XDP, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST,
    TCP_SYN, TCP_URG, VERDICT_DENIED,
};
use serde::Serialize;

/// Why a ring-buffer record could not be decoded (counted, never fatal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes, expected {expected}", expected = std::mem::size_of::<Event>())]
    Size(usize),
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("unknown address family {0}")]
    Family(u8),
    #[error("unknown protocol {0}")]
    Protocol(u8),
}

/// Decodes one ring-buffer record, checking every enumerated field.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() != std::mem::size_of::<Event>() {
        return Err(DecodeError::Size(bytes.len()));
    }
    // SAFETY: the length matches and Event is plain old data (every bit pattern valid).
    let ev: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    if !matches!(ev.kind, EVENT_FLAGGED | EVENT_SAMPLED | EVENT_ANSWER) {
        return Err(DecodeError::Kind(ev.kind));
    }
    if !matches!(ev.family, FAMILY_V4 | FAMILY_V6) {
        return Err(DecodeError::Family(ev.family));
    }
    if !matches!(ev.proto, IPPROTO_TCP | IPPROTO_UDP) {
        return Err(DecodeError::Protocol(ev.proto));
    }
    Ok(ev)
}

/// The flow key of an event (ingress orientation).
pub fn flow_key(ev: &Event) -> FlowKey {
    FlowKey {
        src_addr: ev.src_addr,
        dst_addr: ev.dst_addr,
        src_port: ev.src_port,
        dst_port: ev.dst_port,
        proto: ev.proto,
        family: ev.family,
        _pad: 0,
    }
}

/// How the node answered a flagged attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// SYN-ACK, or a UDP reply: a service listens.
    Accepted,
    /// RST, or ICMP port unreachable: nothing listens.
    Refused,
    /// Nothing within the answer timeout (dropped, filtered, or a silent UDP service).
    NoAnswer,
}

impl Answer {
    pub fn from_raw(a: u8) -> Option<Answer> {
        match a {
            ANSWER_ACCEPTED => Some(Answer::Accepted),
            ANSWER_REFUSED => Some(Answer::Refused),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Accepted => "accepted",
            Answer::Refused => "refused",
            Answer::NoAnswer => "no_answer",
        }
    }
}

/// What kind of record this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordType {
    /// A new connection from a source outside the group's allowlist.
    Flagged,
    /// A sampled new connection from an allowed source.
    Flow,
}

/// One flagged connection or sampled flow, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowRecord {
    /// When the packet was seen (serialized as RFC 3339, UTC, microseconds).
    #[serde(serialize_with = "serialize_rfc3339")]
    pub time: SystemTime,
    #[serde(rename = "type")]
    pub record_type: RecordType,
    /// Shared with every record of the group (interned by [`crate::flows::Tracker`]).
    pub group: Arc<str>,
    /// "allowed" or "denied".
    pub verdict: &'static str,
    /// "pass", "would_drop" (monitor mode) or "dropped" (enforced).
    pub action: &'static str,
    /// Flagged connections only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
    /// "tcp" or "udp".
    pub protocol: &'static str,
    /// "ipv4" or "ipv6".
    pub family: &'static str,
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    /// Interface name (None if it disappeared before the record was read); shared with
    /// every record of the interface.
    pub interface: Option<Arc<str>>,
    pub ifindex: u32,
    /// "xdp" or "tc".
    pub hook: &'static str,
    /// VLAN ids, outer first; empty when untagged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vlan: Vec<u16>,
    /// TCP flags of the first packet, e.g. "SYN" or "FIN|PSH|URG".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<&'static str>,
    pub packet_length: u32,
    /// Monotonic kernel time of the packet (ns), for ordering and correlation.
    pub ktime_ns: u64,
    /// For flow records: chosen by 1-in-N sampling (reported as a flow record). A flow that
    /// was not sampled still reaches the alert engine (sweep detection) but no sink.
    #[serde(skip)]
    pub sampled: bool,
}

/// Converts kernel monotonic timestamps to wall-clock time. Taken once per batch of records.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Realtime minus monotonic, in ns.
    offset_ns: i128,
    /// Monotonic time when the clock was taken (ns): "now" for the whole batch.
    taken_ns: u64,
}

impl Clock {
    pub fn now() -> Clock {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Clock {
            offset_ns: real - mono,
            taken_ns: u64::try_from(mono).unwrap_or(0),
        }
    }
    pub fn wall(&self, ktime_ns: u64) -> SystemTime {
        let ns = ktime_ns as i128 + self.offset_ns;
        if ns <= 0 {
            SystemTime::UNIX_EPOCH
        } else {
            SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64)
        }
    }
    /// Current monotonic time, in the kernel's `bpf_ktime_get_ns` clock.
    pub fn ktime_now() -> u64 {
        clock_ns(libc::CLOCK_MONOTONIC) as u64
    }
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// Interface names by index, cached for a second: a record needs its interface's name, and
/// asking the kernel for it per record would cost a syscall each time. `now_ns` is the
/// batch's [`Clock`] time (monotonic), so a record costs no clock read either.
fn cached_ifname(index: u32, now_ns: u64) -> Option<Arc<str>> {
    use std::{cell::RefCell, collections::HashMap};
    const TTL_NS: u64 = 1_000_000_000;
    /// Name (None: no such interface) and when it was read (monotonic ns).
    type Entry = (Option<Arc<str>>, u64);
    thread_local! {
        static CACHE: RefCell<HashMap<u32, Entry>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((name, at)) = c.get(&index)
            && now_ns.saturating_sub(*at) < TTL_NS
        {
            return name.clone();
        }
        if c.len() > 4096 {
            c.clear();
        }
        let name: Option<Arc<str>> = crate::netif::ifname(index).map(Arc::from);
        c.insert(index, (name.clone(), now_ns));
        name
    })
}

fn serialize_rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_micros(*t))
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// The six flags [`tcp_flags_str`] names fit in the low six bits.
const TCP_FLAG_MASK: u8 = 0x3f;
const _: () =
    assert!((TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST | TCP_PSH | TCP_URG) & !TCP_FLAG_MASK == 0);

/// The names of every combination of the six flags, built once: a record takes its text
/// from here instead of joining names per record.
static TCP_FLAG_NAMES: LazyLock<[String; 64]> =
    LazyLock::new(|| std::array::from_fn(|i| join_tcp_flags(i as u8)));

/// TCP flags as text, e.g. "SYN" or "FIN|PSH|URG" ("NONE" when none of the six is set).
pub fn tcp_flags_str(flags: u8) -> &'static str {
    &TCP_FLAG_NAMES[usize::from(flags & TCP_FLAG_MASK)]
}

fn join_tcp_flags(flags: u8) -> String {
    let names = [
        (TCP_SYN, "SYN"),
        (TCP_ACK, "ACK"),
        (TCP_FIN, "FIN"),
        (TCP_RST, "RST"),
        (TCP_PSH, "PSH"),
        (TCP_URG, "URG"),
    ];
    let parts: Vec<&str> = names
        .iter()
        .filter(|(b, _)| flags & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if parts.is_empty() {
        "NONE".to_owned()
    } else {
        parts.join("|")
    }
}

/// Builds the record for a flagged or sampled event. `group` is the group's name.
pub fn record(ev: &Event, group: Arc<str>, clock: &Clock, answer: Option<Answer>) -> FlowRecord {
    let tcp = ev.proto == IPPROTO_TCP;
    let vlan = [ev.vlan_outer, ev.vlan_inner];
    FlowRecord {
        time: clock.wall(ev.ts_ns),
        record_type: if ev.kind == EVENT_FLAGGED {
            RecordType::Flagged
        } else {
            RecordType::Flow
        },
        group,
        verdict: if ev.verdict == VERDICT_DENIED {
            "denied"
        } else {
            "allowed"
        },
        action: match ev.action {
            ACTION_DROPPED => "dropped",
            ACTION_WOULD_DROP => "would_drop",
            _ => "pass",
        },
        answer,
        protocol: if tcp { "tcp" } else { "udp" },
        family: if ev.family == FAMILY_V4 {
            "ipv4"
        } else {
            "ipv6"
        },
        src_ip: ev.src_addr.to_ip(ev.family),
        src_port: ev.src_port,
        dst_ip: ev.dst_addr.to_ip(ev.family),
        dst_port: ev.dst_port,
        interface: cached_ifname(ev.ifindex, clock.taken_ns),
        ifindex: ev.ifindex,
        hook: match ev.hook {
            HOOK_XDP => "xdp",
            HOOK_TC_INGRESS | HOOK_TC_EGRESS => "tc",
            _ => "unknown",
        },
        vlan: vlan.into_iter().take_while(|v| *v != 0).collect(),
        tcp_flags: tcp.then(|| tcp_flags_str(ev.tcp_flags)),
        packet_length: ev.pkt_len,
        ktime_ns: ev.ts_ns,
        sampled: ev.kind == EVENT_SAMPLED && ev.sampled != 0,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use node_monitor_common::Addr;

    use super::*;

    fn event() -> Event {
        let mut e = Event {
            kind: EVENT_FLAGGED,
            family: FAMILY_V4,
            proto: IPPROTO_TCP,
            src_port: 40000,
            dst_port: 10250,
            tcp_flags: TCP_SYN,
            verdict: VERDICT_DENIED,
            action: ACTION_WOULD_DROP,
            hook: HOOK_XDP,
            vlan_outer: 100,
            ..Default::default()
        };
        e.src_addr = Addr::from_ip([203, 0, 113, 9].into());
        e.dst_addr = Addr::from_ip([198, 51, 100, 1].into());
        e
    }

    fn bytes(e: &Event) -> Vec<u8> {
        // SAFETY: Event is plain old data.
        unsafe {
            std::slice::from_raw_parts(
                (e as *const Event).cast::<u8>(),
                std::mem::size_of::<Event>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn decode_round_trips_and_rejects_garbage() {
        let e = event();
        assert_eq!(decode(&bytes(&e)), Ok(e));
        assert_eq!(decode(&[0u8; 10]), Err(DecodeError::Size(10)));
        let mut bad = e;
        bad.kind = 9;
        assert_eq!(decode(&bytes(&bad)), Err(DecodeError::Kind(9)));
        bad = e;
        bad.family = 5;
        assert_eq!(decode(&bytes(&bad)), Err(DecodeError::Family(5)));
        bad = e;
        bad.proto = 1;
        assert_eq!(decode(&bytes(&bad)), Err(DecodeError::Protocol(1)));
    }

    #[test]
    fn record_fields() {
        let r = record(
            &event(),
            "kubelet".into(),
            &Clock {
                offset_ns: 1_700_000_000_000_000_000,
                taken_ns: 0,
            },
            Some(Answer::Refused),
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["type"], "flagged");
        assert_eq!(v["group"], "kubelet");
        assert_eq!(v["verdict"], "denied");
        assert_eq!(v["action"], "would_drop");
        assert_eq!(v["answer"], "refused");
        assert_eq!(v["src_ip"], "203.0.113.9");
        assert_eq!(v["dst_ip"], "198.51.100.1");
        assert_eq!(v["dst_port"], 10250);
        assert_eq!(v["protocol"], "tcp");
        assert_eq!(v["family"], "ipv4");
        assert_eq!(v["hook"], "xdp");
        assert_eq!(v["vlan"], serde_json::json!([100]));
        assert_eq!(v["tcp_flags"], "SYN");
        assert_eq!(v["time"], "2023-11-14T22:13:20.000000Z");
    }

    #[test]
    fn ipv6_and_flags() {
        let raw = Addr::from_octets("2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(raw.to_ip(FAMILY_V6).to_string(), "2001:db8::7");
        let v4 = Addr::from_ip("203.0.113.9".parse().unwrap());
        assert_eq!(v4.to_ip(FAMILY_V4).to_string(), "203.0.113.9");
        assert_eq!(v4.octets()[4..], [0; 12]);
        assert_eq!(tcp_flags_str(TCP_FIN | TCP_PSH | TCP_URG), "FIN|PSH|URG");
        assert_eq!(tcp_flags_str(0), "NONE");
        assert_eq!(tcp_flags_str(TCP_SYN | TCP_ACK | 0xc0), "SYN|ACK");
        for f in 0..=u8::MAX {
            assert_eq!(tcp_flags_str(f), join_tcp_flags(f));
        }
    }
}
