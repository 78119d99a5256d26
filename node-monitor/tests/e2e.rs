//! Tier 3: the real daemon in a lab network namespace, real traffic from other namespaces
//! over veth, real peers (std sockets with explicit source ports, curl, nmap, Prometheus and
//! promtool).
//!
//! The daemon's stdout carries what its sinks render: with the test configs, one stdout sink
//! in ECS (alerts with `event.kind: alert`, sampled allowed flows with `event.kind: event`).
//! Alerts are deduplicated per (rule, source address, group) within `alerts.dedup_window_s`:
//! tests that expect one alert per attempt use a distinct source address per attempt of a
//! group; the others assert the follow-up's `suppressed_count`. The final counters line is
//! the last line of stderr.
//!
//! Needs root, iproute2, util-linux (nsenter), iputils-ping, curl, nmap, prometheus and
//! promtool; fails (never skips) without them. Every test builds its own lab, pin directory
//! and metrics port, removed by guards.

mod common;

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::daemon::{
    self, Counters, Daemon, GroupCounts, TcpOutcome, TempDir, TempFile, UdpOutcome, context,
    counts_minus, curl, http_get, metric_value, replace_file, sa, scrape, tcp_connect, tcp_server,
    udp_bind, udp_echo, udp_probe,
};
use node_monitor::render::community_id::community_id_v1;
use node_monitor_lab::{BpfPinDir, Child, Lab, Netns, addr, output_with_timeout};
use serde_json::Value;

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

/// The rule ALERTS.md gives a flagged connection to `group`.
fn rule_of(group: &str) -> &'static str {
    match group {
        "kubelet" => "NM-1001",
        "kubelet-readonly" => "NM-1002",
        "etcd-client" | "etcd-peer" => "NM-1003",
        "scheduler" | "controller-manager" | "kubelet-healthz" | "etcd-metrics"
        | "kube-proxy-metrics" => "NM-1004",
        "apiserver" => "NM-1005",
        "kube-proxy-healthz" => "NM-1006",
        _ => "NM-1900",
    }
}

/// ECS `event.severity` of a rule (ALERTS.md: low 21, medium 47, high 73, critical 99).
fn ecs_severity(rule: &str) -> u64 {
    match rule {
        "NM-1001" | "NM-1002" | "NM-1004" => 73,
        "NM-1003" => 99,
        _ => 47,
    }
}

/// A string at a JSON pointer, or a panic naming it.
fn js<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {ptr}: {v}"))
}

/// A number at a JSON pointer, or a panic naming it.
fn ju(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {ptr}: {v}"))
}

fn is_alert(v: &Value) -> bool {
    v.pointer("/event/kind") == Some(&Value::from("alert"))
}

fn alerts_of<'a>(records: &'a [Value], rule: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| is_alert(r) && r.pointer("/rule/id") == Some(&Value::from(rule)))
        .collect()
}

/// An ECS alert or sampled flow, reduced to what the test predicts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rec {
    /// `event.kind`: `alert` or `event` (a sampled flow).
    kind: String,
    rule: Option<String>,
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
    /// `node_monitor.suppressed_count` (alerts only).
    suppressed: Option<u64>,
}

impl Rec {
    fn from_json(v: &Value) -> Rec {
        let s = |p: &str| js(v, p).to_owned();
        let ip = |p: &str| -> IpAddr {
            js(v, p)
                .parse()
                .unwrap_or_else(|e| panic!("bad {p} in {v}: {e}"))
        };
        let port = |p: &str| -> u16 {
            u16::try_from(ju(v, p)).unwrap_or_else(|_| panic!("bad {p} in {v}"))
        };
        let alert = is_alert(v);
        Rec {
            kind: s("/event/kind"),
            rule: alert.then(|| s("/rule/id")),
            group: s("/node_monitor/port_group"),
            verdict: s("/node_monitor/verdict"),
            action: s("/node_monitor/action"),
            answer: v.pointer("/node_monitor/answer").map(|a| {
                a.as_str()
                    .unwrap_or_else(|| panic!("answer not a string: {v}"))
                    .to_owned()
            }),
            protocol: s("/network/transport"),
            family: s("/network/type"),
            src: SocketAddr::new(ip("/source/ip"), port("/source/port")),
            dst: SocketAddr::new(ip("/destination/ip"), port("/destination/port")),
            interface: v
                .pointer("/observer/ingress/interface/name")
                .and_then(Value::as_str)
                .unwrap_or("<none>")
                .to_owned(),
            hook: s("/node_monitor/hook"),
            suppressed: alert.then(|| ju(v, "/node_monitor/suppressed_count")),
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
            kind: "alert".into(),
            rule: Some(rule_of(group).into()),
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
            suppressed: Some(0),
        }
    }

    /// A dedup follow-up: the last repeat's connection with the number of repeats.
    fn folded(mut self, repeats: u64) -> Rec {
        self.suppressed = Some(repeats);
        self
    }

    fn flow(group: &str, src: SocketAddr, dst: SocketAddr, proto: &str, hook: &str) -> Rec {
        Rec {
            kind: "event".into(),
            rule: None,
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
            suppressed: None,
        }
    }
}

fn recs(records: &[Value]) -> Vec<Rec> {
    let mut v: Vec<Rec> = records.iter().map(Rec::from_json).collect();
    v.sort();
    v
}

