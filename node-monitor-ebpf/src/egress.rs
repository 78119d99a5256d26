//! The egress path: the node's answers, and (in [`crate::unseen`]) acceptances nobody saw asked
//! for.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use node_monitor_common::{
    ACTION_PASS, ANSWER_ACCEPTED, ANSWER_NONE, ANSWER_REFUSED, Addr, COMPLETES_NONE,
    COMPLETES_REPORTED, EVENT_ANSWER, EVENT_UNSEEN, FlowKey, GROUP_NONE, IPPROTO_ICMP,
    IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_RST, TCP_SYN,
};

use crate::{
    Meta,
    budget::{refusal_awaited, refusal_gate_open},
    count_reason,
    emit::{EventFacts, emit},
    maps::FLOWS,
    parse::{self, L4, Packet},
    peek::{Headers, Plain, address_at, be16, plain},
    port_group,
    unseen::{Unseen, unseen_accept, unseen_again},
};

/// What a TCP segment from a watched port answers: a RST refuses, a SYN-ACK accepts; anything
/// else answers no attempt.
#[inline(always)]
fn tcp_answer(flags: u8) -> Option<u8> {
    if flags & TCP_RST != 0 {
        Some(ANSWER_REFUSED)
    } else if flags & (TCP_SYN | TCP_ACK) == (TCP_SYN | TCP_ACK) {
        Some(ANSWER_ACCEPTED)
    } else {
        None
    }
}

/// The flow key of the attempt that a packet from `src`:`src_port` to `dst`:`dst_port` would
/// answer: back to ingress orientation, the peer is the source.
#[inline(always)]
fn attempt_key(
    src: Addr,
    dst: Addr,
    src_port: u16,
    dst_port: u16,
    proto: u8,
    family: u8,
) -> FlowKey {
    FlowKey {
        src_addr: dst,
        dst_addr: src,
        src_port: dst_port,
        dst_port: src_port,
        proto,
        family,
        _pad: 0,
    }
}

/// Egress's first look, at the plain shapes only ([`plain`]), on the packet in place: what
/// [`egress`] would pass without a flow lookup passes here, on a few fixed-offset reads. A
/// segment or datagram from a port nobody watches; a TCP segment from a watched port that
/// answers nothing; a RST that answers no flagged attempt on record (its group's refusal
/// gate closed, or its key's tag absent: [`refusal_awaited`]), counted in the group's answers
/// first as [`egress`] counts it. Egress's packets are the node's own, with headers its stack
/// wrote linear, so there is no copy: a shape cut short by the linear part, as any other
/// shape, is None and takes the full path, which then counts it (nothing is counted twice).
#[inline(always)]
pub(crate) fn first_look(pkt: &Packet) -> Option<u8> {
    let Plain { family, proto, l4 } = plain(pkt)?;
    // SAFETY (reads): inside the transport header `plain` checked.
    let src_port = unsafe { be16(pkt, l4) };
    let group = port_group(proto, src_port);
    if group == GROUP_NONE {
        return Some(ACTION_PASS);
    }
    if proto != IPPROTO_TCP {
        return None;
    }
    match tcp_answer(unsafe { pkt.byte(l4 + 13) }) {
        None => Some(ACTION_PASS),
        Some(ANSWER_REFUSED) => {
            if refusal_gate_open(group) {
                // SAFETY: the IP header lies before the transport header `plain` checked.
                let key = unsafe {
                    attempt_key(
                        address_at(pkt.raw(0), family, false),
                        address_at(pkt.raw(0), family, true),
                        src_port,
                        be16(pkt, l4 + 2),
                        proto,
                        family,
                    )
                };
                if refusal_awaited(&key) {
                    return None;
                }
            }
            crate::summary::count_answer(proto, group, ANSWER_REFUSED);
            Some(ACTION_PASS)
        }
        Some(_) => None,
    }
}

