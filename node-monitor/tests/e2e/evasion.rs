//! Issue 14 end to end: SYNs sent in IPv4 fragments (`hping3 -f`: 16-byte pieces, and
//! `hping3 --mtu 8`: 8-byte pieces) to a listening kubelet port from outside. The kernel
//! reassembles them; the daemon must raise one alert per series, naming the source and saying
//! `accepted`, with the attempt marked fragmented. In a drop group the node must never answer
//! them. An allowed control-plane peer's fragmented SYNs raise nothing. And a connection that
//! reaches the node on a device the daemon does not watch is reported by the node's answer
//! on the watched one (NM-1030), and in a drop group never completes.

use std::time::Duration;

use node_monitor_lab::{BpfPinDir, Netns, addr, output_with_timeout};
use serde_json::Value;

use crate::{
    common::{
        daemon::{self, Daemon, context},
        peers::tcp_server,
        temp::TempFile,
    },
    expect::{alerts_of, check_ecs, check_follow_ups, dump, is_alert, js, ju},
    setup::{KUBELET_DROP, KUBELET_MONITOR, add_outside_addrs, node, setup, test_config},
};

/// SYNs per series: bounded, one every 200 ms.
const COUNT: u64 = 3;

/// Runs hping3 in `ns` (bounded: `COUNT` packets, 15 s): SYNs to the node's kubelet port
/// from `src` (source ports from `sport` up), with `frag` (`-f` or `--mtu 8`). Returns what
/// it printed.
fn hping_fragmented(ns: &Netns, src: &str, sport: u16, frag: &[&str]) -> String {
    let mut cmd = ns.command("hping3");
    cmd.args([
        "-S",
        "-p",
        "10250",
        "-c",
        &COUNT.to_string(),
        "-i",
        "u200000",
    ]);
    cmd.args(["-s", &sport.to_string(), "-a", src]);
    cmd.args(frag);
    cmd.arg(addr::NODE_V4.to_string());
    let out = context(output_with_timeout(cmd, Duration::from_secs(15)));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // hping3 exits 1 when nothing answered.
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "hping3 {frag:?}: {text}"
    );
    text
}

/// The SYN-ACKs hping3 saw come back.
fn syn_acks(hping_output: &str) -> usize {
    hping_output.matches("flags=SA").count()
}

/// The kubelet alerts (NM-1001) of `src`.
fn kubelet_alerts<'a>(records: &'a [Value], src: &str) -> Vec<&'a Value> {
    alerts_of(records, "NM-1001")
        .into_iter()
        .filter(|a| js(a, "/source/ip") == src)
        .collect()
}

/// One series for `src`: exactly one first alert, accepted (or as `answer` says), with the
/// action and TCP flags given and the attempt marked fragmented; every other alert of `src`
/// is a follow-up of it.
fn assert_one_series(records: &[Value], src: &str, answer: &str, action: &str, flags: &str) {
    let alerts = kubelet_alerts(records, src);
    let firsts: Vec<&&Value> = alerts
        .iter()
        .filter(|a| a.pointer("/node_monitor/follow_up_of").is_none())
        .collect();
    assert_eq!(firsts.len(), 1, "{src}: one first alert: {}", dump(records));
    let a = firsts[0];
    assert_eq!(js(a, "/source/ip"), src);
    assert_eq!(js(a, "/node_monitor/answer"), answer, "{a}");
    assert_eq!(js(a, "/node_monitor/action"), action, "{a}");
    assert_eq!(js(a, "/node_monitor/tcp_flags"), flags, "{a}");
    assert_eq!(
        a.pointer("/node_monitor/fragmented"),
        Some(&Value::Bool(true))
    );
    assert_eq!(js(a, "/node_monitor/port_group"), "kubelet");
    assert_eq!(ju(a, "/destination/port"), 10250);
    let msg = js(a, "/message");
    assert!(
        msg.contains(src) && msg.contains(&format!("answer {answer}")),
        "{msg}"
    );
    let id = js(a, "/event/id");
    for f in alerts.iter().filter(|f| !std::ptr::eq(**f, *a)) {
        assert_eq!(js(f, "/node_monitor/follow_up_of"), id, "{f}");
        assert_eq!(
            ju(f, &format!("/node_monitor/repeats_by_answer/{answer}")),
            ju(f, "/node_monitor/suppressed_count"),
            "every repeat answered {answer}: {f}"
        );
    }
}

