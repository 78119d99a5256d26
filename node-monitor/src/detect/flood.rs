//! Flood: the first loss (rate limit or full ring buffer) opens a `flood_window`; when it
//! ends, one flood alert (scope node) carries the window's counts. At most one per window;
//! flood alerts are not deduplicated (the window already bounds them).
use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime},
};

use super::{
    dedup::new_id,
    model::{Alert, AlertKind, FloodScope},
    rules,
    window::within,
};

struct FloodWindow {
    start: Instant,
    rate_limited: u64,
    ringbuf_full: u64,
}

/// The open flood window, if any.
#[derive(Default)]
pub(crate) struct Flood(Option<FloodWindow>);

impl Flood {
    /// Losses seen now: opens the window if none is open, and adds them to it.
    pub(crate) fn add(&mut self, rate_limited: u64, ringbuf_full: u64, now: Instant) {
        if rate_limited == 0 && ringbuf_full == 0 {
            return;
        }
        let w = self.0.get_or_insert(FloodWindow {
            start: now,
            rate_limited: 0,
            ringbuf_full: 0,
        });
        w.rate_limited += rate_limited;
        w.ringbuf_full += ringbuf_full;
    }

    /// The flood alert of the open window if it ended by `now` (or at once if `force`).
    pub(crate) fn close(&mut self, window: Duration, now: Instant, force: bool) -> Option<Alert> {
        let due = self
            .0
            .as_ref()
            .is_some_and(|w| force || !within(w.start, window, now));
        if !due {
            return None;
        }
        let w = self.0.take()?;
        Some(Alert {
            repeats_by_answer: None,
            id: new_id(),
            time: SystemTime::now(),
            rule: rules::flood_rule(),
            kind: AlertKind::Flood {
                scope: FloodScope::Node,
                rate_limited: w.rate_limited,
                ringbuf_full: w.ringbuf_full,
                window,
            },
            suppressed: 0,
            follow_up_of: None,
            losses_since_previous: BTreeMap::new(),
        })
    }
}
