//! New-connection detection: which TCP and UDP packets open a connection (and so an
//! event), which never do, and the idle timeout that makes a 5-tuple new again.

use std::time::Duration;

use node_monitor_common::{ACTION_WOULD_DROP, Event};

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
