//! Evasion (issue 14): the node's answer as the last line of defence (NM-1030, tc egress),
//! and IPv4 fragments to watched ports (ingress, XDP and tc alike).
//!
//! Egress: a SYN-ACK or first UDP reply from a watched port to a peer outside the allowlist,
//! with and without an attempt recorded by ingress, in monitor and drop groups; retransmitted
//! answers; allowed peers; the per-source budget with its exact accounting.
//! Ingress: first fragments of every TCP header length from 1 to 20 bytes, UDP ones,
//! allowed sources, retransmits, and overlapping non-first fragments.

use node_monitor_common::{
    ACTION_DROPPED, ACTION_PASS, ACTION_WOULD_DROP, ANSWER_ACCEPTED, ANSWER_NONE,
    COMPLETES_REPORTED, EVENT_ANSWER, EVENT_FLAGGED, EVENT_UNSEEN, Event, FRAGMENT_FIRST,
    FRAGMENT_FIRST_NO_FLAGS, FlowState, OPENER_ANSWER, OPENER_FRAGMENT, OPENER_SYN, reason,
};

use crate::{
    common::{packets::*, progrun::*},
    config::*,
    expect::*,
};

matrix!(
    unseen_acceptance_in_monitor_group,
    unseen_acceptance_in_drop_group,
    recorded_attempt_is_answered_not_unseen,
    allowed_peers_and_refusals_stay_silent,
    unseen_udp_reply,
);

/// The NM-1030 event for `answer` (an egress frame from the node to the peer), in `group`:
/// the answer's own event, turned to ingress orientation (the peer is the source).
fn unseen_event(h: &Harness, answer: &Frame, group: &str, action: u8) -> Event {
    let e = event_for(EVENT_UNSEEN, Prog::TcEgress, answer);
    Event {
        src_addr: e.dst_addr,
        dst_addr: e.src_addr,
        src_port: e.dst_port,
        dst_port: e.src_port,
        group: h.gid(group),
        verdict: D,
        action,
        answer: ANSWER_ACCEPTED,
        ..e
    }
}

/// The flow entry egress opens for an unseen acceptance (times checked non-zero, then cleared).
#[track_caller]
fn assert_unseen_flow(h: &Harness, answer: &Frame, group: &str, ctx: &str) {
    let (sport, dport, proto) = match answer.l4 {
        L4::Tcp { sport, dport, .. } => (sport, dport, IPPROTO_TCP),
        L4::Udp { sport, dport } => (sport, dport, IPPROTO_UDP),
        ref other => panic!("no answer {other:?}"),
    };
    let key = flow_key(answer.l3.dst(), answer.l3.src(), dport, sport, proto);
    let mut f = h
        .flow(&key)
        .unwrap_or_else(|| panic!("{ctx}: no FLOWS entry"));
    assert!(f.first_ns != 0 && f.last_ns == f.first_ns, "{ctx}: {f:?}");
    // The entry carries the loaded config's generation (the first load is generation 1).
    assert_eq!(f.generation, 1, "{ctx}: {f:?}");
    (f.first_ns, f.last_ns, f.generation) = (0, 0, 0);
    assert_eq!(
        f,
        FlowState {
            group: h.gid(group),
            verdict: D,
            flagged: 1,
            answer: ANSWER_ACCEPTED,
            opener: OPENER_ANSWER,
            ..FlowState::default()
        },
        "{ctx}: FLOWS entry"
    );
}

