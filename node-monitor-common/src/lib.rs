//! Types and constants shared by the eBPF programs and the userspace daemon.
//!
//! Every type that crosses a map is `#[repr(C)]`, built from fixed-width integers with
//! explicit padding, and its size is asserted at compile time, so that both sides read
//! the same bytes. No `bool`, `enum` or `Option` crosses a map.
#![no_std]

use core::mem::size_of;

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

/// Protocol index used in [`stats_index`].
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

/// What opened a flow-table entry ([`FlowState::opener`]).
/// A UDP datagram.
pub const OPENER_UDP: u8 = 0;
/// A pure TCP SYN (SYN set, ACK and RST clear): a connection attempt.
pub const OPENER_SYN: u8 = 1;
/// A TCP segment without SYN, ACK and RST (NULL, FIN, Xmas, PSH, URG...): a stealth probe.
/// Reported like an attempt, but its entry never makes a later SYN a retransmit.
pub const OPENER_PROBE: u8 = 2;
/// The first fragment of an IPv4 datagram whose TCP header it cuts short (flags unknown or
/// read from the fragment): reported like an attempt; a later SYN is always a new attempt.
pub const OPENER_FRAGMENT: u8 = 3;
/// No attempt was seen: the egress program opened the entry on the node's answer (a SYN-ACK
/// or the first UDP reply) to a peer outside the allowlist (NM-1030). The entry holds the
/// answer, so a retransmitted answer raises nothing again.
pub const OPENER_ANSWER: u8 = 4;

/// Is `flags` a pure SYN: SYN set, ACK and RST clear (FIN, PSH, URG, ECE, CWR may be set)?
#[inline(always)]
pub const fn is_pure_syn(flags: u8) -> bool {
    flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN
}

/// Does a TCP segment with `flags` on a flow-table entry start a new attempt?
///
/// `entry` is `None` when the 5-tuple has no entry, else `(idle, opener, answer, same_isn)`
/// of the entry (`same_isn`: the segment carries the sequence number of the entry's opening
/// segment). A segment with ACK or RST never does. Otherwise a new attempt starts when the
/// 5-tuple has no live entry (none, or idle past the idle timeout), or, for a pure SYN, when
/// the entry was opened by a probe, or its attempt already has an answer, or the SYN carries
/// another initial sequence number (another `connect()`, or a forged SYN before the real
/// one). A SYN retransmit (same sequence number) of an unanswered attempt is not new, however
/// late: if the node answers it after the answer timeout, userspace reports that late answer
/// as a record of its own. A repeated probe is not new either. Pure, so host tests cover it.
#[inline(always)]
pub const fn tcp_starts_attempt(flags: u8, entry: Option<(bool, u8, u8, bool)>) -> bool {
    if flags & (TCP_ACK | TCP_RST) != 0 {
        return false;
    }
    match entry {
        None => true,
        Some((idle, opener, answer, same_isn)) => {
            idle || (is_pure_syn(flags)
                && (opener != OPENER_SYN || answer != ANSWER_NONE || !same_isn))
        }
    }
}

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
/// The node accepted a connection that ingress never flagged: its SYN-ACK (or the first UDP
/// reply of a 5-tuple) left a watched port for a peer outside the allowlist, and the flow
/// table held no flagged attempt. Seen by the egress program (rule NM-1030).
pub const EVENT_UNSEEN: u8 = 4;

/// `Event::fragment`: what the event's packet was, as fragments go.
/// A whole packet (or a first fragment that carries the whole transport header).
pub const FRAGMENT_NONE: u8 = 0;
/// The first fragment of an IPv4 datagram that cuts the TCP header short after its flags:
/// `tcp_flags` were read from the fragment.
pub const FRAGMENT_FIRST: u8 = 1;
/// The first fragment of an IPv4 datagram that cuts the TCP header before its flags (or a
/// UDP header short): `tcp_flags` are unknown (0 in the event).
pub const FRAGMENT_FIRST_NO_FLAGS: u8 = 2;