/// The ECS facts every connection record must get right (community id, severity, outcome,
/// event type, follow-up links), on every alert and flow of a run.
fn check_records(records: &[Value]) {
    for r in records
        .iter()
        .filter(|r| r.pointer("/source/port").is_some())
    {
        check_ecs(r);
    }
    check_follow_ups(records);
}

/// A reason counter of the final counters line (0 when absent).
fn reason(fin: &daemon::Finished, name: &str) -> u64 {
    fin.counters.0["reasons"][name].as_u64().unwrap_or(0)
}

#[test]
fn fragmented_syns_to_an_open_kubelet_are_reported_accepted() {
    daemon::require_root_and_tools(&["hping3"]);
    let lab = setup();
    add_outside_addrs(&lab, &[10]);
    let pin = context(BpfPinDir::new("frag"));
    let cfg = TempFile::new("frag.yaml", &test_config(&[]));
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));
    let _kubelet = tcp_server(&lab.node, &[node(10250, false)], 1);
    let f16 = addr::OUTSIDE_V4.to_string();
    let f8 = "203.0.113.10";
    let cp = addr::CP_V4.to_string();
    let out16 = hping_fragmented(&lab.outside, &f16, 47000, &["-f"]);
    let out8 = hping_fragmented(&lab.outside, f8, 47100, &["--mtu", "8"]);
    let out_cp = hping_fragmented(&lab.cp, &cp, 47200, &["-f"]);
    // The kernel reassembled every series and the listener answered.
    for (what, out) in [("-f", &out16), ("--mtu 8", &out8), ("cp -f", &out_cp)] {
        assert!(syn_acks(out) >= 1, "{what}: no SYN-ACK came back: {out}");
    }
    let seen = d.wait_records(Duration::from_secs(5), |r| {
        !kubelet_alerts(r, &f16).is_empty() && !kubelet_alerts(r, f8).is_empty()
    });
    let fin = context(d.stop());
    check_records(&fin.records);
    assert!(
        seen,
        "no alert for a fragmented series: {}",
        dump(&fin.records)
    );
    // hping3 -f cuts the TCP header after its flags (16 bytes): SYN. --mtu 8 before them.
    assert_one_series(&fin.records, &f16, "accepted", "would_drop", "SYN");
    assert_one_series(&fin.records, f8, "accepted", "would_drop", "fragmented");
    assert!(
        fin.records
            .iter()
            .filter(|r| is_alert(r))
            .all(|r| r.pointer("/source/ip") != Some(&Value::from(cp.as_str()))),
        "the allowed peer's fragmented SYNs raise nothing: {}",
        dump(&fin.records)
    );
    // Ingress saw every attempt: no acceptance was unseen.
    assert!(
        alerts_of(&fin.records, "NM-1030").is_empty(),
        "{}",
        dump(&fin.records)
    );
    assert_eq!(reason(&fin, "unseen_accepted"), 0);
    // Every first fragment reached a watched port and was tiny; --mtu 8's second pieces sit
    // at offset 1 (overlapping the flags).
    assert_eq!(reason(&fin, "ipv4_fragment_to_watched_port"), 3 * COUNT);
    assert_eq!(reason(&fin, "ipv4_tiny_first_fragment"), 3 * COUNT);
    assert_eq!(reason(&fin, "ipv4_overlapping_fragment"), COUNT);
    let c = &fin.counters;
    c.check_invariants();
    let k = c.get("kubelet", "tcp", "denied");
    assert_eq!((k.new_conns, k.events), (2 * COUNT, 2 * COUNT), "{k:?}");
}

