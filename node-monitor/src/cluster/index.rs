//! The index the lookups read: built from the stores after a change (debounced), then
//! published whole, so that a lookup never waits on a watch and never sees half an update.
use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
};

use ipnet::IpNet;

use super::{
    hash::{AddrTable, FxBuild},
    objects::{Labels, NodePort, PodObj},
    store::Stores,
};
use crate::record::{NodeIdentity, PodIdentity, ServiceIdentity, SourceIdentity, Workload};

/// A pod as the `{pods: {namespace, selector}}` allow sets match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectablePod {
    pub namespace: Arc<str>,
    /// Shared with the store's pod.
    pub labels: Labels,
    /// Shared with the store's pod.
    pub ips: Arc<[IpAddr]>,
}

/// NodePort → its Service.
type NodePorts = HashMap<NodePort, Arc<ServiceIdentity>, FxBuild>;

/// Everything a lookup or an allow set reads, at one moment of the cache.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every pod, node and host-network address of the cluster.
    addresses: AddrTable,
    /// NodePort (port, protocol) → its Service.
    node_ports: NodePorts,
    /// Per NodePort, its Service's `loadBalancerSourceRanges` (only Services that set them).
    pub lb_source_ranges: BTreeMap<(u16, crate::config::Protocol), Vec<IpNet>>,
    /// Addresses of nodes labelled `node-role.kubernetes.io/control-plane`, sorted.
    pub control_plane_nodes: Vec<IpAddr>,
    /// Addresses of every node, sorted.
    pub nodes: Vec<IpAddr>,
    /// Every node's `spec.podCIDRs`, sorted.
    pub pod_cidrs: Vec<IpNet>,
    /// The same prefixes, those inside another left out and neighbours merged (disjoint and
    /// sorted): what [`Snapshot::in_pod_cidr`] searches.
    pod_cidr_search: Vec<IpNet>,
    /// The addresses of the EndpointSlices of `default/kubernetes`, sorted.
    pub apiserver_endpoints: Vec<IpAddr>,
    /// Pods that are not finished and not on the host network, with their labels.
    pub pods: Vec<SelectablePod>,
    /// Objects per kind, for the metrics.
    pub counts: KindCounts,
    /// Built after every kind had completed its first list: an address it does not hold is
    /// outside the cluster (or not yet known, in a pod CIDR).
    pub synced: bool,
    /// The heap held by the stores and this index when it was built (an estimate, see
    /// `bytes`).
    pub cache_bytes: usize,
}

/// How many objects of each kind the cache holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KindCounts {
    pub nodes: usize,
    pub pods: usize,
    pub services: usize,
    pub endpointslices: usize,
    pub replicasets: usize,
    pub jobs: usize,
}

