//! The flow table: its key and value, and the rules for what opens a connection.

use crate::{ANSWER_NONE, Addr, TCP_ACK, TCP_RST, TCP_SYN};

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
    /// The config generation ([`Settings::generation`](crate::Settings::generation)) under which `verdict` was decided.
    /// When a reload bumps the generation, the next packet of the flow re-checks its
    /// source: a flow opened while its source was allowed and still running after the
    /// source was revoked is reported ([`EVENT_REVOKED`](crate::EVENT_REVOKED)) on that packet, not when the flow
    /// goes idle.
    pub generation: u32,
}
const _: () = assert!(size_of::<FlowState>() == 32);

/// Slots of `REFUSAL_TAGS` (a power of two): the direct-mapped table in which ingress leaves
/// the tag ([`refusal_tag`]) of every flagged flow it records in the flow table, so that
/// egress looks a refusal (RST, ICMP port unreachable) up in the flow table only when a
/// flagged flow may be waiting for it. A refusal whose slot holds another tag cannot answer a
/// flow on record, but for one case: another flagged flow recorded in the same slot between
/// the attempt and its refusal. The node refuses at once (within the softirq that took the
/// attempt), and flagged flows are recorded at most at the event budgets' rates, so that case
/// needs two recorded flagged flows in one slot within microseconds (at 10,000 recorded a
/// second and 50 µs, one refusal in 4,000); its cost is a refusal reported as no answer.
/// 2,048 slots of 4 bytes: 8 KiB, shared by all CPUs, small enough to stay in cache, since
/// every refusal from a watched port reads a slot at random.
pub const REFUSAL_TAG_SLOTS: u32 = 2_048;

/// The slot and the tag (never 0, the empty slot) of a flow-table key in `REFUSAL_TAGS`: a
/// polynomial over the key's five words, then [`mix64`](crate::mix64), so that keys that
/// differ in several fields at once (a source address and a source port that both count up)
/// still differ; the slot from the hash's high half, the tag from its low half. Keys with the
/// same slot and tag keep each other's tag, so only different tags evict.
#[inline(always)]
pub fn refusal_tag(key: &FlowKey) -> (u32, u32) {
    const P: u64 = 0x9e37_79b9_7f4a_7c15;
    let tail = u64::from(key.src_port)
        | u64::from(key.dst_port) << 16
        | u64::from(key.proto) << 32
        | u64::from(key.family) << 40;
    let mut h = key.src_addr.0[0];
    for w in [
        key.src_addr.0[1],
        key.dst_addr.0[0],
        key.dst_addr.0[1],
        tail,
    ] {
        h = h.wrapping_mul(P).wrapping_add(w);
    }
    let h = crate::mix64(h);
    ((h >> 32) as u32 & (REFUSAL_TAG_SLOTS - 1), h as u32 | 1)
}

/// Entries of `ACCEPTS`: acceptances withheld by the event budgets, waiting for the peer's
/// ACK that completes the handshake.
pub const ACCEPTS_ENTRIES: u32 = 8_192;
/// How long a withheld acceptance waits for that ACK, and how long after the last one was
/// recorded the ingress path keeps looking ACKs up (`ACCEPT_GATE`): longer than the node's
/// SYN-ACK retransmits within one connection attempt take to begin (1 s, 3 s, 7 s).
pub const ACCEPT_WAIT_NS: u64 = 10_000_000_000;

/// Value of `ACCEPTS` (key: the [`FlowKey`] in ingress orientation): an acceptance (SYN-ACK)
/// of a denied source's connection that tc egress saw: one whose event the budgets withheld
/// (no flow entry), or one it reported (whose alert userspace may still fold into a flood
/// alert past the per-group cap). The peer's ACK on that 5-tuple that acknowledges the
/// SYN-ACK completes the handshake, which a spoofed source never does (it never sees the
/// SYN-ACK's sequence number): ingress then reports the connection under a budget of its own
/// ([`GroupBudget::completed`](crate::GroupBudget::completed)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingAccept {
    /// When the node's SYN-ACK left.
    pub ts_ns: u64,
    pub group: u8,
    /// `COMPLETES_*`: what the completing ACK's event completes.
    pub completes: u8,
    pub _pad1: u16,
    /// The SYN-ACK's sequence number as it sits in the packet: the completing ACK
    /// acknowledges it plus one ([`acks_syn_ack`]).
    pub seq: u32,
}
const _: () = assert!(size_of::<PendingAccept>() == 16);

