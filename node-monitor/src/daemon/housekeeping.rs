//! The housekeeping round, every 500 ms: interfaces that came or went, loss accounting and
//! alert windows, and the metrics snapshot, from one read of the kernel counters; every 10 s
//! the heap's free pages go back to the kernel.

use std::{collections::BTreeMap, time::Instant};

use tracing::{error, info, warn};

use super::{Daemon, FLOW_COUNT_ROUNDS};
use crate::{
    datapath::Datapath,
    detect::{self, LossTotals},
    metrics::{self, Snapshot},
    netif,
    record::Answer,
};

/// Gives the free pages of the heap back to the kernel, every 10 s and first half a second
/// after the start (after the load's scratch: the kernel's BTF, parsed, is 9 MiB). glibc
/// returns memory by itself only from the top of a heap, so pages freed below a live
/// allocation stayed resident, and the resident size crept up with traffic (about 2 MiB in
/// the soak's first minutes, with the live heap flat, measured with heaptrack) instead of
/// following what the daemon holds. A walk of the free chunks: microseconds for the
/// daemon's few MiB of heap.
#[cfg(target_env = "gnu")]
fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory of glibc's heaps; no live allocation
    // is touched.
    unsafe { libc::malloc_trim(0) };
}

/// Other C libraries keep their own policy.
#[cfg(not(target_env = "gnu"))]
fn trim_heap() {}

/// A group's flood summary when its window closes (read and reset); a failed read gives
/// an alert without a summary, and is logged.
pub(super) fn take_sketch(dp: &mut Datapath, group: &str) -> Option<crate::datapath::FloodSketch> {
    match dp.take_flood_sketch(group) {
        Ok(s) => s,
        Err(e) => {
            warn!(group, error = %e, "reading the flood summary failed; the flood alert goes without it");
            None
        }
    }
}

/// One read of the kernel's counters, shared by loss accounting and the metrics.
struct Counters {
    /// None when the read failed (this round then skips loss accounting).
    groups: Option<Vec<crate::datapath::GroupCounters>>,
    reasons: Option<[u64; node_monitor_common::reason::COUNT as usize]>,
    /// The node's answers per group (flood summaries); empty when the read failed.
    answers: BTreeMap<String, node_monitor_common::GroupAnswers>,
}

impl Counters {
    fn read(dp: &Datapath) -> Counters {
        Counters {
            groups: dp.group_counters().ok(),
            reasons: dp.reason_counters().ok(),
            answers: dp.flood_answers().unwrap_or_default(),
        }
    }
}

/// The kernel's event losses, cumulative: (rate limited, ring buffer full). The group
/// counters' losses, answer events lost to a full ring buffer, and NM-1030 events withheld
/// or lost on egress (counted by reason, not per group), so that these reach the flood
/// alerts and `losses_since_previous` like the others.
fn kernel_losses(
    groups: &[crate::datapath::GroupCounters],
    reasons: Option<&[u64; node_monitor_common::reason::COUNT as usize]>,
) -> (u64, u64) {
    use node_monitor_common::reason;
    let (mut rate_limited, mut ringbuf_full) = (0, 0);
    for c in groups {
        rate_limited += c.stats.lost_rate_limited;
        ringbuf_full += c.stats.lost_ringbuf_full;
    }
    if let Some(r) = reasons {
        ringbuf_full += r[reason::ANSWER_RINGBUF_FULL as usize];
        rate_limited += r[reason::UNSEEN_RATE_LIMITED as usize];
        ringbuf_full += r[reason::UNSEEN_RINGBUF_FULL as usize];
        rate_limited += r[reason::HANDSHAKE_RATE_LIMITED as usize];
        ringbuf_full += r[reason::HANDSHAKE_RINGBUF_FULL as usize];
    }
    (rate_limited, ringbuf_full)
}

impl Daemon {
    /// Every 500 ms: interfaces, loss accounting and alert windows, metrics.
    pub(super) fn housekeeping(&mut self) {
        self.rounds = self.rounds.wrapping_add(1);
        self.sync_interfaces();
        self.follow_cluster_sets();
        let now = Instant::now();
        // One read of the kernel counters serves loss accounting and the metrics.
        let counters = Counters::read(&self.dp);
        self.account_losses(&counters, now);
        let dp = &mut self.dp;
        self.engine
            .tick_with(now, &mut self.alerts, &mut |g: &str| take_sketch(dp, g));
        let tenth = self.rounds % FLOW_COUNT_ROUNDS == 1;
        self.update_metrics_from(tenth, counters);
        if tenth {
            trim_heap();
        }
    }

