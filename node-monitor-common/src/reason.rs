//! Index of a packet-level reason counter in the `REASONS` per-CPU array.
//!
//! Reasons below [`VLAN_TOO_DEEP`] describe packets that are fine but not
//! classified (not IP, not TCP/UDP); the rest describe packets that were passed untouched
//! because they could not be parsed (or, in a drop group, dropped: counted again under
//! [`DROPPED_UNPARSED`]), or answers that could not be reported.

/// Not IPv4/IPv6 (ARP, LLDP, ...).
pub const NOT_IP: u32 = 0;
/// IP, but neither TCP nor UDP (ICMP, SCTP, ...).
pub const OTHER_L4: u32 = 1;
/// IPv4 non-first fragment: counted, never parsed for ports.
pub const IPV4_FRAGMENT: u32 = 2;
/// IPv6 non-first fragment: counted, never parsed for ports.
pub const IPV6_FRAGMENT: u32 = 3;
/// More VLAN tags than [`super::MAX_VLAN_TAGS`].
pub const VLAN_TOO_DEEP: u32 = 4;
/// Frame shorter than an Ethernet header.
pub const TRUNC_ETH: u32 = 5;
/// Frame ends inside a VLAN tag.
pub const TRUNC_VLAN: u32 = 6;
/// Frame ends inside the IPv4 header (fixed part or options).
pub const TRUNC_IPV4: u32 = 7;
/// IPv4 header with version != 4 or IHL < 5.
pub const BAD_IPV4: u32 = 8;
/// Frame ends inside the fixed IPv6 header.
pub const TRUNC_IPV6: u32 = 9;
/// Frame ends inside an IPv6 extension header.
pub const TRUNC_IPV6_EXT: u32 = 10;
/// More IPv6 extension headers than [`super::MAX_IPV6_EXT_HEADERS`].
pub const IPV6_EXT_LIMIT: u32 = 11;
/// Frame, or the IP packet by its own length field (IPv4 Total Length, IPv6 Payload Length;
/// the bytes past it are padding the kernel trims), ends inside the TCP or UDP header.
pub const TRUNC_L4: u32 = 12;
/// TCP header with a data offset < 5.
pub const BAD_TCP: u32 = 13;
/// An answer event (SYN-ACK/RST/ICMP) that the ring buffer had no room for.
/// The answer is still recorded on the flow, where userspace finds it.
pub const ANSWER_RINGBUF_FULL: u32 = 14;
/// Flow table update failed (the LRU map refused an insert).
pub const FLOW_UPDATE_FAILED: u32 = 15;
/// A packet the parser gave up on (counted under its own reason as well) that was
/// dropped because its destination port could still be read and a group with
/// `action: drop` watches it: a drop group fails closed for what it cannot read.
pub const DROPPED_UNPARSED: u32 = 16;
// Fragments and answers nobody saw asked for (issue 14): see `ALERTS.md`, "What is seen
// where".
/// IPv4 first fragment (offset 0, MF) that holds less than a whole TCP (20 bytes) or UDP
/// (8 bytes) header: never legitimate (RFC 1858), the classic way around port filters.
pub const FRAG_TINY: u32 = 17;
/// IPv4 non-first TCP fragment at offset 1 (8 bytes), which would overwrite the TCP
/// flags of the first one (RFC 1858 overlapping fragments; also the second piece of a SYN
/// cut in 8-byte fragments). Passed, never parsed.
pub const FRAG_OVERLAP: u32 = 18;
/// IPv4 first fragment that cuts the transport header short (or whose TCP data offset is
/// bad) and whose readable destination port is watched, from any source (those from
/// sources not allowed are also flagged as attempts, or dropped). A first fragment that
/// holds the whole header is an ordinary packet to the parser and is not counted here.
pub const FRAG_WATCHED: u32 = 19;
/// The node's SYN-ACK (or first UDP reply) to a peer outside the allowlist on a 5-tuple
/// where ingress saw no attempt (NM-1030): every one, reported or not
/// (`unseen_accepted == unseen events + unseen_rate_limited + unseen_ringbuf_full`).
pub const UNSEEN_ACCEPTED: u32 = 20;
/// Of those, withheld by the source's flagged-event budget or the group's node-wide one.
pub const UNSEEN_RATE_LIMITED: u32 = 21;
/// Of those, lost to a full ring buffer (the answer is still recorded on the flow).
pub const UNSEEN_RINGBUF_FULL: u32 = 22;
/// Answers dropped on egress in a drop group: unseen accepted connections and their
/// retransmitted answers, which therefore never complete.
pub const UNSEEN_DROPPED: u32 = 23;
/// A denied source's ACK that acknowledges the node's SYN-ACK completed a handshake that
/// egress recorded (`ACCEPTS`): one whose attempt and acceptance the budgets had both withheld,
/// or one whose acceptance was reported ([`HANDSHAKE_COMPLETED_REPORTED`]). A real connection,
/// reported as NM-1030 from ingress under the group's `completed` budget
/// (`handshake_completed == events + handshake_rate_limited + handshake_ringbuf_full`).
pub const HANDSHAKE_COMPLETED: u32 = 24;
/// Of those, withheld by the group's `completed` budget.
pub const HANDSHAKE_RATE_LIMITED: u32 = 25;
/// Of those, lost to a full ring buffer.
pub const HANDSHAKE_RINGBUF_FULL: u32 = 26;
/// A TCP or UDP packet (ingress) to a port no group watches: the fast path's one per-CPU
/// increment, so that every packet is counted somewhere ([`DISPOSITIONS`]).
pub const UNWATCHED: u32 = 27;
/// Of [`HANDSHAKE_COMPLETED`], those whose acceptance had been reported (userspace names the
/// connection again only when the per-group cap folded that report into a flood alert).
pub const HANDSHAKE_COMPLETED_REPORTED: u32 = 28;
/// A denied source's pure ACK on a 5-tuple with a recorded acceptance that does not
/// acknowledge the node's SYN-ACK (a blind spoof, or a reordered segment): the acceptance
/// keeps waiting for the real one.
pub const HANDSHAKE_ACK_MISMATCH: u32 = 29;
pub const COUNT: u32 = 30;

