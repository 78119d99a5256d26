//! Answer tracking (tc egress): SYN-ACK, RST, UDP replies and ICMP unreachables
//! from the node turn a flagged attempt into accepted or refused; egress never drops.

use node_monitor_common::{
    ACTION_DROPPED, ACTION_PASS, ACTION_WOULD_DROP, ANSWER_ACCEPTED, ANSWER_NONE, ANSWER_REFUSED,
    EVENT_ANSWER, Event, HOOK_TC_EGRESS,
};

use crate::{
    common::{packets::*, progrun::*},
    config::*,
    expect::*,
};

matrix!(
    tcp_answers,
    udp_answers,
    icmp_unreachable_quoting_options_is_refused,
    egress_is_silent_and_never_drops,
);

// One data path per test (loading is the slow part); the sub-cases use disjoint 5-tuples
// and assert deltas.
fn tcp_answers(fam: Fam, ingress: Prog) {
    let mut h = harness();
    tcp_syn_ack_is_accepted_once(&mut h, fam, ingress);
    tcp_rst_is_refused(&mut h, fam, ingress);
    a_refusal_is_looked_up_only_under_its_tag(&mut h, fam, ingress);
}

fn udp_answers(fam: Fam, ingress: Prog) {
    let mut h = harness();
    udp_reply_is_accepted(&mut h, fam, ingress);
    icmp_port_unreachable_is_refused(&mut h, fam, ingress);
}

fn egress_is_silent_and_never_drops(fam: Fam, ingress: Prog) {
    let mut h = harness();
    answer_for_unflagged_flow_is_silent(&mut h, fam, ingress);
    egress_never_drops_nor_counts(&mut h, fam, ingress);
}

/// The answer event for the flagged `syn` (ingress frame, in `group`), answered by `reply`.
fn answer_event(
    h: &Harness,
    ingress: Prog,
    syn: &Frame,
    group: &str,
    reply: &Frame,
    answer: u8,
    flags: u8,
) -> Event {
    Event {
        kind: EVENT_ANSWER,
        pkt_len: len(reply) as u32,
        tcp_flags: flags,
        hook: HOOK_TC_EGRESS,
        action: ACTION_PASS,
        answer,
        vlan_outer: reply.vlans.first().map_or(0, |t| t.vid),
        vlan_inner: reply.vlans.get(1).map_or(0, |t| t.vid),
        ..flagged(h, ingress, syn, group, 0)
    }
}

/// Sends the flagged SYN `syn` through `ingress` and checks its flagged event.
fn flag(h: &mut Harness, ingress: Prog, syn: &Frame, group: &str) {
    run_expect(h, ingress, syn, ingress.pass(), "flagged attempt");
    let ev = flagged(h, ingress, syn, group, ACTION_WOULD_DROP);
    assert_events("flagged attempt", &h.events(), &[ev]);
}

fn tcp_syn_ack_is_accepted_once(h: &mut Harness, fam: Fam, ingress: Prog) {
    let syn = tcp(fam.denied(), fam.node(), 40000, KUBELET, SYN);
    flag(h, ingress, &syn, "kubelet");
    let stats = h.stats();
    let synack = tcp(fam.node(), fam.denied(), KUBELET, 40000, SYN | ACK);
    run_expect(h, Prog::TcEgress, &synack, TC_ACT_OK, "SYN-ACK");
    let want = answer_event(
        h,
        ingress,
        &syn,
        "kubelet",
        &synack,
        ANSWER_ACCEPTED,
        SYN | ACK,
    );
    assert_events("SYN-ACK answer", &h.events(), &[want]);
    let key = flow_key(fam.denied(), fam.node(), 40000, KUBELET, IPPROTO_TCP);
    assert_eq!(
        h.flow(&key).map(|f| f.answer),
        Some(ANSWER_ACCEPTED),
        "flow answer after SYN-ACK"
    );
    // A second answer for the same flow emits nothing and does not change the answer.
    for second in [SYN | ACK, RST, RST | ACK] {
        let f = tcp(fam.node(), fam.denied(), KUBELET, 40000, second);
        run_expect(h, Prog::TcEgress, &f, TC_ACT_OK, "second answer");
    }
    assert_events("second answer", &h.events(), &[]);
    assert_eq!(
        h.flow(&key).map(|f| f.answer),
        Some(ANSWER_ACCEPTED),
        "flow answer after a second answer"
    );
    assert_eq!(h.stats(), stats, "egress changes no GROUP_STATS");
    h.assert_reasons("answers", &[]);
}

