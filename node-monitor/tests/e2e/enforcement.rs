//! Enforcement end to end: `action: drop` drops the denied sources only.

use std::time::{Duration, Instant};

use node_monitor_lab::BpfPinDir;

use crate::{
    common::{
        daemon::{Daemon, context},
        peers::{TcpOutcome, tcp_connect, tcp_server},
        temp::TempFile,
    },
    expect::{Rec, assert_same_records},
    setup::{
        CONNECT_TIMEOUT, KUBELET_DROP, KUBELET_MONITOR, cp, node, outside, setup, test_config,
    },
};

/// Test 3: Enforcement: `action: drop` on kubelet drops outside, lets cp through.
#[test]
fn enforcement_drops_denied_sources_only() {
    let lab = setup();
    let pin = context(BpfPinDir::new("drop"));
    let cfg = TempFile::new(
        "drop.yaml",
        &test_config(&[(KUBELET_MONITOR, KUBELET_DROP)]),
    );
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));
    let server = tcp_server(&lab.node, &[node(10250, false), node(10250, true)], 4);
    let mut want = Vec::new();
    for v6 in [false, true] {
        let o = outside(if v6 { 43101 } else { 42101 }, v6);
        let t = Instant::now();
        let got = tcp_connect(&lab.outside, o, node(10250, v6), CONNECT_TIMEOUT);
        assert_eq!(
            got,
            TcpOutcome::TimedOut,
            "outside -> kubelet must be dropped"
        );
        assert!(t.elapsed() <= Duration::from_secs(3), "{:?}", t.elapsed());
        want.push(Rec::flagged(
            "kubelet",
            o,
            node(10250, v6),
            "tcp",
            "no_answer",
            "dropped",
            "xdp",
        ));
        let c = cp(44101 + u16::from(v6), v6);
        assert_eq!(
            tcp_connect(&lab.cp, c, node(10250, v6), CONNECT_TIMEOUT),
            TcpOutcome::Connected,
            "cp -> kubelet must still connect"
        );
        want.push(Rec::flow("kubelet", c, node(10250, v6), "tcp", "xdp"));
    }
    assert_eq!(
        server.finish(),
        2,
        "only cp's connections reach the listener"
    );
    let all_in = d.wait_records(Duration::from_secs(5), |r| r.len() >= want.len());
    let fin = context(d.stop());
    assert!(all_in, "records before SIGTERM missing: {:#?}", fin.records);
    assert_same_records(&fin.records, want);
    let c = &fin.counters;
    c.check_invariants();
    let k = c.get("kubelet", "tcp", "denied");
    assert!(k.dropped > 0 && k.dropped == k.packets, "{k:?}");
    assert_eq!(k.would_drop, 0, "{k:?}");
    // A retransmitted SYN of the same 5-tuple is not a new connection.
    assert_eq!((k.new_conns, k.events), (2, 2), "{k:?}");
    let a = c.get("kubelet", "tcp", "allowed");
    assert_eq!((a.new_conns, a.events, a.dropped), (2, 2, 0), "{a:?}");
}
