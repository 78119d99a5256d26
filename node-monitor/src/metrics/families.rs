//! A [`Snapshot`] → the metric families to encode (names, help, labels), prepared once per
//! update so that a scrape only formats; the collector that encodes them.
use std::{
    borrow::Cow,
    collections::BTreeMap,
    fmt,
    sync::{Arc, PoisonError, atomic::Ordering},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Unit,
};

use super::{SharedState, snapshot::Snapshot};

/// Loss reasons counted by the data path, per group (`GroupStats`).
const KERNEL_LOSS_REASONS: [&str; 3] = ["rate_limited", "ringbuf_full", "group_budget"];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// How a stored integer is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    One,
    /// Nanoseconds, exported as seconds.
    NanosAsSeconds,
}

#[derive(Debug)]
pub(super) struct PreparedFamily {
    /// Without the `_total` (counter) or unit suffix: the encoder adds them.
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: Kind,
    scale: Scale,
    /// Sorted by labels; duplicates summed.
    samples: Vec<(Labels, u64)>,
}

struct FamilyBuilder {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: Kind,
    scale: Scale,
    samples: BTreeMap<Labels, u64>,
}

impl FamilyBuilder {
    fn counter(name: &'static str, help: &'static str) -> Self {
        FamilyBuilder {
            name,
            help,
            unit: None,
            kind: Kind::Counter,
            scale: Scale::One,
            samples: BTreeMap::new(),
        }
    }
    fn gauge(name: &'static str, help: &'static str) -> Self {
        FamilyBuilder {
            kind: Kind::Gauge,
            ..Self::counter(name, help)
        }
    }
    fn seconds(mut self) -> Self {
        self.unit = Some(Unit::Seconds);
        self.scale = Scale::NanosAsSeconds;
        self
    }
    /// Adds to the sample with these labels (summing duplicates, so that the exposition
    /// never holds the same series twice).
    fn add(&mut self, labels: Labels, v: u64) {
        let e = self.samples.entry(labels).or_insert(0);
        *e = e.saturating_add(v);
    }
    fn build(self) -> PreparedFamily {
        PreparedFamily {
            name: self.name,
            help: self.help,
            unit: self.unit,
            kind: self.kind,
            scale: self.scale,
            samples: self.samples.into_iter().collect(),
        }
    }
}

