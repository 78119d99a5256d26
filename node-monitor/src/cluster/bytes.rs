//! The heap the identity cache holds, estimated from its own structures when an index is
//! built (`node_monitor_cluster_cache_bytes`): hash tables by their slots, vectors by their
//! capacity, and each shared name or identity divided among the pointers that hold it (so
//! that the parts add up to the whole; a snapshot still held by a batch in flight makes the
//! figure read a little low). Allocator overhead is not counted.
use std::{collections::HashMap, sync::Arc};

use super::{
    index::Snapshot,
    objects::{Keyed, Labels, NodeObj, OwnerObj, PodObj, ServiceObj, SliceObj},
    store::{Store, Stores},
};
use crate::record::{NodeIdentity, PodIdentity, ServiceIdentity, SourceIdentity};

/// The slots of a hash table (hashbrown's layout) that reports `capacity`, for `T` entries.
pub fn hash_table<T>(capacity: usize) -> usize {
    let buckets = match capacity {
        0 => return 0,
        c if c < 8 => c + 1,
        c => c / 7 * 8,
    };
    buckets * size_of::<T>() + buckets + 16
}

fn map<K, V, S>(m: &HashMap<K, V, S>) -> usize {
    hash_table::<(K, V)>(m.capacity())
}

fn vec<T>(v: &Vec<T>) -> usize {
    v.capacity() * size_of::<T>()
}

/// An `Arc` allocation of `payload` bytes, this holder's share.
fn share<T: ?Sized>(a: &Arc<T>, payload: usize) -> usize {
    (16 + payload).next_multiple_of(8) / Arc::strong_count(a)
}

fn text(a: &Arc<str>) -> usize {
    share(a, a.len())
}

fn opt_text(a: Option<&Arc<str>>) -> usize {
    a.map_or(0, text)
}

fn pair(p: Option<&super::objects::Owner>) -> usize {
    p.map_or(0, |o| {
        (16 + size_of::<(Arc<str>, Arc<str>)>() + text(&o.0) + text(&o.1)) / Arc::strong_count(o)
    })
}

fn labels(l: &Labels) -> usize {
    let inner = l.iter().map(|(k, v)| text(k) + text(v)).sum::<usize>();
    ((16 + size_of_val::<[(Arc<str>, Arc<str>)]>(l)).next_multiple_of(8) + inner)
        / Arc::strong_count(l)
}

/// What one kept object holds on the heap.
trait Heap {
    fn heap(&self) -> usize;
}

impl Heap for PodObj {
    fn heap(&self) -> usize {
        text(&self.uid)
            + text(&self.namespace)
            + text(&self.name)
            + opt_text(self.node.as_ref())
            + share(&self.ips, size_of_val::<[std::net::IpAddr]>(&self.ips))
            + labels(&self.labels)
            + pair(self.owner.as_ref())
    }
}

impl Heap for NodeObj {
    fn heap(&self) -> usize {
        text(&self.name)
            + vec(&self.addresses)
            + vec(&self.roles)
            + self.roles.iter().map(text).sum::<usize>()
            + vec(&self.pod_cidrs)
    }
}

impl Heap for ServiceObj {
    fn heap(&self) -> usize {
        text(&self.namespace)
            + text(&self.name)
            + vec(&self.node_ports)
            + opt_text(self.external_traffic_policy.as_ref())
            + vec(&self.load_balancer_source_ranges)
    }
}

impl Heap for SliceObj {
    fn heap(&self) -> usize {
        text(&self.namespace) + text(&self.name) + vec(&self.addresses)
    }
}

impl Heap for OwnerObj {
    fn heap(&self) -> usize {
        text(&self.namespace) + text(&self.name) + pair(self.owner.as_ref())
    }
}

/// A store key's own heap (a uid or a namespace/name shared with the object: its share).
trait KeyHeap {
    fn heap(&self) -> usize;
}

