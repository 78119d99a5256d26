//! The ingress path shared by XDP and tc ingress.
use aya_ebpf::helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns};
use node_monitor_common::{
    ACTION_DROPPED, ACTION_PASS, ACTION_WOULD_DROP, ANSWER_NONE, Addr, COMPLETES_NONE,
    EVENT_FLAGGED, EVENT_SAMPLED, FlowKey, FlowState, GROUP_NONE, GroupStats, IPPROTO_TCP,
    IPPROTO_UDP, OPENER_PROBE, OPENER_SYN, OPENER_UDP, PROTO_IDX_TCP, PROTO_IDX_UDP, Settings,
    TCP_ACK, TCP_RST, VERDICT_ALLOWED, VERDICT_DENIED, is_pure_syn, stats_index,
    tcp_starts_attempt,
};

use crate::{
    Meta,
    allow::{SourceVerdict, port_source_verdict},
    budget::{Budget, mark_flagged, mark_flagged_flow, take_budget},
    count_reason,
    emit::{EventFacts, send},
    handshake,
    maps::{FLOWS, GROUP_STATS, SETTINGS},
    parse::{self, Packet, Reason},
    port_group, revoke, summary,
};

/// The shared ingress path: classify, count, detect new connections, emit events.
/// Returns the `ACTION_*` taken.
#[inline(always)]
pub(crate) fn ingress(pkt: &Packet, meta: &Meta) -> u8 {
    match try_ingress(pkt, meta) {
        Ok(action) => action,
        Err(r) => {
            // A first fragment flagged there is counted in its group's stats instead of
            // under `r`: one count per packet (`reason::DISPOSITIONS`).
            if let Some(action) = crate::fragments::on_parse_error(pkt, meta, r) {
                return action;
            }
            count_reason(r);
            if fails_closed(pkt, meta, r) {
                count_reason(node_monitor_common::reason::DROPPED_UNPARSED);
                ACTION_DROPPED
            } else {
                ACTION_PASS
            }
        }
    }
}

/// A packet the parser gave up on (`r`) is dropped when its destination port can still be
/// read (behind more tags or extension headers than the strict parse walks, or in a broken
/// TCP/UDP header) and a group with `action: drop` watches that port: a drop group fails
/// closed for what it cannot read. It stays counted under `r`. Anything else fails open.
#[inline(always)]
pub(crate) fn fails_closed(pkt: &Packet, meta: &Meta, r: Reason) -> bool {
    use node_monitor_common::reason;
    if r != reason::VLAN_TOO_DEEP
        && r != reason::IPV6_EXT_LIMIT
        && r != reason::TRUNC_L4
        && r != reason::BAD_TCP
    {
        return false;
    }
    let Some((proto, port)) = parse::port_past_limits(pkt, meta.meta_vlan) else {
        return false;
    };
    let group = port_group(proto, port);
    if group == GROUP_NONE || group >= 64 {
        return false;
    }
    match SETTINGS.get(0) {
        Some(settings) => settings.drop_mask & (1u64 << group) != 0,
        None => false,
    }
}

/// What the allowlists and the settings say of a packet to a watched port.
struct Watched<'a> {
    group: u8,
    settings: &'a Settings,
    source: SourceVerdict,
    /// `VERDICT_*`.
    verdict: u8,
}

/// The verdict on a packet of `group` to `port` from `src`. None without settings (the
/// packet passes uncounted).
#[inline(always)]
fn classify(group: u8, proto: u8, port: u16, family: u8, src: &Addr) -> Option<Watched<'static>> {
    let settings = SETTINGS.get(0)?;
    let source = port_source_verdict(group, proto, port, family, src, settings);
    let verdict = if source.allowed {
        VERDICT_ALLOWED
    } else {
        VERDICT_DENIED
    };
    Some(Watched {
        group,
        settings,
        source,
        verdict,
    })
}