fn l(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// Turns a snapshot into the families to encode, in a stable order.
pub(super) fn prepare(s: &Snapshot) -> Vec<PreparedFamily> {
    let mut packets = FamilyBuilder::counter(
        "node_monitor_packets",
        "Packets to watched ports seen by the data path, by port group, protocol and verdict.",
    );
    let mut bytes = FamilyBuilder::counter(
        "node_monitor_bytes",
        "Bytes (frame length) of packets to watched ports, by port group, protocol and verdict.",
    );
    let mut conns = FamilyBuilder::counter(
        "node_monitor_connections",
        "New connections to watched ports (TCP SYN, or the first UDP packet of an idle 5-tuple), by port group, protocol and verdict.",
    );
    let mut would_drop = FamilyBuilder::counter(
        "node_monitor_would_drop_packets",
        "Packets from sources not allowed that drop mode would have dropped (group in monitor mode), by port group and protocol.",
    );
    let mut dropped = FamilyBuilder::counter(
        "node_monitor_dropped_packets",
        "Packets from sources not allowed that were dropped (group enforces), by port group and protocol.",
    );
    let mut events = FamilyBuilder::counter(
        "node_monitor_events",
        "Events the data path wrote to the ring buffer (flagged connections for denied, sampled flow records for allowed), by port group, protocol and verdict.",
    );
    let mut lost = FamilyBuilder::counter(
        "node_monitor_lost_events",
        "Events lost before output, by reason: rate_limited (per-source budget), group_budget (node-wide budget per group) and ringbuf_full in the kernel, the rest in userspace.",
    );
    let mut sampled_out = FamilyBuilder::counter(
        "node_monitor_sampled_out",
        "Allowed new connections not reported because 1-in-N sampling skipped them (not a loss), by port group and protocol.",
    );
    for g in &s.groups {
        let gpv = l(&[
            ("group", &g.group),
            ("proto", g.proto),
            ("verdict", g.verdict),
        ]);
        let gp = l(&[("group", &g.group), ("proto", g.proto)]);
        let st = &g.stats;
        packets.add(gpv.clone(), st.packets);
        bytes.add(gpv.clone(), st.bytes);
        conns.add(gpv.clone(), st.new_conns);
        events.add(gpv, st.events);
        would_drop.add(gp.clone(), st.would_drop);
        dropped.add(gp.clone(), st.dropped);
        sampled_out.add(gp, st.sampled_out);
        lost.add(
            l(&[("reason", KERNEL_LOSS_REASONS[0])]),
            st.lost_rate_limited,
        );
        lost.add(
            l(&[("reason", KERNEL_LOSS_REASONS[1])]),
            st.lost_ringbuf_full,
        );
        lost.add(
            l(&[("reason", KERNEL_LOSS_REASONS[2])]),
            st.lost_group_budget,
        );
    }
    for (reason, n) in &s.lost_events {
        if KERNEL_LOSS_REASONS.contains(&reason.as_str()) {
            continue;
        }
        lost.add(l(&[("reason", reason)]), *n);
    }

    let mut unclassified = FamilyBuilder::counter(
        "node_monitor_packets_unclassified",
        "Packets passed without classification (not IP, not TCP/UDP, fragments) or because they could not be parsed, answers that could not be reported, fragments by kind (tiny, overlapping, to a watched port) and the node's acceptances nobody saw arrive (unseen_accepted*, handshake*: NM-1030), and TCP/UDP packets to ports no group watches (unwatched_port), by reason; dropped_unparsed counts the unparsed packets to a port of an action: drop group that were dropped (fail closed), each also counted under its parse reason.",
    );
    for (reason, n) in &s.reasons {
        unclassified.add(l(&[("reason", reason)]), *n);
    }

    let mut flagged = FamilyBuilder::counter(
        "node_monitor_flagged_connections",
        "Flagged connections (from sources not allowed) by how the node answered: accepted, refused or none, by port group and protocol.",
    );
    for (group, proto, answer, n) in &s.answers {
        flagged.add(
            l(&[("group", group), ("proto", proto), ("answer", answer)]),
            *n,
        );
    }

    let mut by_source = FamilyBuilder::counter(
        "node_monitor_flagged_connections_by_source",
        "Flagged connections by port group and source workload, when a cluster is watched: source_kind (pod, node, host_network, external, unresolved), the pod's namespace, its workload's kind and name (a node's name, workload_kind Node). At most 1000 series; sources past them count in their group's workload=\"(other)\" series.",
    );
    for c in &s.flagged_by_source {
        by_source.add(
            l(&[
                ("group", &c.group),
                ("source_kind", c.source_kind),
                ("source_namespace", &c.namespace),
                ("source_workload_kind", &c.workload_kind),
                ("source_workload", &c.workload),
            ]),
            c.count,
        );
    }

    let mut alerts = FamilyBuilder::counter(
        "node_monitor_alerts",
        "Alerts raised, by rule id and severity.",
    );
    for (rule, severity, n) in &s.alerts {
        alerts.add(l(&[("rule", rule), ("severity", severity)]), *n);
    }
    let mut suppressed = FamilyBuilder::counter(
        "node_monitor_alerts_suppressed",
        "Alerts withheld by deduplication or suppression, by rule id.",
    );
    for (rule, n) in &s.alerts_suppressed {
        suppressed.add(l(&[("rule", rule)]), *n);
    }

    let mut sink_records = FamilyBuilder::counter(
        "node_monitor_sink_records",
        "Records delivered by each output sink, by sink name and kind.",
    );
    let mut sink_dropped = FamilyBuilder::counter(
        "node_monitor_sink_dropped",
        "Records an output sink dropped, by sink name, kind and reason.",
    );
    let mut sink_queue = FamilyBuilder::gauge(
        "node_monitor_sink_queue_length",
        "Records waiting in each output sink's queue.",
    );
    for sink in &s.sinks {
        sink_records.add(l(&[("sink", &sink.name), ("kind", sink.kind)]), sink.sent);
        for (reason, n) in &sink.dropped {
            sink_dropped.add(
                l(&[
                    ("sink", &sink.name),
                    ("kind", sink.kind),
                    ("reason", reason),
                ]),
                *n,
            );
        }
        sink_queue.add(l(&[("sink", &sink.name)]), sink.queue_len);
    }

    let mut flow_entries = FamilyBuilder::gauge(
        "node_monitor_flow_table_entries",
        "Entries in the kernel flow table (LRU hash) now.",
    );
    flow_entries.add(Vec::new(), s.flow_table_entries);
    let mut flow_capacity = FamilyBuilder::gauge(
        "node_monitor_flow_table_capacity",
        "Maximum entries of the kernel flow table.",
    );
    flow_capacity.add(Vec::new(), s.flow_table_capacity);

    let mut run_count = FamilyBuilder::counter(
        "node_monitor_program_run_count",
        "Times each eBPF program ran while kernel BPF statistics were enabled.",
    );
    let mut run_time = FamilyBuilder::counter(
        "node_monitor_program_run_time",
        "Time spent running each eBPF program while kernel BPF statistics were enabled.",
    )
    .seconds();
    for p in &s.programs {
        run_count.add(l(&[("program", p.program)]), p.run_count);
        run_time.add(l(&[("program", p.program)]), p.run_time_ns);
    }

    let mut reloads = FamilyBuilder::counter(
        "node_monitor_config_reloads",
        "Configuration reloads, by result (success or failure).",
    );
    for (result, n) in &s.config_reloads {
        reloads.add(l(&[("result", result)]), *n);
    }

    let mut attached = FamilyBuilder::gauge(
        "node_monitor_attached_interfaces",
        "Network interfaces the eBPF programs are attached to now.",
    );
    attached.add(Vec::new(), s.attached_interfaces);
    let mut pending = FamilyBuilder::gauge(
        "node_monitor_pending_answers",
        "Flagged connection attempts waiting for the node's answer now.",
    );
    pending.add(Vec::new(), s.pending_answers);

    let mut detector_entries = FamilyBuilder::gauge(
        "node_monitor_detector_entries",
        "Entries in each bounded per-source table of the daemon now (dedup series, sweep and scan states, attempts awaiting an answer).",
    );
    let mut detector_capacity = FamilyBuilder::gauge(
        "node_monitor_detector_capacity",
        "Maximum entries of each bounded per-source table of the daemon.",
    );
    let mut detector_evictions = FamilyBuilder::counter(
        "node_monitor_detector_evictions",
        "Entries a bounded per-source table of the daemon evicted because it was full.",
    );
    for d in &s.detectors {
        let labels = l(&[("detector", d.detector)]);
        detector_entries.add(labels.clone(), d.entries);
        detector_capacity.add(labels.clone(), d.capacity);
        detector_evictions.add(labels, d.evictions);
    }

    let mut families = vec![
        packets,
        bytes,
        conns,
        would_drop,
        dropped,
        events,
        lost,
        sampled_out,
        unclassified,
        flagged,
        by_source,
        alerts,
        suppressed,
        sink_records,
        sink_dropped,
        sink_queue,
        flow_entries,
        flow_capacity,
        run_count,
        run_time,
        reloads,
        attached,
        pending,
        detector_entries,
        detector_capacity,
        detector_evictions,
    ];
    if let Some(c) = &s.cluster {
        families.extend(cluster_families(c));
    }
    families.into_iter().map(FamilyBuilder::build).collect()
}

/// The cluster cache's families (only when the daemon watches a cluster).
fn cluster_families(c: &super::snapshot::ClusterSnapshot) -> Vec<FamilyBuilder> {
    let mut state = FamilyBuilder::gauge(
        "node_monitor_cluster_watch_state",
        "Watch state of each Kubernetes kind the identity cache watches: 1 for the current state (starting, synced, failing), 0 for the others.",
    );
    let mut objects = FamilyBuilder::gauge(
        "node_monitor_cluster_objects",
        "Objects of each kind held by the identity cache.",
    );
    let mut last_sync = FamilyBuilder::gauge(
        "node_monitor_cluster_last_sync_timestamp_seconds",
        "When each kind's last full list completed, in seconds since the epoch (0: never).",
    );
    let mut errors = FamilyBuilder::counter(
        "node_monitor_cluster_watch_errors",
        "Failed list or watch requests, by kind.",
    );
    let mut lists = FamilyBuilder::counter(
        "node_monitor_cluster_lists",
        "Full lists started, by kind: the first, resyncs, and relists after 410 Gone.",
    );
    for k in &c.kinds {
        for st in ["starting", "synced", "failing"] {
            state.add(
                l(&[("kind", k.kind), ("state", st)]),
                u64::from(k.state == st),
            );
        }
        objects.add(l(&[("kind", k.kind)]), k.objects);
        last_sync.add(l(&[("kind", k.kind)]), k.last_sync_unix_s);
        errors.add(l(&[("kind", k.kind)]), k.errors);
        lists.add(l(&[("kind", k.kind)]), k.lists);
    }
    let mut synced = FamilyBuilder::gauge(
        "node_monitor_cluster_synced",
        "1 once the identity index was built after every kind had completed its first list.",
    );
    synced.add(Vec::new(), u64::from(c.synced));
    let mut age = FamilyBuilder::gauge(
        "node_monitor_cluster_cache_age_seconds",
        "Seconds since the longest-failing watch first failed (0 while every watch is healthy); identity older than cluster.stale_after_s is marked stale in alerts.",
    );
    age.add(Vec::new(), c.cache_age_s);
    let mut bytes = FamilyBuilder::gauge(
        "node_monitor_cluster_cache_bytes",
        "Heap bytes held by the identity cache (the kept objects and the index), estimated from its structures at its last index build.",
    );
    bytes.add(Vec::new(), c.cache_bytes);
    let mut failures = FamilyBuilder::counter(
        "node_monitor_node_port_ranges_write_failures",
        "Writes of the NodePorts' loadBalancerSourceRanges to the data path that failed; the ranges applied before are put back, and the write is retried (see the log).",
    );
    failures.add(Vec::new(), c.node_port_ranges_write_failures);
    let mut families = vec![
        state, objects, last_sync, errors, lists, synced, age, bytes, failures,
    ];
    if let Some(r) = &c.node_port_ranges {
        families.extend(node_port_range_families(r));
    }
    families
}

/// The NodePorts' `loadBalancerSourceRanges` in the data path (once the daemon wrote them).
fn node_port_range_families(r: &super::snapshot::NodePortRangesSnapshot) -> Vec<FamilyBuilder> {
    let mut ports = FamilyBuilder::gauge(
        "node_monitor_node_port_ranges_ports",
        "NodePorts whose Service sets loadBalancerSourceRanges, by state: enforced, or not_enforced (their ranges did not fit in the per-port tables: left unmarked, they fail open and only the group's allowlist holds there).",
    );
    ports.add(l(&[("state", "enforced")]), r.enforced);
    ports.add(l(&[("state", "not_enforced")]), r.not_enforced);
    let mut entries = FamilyBuilder::gauge(
        "node_monitor_node_port_ranges_entries",
        "Entries the per-port source-range tables hold now, by address family.",
    );
    let mut wanted = FamilyBuilder::gauge(
        "node_monitor_node_port_ranges_wanted_entries",
        "Entries the NodePorts' loadBalancerSourceRanges and cluster.node_port_also_allow want in the per-port tables, by address family; above node_monitor_node_port_ranges_capacity, some ranges are not enforced.",
    );
    let mut capacity = FamilyBuilder::gauge(
        "node_monitor_node_port_ranges_capacity",
        "Maximum entries of each per-port source-range table, by address family.",
    );
    for (i, family) in ["ipv4", "ipv6"].into_iter().enumerate() {
        entries.add(l(&[("family", family)]), r.entries[i]);
        wanted.add(l(&[("family", family)]), r.wanted[i]);
        capacity.add(l(&[("family", family)]), r.capacity);
    }
    vec![ports, entries, wanted, capacity]
}

/// Encodes the latest prepared snapshot on each scrape.
#[derive(Debug)]
pub(super) struct SnapshotCollector {
    pub(super) state: Arc<SharedState>,
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState").finish_non_exhaustive()
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        {
            let families = self
                .state
                .families
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            for fam in families.iter() {
                // A labelled family with no series yet (no alerts, no sinks) is left out.
                if fam.samples.is_empty() {
                    continue;
                }
                let metric_type = match fam.kind {
                    Kind::Counter => MetricType::Counter,
                    Kind::Gauge => MetricType::Gauge,
                };
                let mut metric = encoder.encode_descriptor(
                    fam.name,
                    fam.help,
                    fam.unit.as_ref(),
                    metric_type,
                )?;
                for (labels, v) in &fam.samples {
                    let labels: Vec<(&str, Cow<'_, str>)> = labels
                        .iter()
                        .map(|(k, v)| (*k, Cow::Borrowed(v.as_str())))
                        .collect();
                    let sample = metric.encode_family(&labels)?;
                    match (fam.kind, fam.scale) {
                        (Kind::Counter, Scale::One) => ConstCounter::new(*v).encode(sample)?,
                        (Kind::Counter, Scale::NanosAsSeconds) => {
                            ConstCounter::new(nanos_to_seconds(*v)).encode(sample)?;
                        }
                        (Kind::Gauge, Scale::One) => ConstGauge::new(*v).encode(sample)?,
                        (Kind::Gauge, Scale::NanosAsSeconds) => {
                            ConstGauge::new(nanos_to_seconds(*v)).encode(sample)?;
                        }
                    }
                }
            }
        }
        let ready = ConstGauge::new(u64::from(self.state.ready.load(Ordering::Relaxed)));
        let metric = encoder.encode_descriptor(
            "node_monitor_ready",
            "1 once the eBPF programs are attached and their maps written, else 0.",
            None,
            ready.metric_type(),
        )?;
        ready.encode(metric)
    }
}

fn nanos_to_seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use crate::{
        datapath::PortRangesApplied,
        metrics::{ClusterSnapshot, Metrics, NodePortRangesSnapshot, Snapshot},
    };

    fn render(ranges: Option<NodePortRangesSnapshot>) -> String {
        render_with(ranges, 0)
    }

    fn render_with(ranges: Option<NodePortRangesSnapshot>, failures: u64) -> String {
        let m = Metrics::new();
        m.update(&Snapshot {
            cluster: Some(ClusterSnapshot {
                node_port_ranges: ranges,
                node_port_ranges_write_failures: failures,
                ..ClusterSnapshot::default()
            }),
            ..Snapshot::default()
        });
        m.render_text()
    }

    /// Ports past the per-port tables are visible: by state, with the entries held, wanted
    /// and the capacity per family.
    #[test]
    fn node_port_ranges_that_do_not_fit_are_counted() {
        let applied = PortRangesApplied {
            ports: 100,
            entries_v4: 803,
            entries_v6: 801,
            not_enforced: 450,
            wanted_v4: 4402,
            wanted_v6: 4401,
            shared_full: false,
        };
        let text = render(Some(applied.into()));
        for line in [
            "node_monitor_node_port_ranges_ports{state=\"enforced\"} 100",
            "node_monitor_node_port_ranges_ports{state=\"not_enforced\"} 450",
            "node_monitor_node_port_ranges_entries{family=\"ipv4\"} 803",
            "node_monitor_node_port_ranges_entries{family=\"ipv6\"} 801",
            "node_monitor_node_port_ranges_wanted_entries{family=\"ipv4\"} 4402",
            "node_monitor_node_port_ranges_wanted_entries{family=\"ipv6\"} 4401",
            "node_monitor_node_port_ranges_capacity{family=\"ipv4\"} 65536",
            "node_monitor_node_port_ranges_capacity{family=\"ipv6\"} 65536",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    /// Before the daemon has written any ranges, none of these families appear but the
    /// write failures (0).
    #[test]
    fn node_port_ranges_absent_until_written() {
        let text = render(None);
        let ranges: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("node_monitor_node_port_ranges"))
            .collect();
        assert_eq!(
            ranges,
            ["node_monitor_node_port_ranges_write_failures_total 0"],
            "in:\n{text}"
        );
        assert!(text.contains("node_monitor_cluster_synced"), "{text}");
    }

    /// A failed write is counted, beside the figures of the ranges put back.
    #[test]
    fn node_port_range_write_failures_are_counted() {
        let applied = PortRangesApplied {
            ports: 2,
            entries_v4: 3,
            entries_v6: 0,
            not_enforced: 0,
            wanted_v4: 3,
            wanted_v6: 0,
            shared_full: false,
        };
        let text = render_with(Some(applied.into()), 3);
        assert!(
            text.contains("node_monitor_node_port_ranges_write_failures_total 3"),
            "{text}"
        );
        assert!(
            text.contains("node_monitor_node_port_ranges_ports{state=\"enforced\"} 2"),
            "{text}"
        );
    }
}
