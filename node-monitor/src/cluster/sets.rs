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

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, sync::Arc};

    use super::*;
    use crate::{
        cluster::{
            objects::{NodeObj, NodePort, ServiceObj},
            store::Stores,
        },
        config::Protocol,
    };

    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    /// `n` Services, each with `k` ranges (IPv4 and IPv6 alternately) and one TCP NodePort
    /// from 30000 (every fifth one also a UDP NodePort), the odd ones of type LoadBalancer
    /// in spirit (ranges), every tenth without ranges; and one node.
    fn stores(n: u16, k: u8) -> Stores {
        let mut s = Stores::default();
        s.nodes.live.insert(
            Arc::from("worker-1"),
            Box::new(NodeObj {
                name: Arc::from("worker-1"),
                addresses: vec!["198.51.100.10".parse().expect("ip")],
                control_plane: false,
                roles: Vec::new(),
                pod_cidrs: vec![net("203.0.113.0/25")],
            }),
        );
        for i in 0..n {
            let [a, b] = i.to_be_bytes();
            let ranges = if i % 10 == 9 {
                Vec::new()
            } else {
                (0..k)
                    .map(|j| {
                        if j % 2 == 0 {
                            net(&format!("203.{a}.{b}.{j}/32"))
                        } else {
                            net(&format!("2001:db8:{a:x}:{b:x}:{j:x}::/80"))
                        }
                    })
                    .collect()
            };
            let mut node_ports = vec![NodePort {
                port: 30_000 + i,
                protocol: Protocol::Tcp,
            }];
            if i % 5 == 0 {
                node_ports.push(NodePort {
                    port: 30_000 + i,
                    protocol: Protocol::Udp,
                });
            }
            let svc = ServiceObj {
                namespace: Arc::from("shop"),
                name: Arc::from(format!("svc-{i}").as_str()),
                node_ports,
                external_traffic_policy: None,
                load_balancer_source_ranges: ranges,
            };
            s.services.live.insert(
                (Arc::clone(&svc.namespace), Arc::clone(&svc.name)),
                Box::new(svc),
            );
        }
        s
    }

    fn sets(snapshot: &Snapshot, cfg: &Config) -> SetValues {
        set_values(snapshot, cfg, &[net("198.51.100.0/24")])
    }

    #[test]
    fn five_hundred_services_give_their_node_ports_their_ranges() {
        let cfg = Config::default_config();
        let snapshot = Snapshot::build(&stores(500, 16), true);
        let r = node_port_ranges(&snapshot, &cfg, &sets(&snapshot, &cfg));
        // 450 Services with ranges: 450 TCP NodePorts, and a UDP one for every fifth.
        let with_ranges = (0..500u16).filter(|i| i % 10 != 9);
        let tcp = with_ranges.clone().count();
        let udp = with_ranges.clone().filter(|i| i % 5 == 0).count();
        assert_eq!(r.ports.len(), tcp + udp);
        assert_eq!((tcp, udp), (450, 100));
        for i in with_ranges {
            let ranges = &r.ports[&(Protocol::Tcp, 30_000 + i)];
            assert_eq!(ranges.len(), 16, "svc-{i}");
            let [a, b] = i.to_be_bytes();
            assert!(ranges.contains(&net(&format!("203.{a}.{b}.0/32"))));
            if i % 5 == 0 {
                assert_eq!(&r.ports[&(Protocol::Udp, 30_000 + i)], ranges);
            }
        }
        // A Service without ranges leaves its NodePort out.
        assert!(!r.ports.contains_key(&(Protocol::Tcp, 30_009)));
        // The default also-allow: localhost, the nodes, the pod CIDRs.
        let any: HashSet<IpNet> = r.any.iter().copied().collect();
        assert_eq!(
            any,
            HashSet::from([
                net("127.0.0.0/8"),
                net("::1/128"),
                net("198.51.100.10/32"),
                net("203.0.113.0/25"),
            ])
        );
    }

    #[test]
    fn also_allow_follows_the_config_and_nothing_before_the_sync() {
        let cfg = Config::from_yaml(
            "cluster:\n  node_port_also_allow: [\"2001:db8:1::/48\", node-subnets]\n",
            "t",
        )
        .expect("config");
        let snapshot = Snapshot::build(&stores(3, 2), true);
        let r = node_port_ranges(&snapshot, &cfg, &sets(&snapshot, &cfg));
        assert_eq!(r.any, vec![net("198.51.100.0/24"), net("2001:db8:1::/48")]);
        assert_eq!(r.ports.len(), 4, "three TCP NodePorts and svc-0's UDP one");
        // Until the cache is synced no port is limited.
        let unsynced = Snapshot::build(&stores(3, 2), false);
        assert_eq!(
            node_port_ranges(&unsynced, &cfg, &sets(&unsynced, &cfg)),
            PortRanges::default()
        );
    }
}