impl Snapshot {
    /// Builds the index of what the stores hold now.
    pub fn build(s: &Stores, synced: bool) -> Snapshot {
        let mut snap = Snapshot {
            synced,
            counts: KindCounts {
                nodes: s.nodes.live.len(),
                pods: s.pods.live.len(),
                services: s.services.live.len(),
                endpointslices: s.slices.live.len(),
                replicasets: s.replicasets.live.len(),
                jobs: s.jobs.live.len(),
            },
            ..Snapshot::default()
        };
        // Room for every address, so that the table is sized once.
        let (mut v4, mut v6) = (0, 0);
        let node_ips = s.nodes.live.values().flat_map(|n| n.addresses.iter());
        for ip in node_ips.chain(s.pods.live.values().flat_map(|p| p.ips.iter())) {
            if ip.is_ipv4() {
                v4 += 1;
            } else {
                v6 += 1;
            }
        }
        snap.addresses = AddrTable::with_room(v4, v6);
        // Nodes.
        let mut node_ids: HashMap<Arc<str>, Arc<NodeIdentity>> = HashMap::new();
        for n in s.nodes.live.values() {
            let id = Arc::new(NodeIdentity {
                name: Arc::clone(&n.name),
                roles: n.roles.clone(),
            });
            for &a in &n.addresses {
                snap.addresses
                    .insert(a, SourceIdentity::Node(Arc::clone(&id)));
                snap.nodes.push(a);
                if n.control_plane {
                    snap.control_plane_nodes.push(a);
                }
            }
            snap.pod_cidrs.extend(n.pod_cidrs.iter().map(IpNet::trunc));
            node_ids.insert(Arc::clone(&n.name), id);
        }
        // Pods: host-network ones name their node; the others claim their IPs, the newest
        // running pod winning a reused IP.
        let mut best: HashMap<IpAddr, &PodObj> = HashMap::new();
        for p in s.pods.live.values().filter(|p| !p.finished) {
            if p.host_network {
                let node = p.node.as_ref().map(|name| {
                    node_ids.get(name).cloned().unwrap_or_else(|| {
                        Arc::new(NodeIdentity {
                            name: Arc::clone(name),
                            roles: Vec::new(),
                        })
                    })
                });
                for &ip in p.ips.iter() {
                    if let Some(node) = &node {
                        snap.addresses
                            .insert(ip, SourceIdentity::HostNetwork(Arc::clone(node)));
                    }
                }
                continue;
            }
            snap.pods.push(SelectablePod {
                namespace: Arc::clone(&p.namespace),
                labels: Arc::clone(&p.labels),
                ips: Arc::clone(&p.ips),
            });
            for &ip in p.ips.iter() {
                let slot = best.entry(ip).or_insert(p);
                if (p.running, p.created_ns, &p.uid) > (slot.running, slot.created_ns, &slot.uid) {
                    *slot = p;
                }
            }
        }
        let mut pod_ids: HashMap<&str, Arc<PodIdentity>> = HashMap::new();
        for (ip, p) in best {
            if snap.addresses.contains_key(ip) {
                // A node's own address is the node's, whatever a pod reports.
                continue;
            }
            let id = pod_ids
                .entry(&p.uid)
                .or_insert_with(|| Arc::new(pod_identity(p, s)));
            snap.addresses
                .insert(ip, SourceIdentity::Pod(Arc::clone(id)));
        }
        // Services with NodePorts, in a fixed order so that a (wrong) duplicate resolves the
        // same way every time.
        let mut services: Vec<_> = s.services.live.values().collect();
        services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        for svc in services {
            if svc.node_ports.is_empty() {
                continue;
            }
            let id = Arc::new(ServiceIdentity {
                namespace: Arc::clone(&svc.namespace),
                name: Arc::clone(&svc.name),
                external_traffic_policy: svc.external_traffic_policy.clone(),
                load_balancer_source_ranges: svc.load_balancer_source_ranges.clone(),
            });
            for np in &svc.node_ports {
                snap.node_ports
                    .entry(*np)
                    .or_insert_with(|| Arc::clone(&id));
                if !svc.load_balancer_source_ranges.is_empty() {
                    snap.lb_source_ranges
                        .entry((np.port, np.protocol))
                        .or_insert_with(|| svc.load_balancer_source_ranges.clone());
                }
            }
        }
        for slice in s.slices.live.values() {
            snap.apiserver_endpoints.extend(&slice.addresses);
        }
        for v in [
            &mut snap.nodes,
            &mut snap.control_plane_nodes,
            &mut snap.apiserver_endpoints,
        ] {
            v.sort_unstable();
            v.dedup();
        }
        snap.pod_cidrs.sort_unstable();
        snap.pod_cidrs.dedup();
        snap.pod_cidr_search = IpNet::aggregate(&snap.pod_cidrs);
        // Only the stores and the index hold names and identities now, so that each
        // holder's share adds up to the whole.
        drop((node_ids, pod_ids));
        snap.cache_bytes =
            super::bytes::stores(s) + super::bytes::snapshot(&snap) + super::intern::table_bytes();
        snap
    }

    /// The address and NodePort tables, for `bytes`.
    pub(super) fn tables(&self) -> (&AddrTable, &NodePorts) {
        (&self.addresses, &self.node_ports)
    }

