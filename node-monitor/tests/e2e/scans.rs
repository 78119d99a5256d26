//! Scans and sweeps from real nmap runs: a SYN scan of the control-plane ports from outside
//! is one control-plane port scan alert (NM-1011) naming the ports, beside its connection
//! alerts; the same scan from the control-plane peer, allowed on every port it scans, gives
//! nothing; a NodePort sweep with a config that does not mention `detect_sweeps` is a
//! NodePort sweep alert (NM-1010).

use std::{net::IpAddr, process::Output, time::Duration};

use node_monitor_lab::{BpfPinDir, Netns, addr, output_with_timeout};
use serde_json::Value;

use crate::{
    common::{
        config::catalog_with,
        daemon::{self, Daemon, context},
        temp::TempFile,
    },
    expect::{alerts_of, dump, is_alert, js, ju, rule_of},
    setup::setup,
};

/// The ports of the reproduction, and their groups in the default catalog.
const SCANNED: [(u16, &str); 7] = [
    (2379, "etcd-client"),
    (2380, "etcd-peer"),
    (6443, "apiserver"),
    (10250, "kubelet"),
    (10255, "kubelet-readonly"),
    (10257, "controller-manager"),
    (10259, "scheduler"),
];

/// `nmap -sS` from `ns` of `ports` on `target`: one SYN per port, bounded in time.
fn nmap_syn(ns: &Netns, target: IpAddr, ports: &str) -> Output {
    let mut nmap = ns.command("nmap");
    if target.is_ipv6() {
        nmap.arg("-6");
    }
    nmap.args([
        "-n",
        "-Pn",
        "-sS",
        "--max-retries",
        "0",
        "--host-timeout",
        "15s",
        "-p",
        ports,
        &target.to_string(),
    ]);
    let out = context(output_with_timeout(nmap, Duration::from_secs(20)));
    assert!(
        out.status.success(),
        "nmap failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ports_of(v: &Value, ptr: &str) -> Vec<u16> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no array at {ptr}: {v}"))
        .iter()
        .map(|p| u16::try_from(p.as_u64().unwrap()).unwrap())
        .collect()
}

fn from<'a>(records: &'a [Value], src: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| is_alert(r) && r.pointer("/source/ip") == Some(&Value::from(src)))
        .collect()
}

/// The reproduction: `nmap -sS -p 2379,2380,6443,10250,10255,10257,10259` from an
/// outside host gave seven connection alerts and no scan alert. Now: exactly one NM-1011 for
/// that source, naming at least `alerts.scan.min_ports` (5) of the scanned ports and their
/// groups, counting the connection alerts it covers; the seven connection alerts still go
/// out. The control-plane peer, allowed on every scanned port here, scans the same ports and
/// gets no alert at all (its connections are counted as allowed).
#[test]
fn control_plane_scan_is_one_nm1011_and_the_allowed_peer_s_scan_is_nothing() {
    daemon::require_root_and_tools(&["nmap"]);
    let lab = setup();
    let pin = context(BpfPinDir::new("scans"));
    // The node-local and read-only groups also allow the node's LAN, so that the peer is
    // allowed on every port it scans; nothing else changes.
    let cfg = TempFile::new(
        "scans.yaml",
        &catalog_with(
            &[
                ("answer_timeout_ms: 1000 ", "answer_timeout_ms: 400 "),
                (
                    "ports: [\"10255\"]\n    allow: []",
                    "ports: [\"10255\"]\n    allow: [node-subnets]",
                ),
                (
                    "ports: [\"10259\"]\n    allow: [localhost]",
                    "ports: [\"10259\"]\n    allow: [localhost, node-subnets]",
                ),
                (
                    "ports: [\"10257\"]\n    allow: [localhost]",
                    "ports: [\"10257\"]\n    allow: [localhost, node-subnets]",
                ),
            ],
            "",
        ),
    );
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));
    let list = SCANNED.map(|(p, _)| p.to_string()).join(",");

    nmap_syn(&lab.cp, addr::NODE_V4.into(), &list);
    nmap_syn(&lab.outside, addr::NODE_V4.into(), &list);
    let outside = addr::OUTSIDE_V4.to_string();
    let ok = d.wait_records(Duration::from_secs(6), |recs| {
        let alerts = from(recs, &outside);
        alerts_of(recs, "NM-1011").len() == 1
            && alerts
                .iter()
                .filter(|a| js(a, "/event/action") == "flagged-connection")
                .count()
                == SCANNED.len()
    });
    // What the peer's SYNs could still raise has had the answer timeout to come out.
    std::thread::sleep(Duration::from_millis(800));
    let fin = context(d.stop());
    let recs = &fin.records;
    assert!(
        ok,
        "no scan alert, or not every connection alert:\n{}",
        dump(recs)
    );
    fin.counters.check_invariants();

    // The peer: every SYN seen and allowed, not one alert.
    let cp = addr::CP_V4.to_string();
    assert_eq!(from(recs, &cp), Vec::<&Value>::new(), "{}", dump(recs));
    for (port, group) in SCANNED {
        let allowed = fin.counters.get(group, "tcp", "allowed");
        assert!(allowed.new_conns >= 1, "{port} {group}: {allowed:?}");
    }

    // The outside host: one scan alert, and its seven connection alerts.
    let scans = alerts_of(recs, "NM-1011");
    assert_eq!(scans.len(), 1, "{}", dump(recs));
    let s = scans[0];
    assert_eq!(js(s, "/source/ip"), outside, "{s}");
    assert_eq!(js(s, "/destination/ip"), addr::NODE_V4.to_string(), "{s}");
    assert!(s.pointer("/source/port").is_none(), "{s}");
    assert!(s.pointer("/destination/port").is_none(), "{s}");
    assert!(s.pointer("/network/community_id").is_none(), "{s}");
    assert!(s.pointer("/node_monitor/port_group").is_none(), "{s}");
    assert_eq!(js(s, "/rule/name"), "control-plane port scan", "{s}");
    assert_eq!(js(s, "/rule/version"), "1", "{s}");
    assert_eq!(js(s, "/rule/category"), "network-scan", "{s}");
    assert_eq!(js(s, "/event/action"), "port-scan", "{s}");
    assert_eq!(ju(s, "/event/severity"), 73, "{s}");
    assert_eq!(ju(s, "/node_monitor/suppressed_count"), 0, "{s}");
    let ports = ports_of(s, "/node_monitor/scan/ports");
    assert!(ports.len() >= 5, "at least min_ports: {s}");
    assert!(ports.is_sorted(), "{s}");
    assert_eq!(ju(s, "/node_monitor/scan/port_count"), ports.len() as u64);
    assert_eq!(ju(s, "/node_monitor/scan/window_s"), 60, "{s}");
    let mut want_groups: Vec<&str> = SCANNED
        .iter()
        .filter(|(p, _)| ports.contains(p))
        .map(|(_, g)| *g)
        .collect();
    want_groups.sort_unstable();
    assert_eq!(want_groups.len(), ports.len(), "only scanned ports: {s}");
    let groups: Vec<&str> = s["node_monitor"]["scan"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert_eq!(groups, want_groups, "{s}");
    // Every connection it covers raised its own alert (one SYN per port, distinct groups).
    assert_eq!(
        ju(s, "/node_monitor/scan/connections"),
        ports.len() as u64,
        "{s}"
    );
    assert_eq!(
        ju(s, "/node_monitor/scan/connection_alerts"),
        ports.len() as u64,
        "{s}"
    );
    let message = js(s, "/message");
    for p in &ports {
        assert!(message.contains(&p.to_string()), "{message}");
    }
    let connections: Vec<&Value> = from(recs, &outside)
        .into_iter()
        .filter(|a| js(a, "/event/action") == "flagged-connection")
        .collect();
    let mut seen: Vec<(u64, &str)> = connections
        .iter()
        .map(|a| (ju(a, "/destination/port"), js(a, "/rule/id")))
        .collect();
    seen.sort_unstable();
    let want: Vec<(u64, &str)> = SCANNED
        .iter()
        .map(|(p, g)| (u64::from(*p), rule_of(g)))
        .collect();
    assert_eq!(seen, want, "{}", dump(recs));
    let summary = &fin.counters.0["detectors"]["scan"];
    assert_eq!(summary["evictions"], 0, "{}", fin.counters.0);
    assert_eq!(summary["capacity"], 14_336, "{}", fin.counters.0);
}