#[test]
fn fragmented_syns_in_a_drop_group_are_never_answered() {
    daemon::require_root_and_tools(&["hping3"]);
    let lab = setup();
    add_outside_addrs(&lab, &[11]);
    let pin = context(BpfPinDir::new("fragdrop"));
    let cfg = TempFile::new(
        "fragdrop.yaml",
        &test_config(&[(KUBELET_MONITOR, KUBELET_DROP)]),
    );
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));
    let kubelet = tcp_server(&lab.node, &[node(10250, false)], 1);
    let f16 = addr::OUTSIDE_V4.to_string();
    let f8 = "203.0.113.11";
    let out16 = hping_fragmented(&lab.outside, &f16, 48000, &["-f"]);
    let out8 = hping_fragmented(&lab.outside, f8, 48100, &["--mtu", "8"]);
    for (what, out) in [("-f", &out16), ("--mtu 8", &out8)] {
        assert_eq!(syn_acks(out), 0, "{what}: the node answered: {out}");
    }
    let seen = d.wait_records(Duration::from_secs(5), |r| {
        !kubelet_alerts(r, &f16).is_empty() && !kubelet_alerts(r, f8).is_empty()
    });
    let fin = context(d.stop());
    check_records(&fin.records);
    assert_eq!(kubelet.finish(), 0, "nothing reached the listener");
    assert!(
        seen,
        "no alert for a fragmented series: {}",
        dump(&fin.records)
    );
    assert_one_series(&fin.records, &f16, "no_answer", "dropped", "SYN");
    assert_one_series(&fin.records, f8, "no_answer", "dropped", "fragmented");
    assert!(alerts_of(&fin.records, "NM-1030").is_empty());
    let c = &fin.counters;
    c.check_invariants();
    let k = c.get("kubelet", "tcp", "denied");
    // Each first fragment dropped (the rest are never classified): nothing reassembles.
    assert_eq!((k.dropped, k.new_conns), (2 * COUNT, 2 * COUNT), "{k:?}");
}

/// A device the daemon does not watch: a veth from the node straight to the outside host
/// (both lab namespaces, removed with them; no addresses, no default route). The outside
/// host reaches the node's address over it; the node answers by its routes, through the
/// router and its watched `eth0`. Like traffic a CNI decapsulates on a tunnel device that is
/// not in `--iface`: ingress never sees the request, egress sees the answer.
fn unwatched_side_door(lab: &node_monitor_lab::Lab) {
    context(lab.node.ip(&[
        "link",
        "add",
        "side0",
        "type",
        "veth",
        "peer",
        "name",
        "side1",
        "netns",
        &lab.outside.name,
    ]));
    context(lab.node.ip(&["link", "set", "side0", "up"]));
    // The request comes in on side0 while the route back is eth0: loose reverse-path check.
    context(lab.node.sysctl(&[
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.side0.rp_filter=0",
    ]));
    context(lab.outside.ip(&["link", "set", "side1", "up"]));
    context(lab.outside.ip(&[
        "route",
        "add",
        &format!("{}/32", addr::NODE_V4),
        "dev",
        "side1",
    ]));
}

/// The NM-1030 alerts.
fn unseen_alerts(records: &[Value]) -> Vec<&Value> {
    alerts_of(records, "NM-1030")
}