/// Does a first fragment (ports read, TCP flags possibly unknown) on a flow-table entry
/// start a new attempt? `entry` as for [`tcp_starts_attempt`]: `None` when the 5-tuple has no
/// entry, else `(idle, answer, same_isn)`. New when there is no live entry, or its attempt
/// already has an answer, or it carries another sequence number; the fragments of a
/// retransmitted SYN (same sequence number, no answer yet) are not. Pure, so host tests
/// cover it.
#[inline(always)]
pub const fn fragment_starts_attempt(entry: Option<(bool, u8, bool)>) -> bool {
    match entry {
        None => true,
        Some((idle, answer, same_isn)) => idle || answer != ANSWER_NONE || !same_isn,
    }
}

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

/// Index of a packet-level reason counter in the `REASONS` per-CPU array.
///
/// Reasons below [`REASON_FIRST_MALFORMED`] describe packets that are fine but not
/// classified (not IP, not TCP/UDP); the rest describe packets that were passed untouched
/// because they could not be parsed, or answers that could not be reported.
pub mod reason {
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
    // Fragments and answers nobody saw asked for (issue 14): see `ALERTS.md`, "What is seen
    // where".
    /// IPv4 first fragment (offset 0, MF) that holds less than a whole TCP (20 bytes) or UDP
    /// (8 bytes) header: never legitimate (RFC 1858), the classic way around port filters.
    pub const FRAG_TINY: u32 = 16;
    /// IPv4 non-first TCP fragment at offset 1 (8 bytes), which would overwrite the TCP
    /// flags of the first one (RFC 1858 overlapping fragments; also the second piece of a SYN
    /// cut in 8-byte fragments). Passed, never parsed.
    pub const FRAG_OVERLAP: u32 = 17;
    /// IPv4 first fragment that cuts the transport header short (or whose TCP data offset is
    /// bad) and whose readable destination port is watched, from any source (those from
    /// sources not allowed are also flagged as attempts, or dropped). A first fragment that
    /// holds the whole header is an ordinary packet to the parser and is not counted here.
    pub const FRAG_WATCHED: u32 = 18;
    /// The node's SYN-ACK (or first UDP reply) to a peer outside the allowlist on a 5-tuple
    /// where ingress saw no attempt (NM-1030): every one, reported or not
    /// (`unseen_accepted == unseen events + unseen_rate_limited + unseen_ringbuf_full`).
    pub const UNSEEN_ACCEPTED: u32 = 19;
    /// Of those, withheld by the source's flagged-event budget.
    pub const UNSEEN_RATE_LIMITED: u32 = 20;
    /// Of those, lost to a full ring buffer (the answer is still recorded on the flow).
    pub const UNSEEN_RINGBUF_FULL: u32 = 21;
    /// Answers dropped on egress in a drop group: unseen accepted connections and their
    /// retransmitted answers, which therefore never complete.
    pub const UNSEEN_DROPPED: u32 = 22;
    pub const COUNT: u32 = 23;
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
        "ipv4_tiny_first_fragment",
        "ipv4_overlapping_fragment",
        "ipv4_fragment_to_watched_port",
        "unseen_accepted",
        "unseen_accepted_rate_limited",
        "unseen_accepted_ringbuf_full",
        "unseen_accepted_dropped",
    ];
}

/// Number of entries in the per-CPU `GROUP_STATS` array.
pub const STATS_ENTRIES: u32 = (MAX_GROUPS as u32) * 4;

/// Index into `GROUP_STATS` for (group, protocol index, verdict).
#[inline(always)]
pub const fn stats_index(group: u8, proto_idx: u32, verdict: u8) -> u32 {
    ((group as u32) << 2) | ((proto_idx & 1) << 1) | ((verdict as u32) & 1)
}

