//! Sweep detection: per (source, sweep group), the distinct destination ports seen within the
//! sliding `sweep_window`; reaching `sweep_min_ports` makes one sweep detection, then the
//! source is quiet for `sweep_window` (its port set starts over afterwards). At most
//! `max_sources` states: when full, a partial port set is forgotten and counted, the least
//! recently seen one-port state first (so that a spoofed flood, one port per source, cannot
//! push out a real sweep once it has a second port: [`Recency`]).
use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use ahash::{HashMap, HashSet};

use super::{
    model::AlertKind,
    recency::{Recency, Slot},
    window::within,
};
use crate::record::FlowRecord;

type SweepKey = (IpAddr, Arc<str>);

struct SweepState {
    /// Destination port → when it was last seen.
    ports: BTreeMap<u16, Instant>,
    /// No new detection before this instant.
    quiet_until: Option<Instant>,
    /// Where it sits in `order`.
    slot: Slot,
}

/// The sweep states of every (source, sweep group) seen lately.
pub(crate) struct Sweeps {
    max_sources: usize,
    /// Ports all states may hold together: the cap is at most this over `min_ports`.
    port_slots: usize,
    states: HashMap<SweepKey, SweepState>,
    /// Least recently seen first, one-port states before the others.
    order: Recency<SweepKey>,
    /// Sweep detections (before dedup).
    pub(crate) detections: u64,
    /// States forgotten because the table was full.
    pub(crate) evictions: u64,
}

impl Sweeps {
    /// A table of at most `max_sources` states (at least 1) holding at most `port_slots` ports
    /// in all (see [`Self::capacity`]).
    pub(crate) fn new(max_sources: usize, port_slots: usize) -> Sweeps {
        Sweeps {
            max_sources: max_sources.max(1),
            port_slots,
            // Grown as sources come, up to the cap (see `Dedup::new`).
            states: HashMap::with_hasher(ahash::RandomState::new()),
            order: Recency::new(),
            detections: 0,
            evictions: 0,
        }
    }

    /// The cap with `min_ports`: `max_sources`, or fewer when `min_ports` ports each would
    /// not fit in `port_slots` (at least 1).
    pub(crate) fn capacity(&self, min_ports: usize) -> usize {
        self.max_sources
            .min(self.port_slots / min_ports.max(1))
            .max(1)
    }

    /// Tracked states now.
    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    /// Drops the states of groups no longer watched.
    pub(crate) fn retain_groups(&mut self, groups: &HashSet<String>) {
        for key in self.order.retain(|key| groups.contains(&*key.1)) {
            self.states.remove(&key);
        }
    }

    /// Forgets the states untouched for a whole `window`.
    pub(crate) fn expire(&mut self, window: Duration, now: Instant) {
        // A quiet period ends at most `window` after the last touch, so a state untouched
        // for a whole window holds nothing worth keeping.
        for key in self.order.pop_expired(window, now) {
            self.states.remove(&key);
        }
    }

    /// One record of a sweep group: the sweep it completes, if any.
    pub(crate) fn feed(
        &mut self,
        rec: &FlowRecord,
        window: Duration,
        min_ports: usize,
        now: Instant,
    ) -> Option<AlertKind> {
        let key: SweepKey = (rec.src_ip, rec.group.clone());
        if !self.states.contains_key(&key) {
            let cap = self.capacity(min_ports);
            while self.states.len() >= cap {
                let Some(old) = self.order.pop_oldest() else {
                    break;
                };
                self.states.remove(&old);
                self.evictions += 1;
            }
        }
        let order = &mut self.order;
        let state = self
            .states
            .entry(key.clone())
            .or_insert_with(|| SweepState {
                ports: BTreeMap::new(),
                quiet_until: None,
                slot: order.insert(key.clone(), now),
            });
        order.touch(&mut state.slot, key.clone(), state.ports.len(), now);

        if let Some(q) = state.quiet_until {
            if now < q {
                return None;
            }
            state.quiet_until = None;
        }
        state.ports.retain(|_, seen| within(*seen, window, now));
        state.ports.insert(rec.dst_port, now);
        // A second port: protected from a flood of one-port sources.
        if state.slot.protects(state.ports.len()) {
            order.touch(&mut state.slot, key, state.ports.len(), now);
        }
        if state.ports.len() < min_ports.max(1) {
            return None;
        }
        let ports: Vec<u16> = state.ports.keys().copied().collect();
        state.ports.clear();
        // An unrepresentable end: quiet "forever", i.e. until the state is forgotten.
        state.quiet_until = Some(
            now.checked_add(window)
                .unwrap_or(now + Duration::from_secs(86_400 * 365)),
        );
        self.detections += 1;
        Some(AlertKind::Sweep {
            source: rec.src_ip,
            group: rec.group.clone(),
            ports,
            window,
            last: rec.clone(),
        })
    }
}