impl KeyHeap for Arc<str> {
    fn heap(&self) -> usize {
        text(self)
    }
}

impl KeyHeap for (Arc<str>, Arc<str>) {
    fn heap(&self) -> usize {
        text(&self.0) + text(&self.1)
    }
}

fn objects<K: KeyHeap, T: Heap>(m: &HashMap<K, Box<T>>) -> usize {
    map(m)
        + m.iter()
            .map(|(k, v)| k.heap() + size_of::<T>() + v.heap())
            .sum::<usize>()
}

fn store<T: Keyed + Heap>(s: &Store<T>) -> usize
where
    T::Key: KeyHeap,
{
    objects(&s.live) + s.pending().map_or(0, objects)
}

/// The stores' heap.
pub fn stores(s: &Stores) -> usize {
    store(&s.nodes)
        + store(&s.pods)
        + store(&s.services)
        + store(&s.slices)
        + store(&s.replicasets)
        + store(&s.jobs)
}

fn node_identity(a: &Arc<NodeIdentity>) -> usize {
    let own = vec(&a.roles) + text(&a.name) + a.roles.iter().map(text).sum::<usize>();
    share(a, size_of::<NodeIdentity>()) + own / Arc::strong_count(a)
}

fn pod_identity(a: &Arc<PodIdentity>) -> usize {
    let own = text(&a.namespace)
        + text(&a.name)
        + text(&a.uid)
        + opt_text(a.node.as_ref())
        + text(&a.workload.kind)
        + text(&a.workload.name);
    share(a, size_of::<PodIdentity>()) + own / Arc::strong_count(a)
}

fn service_identity(a: &Arc<ServiceIdentity>) -> usize {
    let own = text(&a.namespace) + text(&a.name) + opt_text(a.external_traffic_policy.as_ref());
    share(a, size_of::<ServiceIdentity>()) + own / Arc::strong_count(a)
}

/// The index's heap.
pub fn snapshot(s: &Snapshot) -> usize {
    let (addresses, node_ports) = s.tables();
    let sources = addresses.slot_bytes()
        + addresses
            .values()
            .map(|id| match id {
                SourceIdentity::Pod(p) => pod_identity(p),
                SourceIdentity::Node(n) | SourceIdentity::HostNetwork(n) => node_identity(n),
                SourceIdentity::External | SourceIdentity::Unresolved => 0,
            })
            .sum::<usize>();
    let services = map(node_ports) + node_ports.values().map(service_identity).sum::<usize>();
    let lb = s
        .lb_source_ranges
        .values()
        .map(|v| vec(v) + size_of::<((u16, crate::config::Protocol), Vec<ipnet::IpNet>)>())
        .sum::<usize>();
    let pods = vec(&s.pods)
        + s.pods
            .iter()
            .map(|p| {
                text(&p.namespace)
                    + labels(&p.labels)
                    + share(&p.ips, size_of_val::<[std::net::IpAddr]>(&p.ips))
            })
            .sum::<usize>();
    sources
        + services
        + lb
        + pods
        + vec(&s.control_plane_nodes)
        + vec(&s.nodes)
        + vec(&s.pod_cidrs)
        + size_of_val(s.pod_cidr_search())
        + vec(&s.apiserver_endpoints)
}

#[cfg(test)]
mod tests {
    use super::super::{index::Snapshot, testing::synthetic};

    #[test]
    fn grows_with_the_cluster() {
        let per = |pods: usize| {
            let (s, _) = synthetic::stores(10, pods, 50);
            Snapshot::build(&s, true).cache_bytes
        };
        let (small, large) = (per(1000), per(2000));
        // Per pod, somewhere between a few hundred bytes and a few KiB...
        assert!((200_000..3_000_000).contains(&small), "{small}");
        // ...and twice the pods, about twice the bytes (the tables grow in powers of two).
        assert!(
            large > small * 3 / 2 && large < small * 5 / 2,
            "{small} {large}"
        );
    }
}
