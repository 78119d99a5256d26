//! Who is behind a flow, as the cluster cache knew it when the record passed through the
//! daemon: the source (a pod, a node, a pod on a node's host network, or outside the
//! cluster), this node and, for a NodePort, its Service. Filled by `crate::cluster`; the
//! formats write it. Names are shared (`Arc<str>`) with the cache's index, so enriching a
//! record copies a few pointers.
use std::{sync::Arc, time::Duration};

/// The identity of one flow's two ends, and how fresh the cache that gave it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowIdentity {
    pub source: SourceIdentity,
    pub destination: DestinationIdentity,
    pub cache: CacheState,
}

/// The source address, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceIdentity {
    /// A pod's IP (either family of a dual-stack pod; a reused IP names the newest running pod).
    Pod(Arc<PodIdentity>),
    /// A node's InternalIP or ExternalIP.
    Node(Arc<NodeIdentity>),
    /// The address of a node whose host network a pod uses: the node is named, never one of
    /// its host-network pods (any of them, or the node itself, may have opened the flow).
    HostNetwork(Arc<NodeIdentity>),
    /// Not an address of the cluster, by a cache that had completed its lists.
    External,
    /// Not known (yet): the cache had not completed its first lists, or the address is in a
    /// node's pod CIDR and no pod holds it.
    Unresolved,
}

impl SourceIdentity {
    /// The spelling of `node_monitor.source_identity.kind` and the CEF `cs4`.
    pub const fn kind(&self) -> &'static str {
        match self {
            SourceIdentity::Pod(_) => "pod",
            SourceIdentity::Node(_) => "node",
            SourceIdentity::HostNetwork(_) => "host_network",
            SourceIdentity::External => "external",
            SourceIdentity::Unresolved => "unresolved",
        }
    }
}

/// A pod, with what an analyst asks first: where it runs and what runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub uid: Arc<str>,
    /// The node it is scheduled on (`spec.nodeName`).
    pub node: Option<Arc<str>>,
    pub workload: Workload,
}

/// What runs a pod, through the owner chain: Pod → ReplicaSet → Deployment, StatefulSet,
/// DaemonSet, Job → CronJob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `Deployment`, `ReplicaSet` (one without a Deployment, or whose owner is not known
    /// yet), `StatefulSet`, `DaemonSet`, `Job`, `CronJob`, another controller's kind as the
    /// owner reference spells it, or `Pod` for a bare pod (then `name` is the pod's).
    pub kind: Arc<str>,
    pub name: Arc<str>,
}

/// A node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub name: Arc<str>,
    /// From the `node-role.kubernetes.io/<role>` labels, sorted.
    pub roles: Vec<Arc<str>>,
}

/// The destination: this node and, for a NodePort, its Service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DestinationIdentity {
    /// This node's name (from the config, `NODE_NAME` or the hostname).
    pub node: Option<Arc<str>>,
    pub service: Option<Arc<ServiceIdentity>>,
}

/// The Service that owns a NodePort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceIdentity {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    /// `Cluster` or `Local`, as the Service spells it; `None` when it does not say.
    pub external_traffic_policy: Option<Arc<str>>,
    /// The Service's `loadBalancerSourceRanges` (empty when it sets none): a connection to
    /// the NodePort from outside them (and outside `cluster.node_port_also_allow`) is flagged.
    pub load_balancer_source_ranges: Vec<ipnet::IpNet>,
}

impl ServiceIdentity {
    /// Whether the Service limits its sources and `ip` lies outside those ranges.
    pub fn outside_source_ranges(&self, ip: std::net::IpAddr) -> bool {
        !self.load_balancer_source_ranges.is_empty()
            && !self
                .load_balancer_source_ranges
                .iter()
                .any(|n| n.contains(&ip))
    }
}

/// How far to trust the identity: whether the cache had completed its first lists, and how
/// long the watches have been failing (0 while they are healthy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheState {
    /// Every watched kind had completed its initial list.
    pub synced: bool,
    /// How long ago the cache was last known current: zero while every watch is healthy,
    /// else the time since the first failure of the longest-failing watch.
    pub age: Duration,
    /// `age` is over `cluster.stale_after_s`.
    pub stale: bool,
}
