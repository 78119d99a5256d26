//! Sweep detection: per (source, sweep group), the distinct destination ports seen within the
//! sliding `sweep_window`; reaching `sweep_min_ports` makes one sweep detection, then the
//! source is quiet for `sweep_window` (its port set starts over afterwards). At most
//! `max_sources` states: when full, the least recently seen source's partial port set is
//! forgotten and counted.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{model::AlertKind, window::within};
use crate::record::FlowRecord;

type SweepKey = (IpAddr, Arc<str>);

struct SweepState {
    /// Destination port → when it was last seen.
    ports: BTreeMap<u16, Instant>,
    /// No new detection before this instant.
    quiet_until: Option<Instant>,
    /// Key of this state in `order`.
    order: (Instant, u64),
}

/// The sweep states of every (source, sweep group) seen lately.
pub(crate) struct Sweeps {
    max_sources: usize,
    /// Ports all states may hold together: the cap is at most this over `min_ports`.
    port_slots: usize,
    seq: u64,
    states: HashMap<SweepKey, SweepState>,
    /// (last seen, seq) → key: least recently seen first.
    order: BTreeMap<(Instant, u64), SweepKey>,
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
            seq: 0,
            states: HashMap::with_capacity(max_sources.max(1)),
            order: BTreeMap::new(),
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
        let states = &mut self.states;
        self.order.retain(|_, key| {
            let keep = groups.contains(&*key.1);
            if !keep {
                states.remove(key);
            }
            keep
        });
    }

    /// Forgets the states untouched for a whole `window`.
    pub(crate) fn expire(&mut self, window: Duration, now: Instant) {
        while let Some((&(seen, _), _)) = self.order.first_key_value() {
            // A quiet period ends at most `window` after the last touch, so a state untouched
            // for a whole window holds nothing worth keeping.
            if within(seen, window, now) {
                break;
            }
            if let Some((_, key)) = self.order.pop_first() {
                self.states.remove(&key);
            }
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
                let Some((_, old)) = self.order.pop_first() else {
                    break;
                };
                self.states.remove(&old);
                self.evictions += 1;
            }
        }
        self.seq += 1;
        let seq = self.seq;
        let state = self
            .states
            .entry(key.clone())
            .or_insert_with(|| SweepState {
                ports: BTreeMap::new(),
                quiet_until: None,
                order: (now, seq),
            });
        self.order.remove(&state.order);
        state.order = (now, seq);
        self.order.insert((now, seq), key);

        if let Some(q) = state.quiet_until {
            if now < q {
                return None;
            }
            state.quiet_until = None;
        }
        state.ports.retain(|_, seen| within(*seen, window, now));
        state.ports.insert(rec.dst_port, now);
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
