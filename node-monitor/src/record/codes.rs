//! The kernel's one-byte codes as types: each becomes an enum (or a bit set) once, at decode,
//! and each type has the one `as_str()` that every format writes. Nothing parses the text back.
use std::{fmt, sync::LazyLock};

use node_monitor_common::{
    ACTION_DROPPED, ACTION_WOULD_DROP, ANSWER_ACCEPTED, ANSWER_REFUSED, FAMILY_V4, HOOK_TC_EGRESS,
    HOOK_TC_INGRESS, HOOK_XDP, IPPROTO_TCP, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG,
    VERDICT_DENIED,
};

pub use crate::config::Protocol;

/// `Display` and `Serialize` of a type through its `as_str()`: the text is made in one place.
macro_rules! text_of {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    )*};
}

text_of!(RecordType, Verdict, Action, Answer, Family, Hook, TcpFlags);

/// What kind of record this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordType {
    /// A new connection from a source outside the group's allowlist.
    Flagged,
    /// A new connection from an allowed source, reported by the sampling path (written
    /// `flow`); [`super::FlowRecord::sampled`] says whether 1-in-N sampling chose it for the
    /// sinks.
    Sampled,
    /// A connection opened while its source was allowed, still running after a config
    /// reload revoked the source (written `revoked`). Alerted like a flagged connection; its
    /// answer is unknown (the node's answer was not tracked while the source was allowed).
    Revoked,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::Flagged => "flagged",
            RecordType::Sampled => "flow",
            RecordType::Revoked => "revoked",
        }
    }
}

/// The allowlist's verdict on the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Allowed,
    Denied,
}

impl Verdict {
    pub fn from_raw(v: u8) -> Verdict {
        if v == VERDICT_DENIED {
            Verdict::Denied
        } else {
            Verdict::Allowed
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
        }
    }
}

/// What the data path did with the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Let through (allowed source).
    Pass,
    /// Let through, but it would have been dropped (monitor mode).
    WouldDrop,
    /// Dropped (enforced).
    Dropped,
}

impl Action {
    pub fn from_raw(a: u8) -> Action {
        match a {
            ACTION_DROPPED => Action::Dropped,
            ACTION_WOULD_DROP => Action::WouldDrop,
            _ => Action::Pass,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::WouldDrop => "would_drop",
            Action::Dropped => "dropped",
        }
    }
    /// Whether the policy denies the connection (enforced or not).
    pub fn denies(self) -> bool {
        matches!(self, Action::WouldDrop | Action::Dropped)
    }
}

/// How the node answered a flagged attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// The protocol of a kernel record (decode admits TCP and UDP only). The type is the config's
/// [`Protocol`]: a group's ports and the records they produce speak of the same thing.
pub(crate) fn protocol_from_raw(p: u8) -> Protocol {
    if p == IPPROTO_TCP {
        Protocol::Tcp
    } else {
        Protocol::Udp
    }
}

/// The address family of the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn from_raw(f: u8) -> Family {
        if f == FAMILY_V4 {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// The program that saw the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    Xdp,
    /// tc ingress or egress.
    Tc,
    Unknown,
}

impl Hook {
    pub fn from_raw(h: u8) -> Hook {
        match h {
            HOOK_XDP => Hook::Xdp,
            HOOK_TC_INGRESS | HOOK_TC_EGRESS => Hook::Tc,
            _ => Hook::Unknown,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::Tc => "tc",
            Hook::Unknown => "unknown",
        }
    }
}

/// The six flags [`TcpFlags`] names fit in the low six bits (the TCP header's own bits).
const TCP_FLAG_MASK: u8 = 0x3f;
const _: () =
    assert!((TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST | TCP_PSH | TCP_URG) & !TCP_FLAG_MASK == 0);

/// The TCP flags of a packet: the header's bits FIN, SYN, RST, PSH, ACK and URG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TcpFlags(u8);

/// The names of every combination of the six flags, built once: a record takes its text
/// from here instead of joining names per record.
static TCP_FLAG_NAMES: LazyLock<[String; 64]> =
    LazyLock::new(|| std::array::from_fn(|i| join_tcp_flags(i as u8)));

impl TcpFlags {
    /// The flags among the six in `bits` (other bits are ignored).
    pub const fn from_bits(bits: u8) -> TcpFlags {
        TcpFlags(bits & TCP_FLAG_MASK)
    }
    /// The header bits (OCSF `tcp_flags` is this integer).
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// The flags as text, e.g. "SYN" or "FIN|PSH|URG" ("NONE" when none is set).
    pub fn as_str(self) -> &'static str {
        &TCP_FLAG_NAMES[usize::from(self.0)]
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_flag_names() {
        let text = |b| TcpFlags::from_bits(b).as_str();
        assert_eq!(text(TCP_FIN | TCP_PSH | TCP_URG), "FIN|PSH|URG");
        assert_eq!(text(0), "NONE");
        assert_eq!(text(TCP_SYN | TCP_ACK | 0xc0), "SYN|ACK");
        for f in 0..=u8::MAX {
            assert_eq!(text(f), join_tcp_flags(f));
        }
    }

    #[test]
    fn proto_numbers() {
        assert_eq!(Protocol::Tcp.number(), 6);
        assert_eq!(Protocol::Udp.number(), 17);
        assert_eq!(protocol_from_raw(IPPROTO_TCP), Protocol::Tcp);
    }
}
