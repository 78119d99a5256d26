//! Every rule of the catalog fires from real traffic (curl, nmap, bursts), with its id,
//! version, severity, answer and Community ID.

use std::{net::SocketAddr, time::Duration};

use node_monitor::render::community_id::community_id_v1;
use node_monitor_lab::{BpfPinDir, addr, output_with_timeout};
use serde_json::Value;

use crate::{
    common::{
        config::catalog_with,
        daemon::{self, Daemon, context},
        peers::{TcpOutcome, tcp_connect, tcp_server},
        temp::TempFile,
    },
    expect::{alerts_of, check_ecs, check_follow_ups, dump, js, ju},
    poll::{metric, wait_metrics},
    readonly::readonly,
    setup::{CONNECT_TIMEOUT, add_outside_addrs, node, outside, outside_n, setup},
};

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
        &catalog_with(
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
        assert_eq!(js(a, "/rule/version"), "2", "{a}");
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
        assert_eq!(js(f, "/rule/version"), "2", "{f}");
        assert_eq!(js(f, "/event/action"), "event-flood", "{f}");
        // One per group and window: the burst's group, and the sweep's (the ports past
        // the source's budget).
        assert_eq!(js(f, "/node_monitor/flood/scope"), "group", "{f}");
        assert!(
            ["kubelet-readonly", "nodeport"].contains(&js(f, "/node_monitor/port_group")),
            "{f}"
        );
        assert_eq!(ju(f, "/node_monitor/flood/window_s"), 1, "{f}");
        assert!(f.pointer("/source").is_none(), "{f}");
        limited += ju(f, "/node_monitor/flood/rate_limited");
    }
    assert!(limited > 0);
    assert!(
        floods
            .iter()
            .any(|f| js(f, "/node_monitor/port_group") == "kubelet-readonly"),
        "{}",
        dump(recs)
    );
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
