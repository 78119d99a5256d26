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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ANSWER_ACCEPTED, ANSWER_REFUSED, TCP_FIN, TCP_PSH, TCP_URG};

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
