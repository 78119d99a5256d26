//! The objects the cache keeps: each Kubernetes kind cut down, as it arrives, to the fields
//! identity and the allow sets read. Nothing else of a Pod, a Node or a Service is kept.
use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use ipnet::IpNet;
use k8s_openapi::{
    api::{
        apps::v1::ReplicaSet,
        batch::v1::Job,
        core::v1::{Node, Pod, Service},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::core::PartialObjectMeta;

use super::intern;
use crate::config::Protocol;

/// The label that makes a node a control-plane node.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
/// The prefix of node role labels (`node-role.kubernetes.io/<role>`).
const ROLE_PREFIX: &str = "node-role.kubernetes.io/";

/// A kept object: its key in the store.
pub trait Keyed {
    type Key: std::hash::Hash + Eq + Clone + Send + 'static;
    fn key(&self) -> Self::Key;
}

/// `namespace/name`.
pub type NsName = (Arc<str>, Arc<str>);

fn text(s: Option<&String>) -> Arc<str> {
    s.map_or_else(|| Arc::from(""), |s| Arc::from(s.as_str()))
}

/// The namespace is one of the shared names; the name is the object's own.
fn ns_name(m: &ObjectMeta) -> NsName {
    (
        intern::name(m.namespace.as_deref().unwrap_or_default()),
        text(m.name.as_ref()),
    )
}

/// A node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeObj {
    pub name: Arc<str>,
    /// InternalIP and ExternalIP addresses, both families.
    pub addresses: Vec<IpAddr>,
    pub control_plane: bool,
    /// From the `node-role.kubernetes.io/<role>` labels, sorted.
    pub roles: Vec<Arc<str>>,
    /// `spec.podCIDRs` (else `spec.podCIDR`).
    pub pod_cidrs: Vec<IpNet>,
}

impl Keyed for NodeObj {
    type Key = Arc<str>;
    fn key(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }
}

impl From<&Node> for NodeObj {
    fn from(n: &Node) -> NodeObj {
        let labels = n.metadata.labels.as_ref();
        let mut roles: Vec<Arc<str>> = labels
            .into_iter()
            .flat_map(BTreeMap::keys)
            .filter_map(|k| k.strip_prefix(ROLE_PREFIX))
            .filter(|r| !r.is_empty())
            .map(intern::name)
            .collect();
        roles.sort();
        let addresses = n
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
            .filter_map(|a| a.address.parse().ok())
            .collect();
        let spec = n.spec.as_ref();
        let cidrs = spec
            .and_then(|s| s.pod_cidrs.clone())
            .filter(|c| !c.is_empty())
            .or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c]))
            .unwrap_or_default();
        NodeObj {
            name: intern::name(n.metadata.name.as_deref().unwrap_or_default()),
            addresses,
            control_plane: labels.is_some_and(|l| l.contains_key(CONTROL_PLANE_LABEL)),
            roles,
            pod_cidrs: cidrs
                .iter()
                .filter_map(|c| c.parse::<IpNet>().ok())
                .collect(),
        }
    }
}

/// An owner reference that is the object's controller: `(kind, name)`.
fn controller(refs: Option<&Vec<OwnerReference>>) -> Option<Owner> {
    refs?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| intern::owner(&r.kind, &r.name))
}

/// A controller owner reference, `(kind, name)`: one allocation shared by every object that
/// names it (the pods of one ReplicaSet), a pointer in each.
pub type Owner = Arc<(Arc<str>, Arc<str>)>;

/// A pod's labels, sorted by key: pointers to the shared names, in one allocation shared by
/// every pod with the same labels (those of one ReplicaSet), by the store and the index.
pub type Labels = Arc<[(Arc<str>, Arc<str>)]>;

/// `labels` from the API's map (sorted already).
pub fn labels_of(map: Option<&BTreeMap<String, String>>) -> Labels {
    let set: Vec<_> = map
        .into_iter()
        .flatten()
        .map(|(k, v)| (intern::name(k), intern::name(v)))
        .collect();
    intern::labels(&set)
}

/// The value of the label `key`.
pub fn label<'a>(labels: &'a [(Arc<str>, Arc<str>)], key: &str) -> Option<&'a str> {
    labels
        .binary_search_by(|(k, _)| (**k).cmp(key))
        .ok()
        .map(|i| &*labels[i].1)
}

/// A pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObj {
    pub uid: Arc<str>,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub node: Option<Arc<str>>,
    /// `status.podIPs` (else `status.podIP`): both families of a dual-stack pod. Shared with
    /// the index's selectable pod (one allocation per pod, not two).
    pub ips: Arc<[IpAddr]>,
    pub host_network: bool,
    /// `status.phase == Running`.
    pub running: bool,
    /// Succeeded or Failed: its IP is free for another pod.
    pub finished: bool,
    /// `metadata.creationTimestamp`, ns since the epoch (saturated to the years 1677-2262):
    /// the newest pod wins a reused IP.
    pub created_ns: i64,
    pub labels: Labels,
    /// The controller owner reference: `(kind, name)`.
    pub owner: Option<Owner>,
}