fn dump(records: &[Value]) -> String {
    records
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The ECS facts every connection record must get right, whatever the scenario: the
/// Community ID of its 5-tuple, the rule's severity and version, outcome vs answer, event
/// type vs action, the ifindex, the follow-up link.
fn check_ecs(v: &Value) {
    assert_eq!(js(v, "/ecs/version"), "8.11.0", "{v}");
    let src: IpAddr = js(v, "/source/ip").parse().unwrap();
    let dst: IpAddr = js(v, "/destination/ip").parse().unwrap();
    let proto = match js(v, "/network/transport") {
        "tcp" => 6,
        "udp" => 17,
        p => panic!("transport {p}: {v}"),
    };
    let (sport, dport) = (ju(v, "/source/port"), ju(v, "/destination/port"));
    let want = community_id_v1(
        0,
        src,
        dst,
        proto,
        u16::try_from(sport).unwrap(),
        u16::try_from(dport).unwrap(),
    );
    assert_eq!(js(v, "/network/community_id"), want, "community id of {v}");
    assert_eq!(js(v, "/network/direction"), "ingress", "{v}");
    let ifindex: u64 = js(v, "/observer/ingress/interface/id").parse().unwrap();
    assert!(ifindex > 0, "{v}");
    let outcome = match v.pointer("/node_monitor/answer").and_then(Value::as_str) {
        Some("accepted") => "success",
        Some("refused" | "no_answer") => "failure",
        _ => "unknown",
    };
    assert_eq!(js(v, "/event/outcome"), outcome, "{v}");
    let denied = matches!(js(v, "/node_monitor/action"), "would_drop" | "dropped");
    let ty: Vec<&str> = v["event"]["type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        ty,
        ["connection", if denied { "denied" } else { "start" }],
        "{v}"
    );
    if is_alert(v) {
        let rule = js(v, "/rule/id");
        assert_eq!(
            js(v, "/rule/id"),
            rule_of(js(v, "/node_monitor/port_group")),
            "{v}"
        );
        assert_eq!(ju(v, "/event/severity"), ecs_severity(rule), "{v}");
        assert_eq!(js(v, "/rule/version"), "1", "{v}");
        assert_eq!(js(v, "/rule/ruleset"), "node-monitor", "{v}");
        assert_eq!(js(v, "/event/action"), "flagged-connection", "{v}");
        assert!(!js(v, "/event/id").is_empty(), "{v}");
        let suppressed = ju(v, "/node_monitor/suppressed_count");
        assert_eq!(
            v.pointer("/node_monitor/follow_up_of").is_some(),
            suppressed > 0,
            "a follow-up (and only a follow-up) names the first alert: {v}"
        );
    } else {
        assert_eq!(js(v, "/event/action"), "flow-sampled", "{v}");
        assert!(v.pointer("/event/severity").is_none(), "{v}");
    }
}

/// Every follow-up names an earlier first alert of the same rule and source.
fn check_follow_ups(records: &[Value]) {
    for f in records
        .iter()
        .filter(|r| r.pointer("/node_monitor/follow_up_of").is_some())
    {
        let first = js(f, "/node_monitor/follow_up_of");
        let orig = records
            .iter()
            .find(|r| r.pointer("/event/id").and_then(Value::as_str) == Some(first))
            .unwrap_or_else(|| panic!("follow-up of an unknown alert: {f}"));
        assert_eq!(orig["rule"]["id"], f["rule"]["id"]);
        assert_eq!(orig["source"]["ip"], f["source"]["ip"]);
        assert_eq!(ju(orig, "/node_monitor/suppressed_count"), 0, "{orig}");
    }
}

fn assert_same_records(got: &[Value], mut want: Vec<Rec>) {
    for r in got {
        check_ecs(r);
    }
    check_follow_ups(got);
    want.sort();
    let have = recs(got);
    let extra: Vec<&Rec> = have.iter().filter(|r| !want.contains(r)).collect();
    let missing: Vec<&Rec> = want.iter().filter(|r| !have.contains(r)).collect();
    assert!(
        extra.is_empty() && missing.is_empty() && have.len() == want.len(),
        "records differ.\nmissing: {missing:#?}\nunexpected: {extra:#?}\nall output:\n{}",
        dump(got)
    );
}

/// Extra addresses on the outside host (`203.0.113.N/24`, `2001:db8:2::N/64`), so that
/// attempts to one group come from distinct sources (dedup keys on the source address).
fn add_outside_addrs(lab: &Lab, hosts: &[u8]) {
    for n in hosts {
        context(
            lab.outside
                .ip(&["addr", "add", &format!("203.0.113.{n}/24"), "dev", "eth0"]),
        );
        context(lab.outside.ip(&[
            "addr",
            "add",
            &format!("2001:db8:2::{n}/64"),
            "dev",
            "eth0",
            "nodad",
        ]));
    }
}

/// `outside`'s extra address `n` (see [`add_outside_addrs`]).
fn outside_n(n: u8, port: u16, v6: bool) -> SocketAddr {
    if v6 {
        sa(
            Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, u16::from(n)),
            port,
        )
    } else {
        sa(Ipv4Addr::new(203, 0, 113, n), port)
    }
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

/// The alert of a refused kubelet-readonly attempt from outside (IPv4).
fn readonly_alert(o: SocketAddr, hook: &str) -> Rec {
    Rec::flagged(
        "kubelet-readonly",
        o,
        node(10255, false),
        "tcp",
        "refused",
        "would_drop",
        hook,
    )
}

/// Waits (bounded) until the daemon's metrics count at least `n` suppressed NM-1002
/// repeats (the metrics are refreshed every 500 ms).
fn wait_suppressed(lab: &Lab, d: &Daemon, n: f64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let body = scrape(&lab.node, d);
        if metric_value(
            &body,
            "node_monitor_alerts_suppressed_total",
            &[("rule", "NM-1002")],
        )
        .unwrap_or(0.0)
            >= n
        {
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!("metrics:\n{body}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn readonly(c: &Counters) -> GroupCounts {
    c.get("kubelet-readonly", "tcp", "denied")
}

fn assert_delta(after: GroupCounts, before: GroupCounts, n: u64, what: &str) {
    let d = counts_minus(&after, &before);
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

    // A: two attempts from one source to one group: a first alert, and the second folded
    // into the follow-up that shutdown emits.
    let a = context(Daemon::start(&lab.node, &pin.path, &args));
    let oa = readonly_attempts(&lab, &[42201, 42202]);
    assert!(a.wait_records(Duration::from_secs(3), |r| !r.is_empty()));
    assert!(wait_suppressed(&lab, &a, 1.0), "the repeat was not folded");
    let fin_a = context(a.stop());
    fin_a.counters.check_invariants();
    assert_same_records(
        &fin_a.records,
        vec![
            readonly_alert(oa[0], "xdp"),
            readonly_alert(oa[1], "xdp").folded(1),
        ],
    );
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
    // One source, one group: the first queued attempt alerts, the other two are folded.
    assert!(b.wait_records(Duration::from_secs(3), |r| !r.is_empty()));
    assert!(
        wait_suppressed(&lab, &b, 2.0),
        "B did not see all 3 attempts"
    );
    let fin_b = context(b.stop());
    fin_b.counters.check_invariants();
    assert_same_records(
        &fin_b.records,
        vec![
            readonly_alert(down[0], "xdp"),
            readonly_alert(up[0], "xdp").folded(2),
        ],
    );
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
    assert_same_records(&fin_c.records, vec![readonly_alert(o[0], "tc")]);
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
    let oa = readonly_attempts(&lab, &[42301, 42302]);
    assert!(a.wait_records(Duration::from_secs(3), |r| !r.is_empty()));
    let fin_a = context(a.stop());
    let ca = readonly(&fin_a.counters);
    assert_eq!(ca.new_conns, 2, "{ca:?}");
    assert_same_records(
        &fin_a.records,
        vec![
            readonly_alert(oa[0], "xdp"),
            readonly_alert(oa[1], "xdp").folded(1),
        ],
    );

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
    assert_same_records(&fin_b.records, vec![readonly_alert(o[0], "xdp")]);
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

/// Waits (bounded) until `pred` holds for the daemon's metrics; returns the last body.
fn wait_metrics(
    lab: &Lab,
    d: &Daemon,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> (bool, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let body = scrape(&lab.node, d);
        if pred(&body) {
            return (true, body);
        }
        if Instant::now() >= deadline {
            return (false, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metric(body: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(body, name, labels).unwrap_or(0.0)
}

/// A user group next to the catalog, for the generic rule NM-1900.
const CUSTOM_GROUP: &str = r#"  custom:
    protocols: [tcp]
    ports: ["9443"]
    allow: ["198.51.100.0/24", "2001:db8:1::/64"]

"#;

/// Test 7: every rule of the catalog fires from real traffic, with its id, version,
/// severity, the node's answer and the Community ID of the connection: NM-1001..NM-1006 and
/// NM-1900 from one outside address (distinct groups: no dedup), NM-1010 from a real nmap SYN
/// sweep of 21 NodePorts (IPv6 source), NM-1020 from a burst of 30 connections from a third
/// address that exceeds `events_per_source_per_second`.
#[test]
fn every_rule_fires_from_real_traffic() {
    daemon::require_root_and_tools(&["nmap"]);
    let lab = setup();
    let pin = context(BpfPinDir::new("rules"));
    // 10 events per source and second: the 7 rule attempts fit in one source's bucket, and so
    // do the first 10 ports of the sweep; the burst of 30 does not.
    let cfg = TempFile::new(
        "rules.yaml",
        &daemon::catalog_with(
            &[
                (
                    "events_per_source_per_second: 20",
                    "events_per_source_per_second: 10",
                ),
                ("flood_window_s: 10 ", "flood_window_s: 1 "),
                ("answer_timeout_ms: 1000 ", "answer_timeout_ms: 400 "),
            ],
            CUSTOM_GROUP,
        ),
    );
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));
    let _kubelet = tcp_server(&lab.node, &[node(10250, false)], 1);

    // (port, rule, ECS severity, answer) from 203.0.113.2.
    let cases: [(u16, &str, u64, &str); 7] = [
        (10250, "NM-1001", 73, "accepted"),
        (10255, "NM-1002", 73, "refused"),
        (2379, "NM-1003", 99, "refused"),
        (10259, "NM-1004", 73, "refused"),
        (6443, "NM-1005", 47, "refused"),
        (10256, "NM-1006", 47, "refused"),
        (9443, "NM-1900", 47, "refused"),
    ];
    let mut srcs = Vec::new();
    for (i, (port, _, _, answer)) in cases.iter().enumerate() {
        let o = outside(45001 + u16::try_from(i).unwrap(), false);
        let got = tcp_connect(&lab.outside, o, node(*port, false), CONNECT_TIMEOUT);
        let want = if *answer == "accepted" {
            TcpOutcome::Connected
        } else {
            TcpOutcome::Refused
        };
        assert_eq!(got, want, "outside -> {port}");
        srcs.push(o);
    }

    // A real SYN sweep of 21 NodePorts (all closed) from outside's IPv6 address.
    let mut nmap = lab.outside.command("nmap");
    nmap.args([
        "-6",
        "-n",
        "-Pn",
        "-sS",
        "--max-retries",
        "0",
        "--host-timeout",
        "15s",
        "-p",
        "30000-30020",
        &addr::NODE_V6.to_string(),
    ]);
    let out = context(output_with_timeout(nmap, Duration::from_secs(20)));
    let nmap_out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "nmap failed: {nmap_out}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A burst from 203.0.113.3 (added after nmap ran, so that nmap's source address is
    // outside's own): 30 refused connections to kubelet-readonly.
    add_outside_addrs(&lab, &[3]);
    let flood_src: Vec<SocketAddr> = (0..30).map(|i| outside_n(3, 46000 + i, false)).collect();
    for o in &flood_src {
        assert_eq!(
            tcp_connect(&lab.outside, *o, node(10255, false), CONNECT_TIMEOUT),
            TcpOutcome::Refused
        );
    }

    // The flood alerts come at the end of their 1 s windows; wait until they carry every
    // rate-limited event the kernel counted.
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(6), |body| {
        let limited = metric(
            body,
            "node_monitor_lost_events_total",
            &[("reason", "rate_limited")],
        );
        let recs = d.records();
        let flooded: u64 = alerts_of(&recs, "NM-1020")
            .iter()
            .map(|a| ju(a, "/node_monitor/flood/rate_limited"))
            .sum();
        limited > 0.0
            && flooded as f64 == limited
            && [
                "NM-1001", "NM-1002", "NM-1003", "NM-1004", "NM-1005", "NM-1006", "NM-1010",
                "NM-1900",
            ]
            .iter()
            .all(|r| !alerts_of(&recs, r).is_empty())
    });
    let live = d.records();
    assert!(
        ok,
        "not every rule fired, or the flood alerts do not add up, within 6 s:\n{}\nmetrics:\n{body}\nnmap:\n{nmap_out}",
        dump(&live)
    );
    let fin = context(d.stop());
    let recs = &fin.records;
    eprintln!("{}\n{}", dump(recs), fin.counters.0);
    fin.counters.check_invariants();

    // The connection rules: one alert each from 203.0.113.2, with the answer.
    for ((port, rule, severity, answer), src) in cases.iter().zip(&srcs) {
        let from_o: Vec<&Value> = alerts_of(recs, rule)
            .into_iter()
            .filter(|a| js(a, "/source/ip") == "203.0.113.2")
            .collect();
        assert_eq!(from_o.len(), 1, "{rule}: {}", dump(recs));
        let a = from_o[0];
        check_ecs(a);
        assert_eq!(ju(a, "/source/port"), u64::from(src.port()), "{a}");
        assert_eq!(ju(a, "/destination/port"), u64::from(*port), "{a}");
        assert_eq!(js(a, "/destination/ip"), "198.51.100.1", "{a}");
        assert_eq!(js(a, "/rule/version"), "1", "{a}");
        assert_eq!(ju(a, "/event/severity"), *severity, "{a}");
        assert_eq!(js(a, "/node_monitor/answer"), *answer, "{a}");
        assert_eq!(js(a, "/node_monitor/verdict"), "denied", "{a}");
        assert_eq!(js(a, "/node_monitor/action"), "would_drop", "{a}");
        assert_eq!(ju(a, "/node_monitor/suppressed_count"), 0, "{a}");
        assert_eq!(js(a, "/observer/ingress/interface/name"), "eth0", "{a}");
    }
    let kubelet = alerts_of(recs, "NM-1001")[0];
    assert_eq!(
        js(kubelet, "/network/community_id"),
        community_id_v1(
            0,
            addr::OUTSIDE_V4.into(),
            addr::NODE_V4.into(),
            6,
            srcs[0].port(),
            10250
        ),
        "{kubelet}"
    );
    assert_eq!(js(kubelet, "/node_monitor/port_group"), "kubelet");
    assert_eq!(
        js(alerts_of(recs, "NM-1004")[0], "/node_monitor/port_group"),
        "scheduler"
    );
    assert_eq!(
        js(alerts_of(recs, "NM-1900")[0], "/node_monitor/port_group"),
        "custom"
    );

    // NM-1010: one sweep alert for the IPv6 source, addresses without ports.
    let sweeps = alerts_of(recs, "NM-1010");
    assert_eq!(sweeps.len(), 1, "{}", dump(recs));
    let s = sweeps[0];
    assert_eq!(js(s, "/source/ip"), "2001:db8:2::2", "{s}");
    assert_eq!(js(s, "/destination/ip"), "2001:db8:1::1", "{s}");
    assert!(s.pointer("/source/port").is_none(), "{s}");
    assert!(s.pointer("/network/community_id").is_none(), "{s}");
    assert_eq!(ju(s, "/event/severity"), 47, "{s}");
    assert_eq!(js(s, "/rule/version"), "1", "{s}");
    assert_eq!(js(s, "/event/action"), "nodeport-sweep", "{s}");
    assert_eq!(js(s, "/rule/category"), "network-scan", "{s}");
    assert_eq!(js(s, "/node_monitor/port_group"), "nodeport", "{s}");
    let ports: Vec<u64> = s["node_monitor"]["sweep"]["ports"]
        .as_array()
        .unwrap_or_else(|| panic!("{s}"))
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert!(ports.len() >= 10, "{s}");
    assert_eq!(ju(s, "/node_monitor/sweep/port_count"), ports.len() as u64);
    assert!(ports.iter().all(|p| (30000..=30020).contains(p)), "{s}");
    assert_eq!(ju(s, "/node_monitor/sweep/window_s"), 60, "{s}");

    // NM-1020: the windows' counts add up to every rate-limited event of the run.
    let floods = alerts_of(recs, "NM-1020");
    assert!(!floods.is_empty());
    let mut limited = 0;
    for f in &floods {
        assert_eq!(ju(f, "/event/severity"), 47, "{f}");
        assert_eq!(js(f, "/rule/version"), "1", "{f}");
        assert_eq!(js(f, "/event/action"), "event-flood", "{f}");
        assert_eq!(js(f, "/node_monitor/flood/scope"), "node", "{f}");
        assert_eq!(ju(f, "/node_monitor/flood/window_s"), 1, "{f}");
        assert!(f.pointer("/source").is_none(), "{f}");
        limited += ju(f, "/node_monitor/flood/rate_limited");
    }
    assert!(limited > 0);
    assert_eq!(
        limited,
        fin.counters.total_rate_limited(),
        "{}",
        fin.counters.0
    );

    // The burst's source: a first NM-1002 alert and one follow-up folding the rest of the
    // events that passed its bucket.
    let burst: Vec<&Value> = alerts_of(recs, "NM-1002")
        .into_iter()
        .filter(|a| js(a, "/source/ip") == "203.0.113.3")
        .collect();
    let ro = readonly(&fin.counters);
    let burst_events = ro.events - 1; // one from 203.0.113.2
    assert!(
        (10..30).contains(&burst_events),
        "the bucket lets 10 (+ refill) of 30 through: {ro:?}"
    );
    assert_eq!(burst.len(), 2, "{}", dump(recs));
    assert_eq!(ju(burst[0], "/node_monitor/suppressed_count"), 0);
    assert_eq!(
        ju(burst[1], "/node_monitor/suppressed_count"),
        burst_events - 1,
        "{}",
        burst[1]
    );
    assert_eq!(
        js(burst[1], "/node_monitor/follow_up_of"),
        js(burst[0], "/event/id")
    );
    check_follow_ups(recs);
}

/// Splits a CEF header on unescaped pipes (the first 7 fields), then the extension.
fn cef_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if fields.len() == 7 {
            cur.push(c);
            continue;
        }
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '|' => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// CEF extension `key=value` pairs (values may contain spaces: a key starts at ` word=`).
fn cef_ext(ext: &str) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    let mut key: Option<String> = None;
    let mut val = String::new();
    for tok in ext.split(' ') {
        let starts_key = tok.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()) && !k.ends_with('\\')
        });
        if starts_key {
            if let Some(k) = key.take() {
                m.insert(k, std::mem::take(&mut val));
            }
            let (k, v) = tok.split_once('=').unwrap();
            key = Some(k.to_owned());
            val = v.to_owned();
        } else {
            val.push(' ');
            val.push_str(tok);
        }
    }
    if let Some(k) = key {
        m.insert(k, val);
    }
    m.into_iter().map(|(k, v)| (k, cef_unescape(&v))).collect()
}

/// Undoes CEF extension escaping (`\\`, `\=`, `\n`, `\r`).
fn cef_unescape(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(n) => out.push(n),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn lines_of(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Test 8: the three formats through file sinks (and ECS on stdout): one flagged kubelet
/// attempt gives exactly one alert in each file, the same alert id in each, and each format's
/// required fields (OCSF Detection Finding, a CEF line that parses).
#[test]
fn formats_through_file_sinks() {
    let lab = setup();
    let pin = context(BpfPinDir::new("sinks"));
    let dir = TempDir::new("sinks");
    let (ecs, ocsf, cef) = (
        dir.file("alerts.ecs.json"),
        dir.file("alerts.ocsf.json"),
        dir.file("alerts.cef"),
    );
    let sinks = format!(
        "sinks:\n  - {{type: stdout, format: ecs}}\n  - {{type: file, name: f-ecs, path: \"{}\", format: ecs}}\n  - {{type: file, name: f-ocsf, path: \"{}\", format: ocsf}}\n  - {{type: file, name: f-cef, path: \"{}\", format: cef}}\n",
        ecs.display(),
        ocsf.display(),
        cef.display()
    );
    let cfg = TempFile::new(
        "sinks.yaml",
        &test_config(&[("sinks:\n  - {type: stdout, format: ecs}\n", &sinks)]),
    );
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));
    let o = outside(42601, false);
    assert_eq!(
        tcp_connect(&lab.outside, o, node(10250, false), CONNECT_TIMEOUT),
        TcpOutcome::Refused
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while [&ecs, &ocsf, &cef].iter().any(|p| lines_of(p).is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let fin = context(d.stop());
    fin.counters.check_invariants();
    assert_same_records(
        &fin.records,
        vec![Rec::flagged(
            "kubelet",
            o,
            node(10250, false),
            "tcp",
            "refused",
            "would_drop",
            "xdp",
        )],
    );
    let id = js(&fin.records[0], "/event/id").to_owned();
    for s in ["stdout", "f-ecs", "f-ocsf", "f-cef"] {
        assert_eq!(fin.counters.sink_sent(s), 1, "{s}: {}", fin.counters.0);
    }

    // ECS file: the same document as stdout.
    let e = lines_of(&ecs);
    assert_eq!(e.len(), 1, "{e:?}");
    let ev: Value = serde_json::from_str(&e[0]).unwrap();
    assert_eq!(ev, fin.records[0]);

    // OCSF Detection Finding.
    let l = lines_of(&ocsf);
    assert_eq!(l.len(), 1, "{l:?}");
    let v: Value = serde_json::from_str(&l[0]).unwrap();
    assert_eq!(ju(&v, "/class_uid"), 2004, "{v}");
    assert_eq!(ju(&v, "/category_uid"), 2, "{v}");
    assert_eq!(ju(&v, "/activity_id"), 1, "{v}");
    assert_eq!(ju(&v, "/type_uid"), 200_401, "{v}");
    assert_eq!(ju(&v, "/severity_id"), 4, "{v}");
    assert!(ju(&v, "/time") > 1_600_000_000_000, "epoch ms: {v}");
    assert_eq!(js(&v, "/metadata/product/name"), "node-monitor", "{v}");
    assert_eq!(js(&v, "/metadata/version"), "1.3.0", "{v}");
    assert_eq!(js(&v, "/finding_info/uid"), id, "{v}");
    assert_eq!(js(&v, "/metadata/uid"), id, "{v}");
    assert_eq!(js(&v, "/finding_info/analytic/uid"), "NM-1001", "{v}");
    assert_eq!(ju(&v, "/count"), 1, "{v}");
    assert_eq!(js(&v, "/evidences/0/src_endpoint/ip"), "203.0.113.2", "{v}");
    assert_eq!(ju(&v, "/evidences/0/src_endpoint/port"), 42601, "{v}");
    assert_eq!(ju(&v, "/evidences/0/dst_endpoint/port"), 10250, "{v}");
    assert_eq!(
        js(&v, "/evidences/0/connection_info/community_uid"),
        js(&ev, "/network/community_id"),
        "{v}"
    );
    assert_eq!(
        js(&v, "/unmapped/node_monitor/port_group"),
        "kubelet",
        "{v}"
    );

    // CEF.
    let l = lines_of(&cef);
    assert_eq!(l.len(), 1, "{l:?}");
    let line = &l[0];
    assert!(line.starts_with("CEF:0|"), "{line}");
    let f = cef_fields(line);
    assert_eq!(f.len(), 8, "8 pipe-separated fields: {f:?}");
    assert_eq!(f[0], "CEF:0");
    assert_eq!(f[1], "node-monitor");
    assert_eq!(f[2], "node-monitor");
    assert!(!f[3].is_empty(), "{f:?}");
    assert_eq!(f[4], "NM-1001", "{f:?}");
    assert_eq!(
        f[5], "kubelet API access from a source not allowed",
        "{f:?}"
    );
    assert_eq!(f[6], "8", "{f:?}");
    let ext = cef_ext(&f[7]);
    for (k, v) in [
        ("src", "203.0.113.2"),
        ("spt", "42601"),
        ("dst", "198.51.100.1"),
        ("dpt", "10250"),
        ("proto", "TCP"),
        ("act", "would_drop"),
        ("cs1", "kubelet"),
        ("cs6", "refused"),
        ("externalId", id.as_str()),
        ("cn1", "0"),
        ("deviceInboundInterface", "eth0"),
    ] {
        assert_eq!(ext.get(k).map(String::as_str), Some(v), "{k} in {line}");
    }
    assert_eq!(
        ext.get("cs2").map(String::as_str),
        Some(js(&ev, "/network/community_id")),
        "{line}"
    );
}

fn reloads(body: &str, result: &str) -> f64 {
    metric(
        body,
        "node_monitor_config_reloads_total",
        &[("result", result)],
    )
}

fn kubelet_conns(body: &str, verdict: &str) -> f64 {
    metric(
        body,
        "node_monitor_connections_total",
        &[("group", "kubelet"), ("proto", "tcp"), ("verdict", verdict)],
    )
}

/// Sampled flows of kubelet from `src`.
fn kubelet_flows_from(records: &[Value], src: SocketAddr) -> usize {
    records
        .iter()
        .filter(|r| {
            r.pointer("/event/kind") == Some(&Value::from("event"))
                && r["node_monitor"]["port_group"] == "kubelet"
                && r["source"]["ip"] == src.ip().to_string()
                && r["source"]["port"] == src.port()
        })
        .count()
}

/// Test 9: live reload. A ConfigMap-style rename that allows outside on kubelet is applied
/// within 3 s without resetting counters; an invalid file is rejected and counted, and the
/// running config stays; restoring the running content and SIGHUP with unchanged content
/// reload nothing and count nothing (run.rs: "config unchanged").
#[test]
fn config_reload_live() {
    let lab = setup();
    let pin = context(BpfPinDir::new("reload"));
    let dir = TempDir::new("reload");
    let path = dir.file("config.yaml");
    let allow_outside = "ports: [\"10250\"]\n    allow: [\"203.0.113.0/24\", \"2001:db8:2::/64\"]\n    action: monitor";
    let cfg0 = test_config(&[]);
    let cfg1 = test_config(&[(KUBELET_MONITOR, allow_outside)]);
    let bad = cfg1.replacen("203.0.113.0/24", "203.0.113.300/24", 1);
    std::fs::write(&path, &cfg0).unwrap();
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", path.to_str().unwrap()],
    ));
    let _kubelet = tcp_server(&lab.node, &[node(10250, false), node(10250, true)], 8);

    // Before: outside -> kubelet is flagged.
    let o1 = outside(42701, false);
    assert_eq!(
        tcp_connect(&lab.outside, o1, node(10250, false), CONNECT_TIMEOUT),
        TcpOutcome::Connected
    );
    assert!(
        d.wait_records(Duration::from_secs(3), |r| !alerts_of(r, "NM-1001")
            .is_empty()),
        "{}",
        dump(&d.records())
    );
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(3), |b| {
        kubelet_conns(b, "denied") >= 1.0
    });
    assert!(ok, "{body}");
    let denied_before = kubelet_conns(&body, "denied");
    assert_eq!(
        (reloads(&body, "success"), reloads(&body, "failure")),
        (0.0, 0.0)
    );

    // Reload: rename a new file over the old one.
    let t = Instant::now();
    replace_file(&path, &cfg1);
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(3), |b| {
        reloads(b, "success") >= 1.0
    });
    assert!(
        ok,
        "no successful reload within 3 s:\n{}\n{body}",
        d.stderr()
    );
    eprintln!("reload seen in the metrics after {:?}", t.elapsed());
    assert_eq!(reloads(&body, "success"), 1.0, "{body}");
    let (o2, o3) = (outside(42702, false), outside(43702, true));
    for (o, v6) in [(o2, false), (o3, true)] {
        assert_eq!(
            tcp_connect(&lab.outside, o, node(10250, v6), CONNECT_TIMEOUT),
            TcpOutcome::Connected
        );
    }
    assert!(
        d.wait_records(Duration::from_secs(3), |r| {
            kubelet_flows_from(r, o2) == 1 && kubelet_flows_from(r, o3) == 1
        }),
        "outside's new connections are not sampled flows after the reload:\n{}",
        dump(&d.records())
    );
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(3), |b| {
        kubelet_conns(b, "allowed") >= 2.0
    });
    assert!(ok, "{body}");
    assert!(
        kubelet_conns(&body, "denied") >= denied_before,
        "the denied counter went down across the reload: {denied_before} -> {}",
        kubelet_conns(&body, "denied")
    );

    // An invalid file: rejected, counted; the running (reloaded) config stays.
    replace_file(&path, &bad);
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(3), |b| {
        reloads(b, "failure") >= 1.0
    });
    assert!(ok, "no failed reload within 3 s:\n{}\n{body}", d.stderr());
    assert_eq!(
        (reloads(&body, "success"), reloads(&body, "failure")),
        (1.0, 1.0),
        "{body}"
    );
    let err = d.stderr();
    let field = format!("{}:", path.display());
    assert!(
        err.lines().any(|l| l.contains("ERROR")
            && l.contains("rejected")
            && l.contains(&field)
            && l.contains("groups.kubelet.allow[0]")
            && l.contains("203.0.113.300")),
        "the rejection should be logged with file:line:column, the field and the value:\n{err}"
    );
    let o4 = outside(42704, false);
    assert_eq!(
        tcp_connect(&lab.outside, o4, node(10250, false), CONNECT_TIMEOUT),
        TcpOutcome::Connected
    );
    assert!(
        d.wait_records(Duration::from_secs(3), |r| kubelet_flows_from(r, o4) == 1),
        "after a rejected reload the reloaded config must stay:\n{}",
        dump(&d.records())
    );

    // The running content again: the file changed, the config did not.
    replace_file(&path, &cfg1);
    assert!(
        d.wait_log(Duration::from_secs(3), |l| l.contains("config unchanged")
            && l.contains("config file changed")),
        "{}",
        d.stderr()
    );
    // SIGHUP with unchanged content: logged, nothing reloaded, nothing counted.
    let st = Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .stdin(Stdio::null())
        .status()
        .expect("kill -HUP");
    assert!(st.success());
    assert!(
        d.wait_log(Duration::from_secs(3), |l| l.contains("config unchanged")
            && l.contains("SIGHUP")),
        "{}",
        d.stderr()
    );
    std::thread::sleep(Duration::from_millis(600));
    let body = scrape(&lab.node, &d);
    assert_eq!(
        (reloads(&body, "success"), reloads(&body, "failure")),
        (1.0, 1.0),
        "{body}"
    );

    let fin = context(d.stop());
    eprintln!("daemon stderr:\n{}", fin.stderr);
    fin.counters.check_invariants();
    assert_eq!(fin.counters.userspace("config_reloads_ok"), 1);
    assert_eq!(fin.counters.userspace("config_reloads_failed"), 1);
    let alerts: Vec<&Value> = fin.records.iter().filter(|r| is_alert(r)).collect();
    assert_eq!(
        alerts.len(),
        1,
        "only the attempt before the reload alerts:\n{}",
        dump(&fin.records)
    );
    assert_same_records(
        &fin.records,
        vec![
            Rec::flagged(
                "kubelet",
                o1,
                node(10250, false),
                "tcp",
                "accepted",
                "would_drop",
                "xdp",
            ),
            Rec::flow("kubelet", o2, node(10250, false), "tcp", "xdp"),
            Rec::flow("kubelet", o3, node(10250, true), "tcp", "xdp"),
            Rec::flow("kubelet", o4, node(10250, false), "tcp", "xdp"),
        ],
    );
    let k = fin.counters.get("kubelet", "tcp", "denied");
    assert_eq!((k.new_conns, k.events), (1, 1), "{k:?}");
    let a = fin.counters.get("kubelet", "tcp", "allowed");
    assert_eq!((a.new_conns, a.events), (3, 3), "{a:?}");
}

