//! Events to userspace through the ring buffer.
use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use node_monitor_common::{Event, FRAGMENT_NONE, FlowKey, GroupStats};

use crate::{
    Meta,
    maps::EVENTS,
    parse::{L3, L4},
};

/// What an event says beyond the packet itself.
pub(crate) struct EventFacts {
    pub kind: u8,
    pub group: u8,
    pub verdict: u8,
    pub action: u8,
    pub answer: u8,
    pub sampled: u8,
    /// `COMPLETES_*` (`Event::completes`).
    pub completes: u8,
}

/// Writes one event with reserve/commit. Returns false when the ring buffer is full.
#[inline(always)]
pub(crate) fn emit(
    meta: &Meta,
    l3: &L3,
    l4: &L4,
    key: &FlowKey,
    now: u64,
    ev: &EventFacts,
) -> bool {
    emit_fragment(meta, l3, l4, key, now, ev, FRAGMENT_NONE)
}

/// [`emit`] for an event whose packet may be a first fragment (`FRAGMENT_*`).
#[inline(always)]
pub(crate) fn emit_fragment(
    meta: &Meta,
    l3: &L3,
    l4: &L4,
    key: &FlowKey,
    now: u64,
    ev: &EventFacts,
    fragment: u8,
) -> bool {
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        return false;
    };
    entry.write(Event {
        ts_ns: now,
        src_addr: key.src_addr,
        dst_addr: key.dst_addr,
        ifindex: meta.ifindex,
        pkt_len: meta.pkt_len,
        src_port: key.src_port,
        dst_port: key.dst_port,
        vlan_outer: l3.vlan[0],
        vlan_inner: l3.vlan[1],
        kind: ev.kind,
        family: key.family,
        proto: key.proto,
        tcp_flags: l4.tcp_flags,
        group: ev.group,
        verdict: ev.verdict,
        action: ev.action,
        answer: ev.answer,
        hook: meta.hook,
        sampled: ev.sampled,
        fragment,
        completes: ev.completes,
        _pad1: 0,
    });
    entry.submit(wake_flags());
    true
}

/// The ring buffer's wake-up mask, set by the loader (`ring_wake_mask`); 0 (never set)
/// keeps the kernel's own rule, a wake-up whenever the reader had caught up.
#[unsafe(no_mangle)]
static RING_WAKE_MASK: u64 = 0;

/// Wake the daemon only when the unread bytes (this record's included: it is reserved)
/// cross a multiple of an eighth of the ring; between those it reads the ring on its 50 ms
/// tick. Two CPUs committing at a crossing at once may both miss it: the tick still reads
/// those records, and the next crossing wakes the daemon again.
#[inline(always)]
fn wake_flags() -> u64 {
    // SAFETY: a read of a constant the loader may have overridden; volatile so that the
    // compiler does not fold the 0 it was built with.
    let mask = unsafe { core::ptr::read_volatile(&raw const RING_WAKE_MASK) };
    if mask == 0 {
        return 0;
    }
    if EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) & mask < node_monitor_common::RING_RECORD_BYTES {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    }
}

/// Writes one event and counts it in `stats`: sent, or lost to a full ring buffer.
#[inline(always)]
pub(crate) fn send(
    meta: &Meta,
    l3: &L3,
    l4: &L4,
    key: &FlowKey,
    now: u64,
    ev: &EventFacts,
    stats: &mut GroupStats,
) {
    if emit(meta, l3, l4, key, now, ev) {
        stats.events += 1;
    } else {
        stats.lost_ringbuf_full += 1;
    }
}