/// Counts a watched packet in its group's stats (packets, bytes, and dropped or would-drop
/// for a denied source); the stats and the `ACTION_*` for it. None: no stats slot (the
/// packet passes).
#[inline(always)]
fn count(
    group: u8,
    settings: &Settings,
    verdict: u8,
    proto: u8,
    pkt_len: u32,
) -> Option<(&'static mut GroupStats, u8)> {
    let proto_idx = if proto == IPPROTO_TCP {
        PROTO_IDX_TCP
    } else {
        PROTO_IDX_UDP
    };
    let stats = GROUP_STATS.get_ptr_mut(stats_index(group, proto_idx, verdict))?;
    // SAFETY: per-CPU slot, no concurrent writer on this CPU.
    let stats = unsafe { &mut *stats };
    stats.packets += 1;
    stats.bytes += u64::from(pkt_len);
    let mut action = ACTION_PASS;
    if verdict == VERDICT_DENIED {
        if group < 64 && settings.drop_mask & (1u64 << group) != 0 {
            stats.dropped += 1;
            action = ACTION_DROPPED;
        } else {
            stats.would_drop += 1;
            action = ACTION_WOULD_DROP;
        }
    }
    Some((stats, action))
}

/// Does a TCP segment with ACK or RST (no new connection) end once counted? An allowed
/// source's does. A denied source's goes on while a config has revoked anything or the
/// source lies in a suspect range (it may belong to a flow opened while the source was
/// allowed), or while egress has recently recorded an acceptance (`handshake_now`, from
/// [`handshake::gate_open`]: it may complete one).
#[inline(always)]
fn ends_counted(
    verdict: u8,
    settings: &Settings,
    source: SourceVerdict,
    handshake_now: Option<u64>,
) -> bool {
    verdict != VERDICT_DENIED
        || (settings.revoked_generation == 0 && !source.suspect && handshake_now.is_none())
}

/// The path for a TCP segment to a watched port (`group`) whose headers the first look read
/// ([`crate::peek`]), before the full parse: the same verdict and counts as [`ingress`], when
/// ingress would end there. A segment with ACK or RST (`flags`)
/// ends counted when [`ends_counted`] says so; a pure SYN when a spent budget withholds it
/// ([`withheld_syn`]). None otherwise: nothing is counted, and the full path takes the packet.
#[inline(always)]
pub(crate) fn from_headers(
    group: u8,
    port: u16,
    family: u8,
    flags: u8,
    src: &Addr,
    pkt_len: u32,
) -> Option<u8> {
    let Some(w) = classify(group, IPPROTO_TCP, port, family, src) else {
        return Some(ACTION_PASS);
    };
    if flags & (TCP_ACK | TCP_RST) == 0 {
        return withheld_syn(&w, port, family, src, pkt_len);
    }
    let handshake_now = if w.verdict == VERDICT_DENIED {
        handshake::gate_open()
    } else {
        None
    };
    if !ends_counted(w.verdict, w.settings, w.source, handshake_now) {
        return None;
    }
    Some(
        count(w.group, w.settings, w.verdict, IPPROTO_TCP, pkt_len).map_or(ACTION_PASS, |(_, a)| a),
    )
}

