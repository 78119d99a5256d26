//! Issue 8 end to end: the daemon in the node namespace watches a fake cluster (the
//! in-process API server of `node_monitor::cluster::testing`, on 127.0.0.1 of the node
//! namespace, named by a kubeconfig), and real TCP from the lab gets its identity:
//! - from the outside host, whose address is a pod of a Deployment in the fake cluster: the
//!   alert names the pod, its namespace, its Deployment, its node, and this node;
//! - to a NodePort: the alert names the Service;
//! - from the control-plane peer, to an etcd-peer group that allows `control-plane-nodes`:
//!   flagged while its node lacks the label, allowed (no alert) once the label is added.

use std::time::Duration;

use node_monitor::cluster::testing::objects::{PodSpec, label, node, replicaset, service};
use node_monitor_lab::{BpfPinDir, addr};
use serde_json::Value;

use crate::{
    common::{
        daemon::{context, scrape},
        peers::tcp_connect,
        temp::TempFile,
    },
    expect::{alerts_of, dump, js},
    fake_cluster::{FakeCluster, worker_1},
    setup::{CONNECT_TIMEOUT, cp, node as node_addr, outside, setup, test_config},
};

fn cp_node() -> Value {
    node(
        "cp-2",
        &[("InternalIP", "198.51.100.2")],
        &["203.0.113.128/26"],
        &[],
    )
}