#[test]
fn a_connection_nobody_saw_arrive_is_reported_by_its_answer() {
    use crate::{
        common::peers::{TcpOutcome, tcp_connect},
        setup::{CONNECT_TIMEOUT, outside},
    };
    for drop in [false, true] {
        let lab = setup();
        unwatched_side_door(&lab);
        let pin = context(BpfPinDir::new("unseen"));
        let extra: &[(&str, &str)] = if drop {
            &[(KUBELET_MONITOR, KUBELET_DROP)]
        } else {
            &[]
        };
        let cfg = TempFile::new("unseen.yaml", &test_config(extra));
        let d = context(Daemon::start(
            &lab.node,
            &pin.path,
            &["--config", cfg.as_str()],
        ));
        let kubelet = tcp_server(&lab.node, &[node(10250, false)], 1);
        let src = outside(49500, false);
        let got = tcp_connect(&lab.outside, src, node(10250, false), CONNECT_TIMEOUT);
        let want = if drop {
            TcpOutcome::TimedOut
        } else {
            TcpOutcome::Connected
        };
        assert_eq!(got, want, "drop {drop}: the connection over the side door");
        let seen = d.wait_records(Duration::from_secs(5), |r| !unseen_alerts(r).is_empty());
        let fin = context(d.stop());
        check_records(&fin.records);
        let served = kubelet.finish();
        assert_eq!(served, usize::from(!drop), "drop {drop}: listener served");
        assert!(seen, "drop {drop}: no NM-1030: {}", dump(&fin.records));
        let alerts = unseen_alerts(&fin.records);
        assert_eq!(alerts.len(), 1, "{}", dump(&fin.records));
        let a = alerts[0];
        assert_eq!(
            js(a, "/rule/name"),
            "the node accepted a connection nobody saw arrive"
        );
        assert_eq!(ju(a, "/event/severity"), 99, "critical for the kubelet");
        assert_eq!(js(a, "/event/action"), "unseen-accepted-connection");
        assert_eq!(js(a, "/event/outcome"), "success");
        assert_eq!(js(a, "/source/ip"), addr::OUTSIDE_V4.to_string());
        assert_eq!(ju(a, "/source/port"), 49500);
        assert_eq!(ju(a, "/destination/port"), 10250);
        assert_eq!(js(a, "/node_monitor/answer"), "accepted");
        assert_eq!(js(a, "/node_monitor/hook"), "tc");
        assert_eq!(js(a, "/node_monitor/record_type"), "unseen_accepted");
        assert_eq!(
            js(a, "/node_monitor/action"),
            if drop { "dropped" } else { "would_drop" }
        );
        assert!(
            kubelet_alerts(&fin.records, &addr::OUTSIDE_V4.to_string()).is_empty(),
            "ingress saw nothing: {}",
            dump(&fin.records)
        );
        assert_eq!(reason(&fin, "unseen_accepted"), 1);
        let dropped = reason(&fin, "unseen_accepted_dropped");
        if drop {
            // The first SYN-ACK and every retransmit of it.
            assert!(dropped >= 1, "{}", fin.counters.0);
        } else {
            assert_eq!(dropped, 0);
        }
        fin.counters.check_invariants();
    }
}

/// The node's end of the overlay, and cp's: /32s out of the outside subnet, routed onto the
/// tunnel (more specific than the route to the router), so cp's overlay address is a source
/// the kubelet group does not allow.
const OVERLAY_NODE: &str = "203.0.113.201";
const OVERLAY_CP: &str = "203.0.113.202";

/// A VXLAN overlay between cp and the node over the LAN (VNI 4096, UDP 4789, as Calico's):
/// `vxlan.calico` on the node, `vxlan0` on cp, and a second, idle VXLAN device `flannel.1` on
/// the node (VNI 1, UDP 8472, as flannel's). All inside the lab's namespaces. False (and
/// says so) when this kernel cannot make VXLAN devices.
fn vxlan_overlay(lab: &node_monitor_lab::Lab) -> bool {
    if let Err(e) = lab.node.ip(&[
        "link", "add", "nmprobe0", "type", "vxlan", "id", "9", "dstport", "4789", "dev", "eth0",
    ]) {
        eprintln!("SKIPPED (kernel feature): no VXLAN devices on this kernel: {e:#}");
        return false;
    }
    context(lab.node.ip(&["link", "del", "nmprobe0"]));
    let node_v4 = addr::NODE_V4.to_string();
    let cp_v4 = addr::CP_V4.to_string();
    for (ns, dev, local, remote, mine, peer) in [
        (
            &lab.node,
            "vxlan.calico",
            &node_v4,
            &cp_v4,
            OVERLAY_NODE,
            OVERLAY_CP,
        ),
        (
            &lab.cp,
            "vxlan0",
            &cp_v4,
            &node_v4,
            OVERLAY_CP,
            OVERLAY_NODE,
        ),
    ] {
        context(ns.ip(&[
            "link", "add", dev, "type", "vxlan", "id", "4096", "dstport", "4789", "local", local,
            "remote", remote, "dev", "eth0",
        ]));
        context(ns.ip(&["addr", "add", &format!("{mine}/32"), "dev", dev]));
        context(ns.ip(&["link", "set", dev, "up"]));
        context(ns.ip(&["route", "add", &format!("{peer}/32"), "dev", dev]));
    }
    context(lab.node.ip(&[
        "link",
        "add",
        "flannel.1",
        "type",
        "vxlan",
        "id",
        "1",
        "dstport",
        "8472",
        "dev",
        "eth0",
    ]));
    context(lab.node.ip(&["link", "set", "flannel.1", "up"]));
    true
}