/// Does a TCP acknowledgment number `ack` acknowledge a SYN-ACK whose sequence number was
/// `syn_ack_seq` (both as they sit in the packet, big-endian): `ack == seq + 1`, modulo 2^32?
/// A blind spoofer, which never receives the SYN-ACK, cannot send it but by a 1 in 2^32
/// guess. Pure, so host tests cover it.
#[inline(always)]
pub const fn acks_syn_ack(ack: u32, syn_ack_seq: u32) -> bool {
    u32::from_be(ack) == u32::from_be(syn_ack_seq).wrapping_add(1)
}

/// Does a withheld acceptance recorded at `recorded_ns` still wait for its ACK at `now_ns`?
/// Pure, so host tests cover it.
#[inline(always)]
pub const fn accept_waits(recorded_ns: u64, now_ns: u64) -> bool {
    recorded_ns != 0 && now_ns.saturating_sub(recorded_ns) <= ACCEPT_WAIT_NS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ANSWER_ACCEPTED, ANSWER_REFUSED, TCP_FIN, TCP_PSH, TCP_URG};

    /// Every field of the key moves its slot or tag, no tag is the empty slot's 0, and the
    /// slots of many keys spread over the table.
    #[test]
    fn a_flows_tag_depends_on_its_whole_key() {
        let base = FlowKey {
            src_addr: Addr([0x2001_0db8_0002_0000, 7]),
            dst_addr: Addr([0x2001_0db8_0001_0000, 1]),
            src_port: 40000,
            dst_port: 10250,
            proto: 6,
            family: 6,
            _pad: 0,
        };
        let variants = [
            FlowKey {
                src_addr: Addr([0x2001_0db8_0002_0000, 8]),
                ..base
            },
            FlowKey {
                src_addr: Addr([0x2001_0db8_0002_0001, 7]),
                ..base
            },
            FlowKey {
                dst_addr: Addr([0x2001_0db8_0001_0000, 2]),
                ..base
            },
            FlowKey {
                dst_addr: Addr([0x2001_0db8_0001_0001, 1]),
                ..base
            },
            FlowKey {
                src_port: 40001,
                ..base
            },
            FlowKey {
                dst_port: 10255,
                ..base
            },
            FlowKey { proto: 17, ..base },
            FlowKey { family: 4, ..base },
        ];
        let t = refusal_tag(&base);
        assert_ne!(t.1, 0);
        for v in &variants {
            assert_ne!(refusal_tag(v), t, "{v:?}");
        }
        // Source address and source port counting up together, as a scan's do.
        let mut used = [false; REFUSAL_TAG_SLOTS as usize];
        for i in 0..512u16 {
            let k = FlowKey {
                src_addr: Addr([base.src_addr.0[0], u64::from(i)]),
                src_port: 40000 + i,
                ..base
            };
            let (slot, tag) = refusal_tag(&k);
            assert_ne!(tag, 0);
            used[slot as usize] = true;
        }
        let used = used.iter().filter(|u| **u).count();
        // 512 keys into 2,048 slots: about 450 distinct slots if spread at random.
        assert!(used > 400, "{used} slots for 512 keys");
    }

    #[test]
    fn a_withheld_acceptance_waits_for_its_ack_a_bounded_time() {
        assert!(!accept_waits(0, 5), "never recorded");
        assert!(accept_waits(100, 100));
        assert!(accept_waits(100, 100 + ACCEPT_WAIT_NS));
        assert!(!accept_waits(100, 101 + ACCEPT_WAIT_NS));
        // A clock that reads earlier (another CPU) still waits.
        assert!(accept_waits(100, 50));
    }

    #[test]
    fn only_the_ack_of_the_syn_ack_completes_a_handshake() {
        let be = |n: u32| n.to_be();
        assert!(acks_syn_ack(be(1001), be(1000)));
        assert!(acks_syn_ack(be(0), be(u32::MAX)), "wraps");
        assert!(!acks_syn_ack(be(1000), be(1000)));
        assert!(!acks_syn_ack(be(1), be(1000)), "a blind spoofer's guess");
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
}