    /// Who holds `ip`: a pod, a node, a node's host network; `None` when no object does.
    /// Borrowed from the snapshot: no reference count is taken.
    #[inline]
    pub fn address(&self, ip: IpAddr) -> Option<&SourceIdentity> {
        self.addresses.get(ip)
    }

    /// Whether `ip` is in some node's pod CIDR (a pod the cache does not know yet).
    pub fn in_pod_cidr(&self, ip: IpAddr) -> bool {
        // Disjoint and sorted: only the last prefix that starts at or below `ip` can hold it
        // (a binary search, not a scan: addresses outside the cluster, an attacker's among
        // them, take this path on every lookup).
        let i = self.pod_cidr_search.partition_point(|n| n.network() <= ip);
        i > 0 && self.pod_cidr_search[i - 1].contains(&ip)
    }

    /// [`Snapshot::in_pod_cidr`]'s search list, for `bytes`.
    pub(super) fn pod_cidr_search(&self) -> &[IpNet] {
        &self.pod_cidr_search
    }

    /// The Service that owns this NodePort.
    pub fn node_port(
        &self,
        port: u16,
        protocol: crate::config::Protocol,
    ) -> Option<&Arc<ServiceIdentity>> {
        self.node_ports.get(&NodePort { port, protocol })
    }
}

/// A pod's identity, its workload found through the owner chain.
fn pod_identity(p: &PodObj, s: &Stores) -> PodIdentity {
    PodIdentity {
        namespace: Arc::clone(&p.namespace),
        name: Arc::clone(&p.name),
        uid: Arc::clone(&p.uid),
        node: p.node.clone(),
        workload: workload(p, s),
    }
}

/// Pod → ReplicaSet → Deployment, StatefulSet, DaemonSet, Job → CronJob, or the bare pod.
/// An owner the cache does not hold (yet) is named as the pod's reference names it.
fn workload(p: &PodObj, s: &Stores) -> Workload {
    let Some((kind, name)) = p.owner.as_deref() else {
        return Workload {
            kind: super::intern::name("Pod"),
            name: Arc::clone(&p.name),
        };
    };
    let parent = match &**kind {
        "ReplicaSet" => s
            .replicasets
            .live
            .get(&(Arc::clone(&p.namespace), Arc::clone(name))),
        "Job" => s
            .jobs
            .live
            .get(&(Arc::clone(&p.namespace), Arc::clone(name))),
        _ => None,
    };
    let grand = parent
        .and_then(|o| o.owner.as_deref())
        .filter(|(k, _)| matches!(&**k, "Deployment" | "CronJob"));
    match grand {
        Some((k, n)) => Workload {
            kind: Arc::clone(k),
            name: Arc::clone(n),
        },
        None => Workload {
            kind: Arc::clone(kind),
            name: Arc::clone(name),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cidr_search_finds_nested_neighbouring_and_both_families() {
        let nets: Vec<IpNet> = [
            "10.0.0.0/16",
            "10.0.1.0/24",
            "10.1.0.0/24",
            "10.1.1.0/24",
            "2001:db8:2::/64",
            "2001:db8:2:5::/64",
        ]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
        let snap = Snapshot {
            pod_cidr_search: IpNet::aggregate(&nets),
            pod_cidrs: nets,
            ..Snapshot::default()
        };
        for (ip, inside) in [
            ("10.0.200.1", true),
            ("10.0.1.9", true),
            ("10.1.1.255", true),
            ("10.1.2.0", false),
            ("9.255.255.255", false),
            ("2001:db8:2::1", true),
            ("2001:db8:2:5::9", true),
            ("2001:db8:2:4::9", false),
            ("::a00:1", false),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(snap.in_pod_cidr(ip), inside, "{ip}");
            assert_eq!(
                snap.pod_cidrs.iter().any(|n| n.contains(&ip)),
                inside,
                "{ip} (by scan)"
            );
        }
    }
}