fn unseen_acceptance_in_monitor_group(fam: Fam, ingress: Prog) {
    let mut h = harness();
    // Ingress saw nothing (the attempt came in fragments, or on a device not watched).
    let synack = tcp(fam.node(), fam.denied(), KUBELET, 40000, SYN | ACK);
    run_expect(&h, Prog::TcEgress, &synack, TC_ACT_OK, "unseen SYN-ACK");
    let want = unseen_event(&h, &synack, "kubelet", ACTION_WOULD_DROP);
    assert_events("unseen SYN-ACK", &h.events(), &[want]);
    h.assert_reasons("unseen SYN-ACK", &[(reason::UNSEEN_ACCEPTED, 1)]);
    h.assert_stats_zero("egress counts in REASONS, never in GROUP_STATS");
    assert_unseen_flow(&h, &synack, "kubelet", "unseen SYN-ACK");
    // Retransmitted SYN-ACKs of the same connection: nothing.
    for _ in 0..3 {
        run_expect(&h, Prog::TcEgress, &synack, TC_ACT_OK, "retransmit");
    }
    assert_events("retransmits", &h.events(), &[]);
    h.assert_reasons("retransmits", &[(reason::UNSEEN_ACCEPTED, 1)]);
    assert_unseen_flow(&h, &synack, "kubelet", "after retransmits");
    // The peer's ACK of the SYN-ACK completes the handshake: reported from ingress, marked as
    // completing a reported acceptance (userspace raises it only if the cap folded that
    // report), once.
    let ack = tcp(fam.denied(), fam.node(), 40000, KUBELET, ACK).tcp_ack(DEFAULT_TCP_SEQ + 1);
    let completed = Event {
        kind: EVENT_UNSEEN,
        answer: ANSWER_ACCEPTED,
        completes: COMPLETES_REPORTED,
        ..flagged(&h, ingress, &ack, "kubelet", ACTION_WOULD_DROP)
    };
    for _ in 0..2 {
        run_expect(&h, ingress, &ack, ingress.pass(), "peer's ACK");
    }
    assert_events("peer's ACK", &h.events(), &[completed]);
    let counted = [
        (reason::UNSEEN_ACCEPTED, 1),
        (reason::HANDSHAKE_COMPLETED, 1),
        (reason::HANDSHAKE_COMPLETED_REPORTED, 1),
    ];
    h.assert_reasons("peer's ACK", &counted);
    assert_unseen_flow(&h, &synack, "kubelet", "after the ACK");
    // Another connection of the same peer is another acceptance.
    let other = tcp(fam.node(), fam.denied(), KUBELET, 40001, SYN | ACK);
    run_expect(&h, Prog::TcEgress, &other, TC_ACT_OK, "second connection");
    let want = unseen_event(&h, &other, "kubelet", ACTION_WOULD_DROP);
    assert_events("second connection", &h.events(), &[want]);
    h.assert_reasons(
        "second connection",
        &[
            (reason::UNSEEN_ACCEPTED, 2),
            (reason::HANDSHAKE_COMPLETED, 1),
            (reason::HANDSHAKE_COMPLETED_REPORTED, 1),
        ],
    );
    // A later SYN from the peer on the first 5-tuple is a new attempt, flagged on ingress.
    let syn = tcp(fam.denied(), fam.node(), 40000, KUBELET, SYN);
    run_expect(&h, ingress, &syn, ingress.pass(), "SYN after");
    let ev = flagged(&h, ingress, &syn, "kubelet", ACTION_WOULD_DROP);
    assert_events("SYN after an unseen acceptance", &h.events(), &[ev]);
}

fn unseen_acceptance_in_drop_group(fam: Fam, _ingress: Prog) {
    let mut h = harness();
    let synack = tcp(fam.node(), fam.denied(), ENFORCED, 40000, SYN | ACK);
    run_expect(&h, Prog::TcEgress, &synack, TC_ACT_SHOT, "unseen SYN-ACK");
    let want = unseen_event(&h, &synack, "enforced", ACTION_DROPPED);
    assert_events("unseen SYN-ACK", &h.events(), &[want]);
    h.assert_reasons(
        "unseen SYN-ACK, dropped",
        &[(reason::UNSEEN_ACCEPTED, 1), (reason::UNSEEN_DROPPED, 1)],
    );
    assert_unseen_flow(&h, &synack, "enforced", "dropped SYN-ACK");
    // The node retransmits its SYN-ACK: dropped again, reported once.
    for n in 2..=4 {
        run_expect(&h, Prog::TcEgress, &synack, TC_ACT_SHOT, "retransmit");
        h.assert_reasons(
            "retransmits, dropped",
            &[(reason::UNSEEN_ACCEPTED, 1), (reason::UNSEEN_DROPPED, n)],
        );
    }
    assert_events("retransmits", &h.events(), &[]);
    h.assert_stats_zero("egress counts in REASONS, never in GROUP_STATS");
    // UDP: the first reply of a 5-tuple, dropped, and the next one too.
    let reply = udp(fam.node(), fam.denied(), ENFORCED, 40000).payload(b"pong");
    run_expect(&h, Prog::TcEgress, &reply, TC_ACT_SHOT, "unseen UDP reply");
    run_expect(&h, Prog::TcEgress, &reply, TC_ACT_SHOT, "second UDP reply");
    let want = unseen_event(&h, &reply, "enforced", ACTION_DROPPED);
    assert_events("unseen UDP reply", &h.events(), &[want]);
    h.assert_reasons(
        "UDP replies, dropped",
        &[(reason::UNSEEN_ACCEPTED, 2), (reason::UNSEEN_DROPPED, 6)],
    );
    // An allowed peer's answer in the drop group passes untouched.
    let ok = tcp(fam.node(), fam.allowed(), ENFORCED, 40000, SYN | ACK);
    run_expect(&h, Prog::TcEgress, &ok, TC_ACT_OK, "allowed peer");
    assert_events("allowed peer", &h.events(), &[]);
}