/// Test 10: interface hotplug. With `--iface 'eth*'`, a veth `eth9` that appears after start
/// (IPv6 only, 2001:db8:9::/64, to cp) is attached within 2 s and its traffic is flagged with
/// its name; deleting it is logged without an error, and eth0 is still watched.
#[test]
fn interface_hotplug() {
    let lab = setup();
    let pin = context(BpfPinDir::new("hotplug"));
    let cfg = TempFile::new("hotplug.yaml", &test_config(&[]));
    let mut d = context(Daemon::start_on(
        &lab.node,
        &pin.path,
        &["eth*"],
        &["--config", cfg.as_str()],
    ));
    let body = scrape(&lab.node, &d);
    assert_eq!(
        metric(&body, "node_monitor_attached_interfaces", &[]),
        1.0,
        "{body}"
    );

    let t = Instant::now();
    context(lab.cp.ip(&[
        "link",
        "add",
        "hp9",
        "type",
        "veth",
        "peer",
        "name",
        "eth9",
        "netns",
        &lab.node.name,
    ]));
    context(
        lab.node
            .ip(&["addr", "add", "2001:db8:9::1/64", "dev", "eth9", "nodad"]),
    );
    context(
        lab.cp
            .ip(&["addr", "add", "2001:db8:9::2/64", "dev", "hp9", "nodad"]),
    );
    context(lab.node.ip(&["link", "set", "eth9", "up"]));
    context(lab.cp.ip(&["link", "set", "hp9", "up"]));
    let deadline = t + Duration::from_secs(3);
    let mut link = String::new();
    while Instant::now() < deadline {
        link = context(lab.node.ip(&["link", "show", "eth9"]));
        if link.contains("xdp") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t.elapsed();
    assert!(
        link.contains("xdp"),
        "eth9 not attached within 3 s:\n{link}\n{}",
        d.stderr()
    );
    assert!(
        took <= Duration::from_secs(2),
        "attached after {took:?} (CONFIG.md: within 2 s)"
    );
    eprintln!("eth9 attached after {took:?}");

    let c = sa("2001:db8:9::2".parse::<Ipv6Addr>().unwrap(), 44901);
    let n9 = sa("2001:db8:9::1".parse::<Ipv6Addr>().unwrap(), 10255);
    assert_eq!(
        tcp_connect(&lab.cp, c, n9, CONNECT_TIMEOUT),
        TcpOutcome::Refused
    );
    assert!(
        d.wait_records(Duration::from_secs(3), |r| !r.is_empty()),
        "no alert for eth9 traffic:\n{}",
        d.stderr()
    );
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(2), |b| {
        metric(b, "node_monitor_attached_interfaces", &[]) == 2.0
    });
    assert!(ok, "{body}");

    // Delete it.
    let before = d.stderr_lines().len();
    context(lab.node.ip(&["link", "del", "eth9"]));
    assert!(
        d.wait_log(Duration::from_secs(3), |l| l.contains("interface gone")
            && l.contains("eth9")),
        "{}",
        d.stderr()
    );
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(2), |b| {
        metric(b, "node_monitor_attached_interfaces", &[]) == 1.0
    });
    assert!(ok, "{body}");
    assert!(d.is_running(), "{}", d.stderr());
    let o = outside(42901, false);
    assert_eq!(
        tcp_connect(&lab.outside, o, node(10255, false), CONNECT_TIMEOUT),
        TcpOutcome::Refused
    );
    assert!(d.wait_records(Duration::from_secs(3), |r| r.len() >= 2));
    let after: Vec<String> = d.stderr_lines()[before..].to_vec();
    let bad: Vec<&String> = after
        .iter()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect();
    let fin = context(d.stop());
    assert!(
        bad.is_empty(),
        "warnings or errors after eth9 went away: {bad:#?}\n{}",
        fin.stderr
    );
    fin.counters.check_invariants();
    let mut on9 = Rec::flagged(
        "kubelet-readonly",
        c,
        n9,
        "tcp",
        "refused",
        "would_drop",
        "xdp",
    );
    on9.interface = "eth9".into();
    assert_same_records(&fin.records, vec![on9, readonly_alert(o, "xdp")]);
}