/// Counters per (group, protocol, verdict), per CPU.
///
/// The invariant the data path keeps exactly, per entry:
/// `new_conns == events + sampled_out + lost_rate_limited + lost_ringbuf_full`
/// (denied entries never count `sampled_out`; allowed entries count `lost_rate_limited` only
/// in sweep-watched groups, whose every new connection is reported).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct GroupStats {
    pub packets: u64,
    pub bytes: u64,
    /// New connections (TCP without ACK/RST, or the first UDP packet of an idle 5-tuple).
    pub new_conns: u64,
    /// Packets from sources not allowed, in a group in monitor mode.
    pub would_drop: u64,
    /// Packets from sources not allowed, dropped because the group enforces.
    pub dropped: u64,
    /// Events written to the ring buffer (flagged events for denied, flow records for allowed).
    pub events: u64,
    /// Events withheld by the per-source token bucket.
    pub lost_rate_limited: u64,
    /// Events the ring buffer had no room for.
    pub lost_ringbuf_full: u64,
    /// Allowed new connections not chosen by 1-in-N sampling.
    pub sampled_out: u64,
}
const _: () = assert!(size_of::<GroupStats>() == 72);

impl GroupStats {
    /// Adds another CPU's counters to this one.
    pub fn accumulate(&mut self, o: &GroupStats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.new_conns += o.new_conns;
        self.would_drop += o.would_drop;
        self.dropped += o.dropped;
        self.events += o.events;
        self.lost_rate_limited += o.lost_rate_limited;
        self.lost_ringbuf_full += o.lost_ringbuf_full;
        self.sampled_out += o.sampled_out;
    }
}

/// Runtime settings, in the one-slot `SETTINGS` array. Rewritten on config reload.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// A 5-tuple not seen for this long starts a new connection.
    pub flow_idle_ns: u64,
    /// Bit g set: group g enforces (drops sources not allowed).
    pub drop_mask: u64,
    /// Bit g set: every new connection of group g is reported (allowed ones too, under the
    /// per-source token bucket), so that userspace can detect sweeps across its ports.
    pub sweep_mask: u64,
    /// Sample allowed new connections 1-in-N; 0 = off.
    pub sample_one_in: u32,
    /// Flagged events per source per second (token bucket rate and burst); 0 = unlimited.
    pub events_per_sec: u32,
    /// Bumped by userspace whenever allowlists change; cached verdicts from another
    /// generation are void.
    pub generation: u32,
    /// Slots in the `SOURCES` table minus one (its size is a power of two).
    pub source_slot_mask: u32,
}
const _: () = assert!(size_of::<Settings>() == 40);

/// An IP address: 16 bytes in network order, IPv4 in the first 4 and the rest zero.
///
/// Held as two 64-bit words (each the native-endian reading of 8 address bytes) so that the
/// eBPF programs copy, compare and hash addresses as words: the BPF backend would split a
/// byte array into single-byte loads and stores.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Addr(pub [u64; 2]);

impl Addr {
    pub const ZERO: Addr = Addr([0; 2]);

    /// An IPv4 address from its 4 bytes in network order, as read from the packet.
    #[inline(always)]
    pub fn from_v4_word(w: u32) -> Addr {
        // The first 4 bytes in memory: the low half of the first word on little-endian
        // hosts, the high half on big-endian ones.
        let b = w.to_ne_bytes();
        Addr([u64::from_ne_bytes([b[0], b[1], b[2], b[3], 0, 0, 0, 0]), 0])
    }

    /// The first 4 bytes (an IPv4 address) as they sit in memory.
    #[inline(always)]
    pub fn v4_octets(&self) -> [u8; 4] {
        let b = self.0[0].to_ne_bytes();
        [b[0], b[1], b[2], b[3]]
    }

    /// The address's 16 bytes in network order.
    pub fn octets(&self) -> [u8; 16] {
        let (a, b) = (self.0[0].to_ne_bytes(), self.0[1].to_ne_bytes());
        let mut o = [0u8; 16];
        o[..8].copy_from_slice(&a);
        o[8..].copy_from_slice(&b);
        o
    }

    /// The address of 16 bytes in network order.
    pub fn from_octets(o: [u8; 16]) -> Addr {
        let w = |i: usize| {
            u64::from_ne_bytes([
                o[i],
                o[i + 1],
                o[i + 2],
                o[i + 3],
                o[i + 4],
                o[i + 5],
                o[i + 6],
                o[i + 7],
            ])
        };
        Addr([w(0), w(8)])
    }

