//! The allow sets that follow the cluster, from a snapshot: `control-plane-nodes`, `nodes`,
//! `pod-cidrs`, `apiserver-endpoints` and `{pods: {namespace, selector}}`; and per NodePort
//! its Service's `loadBalancerSourceRanges` ([`node_port_ranges`]).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{index::Snapshot, objects::label};
use crate::{
    config::{AllowEntry, Config, PodSelector, SetValues, SymbolicSet},
    datapath::PortRanges,
};

/// The per-port source ranges for the data path: each NodePort whose Service sets
/// `loadBalancerSourceRanges` (Services of type LoadBalancer and NodePort alike, TCP and UDP)
/// gets those ranges, and every such port also accepts `cluster.node_port_also_allow`
/// (resolved with `sets`). Nothing until the snapshot is synced: a port is never limited to
/// ranges that a half-listed cache got wrong.
pub fn node_port_ranges(snapshot: &Snapshot, cfg: &Config, sets: &SetValues) -> PortRanges {
    if !snapshot.synced || snapshot.lb_source_ranges.is_empty() {
        return PortRanges::default();
    }
    PortRanges {
        ports: snapshot
            .lb_source_ranges
            .iter()
            .filter(|(_, nets)| !nets.is_empty())
            .map(|(&(port, proto), nets)| ((proto, port), nets.clone()))
            .collect(),
        any: resolve(&cfg.cluster.node_port_also_allow, sets),
    }
}

/// The networks of `entries` (CIDRs and symbolic sets; `{pods: ...}` as the allowlists
/// resolve it), sorted, each once.
fn resolve(entries: &[AllowEntry], sets: &SetValues) -> Vec<IpNet> {
    let localhost = [
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
        IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
    ];
    let mut out: Vec<IpNet> = entries
        .iter()
        .flat_map(|e| -> &[IpNet] {
            match e {
                AllowEntry::Cidr(net) => std::slice::from_ref(net),
                AllowEntry::Set(SymbolicSet::Localhost) => &localhost,
                AllowEntry::Set(SymbolicSet::NodeSubnets) => &sets.node_subnets,
                AllowEntry::Set(SymbolicSet::ControlPlaneNodes) => &sets.control_plane_nodes,
                AllowEntry::Set(SymbolicSet::Nodes) => &sets.nodes,
                AllowEntry::Set(SymbolicSet::PodCidrs) => &sets.pod_cidrs,
                AllowEntry::Set(SymbolicSet::ApiserverEndpoints) => &sets.apiserver_endpoints,
                AllowEntry::Pods(sel) => sets
                    .pods
                    .iter()
                    .find(|(s, _)| s == sel)
                    .map_or(&[][..], |(_, nets)| nets),
            }
        })
        .map(IpNet::trunc)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

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
