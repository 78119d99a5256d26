//! Classification, verdicts and actions: which group a packet falls in, whether its
//! source is allowed for that group, and what monitor and drop groups do with it.

use node_monitor_common::{ACTION_DROPPED, ACTION_WOULD_DROP, ANSWER_NONE, reason};

use crate::{
    common::{packets::*, progrun::*},
    config::*,
    expect::*,
};

matrix!(
    unwatched_port_passes_counted_only_as_unwatched,
    denied_syn_in_monitor_group_is_flagged,
    denied_in_drop_group_is_dropped,
    allowed_is_never_dropped_and_sampled,
    allowlists_are_per_group,
    allowed_not_sampled_counts_sampled_out,
);

/// Counted once, as `unwatched_port`, and nothing more.
fn unwatched_port_passes_counted_only_as_unwatched(fam: Fam, prog: Prog) {
    let mut h = harness();
    let frames = [
        tcp(fam.denied(), fam.node(), 40000, UNWATCHED, SYN),
        tcp(fam.allowed(), fam.node(), 40000, UNWATCHED, SYN),
        udp(fam.denied(), fam.node(), 40000, UNWATCHED),
        // The watched UDP port, but over TCP (and the other way round): not watched.
        tcp(fam.denied(), fam.node(), 40000, UDP_SVC, SYN),
        udp(fam.denied(), fam.node(), 40000, KUBELET),
    ];
    for f in &frames {
        run_expect(&h, prog, f, prog.pass(), "unwatched");
    }
    h.assert_stats_zero("unwatched");
    h.assert_reasons("unwatched", &[(reason::UNWATCHED, frames.len() as u64)]);
    assert_events("unwatched", &h.events(), &[]);
    let key = flow_key(fam.denied(), fam.node(), 40000, UNWATCHED, IPPROTO_TCP);
    assert_eq!(h.flow(&key), None, "unwatched: no flow entry");
}

fn denied_syn_in_monitor_group_is_flagged(fam: Fam, prog: Prog) {
    let mut h = harness();
    let f = tcp(fam.denied(), fam.node(), 40000, KUBELET, SYN);
    run_expect(&h, prog, &f, prog.pass(), "denied SYN, monitor");
    let s = S {
        packets: 1,
        bytes: len(&f),
        new_conns: 1,
        would_drop: 1,
        events: 1,
        ..S::default()
    };
    h.assert_stats("denied SYN, monitor", &[("kubelet", TCP, D, s)]);
    h.assert_reasons("denied SYN, monitor", &[]);
    let want = flagged(&h, prog, &f, "kubelet", ACTION_WOULD_DROP);
    assert_events("denied SYN, monitor", &h.events(), &[want]);
    let key = flow_key(fam.denied(), fam.node(), 40000, KUBELET, IPPROTO_TCP);
    let st = h.flow(&key).expect("flow entry for the flagged SYN");
    assert_eq!(
        (st.group, st.verdict, st.flagged, st.answer),
        (h.gid("kubelet"), D, 1, ANSWER_NONE),
        "flow state"
    );
    assert!(
        st.first_ns != 0 && st.last_ns == st.first_ns,
        "flow times: {st:?}"
    );
}

fn denied_in_drop_group_is_dropped(fam: Fam, prog: Prog) {
    let mut h = harness();
    let t = tcp(fam.denied(), fam.node(), 40000, ENFORCED, SYN);
    let u = udp(fam.denied(), fam.node(), 40001, ENFORCED);
    // A non-new packet of a denied source is dropped too.
    let a = tcp(fam.denied(), fam.node(), 40002, ENFORCED, ACK);
    run_expect(&h, prog, &t, prog.drop(), "denied SYN, drop group");
    run_expect(&h, prog, &u, prog.drop(), "denied UDP, drop group");
    run_expect(&h, prog, &a, prog.drop(), "denied ACK, drop group");
    let st = S {
        packets: 2,
        bytes: len(&t) + len(&a),
        new_conns: 1,
        dropped: 2,
        events: 1,
        ..S::default()
    };
    let su = S {
        packets: 1,
        bytes: len(&u),
        new_conns: 1,
        dropped: 1,
        events: 1,
        ..S::default()
    };
    h.assert_stats(
        "drop group",
        &[("enforced", TCP, D, st), ("enforced", UDP, D, su)],
    );
    h.assert_reasons("drop group", &[]);
    let want = [
        flagged(&h, prog, &t, "enforced", ACTION_DROPPED),
        flagged(&h, prog, &u, "enforced", ACTION_DROPPED),
    ];
    assert_events("drop group", &h.events(), &want);
}