/// The other reproduction: a NodePort sweep with a user config whose `nodeport` group
/// does not set `detect_sweeps` gave no sweep alert. Sweep detection is now on by default for
/// a group of more than one port: nmap's sweep of 21 NodePorts is one NM-1010. The NodePorts
/// are allowed to everyone, so the sweep is no control-plane port scan.
#[test]
fn nodeport_sweep_without_detect_sweeps_in_the_config_is_nm1010() {
    daemon::require_root_and_tools(&["nmap"]);
    let lab = setup();
    let pin = context(BpfPinDir::new("sweeps"));
    let cfg_text = catalog_with(
        &[
            ("answer_timeout_ms: 1000 ", "answer_timeout_ms: 400 "),
            ("    detect_sweeps: true\n", ""),
        ],
        "",
    );
    assert!(
        !cfg_text
            .lines()
            .any(|l| l.trim_start().starts_with("detect_sweeps")),
        "{cfg_text}"
    );
    let cfg = TempFile::new("sweeps.yaml", &cfg_text);
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));

    nmap_syn(&lab.outside, addr::NODE_V4.into(), "30000-30020");
    let ok = d.wait_records(Duration::from_secs(5), |recs| {
        !alerts_of(recs, "NM-1010").is_empty()
    });
    let fin = context(d.stop());
    let recs = &fin.records;
    assert!(ok, "no sweep alert:\n{}", dump(recs));
    fin.counters.check_invariants();

    let sweeps = alerts_of(recs, "NM-1010");
    assert_eq!(sweeps.len(), 1, "{}", dump(recs));
    let s = sweeps[0];
    assert_eq!(js(s, "/source/ip"), addr::OUTSIDE_V4.to_string(), "{s}");
    assert_eq!(js(s, "/node_monitor/port_group"), "nodeport", "{s}");
    assert_eq!(js(s, "/event/action"), "nodeport-sweep", "{s}");
    let ports = ports_of(s, "/node_monitor/sweep/ports");
    assert!(ports.len() >= 10, "at least min_ports: {s}");
    assert!(ports.iter().all(|p| (30000..=30020).contains(p)), "{s}");
    assert!(alerts_of(recs, "NM-1011").is_empty(), "{}", dump(recs));
    // The allowed connections fed it: the kernel reported them (sweep-watched group).
    let allowed = fin.counters.get("nodeport", "tcp", "allowed");
    assert!(allowed.events >= 10, "{allowed:?}");
}
