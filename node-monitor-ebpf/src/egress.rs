//! The egress path: the node's answers, and (in [`crate::unseen`]) acceptances nobody saw asked
//! for.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use node_monitor_common::{
    ACTION_PASS, ANSWER_ACCEPTED, ANSWER_NONE, ANSWER_REFUSED, COMPLETES_NONE, COMPLETES_REPORTED,
    EVENT_ANSWER, EVENT_UNSEEN, FlowKey, GROUP_NONE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP,
    IPPROTO_UDP, TCP_ACK, TCP_RST, TCP_SYN,
};

use crate::{
    Meta,
    budget::{refusal_awaited, refusal_gate_open},
    count_reason,
    emit::{EventFacts, emit},
    maps::FLOWS,
    parse::{self, L4, Packet},
    port_group,
    unseen::{Unseen, unseen_accept, unseen_again},
};
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
            } else if l4.tcp_flags & TCP_RST != 0 {
                ANSWER_REFUSED
            } else if l4.tcp_flags & (TCP_SYN | TCP_ACK) == (TCP_SYN | TCP_ACK) {
                ANSWER_ACCEPTED
            } else {
                return ACTION_PASS;
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