fn recorded_attempt_is_answered_not_unseen(fam: Fam, ingress: Prog) {
    let mut h = harness();
    for (port, group, action) in [
        (KUBELET, "kubelet", ACTION_WOULD_DROP),
        (ENFORCED, "enforced", ACTION_DROPPED),
    ] {
        let syn = tcp(fam.denied(), fam.node(), 40000, port, SYN);
        let verdict = if action == ACTION_DROPPED {
            ingress.drop()
        } else {
            ingress.pass()
        };
        run_expect(&h, ingress, &syn, verdict, "flagged SYN");
        let ev = flagged(&h, ingress, &syn, group, action);
        assert_events("flagged SYN", &h.events(), &[ev]);
        // The answer to a recorded attempt is an answer event and passes (as before).
        let synack = tcp(fam.node(), fam.denied(), port, 40000, SYN | ACK);
        run_expect(&h, Prog::TcEgress, &synack, TC_ACT_OK, "answer");
        let evs = h.events();
        assert_eq!(evs.len(), 1, "{group}: {evs:?}");
        assert_eq!(
            (evs[0].kind, evs[0].answer, evs[0].action),
            (EVENT_ANSWER, ANSWER_ACCEPTED, ACTION_PASS),
            "{group}"
        );
        let key = flow_key(fam.denied(), fam.node(), 40000, port, IPPROTO_TCP);
        let f = h.flow(&key).expect("flow");
        assert_eq!(
            (f.flagged, f.answer, f.opener),
            (1, ANSWER_ACCEPTED, OPENER_SYN)
        );
        run_expect(&h, Prog::TcEgress, &synack, TC_ACT_OK, "retransmit");
        assert_events("retransmitted answer", &h.events(), &[]);
    }
    h.assert_reasons("answers to recorded attempts", &[]);
}

fn allowed_peers_and_refusals_stay_silent(fam: Fam, ingress: Prog) {
    let mut h = harness();
    // The common path: an allowed peer's SYN made a flow entry; its answer stops there.
    let syn = tcp(fam.allowed(), fam.node(), 40000, KUBELET, SYN);
    run_expect(&h, ingress, &syn, ingress.pass(), "allowed SYN");
    assert_eq!(h.events().len(), 1, "sampled");
    let frames = [
        tcp(fam.node(), fam.allowed(), KUBELET, 40000, SYN | ACK),
        // No entry at all: the allowlist (verdict cache) answers.
        tcp(fam.node(), fam.allowed(), KUBELET, 40001, SYN | ACK),
        udp(fam.node(), fam.allowed(), UDP_SVC, 40001),
        // A per-group allowlist: allowed in `strict`, not in `kubelet`.
        tcp(fam.node(), fam.denied(), STRICT, 40002, SYN | ACK),
        // Refusals and plain segments without an entry are no acceptance.
        tcp(fam.node(), fam.denied(), KUBELET, 40003, RST | ACK),
        tcp(fam.node(), fam.denied(), KUBELET, 40004, ACK),
        tcp(fam.node(), fam.denied(), KUBELET, 40005, SYN),
        // An unwatched port.
        tcp(fam.node(), fam.denied(), UNWATCHED, 40006, SYN | ACK),
    ];
    for f in &frames {
        run_expect(&h, Prog::TcEgress, f, TC_ACT_OK, &format!("{f:?}"));
    }
    assert_events("nothing unseen", &h.events(), &[]);
    h.assert_reasons("nothing unseen", &[]);
    let key = flow_key(fam.allowed(), fam.node(), 40001, KUBELET, IPPROTO_TCP);
    assert_eq!(h.flow(&key), None, "no entry for an allowed peer's answer");
}

fn unseen_udp_reply(fam: Fam, _ingress: Prog) {
    let mut h = harness();
    let reply = udp(fam.node(), fam.denied(), UDP_SVC, 40000).payload(b"pong");
    run_expect(&h, Prog::TcEgress, &reply, TC_ACT_OK, "first UDP reply");
    let want = unseen_event(&h, &reply, "udp-svc", ACTION_WOULD_DROP);
    assert_events("first UDP reply", &h.events(), &[want]);
    assert_unseen_flow(&h, &reply, "udp-svc", "first UDP reply");
    run_expect(&h, Prog::TcEgress, &reply, TC_ACT_OK, "second UDP reply");
    assert_events("second UDP reply", &h.events(), &[]);
    h.assert_reasons("UDP", &[(reason::UNSEEN_ACCEPTED, 1)]);
}

