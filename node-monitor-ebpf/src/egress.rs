//! The egress path: the node's answers.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use node_monitor_common::{
    ACTION_PASS, ANSWER_ACCEPTED, ANSWER_NONE, ANSWER_REFUSED, EVENT_ANSWER, FlowKey, GROUP_NONE,
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_RST, TCP_SYN,
};

use crate::{
    Meta, count_reason,
    emit::{EventFacts, emit},
    maps::FLOWS,
    parse::{self, L4, Packet},
    port_group,
};
/// The egress path: the node's answer to a flagged attempt (SYN-ACK, RST, a UDP reply, or
/// ICMP port unreachable) is recorded on the flow and reported as an answer event.
#[inline(always)]
pub(crate) fn egress(pkt: &Packet, meta: &Meta) {
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
            crate::summary::count_answer(l3.proto, l4.src_port, answer);
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
