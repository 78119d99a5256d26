//! The allow sets that follow the cluster, from a snapshot: `control-plane-nodes`, `nodes`,
//! `pod-cidrs`, `apiserver-endpoints` and `{pods: {namespace, selector}}`.
use std::net::IpAddr;

use ipnet::IpNet;

use super::{index::Snapshot, objects::label};
use crate::config::{Config, PodSelector, SetValues};

/// The value of every set `cfg` uses. Until the snapshot is synced (the first lists are not
/// all in), each cluster set stands in for `node_subnets`, as the defaults without a
/// cluster do, so that a restart never flags the nodes for a moment; `{pods: ...}` sets
/// stay empty until then.
pub fn set_values(snapshot: &Snapshot, cfg: &Config, node_subnets: &[IpNet]) -> SetValues {
    let hosts = |v: &[IpAddr]| v.iter().map(|&a| IpNet::from(a)).collect::<Vec<_>>();
    if !snapshot.synced {
        return SetValues {
            node_subnets: node_subnets.to_vec(),
            control_plane_nodes: node_subnets.to_vec(),
            nodes: node_subnets.to_vec(),
            pod_cidrs: node_subnets.to_vec(),
            apiserver_endpoints: node_subnets.to_vec(),
            pods: Vec::new(),
        };
    }
    SetValues {
        node_subnets: node_subnets.to_vec(),
        control_plane_nodes: hosts(&snapshot.control_plane_nodes),
        nodes: hosts(&snapshot.nodes),
        pod_cidrs: snapshot.pod_cidrs.clone(),
        apiserver_endpoints: hosts(&snapshot.apiserver_endpoints),
        pods: cfg
            .pod_selectors()
            .into_iter()
            .map(|sel| {
                let nets = pods_matching(snapshot, &sel);
                (sel, nets)
            })
            .collect(),
    }
}

/// The addresses of the pods of `sel.namespace` whose labels hold every `key=value`.
fn pods_matching(snapshot: &Snapshot, sel: &PodSelector) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = snapshot
        .pods
        .iter()
        .filter(|p| *p.namespace == *sel.namespace)
        .filter(|p| {
            sel.labels
                .iter()
                .all(|(k, v)| label(&p.labels, k) == Some(v.as_str()))
        })
        .flat_map(|p| p.ips.iter().map(|&a| IpNet::from(a)))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}
