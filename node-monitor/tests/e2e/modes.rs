//! The core scenario end to end, in XDP and in tc mode: exact records and counters for TCP
//! and UDP attempts, allowed flows and answers, over IPv4 and IPv6.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use node_monitor_lab::{BpfPinDir, Lab, addr};

use crate::{
    common::{
        counters::Counters,
        daemon::{Daemon, context},
        peers::{
            TcpOutcome, UdpOutcome, curl, tcp_connect, tcp_server, udp_bind, udp_echo, udp_probe,
        },
        temp::TempFile,
    },
    expect::{Rec, assert_same_records, dump, ju},
    setup::{
        CONNECT_TIMEOUT, UDP_WAIT, add_outside_addrs, cp, node, outside, outside_n, setup,
        test_config,
    },
};

/// The core scenario against a running daemon; returns the records the test predicts.
/// `hook`: "xdp" or "tc". Source ports: 42xxx IPv4, 43xxx IPv6 (outside), 44xxx cp. The three
/// UDP probes (one group) come from outside's extra addresses 3, 4, 5, one each, so that each
/// is a first alert of its own with its own answer.
fn core_traffic(lab: &Lab, hook: &str) -> Vec<Rec> {
    add_outside_addrs(lab, &[3, 4, 5]);
    let _tcp = tcp_server(&lab.node, &[node(10250, false), node(10250, true)], 4);
    let _echo = udp_echo(&lab.node, &[node(9001, false), node(9001, true)], 2);
    let _silent = udp_bind(&lab.node, &[node(9002, false), node(9002, true)]);
    let mut want = Vec::new();
    for v6 in [false, true] {
        let base: u16 = if v6 { 43000 } else { 42000 };
        let o = |n: u16| outside(base + n, v6);
        // kubelet from outside, with a listener: accepted. IPv4 through curl (a real peer).
        if v6 {
            assert_eq!(
                tcp_connect(&lab.outside, o(1), node(10250, v6), CONNECT_TIMEOUT),
                TcpOutcome::Connected
            );
        } else {
            let (ok, body, err) = curl(
                &lab.outside,
                &[
                    "-sS",
                    "--max-time",
                    "3",
                    "--local-port",
                    &(base + 1).to_string(),
                    &format!("http://{}:10250/", addr::NODE_V4),
                ],
            );
            assert!(
                ok && body == "ok\n",
                "curl to kubelet failed: {err} / {body:?}"
            );
        }
        want.push(Rec::flagged(
            "kubelet",
            o(1),
            node(10250, v6),
            "tcp",
            "accepted",
            "would_drop",
            hook,
        ));
        // kubelet-readonly and etcd-client, nothing listening: refused.
        for (i, port, group) in [(2, 10255, "kubelet-readonly"), (3, 2379, "etcd-client")] {
            assert_eq!(
                tcp_connect(&lab.outside, o(i), node(port, v6), CONNECT_TIMEOUT),
                TcpOutcome::Refused,
                "{group} from outside"
            );
            want.push(Rec::flagged(
                group,
                o(i),
                node(port, v6),
                "tcp",
                "refused",
                "would_drop",
                hook,
            ));
        }
        // UDP: closed (ICMP port unreachable), echo, silent; one source address each.
        let u = |n: u8| outside_n(n, base + u16::from(n) + 1, v6);
        assert_eq!(
            udp_probe(&lab.outside, u(3), node(9000, v6), UDP_WAIT),
            UdpOutcome::Refused
        );
        want.push(Rec::flagged(
            "udp-probe",
            u(3),
            node(9000, v6),
            "udp",
            "refused",
            "would_drop",
            hook,
        ));
        assert_eq!(
            udp_probe(&lab.outside, u(4), node(9001, v6), UDP_WAIT),
            UdpOutcome::Reply(b"probe".to_vec())
        );
        want.push(Rec::flagged(
            "udp-probe",
            u(4),
            node(9001, v6),
            "udp",
            "accepted",
            "would_drop",
            hook,
        ));
        assert_eq!(
            udp_probe(
                &lab.outside,
                u(5),
                node(9002, v6),
                Duration::from_millis(200)
            ),
            UdpOutcome::Silence
        );
        want.push(Rec::flagged(
            "udp-probe",
            u(5),
            node(9002, v6),
            "udp",
            "no_answer",
            "would_drop",
            hook,
        ));
        // kubelet from cp: allowed, sampled 1-in-1 into a flow record.
        let c = cp(44000 + u16::from(v6), v6);
        assert_eq!(
            tcp_connect(&lab.cp, c, node(10250, v6), CONNECT_TIMEOUT),
            TcpOutcome::Connected
        );
        want.push(Rec::flow("kubelet", c, node(10250, v6), "tcp", hook));
    }
    want
}

