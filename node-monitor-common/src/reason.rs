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
/// Frame ends inside the TCP or UDP header.
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
pub const COUNT: u32 = 17;
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
];
