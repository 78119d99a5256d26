//! Detect: flagged records → alerts. The rule of each group ([`rules`]), dedup with follow-ups
//! (`dedup.rs`), NodePort sweep detection (`sweep.rs`), port scans across groups (`scan.rs`),
//! flood alerts from the loss counters (`flood.rs`), and "events lost since the previous
//! alert" on every alert. At most `connection_alerts_per_group` connection alerts start a
//! dedup series per group and flood window; past it they fold into the group's flood alert.
//!
//! The engine is pure logic: the caller passes the monotonic `now` of every call (windows are
//! `Instant` arithmetic) and collects the alerts it pushes into `out`. Sweep and scan
//! detections go through dedup like every other alert; flood alerts do not. Memory is bounded
//! by configuration, never by traffic: at most `max_series` dedup series, `max_sweep_sources`
//! sweep states and `max_scan_sources` scan states (each table evicts its oldest entry when
//! full, and counts it).
mod dedup;
#[cfg(any(test, feature = "test-support"))]
pub mod fixture;
mod flood;
pub mod model;
mod recency;
mod remember;
pub mod rules;
mod scan;
mod sweep;
mod window;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use ahash::{HashMap, HashSet};
pub use flood::{GroupCounts, SketchSource};
pub use model::{
    Alert, AlertKind, AnswerCounts, FloodAnswers, FloodScope, FloodSummary, OutputItem, Rule,
    Severity,
};

use self::{
    dedup::{Dedup, Occurrence},
    flood::Flood,
    scan::Scans,
    sweep::Sweeps,
    window::within,
};
use crate::{
    config::AlertSettings,
    record::{Answer, FlowRecord, RecordType},
};

/// Cap of the dedup table (series). 7/8 of a power of two, so that the hash table holds it
/// without growing to the next power: 16,384 slots of about 200 bytes (a repeated series also
/// holds its last occurrence, boxed: about 300 bytes more), and the order index: at most about
/// 9 MiB, about 4 MiB when no series repeats (a flood of new sources). A full table closes its
/// oldest series early (its follow-up is emitted): nothing is lost, only folded less.
pub(crate) const DEFAULT_MAX_SERIES: usize = 14_336;
/// Cap of the sweep table (sources × sweep groups); a state holds fewer than
/// `alerts.sweep.min_ports` ports, and the table at most [`SWEEP_PORT_SLOTS`] in all.
pub(crate) const DEFAULT_MAX_SWEEP_SOURCES: usize = 14_336;
/// Ports all sweep states may hold together: the sweep table's cap is the smaller of
/// [`DEFAULT_MAX_SWEEP_SOURCES`] and this over `alerts.sweep.min_ports` (about 7 MiB at most).
pub(crate) const SWEEP_PORT_SLOTS: usize = 229_376;
/// Cap of the scan table (sources); a state holds at most `alerts.scan.min_ports` ports, and
/// the table at most [`SCAN_PORT_SLOTS`] in all.
pub(crate) const DEFAULT_MAX_SCAN_SOURCES: usize = 14_336;
/// Ports all scan states may hold together: the scan table's cap is the smaller of
/// [`DEFAULT_MAX_SCAN_SOURCES`] and this over `alerts.scan.min_ports` (about 4 MiB at most).
pub(crate) const SCAN_PORT_SLOTS: usize = 71_680;

/// Loss counters, cumulative since the daemon started (the engine computes the deltas).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LossTotals {
    /// Events withheld by the kernel's per-source rate limit (all sources together).
    pub rate_limited: u64,
    /// Events lost because the ring buffer was full.
    pub ringbuf_full: u64,
    /// Events withheld by the kernel's node-wide budget per group (all groups together).
    pub group_budget: u64,
    /// Userspace drops by reason (e.g. `sink_queue_full`, `decode_error`).
    pub userspace: BTreeMap<String, u64>,
    /// Per group: its cumulative counters (new connections, events, losses by reason,
    /// answers), from which flood windows open and close per group. Kernel losses beyond
    /// what the groups account for open a node-scope window; with no groups at all, every
    /// kernel loss does.
    pub groups: BTreeMap<Arc<str>, GroupCounts>,
}

/// Counters and state sizes, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Alerts emitted (first alerts, follow-ups, sweeps, floods) by rule id.
    pub alerts_by_rule: BTreeMap<&'static str, u64>,
    /// The same by (rule id, severity): a rule whose severity depends on the group (NM-1030)
    /// has an entry per severity.
    pub alerts_by_rule_severity: BTreeMap<(&'static str, Severity), u64>,
    /// Follow-up alerts emitted.
    pub follow_ups: u64,
    /// Occurrences folded into a series instead of alerting.
    pub suppressed_total: u64,
    /// The same, by rule id.
    pub suppressed_by_rule: BTreeMap<&'static str, u64>,
    /// Sweep detections (before dedup).
    pub sweeps: u64,
    /// Flood alerts emitted.
    pub floods: u64,
    /// Series closed early because the dedup table was full.
    pub dedup_evictions: u64,
    /// Sweep states forgotten because the sweep table was full.
    pub sweep_evictions: u64,
    /// Open dedup series now.
    pub dedup_series: usize,
    /// Tracked (source, group) sweep states now.
    pub sweep_sources: usize,
    /// Connection alerts folded into their group's flood alert, past the cap per group and
    /// window (also counted in `suppressed_total` and `suppressed_by_rule`).
    pub folded: u64,
    /// Completed handshakes of reported acceptances whose own alert was not folded by the cap
    /// (already named, by their alert or a follow-up): nothing more raised.
    pub handshakes_already_named: u64,
    /// Completed handshakes of reported acceptances whose alert the cap had folded: each named
    /// by an NM-1030 of its own.
    pub handshakes_named_past_cap: u64,
    /// Scan detections (before dedup).
    pub scans: u64,
    /// Scan states forgotten because the scan table was full.
    pub scan_evictions: u64,
    /// Tracked scan sources now.
    pub scan_sources: usize,
    /// The caps of the dedup, sweep and scan tables.
    pub max_series: usize,
    pub max_sweep_sources: usize,
    pub max_scan_sources: usize,
}

/// The alert engine: rules, dedup, sweeps and floods behind one facade.
pub struct Engine {
    settings: AlertSettings,
    sweep_groups: HashSet<String>,
    dedup: Dedup,
    sweeps: Sweeps,
    scans: Scans,
    /// The dedup key's group for scans (they span groups): one shared name.
    scan_key: Arc<str>,
    flood: Flood,
    /// Per group: when its window of connection alerts began, and the alerts raised in it
    /// (`connection_alerts_per_group`). One entry per group name seen in a window.
    group_alerts: HashMap<Arc<str>, (Instant, u32)>,
    /// Connection alerts folded into flood alerts, in all and by rule id.
    folded: u64,
    folded_by_rule: BTreeMap<&'static str, u64>,
    prev_totals: LossTotals,
    /// The per-group totals of the previous call (groups first seen later start at 0: a new
    /// kernel group id starts with zeroed counters).
    prev_groups: BTreeMap<Arc<str>, GroupCounts>,
    /// False until the first [`Engine::on_losses`]: the kernel totals it brings are the
    /// baseline (pinned counters keep an earlier run's losses across a restart).
    baselined: bool,
    pending_losses: BTreeMap<String, u64>,
    stats: EngineStats,
    /// Which alert reported each recent `no_answer` connection (for late answers).
    corrections: remember::Remembered<uuid::Uuid>,
    /// Accepted TCP connections whose alert the cap folded, and when: the ACK that completes
    /// one (a record with `completes_reported`) names it, within
    /// [`ACCEPT_WAIT`] of the fold.
    capped_accepts: remember::Remembered<Instant>,
}

/// How long a folded acceptance waits for the record of the ACK that completes it: the data
/// path waits as long for the ACK itself.
const ACCEPT_WAIT: std::time::Duration =
    std::time::Duration::from_nanos(node_monitor_common::ACCEPT_WAIT_NS);

fn delta(cur: u64, prev: u64) -> u64 {
    // A counter that went backwards was reset (e.g. the data path was reloaded): count from 0.
    if cur >= prev { cur - prev } else { cur }
}

