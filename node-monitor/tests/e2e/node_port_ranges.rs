//! Issue 8 end to end, NodePort `loadBalancerSourceRanges`: the daemon in the node namespace
//! watches a fake cluster (the in-process API server, as in `identity.rs`) holding a
//! LoadBalancer Service `shop/web` with NodePort 30080 whose `loadBalancerSourceRanges` is the
//! control-plane peer's address. The `nodeport` group itself allows everyone, so only the
//! Service's ranges tell the sources apart. Real TCP from the lab:
//! - the peer (inside the ranges) reaches 30080: allowed, no alert;
//! - the outside host (outside the ranges) reaches 30080: a flagged alert naming the Service
//!   and its ranges;
//! - the Service's ranges change to the outside network: within 5 s the outside host is
//!   allowed and the peer is flagged.
//!
//! The metrics say the Service's NodePort is enforced, none is left out, and the tables'
//! capacity.
//!
//! A write of the ranges that the kernel refuses (the pinned IPv6 table frozen under the
//! running daemon) is counted, logged and retried every 5 s with no change in the cluster,
//! while the ranges before it hold on the wire; once the Service goes back to the ranges in
//! force there is nothing to write and the retries stop.

use std::time::{Duration, Instant};

use node_monitor::{cluster::testing::objects::service, datapath::freeze_pinned_map};
use node_monitor_common::map_name;
use node_monitor_lab::{BpfPinDir, addr};
use serde_json::Value;

use crate::{
    common::{
        daemon::{context, scrape},
        peers::tcp_connect,
        temp::TempFile,
    },
    expect::{dump, js},
    fake_cluster::{FakeCluster, worker_1},
    setup::{CONNECT_TIMEOUT, cp, node as node_addr, outside, setup, test_config},
};

fn web(ranges: &[&str]) -> Value {
    service("shop", "web", &[(80, 30080, "TCP")], "Cluster", ranges)
}

/// The string at `ptr`, or "" when there is none.
fn at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn is_nodeport(v: &Value, src: &str, verdict: &str) -> bool {
    at(v, "/node_monitor/port_group") == "nodeport"
        && at(v, "/source/ip") == src
        && at(v, "/node_monitor/verdict") == verdict
        && v["destination"]["port"] == 30080
}

