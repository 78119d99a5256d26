//! IPv4 fragments to watched ports, on ingress (XDP and tc alike).
//!
//! The kernel reassembles fragments after both hooks, so a SYN sent in fragments
//! (`hping3 -f`, `--mtu 8`) reaches a listener while each piece looks, to the strict parser,
//! like a truncated segment (the first) or an unparsed fragment (the rest). This file looks
//! again at the packets the parser gave up on for those two reasons:
//!
//! - a *first* fragment (offset 0, MF set) whose ports can be read and whose destination port
//!   a group watches is counted (`FRAG_WATCHED`) and, from a source outside the group's
//!   allowlist (or outside the port's own source ranges), flagged as a connection attempt
//!   like any other (counters, flow entry, budget, event), its TCP flags marked unknown when
//!   the fragment ends before them; in a drop group it is dropped, so the datagram never
//!   reassembles;
//! - a first fragment shorter than a whole transport header is counted (`FRAG_TINY`);
//! - a non-first TCP fragment at offset 1 (8 bytes), which would overwrite the TCP flags of
//!   the first fragment (RFC 1858: from offset 2 on, a fragment starts past the flags), is
//!   counted (`FRAG_OVERLAP`) and passes: non-first fragments are never parsed.
//!
//! Everything else stays as the parser left it: counted under its parse reason, failing
//! open (or closed, for a drop group's port, in [`crate::ingress::fails_closed`]).
use aya_ebpf::helpers::bpf_ktime_get_ns;
use node_monitor_common::{
    ACTION_DROPPED, ACTION_WOULD_DROP, ANSWER_NONE, COMPLETES_NONE, EVENT_FLAGGED, FAMILY_V4,
    FRAGMENT_FIRST, FRAGMENT_FIRST_NO_FLAGS, FlowKey, FlowState, GROUP_NONE, IPPROTO_TCP,
    IPPROTO_UDP, OPENER_FRAGMENT, PROTO_IDX_TCP, PROTO_IDX_UDP, TCP_ACK, TCP_RST, VERDICT_DENIED,
    fragment_starts_attempt, reason, stats_index,
};

use crate::{
    Meta,
    allow::port_allows,
    budget::{Budget, take_budget},
    count_reason,
    emit::{EventFacts, emit_fragment},
    ingress::withheld,
    maps::{FLOWS, GROUP_STATS, SETTINGS},
    parse::{self, L4, Packet, Reason},
    port_group,
};

/// Looks at a packet the parser gave up on with reason `r`. Returns the `ACTION_*` taken when
/// the packet was a first fragment flagged here, `None` to leave it to the caller.
#[inline(always)]
pub(crate) fn on_parse_error(pkt: &Packet, meta: &Meta, r: Reason) -> Option<u8> {
    // A cut TCP header is truncated_l4; with Ethernet padding behind a tiny fragment (a NIC
    // pads frames to 60 bytes) the padding reads as a data offset of 0: bad_tcp_header.
    if r != reason::TRUNC_L4 && r != reason::BAD_TCP && r != reason::IPV4_FRAGMENT {
        return None;
    }
    let f = parse::ipv4_fragment(pkt, meta.meta_vlan)?;
    let proto = f.l3.proto;
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    if f.offset_units != 0 {
        if proto == IPPROTO_TCP && f.offset_units == 1 {
            count_reason(reason::FRAG_OVERLAP);
        }
        return None;
    }
    if !f.more {
        return None;
    }
    // Shorter than a whole TCP (or UDP) header.
    if f.l4_len < parse::l4_min(proto) {
        count_reason(reason::FRAG_TINY);
    }
    if f.l4_len < 4 {
        return None;
    }
    let src_port = parse::be16(pkt, f.l3.l4_off)?;
    let dst_port = parse::be16(pkt, f.l3.l4_off + 2)?;
    let group = port_group(proto, dst_port);
    if group == GROUP_NONE {
        return None;
    }
    count_reason(reason::FRAG_WATCHED);
    first_fragment(pkt, meta, &f, group, src_port, dst_port)
}

