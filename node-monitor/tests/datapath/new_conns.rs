//! New-connection detection: which TCP and UDP packets open a connection (and so an
//! event), which never do, the idle timeout that makes a 5-tuple new again, and the SYN that
//! starts a new attempt on a 5-tuple (after a probe, after an answer, after the answer
//! timeout).

use std::time::Duration;

use node_monitor_common::{
    ACTION_WOULD_DROP, ANSWER_ACCEPTED, ANSWER_NONE, ANSWER_REFUSED, Event, OPENER_PROBE,
    OPENER_SYN,
};

use crate::{
    common::{packets::*, progrun::*},
    config::*,
    expect::*,
};

matrix!(
    ack_synack_rst_are_never_new,
    stealth_probes_are_new,
    syn_retransmit_is_not_new,
    idle_timeout_makes_a_tuple_new_again,
    udp_first_packet_is_new,
    probes_never_hold_back_a_syn,
    syn_after_an_answer_is_a_new_attempt,
    syn_with_another_isn_is_a_new_attempt,
    late_retransmit_is_not_new,
);

fn ack_synack_rst_are_never_new(fam: Fam, prog: Prog) {
    let mut h = harness();
    let flags = [
        ACK,
        SYN | ACK,
        RST,
        RST | ACK,
        PSH | ACK,
        FIN | ACK,
        SYN | RST,
        URG | ACK,
    ];
    let mut bytes = 0;
    let mut abytes = 0;
    for (i, fl) in flags.iter().enumerate() {
        let f = tcp(fam.denied(), fam.node(), 41000 + i as u16, KUBELET, *fl);
        run_expect(
            &h,
            prog,
            &f,
            prog.pass(),
            &format!("denied flags {fl:#04x}"),
        );
        bytes += len(&f);
        let f = tcp(fam.allowed(), fam.node(), 41000 + i as u16, KUBELET, *fl);
        run_expect(
            &h,
            prog,
            &f,
            prog.pass(),
            &format!("allowed flags {fl:#04x}"),
        );
        abytes += len(&f);
    }
    let n = flags.len() as u64;
    h.assert_stats(
        "non-new segments",
        &[
            (
                "kubelet",
                TCP,
                D,
                S {
                    packets: n,
                    bytes,
                    would_drop: n,
                    ..S::default()
                },
            ),
            (
                "kubelet",
                TCP,
                A,
                S {
                    packets: n,
                    bytes: abytes,
                    ..S::default()
                },
            ),
        ],
    );
    assert_events("non-new segments", &h.events(), &[]);
}

fn stealth_probes_are_new(fam: Fam, prog: Prog) {
    let mut h = harness();
    // SYN, NULL, FIN, Xmas (FIN|PSH|URG), SYN|FIN: no ACK, no RST.
    let flags = [SYN, 0, FIN, FIN | PSH | URG, SYN | FIN];
    let frames: Vec<Frame> = flags
        .iter()
        .enumerate()
        .map(|(i, fl)| tcp(fam.denied(), fam.node(), 42000 + i as u16, KUBELET, *fl))
        .collect();
    for f in &frames {
        run_expect(&h, prog, f, prog.pass(), "stealth probe");
    }
    let n = frames.len() as u64;
    let bytes = frames.iter().map(len).sum();
    let s = S {
        packets: n,
        bytes,
        new_conns: n,
        would_drop: n,
        events: n,
        ..S::default()
    };
    h.assert_stats("stealth probes", &[("kubelet", TCP, D, s)]);
    let want: Vec<Event> = frames
        .iter()
        .map(|f| flagged(&h, prog, f, "kubelet", ACTION_WOULD_DROP))
        .collect();
    assert_events("stealth probes", &h.events(), &want);
}

