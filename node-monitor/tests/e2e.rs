//! Tier 3: the real daemon in a lab network namespace, real traffic from other namespaces
//! over veth, real peers (std sockets with explicit source ports, and curl).
//!
//! Needs root, iproute2, util-linux (nsenter), iputils-ping and curl; fails (never skips)
//! without them. Every test builds its own lab and pin directory, removed by guards.

mod common;

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use common::daemon::{
    self, Counters, Daemon, GroupCounts, TcpOutcome, TempFile, UdpOutcome, context, curl, sa,
    tcp_connect, tcp_server, udp_bind, udp_echo, udp_probe,
};
use serde_json::Value;
use xtask::lab::{BpfPinDir, Lab, Netns, addr};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const UDP_WAIT: Duration = Duration::from_millis(700);
/// The answer timeout of the test configs: short, so that no-answer cases are quick.
const ANSWER_TIMEOUT_MS: u64 = 400;

/// UDP group denied to outside, next to the catalog: 9000 closed, 9001 echo, 9002 silent.
const UDP_GROUP: &str = r#"  udp-probe:
    protocols: [udp]
    ports: ["9000-9002"]
    allow: ["198.51.100.0/24", "2001:db8:1::/64"]
    action: monitor

"#;

fn setup() -> Lab {
    daemon::require_root_and_tools(&["ip", "nsenter", "ping", "sysctl", "curl"]);
    context(Lab::new())
}

/// The catalog with every allowed flow sampled, a short answer timeout, the UDP group, and
/// optional extra replacements.
fn test_config(extra: &[(&str, &str)]) -> String {
    let timeout = format!("answer_timeout_ms: {ANSWER_TIMEOUT_MS} ");
    let mut reps: Vec<(&str, &str)> = vec![
        ("allowed_flows_one_in: 100", "allowed_flows_one_in: 1"),
        ("answer_timeout_ms: 1000 ", &timeout),
    ];
    reps.extend_from_slice(extra);
    daemon::catalog_with(&reps, UDP_GROUP)
}

/// A flagged or sampled record, reduced to what the test predicts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rec {
    kind: String,
    group: String,
    verdict: String,
    action: String,
    answer: Option<String>,
    protocol: String,
    family: String,
    src: SocketAddr,
    dst: SocketAddr,
    interface: String,
    hook: String,
}

impl Rec {
    fn from_json(v: &Value) -> Rec {
        let s = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("record without string `{k}`: {v}"))
                .to_owned()
        };
        let ip = |k: &str| -> IpAddr {
            s(k).parse()
                .unwrap_or_else(|e| panic!("bad {k} in {v}: {e}"))
        };
        let port = |k: &str| -> u16 {
            v[k].as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or_else(|| panic!("bad {k} in {v}"))
        };
        Rec {
            kind: s("type"),
            group: s("group"),
            verdict: s("verdict"),
            action: s("action"),
            answer: v.get("answer").map(|a| {
                a.as_str()
                    .unwrap_or_else(|| panic!("answer not a string: {v}"))
                    .to_owned()
            }),
            protocol: s("protocol"),
            family: s("family"),
            src: SocketAddr::new(ip("src_ip"), port("src_port")),
            dst: SocketAddr::new(ip("dst_ip"), port("dst_port")),
            interface: v["interface"].as_str().unwrap_or("<none>").to_owned(),
            hook: s("hook"),
        }
    }

    fn flagged(
        group: &str,
        src: SocketAddr,
        dst: SocketAddr,
        proto: &str,
        answer: &str,
        action: &str,
        hook: &str,
    ) -> Rec {
        Rec {
            kind: "flagged".into(),
            group: group.into(),
            verdict: "denied".into(),
            action: action.into(),
            answer: Some(answer.into()),
            protocol: proto.into(),
            family: if src.is_ipv4() { "ipv4" } else { "ipv6" }.into(),
            src,
            dst,
            interface: "eth0".into(),
            hook: hook.into(),
        }
    }

    fn flow(group: &str, src: SocketAddr, dst: SocketAddr, proto: &str, hook: &str) -> Rec {
        Rec {
            kind: "flow".into(),
            group: group.into(),
            verdict: "allowed".into(),
            action: "pass".into(),
            answer: None,
            protocol: proto.into(),
            family: if src.is_ipv4() { "ipv4" } else { "ipv6" }.into(),
            src,
            dst,
            interface: "eth0".into(),
            hook: hook.into(),
        }
    }
}