    /// The address of an IP address (IPv4 in the first 4 bytes).
    pub fn from_ip(ip: core::net::IpAddr) -> Addr {
        match ip {
            core::net::IpAddr::V4(v) => Addr::from_v4_word(u32::from_ne_bytes(v.octets())),
            core::net::IpAddr::V6(v) => Addr::from_octets(v.octets()),
        }
    }

    /// The IP address, read as `family` (`FAMILY_V4`: the first 4 bytes; else IPv6).
    pub fn to_ip(&self, family: u8) -> core::net::IpAddr {
        if family == FAMILY_V4 {
            core::net::Ipv4Addr::from(self.v4_octets()).into()
        } else {
            core::net::Ipv6Addr::from(self.octets()).into()
        }
    }
}

/// One slot of the per-CPU verdict cache in front of the LPM tries: direct-mapped by a hash
/// of the source address ([`verdict_slot`]), so a lookup is an inlined array access and a
/// miss simply takes the slot over (a flood of spoofed sources costs nothing extra).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerdictSlot {
    pub addr: Addr,
    pub family: u8,
    pub _pad0: u8,
    pub _pad1: u16,
    /// `Settings::generation` these bits belong to.
    pub generation: u32,
    /// Bit g set: the verdict for group g is known.
    pub known: u64,
    /// Bit g set: the source is in group g's allowlist.
    pub allowed: u64,
}
const _: () = assert!(size_of::<VerdictSlot>() == 40);

/// Slots per CPU in the verdict cache (a power of two).
pub const VERDICT_SLOTS: u32 = 1 << VERDICT_SLOT_BITS;
const VERDICT_SLOT_BITS: u32 = 13;

/// The cache slot of a source: a multiplicative hash of its address (folded to 32 bits,
/// which for IPv4 is the address itself on hosts of either byte order).
#[inline(always)]
pub fn verdict_slot(addr: &Addr) -> u32 {
    let x = addr.0[0] ^ addr.0[1];
    let h = (x ^ (x >> 32)) as u32;
    h.wrapping_mul(0x9E37_79B9) >> (32 - VERDICT_SLOT_BITS)
}

/// LPM trie key data for IPv4 allowlists: group id byte, then the address (network order).
/// The trie's prefix length is `8 + cidr_prefix`.
pub type AllowKeyV4 = [u8; 5];
/// LPM trie key data for IPv6 allowlists: group id byte, then the address.
pub type AllowKeyV6 = [u8; 17];

/// Key of the flow table: the 5-tuple as seen on ingress (source = the remote peer).
/// IPv4 addresses sit in the first 4 bytes, the rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src_addr: Addr,
    pub dst_addr: Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: u16,
}
const _: () = assert!(size_of::<FlowKey>() == 40);

/// Value of the flow table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    pub first_ns: u64,
    pub last_ns: u64,
    pub group: u8,
    pub verdict: u8,
    /// 1 when this flow's new connection was flagged (denied).
    pub flagged: u8,
    /// `ANSWER_*`, set by the egress program.
    pub answer: u8,
    /// `OPENER_*`: what opened this entry (TCP). Only an entry opened by a pure SYN holds
    /// back a later SYN as a retransmit; a probe's entry never does.
    pub opener: u8,
    pub _pad0: u8,
    pub _pad1: u16,
    /// The sequence number of the opening segment as it sits in the packet (TCP; compared
    /// for equality only): a SYN that carries another one is another attempt, the same one
    /// is a retransmit.
    pub isn: u32,
    pub _pad2: u32,
}
const _: () = assert!(size_of::<FlowState>() == 32);