/// A first fragment to a watched port: flagged when its source is not allowed. An allowed
/// source's fragment is left to the caller (which fails closed for a drop group's port).
#[inline(always)]
fn first_fragment(
    pkt: &Packet,
    meta: &Meta,
    f: &parse::Ipv4Frag,
    group: u8,
    src_port: u16,
    dst_port: u16,
) -> Option<u8> {
    let l3 = &f.l3;
    let settings = SETTINGS.get(0)?;
    let src = parse::address(pkt, l3, false).ok()?;
    // The port's own source ranges too (a NodePort whose Service sets
    // `loadBalancerSourceRanges`): a sender picks this path by fragmenting.
    if port_allows(group, l3.proto, dst_port, FAMILY_V4, &src, settings) {
        return None;
    }
    let dst = parse::address(pkt, l3, true).ok()?;
    let tcp = l3.proto == IPPROTO_TCP;
    let stats = GROUP_STATS.get_ptr_mut(stats_index(
        group,
        if tcp { PROTO_IDX_TCP } else { PROTO_IDX_UDP },
        VERDICT_DENIED,
    ))?;
    // SAFETY: per-CPU slot, no concurrent writer on this CPU.
    let stats = unsafe { &mut *stats };
    stats.packets += 1;
    stats.bytes += u64::from(meta.pkt_len);
    let action = if group < 64 && settings.drop_mask & (1u64 << group) != 0 {
        stats.dropped += 1;
        ACTION_DROPPED
    } else {
        stats.would_drop += 1;
        ACTION_WOULD_DROP
    };
    // What the fragment holds of the TCP header: the sequence number (8 bytes), the flags
    // (14 bytes). A segment with ACK or RST opens nothing, as on the ordinary path.
    let seq = if f.l4_len >= 8 {
        parse::raw32(pkt, l3.l4_off + 4).unwrap_or(0)
    } else {
        0
    };
    let (tcp_flags, fragment) = if tcp && f.l4_len >= 14 {
        let w = parse::be16(pkt, l3.l4_off + 12).unwrap_or(0);
        ((w & 0xff) as u8, FRAGMENT_FIRST)
    } else {
        (0, FRAGMENT_FIRST_NO_FLAGS)
    };
    if tcp_flags & (TCP_ACK | TCP_RST) != 0 {
        return Some(action);
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let key = FlowKey {
        src_addr: src,
        dst_addr: dst,
        src_port,
        dst_port,
        proto: l3.proto,
        family: FAMILY_V4,
        _pad: 0,
    };
    // As on the ordinary path: the entry is inserted only once the budgets have decided, so
    // that fragments from spoofed sources past a budget insert nothing.
    let entry = FLOWS.get_ptr_mut(&key);
    if entry.is_some() {
        // See ingress: a flagged flow on record keeps egress's gate open and writes its tag
        // again.
        crate::budget::mark_flagged(group);
        crate::budget::mark_flagged_flow(&key);
    }
    let is_new = match entry {
        Some(e) => {
            // SAFETY: a map value pointer; racing updates of these plain fields are benign.
            let e = unsafe { &mut *e };
            let idle = now.saturating_sub(e.last_ns) > settings.flow_idle_ns;
            let new = fragment_starts_attempt(Some((idle, e.answer, e.isn == seq)));
            e.last_ns = now;
            if new {
                e.first_ns = now;
                e.group = group;
                e.verdict = VERDICT_DENIED;
                e.flagged = 1;
                e.answer = ANSWER_NONE;
                e.opener = OPENER_FRAGMENT;
                e.isn = seq;
                e.generation = settings.generation;
            }
            new
        }
        None => true,
    };
    if !is_new {
        return Some(action);
    }
    stats.new_conns += 1;
    let budget = take_budget(FAMILY_V4, &src, now, settings, group, true);
    if entry.is_none() && budget == Budget::Send {
        let state = FlowState {
            first_ns: now,
            last_ns: now,
            group,
            verdict: VERDICT_DENIED,
            flagged: 1,
            answer: ANSWER_NONE,
            opener: OPENER_FRAGMENT,
            _pad0: 0,
            _pad1: 0,
            isn: seq,
            generation: settings.generation,
        };
        if FLOWS.insert(&key, &state, 0).is_err() {
            count_reason(reason::FLOW_UPDATE_FAILED);
        } else {
            crate::budget::mark_flagged_flow(&key);
        }
    }
    if withheld(budget, stats, group, FAMILY_V4, &src, dst_port) {
        return Some(action);
    }
    let ev = EventFacts {
        kind: EVENT_FLAGGED,
        group,
        verdict: VERDICT_DENIED,
        action,
        answer: ANSWER_NONE,
        sampled: 0,
        completes: COMPLETES_NONE,
    };
    let l4 = L4 {
        src_port,
        dst_port,
        tcp_flags,
        seq,
    };
    if emit_fragment(meta, l3, &l4, &key, now, &ev, fragment) {
        stats.events += 1;
    } else {
        stats.lost_ringbuf_full += 1;
    }
    Some(action)
}
