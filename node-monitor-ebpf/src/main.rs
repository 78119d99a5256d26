//! The node-monitor data path: XDP ingress, tc ingress and tc egress programs that share one
//! parser ([`parse`]) and one classification path ([`ingress`], [`egress`]).
//!
//! Every program fails open: whatever cannot be parsed or classified passes untouched and is
//! counted by reason. Only a group configured with `action: drop` ever drops: packets from
//! sources outside its allowlist, and (failing closed) packets to its ports that the parser
//! gave up on while their destination port could still be read ([`fails_closed`]).
#![no_std]
#![no_main]
#![expect(
    clippy::needless_borrows_for_generic_args,
    reason = "map keys and values are passed by reference so they are not copied again on the 512-byte BPF stack"
)]
#![expect(
    clippy::needless_pass_by_value,
    reason = "aya's program macros hand each program its context by value"
)]

mod maps;
mod parse;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action},
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    macros::{classifier, xdp},
    maps::lpm_trie::Key,
    programs::{TcContext, XdpContext},
};
use maps::{
    ALLOW_V4, ALLOW_V6, EVENTS, FLOWS, GROUP_STATS, PORTS_TCP, PORTS_UDP, REASONS, SETTINGS,
    SOURCES, VERDICTS,
};
use node_monitor_common::{
    ACTION_DROPPED, ACTION_PASS, ACTION_WOULD_DROP, ANSWER_ACCEPTED, ANSWER_NONE, ANSWER_REFUSED,
    Addr, EVENT_ANSWER, EVENT_FLAGGED, EVENT_SAMPLED, Event, FAMILY_V4, FlowKey, FlowState,
    GROUP_NONE, HOOK_TC_EGRESS, HOOK_TC_INGRESS, HOOK_XDP, IPPROTO_ICMP, IPPROTO_ICMPV6,
    IPPROTO_TCP, IPPROTO_UDP, OPENER_PROBE, OPENER_SYN, OPENER_UDP, PROTO_IDX_TCP, PROTO_IDX_UDP,
    Settings, TCP_ACK, TCP_RST, TCP_SYN, VERDICT_ALLOWED, VERDICT_DENIED, is_pure_syn,
    source_budget_take, source_slot, stats_index, tcp_starts_attempt, verdict_slot,
};
use parse::{L3, L4, Packet, Reason};

/// Packet facts the entry points hand to the shared path.
struct Meta {
    ifindex: u32,
    pkt_len: u32,
    /// VLAN id the driver moved into metadata (tc only; 0 = none).
    meta_vlan: u16,
    hook: u8,
}