/// The reasons that say what became of an ingress packet, one per packet: every packet an
/// ingress program (XDP, tc ingress) sees is counted exactly once, either in `GROUP_STATS`
/// (`packets`, a watched TCP/UDP port) or under one of these. The other reasons count
/// something more about a packet already counted (a fragment's kind, a fail-closed drop, a
/// failed flow insert) or egress answers.
pub const DISPOSITIONS: [u32; 15] = [
    NOT_IP,
    OTHER_L4,
    IPV4_FRAGMENT,
    IPV6_FRAGMENT,
    VLAN_TOO_DEEP,
    TRUNC_ETH,
    TRUNC_VLAN,
    TRUNC_IPV4,
    BAD_IPV4,
    TRUNC_IPV6,
    TRUNC_IPV6_EXT,
    IPV6_EXT_LIMIT,
    TRUNC_L4,
    BAD_TCP,
    UNWATCHED,
];
/// Names in index order, as exported in metrics.
pub const NAMES: [&str; COUNT as usize] = [
    "not_ip",
    "other_l4",
    "ipv4_fragment",
    "ipv6_fragment",
    "vlan_too_deep",
    "truncated_ethernet",
    "truncated_vlan",
    "truncated_ipv4",
    "bad_ipv4_header",
    "truncated_ipv6",
    "truncated_ipv6_ext",
    "ipv6_ext_limit",
    "truncated_l4",
    "bad_tcp_header",
    "answer_ringbuf_full",
    "flow_update_failed",
    "dropped_unparsed",
    "ipv4_tiny_first_fragment",
    "ipv4_overlapping_fragment",
    "ipv4_fragment_to_watched_port",
    "unseen_accepted",
    "unseen_accepted_rate_limited",
    "unseen_accepted_ringbuf_full",
    "unseen_accepted_dropped",
    "handshake_completed",
    "handshake_rate_limited",
    "handshake_ringbuf_full",
    "unwatched_port",
    "handshake_completed_reported",
    "handshake_ack_mismatch",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_are_unique() {
        for (i, a) in NAMES.iter().enumerate() {
            assert!(!NAMES[i + 1..].contains(a), "{a} twice");
        }
    }
}
