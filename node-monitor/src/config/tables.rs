//! The tables the data path writes, derived from a validated config: port → group id, and the
//! allowlists resolved into `(group id, prefix)` pairs.

use std::{
    collections::HashSet,
    net::{Ipv4Addr, Ipv6Addr},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::model::{AllowEntry, Config, Group, PodSelector, Protocol, SymbolicSet};

/// Entries in each port table: one per port number.
pub(super) const PORT_TABLE_LEN: usize = 1 << 16;

/// What `localhost` stands for.
const LOCALHOST_V4: IpNet = IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8));
const LOCALHOST_V6: IpNet = IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128));

/// What the symbolic sets stand for at run time: the attached interfaces' prefixes and,
/// with a cluster, the sets resolved from it (empty without one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetValues {
    pub node_subnets: Vec<IpNet>,
    pub control_plane_nodes: Vec<IpNet>,
    pub nodes: Vec<IpNet>,
    pub pod_cidrs: Vec<IpNet>,
    pub apiserver_endpoints: Vec<IpNet>,
    /// The addresses of the pods each `{pods: ...}` entry selects.
    pub pods: Vec<(PodSelector, Vec<IpNet>)>,
}

impl Config {
    /// Whether any group allows a set resolved from the cluster.
    #[must_use]
    pub fn uses_cluster_sets(&self) -> bool {
        self.groups.iter().flat_map(|g| &g.allow).any(|e| match e {
            AllowEntry::Set(s) => s.from_cluster(),
            AllowEntry::Pods(_) => true,
            AllowEntry::Cidr(_) => false,
        })
    }

    /// Every `{pods: ...}` selector of the allow lists, once each.
    #[must_use]
    pub fn pod_selectors(&self) -> Vec<PodSelector> {
        let mut out: Vec<PodSelector> = self
            .groups
            .iter()
            .flat_map(|g| &g.allow)
            .filter_map(|e| match e {
                AllowEntry::Pods(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Resolves the allow lists into concrete `(group id, prefix)` pairs, in group order then
    /// list order. `node_subnets` are the prefixes of the attached interfaces; the cluster
    /// sets resolve to nothing. Prefixes are normalized (host bits cleared) and each pair
    /// appears once.
    #[must_use]
    pub fn resolve_allowlists(&self, node_subnets: &[IpNet]) -> Vec<(u8, IpNet)> {
        self.resolve_allowlists_with(&SetValues {
            node_subnets: node_subnets.to_vec(),
            ..SetValues::default()
        })
    }

    /// [`Config::resolve_allowlists`] with every set's value given.
    #[must_use]
    pub fn resolve_allowlists_with(&self, sets: &SetValues) -> Vec<(u8, IpNet)> {
        let localhost = [LOCALHOST_V4, LOCALHOST_V6];
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for g in &self.groups {
            for entry in &g.allow {
                let nets: &[IpNet] = match entry {
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
                };
                for net in nets {
                    let pair = (g.id, net.trunc());
                    if seen.insert(pair) {
                        out.push(pair);
                    }
                }
            }
        }
        out
    }

    /// The port → group id tables `(tcp, udp)`, 65536 entries each (0 = not watched), under
    /// the ids that `id_of` gives each group (its config id, or the kernel id the data path
    /// assigned it); a group without an id is left out.
    #[must_use]
    pub fn port_tables(&self, id_of: impl Fn(&Group) -> Option<u8>) -> (Vec<u8>, Vec<u8>) {
        let mut tcp = vec![node_monitor_common::GROUP_NONE; PORT_TABLE_LEN];
        let mut udp = vec![node_monitor_common::GROUP_NONE; PORT_TABLE_LEN];
        for g in &self.groups {
            let Some(id) = id_of(g) else { continue };
            for proto in &g.protocols {
                let table = match proto {
                    Protocol::Tcp => &mut tcp,
                    Protocol::Udp => &mut udp,
                };
                for range in &g.ports {
                    table[usize::from(range.start)..=usize::from(range.end)].fill(id);
                }
            }
        }
        (tcp, udp)
    }

    /// The group with this id (1-based), if any.
    #[must_use]
    pub fn group_by_id(&self, id: u8) -> Option<&Group> {
        let index = usize::from(id).checked_sub(1)?;
        self.groups.get(index).filter(|g| g.id == id)
    }
}