    /// Reads the loss counters and feeds them to the engine outside the housekeeping round:
    /// at start, before any event is read, as the baseline (the first totals the engine sees
    /// are a baseline; see [`crate::detect::Engine::on_losses`]); at shutdown, so that the losses
    /// of the last round reach the flood alert that the shutdown emits.
    pub(super) fn read_losses(&mut self) {
        let counters = Counters::read(&self.dp);
        self.account_losses(&counters, Instant::now());
    }

    /// Feeds the engine the cumulative loss counters (kernel and userspace).
    fn account_losses(&mut self, counters: &Counters, now: Instant) {
        if let Some(groups) = &counters.groups {
            let mut totals = LossTotals::default();
            (totals.rate_limited, totals.ringbuf_full) =
                kernel_losses(groups, counters.reasons.as_ref());
            for c in groups {
                totals.group_budget += c.stats.lost_group_budget;
                let g = totals.groups.entry(c.group.as_str().into()).or_default();
                g.new_conns += c.stats.new_conns;
                g.events += c.stats.events;
                g.rate_limited += c.stats.lost_rate_limited;
                g.group_budget += c.stats.lost_group_budget;
                g.ringbuf_full += c.stats.lost_ringbuf_full;
            }
            for (group, a) in &counters.answers {
                if let Some(g) = totals.groups.get_mut(group.as_str()) {
                    g.accepted = a.accepted;
                    g.refused = a.refused;
                }
            }
            if self.stats.events_malformed > 0 {
                totals
                    .userspace
                    .insert("decode_error".to_owned(), self.stats.events_malformed);
            }
            for s in self.sinks.stats() {
                for (reason, n) in &s.dropped {
                    *totals
                        .userspace
                        .entry(format!("sink_{reason}"))
                        .or_default() += n;
                }
            }
            let dp = &mut self.dp;
            self.engine
                .on_losses_with(&totals, now, &mut self.alerts, &mut |g: &str| {
                    take_sketch(dp, g)
                });
        }
    }