/// Checks the counters of the core scenario (exact where the packet count is known).
fn check_core_counters(c: &Counters) {
    c.check_invariants();
    let touched: BTreeSet<(String, String, String)> = [
        ("kubelet", "tcp", "denied"),
        ("kubelet", "tcp", "allowed"),
        ("kubelet-readonly", "tcp", "denied"),
        ("etcd-client", "tcp", "denied"),
        ("udp-probe", "udp", "denied"),
    ]
    .iter()
    .map(|(a, b, v)| ((*a).to_owned(), (*b).to_owned(), (*v).to_owned()))
    .collect();
    let have: BTreeSet<_> = c.groups().keys().cloned().collect();
    assert_eq!(have, touched, "counters entries: {}", c.0);

    let k = c.get("kubelet", "tcp", "denied");
    assert_eq!((k.new_conns, k.events), (2, 2), "kubelet denied: {k:?}");
    assert!(k.packets >= 6, "SYN, ACK, data... twice: {k:?}");
    assert_eq!(k.would_drop, k.packets, "{k:?}");
    assert_eq!(k.dropped, 0);

    let a = c.get("kubelet", "tcp", "allowed");
    assert_eq!(
        (a.new_conns, a.events, a.sampled_out),
        (2, 2, 0),
        "kubelet allowed: {a:?}"
    );
    assert_eq!(a.would_drop, 0);
    assert!(a.packets >= 6, "{a:?}");

    for g in ["kubelet-readonly", "etcd-client"] {
        let r = c.get(g, "tcp", "denied");
        assert_eq!(
            (r.packets, r.new_conns, r.events, r.would_drop, r.dropped),
            (2, 2, 2, 2, 0),
            "{g}: one SYN per family, answered by RST at once: {r:?}"
        );
    }
    let u = c.get("udp-probe", "udp", "denied");
    assert_eq!(
        (u.packets, u.new_conns, u.events, u.would_drop, u.dropped),
        (6, 6, 6, 6, 0),
        "udp-probe: one datagram per probe: {u:?}"
    );
    // 12 alerts and 2 sampled flows, all through the one stdout sink.
    assert_eq!(c.sink_sent("stdout"), 14, "{}", c.0);
    assert_eq!(c.sink_dropped("stdout"), 0, "{}", c.0);
}

fn core_scenario(attach: &str, hook: &str) {
    let t0 = Instant::now();
    let lab = setup();
    let pin = context(BpfPinDir::new("core"));
    let cfg = TempFile::new("core.yaml", &test_config(&[]));
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str(), "--attach", attach],
    ));
    let want = core_traffic(&lab, hook);
    // Unanswered attempts are reported by the answer timeout, not only at exit.
    let n = want.len();
    let all_in = d.wait_records(Duration::from_secs(5), |r| r.len() >= n);
    let before_stop = d.records();
    let fin = context(d.stop());
    assert!(
        all_in,
        "only {} of {n} records before SIGTERM (the no-answer timeout path should report them): {before_stop:#?}",
        before_stop.len()
    );
    assert_same_records(&fin.records, want);
    for r in &fin.records {
        if r["network"]["transport"] == "tcp" {
            assert_eq!(r["node_monitor"]["tcp_flags"], "SYN", "{r}");
        }
    }
    eprintln!(
        "daemon stderr:\n{}\nstdout:\n{}\n{}",
        fin.stderr,
        dump(&fin.records),
        fin.counters.0
    );
    check_core_counters(&fin.counters);
    // Bytes are the frame lengths the records report (one packet per refused/UDP attempt).
    for (g, proto) in [
        ("kubelet-readonly", "tcp"),
        ("etcd-client", "tcp"),
        ("udp-probe", "udp"),
    ] {
        let sum: u64 = fin
            .records
            .iter()
            .filter(|r| r["node_monitor"]["port_group"] == g)
            .map(|r| ju(r, "/node_monitor/packet_length"))
            .sum();
        assert_eq!(fin.counters.get(g, proto, "denied").bytes, sum, "{g} bytes");
    }
    for r in fin
        .records
        .iter()
        .filter(|r| r["network"]["transport"] == "udp")
    {
        // Ethernet + IP + UDP + "probe".
        let want = if r["network"]["type"] == "ipv4" {
            14 + 20 + 8 + 5
        } else {
            14 + 40 + 8 + 5
        };
        assert_eq!(r["node_monitor"]["packet_length"], want, "{r}");
    }
    eprintln!("core scenario ({attach}) took {:?}", t0.elapsed());
}

/// Test 1: XDP mode end to end: exact records and counters.
#[test]
fn xdp_mode_end_to_end() {
    core_scenario("xdp", "xdp");
}

/// Test 2: The same with the tc ingress hook.
#[test]
fn tc_mode_end_to_end() {
    core_scenario("tc", "tc");
}