fn syn_retransmit_is_not_new(fam: Fam, prog: Prog) {
    let mut h = harness();
    let d = tcp(fam.denied(), fam.node(), 40000, KUBELET, SYN);
    let a = tcp(fam.allowed(), fam.node(), 40000, KUBELET, SYN);
    for _ in 0..3 {
        run_expect(&h, prog, &d, prog.pass(), "denied SYN retransmit");
        run_expect(&h, prog, &a, prog.pass(), "allowed SYN retransmit");
    }
    h.assert_stats(
        "SYN retransmits",
        &[
            (
                "kubelet",
                TCP,
                D,
                S {
                    packets: 3,
                    bytes: 3 * len(&d),
                    new_conns: 1,
                    would_drop: 3,
                    events: 1,
                    ..S::default()
                },
            ),
            (
                "kubelet",
                TCP,
                A,
                S {
                    packets: 3,
                    bytes: 3 * len(&a),
                    new_conns: 1,
                    events: 1,
                    ..S::default()
                },
            ),
        ],
    );
    let want = [
        flagged(&h, prog, &d, "kubelet", ACTION_WOULD_DROP),
        sampled(&h, prog, &a, "kubelet"),
    ];
    assert_events("SYN retransmits", &h.events(), &want);
}

fn idle_timeout_makes_a_tuple_new_again(fam: Fam, prog: Prog) {
    let mut h = harness_with(Knobs {
        idle_ms: 1,
        ..Knobs::default()
    });
    let t = tcp(fam.denied(), fam.node(), 40000, KUBELET, SYN);
    let u = udp(fam.denied(), fam.node(), 40000, UDP_SVC);
    run_expect(&h, prog, &t, prog.pass(), "first SYN");
    run_expect(&h, prog, &u, prog.pass(), "first datagram");
    // Idle timeout is 1 ms: wait a little longer, bounded.
    std::thread::sleep(Duration::from_millis(10));
    run_expect(&h, prog, &t, prog.pass(), "SYN after idle");
    run_expect(&h, prog, &u, prog.pass(), "datagram after idle");
    let two = |f: &Frame| S {
        packets: 2,
        bytes: 2 * len(f),
        new_conns: 2,
        would_drop: 2,
        events: 2,
        ..S::default()
    };
    h.assert_stats(
        "idle timeout",
        &[("kubelet", TCP, D, two(&t)), ("udp-svc", UDP, D, two(&u))],
    );
    let et = flagged(&h, prog, &t, "kubelet", ACTION_WOULD_DROP);
    let eu = flagged(&h, prog, &u, "udp-svc", ACTION_WOULD_DROP);
    assert_events("idle timeout", &h.events(), &[et, eu, et, eu]);
}

fn udp_first_packet_is_new(fam: Fam, prog: Prog) {
    let mut h = harness();
    let first = udp(fam.denied(), fam.node(), 40000, UDP_SVC);
    let other = udp(fam.denied(), fam.node(), 40001, UDP_SVC);
    let allowed = udp(fam.allowed(), fam.node(), 40000, UDP_SVC);
    for f in [&first, &first, &other, &other, &allowed, &allowed] {
        run_expect(&h, prog, f, prog.pass(), "udp");
    }
    let bytes = 2 * len(&first) + 2 * len(&other);
    h.assert_stats(
        "udp new",
        &[
            (
                "udp-svc",
                UDP,
                D,
                S {
                    packets: 4,
                    bytes,
                    new_conns: 2,
                    would_drop: 4,
                    events: 2,
                    ..S::default()
                },
            ),
            (
                "udp-svc",
                UDP,
                A,
                S {
                    packets: 2,
                    bytes: 2 * len(&allowed),
                    new_conns: 1,
                    events: 1,
                    ..S::default()
                },
            ),
        ],
    );
    let want = [
        flagged(&h, prog, &first, "udp-svc", ACTION_WOULD_DROP),
        flagged(&h, prog, &other, "udp-svc", ACTION_WOULD_DROP),
        sampled(&h, prog, &allowed, "udp-svc"),
    ];
    assert_events("udp new", &h.events(), &want);
}

