//! Handshakes completed past the budgets (NM-1030 from ingress).
//!
//! A denied attempt whose event a budget withholds leaves no flow entry (so that a spoofed
//! flood cannot evict real flows), and when the node accepts it, egress reports the
//! acceptance under the same budgets ([`crate::unseen`]). An attacker who first empties a
//! group's budget with a spoofed flood would then get a real connection counted, not named.
//! So egress records such a withheld acceptance here (`ACCEPTS`, a table of its own), and the
//! peer's ACK that completes the handshake, which a spoofed source never sends, is reported
//! under the group's `completed` budget, which spoofed floods cannot spend.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use node_monitor_common::{
    ANSWER_ACCEPTED, EVENT_UNSEEN, FlowKey, PendingAccept, Settings, TCP_ACK, TCP_RST, TCP_SYN,
    VERDICT_DENIED, accept_waits, reason,
};

use crate::{
    Meta,
    budget::take_completed_budget,
    count_reason,
    emit::{EventFacts, emit},
    maps::{ACCEPT_GATE, ACCEPTS},
    parse::{L3, L4},
};

/// Egress: the node's acceptance on `key` (no flow entry) was withheld by the budgets.
#[inline(always)]
pub(crate) fn record_withheld(key: &FlowKey, group: u8, now: u64) {
    let pending = PendingAccept {
        ts_ns: now,
        group,
        ..PendingAccept::default()
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

/// Ingress: is the gate open, i.e. did egress record a withheld acceptance recently? Returns
/// the time when it is. While it is shut (no flood withholding acceptances) a denied ACK costs
/// one array read here and nothing more.
#[inline(always)]
pub(crate) fn gate_open() -> Option<u64> {
    let last = *ACCEPT_GATE.get(0)?;
    if last == 0 {
        return None;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    accept_waits(last, now).then_some(now)
}

/// Ingress, with the gate open: a denied source's segment on `key` (which has no flow entry
/// that would make it anything else). When it is the ACK that completes a withheld
/// acceptance, the connection is counted and reported (NM-1030, from this hook) under the
/// group's `completed` budget. `action` is what ingress does with the packet.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "inlined; a struct would be built on the 512-byte BPF stack"
)]
pub(crate) fn on_denied_segment(
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
    let _ = ACCEPTS.remove(key);
    if pending.group != group || !accept_waits(pending.ts_ns, now) {
        return;
    }
    count_reason(reason::HANDSHAKE_COMPLETED);
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
    };
    if !emit(meta, l3, l4, key, now, &ev) {
        count_reason(reason::HANDSHAKE_RINGBUF_FULL);
    }
}