fn allowed_is_never_dropped_and_sampled(fam: Fam, prog: Prog) {
    let mut h = harness();
    let t = tcp(fam.allowed(), fam.node(), 40000, ENFORCED, SYN);
    let u = udp(fam.allowed2(), fam.node(), 40001, ENFORCED);
    let k = tcp(fam.allowed(), fam.node(), 40002, KUBELET, SYN);
    for f in [&t, &u, &k] {
        run_expect(&h, prog, f, prog.pass(), "allowed");
    }
    let one = |f: &Frame| S {
        packets: 1,
        bytes: len(f),
        new_conns: 1,
        events: 1,
        ..S::default()
    };
    h.assert_stats(
        "allowed",
        &[
            ("enforced", TCP, A, one(&t)),
            ("enforced", UDP, A, one(&u)),
            ("kubelet", TCP, A, one(&k)),
        ],
    );
    h.assert_reasons("allowed", &[]);
    let want = [
        sampled(&h, prog, &t, "enforced"),
        sampled(&h, prog, &u, "enforced"),
        sampled(&h, prog, &k, "kubelet"),
    ];
    assert_events("allowed", &h.events(), &want);
    assert_all_invariants("allowed", &h);
}

fn allowlists_are_per_group(fam: Fam, prog: Prog) {
    let mut h = harness();
    // ALLOWED_* is on kubelet's list, not on strict's; DENIED_* the other way round.
    let f1 = tcp(fam.allowed(), fam.node(), 40000, STRICT, SYN);
    let f2 = tcp(fam.denied(), fam.node(), 40001, STRICT, SYN);
    let f3 = tcp(fam.allowed(), fam.node(), 40002, KUBELET, SYN);
    let f4 = tcp(fam.denied(), fam.node(), 40003, KUBELET, SYN);
    for f in [&f1, &f2, &f3, &f4] {
        run_expect(&h, prog, f, prog.pass(), "per-group lists");
    }
    let allowed = |f: &Frame| S {
        packets: 1,
        bytes: len(f),
        new_conns: 1,
        events: 1,
        ..S::default()
    };
    let denied = |f: &Frame| S {
        packets: 1,
        bytes: len(f),
        new_conns: 1,
        would_drop: 1,
        events: 1,
        ..S::default()
    };
    h.assert_stats(
        "per-group lists",
        &[
            ("strict", TCP, D, denied(&f1)),
            ("strict", TCP, A, allowed(&f2)),
            ("kubelet", TCP, A, allowed(&f3)),
            ("kubelet", TCP, D, denied(&f4)),
        ],
    );
    let want = [
        flagged(&h, prog, &f1, "strict", ACTION_WOULD_DROP),
        sampled(&h, prog, &f2, "strict"),
        sampled(&h, prog, &f3, "kubelet"),
        flagged(&h, prog, &f4, "kubelet", ACTION_WOULD_DROP),
    ];
    assert_events("per-group lists", &h.events(), &want);
}

fn allowed_not_sampled_counts_sampled_out(fam: Fam, prog: Prog) {
    let mut h = harness_with(Knobs {
        sample_one_in: 0,
        ..Knobs::default()
    });
    let t = tcp(fam.allowed(), fam.node(), 40000, KUBELET, SYN);
    let u = udp(fam.allowed(), fam.node(), 40000, UDP_SVC);
    run_expect(&h, prog, &t, prog.pass(), "sampling off");
    run_expect(&h, prog, &u, prog.pass(), "sampling off");
    let one = |f: &Frame| S {
        packets: 1,
        bytes: len(f),
        new_conns: 1,
        sampled_out: 1,
        ..S::default()
    };
    h.assert_stats(
        "sampling off",
        &[("kubelet", TCP, A, one(&t)), ("udp-svc", UDP, A, one(&u))],
    );
    assert_events("sampling off", &h.events(), &[]);
    assert_all_invariants("sampling off", &h);
}
