//! Tests: the `cluster` section.

use std::time::Duration;

use super::*;

#[test]
fn cluster_defaults_when_absent() {
    assert_eq!(parse(EXAMPLE).cluster, ClusterSettings::DEFAULT);
    assert_eq!(ClusterSettings::DEFAULT.enabled, ClusterMode::Auto);
    assert_eq!(Config::default_config().cluster, ClusterSettings::DEFAULT);
}

#[test]
fn cluster_every_field() {
    for (text, mode) in [
        ("auto", ClusterMode::Auto),
        ("on", ClusterMode::On),
        ("off", ClusterMode::Off),
    ] {
        let c = parse(&format!(
            "cluster:\n  enabled: {text}\n  node_name: worker-1.example\n  resync_s: 120\n  stale_after_s: 5\n"
        ))
        .cluster;
        assert_eq!(
            c,
            ClusterSettings {
                enabled: mode,
                node_name: Some("worker-1.example".into()),
                resync: Duration::from_secs(120),
                stale_after: Duration::from_secs(5),
                ..ClusterSettings::DEFAULT
            }
        );
    }
}

#[test]
fn cluster_errors_name_line_column_and_field() {
    assert_error(
        "cluster:\n  enabled: maybe\n",
        2,
        12,
        "cluster.enabled",
        "unknown value `maybe`: expected one of auto, on, off",
    );
    assert_error(
        "cluster:\n  node_name: Worker_1\n",
        2,
        14,
        "cluster.node_name",
        "is not a Kubernetes node name",
    );
    assert_error(
        "cluster:\n  resync_s: 5\n",
        2,
        13,
        "cluster.resync_s",
        "5 is out of range: must be between 60 and 86400",
    );
    assert_error(
        "cluster:\n  stale_after_s: 0\n",
        2,
        18,
        "cluster.stale_after_s",
        "must be between 1 and 3600",
    );
    let errors = Config::from_yaml("cluster:\n  enabeld: on\n", "test.yaml").unwrap_err();
    assert!(errors.to_string().contains("enabeld"), "{errors}");
}

#[test]
fn cluster_change_needs_a_restart_and_changes_the_digest() {
    let a = parse(EXAMPLE);
    let b = parse(&format!("{EXAMPLE}cluster: {{enabled: off}}\n"));
    assert_ne!(a.digest(), b.digest());
    assert_eq!(a.reload_plan(&b).restart_required, ["cluster"]);
    assert!(b.canonical().contains("cluster enabled=off"));
}

#[test]
fn cluster_sets_and_pod_selectors_parse() {
    let c = parse(
        r#"groups:
  kubelet:
    protocols: [tcp]
    ports: [10250]
    allow:
      - control-plane-nodes
      - apiserver-endpoints
      - nodes
      - pod-cidrs
      - {pods: {namespace: kube-system, selector: "k8s-app=metrics-server, tier==monitoring"}}
"#,
    );
    let allow = &c.groups[0].allow;
    assert_eq!(
        allow[..4],
        [
            AllowEntry::Set(SymbolicSet::ControlPlaneNodes),
            AllowEntry::Set(SymbolicSet::ApiserverEndpoints),
            AllowEntry::Set(SymbolicSet::Nodes),
            AllowEntry::Set(SymbolicSet::PodCidrs),
        ]
    );
    let sel = PodSelector {
        namespace: "kube-system".into(),
        labels: vec![
            ("k8s-app".into(), "metrics-server".into()),
            ("tier".into(), "monitoring".into()),
        ],
    };
    assert_eq!(allow[4], AllowEntry::Pods(sel.clone()));
    assert!(c.uses_cluster_sets());
    assert_eq!(c.pod_selectors(), std::slice::from_ref(&sel));
    assert!(!parse(EXAMPLE).uses_cluster_sets());
    // The canonical form spells the selector out.
    assert!(
        c.canonical().contains(
            r#"allow=control-plane-nodes,apiserver-endpoints,nodes,pod-cidrs,{pods: {namespace: kube-system, selector: "k8s-app=metrics-server,tier=monitoring"}}"#
        ),
        "{}",
        c.canonical()
    );
    // Resolved with the values the daemon gives; without them, to nothing.
    let sets = SetValues {
        control_plane_nodes: vec![net("198.51.100.10/32")],
        nodes: vec![net("198.51.100.10/32"), net("2001:db8::20/128")],
        pod_cidrs: vec![net("203.0.113.64/26")],
        apiserver_endpoints: vec![net("198.51.100.10/32")],
        pods: vec![(sel, vec![net("203.0.113.66/32")])],
        ..SetValues::default()
    };
    assert_eq!(
        c.resolve_allowlists_with(&sets),
        [
            (1, net("198.51.100.10/32")),
            (1, net("2001:db8::20/128")),
            (1, net("203.0.113.64/26")),
            (1, net("203.0.113.66/32")),
        ]
    );
    assert!(c.resolve_allowlists(&[]).is_empty());
}