impl Engine {
    pub fn new(settings: &AlertSettings, sweep_groups: Vec<String>) -> Engine {
        Engine::with_limits(
            settings,
            sweep_groups,
            DEFAULT_MAX_SERIES,
            DEFAULT_MAX_SWEEP_SOURCES,
            DEFAULT_MAX_SCAN_SOURCES,
        )
    }

    /// As [`Engine::new`], with explicit table caps (each at least 1).
    pub(crate) fn with_limits(
        settings: &AlertSettings,
        sweep_groups: Vec<String>,
        max_series: usize,
        max_sweep_sources: usize,
        max_scan_sources: usize,
    ) -> Engine {
        Engine {
            settings: settings.clone(),
            sweep_groups: sweep_groups.into_iter().collect(),
            dedup: Dedup::new(max_series),
            sweeps: Sweeps::new(max_sweep_sources, SWEEP_PORT_SLOTS),
            scans: Scans::new(max_scan_sources, SCAN_PORT_SLOTS),
            scan_key: Arc::from("*"),
            flood: Flood::default(),
            group_alerts: HashMap::default(),
            folded: 0,
            folded_by_rule: BTreeMap::new(),
            prev_totals: LossTotals::default(),
            prev_groups: BTreeMap::new(),
            baselined: false,
            pending_losses: BTreeMap::new(),
            stats: EngineStats::default(),
            corrections: remember::Remembered::new(
                remember::MAX_REMEMBERED,
                std::time::Duration::from_nanos(crate::answers::REMEMBER_NS),
            ),
            capped_accepts: remember::Remembered::new(
                node_monitor_common::ACCEPTS_ENTRIES as usize,
                ACCEPT_WAIT,
            ),
        }
    }

    /// Reload: new windows and thresholds apply from now on; open series, sweep states, the
    /// flood window and pending losses are kept. Sweep states of groups no longer watched are
    /// dropped.
    pub fn set_settings(&mut self, s: &AlertSettings, sweep_groups: Vec<String>) {
        self.settings = s.clone();
        self.sweep_groups = sweep_groups.into_iter().collect();
        self.sweeps.retain_groups(&self.sweep_groups);
    }

    /// A flagged connection (record_type Flagged, or Revoked: an open flow whose source a
    /// reload revoked) → an alert now (first of a dedup series) or folded (counted); a new
    /// attempt also feeds the scan detector (a late answer, which repeats an attempt already
    /// fed, does not; nor does a revoked flow). A record of a sweep group (Flagged or Sampled, any
    /// verdict) also feeds the sweep detector.
    pub fn on_record(&mut self, rec: &FlowRecord, now: Instant, out: &mut Vec<Alert>) {
        let start = out.len();
        let window = self.settings.dedup_window;
        // The ACK that completed the handshake of an acceptance that was reported: news only
        // when the cap folded that acceptance's alert (its attempt already fed the sweep and
        // scan detectors).
        if rec.completes_reported {
            let capped = self
                .capped_accepts
                .take(rec)
                .is_some_and(|at| within(at, ACCEPT_WAIT, now));
            if !capped {
                self.stats.handshakes_already_named += 1;
                return;
            }
            self.stats.handshakes_named_past_cap += 1;
        }
        if rec.record_type.alerts() {
            let rule = rules::rule_for_record(rec.record_type, &rec.group);
            let mut record = rec.clone();
            // A late answer names the alert that reported its attempt as `no_answer`.
            if rec.answer_corrects.is_some() {
                record.answer_corrects_alert = self
                    .corrections
                    .take(rec)
                    .map(|id| id.hyphenated().to_string());
            }
            // A repeat folds into its open series as always; a new series takes one of the
            // group's connection alerts of this window, or folds into the group's flood alert.
            // A connection named by its completed handshake (NM-1030) never folds: no spoofed
            // source completes one, and the data path bounds them with a budget of their own.
            let detected = if rec.handshake_completed
                || self
                    .dedup
                    .folds(rule.id, rec.src_ip, &rec.group, rec.answer, window, now)
                || self.take_group_alert(&rec.group, now)
            {
                let occurrence = Occurrence {
                    rule,
                    source: rec.src_ip,
                    group: &rec.group,
                    answer: Some(rec.answer),
                    kind: AlertKind::Connection { record },
                    time: rec.time,
                };
                Some(self.dedup.detect(occurrence, window, now, out))
            } else {
                // An accepted TCP connection folded here is named again if its handshake
                // completes, which no spoofed source's does.
                if rec.answer == Some(Answer::Accepted)
                    && rec.protocol == crate::config::Protocol::Tcp
                {
                    self.capped_accepts.remember(rec, now, now);
                }
                self.flood.fold(rec.group.clone(), rec.answer, now);
                self.folded += 1;
                *self.folded_by_rule.entry(rule.id).or_default() += 1;
                None
            };
            if let Some(d) = detected
                && rec.answer == Some(Answer::NoAnswer)
            {
                self.corrections.remember(rec, d.series, now);
            }
            // A scan is made of connection attempts: a late answer repeats an attempt already
            // fed, and a revoked flow was opened while allowed.
            if rec.record_type == RecordType::Flagged && rec.answer_corrects.is_none() {
                let alerted = detected.is_some_and(|d| d.new_alert);
                self.scan(rec, alerted, now, out);
            }
        }
        if self.sweep_groups.contains(&*rec.group) && !rec.completes_reported {
            let (sweep_window, min_ports) = (
                self.settings.sweep_window,
                self.settings.sweep_min_ports as usize,
            );
            if let Some(kind) = self.sweeps.feed(rec, sweep_window, min_ports, now) {
                let occurrence = Occurrence {
                    rule: rules::sweep_rule(),
                    source: rec.src_ip,
                    group: &rec.group,
                    answer: None,
                    kind,
                    time: std::time::SystemTime::now(),
                };
                self.dedup.detect(occurrence, window, now, out);
            }
        }
        self.emitted(out, start);
    }

    /// Takes one of `group`'s connection alerts of its current window
    /// (`connection_alerts_per_group` per `flood_window`, 0 = no cap); false when the window's
    /// are spent. The cap's window opens at the group's first alert; the group's flood window
    /// opens at its first loss or fold, on its own clock. So that a flood window never holds
    /// more than the cap's alerts besides its one NM-1020, the cap's window does not restart
    /// while a flood window of the group is open that opened before the cap's window ended:
    /// it restarts at the first alert after that flood window closes. (Restarting on time
    /// alone put two batches of alerts in one flood window when the two clocks were apart.)
    fn take_group_alert(&mut self, group: &Arc<str>, now: Instant) -> bool {
        let cap = self.settings.connection_alerts_per_group;
        if cap == 0 {
            return true;
        }
        let window = self.settings.flood_window;
        let flood_since = self.flood.open_since(group);
        let (start, n) = self.group_alerts.entry(group.clone()).or_insert((now, 0));
        if !cap_window_open(*start, window, now, flood_since) {
            (*start, *n) = (now, 0);
        }
        if *n < cap {
            *n += 1;
            true
        } else {
            false
        }
    }

    /// Feeds the scan detector; a completed scan goes through dedup (key: rule, source).
    fn scan(&mut self, rec: &FlowRecord, alerted: bool, now: Instant, out: &mut Vec<Alert>) {
        let (scan_window, min_ports) = (
            self.settings.scan_window,
            self.settings.scan_min_ports as usize,
        );
        if let Some(kind) = self.scans.feed(rec, alerted, scan_window, min_ports, now) {
            let occurrence = Occurrence {
                rule: rules::scan_rule(),
                source: rec.src_ip,
                group: &self.scan_key,
                answer: None,
                kind,
                time: std::time::SystemTime::now(),
            };
            self.dedup
                .detect(occurrence, self.settings.dedup_window, now, out);
        }
    }

    /// Loss counters, cumulative totals. Call it every tick with the current totals: the
    /// engine keeps the deltas for the next alert's `losses_since_previous` (keys
    /// `rate_limited`, `ringbuf_full` and the userspace reasons) and raises flood alerts.
    ///
    /// The kernel totals of the first call are a baseline, not losses: the data path's
    /// counters are pinned and outlive a restart, so they may hold an earlier run's losses.
    /// (Userspace totals start at 0 with the daemon and count from the first call.) Call it
    /// once at start, before traffic is read, so that the first window misses nothing.
    pub fn on_losses(&mut self, totals: &LossTotals, now: Instant, out: &mut Vec<Alert>) {
        self.on_losses_with(totals, now, out, &mut ());
    }