/// Percent-encodes a URL query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One instant-vector query against Prometheus's API; the first sample's value.
fn prom_query(ns: &Netns, prom: SocketAddr, q: &str) -> Option<f64> {
    let (status, body) =
        http_get(ns, prom, &format!("/api/v1/query?query={}", urlencode(q))).ok()?;
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    v.pointer("/data/result/0/value/1")?.as_str()?.parse().ok()
}

/// Test 11: a real Prometheus (Debian's) in the node namespace scrapes the real daemon every
/// second: `up` is 1 and the flagged attempt shows in `node_monitor_connections_total`; and
/// `promtool check metrics` finds nothing to say about the exposition.
#[test]
fn prometheus_scrapes_the_daemon() {
    daemon::require_root_and_tools(&["prometheus", "promtool"]);
    let lab = setup();
    let pin = context(BpfPinDir::new("prom"));
    let dir = TempDir::new("prom");
    let cfg = TempFile::new("prom-nm.yaml", &test_config(&[]));
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));
    let prom_addr = SocketAddr::from(([127, 0, 0, 1], daemon::next_metrics_port()));
    let prom_cfg = dir.file("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: node-monitor\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: [\"{}\"]\n",
            d.metrics_addr
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.file("prometheus.log")).unwrap();
    let mut cmd = lab.node.nsenter("prometheus");
    cmd.arg(format!("--config.file={}", prom_cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.file("data").display()
        ))
        .arg(format!("--web.listen-address={prom_addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    let _prom = context(Child::spawn(&mut cmd));

    let o = outside(42801, false);
    assert_eq!(
        tcp_connect(&lab.outside, o, node(10250, false), CONNECT_TIMEOUT),
        TcpOutcome::Refused
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let q = r#"node_monitor_connections_total{group="kubelet",verdict="denied"}"#;
    let (mut up, mut conns) = (None, None);
    while Instant::now() < deadline {
        up = prom_query(&lab.node, prom_addr, r#"up{job="node-monitor"}"#);
        conns = prom_query(&lab.node, prom_addr, q);
        if up == Some(1.0) && conns.is_some_and(|c| c >= 1.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let plog = std::fs::read_to_string(dir.file("prometheus.log")).unwrap_or_default();
    assert_eq!(up, Some(1.0), "up; prometheus log:\n{plog}");
    assert!(
        conns.is_some_and(|c| c >= 1.0),
        "{q} = {conns:?}; prometheus log:\n{plog}"
    );

    // promtool on the daemon's exposition.
    let body = scrape(&lab.node, &d);
    let file = dir.file("metrics.txt");
    std::fs::write(&file, &body).unwrap();
    let mut check = Command::new("sh");
    check.args([
        "-c",
        &format!("promtool check metrics < '{}'", file.display()),
    ]);
    let out = context(output_with_timeout(check, Duration::from_secs(20)));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics ({}):\n{said}\nbody:\n{body}",
        out.status
    );
    let fin = context(d.stop());
    fin.counters.check_invariants();
}