/// One slot of the per-source budget table `SOURCES`: an array shared by all CPUs,
/// direct-mapped by a hash of the source address ([`source_slot`]). A lookup is an inlined
/// array access rather than a hash-map helper call.
///
/// Two budgets per source, so that allowed traffic (a sweep-watched NodePort range open to
/// everyone) can never spend what the source's flagged events need; and a bit set of the
/// groups whose first flagged event of the current window has been reported, which no
/// bucket withholds ([`source_budget_take`]). A source that finds its slot held by another
/// takes it over as it is: buckets, window and bits (never a fresh, full bucket, so that two
/// sources alternating in one slot share one budget instead of each getting a new burst).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceSlot {
    pub addr: Addr,
    /// Budget of flagged (denied) events.
    pub flagged: TokenBucket,
    /// Budget of allowed events reported in sweep-watched groups.
    pub allowed: TokenBucket,
    /// Start of the current window ([`BUDGET_WINDOW_NS`]).
    pub window_ns: u64,
    /// Bit g set: group g's first flagged event of this window was reported.
    pub reported: u64,
    pub family: u8,
    pub _pad0: u8,
    pub _pad1: u16,
    pub _pad2: u32,
}
const _: () = assert!(size_of::<SourceSlot>() == 72);

/// The window in which the first flagged event of each (source, group) is always reported:
/// one second, the refill period of a bucket.
pub const BUDGET_WINDOW_NS: u64 = TOKEN_SCALE;

/// Decides whether an event of `group` from the slot's source may be sent. `flagged`:
/// a denied new connection, under the flagged bucket, and always sent when it is the
/// group's first flagged event of the window (it still takes a token if one is there, so the
/// burst of a source is `rate` plus at most one per further group). Otherwise an allowed
/// one, under the allowed bucket. `rate == 0` means unlimited. Pure, so host tests cover it.
#[inline(always)]
pub fn source_budget_take(
    slot: &mut SourceSlot,
    now_ns: u64,
    rate: u32,
    group: u8,
    flagged: bool,
) -> bool {
    if rate == 0 {
        return true;
    }
    if !flagged {
        return token_bucket_take(&mut slot.allowed, now_ns, rate);
    }
    if now_ns.saturating_sub(slot.window_ns) >= BUDGET_WINDOW_NS {
        slot.window_ns = now_ns;
        slot.reported = 0;
    }
    let token = token_bucket_take(&mut slot.flagged, now_ns, rate);
    let bit = 1u64 << (group & 63);
    if slot.reported & bit == 0 {
        slot.reported |= bit;
        return true;
    }
    token
}

/// Slots in the `SOURCES` table for a configured number of sources: the next power of two.
pub const fn source_slots(sources: u32) -> u32 {
    match sources.checked_next_power_of_two() {
        Some(n) => n,
        None => 1 << 31,
    }
}

/// The `SOURCES` slot of a source: a multiplicative hash of its address, masked to the table.
#[inline(always)]
pub fn source_slot(addr: &Addr, mask: u32) -> u32 {
    let x = addr.0[0] ^ addr.0[1];
    let h = (x ^ (x >> 32)) as u32;
    (u64::from(h).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32 & mask
}

/// A per-source token bucket; tokens are scaled by 1e9 (token-nanoseconds).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenBucket {
    pub tokens: u64,
    pub last_ns: u64,
}
const _: () = assert!(size_of::<TokenBucket>() == 16);

/// Token units per whole event.
pub const TOKEN_SCALE: u64 = 1_000_000_000;

/// Refills a token bucket and takes one token if there is one.
/// `rate` is events per second (also the burst); `rate == 0` means unlimited.
/// Returns true when the event may be sent. Pure, so host tests cover it.
#[inline(always)]
pub fn token_bucket_take(bucket: &mut TokenBucket, now_ns: u64, rate: u32) -> bool {
    if rate == 0 {
        return true;
    }
    let cap = u64::from(rate) * TOKEN_SCALE;
    let elapsed = now_ns.saturating_sub(bucket.last_ns);
    let tokens = if elapsed >= TOKEN_SCALE {
        cap
    } else {
        let refilled = bucket.tokens + elapsed * u64::from(rate);
        if refilled > cap { cap } else { refilled }
    };
    bucket.last_ns = now_ns;
    if tokens >= TOKEN_SCALE {
        bucket.tokens = tokens - TOKEN_SCALE;
        true
    } else {
        bucket.tokens = tokens;
        false
    }
}

