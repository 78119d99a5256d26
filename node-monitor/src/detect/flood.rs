//! Floods: one alert per group and window. The first loss of a group (its events withheld
//! by the per-source or the node-wide group budget, or lost to a full ring buffer) opens a
//! `flood_window` for that group; when it ends, one NM-1020 alert carries the window's
//! counts and the data path's flood summary of the group (distinct sources, top sources and
//! ports, read and reset through the caller's [`SketchSource`]) and the node's answers.
//! Losses that no group accounts for (an answer event the ring buffer had no room for) open
//! a node-scope window of their own. A connection alert the engine folds (past its cap per
//! group and window) opens the group's window too, and is counted in it by answer. Flood alerts are not deduplicated (the window already
//! bounds them: at most one per group and window, plus one for the node).
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use super::{
    dedup::new_id,
    model::{
        Alert, AlertKind, AnswerCounts, FloodAnswers, FloodScope, FloodSummary, spoofed_likely,
    },
    rules,
    window::within,
};
use crate::{datapath::FloodSketch, record::Answer};

/// Reads (and resets) a group's flood summary when its window closes. The daemon reads the
/// data path's maps; tests and callers without a data path return None.
pub trait SketchSource {
    fn take(&mut self, group: &str) -> Option<FloodSketch>;
}

impl SketchSource for () {
    fn take(&mut self, _group: &str) -> Option<FloodSketch> {
        None
    }
}

impl<F: FnMut(&str) -> Option<FloodSketch>> SketchSource for F {
    fn take(&mut self, group: &str) -> Option<FloodSketch> {
        self(group)
    }
}

/// What one group counted in one interval (deltas of the cumulative counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCounts {
    pub new_conns: u64,
    pub events: u64,
    pub rate_limited: u64,
    pub group_budget: u64,
    pub ringbuf_full: u64,
    pub accepted: u64,
    pub refused: u64,
}

impl GroupCounts {
    fn lost(&self) -> bool {
        self.rate_limited + self.group_budget + self.ringbuf_full > 0
    }

    fn add(&mut self, o: &GroupCounts) {
        self.new_conns += o.new_conns;
        self.events += o.events;
        self.rate_limited += o.rate_limited;
        self.group_budget += o.group_budget;
        self.ringbuf_full += o.ringbuf_full;
        self.accepted += o.accepted;
        self.refused += o.refused;
    }
}

struct FloodWindow {
    start: Instant,
    start_time: SystemTime,
    counts: GroupCounts,
    /// Connection alerts of the group folded into this window (past the daemon's cap per
    /// group and window), by answer.
    folded: u64,
    folded_by_answer: AnswerCounts,
}

impl FloodWindow {
    fn new(now: Instant, counts: GroupCounts) -> FloodWindow {
        FloodWindow {
            start: now,
            start_time: SystemTime::now(),
            counts,
            folded: 0,
            folded_by_answer: AnswerCounts::default(),
        }
    }
}

/// The open flood windows: None = the node scope, else the group's.
#[derive(Default)]
pub(crate) struct Flood(BTreeMap<Option<Arc<str>>, FloodWindow>);

impl Flood {
    /// One interval's counts of a scope: a loss opens its window if none is open; an open
    /// window adds them (new connections and answers of intervals without a loss too).
    pub(crate) fn add(&mut self, scope: Option<Arc<str>>, d: &GroupCounts, now: Instant) {
        if let Some(w) = self.0.get_mut(&scope) {
            w.counts.add(d);
            return;
        }
        if !d.lost() {
            return;
        }
        self.0.insert(scope, FloodWindow::new(now, *d));
    }

    /// When `group`'s flood window opened, if one is open.
    pub(crate) fn open_since(&self, group: &Arc<str>) -> Option<Instant> {
        self.0.get(&Some(group.clone())).map(|w| w.start)
    }

    /// One connection alert of `group` folded into the group's window (opened if none is).
    pub(crate) fn fold(&mut self, group: Arc<str>, answer: Option<Answer>, now: Instant) {
        let w = self
            .0
            .entry(Some(group))
            .or_insert_with(|| FloodWindow::new(now, GroupCounts::default()));
        w.folded += 1;
        w.folded_by_answer.add(answer);
    }

    /// The flood alerts of the windows that ended by `now` (all of them if `force`), in
    /// scope order (node first, then groups by name).
    pub(crate) fn close(
        &mut self,
        window: Duration,
        now: Instant,
        force: bool,
        sketches: &mut dyn SketchSource,
        out: &mut Vec<Alert>,
    ) {
        let due: Vec<Option<Arc<str>>> = self
            .0
            .iter()
            .filter(|(_, w)| force || !within(w.start, window, now))
            .map(|(k, _)| k.clone())
            .collect();
        for scope in due {
            let Some(w) = self.0.remove(&scope) else {
                continue;
            };
            let c = w.counts;
            let (scope, summary) = match scope {
                None => (FloodScope::Node, None),
                Some(group) => {
                    let sketch = sketches.take(&group).unwrap_or_default();
                    let withheld = c.rate_limited + c.group_budget;
                    let summary = FloodSummary {
                        new_connections: c.new_conns,
                        events: c.events,
                        group_budget: c.group_budget,
                        distinct_sources: sketch.distinct_sources,
                        spoofed_likely: spoofed_likely(withheld, sketch.distinct_sources),
                        top_sources: sketch.top_sources,
                        top_ports: sketch.top_ports,
                        start: w.start_time,
                        end: SystemTime::now(),
                        answered: FloodAnswers {
                            accepted: c.accepted,
                            refused: c.refused,
                        },
                        folded_alerts: w.folded,
                        folded_by_answer: w.folded_by_answer,
                    };
                    (FloodScope::Group(group), Some(Box::new(summary)))
                }
            };
            out.push(Alert {
                repeats_by_answer: None,
                id: new_id(),
                time: SystemTime::now(),
                rule: rules::flood_rule(),
                kind: AlertKind::Flood {
                    scope,
                    rate_limited: c.rate_limited,
                    ringbuf_full: c.ringbuf_full,
                    window,
                    summary,
                },
                suppressed: 0,
                follow_up_of: None,
                losses_since_previous: BTreeMap::new(),
            });
        }
    }
}