#[xdp]
pub fn nm_xdp_ingress(ctx: XdpContext) -> u32 {
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    // SAFETY: the kernel hands a valid xdp_md.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    let meta = Meta {
        ifindex,
        pkt_len: pkt.len() as u32,
        meta_vlan: 0,
        hook: HOOK_XDP,
    };
    // Fail open: only an explicit drop decision drops.
    match ingress(&pkt, &meta) {
        ACTION_DROPPED => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

/// An empty XDP program: the baseline that benchmarks subtract. Never attached.
#[xdp]
pub fn nm_baseline(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[classifier]
pub fn nm_tc_ingress(ctx: TcContext) -> i32 {
    let (pkt, meta) = tc_packet(&ctx, HOOK_TC_INGRESS);
    // Fail open: only an explicit drop decision drops.
    match ingress(&pkt, &meta) {
        ACTION_DROPPED => TC_ACT_SHOT,
        _ => TC_ACT_OK,
    }
}

#[classifier]
pub fn nm_tc_egress(ctx: TcContext) -> i32 {
    let (pkt, meta) = tc_packet(&ctx, HOOK_TC_EGRESS);
    egress(&pkt, &meta);
    // Egress only observes; it never changes the node's answer.
    TC_ACT_OK
}

/// Bytes of headers pulled into the linear part of an skb before the first parse.
const TC_PULL_LEN: u32 = 128;
/// Bytes pulled at most when the header chain runs past the first pull and more of the
/// packet lies behind it: a 300-byte IPv6 option header, a chain of extension headers, or
/// IPv4 options behind tags must not hide the transport header from the parser, since the
/// kernel reads it wherever it lies.
const TC_PULL_MAX: u32 = 2048;

#[inline(always)]
fn tc_packet(ctx: &TcContext, hook: u8) -> (Packet, Meta) {
    let skb = ctx.skb.skb;
    let len = ctx.len();
    // SAFETY: the kernel hands a valid __sk_buff; these fields are readable by sched_cls.
    let (ifindex, vlan_present, vlan_tci) =
        unsafe { ((*skb).ifindex, (*skb).vlan_present, (*skb).vlan_tci) };
    // Bit 12 marks "a tag is present"; the parser keeps only the 12-bit id, and skips a
    // priority tag (id 0) as the kernel's receive path does.
    let meta_vlan = if vlan_present != 0 {
        (vlan_tci as u16 & 0x0fff) | 0x1000
    } else {
        0
    };
    // Headers of a non-linear skb may sit outside the directly readable part: pull them in.
    let want = core::cmp::min(len, TC_PULL_LEN);
    if ctx.data_end() - ctx.data() < want as usize {
        let _ = ctx.pull_data(want);
    }
    // One more pull, only on ingress (egress sees the node's own answers, whose headers its
    // stack wrote linear) and only for a non-linear skb whose headers the parse finds cut
    // short. `hook` is a constant at each call site, so egress carries no code for it.
    if hook == HOOK_TC_INGRESS
        && ((ctx.data_end() - ctx.data()) as u32) < len
        && parse::runs_past_end(&Packet::new(ctx.data(), ctx.data_end()), meta_vlan)
    {
        let _ = ctx.pull_data(core::cmp::min(len, TC_PULL_MAX));
    }
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    (
        pkt,
        Meta {
            ifindex,
            pkt_len: len,
            meta_vlan,
            hook,
        },
    )
}

#[inline(always)]
fn count_reason(r: Reason) {
    if let Some(c) = REASONS.get_ptr_mut(r) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

/// The group watching `port`. Each branch names its map directly: with a constant map the
/// verifier inlines the array lookup, while a map chosen at run time costs a helper call.
#[inline(always)]
fn port_group(proto: u8, port: u16) -> u8 {
    let g = if proto == IPPROTO_TCP {
        PORTS_TCP.get(u32::from(port))
    } else {
        PORTS_UDP.get(u32::from(port))
    };
    match g {
        Some(g) => *g,
        None => GROUP_NONE,
    }
}

/// Is `src` in `group`'s allowlist? Answers are cached per CPU, per source slot and per
/// config generation; the trie is asked only on a miss.
#[inline(always)]
fn is_allowed(group: u8, family: u8, src: &Addr, generation: u32) -> bool {
    let bit = 1u64 << (group & 63);
    let Some(slot) = VERDICTS.get_ptr_mut(verdict_slot(src)) else {
        return lpm_allowed(group, family, src);
    };
    // SAFETY: this CPU's copy of a per-CPU value; nothing else writes it meanwhile.
    let slot = unsafe { &mut *slot };
    let same = slot.generation == generation && slot.family == family && same_addr(&slot.addr, src);
    if same && slot.known & bit != 0 {
        return slot.allowed & bit != 0;
    }
    let allowed = lpm_allowed(group, family, src);
    let allowed_bit = if allowed { bit } else { 0 };
    if same {
        slot.known |= bit;
        slot.allowed |= allowed_bit;
    } else {
        // Direct-mapped: this source takes the slot over. (Every field is written with a
        // computed value: constant zeros would be merged into a call to a byte-loop memset.)
        slot.addr = *src;
        slot.family = family;
        slot.generation = generation;
        slot.known = bit;
        slot.allowed = allowed_bit;
    }
    allowed
}

/// Compares two addresses as two 64-bit words (no call to memcmp).
#[inline(always)]
fn same_addr(a: &Addr, b: &Addr) -> bool {
    a.0[0] == b.0[0] && a.0[1] == b.0[1]
}

#[inline(always)]
fn lpm_allowed(group: u8, family: u8, src: &Addr) -> bool {
    if family == FAMILY_V4 {
        let a = src.v4_octets();
        let key = Key::new(8 + 32, [group, a[0], a[1], a[2], a[3]]);
        ALLOW_V4.get(&key).is_some()
    } else {
        let mut data = [0u8; 17];
        data[0] = group;
        data[1..].copy_from_slice(&src.octets());
        ALLOW_V6.get(&Key::new(8 + 128, data)).is_some()
    }
}

/// The shared ingress path: classify, count, detect new connections, emit events.
/// Returns the `ACTION_*` taken.
#[inline(always)]
fn ingress(pkt: &Packet, meta: &Meta) -> u8 {
    match try_ingress(pkt, meta) {
        Ok(action) => action,
        Err(r) => {
            count_reason(r);
            if fails_closed(pkt, meta, r) {
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
fn fails_closed(pkt: &Packet, meta: &Meta, r: Reason) -> bool {
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

#[inline(always)]
fn try_ingress(pkt: &Packet, meta: &Meta) -> Result<u8, Reason> {
    let l3 = parse::parse_l3(pkt, meta.meta_vlan)?;
    let l4 = parse::parse_l4(pkt, &l3)?;
    // The cheap path: a port nobody watches ends here.
    let group = port_group(l3.proto, l4.dst_port);
    if group == GROUP_NONE {
        return Ok(ACTION_PASS);
    }
    let src = parse::address(pkt, &l3, false)?;
    let Some(settings) = SETTINGS.get(0) else {
        return Ok(ACTION_PASS);
    };
    let allowed = is_allowed(group, l3.family, &src, settings.generation);
    let verdict = if allowed {
        VERDICT_ALLOWED
    } else {
        VERDICT_DENIED
    };
    let proto_idx = if l3.proto == IPPROTO_TCP {
        PROTO_IDX_TCP
    } else {
        PROTO_IDX_UDP
    };
    let Some(stats) = GROUP_STATS.get_ptr_mut(stats_index(group, proto_idx, verdict)) else {
        return Ok(ACTION_PASS);
    };
    // SAFETY: per-CPU slot, no concurrent writer on this CPU.
    let stats = unsafe { &mut *stats };
    stats.packets += 1;
    stats.bytes += u64::from(meta.pkt_len);

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

    // New connection: the first UDP datagram of an idle 5-tuple; for TCP, a segment without
    // ACK and RST: a pure SYN (an attempt), or a stealth probe such as NULL/FIN/Xmas.
    let candidate = l3.proto == IPPROTO_UDP || l4.tcp_flags & (TCP_ACK | TCP_RST) == 0;
    if !candidate {
        return Ok(action);
    }
    let dst = parse::address(pkt, &l3, true)?;
    let now = unsafe { bpf_ktime_get_ns() };
    let key = FlowKey {
        src_addr: src,
        dst_addr: dst,
        src_port: l4.src_port,
        dst_port: l4.dst_port,
        proto: l3.proto,
        family: l3.family,
        _pad: 0,
    };
    let flagged = u8::from(verdict == VERDICT_DENIED);
    let opener = if l3.proto == IPPROTO_UDP {
        OPENER_UDP
    } else if is_pure_syn(l4.tcp_flags) {
        OPENER_SYN
    } else {
        OPENER_PROBE
    };
    let is_new = match FLOWS.get_ptr_mut(&key) {
        Some(f) => {
            // SAFETY: a map value pointer; racing updates of these plain fields are benign.
            let f = unsafe { &mut *f };
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
            }
            new
        }
        None => {
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
                _pad2: 0,
            };
            if FLOWS.insert(&key, &state, 0).is_err() {
                count_reason(node_monitor_common::reason::FLOW_UPDATE_FAILED);
            }
            true
        }
    };
    if !is_new {
        return Ok(action);
    }
    stats.new_conns += 1;

    // Denied: always reported, under the source's flagged budget (and the first of each group
    // in a window whatever that budget says). Allowed: reported when 1-in-N sampling picks
    // it, or always (under the source's allowed budget) in a sweep-watched group.
    let mut sampled = 0u8;
    if verdict == VERDICT_ALLOWED {
        let n = settings.sample_one_in;
        if n != 0 && unsafe { bpf_get_prandom_u32() } % n == 0 {
            sampled = 1;
        }
    }
    let sweep_watched = group < 64 && settings.sweep_mask & (1u64 << group) != 0;
    if verdict == VERDICT_DENIED || sweep_watched {
        if !take_budget(l3.family, &src, now, settings, group, flagged != 0) {
            stats.lost_rate_limited += 1;
            return Ok(action);
        }
    } else if sampled == 0 {
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
    };
    if emit(meta, &l3, &l4, &key, now, &ev) {
        stats.events += 1;
    } else {
        stats.lost_ringbuf_full += 1;
    }
    Ok(action)
}

/// May the source send this event? See [`source_budget_take`]: flagged and allowed events
/// have budgets of their own. A source that finds its slot held by another takes the slot
/// over as it is (buckets and reported groups): a takeover never brings a fresh bucket.
#[inline(always)]
fn take_budget(
    family: u8,
    src: &Addr,
    now: u64,
    settings: &Settings,
    group: u8,
    flagged: bool,
) -> bool {
    let rate = settings.events_per_sec;
    if rate == 0 {
        return true;
    }
    let Some(slot) = SOURCES.get_ptr_mut(source_slot(src, settings.source_slot_mask)) else {
        return true;
    };
    // SAFETY: a map value pointer shared by all CPUs; a race between CPUs can only mis-count
    // a token or hand the slot to one of two sources.
    let slot = unsafe { &mut *slot };
    if slot.family != family || !same_addr(&slot.addr, src) {
        slot.addr = *src;
        slot.family = family;
    }
    source_budget_take(slot, now, rate, group, flagged)
}

/// What an event says beyond the packet itself.
struct EventFacts {
    kind: u8,
    group: u8,
    verdict: u8,
    action: u8,
    answer: u8,
    sampled: u8,
}

/// Writes one event with reserve/commit. Returns false when the ring buffer is full.
#[inline(always)]
fn emit(meta: &Meta, l3: &L3, l4: &L4, key: &FlowKey, now: u64, ev: &EventFacts) -> bool {
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
        _pad0: 0,
        _pad1: 0,
    });
    entry.submit(0);
    true
}

/// The egress path: the node's answer to a flagged attempt (SYN-ACK, RST, a UDP reply, or
/// ICMP port unreachable) is recorded on the flow and reported as an answer event.
#[inline(always)]
fn egress(pkt: &Packet, meta: &Meta) {
    let Ok(l3) = parse::parse_l3(pkt, meta.meta_vlan) else {
        return;
    };
    let (key, answer, flags) = match l3.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let Ok(l4) = parse::parse_l4(pkt, &l3) else {
                return;
            };
            // The answer leaves from the watched port: look the *source* port up.
            if port_group(l3.proto, l4.src_port) == GROUP_NONE {
                return;
            }
            let answer = if l3.proto == IPPROTO_UDP {
                ANSWER_ACCEPTED
            } else if l4.tcp_flags & TCP_RST != 0 {
                ANSWER_REFUSED
            } else if l4.tcp_flags & (TCP_SYN | TCP_ACK) == (TCP_SYN | TCP_ACK) {
                ANSWER_ACCEPTED
            } else {
                return;
            };
            let Ok((src, dst)) = parse::addresses(pkt, &l3) else {
                return;
            };
            // Back to ingress orientation: the peer is the source.
            let key = FlowKey {
                src_addr: dst,
                dst_addr: src,
                src_port: l4.dst_port,
                dst_port: l4.src_port,
                proto: l3.proto,
                family: l3.family,
                _pad: 0,
            };
            (key, answer, l4.tcp_flags)
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let Some(q) = parse::icmp_port_unreachable(pkt, &l3) else {
                return;
            };
            if port_group(IPPROTO_UDP, q.dst_port) == GROUP_NONE {
                return;
            }
            let key = FlowKey {
                src_addr: q.src,
                dst_addr: q.dst,
                src_port: q.src_port,
                dst_port: q.dst_port,
                proto: IPPROTO_UDP,
                family: l3.family,
                _pad: 0,
            };
            (key, ANSWER_REFUSED, 0)
        }
        _ => return,
    };
    let Some(f) = FLOWS.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: a map value pointer; see ingress.
    let f = unsafe { &mut *f };
    if f.flagged == 0 || f.answer != ANSWER_NONE {
        return;
    }
    f.answer = answer;
    let (group, verdict) = (f.group, f.verdict);
    let l4 = L4 {
        src_port: key.src_port,
        dst_port: key.dst_port,
        tcp_flags: flags,
        seq: 0,
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let ev = EventFacts {
        kind: EVENT_ANSWER,
        group,
        verdict,
        action: ACTION_PASS,
        answer,
        sampled: 0,
    };
    if !emit(meta, &l3, &l4, &key, now, &ev) {
        count_reason(node_monitor_common::reason::ANSWER_RINGBUF_FULL);
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach this; it exists only to satisfy no_std.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
