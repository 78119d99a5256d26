//! The cluster cache in the daemon (issue 8): started from the `cluster` section, read once
//! per dispatch to enrich records, and reported in the metrics.
use std::time::SystemTime;

use anyhow::Context as _;
use tracing::info;

use super::Daemon;
use crate::{
    cluster::{Backoff, Cluster, connect, node_name, node_port_ranges, set_values},
    config::{Config, SetValues},
    metrics::{ClusterKindSnapshot, ClusterSnapshot},
    record::FlowRecord,
};

/// Starts the cluster cache when the config (and the credentials found) say so.
///
/// # Errors
///
/// `cluster.enabled: on` without usable credentials.
pub(super) async fn start_cluster(cfg: &Config) -> anyhow::Result<Option<Cluster>> {
    let Some(client) = connect(&cfg.cluster).await.context("cluster identity")? else {
        return Ok(None);
    };
    let node = node_name(&cfg.cluster);
    info!(
        node = node.as_deref().unwrap_or("(unknown)"),
        "watching the cluster for identity"
    );
    Ok(Some(Cluster::start(
        &client,
        &cfg.cluster,
        node,
        Backoff::DAEMON,
    )))
}

/// How long after a failed write of the cluster's sets (allowlists or per-port ranges) the
/// daemon tries again, if the cluster has not changed meanwhile.
const SETS_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

impl Daemon {
    /// Sets the identity of every record about to be dispatched: one view of the cache
    /// (an `Arc` clone) for the whole batch, never a wait; consecutive records of one flow
    /// key share one identity ([`View::enrich_all`](crate::cluster::View::enrich_all)).
    pub(super) fn enrich(cluster: Option<&Cluster>, records: &mut [FlowRecord]) {
        let Some(cluster) = cluster else { return };
        if records.is_empty() {
            return;
        }
        cluster.view().enrich_all(records);
    }

    /// The cluster cache's state for the metrics.
    pub(super) fn cluster_metrics(&self) -> Option<ClusterSnapshot> {
        let status = self.cluster.as_ref()?.status();
        let c = status.counts;
        let objects = |kind: crate::cluster::Kind| -> usize {
            use crate::cluster::Kind;
            match kind {
                Kind::Node => c.nodes,
                Kind::Pod => c.pods,
                Kind::Service => c.services,
                Kind::EndpointSlice => c.endpointslices,
                Kind::ReplicaSet => c.replicasets,
                Kind::Job => c.jobs,
            }
        };
        Some(ClusterSnapshot {
            kinds: status
                .kinds
                .iter()
                .map(|(kind, s)| ClusterKindSnapshot {
                    kind: kind.name(),
                    state: s.state.name(),
                    objects: objects(*kind) as u64,
                    last_sync_unix_s: s
                        .last_sync
                        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs()),
                    errors: s.errors,
                    lists: s.lists,
                })
                .collect(),
            synced: status.cache.synced,
            cache_age_s: status.cache.age.as_secs(),
            cache_bytes: status.cache_bytes as u64,
            node_port_ranges: self.dp.port_ranges_applied().map(Into::into),
            node_port_ranges_write_failures: self.dp.port_ranges_failures(),
        })
    }
}

/// The warning for NodePorts whose ranges did not fit (nothing when all did): how many, the
/// entries wanted per family, the capacity, and what the data path does meanwhile.
fn warn_not_enforced(applied: &crate::datapath::PortRangesApplied) {
    if applied.not_enforced == 0 {
        return;
    }
    let capacity = node_monitor_common::PORT_ALLOW_ENTRIES;
    if applied.shared_full {
        tracing::warn!(
            not_enforced = applied.not_enforced,
            wanted_v4 = applied.wanted_v4,
            wanted_v6 = applied.wanted_v6,
            capacity,
            "the sources every NodePort accepts (cluster.node_port_also_allow) alone do not fit in the per-port table: no NodePort's loadBalancerSourceRanges are enforced until they fit (every such port fails open; its group's allowlist still holds); shorten cluster.node_port_also_allow"
        );
    } else {
        tracing::warn!(
            not_enforced = applied.not_enforced,
            enforced = applied.ports,
            wanted_v4 = applied.wanted_v4,
            wanted_v6 = applied.wanted_v6,
            capacity,
            "the per-port table is full: the loadBalancerSourceRanges of these NodePorts are not enforced (each such port fails open; its group's allowlist still holds); the other ports' are"
        );
    }
}