#[test]
fn alerts_name_pod_workload_node_and_service_and_allow_sets_follow_labels() {
    let lab = setup();
    let pin = context(BpfPinDir::new("identity"));
    // The fake API server, in the node namespace: the daemon reaches it on 127.0.0.1.
    let cluster = FakeCluster::start(&lab.node, |api| {
        api.apply("nodes", worker_1("203.0.113.0/26"));
        api.apply("nodes", cp_node());
        api.apply(
            "replicasets",
            replicaset("shop", "evil-6b7d9c", Some("evil")),
        );
        api.apply(
            "pods",
            PodSpec {
                owner: Some(("ReplicaSet", "evil-6b7d9c")),
                ..PodSpec::new("shop", "evil-6b7d9c-x2x9z", "worker-2", &["203.0.113.2"])
            }
            .json(),
        );
        api.apply(
            "services",
            service("shop", "web", &[(80, 30080, "TCP")], "Local", &[]),
        );
    });
    let text = test_config(&[
        (
            "  etcd-peer:\n    protocols: [tcp]\n    ports: [\"2380\"]\n    allow: [node-subnets]",
            "  etcd-peer:\n    protocols: [tcp]\n    ports: [\"2380\"]\n    allow: [control-plane-nodes]",
        ),
        (
            "allow: [\"0.0.0.0/0\", \"::/0\"]",
            "allow: [\"198.51.100.0/24\"]",
        ),
        ("enabled: auto", "enabled: on\n  node_name: worker-1"),
    ]);
    let cfg = TempFile::new("identity.yaml", &text);
    // Bounded wait (10 s) for the cache to be synced.
    let d = cluster.daemon(&lab.node, &pin, cfg.as_str(), |_| true);
    // The pod (outside host) reaches the kubelet, then a NodePort.
    tcp_connect(
        &lab.outside,
        outside(46100, false),
        node_addr(10250, false),
        CONNECT_TIMEOUT,
    );
    tcp_connect(
        &lab.outside,
        outside(46101, false),
        node_addr(30080, false),
        CONNECT_TIMEOUT,
    );
    // The control-plane peer reaches etcd-peer while its node is not labelled: flagged.
    tcp_connect(
        &lab.cp,
        cp(46102, false),
        node_addr(2380, false),
        CONNECT_TIMEOUT,
    );
    let seen = d.wait_records(Duration::from_secs(5), |r| {
        !alerts_of(r, "NM-1001").is_empty()
            && r.iter().any(|v| {
                js(v, "/node_monitor/port_group") == "nodeport" && v["event"]["kind"] == "alert"
            })
            && r.iter().any(|v| {
                js(v, "/node_monitor/port_group") == "etcd-peer" && v["event"]["kind"] == "alert"
            })
    });
    // The metrics count them by source workload: the pod's Deployment, the peer's node
    // (updated once a second: bounded wait, 3 s).
    let by_source = [
        r#"node_monitor_flagged_connections_by_source_total{group="kubelet",source_kind="pod",source_namespace="shop",source_workload_kind="Deployment",source_workload="evil"} 1"#,
        r#"node_monitor_flagged_connections_by_source_total{group="etcd-peer",source_kind="node",source_namespace="",source_workload_kind="Node",source_workload="cp-2"} 1"#,
    ];
    let mut metrics = String::new();
    for _ in 0..30 {
        metrics = scrape(&lab.node, &d);
        if by_source.iter().all(|w| metrics.lines().any(|l| l == *w)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for w in by_source {
        assert!(
            metrics.lines().any(|l| l == w),
            "missing {w} in:\n{metrics}"
        );
    }
    // The label arrives: within 5 s the peer's next connection is allowed.
    cluster.apply(
        "nodes",
        label(cp_node(), "node-role.kubernetes.io/control-plane", ""),
    );
    let labelled = std::time::Instant::now();
    let mut allowed = None;
    for port in 46103..46153 {
        std::thread::sleep(Duration::from_millis(100));
        tcp_connect(
            &lab.cp,
            cp(port, false),
            node_addr(2380, false),
            CONNECT_TIMEOUT,
        );
        if d.wait_records(Duration::from_millis(200), |r| {
            r.iter().any(|v| {
                js(v, "/node_monitor/port_group") == "etcd-peer"
                    && js(v, "/node_monitor/verdict") == "allowed"
            })
        }) {
            allowed = Some(labelled.elapsed());
            break;
        }
    }
    let fin = context(d.stop());
    cluster.stop();
    assert!(seen, "missing alerts: {}", dump(&fin.records));
    let allowed = allowed.unwrap_or_else(|| {
        panic!(
            "etcd-peer never allowed the labelled node: {}",
            dump(&fin.records)
        )
    });
    assert!(
        allowed < Duration::from_secs(5),
        "allowed only after {allowed:?}"
    );

    let kubelet = alerts_of(&fin.records, "NM-1001");
    let a = kubelet[0];
    assert_eq!(js(a, "/source/ip"), addr::OUTSIDE_V4.to_string());
    let src = &a["node_monitor"]["source_identity"];
    assert_eq!(src["kind"], "pod", "{a}");
    assert_eq!(src["namespace"], "shop");
    assert_eq!(src["name"], "evil-6b7d9c-x2x9z");
    assert_eq!(src["workload"]["kind"], "Deployment");
    assert_eq!(src["workload"]["name"], "evil");
    assert_eq!(src["node"], "worker-2");
    assert_eq!(
        a["node_monitor"]["destination_identity"]["node"],
        "worker-1"
    );
    assert_eq!(a["node_monitor"]["identity_cache"]["synced"], true);
    assert_eq!(a["orchestrator"]["namespace"], "shop");
    assert_eq!(
        a["orchestrator"]["resource"]["parent"]["type"],
        "Deployment"
    );

    let np = fin
        .records
        .iter()
        .find(|v| js(v, "/node_monitor/port_group") == "nodeport" && v["event"]["kind"] == "alert")
        .unwrap();
    assert_eq!(
        np["node_monitor"]["destination_identity"]["service"],
        serde_json::json!({"namespace": "shop", "name": "web", "external_traffic_policy": "Local"})
    );
    let etcd = fin
        .records
        .iter()
        .find(|v| js(v, "/node_monitor/port_group") == "etcd-peer" && v["event"]["kind"] == "alert")
        .unwrap();
    assert_eq!(etcd["node_monitor"]["source_identity"]["kind"], "node");
    assert_eq!(etcd["node_monitor"]["source_identity"]["node"], "cp-2");
}