    /// Attaches to interfaces that appeared and match; forgets those that disappeared.
    fn sync_interfaces(&mut self) {
        let changes = self.ifaces.poll();
        if changes.is_empty() {
            self.pod_ifaces.sync(&mut self.dp, &self.attached);
            return;
        }
        // An uplink pattern now claims an interface the pods' watcher holds: the uplink wins.
        self.pod_ifaces.release(&mut self.dp, &changes.added);
        for iface in &changes.removed {
            if self.attached.remove(iface) {
                self.dp.detach_iface(iface);
                info!(
                    iface,
                    "interface gone or no longer matching; detached and forgotten"
                );
            }
        }
        self.pod_ifaces.reclaim(&changes.removed);
        for iface in &changes.added {
            match self.dp.attach(iface, self.mode) {
                Ok(_) => {
                    self.attached.insert(iface.clone());
                    info!(iface, "new interface attached");
                }
                Err(e) => {
                    warn!(iface, error = %e, "cannot attach to a new interface; will retry if it reappears");
                }
            }
        }
        self.pod_ifaces.sync(&mut self.dp, &self.attached);
        // node-subnets follows the attached uplinks (never the pods' interfaces).
        let current: Vec<String> = self.attached.iter().cloned().collect();
        match netif::subnets_of(&current) {
            Ok(s) if s != self.subnets => {
                self.subnets = s;
                let sets = self.set_values(&self.cfg);
                match self.dp.apply_config_with(&self.cfg, &sets) {
                    Ok(()) => self.applied_sets = sets,
                    Err(e) => {
                        error!(error = %e, "rewriting allowlists for the new interface set failed");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "reading interface addresses"),
        }
    }

    pub(super) fn update_metrics(&mut self, count_flows: bool) {
        let counters = Counters::read(&self.dp);
        self.update_metrics_from(count_flows, counters);
    }

    fn update_metrics_from(&mut self, count_flows: bool, counters: Counters) {
        // The count runs on a thread of its own; the figure is the last one it published.
        if count_flows {
            self.dp.request_flow_count();
        }
        if let Some(n) = self.dp.flow_count() {
            self.flow_entries = n;
        }
        let groups = counters.groups.unwrap_or_default();
        let reasons = counters.reasons.unwrap_or_default();
        let es = self.engine.stats();
        let sink_stats = self.sinks.stats();
        // Kernel losses (rate_limited, ringbuf_full) come from `groups`; only userspace ones here.
        let mut lost: BTreeMap<String, u64> = BTreeMap::new();
        lost.insert("decode_error".to_owned(), self.stats.events_malformed);
        let snap = Snapshot {
            groups: groups.iter().map(Into::into).collect(),
            reasons: metrics::reasons_snapshot(&reasons),
            answers: self
                .answers
                .iter()
                .map(|((g, p, a), n)| {
                    let answer = a.map_or("none", Answer::as_str);
                    (g.to_string(), p.name(), answer, *n)
                })
                .collect(),
            // By the severity each alert carried (NM-1030's depends on the group).
            alerts: es
                .alerts_by_rule_severity
                .iter()
                .map(|((id, severity), n)| ((*id).to_owned(), severity.as_str(), *n))
                .collect(),
            alerts_suppressed: es
                .suppressed_by_rule
                .iter()
                .map(|(id, n)| ((*id).to_owned(), *n))
                .collect(),
            lost_events: lost.into_iter().collect(),
            sinks: sink_stats.iter().map(Into::into).collect(),
            flow_table_entries: self.flow_entries,
            flow_table_capacity: u64::from(self.dp.limits().flows),
            programs: metrics::program_stats(self.dp.program_infos()),
            config_reloads: vec![
                ("success", self.stats.config_reloads_ok),
                ("failure", self.stats.config_reloads_failed),
            ],
            attached_interfaces: (self.attached.len() + self.pod_ifaces.len()) as u64,
            pending_answers: self.tracker.pending() as u64,
            detectors: {
                let mut d = detector_snapshots(&es, &self.tracker);
                if self.cluster.is_some() {
                    d.push(metrics::DetectorSnapshot {
                        detector: "source_workloads",
                        entries: self.source_workloads.len() as u64,
                        capacity: super::workloads::MAX_SOURCES as u64,
                        evictions: self.source_workloads.folded,
                    });
                }
                d
            },
            flagged_by_source: self.source_workloads.snapshot(),
            cluster: self.cluster_metrics(),
        };
        self.metrics.update(&snap);
    }
}

/// The daemon's bounded per-source tables, for metrics and the exit summary.
pub(super) fn detector_snapshots(
    es: &detect::EngineStats,
    tracker: &crate::answers::Tracker,
) -> Vec<metrics::DetectorSnapshot> {
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    let (unanswered, max_unanswered) = tracker.unanswered();
    [
        ("dedup", es.dedup_series, es.max_series, es.dedup_evictions),
        (
            "sweep",
            es.sweep_sources,
            es.max_sweep_sources,
            es.sweep_evictions,
        ),
        (
            "scan",
            es.scan_sources,
            es.max_scan_sources,
            es.scan_evictions,
        ),
        (
            "answers",
            tracker.pending(),
            tracker.max_pending(),
            tracker.stats.resolved_early,
        ),
        (
            "answers_unanswered",
            unanswered,
            max_unanswered,
            tracker.stats.unanswered_forgotten,
        ),
    ]
    .into_iter()
    .map(
        |(detector, entries, capacity, evictions)| metrics::DetectorSnapshot {
            detector,
            entries: n(entries),
            capacity: n(capacity),
            evictions,
        },
    )
    .collect()
}

#[cfg(test)]
mod tests {
    use node_monitor_common::{GroupStats, reason};

    use super::*;
    use crate::{config::Protocol, datapath::GroupCounters};

    #[test]
    fn kernel_losses_include_answers_and_unseen_acceptances() {
        let g = |rate_limited, ringbuf_full| GroupCounters {
            group: "kubelet".to_owned(),
            proto: Protocol::Tcp,
            verdict: 1,
            stats: GroupStats {
                lost_rate_limited: rate_limited,
                lost_ringbuf_full: ringbuf_full,
                ..GroupStats::default()
            },
        };
        let groups = [g(3, 1), g(4, 0)];
        assert_eq!(kernel_losses(&groups, None), (7, 1));
        let mut r = [0u64; reason::COUNT as usize];
        r[reason::ANSWER_RINGBUF_FULL as usize] = 2;
        r[reason::UNSEEN_RATE_LIMITED as usize] = 5;
        r[reason::UNSEEN_RINGBUF_FULL as usize] = 6;
        r[reason::HANDSHAKE_RATE_LIMITED as usize] = 10;
        r[reason::HANDSHAKE_RINGBUF_FULL as usize] = 20;
        // Counted elsewhere, never a loss.
        r[reason::UNSEEN_ACCEPTED as usize] = 100;
        r[reason::UNSEEN_DROPPED as usize] = 100;
        r[reason::FRAG_WATCHED as usize] = 100;
        r[reason::HANDSHAKE_COMPLETED as usize] = 100;
        assert_eq!(kernel_losses(&groups, Some(&r)), (22, 29));
    }
}
