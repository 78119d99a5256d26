//! The `cluster:` section: whether and how the daemon reads identity from the Kubernetes API.
//! The credentials and the node name are found at run time (`crate::cluster`); this is only
//! what the file says.

use std::{borrow::Cow, fmt, time::Duration};

use super::model::{AllowEntry, SymbolicSet};

/// `cluster.enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterMode {
    /// On when credentials are found (in-cluster service account, `KUBECONFIG`,
    /// `~/.kube/config`), off otherwise. The default.
    Auto,
    /// Refuse to start without credentials.
    On,
    /// Never talk to the API: no identity, no cluster allow sets.
    Off,
}

impl ClusterMode {
    pub const ALL: [ClusterMode; 3] = [ClusterMode::Auto, ClusterMode::On, ClusterMode::Off];

    /// The YAML spelling.
    pub const fn name(self) -> &'static str {
        match self {
            ClusterMode::Auto => "auto",
            ClusterMode::On => "on",
            ClusterMode::Off => "off",
        }
    }

    pub fn from_name(name: &str) -> Option<ClusterMode> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for ClusterMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The validated `cluster:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub enabled: ClusterMode,
    /// This node's name; `None`: env `NODE_NAME` (the downward API), else the hostname.
    pub node_name: Option<String>,
    /// Every watch is restarted with a full list this often (a relist repairs anything a
    /// missed event left wrong); default 600 s, `60..=86_400`.
    pub resync: Duration,
    /// Identity read while the watches have been failing for longer than this is marked
    /// stale in alerts; default 30 s, `1..=3600`.
    pub stale_after: Duration,
    /// `node_port_also_allow`: the sources every NodePort whose Service sets
    /// `loadBalancerSourceRanges` accepts beside those ranges (the cluster's own traffic to
    /// NodePorts: kubelet probes, node-to-node forwarding, pods). CIDRs and the symbolic sets
    /// other than `{pods: ...}`; default `[localhost, nodes, pod-cidrs]`.
    pub node_port_also_allow: Cow<'static, [AllowEntry]>,
}

/// The default `cluster.node_port_also_allow`.
pub const NODE_PORT_ALSO_ALLOW: &[AllowEntry] = &[
    AllowEntry::Set(SymbolicSet::Localhost),
    AllowEntry::Set(SymbolicSet::Nodes),
    AllowEntry::Set(SymbolicSet::PodCidrs),
];

impl ClusterSettings {
    pub const DEFAULT: ClusterSettings = ClusterSettings {
        enabled: ClusterMode::Auto,
        node_name: None,
        resync: Duration::from_secs(600),
        stale_after: Duration::from_secs(30),
        node_port_also_allow: Cow::Borrowed(NODE_PORT_ALSO_ALLOW),
    };
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A Kubernetes node name: a DNS-1123 subdomain (lower-case letters, digits, `-` and `.`,
/// starting and ending with a letter or digit, at most 253 characters).
pub(super) fn check_node_name(name: &str) -> Result<(), String> {
    let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.';
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.len() <= 253
        && name.bytes().all(ok_char)
        && edge(name.as_bytes().first())
        && edge(name.as_bytes().last())
    {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a Kubernetes node name (lower-case letters, digits, `-` and `.`, \
             starting and ending with a letter or digit, at most 253 characters); leave it out \
             to use $NODE_NAME or the hostname"
        ))
    }
}

impl super::Config {
    /// The embedded default as it runs when a cluster is found: the kubelet allows
    /// `control-plane-nodes`, `apiserver-endpoints` and `nodes`, etcd (client and peer)
    /// `control-plane-nodes`, in place of `node-subnets`. Other groups, and groups of other
    /// names, are left as they are.
    #[must_use]
    pub fn with_cluster_defaults(mut self) -> super::Config {
        for g in &mut self.groups {
            let sets: &[SymbolicSet] = match g.name.as_str() {
                "kubelet" => &[
                    SymbolicSet::ControlPlaneNodes,
                    SymbolicSet::ApiserverEndpoints,
                    SymbolicSet::Nodes,
                ],
                "etcd-client" | "etcd-peer" => &[SymbolicSet::ControlPlaneNodes],
                _ => continue,
            };
            if g.allow != [AllowEntry::Set(SymbolicSet::NodeSubnets)] {
                continue;
            }
            g.allow = sets.iter().map(|&s| AllowEntry::Set(s)).collect();
        }
        self
    }
}