/// A pure SYN to `port` from `src` whose event a spent budget withholds: a new connection of a
/// denied source whose source or group budget is spent is counted, withheld by reason and
/// summarised, and gets no flow-table entry; the flow table is not even looked up, since a
/// withheld attempt inserts nothing (a SYN retransmitted on a flow reported earlier then
/// counts as one more withheld attempt). This is what a spoofed flood or one scanning source
/// sends, packet after packet, and both hooks end it here, before the flow key is built. The
/// `ACTION_*` taken, or None when ingress goes further: an allowed source; a config that
/// revoked anything, or a suspect source (an entry may hold a flow opened while the source
/// was allowed, which the lookup must find); budgets with room. Nothing is counted then.
/// Should the budgets let it through after all (another CPU's race between
/// [`crate::budget::spent`] and the take), the token taken here is one more the full path
/// takes: a race may cost a token, never an uncounted attempt.
#[inline(always)]
fn withheld_syn(w: &Watched<'_>, port: u16, family: u8, src: &Addr, pkt_len: u32) -> Option<u8> {
    if w.verdict != VERDICT_DENIED || w.settings.revoked_generation != 0 || w.source.suspect {
        return None;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    if !crate::budget::spent(src, now, w.settings, w.group) {
        return None;
    }
    let budget = take_budget(family, src, now, w.settings, w.group, true);
    if budget == Budget::Send {
        return None;
    }
    let Some((stats, action)) = count(w.group, w.settings, w.verdict, IPPROTO_TCP, pkt_len) else {
        return Some(ACTION_PASS);
    };
    stats.new_conns += 1;
    withheld(budget, stats, w.group, family, src, port);
    Some(action)
}

#[inline(always)]
fn try_ingress(pkt: &Packet, meta: &Meta) -> Result<u8, Reason> {
    let l3 = parse::parse_l3(pkt, meta.meta_vlan)?;
    let l4 = parse::parse_l4(pkt, &l3)?;
    // The cheap path: a port nobody watches ends here.
    let group = port_group(l3.proto, l4.dst_port);
    if group == GROUP_NONE {
        count_reason(node_monitor_common::reason::UNWATCHED);
        return Ok(ACTION_PASS);
    }
    let src = parse::address(pkt, &l3, false)?;
    let Some(w) = classify(group, l3.proto, l4.dst_port, l3.family, &src) else {
        return Ok(ACTION_PASS);
    };
    if l3.proto == IPPROTO_TCP
        && is_pure_syn(l4.tcp_flags)
        && let Some(action) = withheld_syn(&w, l4.dst_port, l3.family, &src, meta.pkt_len)
    {
        return Ok(action);
    }
    let Watched {
        group,
        settings,
        source,
        verdict,
    } = w;
    let Some((stats, action)) = count(group, settings, verdict, l3.proto, meta.pkt_len) else {
        return Ok(ACTION_PASS);
    };

    // New connection: the first UDP datagram of an idle 5-tuple; for TCP, a segment without
    // ACK and RST: a pure SYN (an attempt), or a stealth probe such as NULL/FIN/Xmas.
    // Other segments end here, but for a denied source's that may belong to a flow opened
    // while the source was allowed, or complete an acceptance ([`ends_counted`]).
    let candidate = l3.proto == IPPROTO_UDP || l4.tcp_flags & (TCP_ACK | TCP_RST) == 0;
    let handshake_now = if !candidate && verdict == VERDICT_DENIED && l3.proto == IPPROTO_TCP {
        handshake::gate_open()
    } else {
        None
    };
    if !candidate && ends_counted(verdict, settings, source, handshake_now) {
        return Ok(action);
    }
    let dst = parse::address(pkt, &l3, true)?;
    let key = FlowKey {
        src_addr: src,
        dst_addr: dst,
        src_port: l4.src_port,
        dst_port: l4.dst_port,
        proto: l3.proto,
        family: l3.family,
        _pad: 0,
    };
    // A candidate needs the clock at once; another segment only if it reveals a revoked flow.
    let mut now = if candidate {
        unsafe { bpf_ktime_get_ns() }
    } else {
        handshake_now.unwrap_or(0)
    };
    let flagged = u8::from(verdict == VERDICT_DENIED);
    // The flow entry is looked up now but inserted only once the budgets have decided: a
    // denied source past its budget inserts nothing, so that a flood of spoofed sources
    // cannot evict the entries of real flows from the LRU table. (A denied pure SYN that a
    // spent budget withholds ended above, without a lookup: [`withheld_syn`].)
    let entry = FLOWS.get_ptr_mut(&key);
    // A denied candidate that continues a flow on record may still get its refusal: keep
    // egress's gate open (a new one opens it when it takes a budget), and put its tag back
    // into its slot, in case another flagged flow took the slot meanwhile.
    if candidate && flagged != 0 && entry.is_some() {
        mark_flagged(group);
        mark_flagged_flow(&key);
    }
    let opener = if l3.proto == IPPROTO_UDP {
        OPENER_UDP
    } else if is_pure_syn(l4.tcp_flags) {
        OPENER_SYN
    } else {
        OPENER_PROBE
    };
    // A denied packet of a flow opened while its source was allowed: reported once, below.
    let mut revoked_flow = false;
    let is_new = match entry {
        Some(f) => {
            // SAFETY: a map value pointer; racing updates of these plain fields are benign.
            let f = unsafe { &mut *f };
            if candidate {
                let idle = now.saturating_sub(f.last_ns) > settings.flow_idle_ns;
                let new = if l3.proto == IPPROTO_UDP {
                    idle
                } else {
                    tcp_starts_attempt(
                        l4.tcp_flags,
                        Some((idle, f.opener, f.answer, f.isn == l4.seq)),
                    )
                };
                f.last_ns = now;
                if new {
                    f.first_ns = now;
                    f.group = group;
                    f.verdict = verdict;
                    f.flagged = flagged;
                    f.answer = ANSWER_NONE;
                    f.opener = opener;
                    f.isn = l4.seq;
                    f.generation = settings.generation;
                } else if verdict == VERDICT_DENIED {
                    revoked_flow = revoke::revoked(f, settings.generation);
                }
                new
            } else {
                // Only denied segments get here (allowed ones returned above).
                revoked_flow = revoke::revoked(f, settings.generation);
                false
            }
        }
        None => candidate,
    };
    if !is_new {
        if handshake_now.is_some() {
            handshake::on_denied_segment(pkt, meta, &l3, &l4, &key, now, settings, group, action);
        }
        if revoked_flow {
            mark_flagged_flow(&key);
            if now == 0 {
                now = unsafe { bpf_ktime_get_ns() };
            }
            revoke::report(meta, &l3, &l4, &key, now, settings, stats, group, action);
        }
        return Ok(action);
    }
    stats.new_conns += 1;

    // Denied: always reported, under the source's flagged budget (and the first of each group
    // in a window whatever that budget says) and the group's node-wide flagged budget.
    // Allowed: reported when 1-in-N sampling picks it, or always (under the source's and the
    // group's allowed budgets) in a sweep-watched group.
    let mut sampled = 0u8;
    if verdict == VERDICT_ALLOWED {
        let n = settings.sample_one_in;
        if n != 0 && unsafe { bpf_get_prandom_u32() } % n == 0 {
            sampled = 1;
        }
    }
    let sweep_watched = group < 64 && settings.sweep_mask & (1u64 << group) != 0;
    let budget = if verdict == VERDICT_DENIED || sweep_watched {
        take_budget(l3.family, &src, now, settings, group, flagged != 0)
    } else {
        Budget::Send
    };
    // A denied source past a budget inserts nothing; every other new 5-tuple gets its entry.
    if entry.is_none() && (budget == Budget::Send || verdict == VERDICT_ALLOWED) {
        let state = FlowState {
            first_ns: now,
            last_ns: now,
            group,
            verdict,
            flagged,
            answer: ANSWER_NONE,
            opener,
            _pad0: 0,
            _pad1: 0,
            isn: l4.seq,
            generation: settings.generation,
        };
        if FLOWS.insert(&key, &state, 0).is_err() {
            count_reason(node_monitor_common::reason::FLOW_UPDATE_FAILED);
        } else if flagged != 0 {
            mark_flagged_flow(&key);
        }
    }
    if withheld(budget, stats, group, l3.family, &src, l4.dst_port) {
        return Ok(action);
    }
    if verdict == VERDICT_ALLOWED && !sweep_watched && sampled == 0 {
        stats.sampled_out += 1;
        return Ok(action);
    }
    let kind = if verdict == VERDICT_DENIED {
        EVENT_FLAGGED
    } else {
        EVENT_SAMPLED
    };
    let ev = EventFacts {
        kind,
        group,
        verdict,
        action,
        answer: ANSWER_NONE,
        sampled,
        completes: COMPLETES_NONE,
    };
    send(meta, &l3, &l4, &key, now, &ev, stats);
    Ok(action)
}

/// Counts an event that `budget` withholds (by reason) and summarises it for the flood
/// alert; true when it was withheld.
#[inline(always)]
pub(crate) fn withheld(
    budget: Budget,
    stats: &mut GroupStats,
    group: u8,
    family: u8,
    src: &Addr,
    dst_port: u16,
) -> bool {
    let rate_limited = match budget {
        Budget::Send => return false,
        Budget::RateLimited => {
            stats.lost_rate_limited += 1;
            true
        }
        Budget::OverGroup => {
            stats.lost_group_budget += 1;
            false
        }
    };
    summary::withheld(group, family, src, dst_port, rate_limited);
    true
}
