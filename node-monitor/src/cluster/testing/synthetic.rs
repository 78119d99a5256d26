//! A synthetic cluster for the identity bench: nodes, pods (of Deployments) and NodePort
//! Services, built straight into the stores (no API server), addresses from 2001:db8::/32.
use std::{
    any::Any,
    collections::BTreeMap,
    net::{IpAddr, Ipv6Addr},
    sync::Arc,
};

use crate::{
    cluster::{
        index::Snapshot,
        lookup::View,
        objects::{NodeObj, NodePort, OwnerObj, PodObj, ServiceObj},
        store::Stores,
    },
    config::Protocol,
    record::CacheState,
};

/// The stores (held, as the daemon holds them beside the index) and the index built from them.
pub struct Synthetic {
    pub stores: Box<dyn Any + Send>,
    pub snapshot: Arc<Snapshot>,
    /// Every pod address, for lookups.
    pub pod_ips: Vec<IpAddr>,
}

impl Synthetic {
    /// A view of the index, as the daemon takes one per batch of records.
    pub fn view(&self) -> View {
        View::new(
            Arc::clone(&self.snapshot),
            CacheState {
                synced: true,
                age: std::time::Duration::ZERO,
                stale: false,
            },
            Some(Arc::from("node-0")),
        )
    }
}

fn v6(a: u16, b: u16, c: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, a, b, 0, 0, 0, c))
}

/// Stores with `nodes` nodes, `pods` pods spread over them (100 per ReplicaSet of a
/// Deployment), and `services` NodePort Services; then the index built from them, timed by
/// the caller.
pub fn stores(nodes: usize, pods: usize, services: usize) -> (Stores, Vec<IpAddr>) {
    let mut s = Stores::default();
    let ns: Arc<str> = Arc::from("bench");
    let idx = |i: usize| u16::try_from(i).unwrap_or(u16::MAX);
    for n in 0..nodes {
        let name: Arc<str> = Arc::from(format!("node-{n}"));
        s.nodes.live.insert(
            Arc::clone(&name),
            NodeObj {
                name,
                addresses: vec![v6(1, idx(n), 1)],
                control_plane: n < 3,
                roles: vec![Arc::from(if n < 3 { "control-plane" } else { "worker" })],
                pod_cidrs: vec![format!("2001:db8:2:{n:x}::/64").parse().unwrap()],
            },
        );
    }
    let mut ips = Vec::with_capacity(pods);
    for p in 0..pods {
        let rs = p / 100;
        let node = p % nodes.max(1);
        let ip = v6(2, idx(node), idx(p / nodes.max(1) + 1));
        ips.push(ip);
        let uid: Arc<str> = Arc::from(format!("uid-{p}"));
        s.pods.live.insert(
            Arc::clone(&uid),
            PodObj {
                uid,
                namespace: Arc::clone(&ns),
                name: Arc::from(format!("app-{rs}-{p}")),
                node: Some(Arc::from(format!("node-{node}"))),
                ips: vec![ip],
                host_network: false,
                running: true,
                finished: false,
                created_ns: 0,
                labels: BTreeMap::from([("app".to_owned(), format!("app-{rs}"))]),
                owner: Some((Arc::from("ReplicaSet"), Arc::from(format!("app-{rs}-rs")))),
            },
        );
        if p % 100 == 0 {
            let name: Arc<str> = Arc::from(format!("app-{rs}-rs"));
            s.replicasets.live.insert(
                (Arc::clone(&ns), Arc::clone(&name)),
                OwnerObj {
                    namespace: Arc::clone(&ns),
                    name,
                    owner: Some((Arc::from("Deployment"), Arc::from(format!("app-{rs}")))),
                },
            );
        }
    }
    for i in 0..services {
        let name: Arc<str> = Arc::from(format!("svc-{i}"));
        s.services.live.insert(
            (Arc::clone(&ns), Arc::clone(&name)),
            ServiceObj {
                namespace: Arc::clone(&ns),
                name,
                node_ports: vec![NodePort {
                    port: 30000 + idx(i % 2768),
                    protocol: Protocol::Tcp,
                }],
                external_traffic_policy: Some(Arc::from("Cluster")),
                load_balancer_source_ranges: Vec::new(),
            },
        );
    }
    (s, ips)
}

/// [`stores`] and the index built from them.
pub fn synthetic(nodes: usize, pods: usize, services: usize) -> Synthetic {
    let (s, pod_ips) = stores(nodes, pods, services);
    let snapshot = Arc::new(Snapshot::build(&s, true));
    Synthetic {
        stores: Box::new(s),
        snapshot,
        pod_ips,
    }
}