fn recs(records: &[Value]) -> Vec<Rec> {
    let mut v: Vec<Rec> = records.iter().map(Rec::from_json).collect();
    v.sort();
    v
}

fn assert_same_records(got: &[Value], mut want: Vec<Rec>) {
    want.sort();
    let have = recs(got);
    let extra: Vec<&Rec> = have.iter().filter(|r| !want.contains(r)).collect();
    let missing: Vec<&Rec> = want.iter().filter(|r| !have.contains(r)).collect();
    assert!(
        extra.is_empty() && missing.is_empty() && have.len() == want.len(),
        "records differ.\nmissing: {missing:#?}\nunexpected: {extra:#?}\nall output:\n{}",
        got.iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn node(port: u16, v6: bool) -> SocketAddr {
    if v6 {
        sa(addr::NODE_V6, port)
    } else {
        sa(addr::NODE_V4, port)
    }
}
fn outside(port: u16, v6: bool) -> SocketAddr {
    if v6 {
        sa(addr::OUTSIDE_V6, port)
    } else {
        sa(addr::OUTSIDE_V4, port)
    }
}
fn cp(port: u16, v6: bool) -> SocketAddr {
    if v6 {
        sa(addr::CP_V6, port)
    } else {
        sa(addr::CP_V4, port)
    }
}

/// The core scenario against a running daemon; returns the records the test predicts.
/// `hook`: "xdp" or "tc". Source ports: 42xxx IPv4, 43xxx IPv6 (outside), 44xxx cp.
fn core_traffic(lab: &Lab, hook: &str) -> Vec<Rec> {
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
        // UDP: closed (ICMP port unreachable), echo, silent.
        assert_eq!(
            udp_probe(&lab.outside, o(4), node(9000, v6), UDP_WAIT),
            UdpOutcome::Refused
        );
        want.push(Rec::flagged(
            "udp-probe",
            o(4),
            node(9000, v6),
            "udp",
            "refused",
            "would_drop",
            hook,
        ));
        assert_eq!(
            udp_probe(&lab.outside, o(5), node(9001, v6), UDP_WAIT),
            UdpOutcome::Reply(b"probe".to_vec())
        );
        want.push(Rec::flagged(
            "udp-probe",
            o(5),
            node(9001, v6),
            "udp",
            "accepted",
            "would_drop",
            hook,
        ));
        assert_eq!(
            udp_probe(
                &lab.outside,
                o(6),
                node(9002, v6),
                Duration::from_millis(200)
            ),
            UdpOutcome::Silence
        );
        want.push(Rec::flagged(
            "udp-probe",
            o(6),
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
    assert_eq!(c.userspace("records_written"), 14, "{}", c.0);
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
        if r["protocol"] == "tcp" {
            assert_eq!(r["tcp_flags"], "SYN", "{r}");
        }
        assert!(r["ifindex"].as_u64().unwrap_or(0) > 0, "{r}");
    }
    eprintln!(
        "daemon stderr:\n{}\nstdout:\n{}\n{}",
        fin.stderr,
        fin.records
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
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
            .filter(|r| r["group"] == g)
            .map(|r| r["packet_length"].as_u64().unwrap())
            .sum();
        assert_eq!(fin.counters.get(g, proto, "denied").bytes, sum, "{g} bytes");
    }
    for r in fin.records.iter().filter(|r| r["protocol"] == "udp") {
        // Ethernet + IP + UDP + "probe".
        let want = if r["family"] == "ipv4" {
            14 + 20 + 8 + 5
        } else {
            14 + 40 + 8 + 5
        };
        assert_eq!(r["packet_length"], want, "{r}");
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

const KUBELET_MONITOR: &str = "ports: [\"10250\"]\n    allow: [node-subnets]\n    action: monitor";
const KUBELET_DROP: &str = "ports: [\"10250\"]\n    allow: [node-subnets]\n    action: drop";

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

fn link_pins(pin: &BpfPinDir) -> BTreeSet<String> {
    std::fs::read_dir(pin.path.join("links"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn eth0_link(lab: &Lab) -> String {
    context(lab.node.ip(&["link", "show", "eth0"]))
}

/// Refused TCP attempts from outside (IPv4) to kubelet-readonly, one per source port.
fn readonly_attempts(lab: &Lab, ports: &[u16]) -> Vec<SocketAddr> {
    ports
        .iter()
        .map(|p| {
            let o = outside(*p, false);
            assert_eq!(
                tcp_connect(&lab.outside, o, node(10255, false), CONNECT_TIMEOUT),
                TcpOutcome::Refused
            );
            o
        })
        .collect()
}

fn readonly(c: &Counters) -> GroupCounts {
    c.get("kubelet-readonly", "tcp", "denied")
}

fn assert_delta(after: GroupCounts, before: GroupCounts, n: u64, what: &str) {
    let d = after.minus(&before);
    assert_eq!(
        (d.packets, d.new_conns, d.events, d.would_drop),
        (n, n, n, n),
        "{what}: counters must carry over and grow by {n}; before {before:?}, after {after:?}"
    );
}

/// Test 4: Pins keep the data path across restarts; a new daemon adopts them; a daemon with
/// another attach mode prunes the stale link; `unpin` removes everything.
#[test]
fn pin_adoption_across_restart() {
    let lab = setup();
    let pin = context(BpfPinDir::new("adopt"));
    let cfg = TempFile::new("adopt.yaml", &test_config(&[]));
    let args = ["--config", cfg.as_str()];

    // A.
    let a = context(Daemon::start(&lab.node, &pin.path, &args));
    readonly_attempts(&lab, &[42201, 42202]);
    assert!(a.wait_records(Duration::from_secs(3), |r| r.len() >= 2));
    let fin_a = context(a.stop());
    fin_a.counters.check_invariants();
    let ca = readonly(&fin_a.counters);
    assert_eq!((ca.new_conns, ca.events, ca.packets), (2, 2, 2), "{ca:?}");
    let links = link_pins(&pin);
    for l in ["xdp@eth0", "tc-egress@eth0"] {
        assert!(links.contains(l), "{l} not pinned after exit: {links:?}");
    }
    let link = eth0_link(&lab);
    assert!(
        link.contains("xdp"),
        "XDP no longer attached after the daemon exited:\n{link}"
    );

    // Nobody runs: the pinned programs still count, and queue events in the pinned ring.
    let down = readonly_attempts(&lab, &[42203, 42204]);

    // B adopts.
    let b = context(Daemon::start(&lab.node, &pin.path, &args));
    let err_b = b.stderr();
    assert!(
        err_b.contains("adopted"),
        "B did not adopt the pinned links:\n{err_b}"
    );
    assert!(
        !err_b.contains("no longer fits") && !err_b.contains("start over"),
        "B replaced maps it should have adopted:\n{err_b}"
    );
    let up = readonly_attempts(&lab, &[42205]);
    assert!(b.wait_records(Duration::from_secs(3), |r| r.len() >= 3));
    let fin_b = context(b.stop());
    fin_b.counters.check_invariants();
    let want: Vec<Rec> = down
        .iter()
        .chain(&up)
        .map(|o| {
            Rec::flagged(
                "kubelet-readonly",
                *o,
                node(10255, false),
                "tcp",
                "refused",
                "would_drop",
                "xdp",
            )
        })
        .collect();
    assert_same_records(&fin_b.records, want);
    let cb = readonly(&fin_b.counters);
    assert_delta(cb, ca, 3, "A -> B (2 while down, 1 under B)");

    // C, tc mode: the XDP link is pruned and detached.
    let c = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str(), "--attach", "tc"],
    ));
    let links = link_pins(&pin);
    assert!(
        !links.contains("xdp@eth0"),
        "stale xdp link pin kept: {links:?}"
    );
    for l in ["tc-ingress@eth0", "tc-egress@eth0"] {
        assert!(links.contains(l), "{l} missing: {links:?}");
    }
    let link = eth0_link(&lab);
    assert!(
        !link.contains("xdp"),
        "XDP still attached under a tc-mode daemon:\n{link}"
    );
    let o = readonly_attempts(&lab, &[42206]);
    assert!(c.wait_records(Duration::from_secs(3), |r| !r.is_empty()));
    let fin_c = context(c.stop());
    fin_c.counters.check_invariants();
    assert!(
        fin_c.stderr.contains("removed a pinned link"),
        "{}",
        fin_c.stderr
    );
    assert_same_records(
        &fin_c.records,
        vec![Rec::flagged(
            "kubelet-readonly",
            o[0],
            node(10255, false),
            "tcp",
            "refused",
            "would_drop",
            "tc",
        )],
    );
    assert_delta(readonly(&fin_c.counters), cb, 1, "B -> C");
    let link = eth0_link(&lab);
    assert!(!link.contains("xdp"), "{link}");

    // unpin.
    let p = pin.path.to_str().unwrap().to_owned();
    let (st, _, err) = daemon::run_cli(Some(&lab.node), &["unpin", "--pin-dir", &p]);
    assert!(st.success(), "unpin failed: {err}");
    assert!(!pin.path.exists(), "unpin left {p}");
}

/// Test 5: A pinned map whose shape no longer fits the config is replaced; the others (the
/// counters) are adopted.
#[test]
fn map_that_no_longer_fits_is_replaced() {
    let lab = setup();
    let pin = context(BpfPinDir::new("resize"));
    let cfg_a = TempFile::new("a.yaml", &test_config(&[]));
    let cfg_b = TempFile::new("b.yaml", &test_config(&[("flows: 65536", "flows: 4096")]));
    let a = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg_a.as_str()],
    ));
    readonly_attempts(&lab, &[42301, 42302]);
    assert!(a.wait_records(Duration::from_secs(3), |r| r.len() >= 2));
    let fin_a = context(a.stop());
    let ca = readonly(&fin_a.counters);
    assert_eq!(ca.new_conns, 2, "{ca:?}");

    let b = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg_b.as_str()],
    ));
    let replaced: Vec<String> = b
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("no longer fits"))
        .collect();
    assert!(
        replaced.len() == 1 && replaced[0].contains("FLOWS") && replaced[0].contains("replacing"),
        "expected exactly FLOWS to be replaced:\n{}",
        b.stderr()
    );
    assert!(b.stderr().contains("adopted"), "{}", b.stderr());
    let o = readonly_attempts(&lab, &[42303]);
    assert!(b.wait_records(Duration::from_secs(3), |r| !r.is_empty()));
    let fin_b = context(b.stop());
    fin_b.counters.check_invariants();
    assert_same_records(
        &fin_b.records,
        vec![Rec::flagged(
            "kubelet-readonly",
            o[0],
            node(10255, false),
            "tcp",
            "refused",
            "would_drop",
            "xdp",
        )],
    );
    assert_delta(
        readonly(&fin_b.counters),
        ca,
        1,
        "A -> B with a new FLOWS map",
    );
}