/// What is seen where, with a real VXLAN overlay: watching only the uplink, a connection over
/// the tunnel is seen by neither hook (ingress sees VXLAN's UDP, the answer goes back into the
/// tunnel); watching the tunnel devices by the globs the docs give, the decapsulated SYN is
/// flagged on `vxlan.calico`. Globs that match nothing (no Cilium, no OVN here) are fine; an
/// exact name that does not exist stops the start.
#[test]
fn tunnel_devices_are_seen_only_when_watched() {
    use crate::common::peers::{TcpOutcome, sa, tcp_connect};
    let overlay = |ip: &str, port| sa(ip.parse::<std::net::Ipv4Addr>().unwrap(), port);
    let globs = [
        "eth0",
        "vxlan*.calico",
        "flannel.*",
        "cilium_vxlan*",
        "genev_sys_*",
        "tunl0*",
    ];
    for watch_tunnels in [false, true] {
        let lab = setup();
        if !vxlan_overlay(&lab) {
            return;
        }
        let pin = context(BpfPinDir::new("tunnel"));
        let cfg = TempFile::new("tunnel.yaml", &test_config(&[]));
        let ifaces: &[&str] = if watch_tunnels { &globs } else { &["eth0"] };
        let d = context(Daemon::start_on(
            &lab.node,
            &pin.path,
            ifaces,
            &["--config", cfg.as_str()],
        ));
        for dev in ["vxlan.calico", "flannel.1"] {
            let link = context(lab.node.ip(&["link", "show", dev]));
            assert_eq!(
                link.contains("xdp"),
                watch_tunnels,
                "{dev} attached iff watched:\n{link}"
            );
        }
        let kubelet = tcp_server(&lab.node, &[overlay(OVERLAY_NODE, 10250)], 1);
        let got = tcp_connect(
            &lab.cp,
            overlay(OVERLAY_CP, 49600),
            overlay(OVERLAY_NODE, 10250),
            crate::setup::CONNECT_TIMEOUT,
        );
        assert_eq!(got, TcpOutcome::Connected, "over the overlay");
        let seen = d.wait_records(Duration::from_secs(3), |r| {
            !kubelet_alerts(r, OVERLAY_CP).is_empty()
        });
        let fin = context(d.stop());
        check_records(&fin.records);
        assert_eq!(kubelet.finish(), 1);
        let from_overlay: Vec<&Value> = fin
            .records
            .iter()
            .filter(|r| r.pointer("/source/ip") == Some(&Value::from(OVERLAY_CP)))
            .collect();
        if watch_tunnels {
            assert!(seen, "not flagged on the tunnel: {}", dump(&fin.records));
            let a = kubelet_alerts(&fin.records, OVERLAY_CP)[0];
            assert_eq!(js(a, "/observer/ingress/interface/name"), "vxlan.calico");
            assert_eq!(js(a, "/node_monitor/answer"), "accepted");
            assert_eq!(from_overlay.len(), 1, "{}", dump(&fin.records));
        } else {
            // Neither hook sees it: ingress on eth0 sees UDP to 4789, and the SYN-ACK leaves
            // through the tunnel, encapsulated, so egress on eth0 sees UDP too.
            assert!(from_overlay.is_empty(), "{}", dump(&fin.records));
            assert_eq!(reason(&fin, "unseen_accepted"), 0);
        }
        // An exact name that does not exist stops the start; the glob form does not.
        if !watch_tunnels {
            let (status, _, err) = daemon::run_cli(
                Some(&lab.node),
                &[
                    "run",
                    "--no-pin",
                    "--iface",
                    "eth0",
                    "--iface",
                    "cilium_vxlan",
                ],
            );
            assert!(!status.success(), "{err}");
            assert!(err.contains("`cilium_vxlan` does not exist"), "{err}");
        }
    }
}