/// One record in the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// The 5-tuple in ingress orientation (source = remote peer), also for answers.
    pub src_addr: Addr,
    pub dst_addr: Addr,
    pub ifindex: u32,
    /// Length of the packet on the wire (frame length).
    pub pkt_len: u32,
    pub src_port: u16,
    pub dst_port: u16,
    /// VLAN ids (12 bits), outer then inner; 0 = no tag.
    pub vlan_outer: u16,
    pub vlan_inner: u16,
    /// `EVENT_*`.
    pub kind: u8,
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u8,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    pub tcp_flags: u8,
    pub group: u8,
    /// `VERDICT_*`.
    pub verdict: u8,
    /// `ACTION_*`.
    pub action: u8,
    /// `ANSWER_*` (answer events).
    pub answer: u8,
    /// `HOOK_*`.
    pub hook: u8,
    /// For `EVENT_SAMPLED`: 1 when 1-in-N sampling chose this connection as a flow record;
    /// 0 when it is reported only because its group is sweep-watched.
    pub sampled: u8,
    /// `FRAGMENT_*`: whether the event's packet was a first fragment, and whether its TCP
    /// flags could be read.
    pub fragment: u8,
    pub _pad0: u8,
    pub _pad1: u32,
}
const _: () = assert!(size_of::<Event>() == 72);

/// Default sizes (overridable at load time).
pub const DEFAULT_FLOWS: u32 = 65_536;
pub const DEFAULT_SOURCES: u32 = 16_384;
pub const DEFAULT_ALLOW_ENTRIES: u32 = 16_384;
pub const DEFAULT_RINGBUF_BYTES: u32 = 1 << 20;

/// Map names (under 16 bytes: the kernel truncates longer names).
pub mod map_name {
    pub const PORTS_TCP: &str = "PORTS_TCP";
    pub const PORTS_UDP: &str = "PORTS_UDP";
    pub const ALLOW_V4: &str = "ALLOW_V4";
    pub const ALLOW_V6: &str = "ALLOW_V6";
    pub const SETTINGS: &str = "SETTINGS";
    pub const GROUP_STATS: &str = "GROUP_STATS";
    pub const REASONS: &str = "REASONS";
    pub const FLOWS: &str = "FLOWS";
    pub const SOURCES: &str = "SOURCES";
    pub const EVENTS: &str = "EVENTS";
    pub const GROUP_NAMES: &str = "GROUP_NAMES";
    pub const VERDICTS: &str = "VERDICTS";
    pub const ALL: [&str; 12] = [
        PORTS_TCP,
        PORTS_UDP,
        ALLOW_V4,
        ALLOW_V6,
        SETTINGS,
        GROUP_STATS,
        REASONS,
        FLOWS,
        SOURCES,
        EVENTS,
        GROUP_NAMES,
        VERDICTS,
    ];
}

/// One slot of the `GROUP_NAMES` array (indexed by group id): the group's name, NUL-padded.
/// Only userspace reads it; it lives in a pinned map so that a restarted daemon maps kernel
/// group ids (and their counters) back to the same names.
pub type GroupName = [u8; GROUP_NAME_BYTES];
pub const GROUP_NAME_BYTES: usize = 64;