    /// [`Engine::on_losses`], reading the flood summary of each group whose window closes
    /// from `sketches`.
    pub fn on_losses_with(
        &mut self,
        totals: &LossTotals,
        now: Instant,
        out: &mut Vec<Alert>,
        sketches: &mut dyn SketchSource,
    ) {
        self.close_flood(now, false, out, sketches);
        if !self.baselined {
            self.baselined = true;
            self.prev_totals.rate_limited = totals.rate_limited;
            self.prev_totals.ringbuf_full = totals.ringbuf_full;
            self.prev_totals.group_budget = totals.group_budget;
            self.prev_groups = totals.groups.clone();
        }
        let rate_limited = delta(totals.rate_limited, self.prev_totals.rate_limited);
        let ringbuf_full = delta(totals.ringbuf_full, self.prev_totals.ringbuf_full);
        let group_budget = delta(totals.group_budget, self.prev_totals.group_budget);
        let mut add = |reason: &str, n: u64| {
            if n > 0 {
                *self.pending_losses.entry(reason.to_owned()).or_default() += n;
            }
        };
        add("rate_limited", rate_limited);
        add("ringbuf_full", ringbuf_full);
        add("group_budget", group_budget);
        for (reason, &n) in &totals.userspace {
            add(
                reason,
                delta(
                    n,
                    self.prev_totals.userspace.get(reason).copied().unwrap_or(0),
                ),
            );
        }
        self.prev_totals.rate_limited = totals.rate_limited;
        self.prev_totals.ringbuf_full = totals.ringbuf_full;
        self.prev_totals.group_budget = totals.group_budget;
        // A reason missing from one call keeps its last total (no double count when it is back).
        for (reason, &n) in &totals.userspace {
            self.prev_totals.userspace.insert(reason.clone(), n);
        }
        // Per group: the deltas feed the group's window; what the groups do not account for
        // feeds the node's.
        let (mut group_rl, mut group_rb) = (0u64, 0u64);
        for (group, cur) in &totals.groups {
            let prev = self.prev_groups.get(group).copied().unwrap_or_default();
            let d = GroupCounts {
                new_conns: delta(cur.new_conns, prev.new_conns),
                events: delta(cur.events, prev.events),
                rate_limited: delta(cur.rate_limited, prev.rate_limited),
                group_budget: delta(cur.group_budget, prev.group_budget),
                ringbuf_full: delta(cur.ringbuf_full, prev.ringbuf_full),
                accepted: delta(cur.accepted, prev.accepted),
                refused: delta(cur.refused, prev.refused),
            };
            group_rl += d.rate_limited;
            group_rb += d.ringbuf_full;
            self.flood.add(Some(group.clone()), &d, now);
            self.prev_groups.insert(group.clone(), *cur);
        }
        let node = GroupCounts {
            rate_limited: rate_limited.saturating_sub(group_rl),
            ringbuf_full: ringbuf_full.saturating_sub(group_rb),
            ..GroupCounts::default()
        };
        self.flood.add(None, &node, now);
    }

    /// Emits due dedup follow-ups (series with repeats whose window ended) and a due flood
    /// alert; forgets expired state. Call it every tick.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Alert>) {
        self.tick_with(now, out, &mut ());
    }

    /// [`Engine::tick`], reading the flood summary of each group whose window closes from
    /// `sketches`.
    pub fn tick_with(
        &mut self,
        now: Instant,
        out: &mut Vec<Alert>,
        sketches: &mut dyn SketchSource,
    ) {
        let start = out.len();
        self.dedup.close_due(self.settings.dedup_window, now, out);
        self.emitted(out, start);
        self.sweeps.expire(self.settings.sweep_window, now);
        self.scans.expire(self.settings.scan_window, now);
        self.corrections.expire(now);
        self.capped_accepts.expire(now);
        let flood_window = self.settings.flood_window;
        let flood = &self.flood;
        self.group_alerts.retain(|group, (start, _)| {
            cap_window_open(*start, flood_window, now, flood.open_since(group))
        });
        self.close_flood(now, false, out, sketches);
    }

    /// Shutdown: emits every pending follow-up and the open flood windows' alerts.
    pub fn flush(&mut self, out: &mut Vec<Alert>) {
        self.flush_with(out, &mut ());
    }

    /// [`Engine::flush`], reading the flood summaries from `sketches`.
    pub fn flush_with(&mut self, out: &mut Vec<Alert>, sketches: &mut dyn SketchSource) {
        let start = out.len();
        self.dedup.close_all(out);
        self.emitted(out, start);
        self.close_flood(Instant::now(), true, out, sketches);
    }

    pub fn stats(&self) -> EngineStats {
        let mut suppressed_by_rule = self.dedup.suppressed_by_rule.clone();
        for (rule, n) in &self.folded_by_rule {
            *suppressed_by_rule.entry(rule).or_default() += n;
        }
        EngineStats {
            suppressed_total: self.dedup.suppressed_total + self.folded,
            suppressed_by_rule,
            folded: self.folded,
            sweeps: self.sweeps.detections,
            dedup_evictions: self.dedup.evictions,
            sweep_evictions: self.sweeps.evictions,
            dedup_series: self.dedup.len(),
            sweep_sources: self.sweeps.len(),
            scans: self.scans.detections,
            scan_evictions: self.scans.evictions,
            scan_sources: self.scans.len(),
            max_series: self.dedup.capacity(),
            max_sweep_sources: self.sweeps.capacity(self.settings.sweep_min_ports as usize),
            max_scan_sources: self.scans.capacity(self.settings.scan_min_ports as usize),
            ..self.stats.clone()
        }
    }

    /// Losses not yet attached to an alert.
    pub fn pending_losses(&self) -> &BTreeMap<String, u64> {
        &self.pending_losses
    }

    /// The alerts pushed onto `out` since `start`, in order: stamps each with the losses since
    /// the previous alert, and counts it.
    fn emitted(&mut self, out: &mut [Alert], start: usize) {
        for alert in &mut out[start..] {
            alert.losses_since_previous = std::mem::take(&mut self.pending_losses);
            *self.stats.alerts_by_rule.entry(alert.rule.id).or_default() += 1;
            *self
                .stats
                .alerts_by_rule_severity
                .entry((alert.rule.id, alert.rule.severity))
                .or_default() += 1;
            if alert.follow_up_of.is_some() {
                self.stats.follow_ups += 1;
            }
        }
    }

    /// Emits the flood alerts of the open windows that ended (or all if `force`).
    fn close_flood(
        &mut self,
        now: Instant,
        force: bool,
        out: &mut Vec<Alert>,
        sketches: &mut dyn SketchSource,
    ) {
        let start = out.len();
        self.flood
            .close(self.settings.flood_window, now, force, sketches, out);
        self.stats.floods += (out.len() - start) as u64;
        self.emitted(out, start);
    }
}