/// Test 6: The command line: check-config, print-default-config, run on a missing interface.
#[test]
fn cli_check_config_and_errors() {
    daemon::require_root_and_tools(&["ip", "nsenter"]);
    // A valid file.
    let good = TempFile::new("good.yaml", &test_config(&[]));
    let (st, out, err) = daemon::run_cli(None, &["check-config", good.as_str()]);
    assert!(st.success(), "valid config rejected: {err}");
    assert!(out.contains(": ok ("), "{out}");

    // A bad CIDR: file:line:column: field: message.
    let bad = TempFile::new(
        "bad.yaml",
        "groups:\n  kubelet:\n    protocols: [tcp]\n    ports: [\"10250\"]\n    allow:\n      - 198.51.100.0/24\n      - 203.0.113.300/32\n",
    );
    let (st, out, err) = daemon::run_cli(None, &["check-config", bad.as_str()]);
    assert_eq!(st.code(), Some(1), "bad config: {st} {out} {err}");
    let want = format!("{}:7:9: groups.kubelet.allow[1]: ", bad.as_str());
    assert!(
        err.starts_with(&want),
        "want a line starting with {want:?}, got:\n{err}"
    );
    assert!(
        err.contains("203.0.113.300/32"),
        "the message should quote the value:\n{err}"
    );

    // print-default-config round-trips through check-config.
    let (st, text, err) = daemon::run_cli(None, &["print-default-config"]);
    assert!(st.success(), "{err}");
    assert_eq!(text, node_monitor::config::DEFAULT_CONFIG_YAML);
    let dflt = TempFile::new("default.yaml", &text);
    let (st, out, err) = daemon::run_cli(None, &["check-config", dflt.as_str()]);
    assert!(st.success(), "default config rejected: {err}");
    assert!(out.contains("(12 groups"), "{out}");

    // run on a missing interface: exit 1, a clear error, no pins.
    let ns = context(Netns::new("cli"));
    let pin = context(BpfPinDir::new("cli"));
    let sub = pin.path.join("nm");
    let t = Instant::now();
    let (st, _, err) = daemon::run_cli(
        Some(&ns),
        &[
            "run",
            "--iface",
            "does-not-exist",
            "--pin-dir",
            sub.to_str().unwrap(),
        ],
    );
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("does-not-exist") && err.contains("does not exist"),
        "unclear error: {err}"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(!sub.exists(), "pins left behind: {:?}", pin.entries());
    assert!(pin.entries().is_empty(), "{:?}", pin.entries());
}