#[test]
fn pod_selector_errors_name_line_column_and_field() {
    let g = "groups:\n  kubelet:\n    protocols: [tcp]\n    ports: [10250]\n    allow:\n";
    assert_error(
        &format!("{g}      - {{pods: {{namespace: Bad_NS, selector: \"a=b\"}}}}\n"),
        6,
        28,
        "groups.kubelet.allow[0].pods.namespace",
        "is not a namespace name",
    );
    assert_error(
        &format!("{g}      - {{pods: {{namespace: shop, selector: \"app!=web\"}}}}\n"),
        6,
        44,
        "groups.kubelet.allow[0].pods.selector",
        "is not a valid label key and value",
    );
    assert_error(
        &format!("{g}      - {{pods: {{namespace: shop, selector: \"app\"}}}}\n"),
        6,
        44,
        "groups.kubelet.allow[0].pods.selector",
        "only equality selectors are supported",
    );
    assert_error(
        &format!("{g}      - {{pods: {{namespace: shop}}}}\n"),
        6,
        9,
        "groups.kubelet.allow[0].pods.selector",
        "missing",
    );
    assert_error(
        &format!("{g}      - control-plane-node\n"),
        6,
        9,
        "groups.kubelet.allow[0]",
        "unknown symbolic set `control-plane-node`: known sets are localhost, node-subnets, control-plane-nodes, nodes, pod-cidrs, apiserver-endpoints",
    );
    let errors = Config::from_yaml(&format!("{g}      - {{nodes: {{}}}}\n"), "test.yaml")
        .unwrap_err()
        .to_string();
    assert!(errors.contains("nodes"), "{errors}");
}

#[test]
fn the_default_with_a_cluster_uses_the_cluster_sets() {
    let c = Config::default_config().with_cluster_defaults();
    let allow = |name: &str| {
        c.groups
            .iter()
            .find(|g| g.name == name)
            .unwrap()
            .allow
            .clone()
    };
    assert_eq!(
        allow("kubelet"),
        [
            AllowEntry::Set(SymbolicSet::ControlPlaneNodes),
            AllowEntry::Set(SymbolicSet::ApiserverEndpoints),
            AllowEntry::Set(SymbolicSet::Nodes),
        ]
    );
    for etcd in ["etcd-client", "etcd-peer"] {
        assert_eq!(
            allow(etcd),
            [AllowEntry::Set(SymbolicSet::ControlPlaneNodes)]
        );
    }
    // Everything else as without a cluster.
    let plain = Config::default_config();
    assert_eq!(allow("apiserver"), plain.groups[3].allow);
    assert_eq!(
        allow("kubelet-healthz"),
        [AllowEntry::Set(SymbolicSet::Localhost)]
    );
    assert!(c.uses_cluster_sets() && !plain.uses_cluster_sets());
}