/// Is a group's window of connection alerts (`connection_alerts_per_group`), begun at
/// `start`, still open at `now`: within `window`, or while the group's flood window, open
/// since `flood_since`, opened within it (see `Engine::take_group_alert`)?
fn cap_window_open(
    start: Instant,
    window: Duration,
    now: Instant,
    flood_since: Option<Instant>,
) -> bool {
    within(start, window, now) || flood_since.is_some_and(|fs| within(start, window, fs))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::record::fixture;

    pub(crate) fn settings() -> AlertSettings {
        AlertSettings {
            dedup_window: Duration::from_secs(60),
            sweep_min_ports: 5,
            sweep_window: Duration::from_secs(30),
            scan_min_ports: 5,
            scan_window: Duration::from_secs(30),
            flood_window: Duration::from_secs(10),
            // No cap: the tests of the cap set one.
            connection_alerts_per_group: 0,
        }
    }

    fn record(group: &str, src: &str, dst_port: u16) -> FlowRecord {
        fixture::flagged_from(group, src.parse().unwrap(), dst_port)
    }

    fn flow(group: &str, src: &str, dst_port: u16) -> FlowRecord {
        fixture::allowed_from(group, src.parse().unwrap(), dst_port)
    }

    /// An engine whose groups may raise `cap` connection alerts per flood window.
    fn capped(cap: u32) -> Engine {
        let s = AlertSettings {
            connection_alerts_per_group: cap,
            ..settings()
        };
        Engine::new(&s, vec![])
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn first_alert_then_fold_then_follow_up_then_new_series() {
        let mut e = Engine::new(&settings(), vec![]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        e.on_record(&record("kubelet", "203.0.113.9", 10250), t0, &mut out);
        assert_eq!(out.len(), 1);
        let first = out[0].clone();
        assert_eq!(first.rule.id, "NM-1001");
        assert_eq!(first.suppressed, 0);
        assert_eq!(first.follow_up_of, None);
        assert!(uuid::Uuid::parse_str(&first.id).is_ok());
        assert_eq!(
            first.time,
            humantime::parse_rfc3339("2024-05-01T12:00:00.123456Z").unwrap()
        );

        // Three repeats within the window: no alert.
        for i in 1..=3u16 {
            let mut r = record("kubelet", "203.0.113.9", 10250);
            r.src_port = 40000 + i;
            e.on_record(&r, t0 + secs(10 * u64::from(i)), &mut out);
        }
        // Another source and another group are other series.
        e.on_record(
            &record("kubelet", "203.0.113.10", 10250),
            t0 + secs(5),
            &mut out,
        );
        e.on_record(
            &record("etcd-client", "203.0.113.9", 2379),
            t0 + secs(5),
            &mut out,
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].rule.id, "NM-1003");
        e.tick(t0 + secs(59), &mut out);
        assert_eq!(out.len(), 3, "window not over yet");
        assert_eq!(e.stats().suppressed_total, 3);
        assert_eq!(
            e.stats().suppressed_by_rule,
            BTreeMap::from([("NM-1001", 3)])
        );

        out.clear();
        e.tick(t0 + secs(60), &mut out);
        assert_eq!(
            out.len(),
            1,
            "only the series with repeats gets a follow-up: {out:?}"
        );
        let f = &out[0];
        assert_eq!(f.rule.id, "NM-1001");
        assert_eq!(f.suppressed, 3);
        assert_eq!(f.follow_up_of.as_deref(), Some(first.id.as_str()));
        assert_ne!(f.id, first.id);
        match &f.kind {
            AlertKind::Connection { record } => {
                assert_eq!(record.src_port, 40003, "the last repeat");
            }
            k => panic!("{k:?}"),
        }
        // Next window: state closed, so the next occurrence is a new first alert.
        out.clear();
        e.tick(t0 + secs(66), &mut out);
        assert!(out.is_empty());
        assert_eq!(e.stats().dedup_series, 0);
        e.on_record(
            &record("kubelet", "203.0.113.9", 10250),
            t0 + secs(70),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].suppressed, 0);
        assert_eq!(out[0].follow_up_of, None);
        let s = e.stats();
        assert_eq!(s.alerts_by_rule["NM-1001"], 4);
        assert_eq!(s.alerts_by_rule["NM-1003"], 1);
        assert_eq!(s.follow_ups, 1);
    }

    #[test]
    fn unseen_acceptances_alert_under_nm_1030_and_dedup() {
        use crate::record::{Answer, Hook, RecordType};
        let mut e = Engine::new(&settings(), vec![]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let unseen = |group: &str, port: u16, src_port: u16| {
            let mut r = record(group, "203.0.113.9", port);
            r.record_type = RecordType::Unseen;
            r.answer = Some(Answer::Accepted);
            r.hook = Hook::Tc;
            r.src_port = src_port;
            r
        };
        e.on_record(&unseen("kubelet", 10250, 40001), t0, &mut out);
        e.on_record(&unseen("apiserver", 6443, 40002), t0, &mut out);
        // The same source's flagged kubelet attempt is another rule, another series.
        e.on_record(&record("kubelet", "203.0.113.9", 10250), t0, &mut out);
        // A second unseen kubelet acceptance within the window folds.
        e.on_record(&unseen("kubelet", 10250, 40003), t0 + secs(1), &mut out);
        let got: Vec<_> = out.iter().map(|a| (a.rule.id, a.rule.severity)).collect();
        assert_eq!(
            got,
            [
                ("NM-1030", Severity::Critical),
                ("NM-1030", Severity::High),
                ("NM-1001", Severity::High),
            ]
        );
        out.clear();
        e.tick(t0 + secs(61), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rule.id, "NM-1030");
        assert_eq!(out[0].suppressed, 1);
        assert_eq!(e.stats().alerts_by_rule["NM-1030"], 3);
        assert_eq!(
            e.stats().alerts_by_rule_severity,
            BTreeMap::from([
                (("NM-1001", Severity::High), 1),
                (("NM-1030", Severity::Critical), 2),
                (("NM-1030", Severity::High), 1),
            ])
        );
    }

    #[test]
    fn a_late_answer_names_the_alert_it_corrects() {
        use crate::record::Answer;
        let mut e = Engine::new(&settings(), vec![]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let with = |port: u16, answer, corrects| {
            let mut r = record("kubelet", "203.0.113.9", 10250);
            r.src_port = port;
            r.answer = Some(answer);
            r.answer_corrects = corrects;
            r
        };
        let corrected = |a: &Alert| match &a.kind {
            AlertKind::Connection { record } => record.answer_corrects_alert.clone(),
            k => panic!("{k:?}"),
        };
        // 40001 reported no_answer (a first alert); 40002 too, folded into its series.
        e.on_record(&with(40001, Answer::NoAnswer, None), t0, &mut out);
        e.on_record(&with(40002, Answer::NoAnswer, None), t0 + secs(1), &mut out);
        assert_eq!(out.len(), 1);
        let first = out[0].id.clone();
        // 40002's late acceptance: a first alert of the accepted series, naming the series
        // that reported its attempt; then 40001's, folded into that accepted series.
        e.on_record(
            &with(40002, Answer::Accepted, Some(Answer::NoAnswer)),
            t0 + secs(2),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(corrected(&out[1]), Some(first.clone()));
        e.on_record(
            &with(40001, Answer::Accepted, Some(Answer::NoAnswer)),
            t0 + secs(3),
            &mut out,
        );
        e.tick(t0 + secs(200), &mut out);
        let follow_up = out
            .iter()
            .find(|a| a.follow_up_of.as_deref() == Some(out[1].id.as_str()))
            .expect("the accepted series' follow-up");
        assert_eq!(corrected(follow_up), Some(first));
        // Named once: another late answer for 40001 corrects no alert.
        out.clear();
        e.on_record(
            &with(40001, Answer::Accepted, Some(Answer::NoAnswer)),
            t0 + secs(300),
            &mut out,
        );
        assert_eq!(corrected(&out[0]), None);
    }

    #[test]
    fn dedup_never_hides_an_accepted_connection() {
        use crate::record::Answer;
        let mut e = Engine::new(&settings(), vec![]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let with = |port: u16, answer| {
            let mut r = record("kubelet", "203.0.113.9", 10250);
            r.src_port = port;
            r.answer = Some(answer);
            r
        };
        // Refused, accepted, refused from one source within the window.
        e.on_record(&with(40001, Answer::Refused), t0, &mut out);
        e.on_record(&with(40002, Answer::Accepted), t0 + secs(1), &mut out);
        e.on_record(&with(40003, Answer::Refused), t0 + secs(2), &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        match &out[1].kind {
            AlertKind::Connection { record } => {
                assert_eq!(record.src_port, 40002);
                assert_eq!(record.answer, Some(Answer::Accepted));
            }
            k => panic!("{k:?}"),
        }
        // More of each; the follow-ups say how the repeats were answered.
        e.on_record(&with(40004, Answer::NoAnswer), t0 + secs(3), &mut out);
        e.on_record(&with(40005, Answer::Accepted), t0 + secs(4), &mut out);
        assert_eq!(out.len(), 2);
        e.tick(t0 + secs(61), &mut out);
        assert_eq!(out.len(), 4);
        let counts: Vec<_> = out[2..]
            .iter()
            .map(|a| (a.suppressed, a.repeats_by_answer))
            .collect();
        assert!(counts.contains(&(
            2,
            Some(AnswerCounts {
                accepted: 0,
                refused: 1,
                no_answer: 1
            })
        )));
        assert!(counts.contains(&(
            1,
            Some(AnswerCounts {
                accepted: 1,
                refused: 0,
                no_answer: 0
            })
        )));
    }

    #[test]
    fn occurrence_after_window_closes_series_without_tick() {
        let mut e = Engine::new(&settings(), vec![]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let r = record("apiserver", "203.0.113.9", 6443);
        e.on_record(&r, t0, &mut out);
        e.on_record(&r, t0 + secs(1), &mut out);
        e.on_record(&r, t0 + secs(61), &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].suppressed, 1);
        assert_eq!(out[1].follow_up_of.as_deref(), Some(out[0].id.as_str()));
        assert_eq!(out[2].suppressed, 0);
        assert_eq!(out[2].follow_up_of, None);
    }

    #[test]
    fn flows_do_not_alert() {
        let mut e = Engine::new(&settings(), vec![]);
        let mut out = Vec::new();
        e.on_record(
            &flow("kubelet", "10.0.0.1", 10250),
            Instant::now(),
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn sweep_threshold_window_and_quiet_period() {
        let mut e = Engine::new(&settings(), vec!["nodeport".to_owned()]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let src = "203.0.113.50";
        // Allowed flows (nodeport allows everyone): 4 distinct ports (plus a repeat) → nothing.
        for (i, p) in [30001u16, 30002, 30003, 30003, 30004]
            .into_iter()
            .enumerate()
        {
            e.on_record(&flow("nodeport", src, p), t0 + secs(i as u64), &mut out);
        }
        assert!(out.is_empty(), "N-1 distinct ports: {out:?}");
        // Another source's ports do not count for this one.
        e.on_record(
            &flow("nodeport", "203.0.113.51", 30005),
            t0 + secs(5),
            &mut out,
        );
        assert!(out.is_empty());
        // The 5th distinct port → one sweep alert.
        e.on_record(&flow("nodeport", src, 30005), t0 + secs(6), &mut out);
        assert_eq!(out.len(), 1);
        let a = &out[0];
        assert_eq!(a.rule.id, "NM-1010");
        match &a.kind {
            AlertKind::Sweep {
                source,
                group,
                ports,
                window,
                last,
            } => {
                assert_eq!(source.to_string(), src);
                assert_eq!(&**group, "nodeport");
                assert_eq!(ports, &vec![30001, 30002, 30003, 30004, 30005]);
                assert_eq!(*window, secs(30));
                assert_eq!(last.dst_port, 30005);
            }
            k => panic!("{k:?}"),
        }
        // More ports within the quiet period: no second sweep alert.
        for p in 30006..30020 {
            e.on_record(&flow("nodeport", src, p), t0 + secs(10), &mut out);
        }
        assert_eq!(out.len(), 1);
        assert_eq!(e.stats().sweeps, 1);
    }

    #[test]
    fn sweep_ports_outside_window_do_not_count() {
        let mut e = Engine::new(&settings(), vec!["nodeport".to_owned()]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let src = "2001:db8::66";
        // Ports 1,2 at t0; 3,4 at t0+20; 5 at t0+31: ports 1,2 slid out (window 30 s).
        e.on_record(&flow("nodeport", src, 30001), t0, &mut out);
        e.on_record(&flow("nodeport", src, 30002), t0, &mut out);
        e.on_record(&flow("nodeport", src, 30003), t0 + secs(20), &mut out);
        e.on_record(&flow("nodeport", src, 30004), t0 + secs(20), &mut out);
        e.on_record(&flow("nodeport", src, 30005), t0 + secs(31), &mut out);
        assert!(out.is_empty());
        // Refreshing an old port puts it back in the window; one more new port → sweep.
        e.on_record(&flow("nodeport", src, 30001), t0 + secs(32), &mut out);
        assert!(out.is_empty());
        e.on_record(&flow("nodeport", src, 30006), t0 + secs(33), &mut out);
        assert_eq!(out.len(), 1);
        match &out[0].kind {
            AlertKind::Sweep { ports, .. } => {
                assert_eq!(ports, &vec![30001, 30003, 30004, 30005, 30006]);
            }
            k => panic!("{k:?}"),
        }
        // Non-sweep groups never feed the detector.
        let mut e = Engine::new(&settings(), vec!["nodeport".to_owned()]);
        for p in 0..10 {
            e.on_record(&flow("kubelet", src, 10000 + p), t0, &mut out);
        }
        assert_eq!(e.stats().sweep_sources, 0);
    }

    #[test]
    fn sweep_after_quiet_period_folds_into_dedup() {
        let mut e = Engine::new(&settings(), vec!["nodeport".to_owned()]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let src = "203.0.113.50";
        for p in 0..5 {
            e.on_record(&flow("nodeport", src, 30000 + p), t0, &mut out);
        }
        assert_eq!(out.len(), 1);
        // After the 30 s quiet period a new sweep is detected, but within the 60 s dedup
        // window of the first: folded.
        for p in 0..5 {
            e.on_record(&flow("nodeport", src, 31000 + p), t0 + secs(31), &mut out);
        }
        assert_eq!(out.len(), 1);
        assert_eq!(e.stats().sweeps, 2);
        e.tick(t0 + secs(60), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].rule.id, "NM-1010");
        assert_eq!(out[1].suppressed, 1);
        assert_eq!(out[1].follow_up_of.as_deref(), Some(out[0].id.as_str()));
        match &out[1].kind {
            AlertKind::Sweep { ports, .. } => assert_eq!(ports[0], 31000),
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn flagged_nodeport_alerts_and_feeds_sweep() {
        let mut e = Engine::new(&settings(), vec!["nodeport".to_owned()]);
        let mut out = Vec::new();
        let t0 = Instant::now();
        e.on_record(&record("nodeport", "203.0.113.7", 30080), t0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rule.id, "NM-1900");
        assert_eq!(e.stats().sweep_sources, 1);
    }

    #[test]
    fn losses_attach_to_next_alert_then_reset() {
        let mut e = Engine::new(&settings(), vec![]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut totals = LossTotals::default();
        totals.userspace.insert("sink_queue_full".to_owned(), 2);
        e.on_losses(&totals, t0, &mut out);
        totals.userspace.insert("sink_queue_full".to_owned(), 5);
        totals.userspace.insert("decode_error".to_owned(), 0);
        e.on_losses(&totals, t0 + secs(1), &mut out);
        assert!(out.is_empty(), "userspace drops alone do not raise a flood");
        e.on_record(
            &record("kubelet", "203.0.113.9", 10250),
            t0 + secs(2),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].losses_since_previous,
            BTreeMap::from([("sink_queue_full".to_owned(), 5)])
        );
        // A reason missing from one call is not counted twice when it is back.
        e.on_losses(&LossTotals::default(), t0 + secs(2), &mut out);
        assert!(e.pending_losses().is_empty());
        // Reset: the next alert carries only what was lost since.
        e.on_losses(&totals, t0 + secs(3), &mut out);
        e.on_record(
            &record("kubelet", "203.0.113.10", 10250),
            t0 + secs(4),
            &mut out,
        );
        assert!(out[1].losses_since_previous.is_empty());
        totals.userspace.insert("sink_queue_full".to_owned(), 6);
        e.on_losses(&totals, t0 + secs(5), &mut out);
        assert_eq!(
            e.pending_losses(),
            &BTreeMap::from([("sink_queue_full".to_owned(), 1)])
        );
        e.on_record(
            &record("kubelet", "203.0.113.11", 10250),
            t0 + secs(6),
            &mut out,
        );
        assert_eq!(
            out[2].losses_since_previous,
            BTreeMap::from([("sink_queue_full".to_owned(), 1)])
        );
        assert!(e.pending_losses().is_empty());
    }

    #[test]
    fn the_first_loss_totals_are_a_baseline_not_a_flood() {
        // Pinned per-CPU counters survive a restart: the first totals the engine sees hold
        // an earlier run's losses. They are history, not a flood of this run.
        let mut e = Engine::new(&settings(), vec![]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut totals = LossTotals {
            rate_limited: 5_000,
            ringbuf_full: 300,
            ..Default::default()
        };
        e.on_losses(&totals, t0, &mut out);
        e.tick(t0 + secs(11), &mut out);
        e.flush(&mut out);
        assert!(out.is_empty(), "history raised {out:?}");
        assert!(e.pending_losses().is_empty(), "{:?}", e.pending_losses());
        assert_eq!(e.stats().floods, 0);
        // What is lost after the baseline is new, and counted from the baseline on.
        totals.rate_limited += 40;
        totals.ringbuf_full += 2;
        e.on_losses(&totals, t0 + secs(12), &mut out);
        e.tick(t0 + secs(30), &mut out);
        assert_eq!(out.len(), 1);
        match &out[0].kind {
            AlertKind::Flood {
                rate_limited,
                ringbuf_full,
                ..
            } => assert_eq!((*rate_limited, *ringbuf_full), (40, 2)),
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn one_flood_alert_per_window() {
        let mut e = Engine::new(&settings(), vec![]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut totals = LossTotals {
            rate_limited: 100,
            ringbuf_full: 0,
            ..Default::default()
        };
        e.on_losses(&LossTotals::default(), t0, &mut out); // the baseline at start
        e.on_losses(&totals, t0, &mut out); // opens the window
        totals.rate_limited = 250;
        totals.ringbuf_full = 7;
        e.on_losses(&totals, t0 + secs(4), &mut out);
        e.tick(t0 + secs(9), &mut out);
        assert!(out.is_empty(), "emitted when the window ends");
        totals.rate_limited = 260;
        e.on_losses(&totals, t0 + secs(9), &mut out);
        e.tick(t0 + secs(10), &mut out);
        assert_eq!(out.len(), 1);
        let a = &out[0];
        assert_eq!(a.rule.id, "NM-1020");
        match &a.kind {
            AlertKind::Flood {
                scope,
                rate_limited,
                ringbuf_full,
                window,
                summary,
            } => {
                assert_eq!(*summary, None, "no groups: a node-scope flood");
                assert_eq!(*scope, FloodScope::Node);
                assert_eq!(*rate_limited, 260);
                assert_eq!(*ringbuf_full, 7);
                assert_eq!(*window, secs(10));
            }
            k => panic!("{k:?}"),
        }
        assert_eq!(
            a.losses_since_previous,
            BTreeMap::from([
                ("rate_limited".to_owned(), 260),
                ("ringbuf_full".to_owned(), 7)
            ])
        );
        // No further losses: no further flood alert.
        e.on_losses(&totals, t0 + secs(15), &mut out);
        e.tick(t0 + secs(40), &mut out);
        assert_eq!(out.len(), 1);
        // New losses open a new window.
        totals.ringbuf_full = 8;
        e.on_losses(&totals, t0 + secs(41), &mut out);
        e.tick(t0 + secs(45), &mut out);
        assert_eq!(out.len(), 1);
        e.on_losses(&totals, t0 + secs(51), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(e.stats().floods, 2);
        // A counter reset (data path reloaded) counts from zero, not as a huge delta.
        e.on_losses(
            &LossTotals {
                rate_limited: 3,
                ..Default::default()
            },
            t0 + secs(60),
            &mut out,
        );
        e.flush(&mut out);
        match &out[2].kind {
            AlertKind::Flood {
                rate_limited,
                ringbuf_full,
                ..
            } => assert_eq!((*rate_limited, *ringbuf_full), (3, 0)),
            k => panic!("{k:?}"),
        }
    }

    fn group(new_conns: u64, events: u64, rl: u64, gb: u64, rb: u64) -> GroupCounts {
        GroupCounts {
            new_conns,
            events,
            rate_limited: rl,
            group_budget: gb,
            ringbuf_full: rb,
            accepted: 0,
            refused: 0,
        }
    }

    fn totals(groups: &[(&str, GroupCounts)], answer_ringbuf_full: u64) -> LossTotals {
        let mut t = LossTotals::default();
        for (g, c) in groups {
            t.rate_limited += c.rate_limited;
            t.ringbuf_full += c.ringbuf_full;
            t.group_budget += c.group_budget;
            t.groups.insert((*g).into(), *c);
        }
        t.ringbuf_full += answer_ringbuf_full;
        t
    }

    /// Issue 9: one NM-1020 per group and window, with the group's counts of the window
    /// (deltas from the baseline), the flood summary read when the window closes, and the
    /// node's answers; a group without losses raises none; losses no group accounts for
    /// (answers lost to a full ring) raise a node-scope one.
    #[test]
    fn one_flood_alert_per_group_and_window_with_its_summary() {
        use crate::datapath::{FloodSketch, TopPortCount, TopSourceCount};
        let mut e = Engine::new(&settings(), vec![]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        // Pinned counters of an earlier run: the baseline.
        let mut k = group(100, 90, 10, 0, 0);
        let quiet = group(5, 5, 0, 0, 0);
        e.on_losses(
            &totals(&[("kubelet", k), ("apiserver", quiet)], 3),
            t0,
            &mut out,
        );
        // A spoofed flood on the kubelet: 5000 new connections, 1000 reported, 3990 past
        // the group budget, 10 rate limited; the node answered 7 SYN-ACKs and 2 RSTs.
        k.new_conns += 5000;
        k.events += 1000;
        k.group_budget += 3990;
        k.rate_limited += 10;
        k.accepted += 7;
        k.refused += 2;
        e.on_losses(
            &totals(&[("kubelet", k), ("apiserver", quiet)], 4),
            t0 + secs(1),
            &mut out,
        );
        // More within the window (new connections without losses count too).
        k.new_conns += 10;
        k.events += 10;
        e.on_losses(
            &totals(&[("kubelet", k), ("apiserver", quiet)], 4),
            t0 + secs(5),
            &mut out,
        );
        assert!(out.is_empty(), "emitted when the window ends");
        let mut asked = Vec::new();
        let mut sketches = |g: &str| {
            asked.push(g.to_owned());
            Some(FloodSketch {
                distinct_sources: 3900,
                top_sources: vec![TopSourceCount {
                    ip: "203.0.113.9".parse().unwrap(),
                    withheld: 10,
                    rate_limited: 10,
                    error: 0,
                }],
                top_ports: vec![TopPortCount {
                    port: 10250,
                    withheld: 4000,
                    error: 0,
                }],
            })
        };
        e.tick_with(t0 + secs(11), &mut out, &mut sketches);
        assert_eq!(
            asked,
            vec!["kubelet".to_owned()],
            "only a closing group's summary is read"
        );
        assert_eq!(out.len(), 2, "{out:#?}");
        // Node scope first (answers lost to a full ring buffer: 1 since the baseline).
        match &out[0].kind {
            AlertKind::Flood {
                scope: FloodScope::Node,
                rate_limited: 0,
                ringbuf_full: 1,
                summary: None,
                ..
            } => {}
            k => panic!("{k:?}"),
        }
        let a = &out[1];
        assert_eq!(a.rule.id, "NM-1020");
        let AlertKind::Flood {
            scope,
            rate_limited,
            ringbuf_full,
            window,
            summary: Some(s),
        } = &a.kind
        else {
            panic!("{a:?}")
        };
        assert_eq!(*scope, FloodScope::Group("kubelet".into()));
        assert_eq!((*rate_limited, *ringbuf_full, *window), (10, 0, secs(10)));
        assert_eq!(
            (
                s.new_connections,
                s.events,
                s.group_budget,
                s.distinct_sources
            ),
            (5010, 1010, 3990, 3900)
        );
        assert!(s.spoofed_likely, "3900 sources for 4000 withheld");
        assert_eq!(
            s.answered,
            FloodAnswers {
                accepted: 7,
                refused: 2
            }
        );
        assert_eq!(s.top_sources[0].withheld, 10);
        assert_eq!(s.top_ports[0].port, 10250);
        assert!(s.start <= s.end);
        assert_eq!(e.stats().floods, 2);
        // The losses since the previous alert include the group budget's.
        assert_eq!(
            out[0].losses_since_previous.get("group_budget"),
            Some(&3990)
        );
        // No more losses: no more floods, whatever the new connections.
        k.new_conns += 100;
        k.events += 100;
        e.on_losses(
            &totals(&[("kubelet", k), ("apiserver", quiet)], 4),
            t0 + secs(12),
            &mut out,
        );
        e.tick_with(t0 + secs(40), &mut out, &mut |_: &str| None);
        assert_eq!(out.len(), 2);
        // A group that appears later (a reload) counts from zero; shutdown closes at once.
        let fresh = group(3, 1, 2, 0, 0);
        e.on_losses(
            &totals(&[("kubelet", k), ("apiserver", quiet), ("etcd", fresh)], 4),
            t0 + secs(41),
            &mut out,
        );
        e.flush_with(&mut out, &mut |_: &str| None);
        assert_eq!(out.len(), 3);
        match &out[2].kind {
            AlertKind::Flood {
                scope: FloodScope::Group(g),
                rate_limited: 2,
                summary: Some(s),
                ..
            } => {
                assert_eq!(&**g, "etcd");
                assert_eq!((s.new_connections, s.distinct_sources), (3, 0));
                assert!(!s.spoofed_likely);
            }
            k => panic!("{k:?}"),
        }
    }

    /// Issue 9: past `connection_alerts_per_group` connection alerts in a window, a group's
    /// new connection alerts fold into its flood alert, counted by answer; repeats of an open
    /// series fold into it as always; the next window alerts again.
    #[test]
    fn connection_alerts_past_the_group_cap_fold_into_its_flood_alert() {
        use crate::record::Answer;
        let mut e = capped(3);
        let t0 = Instant::now();
        let mut out = Vec::new();
        for i in 0..10u8 {
            let mut r = record("kubelet", &format!("203.0.113.{i}"), 10250);
            r.answer = Some(if i % 2 == 0 {
                Answer::Refused
            } else {
                Answer::NoAnswer
            });
            e.on_record(&r, t0 + Duration::from_millis(u64::from(i)), &mut out);
        }
        // Another group has its own cap; a repeat of an alerted source folds into its series.
        e.on_record(&record("apiserver", "203.0.113.1", 6443), t0, &mut out);
        e.on_record(
            &record("kubelet", "203.0.113.0", 10250),
            t0 + secs(1),
            &mut out,
        );
        let ids: Vec<&str> = out.iter().map(|a| a.rule.id).collect();
        assert_eq!(
            ids,
            ["NM-1001", "NM-1001", "NM-1001", "NM-1005"],
            "{out:#?}"
        );
        let st = e.stats();
        assert_eq!((st.folded, st.suppressed_total), (7, 8));
        assert_eq!(st.suppressed_by_rule.get("NM-1001"), Some(&8));
        // The window ends: the follow-up of the repeated series and one NM-1020 for the
        // kubelet with the folded alerts.
        e.tick(t0 + secs(11), &mut out);
        let flood = out
            .iter()
            .find(|a| a.rule.id == "NM-1020")
            .expect("a flood alert");
        let AlertKind::Flood {
            scope,
            summary: Some(sum),
            rate_limited: 0,
            ..
        } = &flood.kind
        else {
            panic!("{flood:?}")
        };
        assert_eq!(*scope, FloodScope::Group("kubelet".into()));
        assert_eq!(sum.folded_alerts, 7);
        assert_eq!(
            sum.folded_by_answer,
            AnswerCounts {
                accepted: 0,
                refused: 3,
                no_answer: 4
            }
        );
        // A new window: alerts again.
        let before = out.len();
        e.on_record(
            &record("kubelet", "203.0.113.99", 10250),
            t0 + secs(12),
            &mut out,
        );
        assert_eq!(out.len(), before + 1);
        assert_eq!(out[before].rule.id, "NM-1001");
    }

    /// Issue 9: the cap's window and the flood window keep their own clocks. A flood window
    /// opened after the cap's window began (by the first fold, or by a loss a poll later)
    /// stays open past the cap's window's end; alerts until it closes still fold, so that it holds the
    /// cap's alerts and its NM-1020, never two batches. The first alert after it closes
    /// starts a new cap window.
    #[test]
    fn a_flood_window_holds_one_batch_of_connection_alerts() {
        let mut e = capped(3);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut n = 0u8;
        let mut send = |e: &mut Engine, at: Instant, out: &mut Vec<Alert>| {
            n = n.wrapping_add(1);
            e.on_record(
                &record("kubelet", &format!("203.0.113.{n}"), 10250),
                at,
                out,
            );
        };
        // Three alerts from 0 ms on; the fourth, at 600 ms, folds and opens the flood window.
        for i in 0..5 {
            send(&mut e, ms(i * 200), &mut out);
        }
        // 10.1 s: the cap's window has ended, the flood window (until 10.6 s) has not; a tick
        // between them keeps the cap's window.
        e.tick(ms(10_050), &mut out);
        for i in 0..5 {
            send(&mut e, ms(10_100 + i), &mut out);
        }
        let conn = |out: &[Alert]| out.iter().filter(|a| a.rule.id == "NM-1001").count();
        assert_eq!(
            conn(&out),
            3,
            "still folded while the flood window is open: {out:#?}"
        );
        e.tick(ms(10_700), &mut out);
        let floods: Vec<&Alert> = out.iter().filter(|a| a.rule.id == "NM-1020").collect();
        assert_eq!(floods.len(), 1, "{out:#?}");
        let AlertKind::Flood {
            summary: Some(sum), ..
        } = &floods[0].kind
        else {
            panic!("{:?}", floods[0])
        };
        assert_eq!(
            sum.folded_alerts, 7,
            "2 of the first batch and 5 of the second"
        );
        // After it closes, a new cap window: alerts again, as many as the cap.
        for i in 0..5 {
            send(&mut e, ms(10_800 + i), &mut out);
        }
        assert_eq!(conn(&out), 6);
    }

    /// Issue 15 with issue 9: a connection named by its completed handshake (NM-1030 from
    /// ingress) is never folded by the group's cap of connection alerts.
    #[test]
    fn completed_handshakes_are_never_folded_by_the_cap() {
        use crate::record::{Answer, RecordType};
        let mut e = capped(1);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let unseen = |src: &str, completed: bool| {
            let mut r = record("kubelet", src, 10250);
            r.record_type = RecordType::Unseen;
            r.answer = Some(Answer::Accepted);
            r.handshake_completed = completed;
            r
        };
        // The cap is spent by the first alert; a second source's egress NM-1030 folds.
        e.on_record(&record("kubelet", "203.0.113.1", 10250), t0, &mut out);
        e.on_record(&unseen("203.0.113.2", false), t0, &mut out);
        assert_eq!(out.len(), 1);
        for i in 3..6u8 {
            e.on_record(&unseen(&format!("203.0.113.{i}"), true), t0, &mut out);
        }
        let ids: Vec<&str> = out.iter().map(|a| a.rule.id).collect();
        assert_eq!(
            ids,
            ["NM-1001", "NM-1030", "NM-1030", "NM-1030"],
            "{out:#?}"
        );
        assert_eq!(e.stats().folded, 1);
    }

    #[test]
    fn a_folded_acceptance_is_named_when_its_handshake_completes() {
        use crate::record::{Answer, RecordType};
        let mut e = capped(1);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let accepted = |src: &str, port: u16| {
            let mut r = record("kubelet", src, 10250);
            r.answer = Some(Answer::Accepted);
            r.src_port = port;
            r
        };
        // The ACK of a reported acceptance, as decode builds it from the data path's event.
        let completes = |r: &FlowRecord| FlowRecord {
            record_type: RecordType::Unseen,
            handshake_completed: true,
            completes_reported: true,
            ..r.clone()
        };
        // The first acceptance alerts and spends the cap; the second (another source) and a
        // third (spoofed: it never completes) fold into the flood alert.
        let (first, second, spoofed) = (
            accepted("203.0.113.1", 40001),
            accepted("203.0.113.2", 40002),
            accepted("203.0.113.3", 40003),
        );
        for r in [&first, &second, &spoofed] {
            e.on_record(r, t0, &mut out);
        }
        assert_eq!(out.len(), 1);
        assert_eq!(e.stats().folded, 2);
        // The first one's handshake completes: already named, nothing more.
        e.on_record(&completes(&first), t0 + secs(1), &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        // The folded one's completes: named by NM-1030, past the spent cap, once.
        e.on_record(&completes(&second), t0 + secs(1), &mut out);
        e.on_record(&completes(&second), t0 + secs(1), &mut out);
        assert_eq!(out.len(), 2, "{out:#?}");
        let a = &out[1];
        assert_eq!(a.rule.id, "NM-1030");
        let AlertKind::Connection { record } = &a.kind else {
            panic!("{a:#?}")
        };
        assert!(record.handshake_completed);
        assert_eq!((record.src_ip, record.src_port), (second.src_ip, 40002));
        // Too late: a folded acceptance waits as long as the data path waits for its ACK.
        let mut late = accepted("203.0.113.4", 40004);
        e.on_record(&late, t0 + secs(2), &mut out);
        late = completes(&late);
        e.on_record(&late, t0 + secs(2) + ACCEPT_WAIT + secs(1), &mut out);
        assert_eq!(out.len(), 2, "{out:#?}");
        let st = e.stats();
        assert_eq!(
            (st.handshakes_already_named, st.handshakes_named_past_cap),
            (3, 1)
        );
    }

    #[test]
    fn spoofed_likely_needs_many_withheld_and_nearly_as_many_sources() {
        use super::model::spoofed_likely;
        assert!(spoofed_likely(5000, 4900));
        assert!(spoofed_likely(5000, 4000));
        assert!(!spoofed_likely(5000, 3999));
        assert!(!spoofed_likely(5000, 1), "one source hammering");
        assert!(!spoofed_likely(63, 63), "too few to tell");
        assert!(spoofed_likely(64, 64));
    }

    #[test]
    fn dedup_table_is_bounded_and_evicts_with_follow_up() {
        let mut e = Engine::with_limits(&settings(), vec![], 3, 2, 2);
        let t0 = Instant::now();
        let mut out = Vec::new();
        for i in 0..3u64 {
            let r = record("kubelet", &format!("203.0.113.{i}"), 10250);
            e.on_record(&r, t0 + secs(i), &mut out);
            e.on_record(&r, t0 + secs(i), &mut out); // one repeat each
        }
        assert_eq!(out.len(), 3);
        assert_eq!(e.stats().dedup_series, 3);
        // A 4th key: the oldest series (203.0.113.0) is closed early with its follow-up.
        e.on_record(
            &record("kubelet", "203.0.113.99", 10250),
            t0 + secs(5),
            &mut out,
        );
        assert_eq!(out.len(), 5);
        assert_eq!(out[3].suppressed, 1);
        assert_eq!(out[3].follow_up_of.as_deref(), Some(out[0].id.as_str()));
        assert_eq!(out[4].suppressed, 0);
        let s = e.stats();
        assert_eq!(s.dedup_series, 3);
        assert_eq!(s.dedup_evictions, 1);
    }

    #[test]
    fn sweep_table_is_bounded_and_expires() {
        let mut e = Engine::with_limits(&settings(), vec!["nodeport".to_owned()], 10, 2, 2);
        let t0 = Instant::now();
        let mut out = Vec::new();
        for i in 0..5u64 {
            e.on_record(
                &flow("nodeport", &format!("203.0.113.{i}"), 30000),
                t0 + secs(i),
                &mut out,
            );
        }
        let s = e.stats();
        assert_eq!(s.sweep_sources, 2);
        assert_eq!(s.sweep_evictions, 3);
        e.tick(t0 + secs(100), &mut out);
        assert_eq!(
            e.stats().sweep_sources,
            0,
            "states older than the window are forgotten"
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_spoofed_flood_never_evicts_a_sweep_that_reached_a_second_port() {
        let min_ports = settings().sweep_min_ports as u16;
        let mut e = Engine::with_limits(&settings(), vec!["nodeport".to_owned()], 10, 4, 4);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let sweeper = "203.0.113.77";
        for port in [30000, 30001] {
            e.on_record(&flow("nodeport", sweeper, port), t0, &mut out);
        }
        for i in 0..500u32 {
            let src = std::net::Ipv4Addr::from(0xc633_6400 + i).to_string();
            e.on_record(&flow("nodeport", &src, 30100), t0 + secs(1), &mut out);
        }
        assert_eq!(e.stats().sweep_evictions, 500 - 3);
        assert!(out.is_empty());
        for port in 30002..30000 + min_ports {
            e.on_record(&flow("nodeport", sweeper, port), t0 + secs(2), &mut out);
        }
        let sweeps: Vec<_> = out.iter().filter(|a| a.rule.id == "NM-1010").collect();
        assert_eq!(sweeps.len(), 1, "{out:#?}");
    }

    #[test]
    fn a_scan_of_the_control_plane_ports_raises_one_scan_alert_besides_its_connection_alerts() {
        let mut e = Engine::new(&settings(), vec![]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let ports = [
            ("etcd-client", 2379),
            ("etcd-peer", 2380),
            ("apiserver", 6443),
            ("kubelet", 10250),
            ("kubelet-readonly", 10255),
            ("controller-manager", 10257),
            ("scheduler", 10259),
        ];
        // nmap sends a SYN, then retransmits it: two flagged connections per port.
        for round in 0..2 {
            for (group, port) in ports {
                let mut r = record(group, "203.0.113.9", port);
                r.src_port = 40000 + round;
                e.on_record(&r, t0 + secs(u64::from(round)), &mut out);
            }
        }
        let scans: Vec<&Alert> = out.iter().filter(|a| a.rule.id == "NM-1011").collect();
        assert_eq!(scans.len(), 1, "{out:#?}");
        match &scans[0].kind {
            AlertKind::Scan {
                ports,
                groups,
                connections,
                connection_alerts,
                ..
            } => {
                assert_eq!(ports, &[2379, 2380, 6443, 10250, 10255]);
                assert_eq!(groups.len(), 5);
                assert_eq!((*connections, *connection_alerts), (5, 5));
            }
            k => panic!("{k:?}"),
        }
        // The connection alerts still go out: one per (rule, group) series.
        let connections = out
            .iter()
            .filter(|a| matches!(a.kind, AlertKind::Connection { .. }))
            .count();
        assert_eq!(
            connections, 7,
            "etcd-client and etcd-peer share NM-1003 but not a group"
        );
        let s = e.stats();
        assert_eq!((s.scans, s.scan_sources, s.scan_evictions), (1, 1, 0));
        assert_eq!(s.alerts_by_rule["NM-1011"], 1);
        // Allowed flows never count toward a scan.
        for (group, port) in ports {
            e.on_record(&flow(group, "198.51.100.2", port), t0, &mut out);
        }
        assert_eq!(e.stats().scan_sources, 1);
    }

    #[test]
    fn scan_table_is_bounded_and_counts_evictions() {
        let mut e = Engine::with_limits(&settings(), vec![], 100, 2, 2);
        let t0 = Instant::now();
        let mut out = Vec::new();
        for i in 0..5u64 {
            e.on_record(
                &record("kubelet", &format!("203.0.113.{i}"), 10250),
                t0 + secs(i),
                &mut out,
            );
        }
        let s = e.stats();
        assert_eq!((s.scan_sources, s.scan_evictions), (2, 3));
        e.tick(t0 + secs(100), &mut out);
        assert_eq!(e.stats().scan_sources, 0, "expired with the window");
    }

    #[test]
    fn flush_emits_pending_follow_ups() {
        let mut e = Engine::new(&settings(), vec![]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let a = record("kubelet", "203.0.113.9", 10250);
        let b = record("scheduler", "203.0.113.9", 10259);
        for _ in 0..3 {
            e.on_record(&a, t0, &mut out);
        }
        e.on_record(&b, t0 + secs(1), &mut out);
        e.on_record(&b, t0 + secs(2), &mut out);
        let c = record("apiserver", "203.0.113.9", 6443);
        e.on_record(&c, t0 + secs(3), &mut out);
        assert_eq!(out.len(), 3);
        out.clear();
        e.flush(&mut out);
        assert_eq!(out.len(), 2, "series without repeats need no follow-up");
        assert_eq!((out[0].rule.id, out[0].suppressed), ("NM-1001", 2));
        assert_eq!((out[1].rule.id, out[1].suppressed), ("NM-1004", 1));
        assert_eq!(e.stats().dedup_series, 0);
    }

    #[test]
    fn reload_keeps_state() {
        let mut e = Engine::new(&settings(), vec!["nodeport".to_owned()]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let r = record("kubelet", "203.0.113.9", 10250);
        e.on_record(&r, t0, &mut out);
        e.on_record(&r, t0 + secs(1), &mut out);
        e.on_record(&flow("nodeport", "203.0.113.9", 30000), t0, &mut out);
        let s = AlertSettings {
            dedup_window: secs(10),
            ..settings()
        };
        e.set_settings(&s, vec![]);
        assert_eq!(e.stats().sweep_sources, 0, "no longer a sweep group");
        e.tick(t0 + secs(10), &mut out);
        assert_eq!(out.len(), 2, "the new window applies to the open series");
        assert_eq!(out[1].suppressed, 1);
    }
}