fn tcp_rst_is_refused(h: &mut Harness, fam: Fam, ingress: Prog) {
    for (sport, flags) in [(40001u16, RST), (40002, RST | ACK)] {
        let syn = tcp(fam.denied(), fam.node(), sport, KUBELET, SYN);
        flag(h, ingress, &syn, "kubelet");
        let rst = tcp(fam.node(), fam.denied(), KUBELET, sport, flags);
        run_expect(h, Prog::TcEgress, &rst, TC_ACT_OK, "RST");
        let want = answer_event(h, ingress, &syn, "kubelet", &rst, ANSWER_REFUSED, flags);
        assert_events(&format!("answer flags {flags:#04x}"), &h.events(), &[want]);
        let key = flow_key(fam.denied(), fam.node(), sport, KUBELET, IPPROTO_TCP);
        assert_eq!(
            h.flow(&key).map(|f| f.answer),
            Some(ANSWER_REFUSED),
            "flow answer after {flags:#04x}"
        );
    }
    // A drop group's flagged attempt is tracked the same way.
    let syn = tcp(fam.denied(), fam.node(), 40003, ENFORCED, SYN);
    run_expect(h, ingress, &syn, ingress.drop(), "drop group SYN");
    assert_events(
        "drop group SYN",
        &h.events(),
        &[flagged(h, ingress, &syn, "enforced", ACTION_DROPPED)],
    );
    let rst = tcp(fam.node(), fam.denied(), ENFORCED, 40003, RST | ACK);
    run_expect(
        h,
        Prog::TcEgress,
        &rst,
        TC_ACT_OK,
        "RST from drop group port",
    );
    let want = answer_event(
        h,
        ingress,
        &syn,
        "enforced",
        &rst,
        ANSWER_REFUSED,
        RST | ACK,
    );
    assert_events("drop group answer", &h.events(), &[want]);
}

/// Egress looks a refusal up only when its key's `REFUSAL_TAGS` slot holds the key's tag: a
/// slot that another flagged flow took (here: written by the test) hides the refusal, and the
/// flow keeps waiting; the attempt's retransmit writes the tag again, and the next refusal is
/// recorded.
fn a_refusal_is_looked_up_only_under_its_tag(h: &mut Harness, fam: Fam, ingress: Prog) {
    let syn = tcp(fam.denied(), fam.node(), 40020, KUBELET, SYN);
    flag(h, ingress, &syn, "kubelet");
    let key = flow_key(fam.denied(), fam.node(), 40020, KUBELET, IPPROTO_TCP);
    let (slot, tag) = h.dp.refusal_tag(&key).expect("REFUSAL_TAGS");
    assert_eq!(slot, tag, "the flagged flow's tag is in its slot");
    h.dp.set_refusal_tag(&key, tag ^ 2).expect("REFUSAL_TAGS");
    let rst = tcp(fam.node(), fam.denied(), KUBELET, 40020, RST | ACK);
    run_expect(h, Prog::TcEgress, &rst, TC_ACT_OK, "RST under another tag");
    assert_events("RST under another tag", &h.events(), &[]);
    assert_eq!(
        h.flow(&key).map(|f| f.answer),
        Some(ANSWER_NONE),
        "a refusal under another tag is not recorded"
    );
    run_expect(h, ingress, &syn, ingress.pass(), "retransmitted SYN");
    assert_events("retransmitted SYN", &h.events(), &[]);
    assert_eq!(h.dp.refusal_tag(&key).expect("REFUSAL_TAGS").0, tag);
    run_expect(h, Prog::TcEgress, &rst, TC_ACT_OK, "RST under its tag");
    let want = answer_event(h, ingress, &syn, "kubelet", &rst, ANSWER_REFUSED, RST | ACK);
    assert_events("RST under its tag", &h.events(), &[want]);
}

fn answer_for_unflagged_flow_is_silent(h: &mut Harness, fam: Fam, ingress: Prog) {
    // Allowed (sampled, not flagged) flow.
    let syn = tcp(fam.allowed(), fam.node(), 40000, KUBELET, SYN);
    run_expect(h, ingress, &syn, ingress.pass(), "allowed SYN");
    assert_eq!(h.events().len(), 1, "allowed SYN sampled");
    let stats = h.stats();
    for flags in [SYN | ACK, RST] {
        let f = tcp(fam.node(), fam.allowed(), KUBELET, 40000, flags);
        run_expect(h, Prog::TcEgress, &f, TC_ACT_OK, "answer to allowed");
    }
    // No flow at all to an allowed peer, and a port nobody watches. (An acceptance without a
    // flow to a peer that is not allowed is NM-1030: evasion.rs.)
    for (peer, sport, dport) in [
        (fam.allowed(), KUBELET, 40999),
        (fam.denied(), UNWATCHED, 40000),
    ] {
        let f = tcp(fam.node(), peer, sport, dport, SYN | ACK);
        run_expect(h, Prog::TcEgress, &f, TC_ACT_OK, "answer without flow");
    }
    let u = udp(fam.node(), fam.allowed(), UDP_SVC, 40000);
    run_expect(h, Prog::TcEgress, &u, TC_ACT_OK, "UDP reply without flow");
    assert_events("answers to unflagged flows", &h.events(), &[]);
    assert_eq!(h.stats(), stats, "egress changes no GROUP_STATS");
}

