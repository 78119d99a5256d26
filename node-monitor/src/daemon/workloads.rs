//! Flagged connections by source workload (issue 11's dashboard): who, in cluster terms,
//! knocked on which group. Counted by the daemon from the records it enriches, so only
//! when a cluster is watched; its label sets are bounded by [`MAX_SOURCES`].
use std::{collections::HashMap, sync::Arc};

use crate::{
    metrics::SourceWorkloadCount,
    record::{FlowRecord, SourceIdentity},
};

/// Distinct (group, source) label sets kept. Past it, a new source of a group is counted in
/// that group's `(other)` series (and in the `source_workloads` detector's evictions), so a
/// cluster of many workloads, or a flood from many pods, cannot grow the exposition without
/// bound.
pub(super) const MAX_SOURCES: usize = 1_000;

/// The workload label of the series that holds the sources past [`MAX_SOURCES`].
pub(super) const OTHER: &str = "(other)";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    group: Arc<str>,
    kind: &'static str,
    namespace: Arc<str>,
    workload_kind: Arc<str>,
    workload: Arc<str>,
}

/// The counts, cumulative over the daemon's life (they are exported as counters).
#[derive(Debug)]
pub(super) struct SourceWorkloads {
    counts: HashMap<Key, u64>,
    /// Records counted in an `(other)` series because the table was full.
    pub(super) folded: u64,
    /// The fixed labels, made once and shared by every key that carries them.
    empty: Arc<str>,
    node: Arc<str>,
    other: Arc<str>,
}

impl Default for SourceWorkloads {
    fn default() -> Self {
        Self {
            counts: HashMap::new(),
            folded: 0,
            empty: Arc::from(""),
            node: Arc::from("Node"),
            other: Arc::from(OTHER),
        }
    }
}

impl SourceWorkloads {
    /// Counts a flagged connection whose record carries an identity; a record without one
    /// (no cluster watched) is not counted here.
    pub(super) fn count(&mut self, rec: &FlowRecord) {
        let Some(id) = rec.identity.as_deref() else {
            return;
        };
        let (namespace, workload_kind, workload) = match &id.source {
            SourceIdentity::Pod(p) => (
                Arc::clone(&p.namespace),
                Arc::clone(&p.workload.kind),
                Arc::clone(&p.workload.name),
            ),
            SourceIdentity::Node(n) | SourceIdentity::HostNetwork(n) => (
                Arc::clone(&self.empty),
                Arc::clone(&self.node),
                Arc::clone(&n.name),
            ),
            SourceIdentity::External | SourceIdentity::Unresolved => (
                Arc::clone(&self.empty),
                Arc::clone(&self.empty),
                Arc::clone(&self.empty),
            ),
        };
        let key = Key {
            group: Arc::clone(&rec.group),
            kind: id.source.kind(),
            namespace,
            workload_kind,
            workload,
        };
        if let Some(n) = self.counts.get_mut(&key) {
            *n += 1;
            return;
        }
        let key = if self.counts.len() < MAX_SOURCES {
            key
        } else {
            self.folded += 1;
            Key {
                group: key.group,
                kind: "",
                namespace: Arc::clone(&self.empty),
                workload_kind: Arc::clone(&self.empty),
                workload: Arc::clone(&self.other),
            }
        };
        // The `(other)` series of a group may itself be new past the cap: one per group.
        *self.counts.entry(key).or_default() += 1;
    }

    /// Distinct series held.
    pub(super) fn len(&self) -> usize {
        self.counts.len()
    }