/// The flow entry of `f` (an ingress frame): (opener, answer, flagged).
fn entry(h: &Harness, fam: Fam, sport: u16) -> Option<(u8, u8, u8)> {
    let key = flow_key(fam.denied(), fam.node(), sport, KUBELET, IPPROTO_TCP);
    h.flow(&key).map(|f| (f.opener, f.answer, f.flagged))
}

fn probes_never_hold_back_a_syn(fam: Fam, prog: Prog) {
    let mut h = harness();
    // Each probe, then a pure SYN (some with extra bits: FIN, PSH, URG, ECE, CWR) on the same
    // 5-tuple: two attempts, two events. A repeated probe is not new; nor is a probe or a
    // SYN retransmit after the SYN.
    let cases = [
        (0u8, SYN),
        (FIN, SYN),
        (PSH, SYN | FIN),
        (URG, SYN | PSH | URG),
        (FIN | PSH | URG, SYN | 0xc0),
    ];
    let mut want = Vec::new();
    let mut s = S::default();
    for (i, (probe, syn)) in cases.iter().enumerate() {
        let sport = 43000 + i as u16;
        let p = tcp(fam.denied(), fam.node(), sport, KUBELET, *probe);
        let y = tcp(fam.denied(), fam.node(), sport, KUBELET, *syn);
        for f in [&p, &p, &y, &y, &p] {
            run_expect(&h, prog, f, prog.pass(), "probe then SYN");
            s.packets += 1;
            s.bytes += len(f);
            s.would_drop += 1;
        }
        s.new_conns += 2;
        s.events += 2;
        want.push(flagged(&h, prog, &p, "kubelet", ACTION_WOULD_DROP));
        want.push(flagged(&h, prog, &y, "kubelet", ACTION_WOULD_DROP));
        assert_eq!(
            entry(&h, fam, sport),
            Some((OPENER_SYN, ANSWER_NONE, 1)),
            "the SYN took the entry over after probe {probe:#04x}"
        );
    }
    // A probe alone leaves an entry that says so.
    let p = tcp(fam.denied(), fam.node(), 43100, KUBELET, FIN);
    run_expect(&h, prog, &p, prog.pass(), "lone probe");
    s.packets += 1;
    s.bytes += len(&p);
    s.would_drop += 1;
    s.new_conns += 1;
    s.events += 1;
    want.push(flagged(&h, prog, &p, "kubelet", ACTION_WOULD_DROP));
    assert_eq!(entry(&h, fam, 43100), Some((OPENER_PROBE, ANSWER_NONE, 1)));
    h.assert_stats("probes then SYNs", &[("kubelet", TCP, D, s)]);
    assert_all_invariants("probes then SYNs", &h);
    assert_events("probes then SYNs", &h.events(), &want);
}

fn syn_after_an_answer_is_a_new_attempt(fam: Fam, prog: Prog) {
    let mut h = harness();
    let mut want = Vec::new();
    let mut s = S::default();
    for (sport, reply, answer) in [
        (44000u16, SYN | ACK, ANSWER_ACCEPTED),
        (44001, RST | ACK, ANSWER_REFUSED),
    ] {
        let y = tcp(fam.denied(), fam.node(), sport, KUBELET, SYN);
        let r = tcp(fam.node(), fam.denied(), KUBELET, sport, reply);
        run_expect(&h, prog, &y, prog.pass(), "first SYN");
        run_expect(&h, Prog::TcEgress, &r, TC_ACT_OK, "answer");
        assert_eq!(entry(&h, fam, sport), Some((OPENER_SYN, answer, 1)));
        // The answered attempt is over: the next SYN is a new attempt, unanswered again.
        run_expect(&h, prog, &y, prog.pass(), "SYN after the answer");
        assert_eq!(entry(&h, fam, sport), Some((OPENER_SYN, ANSWER_NONE, 1)));
        // Its retransmit (no answer yet) is not.
        run_expect(&h, prog, &y, prog.pass(), "retransmit of the new attempt");
        s.packets += 3;
        s.bytes += 3 * len(&y);
        s.would_drop += 3;
        s.new_conns += 2;
        s.events += 2;
        let f = flagged(&h, prog, &y, "kubelet", ACTION_WOULD_DROP);
        let mut a = f;
        a.kind = node_monitor_common::EVENT_ANSWER;
        a.hook = node_monitor_common::HOOK_TC_EGRESS;
        a.action = node_monitor_common::ACTION_PASS;
        a.answer = answer;
        a.tcp_flags = reply;
        a.pkt_len = len(&r) as u32;
        want.extend([f, a, f]);
    }
    h.assert_stats("SYN after answer", &[("kubelet", TCP, D, s)]);
    assert_all_invariants("SYN after answer", &h);
    assert_events("SYN after answer", &h.events(), &want);
}

