//! The node's answer as the last line of defence (egress, rule NM-1030).
//!
//! Whatever way a request reached a listener (fragments the ingress parser could not read, a
//! device that is not watched, a header chain past the parser's bounds), the node's answer
//! leaves through the watched interface's tc egress, where it is plain to read. A SYN-ACK
//! (or the first UDP reply of a 5-tuple) from a watched port to a peer outside that port's
//! allowlist (its group's, and its own source ranges when it has them), on a 5-tuple where
//! ingress recorded no attempt, means the node accepted a connection nobody saw arrive. It
//! is counted, recorded on the flow table (so that a retransmitted answer raises nothing
//! again), reported under the peer's flagged-event budget and, in a drop group, dropped, so
//! that such a connection never completes.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use node_monitor_common::{
    ACTION_DROPPED, ACTION_PASS, ACTION_WOULD_DROP, ANSWER_ACCEPTED, COMPLETES_NONE,
    COMPLETES_REPORTED, COMPLETES_WITHHELD, EVENT_UNSEEN, FlowKey, FlowState, IPPROTO_TCP,
    OPENER_ANSWER, VERDICT_DENIED, reason,
};

use crate::{
    allow::port_allows,
    budget::{Budget, take_budget},
    count_reason,
    emit::EventFacts,
    handshake,
    maps::{FLOWS, SETTINGS},
};

/// What egress does with an answer that found no flow entry.
pub(crate) enum Unseen {
    /// Nothing to report (an allowed peer, or no settings): pass.
    Pass,
    /// Counted but not reported (rate limited): pass or drop as `action` says.
    Silent(u8),
    /// Report this event; pass or drop as its action says.
    Report(EventFacts),
}

/// The node accepted (`SYN-ACK`, UDP reply) on `key` (ingress orientation: the peer is the
/// source) from a port of `group`, and the flow table holds no entry for it. `seq`: the
/// SYN-ACK's sequence number (TCP).
#[inline(always)]
pub(crate) fn unseen_accept(key: &FlowKey, group: u8, seq: u32) -> Unseen {
    let Some(settings) = SETTINGS.get(0) else {
        return Unseen::Pass;
    };
    // The port's own source ranges too (a NodePort whose Service sets
    // `loadBalancerSourceRanges`), as on ingress.
    if port_allows(
        group,
        key.proto,
        key.dst_port,
        key.family,
        &key.src_addr,
        settings,
    ) {
        return Unseen::Pass;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    count_reason(reason::UNSEEN_ACCEPTED);
    let action = if dropping(group, settings.drop_mask) {
        count_reason(reason::UNSEEN_DROPPED);
        ACTION_DROPPED
    } else {
        ACTION_WOULD_DROP
    };
    // Budgets first, and the entry only for a reported acceptance: under a spoofed flood to
    // an open port every SYN-ACK lands here (the withheld SYNs left no entry), and such a
    // flood must not fill the flow table from egress either. Without an entry, a withheld
    // acceptance's retransmitted answer is counted again, and dropped again in a drop group.
    if take_budget(key.family, &key.src_addr, now, settings, group, true) != Budget::Send {
        count_reason(reason::UNSEEN_RATE_LIMITED);
        // A TCP acceptance left in monitor mode may still be named by the peer's ACK.
        if key.proto == IPPROTO_TCP && action != ACTION_DROPPED {
            handshake::record_accept(key, group, now, seq, COMPLETES_WITHHELD);
        }
        return Unseen::Silent(action);
    }
    let state = FlowState {
        first_ns: now,
        last_ns: now,
        group,
        verdict: VERDICT_DENIED,
        flagged: 1,
        answer: ANSWER_ACCEPTED,
        opener: OPENER_ANSWER,
        _pad0: 0,
        _pad1: 0,
        isn: 0,
        generation: settings.generation,
    };
    if FLOWS.insert(key, &state, 0).is_err() {
        count_reason(reason::FLOW_UPDATE_FAILED);
    } else {
        // A later refusal on it (a RST after the acceptance) is looked up as before.
        crate::budget::mark_flagged_flow(key);
    }
    // Reported, but its alert may still be folded by userspace's cap: the peer's ACK names it.
    if key.proto == IPPROTO_TCP && action != ACTION_DROPPED {
        handshake::record_accept(key, group, now, seq, COMPLETES_REPORTED);
    }
    Unseen::Report(EventFacts {
        kind: EVENT_UNSEEN,
        group,
        verdict: VERDICT_DENIED,
        action,
        answer: ANSWER_ACCEPTED,
        sampled: 0,
        completes: COMPLETES_NONE,
    })
}

/// A retransmitted answer on an entry that [`unseen_accept`] opened: dropped again in a drop
/// group (else the connection would complete on the retransmit), passed otherwise.
#[inline(always)]
pub(crate) fn unseen_again(opener: u8, group: u8) -> u8 {
    if opener != OPENER_ANSWER {
        return ACTION_PASS;
    }
    match SETTINGS.get(0) {
        Some(s) if dropping(group, s.drop_mask) => {
            count_reason(reason::UNSEEN_DROPPED);
            ACTION_DROPPED
        }
        _ => ACTION_PASS,
    }
}

#[inline(always)]
fn dropping(group: u8, drop_mask: u64) -> bool {
    group < 64 && drop_mask & (1u64 << group) != 0
}