    /// For the metrics snapshot.
    pub(super) fn snapshot(&self) -> Vec<SourceWorkloadCount> {
        self.counts
            .iter()
            .map(|(k, n)| SourceWorkloadCount {
                group: k.group.to_string(),
                source_kind: k.kind,
                namespace: k.namespace.to_string(),
                workload_kind: k.workload_kind.to_string(),
                workload: k.workload.to_string(),
                count: *n,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{
        CacheState, DestinationIdentity, FlowIdentity, NodeIdentity, PodIdentity, Workload, fixture,
    };

    fn with_source(group: &str, source: SourceIdentity) -> FlowRecord {
        let mut r = fixture::flagged();
        r.group = Arc::from(group);
        r.identity = Some(Arc::new(FlowIdentity {
            source,
            destination: DestinationIdentity::default(),
            cache: CacheState {
                synced: true,
                age: std::time::Duration::ZERO,
                stale: false,
            },
        }));
        r
    }

    fn pod(ns: &str, name: &str, kind: &str, workload: &str) -> SourceIdentity {
        SourceIdentity::Pod(Arc::new(PodIdentity {
            namespace: Arc::from(ns),
            name: Arc::from(name),
            uid: Arc::from("uid"),
            node: Some(Arc::from("worker-1")),
            workload: Workload {
                kind: Arc::from(kind),
                name: Arc::from(workload),
            },
        }))
    }

    fn find<'a>(
        s: &'a [SourceWorkloadCount],
        group: &str,
        workload: &str,
    ) -> Option<&'a SourceWorkloadCount> {
        s.iter()
            .find(|c| c.group == group && c.workload == workload)
    }

    #[test]
    fn pods_of_one_workload_share_a_series_nodes_and_outsiders_have_theirs() {
        let mut t = SourceWorkloads::default();
        t.count(&with_source(
            "kubelet",
            pod("shop", "evil-1", "Deployment", "evil"),
        ));
        t.count(&with_source(
            "kubelet",
            pod("shop", "evil-2", "Deployment", "evil"),
        ));
        t.count(&with_source(
            "etcd-client",
            pod("shop", "evil-2", "Deployment", "evil"),
        ));
        t.count(&with_source(
            "kubelet",
            SourceIdentity::HostNetwork(Arc::new(NodeIdentity {
                name: Arc::from("worker-2"),
                roles: vec![],
            })),
        ));
        t.count(&with_source("kubelet", SourceIdentity::External));
        t.count(&with_source("kubelet", SourceIdentity::External));
        // No identity (no cluster watched): not counted here.
        t.count(&fixture::flagged());
        let s = t.snapshot();
        let evil = find(&s, "kubelet", "evil").unwrap();
        assert_eq!(
            (
                evil.count,
                evil.source_kind,
                evil.namespace.as_str(),
                evil.workload_kind.as_str()
            ),
            (2, "pod", "shop", "Deployment")
        );
        assert_eq!(find(&s, "etcd-client", "evil").unwrap().count, 1);
        let node = find(&s, "kubelet", "worker-2").unwrap();
        assert_eq!(
            (node.source_kind, node.workload_kind.as_str(), node.count),
            ("host_network", "Node", 1)
        );
        let ext = s.iter().find(|c| c.source_kind == "external").unwrap();
        assert_eq!(ext.count, 2);
        assert_eq!(t.len(), 4);
        assert_eq!(t.folded, 0);
    }

    #[test]
    fn sources_past_the_cap_fold_into_one_other_series_per_group_and_are_counted() {
        let mut t = SourceWorkloads::default();
        for i in 0..MAX_SOURCES + 50 {
            t.count(&with_source(
                "kubelet",
                pod("ns", "p", "Deployment", &format!("w{i}")),
            ));
        }
        // A known series still counts past the cap.
        t.count(&with_source("kubelet", pod("ns", "p", "Deployment", "w0")));
        t.count(&with_source(
            "etcd-client",
            pod("ns", "p", "Deployment", "x"),
        ));
        let s = t.snapshot();
        assert_eq!(
            t.len(),
            MAX_SOURCES + 2,
            "the cap plus one (other) per group"
        );
        assert_eq!(t.folded, 51);
        assert_eq!(find(&s, "kubelet", OTHER).unwrap().count, 50);
        assert_eq!(find(&s, "etcd-client", OTHER).unwrap().count, 1);
        assert_eq!(find(&s, "kubelet", "w0").unwrap().count, 2);
        let total: u64 = s.iter().map(|c| c.count).sum();
        assert_eq!(total, (MAX_SOURCES + 52) as u64, "nothing lost");
    }
}