fn syn_with_another_isn_is_a_new_attempt(fam: Fam, prog: Prog) {
    let mut h = harness();
    // Issue 15: a SYN the node never answers (here: only the data path sees it), then, on the
    // same 5-tuple, the real SYN with its own initial sequence number: a new attempt. Its
    // retransmit (same sequence number) is not, and neither is a late retransmit of the
    // first.
    let mut want = Vec::new();
    let mut s = S::default();
    let mut sa = S::default();
    for (src, verdict) in [(fam.denied(), D), (fam.allowed(), A)] {
        let forged = tcp(src, fam.node(), 49000, KUBELET, SYN).tcp_seq(1111);
        let real = tcp(src, fam.node(), 49000, KUBELET, SYN).tcp_seq(2222);
        for f in [&forged, &real, &real, &forged] {
            run_expect(&h, prog, f, prog.pass(), "forged then real SYN");
        }
        let t = if verdict == D { &mut s } else { &mut sa };
        t.packets += 4;
        t.bytes += 2 * len(&forged) + 2 * len(&real);
        t.new_conns += 3;
        t.events += 3;
        if verdict == D {
            t.would_drop += 4;
            want.extend([
                flagged(&h, prog, &forged, "kubelet", ACTION_WOULD_DROP),
                flagged(&h, prog, &real, "kubelet", ACTION_WOULD_DROP),
                flagged(&h, prog, &forged, "kubelet", ACTION_WOULD_DROP),
            ]);
        } else {
            want.extend([
                sampled(&h, prog, &forged, "kubelet"),
                sampled(&h, prog, &real, "kubelet"),
                sampled(&h, prog, &forged, "kubelet"),
            ]);
        }
    }
    h.assert_stats(
        "another ISN",
        &[("kubelet", TCP, D, s), ("kubelet", TCP, A, sa)],
    );
    assert_all_invariants("another ISN", &h);
    assert_events("another ISN", &h.events(), &want);
}

fn late_retransmit_is_not_new(fam: Fam, prog: Prog) {
    let mut h = harness();
    let y = tcp(fam.denied(), fam.node(), 46000, KUBELET, SYN).tcp_seq(777);
    run_expect(&h, prog, &y, prog.pass(), "SYN");
    // Longer than the answer timeout of a fast config, far below the idle timeout: bounded.
    std::thread::sleep(Duration::from_millis(20));
    run_expect(&h, prog, &y, prog.pass(), "late retransmit");
    h.assert_stats(
        "late retransmit",
        &[(
            "kubelet",
            TCP,
            D,
            S {
                packets: 2,
                bytes: 2 * len(&y),
                new_conns: 1,
                would_drop: 2,
                events: 1,
                ..S::default()
            },
        )],
    );
    assert_events(
        "late retransmit",
        &h.events(),
        &[flagged(&h, prog, &y, "kubelet", ACTION_WOULD_DROP)],
    );
}