/// Program names (the function names in the eBPF object).
pub mod prog_name {
    pub const XDP_INGRESS: &str = "nm_xdp_ingress";
    pub const TC_INGRESS: &str = "nm_tc_ingress";
    pub const TC_EGRESS: &str = "nm_tc_egress";
    /// An empty XDP_PASS program, the baseline for benchmarks; never attached.
    pub const BASELINE: &str = "nm_baseline";
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: all of these are #[repr(C)], built only from integers and byte arrays, with
    // explicit padding fields, so every bit pattern is valid and there are no hidden bytes.
    unsafe impl aya::Pod for GroupStats {}
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowState {}
    unsafe impl aya::Pod for SourceSlot {}
    unsafe impl aya::Pod for TokenBucket {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for VerdictSlot {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_index_is_dense_and_in_range() {
        let mut seen = [false; STATS_ENTRIES as usize];
        for g in 0..MAX_GROUPS as u8 {
            for p in [PROTO_IDX_TCP, PROTO_IDX_UDP] {
                for v in [VERDICT_ALLOWED, VERDICT_DENIED] {
                    let i = stats_index(g, p, v) as usize;
                    assert!(!seen[i], "index {i} used twice");
                    seen[i] = true;
                }
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn token_bucket_allows_burst_then_rate() {
        let mut b = TokenBucket::default();
        let t0 = 10 * TOKEN_SCALE;
        // A fresh bucket (last_ns = 0, long ago) is full: `rate` events pass at once.
        let passed = (0..10).filter(|_| token_bucket_take(&mut b, t0, 5)).count();
        assert_eq!(passed, 5);
        // 200 ms later at 5/s exactly one more token has accrued.
        let t1 = t0 + 200_000_000;
        assert!(token_bucket_take(&mut b, t1, 5));
        assert!(!token_bucket_take(&mut b, t1, 5));
        // Rate 0 is unlimited.
        assert!((0..1000).all(|_| token_bucket_take(&mut b, t1, 0)));
    }

    #[test]
    fn verdict_slots_stay_in_range_and_spread() {
        let mut used = [false; VERDICT_SLOTS as usize];
        for i in 0..=255u8 {
            for j in 0..4u8 {
                let a = Addr::from_v4_word(u32::from_ne_bytes([198, 51, j, i]));
                let s = verdict_slot(&a);
                assert!(s < VERDICT_SLOTS);
                used[s as usize] = true;
            }
        }
        // 1024 neighbouring addresses land in many different slots.
        assert!(used.iter().filter(|u| **u).count() > 900);
        // IPv6 sources that differ only in their interface id spread too.
        let mut used = [false; VERDICT_SLOTS as usize];
        for i in 0..1024u16 {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            o[14..].copy_from_slice(&i.to_be_bytes());
            used[verdict_slot(&Addr::from_octets(o)) as usize] = true;
        }
        assert!(used.iter().filter(|u| **u).count() > 900);
    }

    #[test]
    fn source_slots_are_powers_of_two_and_spread() {
        assert_eq!(source_slots(256), 256);
        assert_eq!(source_slots(257), 512);
        assert_eq!(source_slots(16_777_216), 16_777_216);
        assert_eq!(source_slots(0), 1);
        let mask = source_slots(16_384) - 1;
        let mut used = [false; 16_384];
        for i in 0..4096u32 {
            let v4 = Addr::from_v4_word(u32::from_ne_bytes([198, 51, (i >> 8) as u8, i as u8]));
            let s = source_slot(&v4, mask);
            assert!(s <= mask);
            used[s as usize] = true;
        }
        // 4096 neighbouring addresses in a 16,384-slot table: few collisions.
        assert!(used.iter().filter(|u| **u).count() > 3500);
    }

    #[test]
    fn fragments_of_a_retransmit_are_not_a_new_attempt() {
        assert!(fragment_starts_attempt(None));
        // Idle, answered, or another sequence number: new.
        assert!(fragment_starts_attempt(Some((true, ANSWER_NONE, true))));
        assert!(fragment_starts_attempt(Some((
            false,
            ANSWER_ACCEPTED,
            true
        ))));
        assert!(fragment_starts_attempt(Some((false, ANSWER_REFUSED, true))));
        assert!(fragment_starts_attempt(Some((false, ANSWER_NONE, false))));
        // The same unanswered attempt sent again: not new.
        assert!(!fragment_starts_attempt(Some((false, ANSWER_NONE, true))));
    }

    #[test]
    fn reason_names_are_unique() {
        for (i, a) in reason::NAMES.iter().enumerate() {
            assert!(!reason::NAMES[i + 1..].contains(a), "{a} twice");
        }
    }

    #[test]
    fn only_a_pure_syn_restarts_an_attempt() {
        let live = |opener, answer, same_isn| Some((false, opener, answer, same_isn));
        // No entry, or an idle one: any segment without ACK and RST is new.
        for f in [
            TCP_SYN,
            0,
            TCP_FIN,
            TCP_FIN | TCP_PSH | TCP_URG,
            TCP_SYN | TCP_FIN,
        ] {
            assert!(tcp_starts_attempt(f, None), "{f:#04x}");
            assert!(tcp_starts_attempt(f, Some((true, OPENER_SYN, 0, true))));
        }
        for f in [TCP_ACK, TCP_RST, TCP_SYN | TCP_ACK, TCP_SYN | TCP_RST] {
            assert!(!tcp_starts_attempt(f, None), "{f:#04x}");
        }
        // A SYN after a probe, after an answer, with another sequence number: new.
        assert!(tcp_starts_attempt(TCP_SYN, live(OPENER_PROBE, 0, true)));
        assert!(tcp_starts_attempt(
            TCP_SYN | 0xc0,
            live(OPENER_SYN, ANSWER_ACCEPTED, true)
        ));
        assert!(tcp_starts_attempt(
            TCP_SYN,
            live(OPENER_SYN, ANSWER_REFUSED, true)
        ));
        assert!(tcp_starts_attempt(TCP_SYN, live(OPENER_SYN, 0, false)));
        // A SYN retransmit of a pending attempt, a repeated probe, a probe after a SYN: not.
        assert!(!tcp_starts_attempt(TCP_SYN, live(OPENER_SYN, 0, true)));
        assert!(!tcp_starts_attempt(TCP_FIN, live(OPENER_PROBE, 0, false)));
        assert!(!tcp_starts_attempt(
            0,
            live(OPENER_SYN, ANSWER_ACCEPTED, false)
        ));
    }

    #[test]
    fn token_bucket_survives_clock_going_backwards() {
        let mut b = TokenBucket {
            tokens: 0,
            last_ns: 5 * TOKEN_SCALE,
        };
        assert!(!token_bucket_take(&mut b, 4 * TOKEN_SCALE, 1));
    }

    #[test]
    fn allowed_events_spend_no_flagged_budget() {
        let mut slot = SourceSlot::default();
        let t0 = 10 * TOKEN_SCALE;
        let allowed = (0..10)
            .filter(|_| source_budget_take(&mut slot, t0, 3, 9, false))
            .count();
        assert_eq!(allowed, 3);
        let flagged = (0..10)
            .filter(|_| source_budget_take(&mut slot, t0, 3, 1, true))
            .count();
        assert_eq!(flagged, 3);
    }

    #[test]
    fn first_flagged_event_of_each_group_per_window() {
        let mut slot = SourceSlot::default();
        let t0 = 10 * TOKEN_SCALE;
        // Group 1 spends the burst (its first event takes a token too).
        let g1 = (0..10)
            .filter(|_| source_budget_take(&mut slot, t0, 2, 1, true))
            .count();
        assert_eq!(g1, 2);
        // Groups 2 and 63: their first event passes with the bucket empty; the next does not.
        for g in [2, 63] {
            assert!(source_budget_take(&mut slot, t0, 2, g, true));
            assert!(!source_budget_take(&mut slot, t0, 2, g, true));
        }
        // Within the window, group 2 stays reported (100 ms refill no token at rate 2: 0.2).
        let t1 = t0 + 100_000_000;
        assert!(!source_budget_take(&mut slot, t1, 2, 2, true));
        // A new window: group 1 spends the refilled bucket, and group 2's first event of
        // this window passes again on an empty bucket.
        let t2 = t0 + BUDGET_WINDOW_NS;
        assert!(source_budget_take(&mut slot, t2, 2, 1, true));
        assert!(source_budget_take(&mut slot, t2, 2, 1, true));
        assert!(!source_budget_take(&mut slot, t2, 2, 1, true));
        assert!(source_budget_take(&mut slot, t2, 2, 2, true));
        assert!(!source_budget_take(&mut slot, t2, 2, 2, true));
        // Unlimited stays unlimited.
        assert!((0..100).all(|_| source_budget_take(&mut slot, t2, 0, 2, true)));
    }
}