#[test]
fn node_port_outside_load_balancer_source_ranges_is_flagged_and_follows_the_service() {
    let lab = setup();
    let pin = context(BpfPinDir::new("lbranges"));
    let cluster = FakeCluster::start(&lab.node, |api| {
        // This node; its pod CIDR holds neither lab source.
        api.apply("nodes", worker_1("203.0.113.64/26"));
        api.apply("services", web(&["198.51.100.2/32"]));
    });
    let text = test_config(&[("enabled: auto", "enabled: on\n  node_name: worker-1")]);
    assert!(
        text.contains("allow: [\"0.0.0.0/0\", \"::/0\"]"),
        "the nodeport group allows everyone"
    );
    let cfg = TempFile::new("lbranges.yaml", &text);
    // Bounded wait (10 s) for the cache to be synced and the ranges written.
    let d = cluster.daemon(&lab.node, &pin, cfg.as_str(), |err| {
        err.contains("loadBalancerSourceRanges rewritten")
    });
    let cp_ip = addr::CP_V4.to_string();
    let out_ip = addr::OUTSIDE_V4.to_string();

    tcp_connect(
        &lab.cp,
        cp(46200, false),
        node_addr(30080, false),
        CONNECT_TIMEOUT,
    );
    tcp_connect(
        &lab.outside,
        outside(46201, false),
        node_addr(30080, false),
        CONNECT_TIMEOUT,
    );
    let first = d.wait_records(Duration::from_secs(5), |r| {
        r.iter().any(|v| is_nodeport(v, &cp_ip, "allowed"))
            && r.iter().any(|v| is_nodeport(v, &out_ip, "denied"))
    });

    // The ranges in the metrics (updated once a second: bounded wait, 3 s).
    let want_metrics = [
        r#"node_monitor_node_port_ranges_ports{state="enforced"} 1"#,
        r#"node_monitor_node_port_ranges_ports{state="not_enforced"} 0"#,
        r#"node_monitor_node_port_ranges_capacity{family="ipv4"} 65536"#,
    ];
    let mut metrics = String::new();
    for _ in 0..30 {
        metrics = scrape(&lab.node, &d);
        if want_metrics
            .iter()
            .all(|w| metrics.lines().any(|l| l == *w))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // The Service's ranges now name the outside network instead.
    cluster.apply("services", web(&["203.0.113.0/24"]));
    let changed = std::time::Instant::now();
    let mut followed = None;
    for port in 46202..46252 {
        std::thread::sleep(Duration::from_millis(100));
        tcp_connect(
            &lab.outside,
            outside(port, false),
            node_addr(30080, false),
            CONNECT_TIMEOUT,
        );
        if d.wait_records(Duration::from_millis(200), |r| {
            r.iter()
                .any(|v| is_nodeport(v, &out_ip, "allowed") && v["source"]["port"] == port)
        }) {
            followed = Some(changed.elapsed());
            break;
        }
    }
    tcp_connect(
        &lab.cp,
        cp(46260, false),
        node_addr(30080, false),
        CONNECT_TIMEOUT,
    );
    let cp_flagged = d.wait_records(Duration::from_secs(5), |r| {
        r.iter().any(|v| is_nodeport(v, &cp_ip, "denied"))
    });
    let fin = context(d.stop());
    cluster.stop();
    let records = &fin.records;
    assert!(first, "missing the first verdicts: {}", dump(records));
    for w in want_metrics {
        assert!(
            metrics.lines().any(|l| l == w),
            "missing {w} in:\n{metrics}"
        );
    }
    // The peer, inside the ranges, raised no alert before the change.
    assert!(
        !records
            .iter()
            .any(|v| v["event"]["kind"] == "alert" && v["source"]["port"] == 46200),
        "the peer inside the ranges was flagged: {}",
        dump(records)
    );
    let a = records
        .iter()
        .find(|v| v["event"]["kind"] == "alert" && v["source"]["port"] == 46201)
        .unwrap_or_else(|| panic!("no alert for the outside host: {}", dump(records)));
    let svc = &a["node_monitor"]["destination_identity"]["service"];
    assert_eq!(svc["namespace"], "shop", "{a}");
    assert_eq!(svc["name"], "web", "{a}");
    assert_eq!(
        svc["load_balancer_source_ranges"],
        serde_json::json!(["198.51.100.2/32"]),
        "{a}"
    );
    assert!(
        js(a, "/message").contains("loadBalancerSourceRanges"),
        "the message says why: {a}"
    );
    let followed = followed.unwrap_or_else(|| {
        panic!(
            "the outside host was never allowed after the change: {}",
            dump(records)
        )
    });
    assert!(
        followed < Duration::from_secs(5),
        "followed only after {followed:?}"
    );
    assert!(
        cp_flagged,
        "the peer was not flagged after the change: {}",
        dump(records)
    );
}

/// `node_monitor_node_port_ranges_write_failures_total` in a scrape (0 when absent).
fn write_failures(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("node_monitor_node_port_ranges_write_failures_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_refused_write_of_the_ranges_is_retried_while_the_ranges_before_it_hold() {
    let lab = setup();
    let pin = context(BpfPinDir::new("lbretry"));
    let cluster = FakeCluster::start(&lab.node, |api| {
        api.apply("nodes", worker_1("203.0.113.64/26"));
        api.apply("services", web(&["198.51.100.2/32"]));
    });
    let text = test_config(&[("enabled: auto", "enabled: on\n  node_name: worker-1")]);
    let cfg = TempFile::new("lbretry.yaml", &text);
    let d = cluster.daemon(&lab.node, &pin, cfg.as_str(), |err| {
        err.contains("loadBalancerSourceRanges rewritten")
    });
    // From here on the kernel refuses every write to the daemon's IPv6 range table.
    freeze_pinned_map(&pin.path.join("maps").join(map_name::PORT_ALLOW_V6))
        .unwrap_or_else(|e| panic!("freeze the daemon's IPv6 range table: {e}"));
    cluster.apply("services", web(&["198.51.100.2/32", "2001:db8:ff::/48"]));

    // The failures as the metrics show them (updated once a second), each new count with
    // when it was first seen: the change's write, then retries with the cluster unchanged.
    // Bounded: 25 s.
    let started = Instant::now();
    let mut seen: Vec<(Duration, u64)> = Vec::new();
    while started.elapsed() < Duration::from_secs(25) {
        let n = write_failures(&scrape(&lab.node, &d));
        if seen.last().map(|&(_, c)| c) != Some(n) {
            seen.push((started.elapsed(), n));
        }
        if n >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // On the wire the ranges before the refused write still hold.
    let cp_ip = addr::CP_V4.to_string();
    let out_ip = addr::OUTSIDE_V4.to_string();
    tcp_connect(
        &lab.cp,
        cp(46300, false),
        node_addr(30080, false),
        CONNECT_TIMEOUT,
    );
    tcp_connect(
        &lab.outside,
        outside(46301, false),
        node_addr(30080, false),
        CONNECT_TIMEOUT,
    );
    let held = d.wait_records(Duration::from_secs(5), |r| {
        r.iter()
            .any(|v| is_nodeport(v, &cp_ip, "allowed") && v["source"]["port"] == 46300)
            && r.iter()
                .any(|v| is_nodeport(v, &out_ip, "denied") && v["source"]["port"] == 46301)
    });

    // Back to the ranges in force: nothing to write, so no more tries.
    cluster.apply("services", web(&["198.51.100.2/32"]));
    std::thread::sleep(Duration::from_secs(2));
    let settled = write_failures(&scrape(&lab.node, &d));
    std::thread::sleep(Duration::from_secs(7));
    let later = write_failures(&scrape(&lab.node, &d));
    let fin = context(d.stop());
    cluster.stop();

    let counts: Vec<u64> = seen.iter().map(|&(_, c)| c).collect();
    assert!(
        counts.contains(&1) && counts.last() >= Some(&3),
        "the refused write was not counted and retried (count, first seen): {seen:?}\n{}",
        fin.stderr
    );
    // Retries are paced (5 s apart), not a loop: two counts apart by at least 3 s (the
    // metrics lag a second).
    let when = |n: u64| seen.iter().find(|&&(_, c)| c >= n).map(|&(t, _)| t);
    let (Some(second), Some(third)) = (when(2), when(3)) else {
        unreachable!("checked above")
    };
    assert!(
        third - second >= Duration::from_secs(3),
        "retries came too fast: {seen:?}"
    );
    let logged = fin
        .stderr
        .lines()
        .filter(|l| l.contains("loadBalancerSourceRanges failed") && l.contains("retry_in_s=5"))
        .count();
    assert!(
        logged >= 3,
        "each refused write is logged ({logged}):\n{}",
        fin.stderr
    );
    assert!(
        held,
        "the ranges before the refused write did not hold: {}",
        dump(&fin.records)
    );
    assert_eq!(
        settled, later,
        "the daemon kept writing after the ranges went back to those in force"
    );
}
