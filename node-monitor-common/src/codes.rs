//! The small codes both sides agree on: group ids, protocol numbers, address families,
//! verdicts, actions, answers, hooks, event kinds, TCP flag bits and the parser's bounds.

/// Group ids are one byte; 0 means "this port is not watched".
pub const GROUP_NONE: u8 = 0;
/// Number of group slots (ids 1..MAX_GROUPS-1 are usable).
pub const MAX_GROUPS: usize = 64;
/// Entries in each per-protocol port table (one per port number).
pub const PORT_TABLE_ENTRIES: u32 = 65_536;

/// IP protocol numbers the data path classifies.
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;

/// Address families as carried in events and flow keys.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Protocol index used in [`stats_index`](crate::stats_index).
pub const PROTO_IDX_TCP: u32 = 0;
pub const PROTO_IDX_UDP: u32 = 1;

/// Verdicts.
pub const VERDICT_ALLOWED: u8 = 0;
pub const VERDICT_DENIED: u8 = 1;

/// What the data path did with a packet.
pub const ACTION_PASS: u8 = 0;
/// Monitor mode: the group is not enforced, but drop mode would have dropped this packet.
pub const ACTION_WOULD_DROP: u8 = 1;
pub const ACTION_DROPPED: u8 = 2;

/// How the node answered a flagged attempt.
pub const ANSWER_NONE: u8 = 0;
/// TCP SYN-ACK, or a UDP datagram back from the watched port.
pub const ANSWER_ACCEPTED: u8 = 1;
/// TCP RST, or ICMP/ICMPv6 port unreachable.
pub const ANSWER_REFUSED: u8 = 2;

/// Which program produced an event.
pub const HOOK_XDP: u8 = 1;
pub const HOOK_TC_INGRESS: u8 = 2;
pub const HOOK_TC_EGRESS: u8 = 3;

/// Event kinds.
/// A new connection from a source that is not allowed.
pub const EVENT_FLAGGED: u8 = 1;
/// A sampled new connection from an allowed source (a flow record).
pub const EVENT_SAMPLED: u8 = 2;
/// The node's answer to a flagged attempt, seen by the egress program.
pub const EVENT_ANSWER: u8 = 3;
/// A flow opened while its source was allowed, seen again after a reload revoked the
/// source (any packet of the flow: an established connection's ACKs, a UDP datagram). Sent
/// once per flow, under the source's flagged budget.
pub const EVENT_REVOKED: u8 = 4;
/// The node accepted a connection that ingress never flagged: its SYN-ACK (or the first UDP
/// reply of a 5-tuple) left a watched port for a peer outside the allowlist, and the flow
/// table held no flagged attempt. Seen by the egress program (rule NM-1030).
pub const EVENT_UNSEEN: u8 = 5;

/// `Event::completes` and `PendingAccept::completes`: what a completed handshake completes.
/// Nothing: not a completion.
pub const COMPLETES_NONE: u8 = 0;
/// An acceptance whose event (and whose attempt's) the budgets withheld: the completing ACK's
/// NM-1030 is the connection's only report.
pub const COMPLETES_WITHHELD: u8 = 1;
/// An acceptance that was reported (a flagged attempt's answer, or an NM-1030 from egress):
/// userspace names it again only when its alert was folded into a flood alert by the
/// per-group cap on connection alerts.
pub const COMPLETES_REPORTED: u8 = 2;

/// `Event::fragment`: what the event's packet was, as fragments go.
/// A whole packet (or a first fragment that carries the whole transport header).
pub const FRAGMENT_NONE: u8 = 0;
/// The first fragment of an IPv4 datagram that cuts the TCP header short after its flags:
/// `tcp_flags` were read from the fragment.
pub const FRAGMENT_FIRST: u8 = 1;
/// The first fragment of an IPv4 datagram that cuts the TCP header before its flags (or a
/// UDP header short): `tcp_flags` are unknown (0 in the event).
pub const FRAGMENT_FIRST_NO_FLAGS: u8 = 2;

/// TCP flag bits as in the TCP header's 13th byte.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_URG: u8 = 0x20;

/// Parser bounds.
pub const MAX_VLAN_TAGS: usize = 2;
pub const MAX_IPV6_EXT_HEADERS: usize = 6;
