//! The cluster cache against an in-process API server (`testing::fake_api`) that lists and watches as
//! the real one does: what each address resolves to, through adds, updates, deletes, IP
//! reuse, dual stack, host networking, NodePort changes, node labels, and an API server that
//! goes away and comes back.
use std::{net::IpAddr, time::Duration};

use super::{
    Backoff, Cluster, Kind, Snapshot, View, WatchState, set_values,
    testing::{
        FakeApi,
        objects::{PodSpec, apiserver_slice, job, label, node, other_slice, replicaset, service},
    },
};
use crate::{
    config::{ClusterMode, ClusterSettings, Config, Protocol},
    record::SourceIdentity,
};

/// Short enough for tests, long enough not to spin.
const FAST: Backoff = Backoff {
    min: Duration::from_millis(50),
    max: Duration::from_millis(300),
};

fn settings() -> ClusterSettings {
    ClusterSettings {
        enabled: ClusterMode::On,
        node_name: Some("worker-1".into()),
        resync: Duration::from_secs(600),
        stale_after: Duration::from_secs(1),
        ..ClusterSettings::DEFAULT
    }
}

fn start(api: &FakeApi) -> Cluster {
    Cluster::start(&api.client(), &settings(), Some("worker-1".into()), FAST)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Waits (at most 10 s, polling every 20 ms) until `f` holds on the cache's view.
async fn until(cluster: &Cluster, what: &str, f: impl Fn(&View) -> bool) {
    for _ in 0..500 {
        if f(&cluster.view()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "timed out waiting until {what}; status: {:#?}",
        cluster.status()
    );
}

/// What an address resolves to, in one line: `pod ns/name Kind/workload @node`,
/// `node name [roles]`, `host_network node`, `external`, `unresolved`.
fn who(v: &View, addr: &str) -> String {
    match v.source(ip(addr)) {
        SourceIdentity::Pod(p) => format!(
            "pod {}/{} {}/{} @{}",
            p.namespace,
            p.name,
            p.workload.kind,
            p.workload.name,
            p.node.as_deref().unwrap_or("-")
        ),
        SourceIdentity::Node(n) => format!("node {} {:?}", n.name, n.roles),
        SourceIdentity::HostNetwork(n) => format!("host_network {}", n.name),
        other => other.kind().to_owned(),
    }
}

fn synced(v: &View) -> bool {
    v.cache().synced
}

/// The dual-stack worker of [`seed`].
fn worker_1() -> serde_json::Value {
    node(
        "worker-1",
        &[
            ("InternalIP", "198.51.100.20"),
            ("InternalIP", "2001:db8:1::20"),
            ("ExternalIP", "198.51.100.120"),
        ],
        &["203.0.113.64/26", "2001:db8:64::/64"],
        &["worker"],
    )
}

/// A small cluster: a control plane and a dual-stack worker, pods of every kind of owner.
fn seed(api: &FakeApi) {
    api.apply(
        "nodes",
        node(
            "cp-1",
            &[("InternalIP", "198.51.100.10")],
            &["203.0.113.0/26"],
            &["control-plane"],
        ),
    );
    api.apply("nodes", worker_1());
    api.apply("replicasets", replicaset("shop", "web-6b7d9c", Some("web")));
    api.apply("replicasets", replicaset("shop", "lone-5f5f5f", None));
    api.apply("jobs", job("batch", "report-28900000", Some("report")));
    api.apply("jobs", job("batch", "once", None));
    let pods = [
        PodSpec {
            owner: Some(("ReplicaSet", "web-6b7d9c")),
            ..PodSpec::new(
                "shop",
                "web-6b7d9c-x2x9z",
                "worker-1",
                &["203.0.113.66", "2001:db8:64::66"],
            )
        },
        PodSpec {
            owner: Some(("ReplicaSet", "lone-5f5f5f")),
            ..PodSpec::new("shop", "lone-5f5f5f-aaaaa", "worker-1", &["203.0.113.67"])
        },
        PodSpec {
            owner: Some(("StatefulSet", "db")),
            ..PodSpec::new("shop", "db-0", "worker-1", &["203.0.113.68"])
        },
        PodSpec {
            owner: Some(("DaemonSet", "agent")),
            ..PodSpec::new("kube-system", "agent-q7k2p", "cp-1", &["203.0.113.5"])
        },
        PodSpec {
            owner: Some(("Job", "report-28900000")),
            ..PodSpec::new(
                "batch",
                "report-28900000-abcde",
                "worker-1",
                &["203.0.113.69"],
            )
        },
        PodSpec {
            owner: Some(("Job", "once")),
            ..PodSpec::new("batch", "once-zzzzz", "worker-1", &["203.0.113.70"])
        },
        PodSpec::new("default", "bare", "worker-1", &["203.0.113.71"]),
        PodSpec {
            host_network: true,
            owner: Some(("DaemonSet", "kube-proxy")),
            ..PodSpec::new(
                "kube-system",
                "kube-proxy-w1",
                "worker-1",
                &["198.51.100.20", "2001:db8:1::20"],
            )
        },
    ];
    for p in &pods {
        api.apply("pods", p.json());
    }
    api.apply(
        "services",
        service(
            "shop",
            "web",
            &[(80, 30080, "TCP"), (53, 30053, "UDP")],
            "Local",
            &[],
        ),
    );
    api.apply(
        "endpointslices",
        apiserver_slice("kubernetes", &["198.51.100.10"]),
    );
    api.apply(
        "endpointslices",
        other_slice("shop-abcde", &["203.0.113.66"]),
    );
}

#[tokio::test]
async fn every_kind_of_source_resolves_after_a_chunked_list() {
    // Pages of two items: every list takes several `continue` requests.
    let api = FakeApi::start(2).await;
    seed(&api);
    let cluster = start(&api);
    until(&cluster, "synced", synced).await;
    until(&cluster, "the index is built", |v| {
        who(v, "203.0.113.71") != "external"
    })
    .await;
    let v = cluster.view();
    assert_eq!(
        who(&v, "203.0.113.66"),
        "pod shop/web-6b7d9c-x2x9z Deployment/web @worker-1"
    );
    // Dual stack: the pod's IPv6 address names it too.
    assert_eq!(
        who(&v, "2001:db8:64::66"),
        "pod shop/web-6b7d9c-x2x9z Deployment/web @worker-1"
    );
    assert_eq!(
        who(&v, "203.0.113.67"),
        "pod shop/lone-5f5f5f-aaaaa ReplicaSet/lone-5f5f5f @worker-1"
    );
    assert_eq!(
        who(&v, "203.0.113.68"),
        "pod shop/db-0 StatefulSet/db @worker-1"
    );
    assert_eq!(
        who(&v, "203.0.113.5"),
        "pod kube-system/agent-q7k2p DaemonSet/agent @cp-1"
    );
    assert_eq!(
        who(&v, "203.0.113.69"),
        "pod batch/report-28900000-abcde CronJob/report @worker-1"
    );
    assert_eq!(
        who(&v, "203.0.113.70"),
        "pod batch/once-zzzzz Job/once @worker-1"
    );
    assert_eq!(
        who(&v, "203.0.113.71"),
        "pod default/bare Pod/bare @worker-1"
    );
    // A node's addresses, both families, Internal and External; a host-network pod there
    // makes it "node X (host network)", never that pod.
    assert_eq!(who(&v, "198.51.100.10"), r#"node cp-1 ["control-plane"]"#);
    assert_eq!(who(&v, "198.51.100.120"), r#"node worker-1 ["worker"]"#);
    assert_eq!(who(&v, "198.51.100.20"), "host_network worker-1");
    assert_eq!(who(&v, "2001:db8:1::20"), "host_network worker-1");
    // In a pod CIDR but held by no pod: not known; elsewhere: outside the cluster.
    assert_eq!(who(&v, "203.0.113.99"), "unresolved");
    assert_eq!(who(&v, "2001:db8:64::99"), "unresolved");
    assert_eq!(who(&v, "198.51.100.200"), "external");
    assert_eq!(who(&v, "2001:db8:ffff::1"), "external");
    // NodePorts name their Service, per protocol; the destination is this node.
    let id = v.identify(ip("198.51.100.200"), 30080, Protocol::Tcp);
    let svc = id.destination.service.unwrap();
    assert_eq!((&*svc.namespace, &*svc.name), ("shop", "web"));
    assert_eq!(svc.external_traffic_policy.as_deref(), Some("Local"));
    assert_eq!(id.destination.node.as_deref(), Some("worker-1"));
    assert!(
        v.identify(ip("198.51.100.200"), 30053, Protocol::Udp)
            .destination
            .service
            .is_some()
    );
    assert!(
        v.identify(ip("198.51.100.200"), 30053, Protocol::Tcp)
            .destination
            .service
            .is_none()
    );
    assert!(
        v.identify(ip("198.51.100.200"), 30081, Protocol::Tcp)
            .destination
            .service
            .is_none()
    );
    // A batch: a run of one source to one port shares one identity; any other record (a
    // new source, port or protocol, or the same key after another) gets its own, and each
    // is what `enrich` alone would set.
    let mut batch: Vec<_> = [
        ("198.51.100.200", 30080),
        ("198.51.100.200", 30080),
        ("198.51.100.200", 30081),
        ("203.0.113.67", 30081),
        ("198.51.100.200", 30080),
    ]
    .iter()
    .map(|(src, port)| crate::record::fixture::flagged_from("nodeport", ip(src), *port))
    .collect();
    batch[4].protocol = Protocol::Udp;
    v.enrich_all(&mut batch);
    let ids: Vec<_> = batch.iter().map(|r| r.identity.clone().unwrap()).collect();
    assert!(std::sync::Arc::ptr_eq(&ids[0], &ids[1]));
    for (a, b) in [(1, 2), (2, 3), (3, 4), (0, 4)] {
        assert!(!std::sync::Arc::ptr_eq(&ids[a], &ids[b]), "{a} and {b}");
    }
    for r in &batch {
        let mut alone = r.clone();
        v.enrich(&mut alone);
        assert_eq!(alone.identity, r.identity);
    }
    assert_eq!(
        ids[1].destination.service.as_ref().map(|s| &*s.name),
        Some("web")
    );
    assert!(
        ids[4].destination.service.is_none(),
        "30080/udp is no Service's"
    );
    // The allow sets.
    let s = cluster.snapshot();
    assert_eq!(s.control_plane_nodes, [ip("198.51.100.10")]);
    assert_eq!(
        s.nodes,
        [
            ip("198.51.100.10"),
            ip("198.51.100.20"),
            ip("198.51.100.120"),
            ip("2001:db8:1::20")
        ]
    );
    assert_eq!(
        s.apiserver_endpoints,
        [ip("198.51.100.10")],
        "only default/kubernetes slices"
    );
    assert_eq!(s.pod_cidrs.len(), 3);
    let c = s.counts;
    assert_eq!(
        (
            c.nodes,
            c.pods,
            c.services,
            c.endpointslices,
            c.replicasets,
            c.jobs
        ),
        (2, 8, 1, 1, 2, 2)
    );
    // The lists really were chunked, and metadata-only kinds were listed.
    let reqs = api.requests();
    assert!(
        reqs.iter().filter(|r| *r == "LIST pods").count() >= 4,
        "{reqs:?}"
    );
    assert!(reqs.iter().any(|r| r == "LIST replicasets"), "{reqs:?}");
    let status = cluster.status();
    assert!(
        status
            .kinds
            .iter()
            .all(|(_, s)| s.state == WatchState::Synced && s.last_sync.is_some())
    );
    assert!(status.cache.synced && !status.cache.stale && status.cache.age.is_zero());
}

#[tokio::test]
async fn adds_updates_and_deletes_apply_in_order_and_a_reused_ip_names_the_newest_pod() {
    let api = FakeApi::start(500).await;
    api.apply(
        "nodes",
        node(
            "worker-1",
            &[("InternalIP", "198.51.100.20")],
            &["203.0.113.64/26"],
            &[],
        ),
    );
    let cluster = start(&api);
    until(&cluster, "synced", synced).await;
    assert_eq!(who(&cluster.view(), "203.0.113.80"), "unresolved");
    // Added while watching.
    let old = PodSpec {
        created: "2026-12-01T10:00:00Z",
        ..PodSpec::new("shop", "old-1", "worker-1", &["203.0.113.80"])
    };
    api.apply("pods", old.json());
    until(&cluster, "the new pod resolves", |v| {
        who(v, "203.0.113.80") == "pod shop/old-1 Pod/old-1 @worker-1"
    })
    .await;
    // Updated: its owner appears (a Deployment adopting it through a ReplicaSet).
    api.apply("replicasets", replicaset("shop", "old-rs", Some("old")));
    api.apply(
        "pods",
        PodSpec {
            owner: Some(("ReplicaSet", "old-rs")),
            ..old
        }
        .json(),
    );
    until(&cluster, "the update shows", |v| {
        who(v, "203.0.113.80") == "pod shop/old-1 Deployment/old @worker-1"
    })
    .await;
    // The IP is reused by a newer pod while the old one still terminates: the newest
    // running pod wins; a newer pod that is not running yet does not.
    let newer = PodSpec {
        created: "2026-12-01T11:00:00Z",
        phase: "Pending",
        ..PodSpec::new("shop", "new-1", "worker-1", &["203.0.113.80"])
    };
    api.apply("pods", newer.json());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        who(&cluster.view(), "203.0.113.80"),
        "pod shop/old-1 Deployment/old @worker-1"
    );
    api.apply(
        "pods",
        PodSpec {
            phase: "Running",
            ..newer
        }
        .json(),
    );
    until(&cluster, "the newer running pod wins", |v| {
        who(v, "203.0.113.80") == "pod shop/new-1 Pod/new-1 @worker-1"
    })
    .await;
    // The old one finishing changes nothing; the new one's deletion leaves the address to
    // the old one until that is deleted too.
    api.apply(
        "pods",
        PodSpec {
            phase: "Succeeded",
            owner: Some(("ReplicaSet", "old-rs")),
            ..old
        }
        .json(),
    );
    api.delete("pods", "shop", "new-1");
    until(&cluster, "a finished pod holds no address", |v| {
        who(v, "203.0.113.80") == "unresolved"
    })
    .await;
    api.apply(
        "pods",
        PodSpec {
            owner: Some(("ReplicaSet", "old-rs")),
            ..old
        }
        .json(),
    );
    until(&cluster, "back", |v| {
        who(v, "203.0.113.80") == "pod shop/old-1 Deployment/old @worker-1"
    })
    .await;
    api.delete("pods", "shop", "old-1");
    until(&cluster, "deleted", |v| {
        who(v, "203.0.113.80") == "unresolved"
    })
    .await;
}

#[tokio::test]
async fn host_network_pods_name_their_node_and_nodeport_changes_follow() {
    let api = FakeApi::start(500).await;
    api.apply(
        "nodes",
        node("worker-2", &[("InternalIP", "2001:db8:2::2")], &[], &[]),
    );
    api.apply(
        "services",
        service("shop", "web", &[(80, 30080, "TCP")], "Cluster", &[]),
    );
    let cluster = start(&api);
    until(&cluster, "synced", synced).await;
    until(&cluster, "node", |v| {
        who(v, "2001:db8:2::2") == "node worker-2 []"
    })
    .await;
    api.apply(
        "pods",
        PodSpec {
            host_network: true,
            ..PodSpec::new("kube-system", "cilium-x", "worker-2", &["2001:db8:2::2"])
        }
        .json(),
    );
    until(&cluster, "host network", |v| {
        who(v, "2001:db8:2::2") == "host_network worker-2"
    })
    .await;
    let svc = |v: &View, port| {
        v.identify(ip("198.51.100.1"), port, Protocol::Tcp)
            .destination
            .service
            .map(|s| {
                format!(
                    "{}/{} {}",
                    s.namespace,
                    s.name,
                    s.external_traffic_policy.as_deref().unwrap_or("-")
                )
            })
    };
    until(&cluster, "service", |v| {
        svc(v, 30080).as_deref() == Some("shop/web Cluster")
    })
    .await;
    // The Service moves to another NodePort (and another policy): the old port is free.
    api.apply(
        "services",
        service("shop", "web", &[(80, 30081, "TCP")], "Local", &[]),
    );
    until(&cluster, "the NodePort moved", |v| {
        svc(v, 30081).as_deref() == Some("shop/web Local") && svc(v, 30080).is_none()
    })
    .await;
    api.delete("services", "shop", "web");
    until(&cluster, "service gone", |v| svc(v, 30081).is_none()).await;
}

#[tokio::test]
async fn a_node_gaining_the_control_plane_label_joins_the_set() {
    let api = FakeApi::start(500).await;
    let n = node(
        "worker-3",
        &[
            ("InternalIP", "198.51.100.30"),
            ("InternalIP", "2001:db8:3::30"),
        ],
        &[],
        &[],
    );
    api.apply("nodes", n.clone());
    let cluster = start(&api);
    until(&cluster, "synced", synced).await;
    until(&cluster, "node", |v| {
        who(v, "198.51.100.30") == "node worker-3 []"
    })
    .await;
    assert!(cluster.snapshot().control_plane_nodes.is_empty());
    let generation = cluster.generation();
    api.apply(
        "nodes",
        label(n, "node-role.kubernetes.io/control-plane", ""),
    );
    until(&cluster, "labelled", |v| {
        who(v, "198.51.100.30") == r#"node worker-3 ["control-plane"]"#
    })
    .await;
    assert_eq!(
        cluster.snapshot().control_plane_nodes,
        [ip("198.51.100.30"), ip("2001:db8:3::30")]
    );
    assert!(
        cluster.generation() > generation,
        "a new snapshot was published"
    );
}

#[tokio::test]
async fn an_api_server_that_goes_away_and_comes_back() {
    let mut api = FakeApi::start(500).await;
    seed(&api);
    let cluster = start(&api);
    until(&cluster, "synced", synced).await;
    until(&cluster, "indexed", |v| {
        who(v, "203.0.113.71") == "pod default/bare Pod/bare @worker-1"
    })
    .await;
    // Away: lookups go on from the last snapshot, and say it is stale, with its age.
    api.stop().await;
    until(&cluster, "stale", |v| v.cache().stale).await;
    let v = cluster.view();
    assert_eq!(
        who(&v, "203.0.113.71"),
        "pod default/bare Pod/bare @worker-1"
    );
    assert!(v.cache().synced && v.cache().age > Duration::from_secs(1));
    assert!(
        cluster
            .status()
            .kinds
            .iter()
            .any(|(_, s)| s.state == WatchState::Failing && s.errors > 0)
    );
    // Back, with what happened meanwhile: the watches resume from their resourceVersion.
    api.restart().await;
    api.apply(
        "pods",
        PodSpec::new("default", "late", "worker-1", &["203.0.113.72"]).json(),
    );
    until(&cluster, "fresh again", |v| {
        !v.cache().stale && v.cache().age.is_zero()
    })
    .await;
    until(&cluster, "the change made while away", |v| {
        who(v, "203.0.113.72") == "pod default/late Pod/late @worker-1"
    })
    .await;
    let reqs = api.requests();
    let pod_lists = reqs.iter().filter(|r| *r == "LIST pods").count();
    assert!(
        reqs.iter().any(|r| r.starts_with("WATCH pods rv=")
            && r != "WATCH pods rv="
            && r != "WATCH pods rv=0"),
        "watches resume from a resourceVersion: {reqs:?}"
    );
    // Away again; meanwhile a pod is deleted and the history compacted, so resuming gets
    // 410 Gone: the cache relists, and the deletion it never saw as an event is applied.
    api.stop().await;
    until(&cluster, "stale again", |v| v.cache().stale).await;
    api.restart().await;
    api.stop().await;
    api.delete("pods", "default", "bare");
    api.compact();
    api.restart().await;
    until(&cluster, "the relist dropped the deleted pod", |v| {
        who(v, "203.0.113.71") == "unresolved"
    })
    .await;
    let reqs = api.requests();
    assert!(reqs.iter().any(|r| r.starts_with("410 pods")), "{reqs:?}");
    assert!(
        reqs.iter().filter(|r| *r == "LIST pods").count() > pod_lists,
        "relisted: {reqs:?}"
    );
    assert!(cluster.status().kinds[Kind::Pod as usize].1.lists >= 2);
}

#[tokio::test]
async fn forbidden_kinds_keep_the_cache_unsynced_and_lookups_unblocked() {
    let api = FakeApi::start(500).await;
    seed(&api);
    api.forbid("jobs", true);
    let cluster = start(&api);
    until(&cluster, "the other kinds are listed", |_| {
        cluster
            .status()
            .kinds
            .iter()
            .filter(|(_, s)| s.synced_once)
            .count()
            == 5
    })
    .await;
    until(&cluster, "indexed", |v| {
        who(v, "203.0.113.66").starts_with("pod shop/web")
    })
    .await;
    // The forbidden watch reports its 403 on its own schedule, after the others may have
    // synced: wait for it rather than race it.
    until(&cluster, "the jobs watch failing", |_| {
        cluster.status().kinds[Kind::Job as usize].1.state == WatchState::Failing
    })
    .await;
    let st = cluster.status();
    let (_, jobs) = st.kinds[Kind::Job as usize];
    assert_eq!(jobs.state, WatchState::Failing);
    assert!(!st.cache.synced);
    // Not synced: an unknown address is unresolved, never external.
    assert_eq!(who(&cluster.view(), "198.51.100.200"), "unresolved");
    // A Job's pod names its Job while the Job is unknown.
    assert_eq!(
        who(&cluster.view(), "203.0.113.69"),
        "pod batch/report-28900000-abcde Job/report-28900000 @worker-1"
    );
    // A lookup never waits on the stores, even while a watch holds them.
    {
        let _held = cluster.shared.stores.lock().unwrap();
        let t = std::time::Instant::now();
        assert!(who(&cluster.view(), "203.0.113.66").starts_with("pod"));
        assert!(t.elapsed() < Duration::from_millis(50));
    }
    api.forbid("jobs", false);
    until(&cluster, "synced once allowed", synced).await;
    until(&cluster, "the CronJob is found", |v| {
        who(v, "203.0.113.69").contains("CronJob/report")
    })
    .await;
}

#[tokio::test]
async fn allow_sets_follow_the_cluster() {
    let cfg = Config::from_yaml(
        r#"groups:
  kubelet: {protocols: [tcp], ports: [10250], allow: [control-plane-nodes, apiserver-endpoints, nodes, {pods: {namespace: shop, selector: "app=web"}}]}
  etcd-peer: {protocols: [tcp], ports: [2380], allow: [control-plane-nodes]}
  kube-proxy-healthz: {protocols: [tcp], ports: [10256], allow: [pod-cidrs]}
"#,
        "test.yaml",
    )
    .unwrap();
    let net = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
    let subnets = [net("198.51.100.0/24")];
    // Before the first lists are in, the cluster sets stand in for node-subnets.
    let before = set_values(&Snapshot::default(), &cfg, &subnets);
    assert_eq!(before.control_plane_nodes, subnets);
    assert_eq!(before.nodes, subnets);
    assert!(before.pods.is_empty());
    let api = FakeApi::start(500).await;
    seed(&api);
    let cluster = start(&api);
    until(&cluster, "synced and indexed", |v| {
        v.cache().synced && who(v, "203.0.113.66").starts_with("pod")
    })
    .await;
    let sets = set_values(&cluster.snapshot(), &cfg, &subnets);
    assert_eq!(sets.control_plane_nodes, [net("198.51.100.10/32")]);
    assert_eq!(sets.apiserver_endpoints, [net("198.51.100.10/32")]);
    assert_eq!(sets.nodes.len(), 4);
    assert_eq!(
        sets.pod_cidrs,
        [
            net("203.0.113.0/26"),
            net("203.0.113.64/26"),
            net("2001:db8:64::/64")
        ]
    );
    assert_eq!(sets.pods.len(), 1);
    assert_eq!(
        sets.pods[0].1,
        [net("203.0.113.66/32"), net("2001:db8:64::66/128")]
    );
    let etcd = |sets| {
        cfg.resolve_allowlists_with(sets)
            .into_iter()
            .filter(|(g, _)| *g == 2)
            .map(|(_, n)| n)
            .collect::<Vec<_>>()
    };
    assert_eq!(etcd(&sets), [net("198.51.100.10/32")]);
    // The worker gains the control-plane label: its addresses join etcd's allowlist.
    let generation = cluster.generation();
    api.apply(
        "nodes",
        label(worker_1(), "node-role.kubernetes.io/control-plane", ""),
    );
    until(&cluster, "the new control-plane node is in the set", |_| {
        set_values(&cluster.snapshot(), &cfg, &subnets)
            .control_plane_nodes
            .len()
            == 4
    })
    .await;
    assert!(cluster.generation() > generation);
    let sets = set_values(&cluster.snapshot(), &cfg, &subnets);
    assert_eq!(
        etcd(&sets),
        [
            net("198.51.100.10/32"),
            net("198.51.100.20/32"),
            net("198.51.100.120/32"),
            net("2001:db8:1::20/128")
        ]
    );
    // A new pod of the selected app joins its set; one of another app does not.
    api.apply(
        "pods",
        PodSpec::new("shop", "web-6b7d9c-k8k8k", "worker-1", &["203.0.113.90"]).json(),
    );
    api.apply(
        "pods",
        PodSpec::new("shop", "cart-1", "worker-1", &["203.0.113.91"]).json(),
    );
    until(&cluster, "the new web pod is in the set", |_| {
        set_values(&cluster.snapshot(), &cfg, &subnets).pods[0]
            .1
            .contains(&net("203.0.113.90/32"))
    })
    .await;
    assert!(
        !set_values(&cluster.snapshot(), &cfg, &subnets).pods[0]
            .1
            .contains(&net("203.0.113.91/32"))
    );
}

#[test]
fn cluster_metrics_render() {
    use crate::metrics::{ClusterKindSnapshot, ClusterSnapshot, Metrics, Snapshot as Counters};
    let m = Metrics::new();
    m.update(&Counters {
        cluster: Some(ClusterSnapshot {
            kinds: vec![
                ClusterKindSnapshot {
                    kind: "pod",
                    state: "failing",
                    objects: 8,
                    last_sync_unix_s: 1_764_800_000,
                    errors: 3,
                    lists: 2,
                },
                ClusterKindSnapshot {
                    kind: "node",
                    state: "synced",
                    objects: 2,
                    last_sync_unix_s: 1_764_800_001,
                    errors: 0,
                    lists: 1,
                },
            ],
            synced: true,
            cache_age_s: 42,
            cache_bytes: 123_456,
            node_port_ranges: None,
            node_port_ranges_write_failures: 0,
        }),
        ..Counters::default()
    });
    let text = m.render_text();
    for line in [
        "node_monitor_cluster_watch_state{kind=\"pod\",state=\"failing\"} 1",
        "node_monitor_cluster_watch_state{kind=\"pod\",state=\"synced\"} 0",
        "node_monitor_cluster_watch_state{kind=\"node\",state=\"synced\"} 1",
        "node_monitor_cluster_objects{kind=\"pod\"} 8",
        "node_monitor_cluster_last_sync_timestamp_seconds{kind=\"node\"} 1764800001",
        "node_monitor_cluster_watch_errors_total{kind=\"pod\"} 3",
        "node_monitor_cluster_lists_total{kind=\"pod\"} 2",
        "node_monitor_cluster_synced 1",
        "node_monitor_cluster_cache_age_seconds 42",
        "node_monitor_cluster_cache_bytes 123456",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    // Without a cluster, none of these families.
    let m = Metrics::new();
    m.update(&Counters::default());
    assert!(!m.render_text().contains("node_monitor_cluster_"));
}

/// A watch event that arrives while an index is being built is taken at once (pushed to the
/// builder's inbox) rather than waiting for the build, which holds the stores throughout;
/// the next build applies it.
#[test]
fn a_watch_event_is_taken_while_an_index_build_runs() {
    use std::sync::mpsc;

    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::watcher::Event;

    use super::{Shared, objects::PodObj, store::Change, testing::synthetic, watch::deliver};

    let shared = Shared::new();
    let (stores, _) = synthetic::stores(10, 2_000, 10);
    *shared.stores.lock().unwrap() = stores;
    let pod: Pod = serde_json::from_value(
        PodSpec::new("shop", "late-pod", "node-1", &["198.51.100.77"]).json(),
    )
    .unwrap();
    let change = Change::Pod(Event::Apply(PodObj::from(&pod)));

    let (in_build, build_seen) = mpsc::channel();
    let (finish, may_finish) = mpsc::channel::<()>();
    let (taken, event_taken) = mpsc::channel();
    std::thread::scope(|s| {
        let shared = &shared;
        let builder = s.spawn(move || {
            shared.rebuild(true, move || {
                // Mid-build, the stores held: let the watch deliver, then wait for the word.
                in_build.send(()).unwrap();
                may_finish.recv().unwrap();
            })
        });
        build_seen.recv().unwrap();
        let watch = s.spawn(move || {
            deliver(shared, Kind::Pod, change, false, false);
            taken.send(()).unwrap();
        });
        // A bound on a hang, not a measure of speed: a watch that waited on the build would
        // wait here until the build is told to finish below.
        let delivered = event_taken.recv_timeout(Duration::from_secs(30)).is_ok();
        let build_still_running = !builder.is_finished();
        finish.send(()).unwrap();
        watch.join().unwrap();
        let first = builder.join().unwrap().expect("the first build publishes");
        assert!(delivered, "the watch event waited for the index build");
        assert!(build_still_running);
        assert_eq!(
            shared.inbox.lock().unwrap().len(),
            1,
            "the event is in the inbox"
        );
        // The build that was running started before the event: it does not have the pod.
        assert!(first.address(ip("198.51.100.77")).is_none());
        assert_eq!(first.counts.pods, 2_000);
    });
    // The next build applies it.
    let next = shared.rebuild(true, || {}).expect("a change to build");
    assert!(shared.inbox.lock().unwrap().is_empty());
    assert_eq!(next.counts.pods, 2_001);
    assert!(matches!(
        next.address(ip("198.51.100.77")),
        Some(SourceIdentity::Pod(p)) if &*p.name == "late-pod"
    ));
    // Published, as the builder does; then nothing new means no build.
    *shared.snapshot.write().unwrap() = std::sync::Arc::new(next);
    assert!(shared.rebuild(true, || {}).is_none());
}