/// The per-source flagged budget applies to unseen acceptances, with exact accounting:
/// `unseen_accepted == events + unseen_accepted_rate_limited + unseen_accepted_ringbuf_full`.
#[test]
fn unseen_acceptances_share_the_source_budget() {
    for fam in Fam::ALL {
        let mut h = harness_with(Knobs {
            events_per_sec: 2,
            ..Knobs::default()
        });
        let n = 6u16;
        for i in 0..n {
            let f = tcp(fam.node(), fam.denied(), KUBELET, 41000 + i, SYN | ACK);
            run_expect(&h, Prog::TcEgress, &f, TC_ACT_OK, "burst");
        }
        let evs = h.events();
        assert!(evs.iter().all(|e| e.kind == EVENT_UNSEEN));
        // The group's first event of the window, then the two tokens' worth minus the one
        // the first took: 2 in all (see source_budget_take).
        assert_eq!(evs.len(), 2, "{fam:?}: {evs:?}");
        let r = h.reasons();
        assert_eq!(r[reason::UNSEEN_ACCEPTED as usize], u64::from(n));
        assert_eq!(
            r[reason::UNSEEN_ACCEPTED as usize],
            evs.len() as u64
                + r[reason::UNSEEN_RATE_LIMITED as usize]
                + r[reason::UNSEEN_RINGBUF_FULL as usize],
            "{fam:?}: accounting identity"
        );
        h.assert_reasons(
            "budget",
            &[
                (reason::UNSEEN_ACCEPTED, u64::from(n)),
                (reason::UNSEEN_RATE_LIMITED, u64::from(n) - 2),
            ],
        );
        // Only the reported ones are recorded, so that a spoofed flood to an open port cannot
        // fill the flow table from egress: a reported acceptance's retransmit raises nothing,
        // a withheld one's is counted (and withheld) again.
        let first = tcp(fam.node(), fam.denied(), KUBELET, 41000, SYN | ACK);
        run_expect(
            &h,
            Prog::TcEgress,
            &first,
            TC_ACT_OK,
            "reported, retransmitted",
        );
        assert_eq!(h.reasons()[reason::UNSEEN_ACCEPTED as usize], u64::from(n));
        let last = tcp(fam.node(), fam.denied(), KUBELET, 41000 + n - 1, SYN | ACK);
        let key = flow_key(
            fam.denied(),
            fam.node(),
            41000 + n - 1,
            KUBELET,
            IPPROTO_TCP,
        );
        assert!(
            h.flow(&key).is_none(),
            "{fam:?}: a withheld acceptance inserts nothing"
        );
        run_expect(
            &h,
            Prog::TcEgress,
            &last,
            TC_ACT_OK,
            "withheld, retransmitted",
        );
        h.assert_reasons(
            "withheld retransmit",
            &[
                (reason::UNSEEN_ACCEPTED, u64::from(n) + 1),
                (reason::UNSEEN_RATE_LIMITED, u64::from(n) - 1),
            ],
        );
        assert!(h.events().is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// Fragments (IPv4 only: the kernel drops IPv6 first fragments that cut the upper-layer
// header, RFC 7112).
// ---------------------------------------------------------------------------------------

progs!(
    first_fragments_of_every_tcp_header_length,
    first_fragments_in_a_drop_group,
    fragmented_udp_and_allowed_sources,
    overlapping_fragments_are_counted,
    fragmented_attempt_then_answer,
    padding_cannot_pose_as_a_transport_header,
);

/// The first fragment (offset 0, MF) of `f` holding only `n` bytes of its transport header:
/// Total Length and header checksum fixed to match.
pub(crate) fn first_fragment(f: &Frame, n: usize) -> Vec<u8> {
    let (mut bytes, b) = f.clone().ipv4_fragment(0, true).build_with_boundaries();
    bytes.truncate(b.l4_start + n);
    let l3 = b.l3_start;
    let total = (b.l4_start - l3 + n) as u16;
    bytes[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
    bytes[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
    let csum = checksum::internet_checksum(&bytes[l3..b.l4_start]);
    bytes[l3 + 10..l3 + 12].copy_from_slice(&csum.to_be_bytes());
    bytes
}

/// The flagged event for a first fragment of `n` TCP/UDP bytes of `f`.
pub(crate) fn fragment_event(
    h: &Harness,
    prog: Prog,
    f: &Frame,
    n: usize,
    group: &str,
    action: u8,
) -> Event {
    let tcp = matches!(f.l4, L4::Tcp { .. });
    let flags_known = tcp && n >= 14;
    Event {
        pkt_len: first_fragment(f, n).len() as u32,
        tcp_flags: if flags_known {
            flagged(h, prog, f, group, action).tcp_flags
        } else {
            0
        },
        fragment: if flags_known {
            FRAGMENT_FIRST
        } else {
            FRAGMENT_FIRST_NO_FLAGS
        },
        ..flagged(h, prog, f, group, action)
    }
}

/// The sequence number as the flow table keeps it (bytes as in the packet).
fn isn_of(seq: u32) -> u32 {
    u32::from_ne_bytes(seq.to_be_bytes())
}

fn first_fragments_of_every_tcp_header_length(prog: Prog) {
    let mut h = harness();
    let mut kubelet = h.stat("kubelet", TCP, D);
    let mut reasons = h.reasons();
    for n in 1..=20usize {
        let sport = 42000 + n as u16;
        let syn = tcp(DENIED_V4, NODE_V4, sport, KUBELET, SYN);
        let frame = first_fragment(&syn, n);
        let ctx = format!("first fragment with {n} TCP bytes");
        assert_eq!(
            h.run(prog, &frame),
            prog.pass(),
            "{ctx}: monitor group passes"
        );
        let evs = h.events();
        if n == 20 {
            // The whole header: the ordinary path classifies it, flags and all.
            let ev = flagged(
                &h,
                prog,
                &syn.clone().ipv4_fragment(0, true),
                "kubelet",
                ACTION_WOULD_DROP,
            );
            assert_events(&ctx, &evs, &[ev]);
        } else if n >= 4 {
            let ev = fragment_event(&h, prog, &syn, n, "kubelet", ACTION_WOULD_DROP);
            assert_events(&ctx, &evs, &[ev]);
            reasons[reason::FRAG_WATCHED as usize] += 1;
        } else {
            assert_events(&ctx, &evs, &[]);
        }
        if n < 20 {
            reasons[reason::FRAG_TINY as usize] += 1;
        }
        // A flagged first fragment is counted in its group instead of under its parse reason.
        if n < 4 {
            reasons[reason::TRUNC_L4 as usize] += 1;
        }
        assert_reasons_eq(&ctx, &h.reasons(), &reasons);
        if n >= 4 {
            kubelet.packets += 1;
            kubelet.bytes += frame.len() as u64;
            kubelet.would_drop += 1;
            kubelet.new_conns += 1;
            kubelet.events += 1;
        }
        assert_eq!(
            h.stat("kubelet", TCP, D),
            kubelet,
            "{ctx}: kubelet/tcp/denied"
        );
        let key = flow_key(
            DENIED_V4.into(),
            NODE_V4.into(),
            sport,
            KUBELET,
            IPPROTO_TCP,
        );
        match h.flow(&key) {
            Some(f) if n >= 4 => {
                let (opener, isn) = if n == 20 {
                    (OPENER_SYN, isn_of(DEFAULT_TCP_SEQ))
                } else if n >= 8 {
                    (OPENER_FRAGMENT, isn_of(DEFAULT_TCP_SEQ))
                } else {
                    (OPENER_FRAGMENT, 0)
                };
                assert_eq!(
                    (f.group, f.verdict, f.flagged, f.answer, f.opener, f.isn),
                    (h.gid("kubelet"), D, 1, ANSWER_NONE, opener, isn),
                    "{ctx}: FLOWS entry"
                );
            }
            None if n < 4 => {}
            other => panic!("{ctx}: FLOWS entry {other:?}"),
        }
        // The fragments of a retransmitted SYN (same sequence number): no new attempt.
        if (8..20).contains(&n) {
            assert_eq!(h.run(prog, &frame), prog.pass());
            assert_events(&format!("{ctx}, again"), &h.events(), &[]);
            reasons[reason::FRAG_TINY as usize] += 1;
            reasons[reason::FRAG_WATCHED as usize] += 1;
            assert_reasons_eq(&ctx, &h.reasons(), &reasons);
            kubelet.packets += 1;
            kubelet.bytes += frame.len() as u64;
            kubelet.would_drop += 1;
            assert_eq!(h.stat("kubelet", TCP, D), kubelet, "{ctx}, again");
        }
    }
    // A first fragment of an unwatched port is only tiny.
    let other = first_fragment(&tcp(DENIED_V4, NODE_V4, 42100, UNWATCHED, SYN), 8);
    assert_eq!(h.run(prog, &other), prog.pass());
    reasons[reason::TRUNC_L4 as usize] += 1;
    reasons[reason::FRAG_TINY as usize] += 1;
    assert_reasons_eq("unwatched port", &h.reasons(), &reasons);
    assert_events("unwatched port", &h.events(), &[]);
    // A fragmented segment that says ACK opens nothing (counted as a denied packet).
    let ack = first_fragment(&tcp(DENIED_V4, NODE_V4, 42101, KUBELET, ACK), 16);
    assert_eq!(h.run(prog, &ack), prog.pass());
    assert_events("fragmented ACK", &h.events(), &[]);
}

fn first_fragments_in_a_drop_group(prog: Prog) {
    let mut h = harness();
    for n in 1..20usize {
        let sport = 43000 + n as u16;
        let syn = tcp(DENIED_V4, NODE_V4, sport, ENFORCED, SYN);
        let frame = first_fragment(&syn, n);
        let ctx = format!("drop group, first fragment with {n} TCP bytes");
        let before = h.stat("enforced", TCP, D);
        if n >= 4 {
            // Dropped: the datagram never reassembles.
            assert_eq!(h.run(prog, &frame), prog.drop(), "{ctx}");
            let ev = fragment_event(&h, prog, &syn, n, "enforced", ACTION_DROPPED);
            assert_events(&ctx, &h.events(), &[ev]);
            let mut want = before;
            want.packets += 1;
            want.bytes += frame.len() as u64;
            want.dropped += 1;
            want.new_conns += 1;
            want.events += 1;
            assert_eq!(h.stat("enforced", TCP, D), want, "{ctx}");
        } else {
            // No destination port to read: fails open, counted.
            assert_eq!(h.run(prog, &frame), prog.pass(), "{ctx}");
            assert_events(&ctx, &h.events(), &[]);
            assert_eq!(h.stat("enforced", TCP, D), before, "{ctx}");
        }
    }
    h.assert_reasons(
        "drop group",
        &[
            // Only those without a port to read: the flagged ones count in the group.
            (reason::TRUNC_L4, 3),
            (reason::FRAG_TINY, 19),
            (reason::FRAG_WATCHED, 16),
        ],
    );
}

fn fragmented_udp_and_allowed_sources(prog: Prog) {
    let mut h = harness();
    // UDP: a first fragment of 4 to 7 bytes cuts the UDP header; the ports are there.
    for n in 4..8usize {
        let dg = udp(DENIED_V4, NODE_V4, 44000 + n as u16, UDP_SVC).payload(b"0123456789abcdef");
        let frame = first_fragment(&dg, n);
        assert_eq!(h.run(prog, &frame), prog.pass());
        let ev = fragment_event(&h, prog, &dg, n, "udp-svc", ACTION_WOULD_DROP);
        assert_events(&format!("UDP first fragment of {n}"), &h.events(), &[ev]);
    }
    assert_eq!(h.stat("udp-svc", UDP, D).events, 4);
    // An allowed source's fragmented SYN: counted, never flagged; a drop group fails closed
    // on it, as on any cut header it watches.
    let ok = first_fragment(&tcp(ALLOWED_V4, NODE_V4, 44100, KUBELET, SYN), 8);
    assert_eq!(h.run(prog, &ok), prog.pass(), "allowed, monitor group");
    let ok_drop = first_fragment(&tcp(ALLOWED_V4, NODE_V4, 44101, ENFORCED, SYN), 8);
    assert_eq!(h.run(prog, &ok_drop), prog.drop(), "allowed, drop group");
    assert_events("allowed sources", &h.events(), &[]);
    assert_eq!(h.stat("kubelet", TCP, A), S::default());
    h.assert_reasons(
        "UDP and allowed",
        &[
            // The allowed sources' fragments; the flagged UDP ones count in the group.
            (reason::TRUNC_L4, 2),
            (reason::FRAG_TINY, 6),
            (reason::FRAG_WATCHED, 6),
            // The allowed source's fragment in the drop group, failing closed.
            (reason::DROPPED_UNPARSED, 1),
        ],
    );
}

fn overlapping_fragments_are_counted(prog: Prog) {
    let mut h = harness();
    let syn = || tcp(DENIED_V4, NODE_V4, 45000, ENFORCED, SYN);
    // Offset 1 (8 bytes) would overwrite the first fragment's TCP flags (byte 13); from
    // offset 2 (16 bytes) on a fragment starts past them (RFC 1858).
    let (mut fragments, mut overlaps) = (0u64, 0u64);
    for (off, overlap) in [(1u16, true), (2, false), (3, false), (185, false)] {
        for mf in [true, false] {
            let f = syn().ipv4_fragment(off, mf).build();
            assert_eq!(
                h.run(prog, &f),
                prog.pass(),
                "offset {off}: never parsed, passes, even in a drop group"
            );
            fragments += 1;
            overlaps += u64::from(overlap);
            h.assert_reasons(
                &format!("offset {off}"),
                &[
                    (reason::IPV4_FRAGMENT, fragments),
                    (reason::FRAG_OVERLAP, overlaps),
                ],
            );
        }
    }
    // UDP fragments never overlap a header of 8 bytes.
    let u = udp(DENIED_V4, NODE_V4, 45001, UDP_SVC)
        .ipv4_fragment(1, true)
        .build();
    assert_eq!(h.run(prog, &u), prog.pass());
    h.assert_reasons(
        "UDP offset 1",
        &[
            (reason::IPV4_FRAGMENT, fragments + 1),
            (reason::FRAG_OVERLAP, overlaps),
        ],
    );
    assert_events("overlaps", &h.events(), &[]);
    h.assert_stats_zero("non-first fragments are never classified");
}

/// `hping3 -f` in miniature: the SYN in 16-byte fragments, flagged at its first fragment,
/// then the node's SYN-ACK is that attempt's answer (accepted), not an unseen acceptance.
fn fragmented_attempt_then_answer(prog: Prog) {
    let mut h = harness();
    let syn = tcp(DENIED_V4, NODE_V4, 46000, KUBELET, SYN);
    let pieces = syn.fragments(2);
    assert_eq!(pieces.len(), 2, "16 + 4 bytes");
    for p in &pieces {
        assert_eq!(h.run(prog, p), prog.pass());
    }
    let ev = fragment_event(&h, prog, &syn, 16, "kubelet", ACTION_WOULD_DROP);
    assert_events("fragmented SYN", &h.events(), &[ev]);
    let synack = tcp(NODE_V4, DENIED_V4, KUBELET, 46000, SYN | ACK);
    run_expect(&h, Prog::TcEgress, &synack, TC_ACT_OK, "SYN-ACK");
    let evs = h.events();
    assert_eq!(evs.len(), 1);
    assert_eq!(
        (evs[0].kind, evs[0].answer),
        (EVENT_ANSWER, ANSWER_ACCEPTED)
    );
    h.assert_reasons(
        "hping3 -f",
        &[
            (reason::FRAG_TINY, 1),
            (reason::FRAG_WATCHED, 1),
            (reason::IPV4_FRAGMENT, 1),
        ],
    );
    // `--mtu 8`: 8 + 8 + 4 bytes, flags never seen.
    let syn = tcp(DENIED_V4, NODE_V4, 46001, KUBELET, SYN);
    let pieces = syn.fragments(1);
    assert_eq!(pieces.len(), 3);
    for p in &pieces {
        assert_eq!(h.run(prog, p), prog.pass());
    }
    let ev = fragment_event(&h, prog, &syn, 8, "kubelet", ACTION_WOULD_DROP);
    assert_eq!(ev.kind, EVENT_FLAGGED);
    assert_events("--mtu 8", &h.events(), &[ev]);
    h.assert_reasons(
        "hping3 -f, then --mtu 8",
        &[
            (reason::FRAG_TINY, 2),
            (reason::FRAG_WATCHED, 2),
            (reason::IPV4_FRAGMENT, 3),
            (reason::FRAG_OVERLAP, 1),
        ],
    );
}

/// `f` with its IP header's length field (IPv4 Total Length, its checksum fixed; IPv6 Payload
/// Length) set to `field`. The frame keeps every byte: those past the length lie outside the
/// packet, as Ethernet padding does.
fn with_length_field(f: &Frame, field: u16) -> Vec<u8> {
    let (mut bytes, b) = f.build_with_boundaries();
    let l3 = b.l3_start;
    if f.l3.is_v4() {
        bytes[l3 + 2..l3 + 4].copy_from_slice(&field.to_be_bytes());
        bytes[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
        let csum = checksum::internet_checksum(&bytes[l3..b.l4_start]);
        bytes[l3 + 10..l3 + 12].copy_from_slice(&csum.to_be_bytes());
    } else {
        bytes[l3 + 4..l3 + 6].copy_from_slice(&field.to_be_bytes());
    }
    bytes
}

/// The length field that says `l4` bytes of transport header (no options, no extension
/// headers).
fn length_for(fam: Fam, l4: usize) -> u16 {
    (if fam == Fam::V4 { 20 + l4 } else { l4 }) as u16
}

/// The bytes past a packet's own length are not part of it (the kernel trims them): a tiny
/// first fragment of a SYN whose frame is padded with bytes that read as the rest of an ACK's
/// header is still a tiny first fragment (flagged, and dropped in a drop group), and a whole
/// packet whose length field ends inside its TCP/UDP header is `truncated_l4` (the kernel drops
/// it), never classified on the bytes behind. A length field of 0 (GRO's BIG TCP) stands for
/// the frame's length.
fn padding_cannot_pose_as_a_transport_header(prog: Prog) {
    let mut h = harness();
    // 8 bytes of a SYN, then what would be the rest of an ACK's header: acknowledgment number,
    // data offset 5, flags ACK, window.
    let pose = [0, 0, 0, 1, 0x50, ACK, 0xff, 0xff];
    let padded = |syn: &Frame| {
        let mut frame = first_fragment(syn, 8);
        frame.extend_from_slice(&pose);
        frame.resize(60, 0);
        frame
    };
    let mut reasons = h.reasons();
    for (port, group, action) in [
        (KUBELET, "kubelet", ACTION_WOULD_DROP),
        (ENFORCED, "enforced", ACTION_DROPPED),
    ] {
        let ctx = format!("padded tiny fragment to {group}");
        let syn = tcp(DENIED_V4, NODE_V4, 47000, port, SYN);
        let want_ret = if action == ACTION_DROPPED {
            prog.drop()
        } else {
            prog.pass()
        };
        assert_eq!(h.run(prog, &padded(&syn)), want_ret, "{ctx}");
        let ev = Event {
            pkt_len: 60,
            ..fragment_event(&h, prog, &syn, 8, group, action)
        };
        assert_events(&ctx, &h.events(), &[ev]);
        reasons[reason::FRAG_TINY as usize] += 1;
        reasons[reason::FRAG_WATCHED as usize] += 1;
        assert_reasons_eq(&ctx, &h.reasons(), &reasons);
    }
    let attempt = |action: u8| S {
        packets: 1,
        bytes: 60,
        would_drop: u64::from(action == ACTION_WOULD_DROP),
        dropped: u64::from(action == ACTION_DROPPED),
        new_conns: 1,
        events: 1,
        ..S::default()
    };
    h.assert_stats(
        "padded tiny fragments",
        &[
            ("kubelet", TCP, D, attempt(ACTION_WOULD_DROP)),
            ("enforced", TCP, D, attempt(ACTION_DROPPED)),
        ],
    );

    // Whole packets whose length field cuts the transport header: counted, never classified.
    for fam in [Fam::V4, Fam::V6] {
        let cut = [
            (tcp(fam.allowed(), fam.node(), 47001, KUBELET, ACK), 8),
            (tcp(fam.denied(), fam.node(), 47002, KUBELET, SYN), 19),
            (tcp(fam.denied(), fam.node(), 47003, UNWATCHED, ACK), 12),
            (udp(fam.denied(), fam.node(), 47004, UDP_SVC), 4),
        ];
        for (i, (f, l4)) in cut.into_iter().enumerate() {
            let ctx = format!("{fam:?}: cut packet {i}, length field with {l4} transport bytes");
            let frame = with_length_field(&f, length_for(fam, l4));
            assert_eq!(h.run(prog, &frame), prog.pass(), "{ctx}");
            assert_events(&ctx, &h.events(), &[]);
            reasons[reason::TRUNC_L4 as usize] += 1;
            assert_reasons_eq(&ctx, &h.reasons(), &reasons);
        }
        // In a drop group the port can still be read: it fails closed, as on any cut header.
        let f = tcp(fam.denied(), fam.node(), 47005, ENFORCED, SYN);
        let frame = with_length_field(&f, length_for(fam, 12));
        assert_eq!(h.run(prog, &frame), prog.drop(), "{fam:?}: cut, drop group");
        assert_events("cut, drop group", &h.events(), &[]);
        reasons[reason::TRUNC_L4 as usize] += 1;
        reasons[reason::DROPPED_UNPARSED as usize] += 1;
        assert_reasons_eq("cut, drop group", &h.reasons(), &reasons);
    }
    h.assert_stats(
        "cut packets are not classified",
        &[
            ("kubelet", TCP, D, attempt(ACTION_WOULD_DROP)),
            ("enforced", TCP, D, attempt(ACTION_DROPPED)),
        ],
    );

    // A whole header exactly at the length, and a length field of 0: classified as usual.
    let mut allowed = S::default();
    for fam in [Fam::V4, Fam::V6] {
        let ack = tcp(fam.allowed(), fam.node(), 47006, KUBELET, ACK);
        for field in [length_for(fam, 20), 0] {
            let frame = with_length_field(&ack, field);
            assert_eq!(h.run(prog, &frame), prog.pass());
            allowed.packets += 1;
            allowed.bytes += frame.len() as u64;
        }
    }
    assert_eq!(h.stat("kubelet", TCP, A), allowed, "whole headers");
    assert_reasons_eq("whole headers", &h.reasons(), &reasons);
}

/// Verifier cost of every program, printed for the record (the programs load, so each is
/// under the kernel's 1M-instruction limit); tc egress keeps a wide margin.
#[test]
fn verifier_instruction_counts() {
    let h = harness();
    let count = |name: &str, info: aya::programs::ProgramInfo| {
        let n = info
            .verified_instruction_count()
            .unwrap_or_else(|| panic!("{name}: no verified_insns on this kernel"));
        eprintln!("verified instructions: {name} {n}");
        n
    };
    let xdp = count(
        "nm_xdp_ingress",
        h.dp.xdp_program().unwrap().info().unwrap(),
    );
    let tci = count(
        "nm_tc_ingress",
        h.dp.tc_ingress_program().unwrap().info().unwrap(),
    );
    let tce = count(
        "nm_tc_egress",
        h.dp.tc_egress_program().unwrap().info().unwrap(),
    );
    for (name, n) in [("xdp", xdp), ("tc ingress", tci), ("tc egress", tce)] {
        assert!(
            n < 900_000,
            "{name}: {n} verified instructions, too close to 1M"
        );
    }
}
