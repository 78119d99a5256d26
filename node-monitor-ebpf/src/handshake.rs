//! Handshakes completed by a denied source (NM-1030 from ingress).
//!
//! A denied attempt whose event a budget withholds leaves no flow entry (so that a spoofed
//! flood cannot evict real flows), and when the node accepts it, egress reports the
//! acceptance under the same budgets ([`crate::unseen`]). An attacker who first empties a
//! group's budget with a spoofed flood would then get a real connection counted, not named.
//! And a reported acceptance may still see its alert folded into a flood alert by userspace's
//! per-group cap on connection alerts, which a spoofed flood against an open port spends (its
//! sources are accepted too). So egress records every acceptance of a denied source's TCP
//! connection here (`ACCEPTS`, a table of its own) with the SYN-ACK's sequence number, and
//! the peer's ACK that acknowledges it, which a spoofed source never sends (it never sees the
//! SYN-ACK), is reported under the group's `completed` budget, which spoofed floods cannot
//! spend. An ACK that acknowledges anything else leaves the record waiting.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use node_monitor_common::{
    ANSWER_ACCEPTED, COMPLETES_REPORTED, EVENT_UNSEEN, FlowKey, PendingAccept, Settings, TCP_ACK,
    TCP_RST, TCP_SYN, VERDICT_DENIED, accept_waits, acks_syn_ack, reason,
};

use crate::{
    Meta,
    budget::take_completed_budget,
    count_reason,
    emit::{EventFacts, emit},
    maps::{ACCEPT_GATE, ACCEPTS},
    parse::{self, L3, L4, Packet},
};

/// Egress: the node accepted a denied source's TCP connection on `key` with a SYN-ACK whose
/// sequence number is `seq`. `completes` (`COMPLETES_*`): whether that acceptance's event was
/// withheld or reported.
#[inline(always)]
pub(crate) fn record_accept(key: &FlowKey, group: u8, now: u64, seq: u32, completes: u8) {
    let pending = PendingAccept {
        ts_ns: now,
        group,
        completes,
        _pad1: 0,
        seq,
    };
    if ACCEPTS.insert(key, &pending, 0).is_err() {
        count_reason(reason::FLOW_UPDATE_FAILED);
    }
    if let Some(gate) = ACCEPT_GATE.get_ptr_mut(0) {
        // SAFETY: a map value pointer shared by all CPUs; a racing write stores another
        // recent time, which keeps the gate open just as well.
        unsafe { *gate = now };
    }
}

/// Ingress: is the gate open, i.e. did egress record a denied source's acceptance recently?
/// Returns the time when it is. While it is shut (no denied source accepted in the last
/// [`ACCEPT_WAIT_NS`](node_monitor_common::ACCEPT_WAIT_NS)) a denied ACK costs one array read
/// here and nothing more.
#[inline(always)]
pub(crate) fn gate_open() -> Option<u64> {
    let last = *ACCEPT_GATE.get(0)?;
    if last == 0 {
        return None;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    accept_waits(last, now).then_some(now)
}

/// Ingress, with the gate open: a denied source's segment on `key`. When it is the ACK that
/// acknowledges a recorded acceptance, the connection is counted and reported (NM-1030, from
/// this hook) under the group's `completed` budget. `action` is what ingress does with the
/// packet.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "inlined; a struct would be built on the 512-byte BPF stack"
)]
pub(crate) fn on_denied_segment(
    pkt: &Packet,
    meta: &Meta,
    l3: &L3,
    l4: &L4,
    key: &FlowKey,
    now: u64,
    settings: &Settings,
    group: u8,
    action: u8,
) {
    if l4.tcp_flags & (TCP_ACK | TCP_SYN | TCP_RST) != TCP_ACK {
        return;
    }
    let Some(pending) = ACCEPTS.get_ptr(key) else {
        return;
    };
    // SAFETY: a map value pointer, read at once.
    let pending = unsafe { *pending };
    if pending.group != group || !accept_waits(pending.ts_ns, now) {
        let _ = ACCEPTS.remove(key);
        return;
    }
    // The acknowledgment number: 8 bytes into the TCP header, which parse_l4 has checked.
    let acked = parse::raw32(pkt, l3.l4_off + 8).is_some_and(|ack| acks_syn_ack(ack, pending.seq));
    if !acked {
        count_reason(reason::HANDSHAKE_ACK_MISMATCH);
        return;
    }
    let _ = ACCEPTS.remove(key);
    count_reason(reason::HANDSHAKE_COMPLETED);
    if pending.completes == COMPLETES_REPORTED {
        count_reason(reason::HANDSHAKE_COMPLETED_REPORTED);
    }
    if !take_completed_budget(now, settings, group) {
        count_reason(reason::HANDSHAKE_RATE_LIMITED);
        return;
    }
    let ev = EventFacts {
        kind: EVENT_UNSEEN,
        group,
        verdict: VERDICT_DENIED,
        action,
        answer: ANSWER_ACCEPTED,
        sampled: 0,
        completes: pending.completes,
    };
    if !emit(meta, l3, l4, key, now, &ev) {
        count_reason(reason::HANDSHAKE_RINGBUF_FULL);
    }
}