/// The values of the symbolic sets now: from the cluster's snapshot when there is one.
pub(super) fn current_sets(
    cluster: Option<&Cluster>,
    cfg: &Config,
    subnets: &[ipnet::IpNet],
) -> SetValues {
    match cluster {
        Some(c) => set_values(&c.snapshot(), cfg, subnets),
        None => SetValues {
            node_subnets: subnets.to_vec(),
            ..SetValues::default()
        },
    }
}

impl Daemon {
    /// The values of the symbolic sets for `cfg` now.
    pub(super) fn set_values(&self, cfg: &Config) -> SetValues {
        current_sets(self.cluster.as_ref(), cfg, &self.subnets)
    }

    /// Each housekeeping round (500 ms): when the cache published a new snapshot and the
    /// config allows a cluster set, rewrites the allowlists if a set's value changed
    /// (`Datapath::apply_config_with` adds the new entries before it removes the old ones,
    /// and never re-attaches). With the 200 ms debounce of the index, a change in the
    /// cluster reaches the maps within about a second.
    ///
    /// The per-port source ranges (each NodePort whose Service sets
    /// `loadBalancerSourceRanges`) follow the same snapshots, and a reload that changes
    /// `cluster.node_port_also_allow`.
    pub(super) fn follow_cluster_sets(&mut self) {
        let Some(c) = &self.cluster else { return };
        let generation = c.generation();
        let also_allow = &self.cfg.cluster.node_port_also_allow;
        let also_allow_changed = self.dp.port_ranges_also_allow.as_deref() != Some(also_allow);
        let retry_due = self
            .sets_retry_at
            .is_some_and(|at| std::time::Instant::now() >= at);
        if generation == self.sets_generation && !also_allow_changed && !retry_due {
            return;
        }
        self.sets_generation = generation;
        self.sets_retry_at = None;
        let sets = self.set_values(&self.cfg);
        self.follow_port_ranges(&sets);
        if !self.cfg.uses_cluster_sets() || sets == self.applied_sets {
            return;
        }
        match self.dp.apply_config_with(&self.cfg, &sets) {
            Ok(()) => {
                info!(
                    control_plane_nodes = sets.control_plane_nodes.len(),
                    nodes = sets.nodes.len(),
                    pod_cidrs = sets.pod_cidrs.len(),
                    apiserver_endpoints = sets.apiserver_endpoints.len(),
                    pod_selectors = sets.pods.len(),
                    "cluster allow sets changed; allowlists rewritten in place"
                );
                self.applied_sets = sets;
            }
            Err(e) => {
                self.retry_sets_later();
                tracing::error!(error = %e, retry_in_s = SETS_RETRY.as_secs(), "rewriting the allowlists for the cluster's sets failed; the previous ones stay");
            }
        }
    }

    /// Writes the per-port source ranges of the cluster's snapshot (with `sets` for
    /// `cluster.node_port_also_allow`) when they changed. Ports whose ranges do not fit stay
    /// unmarked (they fail open; the group's allowlist still holds there): a warning with
    /// their count, the entries wanted and the capacity, and the metrics
    /// `node_monitor_node_port_ranges_*`.
    fn follow_port_ranges(&mut self, sets: &SetValues) {
        let Some(c) = &self.cluster else { return };
        let want = node_port_ranges(&c.snapshot(), &self.cfg, sets);
        self.dp.port_ranges_also_allow = Some(self.cfg.cluster.node_port_also_allow.to_vec());
        match self.dp.apply_port_ranges(&want) {
            Ok(None) => {}
            Ok(Some(applied)) => {
                warn_not_enforced(&applied);
                info!(
                    ports = applied.ports,
                    entries_v4 = applied.entries_v4,
                    entries_v6 = applied.entries_v6,
                    "NodePort loadBalancerSourceRanges rewritten in place"
                );
            }
            Err(e) => {
                self.retry_sets_later();
                tracing::error!(error = %e, retry_in_s = SETS_RETRY.as_secs(), "writing the NodePorts' loadBalancerSourceRanges failed; the previous ones stay");
            }
        }
    }

    /// A write of the cluster's sets or ranges failed: try again in [`SETS_RETRY`] even if
    /// the cluster does not change meanwhile.
    fn retry_sets_later(&mut self) {
        self.sets_retry_at = Some(std::time::Instant::now() + SETS_RETRY);
    }
}