impl Keyed for PodObj {
    type Key = Arc<str>;
    fn key(&self) -> Arc<str> {
        // A pod without a uid (never from a real API server) is keyed by namespace/name.
        if self.uid.is_empty() {
            Arc::from(format!("{}/{}", self.namespace, self.name))
        } else {
            Arc::clone(&self.uid)
        }
    }
}

impl From<&Pod> for PodObj {
    fn from(p: &Pod) -> PodObj {
        let (namespace, name) = ns_name(&p.metadata);
        let status = p.status.as_ref();
        let mut ips: Vec<IpAddr> = status
            .and_then(|s| s.pod_ips.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|ip| ip.ip.parse().ok())
            .collect();
        if ips.is_empty()
            && let Some(ip) = status
                .and_then(|s| s.pod_ip.as_ref())
                .and_then(|ip| ip.parse().ok())
        {
            ips.push(ip);
        }
        let phase = status.and_then(|s| s.phase.as_deref());
        let spec = p.spec.as_ref();
        PodObj {
            uid: text(p.metadata.uid.as_ref()),
            namespace,
            name,
            node: spec.and_then(|s| s.node_name.as_deref()).map(intern::name),
            ips: Arc::from(ips),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            running: phase == Some("Running"),
            finished: matches!(phase, Some("Succeeded" | "Failed")),
            created_ns: p.metadata.creation_timestamp.as_ref().map_or(0, |t| {
                let ns = t.0.as_nanosecond();
                i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
            }),
            labels: labels_of(p.metadata.labels.as_ref()),
            owner: controller(p.metadata.owner_references.as_ref()),
        }
    }
}

/// One NodePort of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodePort {
    pub port: u16,
    pub protocol: Protocol,
}

/// A Service that has NodePorts (type NodePort or LoadBalancer); other Services are kept
/// with no ports, so that a type change is seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceObj {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub node_ports: Vec<NodePort>,
    pub external_traffic_policy: Option<Arc<str>>,
    pub load_balancer_source_ranges: Vec<IpNet>,
}

impl Keyed for ServiceObj {
    type Key = NsName;
    fn key(&self) -> NsName {
        (Arc::clone(&self.namespace), Arc::clone(&self.name))
    }
}

impl From<&Service> for ServiceObj {
    fn from(s: &Service) -> ServiceObj {
        let (namespace, name) = ns_name(&s.metadata);
        let spec = s.spec.as_ref();
        let node_ports = spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let port = u16::try_from(p.node_port?).ok().filter(|&p| p > 0)?;
                // SCTP NodePorts are not watched: the data path sees TCP and UDP.
                let protocol = match p.protocol.as_deref() {
                    None | Some("TCP") => Protocol::Tcp,
                    Some("UDP") => Protocol::Udp,
                    Some(_) => return None,
                };
                Some(NodePort { port, protocol })
            })
            .collect();
        ServiceObj {
            namespace,
            name,
            node_ports,
            external_traffic_policy: spec
                .and_then(|s| s.external_traffic_policy.as_deref())
                .map(intern::name),
            load_balancer_source_ranges: spec
                .and_then(|s| s.load_balancer_source_ranges.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|r| r.trim().parse().ok())
                .collect(),
        }
    }
}

/// An EndpointSlice (only those of `default/kubernetes` are watched): its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceObj {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub addresses: Vec<IpAddr>,
}

impl Keyed for SliceObj {
    type Key = NsName;
    fn key(&self) -> NsName {
        (Arc::clone(&self.namespace), Arc::clone(&self.name))
    }
}

impl From<&EndpointSlice> for SliceObj {
    fn from(s: &EndpointSlice) -> SliceObj {
        let (namespace, name) = ns_name(&s.metadata);
        SliceObj {
            namespace,
            name,
            addresses: s
                .endpoints
                .iter()
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
                .flat_map(|e| &e.addresses)
                .filter_map(|a| a.parse().ok())
                .collect(),
        }
    }
}

/// A ReplicaSet or a Job, metadata only: its controller (Deployment, CronJob).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerObj {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub owner: Option<Owner>,
}

impl Keyed for OwnerObj {
    type Key = NsName;
    fn key(&self) -> NsName {
        (Arc::clone(&self.namespace), Arc::clone(&self.name))
    }
}

impl OwnerObj {
    pub(crate) fn of(m: &ObjectMeta) -> OwnerObj {
        let (namespace, name) = ns_name(m);
        OwnerObj {
            namespace,
            name,
            owner: controller(m.owner_references.as_ref()),
        }
    }
}

impl From<&PartialObjectMeta<ReplicaSet>> for OwnerObj {
    fn from(m: &PartialObjectMeta<ReplicaSet>) -> OwnerObj {
        OwnerObj::of(&m.metadata)
    }
}

impl From<&PartialObjectMeta<Job>> for OwnerObj {
    fn from(m: &PartialObjectMeta<Job>) -> OwnerObj {
        OwnerObj::of(&m.metadata)
    }
}