fn udp_reply_is_accepted(h: &mut Harness, fam: Fam, ingress: Prog) {
    let dg = udp(fam.denied(), fam.node(), 40000, UDP_SVC);
    flag(h, ingress, &dg, "udp-svc");
    let reply = udp(fam.node(), fam.denied(), UDP_SVC, 40000).payload(b"pong");
    run_expect(h, Prog::TcEgress, &reply, TC_ACT_OK, "UDP reply");
    let want = answer_event(h, ingress, &dg, "udp-svc", &reply, ANSWER_ACCEPTED, 0);
    assert_events("UDP reply", &h.events(), &[want]);
    let key = flow_key(fam.denied(), fam.node(), 40000, UDP_SVC, IPPROTO_UDP);
    assert_eq!(
        h.flow(&key).map(|f| f.answer),
        Some(ANSWER_ACCEPTED),
        "flow answer after UDP reply"
    );
    run_expect(h, Prog::TcEgress, &reply, TC_ACT_OK, "second UDP reply");
    assert_events("second UDP reply", &h.events(), &[]);
}

fn icmp_port_unreachable_is_refused(h: &mut Harness, fam: Fam, ingress: Prog) {
    let dg = udp(fam.denied(), fam.node(), 40010, UDP_SVC).payload(b"ping");
    icmp_unreachable_case(h, ingress, &dg, "port unreachable");
}

/// The quoted datagram carries IPv4 options / an IPv6 extension header (both classified
/// normally on ingress, so the attempt is flagged); the node's ICMP error quotes them.
fn icmp_unreachable_quoting_options_is_refused(fam: Fam, ingress: Prog) {
    let mut h = harness();
    let dg = udp(fam.denied(), fam.node(), 40011, UDP_SVC).payload(b"ping");
    let dg = match fam {
        Fam::V4 => dg.ipv4_options(2),
        Fam::V6 => dg.ipv6_ext(&[ExtHeader::DestOpts]),
    };
    icmp_unreachable_case(
        &mut h,
        ingress,
        &dg,
        "port unreachable quoting options/ext header",
    );
}

fn icmp_unreachable_case(h: &mut Harness, ingress: Prog, dg: &Frame, ctx: &str) {
    flag(h, ingress, dg, "udp-svc");
    let stats = h.stats();
    let unreach = Frame::icmp_port_unreachable(dg.l3.dst(), dg.l3.src(), dg);
    run_expect(h, Prog::TcEgress, &unreach, TC_ACT_OK, ctx);
    let want = answer_event(h, ingress, dg, "udp-svc", &unreach, ANSWER_REFUSED, 0);
    assert_events(ctx, &h.events(), &[want]);
    let L4::Udp { sport, dport } = dg.l4 else {
        unreachable!("a UDP datagram")
    };
    let key = flow_key(dg.l3.src(), dg.l3.dst(), sport, dport, IPPROTO_UDP);
    assert_eq!(
        h.flow(&key).map(|f| f.answer),
        Some(ANSWER_REFUSED),
        "{ctx}: flow answer"
    );
    run_expect(h, Prog::TcEgress, &unreach, TC_ACT_OK, ctx);
    assert_events(&format!("{ctx}, second time"), &h.events(), &[]);
    assert_eq!(h.stats(), stats, "{ctx}: egress changes no GROUP_STATS");
}

fn egress_never_drops_nor_counts(h: &mut Harness, fam: Fam, ingress: Prog) {
    let syn = tcp(fam.denied(), fam.node(), 40010, ENFORCED, SYN);
    run_expect(
        h,
        ingress,
        &syn,
        ingress.drop(),
        "drop group SYN on ingress",
    );
    let _ = h.events();
    let stats = h.stats();
    let full = tcp(fam.denied(), fam.node(), 40001, ENFORCED, SYN)
        .vlan(5)
        .build();
    let frames: Vec<Vec<u8>> = vec![
        // What ingress would drop, seen on egress.
        syn.build(),
        udp(fam.denied(), fam.node(), 40010, ENFORCED).build(),
        tcp(fam.node(), fam.denied(), ENFORCED, 40010, SYN | ACK).build(),
        non_ip_frame(),
        truncate(&full, 20),
        tcp(fam.denied(), fam.node(), 40002, KUBELET, SYN)
            .vlan(1)
            .vlan(2)
            .vlan(3)
            .build(),
        Frame::icmp_echo(fam.node(), fam.denied(), 1, 1).build(),
    ];
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(
            h.run(Prog::TcEgress, f),
            TC_ACT_OK,
            "egress frame {i} must be TC_ACT_OK"
        );
    }
    assert_eq!(h.stats(), stats, "egress changes no GROUP_STATS");
    // The SYN-ACK above answered the dropped SYN: that event is expected, nothing else.
    let evs = h.events();
    assert!(
        evs.iter().all(|e| e.kind == EVENT_ANSWER),
        "egress writes answer events only: {evs:?}"
    );
}
