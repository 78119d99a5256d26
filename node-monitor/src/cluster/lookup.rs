//! A record's identity, from one snapshot of the cache.
use std::{net::IpAddr, sync::Arc};

use super::index::Snapshot;
use crate::{
    config::Protocol,
    record::{CacheState, DestinationIdentity, FlowIdentity, FlowRecord, SourceIdentity},
};

static UNRESOLVED: SourceIdentity = SourceIdentity::Unresolved;
static EXTERNAL: SourceIdentity = SourceIdentity::External;

/// A snapshot, the cache's state when it was taken, and this node's name: all a lookup
/// needs, without a lock.
#[derive(Debug, Clone)]
pub struct View {
    snapshot: Arc<Snapshot>,
    cache: CacheState,
    node: Option<Arc<str>>,
}

impl View {
    pub(super) fn new(snapshot: Arc<Snapshot>, cache: CacheState, node: Option<Arc<str>>) -> View {
        View {
            snapshot,
            cache,
            node,
        }
    }

    pub fn cache(&self) -> CacheState {
        self.cache
    }

    /// Who `ip` is: a pod, a node, a node's host network; outside the cluster when the cache
    /// had completed its lists and the address is in no node's pod CIDR; unresolved
    /// otherwise. Borrowed from the snapshot: the lookup takes no reference count and
    /// allocates nothing.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> &SourceIdentity {
        if let Some(id) = self.snapshot.address(ip) {
            return id;
        }
        if !self.cache.synced || self.snapshot.in_pod_cidr(ip) {
            &UNRESOLVED
        } else {
            &EXTERNAL
        }
    }

    /// [`View::lookup`], owned (a reference count on a pod's or node's identity).
    pub fn source(&self, ip: IpAddr) -> SourceIdentity {
        self.lookup(ip).clone()
    }

    /// The identity of a flow: its source, this node and its NodePort's Service.
    pub fn identify(&self, src: IpAddr, dst_port: u16, protocol: Protocol) -> FlowIdentity {
        FlowIdentity {
            source: self.source(src),
            destination: DestinationIdentity {
                node: self.node.clone(),
                service: self.snapshot.node_port(dst_port, protocol).cloned(),
            },
            cache: self.cache,
        }
    }

    /// Sets `record.identity`.
    pub fn enrich(&self, record: &mut FlowRecord) {
        record.identity = Some(Arc::new(self.identify(
            record.src_ip,
            record.dst_port,
            record.protocol,
        )));
    }

    /// Sets the identity of each of `records`, as [`View::enrich`] does. A record with the
    /// same source, destination port and protocol as the one before it shares that one's
    /// identity (one `Arc`, not a lookup and an allocation each): a burst from one source to
    /// one port, the common shape of a batch, costs one lookup.
    pub fn enrich_all(&self, records: &mut [FlowRecord]) {
        let mut last: Option<(IpAddr, u16, Protocol, Arc<FlowIdentity>)> = None;
        for r in records {
            let identity = match &last {
                Some((src, port, proto, id))
                    if *src == r.src_ip && *port == r.dst_port && *proto == r.protocol =>
                {
                    Arc::clone(id)
                }
                _ => {
                    let id = Arc::new(self.identify(r.src_ip, r.dst_port, r.protocol));
                    last = Some((r.src_ip, r.dst_port, r.protocol, Arc::clone(&id)));
                    id
                }
            };
            r.identity = Some(identity);
        }
    }
}
