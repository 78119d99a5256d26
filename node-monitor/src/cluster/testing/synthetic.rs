//! A synthetic cluster for the identity bench: nodes, pods (of Deployments) and NodePort
//! Services, put into the stores through the watches' own conversions (no API server),
//! addresses from 2001:db8::/32.
use std::{
    any::Any,
    net::{IpAddr, Ipv6Addr},
    sync::Arc,
};

use k8s_openapi::{
    api::core::v1::{Node, Pod, Service},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use serde_json::from_value;

use super::objects::{self, PodSpec};
use crate::{
    cluster::{
        index::Snapshot,
        lookup::View,
        objects::{Keyed, NodeObj, OwnerObj, PodObj, ServiceObj},
        store::Stores,
    },
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
        view_of(&self.snapshot)
    }
}

/// A view of `snapshot` from `node-0`, its cache synced and fresh.
pub fn view_of(snapshot: &Arc<Snapshot>) -> View {
    View::new(
        Arc::clone(snapshot),
        CacheState {
            synced: true,
            age: std::time::Duration::ZERO,
            stale: false,
        },
        Some(Arc::from("node-0")),
    )
}

fn v6(a: u16, b: u16, c: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, a, b, 0, 0, 0, c))
}

/// Namespaces the pods and Services are spread over.
const NAMESPACES: usize = 100;

/// Stores with `nodes` nodes, `pods` pods spread over them (100 per ReplicaSet of a
/// Deployment, in [`NAMESPACES`] namespaces, with a real pod's labels `app` and
/// `pod-template-hash`, a 36-character uid and a generated name), and `services` NodePort
/// Services. Every object is made as the API server would send it (`kubectl get -o json`
/// shape) and cut down by the same conversion the watches use, so that what the stores keep
/// is what a real cluster of that size leaves in them. Returns every pod address too.
pub fn stores(nodes: usize, pods: usize, services: usize) -> (Stores, Vec<IpAddr>) {
    stores_with(nodes, pods, services, &[])
}

/// [`stores`], and `extra` more pods (after the others, the same shape) whose addresses are
/// `extra`'s (for a bench whose traffic comes from lab addresses).
pub fn stores_with(
    nodes: usize,
    pods: usize,
    services: usize,
    extra: &[IpAddr],
) -> (Stores, Vec<IpAddr>) {
    let mut s = Stores::default();
    let idx = |i: usize| u16::try_from(i).unwrap_or(u16::MAX);
    for n in 0..nodes {
        let name = format!("node-{n}");
        let addr = v6(1, idx(n), 1).to_string();
        let cidr = format!("2001:db8:2:{n:x}::/64");
        let roles: &[&str] = if n < 3 { &["control-plane"] } else { &[] };
        let obj: Node = from_value(objects::node(
            &name,
            &[("InternalIP", addr.as_str())],
            &[cidr.as_str()],
            roles,
        ))
        .expect("a node");
        let o = NodeObj::from(&obj);
        s.nodes.live.insert(o.key(), Box::new(o));
    }
    let mut ips = Vec::with_capacity(pods + extra.len());
    for p in 0..pods + extra.len() {
        let rs = p / 100;
        let ns = format!("ns-{}", rs % NAMESPACES);
        let node = p % nodes.max(1);
        let ip = match p.checked_sub(pods) {
            Some(e) => extra[e],
            None => v6(2, idx(node), idx(p / nodes.max(1) + 1)),
        };
        ips.push(ip);
        let hash = format!("{:010x}", rs.wrapping_mul(0x9e37_79b9) & 0xff_ffff_ffff);
        let rs_name = format!("app-{rs}-{hash}");
        let name = format!("{rs_name}-{:05x}", p & 0xfffff);
        let node_name = format!("node-{node}");
        let ip_text = ip.to_string();
        let ip_list = [ip_text.as_str()];
        let mut spec = PodSpec::new(&ns, &name, &node_name, &ip_list);
        spec.owner = Some(("ReplicaSet", rs_name.as_str()));
        let mut json = spec.json();
        json["metadata"]["uid"] = serde_json::json!(format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            p,
            rs & 0xffff,
            node & 0xfff,
            p & 0xfff,
            p.wrapping_mul(0x9e37_79b9_7f4a) & 0xffff_ffff_ffff
        ));
        json["metadata"]["labels"] =
            serde_json::json!({"app": format!("app-{rs}"), "pod-template-hash": hash});
        let obj: Pod = from_value(json).expect("a pod");
        let o = PodObj::from(&obj);
        s.pods.live.insert(o.key(), Box::new(o));
        if p % 100 == 0 {
            let deployment = format!("app-{rs}");
            let meta: ObjectMeta = from_value(
                objects::replicaset(&ns, &rs_name, Some(deployment.as_str()))["metadata"].take(),
            )
            .expect("a ReplicaSet's metadata");
            let o = OwnerObj::of(&meta);
            s.replicasets.live.insert(o.key(), Box::new(o));
        }
    }
    for i in 0..services {
        let ns = format!("ns-{}", i % NAMESPACES);
        let obj: Service = from_value(objects::service(
            &ns,
            &format!("svc-{i}"),
            &[(8080, 30000 + idx(i % 2768), "TCP")],
            "Cluster",
            &[],
        ))
        .expect("a Service");
        let o = ServiceObj::from(&obj);
        s.services.live.insert(o.key(), Box::new(o));
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

/// The index of a cache holding exactly these Node and Service objects (JSON as the API
/// server sends them, e.g. from [`objects::node`] and [`objects::service`]), synced.
pub fn snapshot_of(nodes: &[serde_json::Value], services: &[serde_json::Value]) -> Arc<Snapshot> {
    let mut s = Stores::default();
    for n in nodes {
        let obj: Node = from_value(n.clone()).expect("a Node");
        let o = NodeObj::from(&obj);
        s.nodes.live.insert(o.key(), Box::new(o));
    }
    for v in services {
        let obj: Service = from_value(v.clone()).expect("a Service");
        let o = ServiceObj::from(&obj);
        s.services.live.insert(o.key(), Box::new(o));
    }
    Arc::new(Snapshot::build(&s, true))
}