/// The egress path: the node's answer to a flagged attempt (SYN-ACK, RST, a UDP reply, or
/// ICMP port unreachable) is recorded on the flow and reported as an answer event. An
/// acceptance on a 5-tuple without a flow entry goes to [`unseen_accept`]. Returns the
/// `ACTION_*` taken: `ACTION_DROPPED` only for an unseen acceptance in a drop group. A
/// refusal (RST, ICMP) is checked only while its group's gate is open ([`refusal_gate_open`]:
/// a flagged attempt within the last `REFUSAL_WAIT_JIFFIES`), and touches the flow table only
/// when its key's `REFUSAL_TAGS` slot holds its tag ([`refusal_awaited`]: a flagged flow with
/// this key was recorded). So the node's refusals of allowed peers and of attempts the budgets
/// withheld, which left no entry, cost no hash lookup and no clock read.
#[inline(always)]
pub(crate) fn egress(pkt: &Packet, meta: &Meta) -> u8 {
    let Ok(l3) = parse::parse_l3(pkt, meta.meta_vlan) else {
        return ACTION_PASS;
    };
    let (key, answer, flags, seq, group) = match l3.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let Ok(l4) = parse::parse_l4(pkt, &l3) else {
                return ACTION_PASS;
            };
            // The answer leaves from the watched port: look the *source* port up.
            let group = port_group(l3.proto, l4.src_port);
            if group == GROUP_NONE {
                return ACTION_PASS;
            }
            let answer = if l3.proto == IPPROTO_UDP {
                ANSWER_ACCEPTED
            } else {
                match tcp_answer(l4.tcp_flags) {
                    Some(answer) => answer,
                    None => return ACTION_PASS,
                }
            };
            crate::summary::count_answer(l3.proto, group, answer);
            // A refusal can only answer a flagged attempt: while the group has had none
            // lately, it is not checked (an acceptance always is: it may be unseen).
            if answer == ANSWER_REFUSED && !refusal_gate_open(group) {
                return ACTION_PASS;
            }
            let Ok((src, dst)) = parse::addresses(pkt, &l3) else {
                return ACTION_PASS;
            };
            let key = attempt_key(src, dst, l4.src_port, l4.dst_port, l3.proto, l3.family);
            // Then it is looked up only when a flagged flow with this key was recorded.
            if answer == ANSWER_REFUSED && !refusal_awaited(&key) {
                return ACTION_PASS;
            }
            (key, answer, l4.tcp_flags, l4.seq, group)
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let Some(q) = parse::icmp_port_unreachable(pkt, &l3) else {
                return ACTION_PASS;
            };
            let group = port_group(IPPROTO_UDP, q.dst_port);
            if group == GROUP_NONE || !refusal_gate_open(group) {
                return ACTION_PASS;
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
            if !refusal_awaited(&key) {
                return ACTION_PASS;
            }
            (key, ANSWER_REFUSED, 0, 0, GROUP_NONE)
        }
        _ => return ACTION_PASS,
    };
    // The clock is read only once something is to be reported: an allowed peer's answer stops
    // at the flow lookup without it.
    let mut reported_accept = false;
    let ev = match FLOWS.get_ptr_mut(&key) {
        Some(f) => {
            // SAFETY: a map value pointer; see ingress.
            let f = unsafe { &mut *f };
            if f.flagged == 0 {
                return ACTION_PASS;
            }
            if f.answer != ANSWER_NONE {
                return unseen_again(f.opener, f.group);
            }
            f.answer = answer;
            reported_accept = answer == ANSWER_ACCEPTED && key.proto == IPPROTO_TCP;
            EventFacts {
                kind: EVENT_ANSWER,
                group: f.group,
                verdict: f.verdict,
                action: ACTION_PASS,
                answer,
                sampled: 0,
                completes: COMPLETES_NONE,
            }
        }
        // No attempt on record: an acceptance nobody saw asked for (ICMP never gets here:
        // its answer is a refusal).
        None if answer == ANSWER_ACCEPTED => match unseen_accept(&key, group, seq) {
            Unseen::Pass => return ACTION_PASS,
            Unseen::Silent(action) => return action,
            Unseen::Report(ev) => ev,
        },
        None => return ACTION_PASS,
    };
    let l4 = L4 {
        src_port: key.src_port,
        dst_port: key.dst_port,
        tcp_flags: flags,
        seq: 0,
    };
    let now = unsafe { bpf_ktime_get_ns() };
    // A flagged attempt's acceptance, reported: its alert may still be folded by userspace's
    // cap on connection alerts, so the peer's ACK that completes it names it
    // ([`crate::handshake`]).
    if reported_accept {
        crate::handshake::record_accept(&key, ev.group, now, seq, COMPLETES_REPORTED);
    }
    if !emit(meta, &l3, &l4, &key, now, &ev) {
        count_reason(if ev.kind == EVENT_UNSEEN {
            node_monitor_common::reason::UNSEEN_RINGBUF_FULL
        } else {
            node_monitor_common::reason::ANSWER_RINGBUF_FULL
        });
    }
    ev.action
}
