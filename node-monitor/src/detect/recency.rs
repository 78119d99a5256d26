//! The least-recently-seen order of a detector's states (sweeps, scans), in two segments: the
//! states that hold one port, which a full table forgets first, and the protected ones that
//! hold several, forgotten only when no one-port state is left. A spoofed flood (a new source
//! for every packet, one port each) thus churns only the first segment and cannot push out a
//! real sweeper's or scanner's partial port set once it has a second port.
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use super::window::within;

/// Where a state sits in the order: kept in the state itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    at: (Instant, u64),
    protected: bool,
}

impl Slot {
    /// Would holding `ports` ports move the state to the other segment?
    pub(crate) fn protects(&self, ports: usize) -> bool {
        (ports >= 2) != self.protected
    }
}

pub(crate) struct Recency<K> {
    seq: u64,
    /// (last seen, seq) → key, least recently seen first: states with one port (or none)...
    one_port: BTreeMap<(Instant, u64), K>,
    /// ... and those with several.
    protected: BTreeMap<(Instant, u64), K>,
}

impl<K: Clone> Recency<K> {
    pub(crate) fn new() -> Recency<K> {
        Recency {
            seq: 0,
            one_port: BTreeMap::new(),
            protected: BTreeMap::new(),
        }
    }

    fn next(&mut self, now: Instant) -> (Instant, u64) {
        self.seq += 1;
        (now, self.seq)
    }

    fn segment(&mut self, protected: bool) -> &mut BTreeMap<(Instant, u64), K> {
        if protected {
            &mut self.protected
        } else {
            &mut self.one_port
        }
    }

    /// A new state `key`, seen at `now`.
    pub(crate) fn insert(&mut self, key: K, now: Instant) -> Slot {
        let at = self.next(now);
        self.one_port.insert(at, key);
        Slot {
            at,
            protected: false,
        }
    }

    /// State `key` (at `slot`) seen again at `now`; `ports`: how many ports it holds now.
    /// Several ports move it to the protected segment, one or none back.
    pub(crate) fn touch(&mut self, slot: &mut Slot, key: K, ports: usize, now: Instant) {
        self.segment(slot.protected).remove(&slot.at);
        slot.at = self.next(now);
        slot.protected = ports >= 2;
        self.segment(slot.protected).insert(slot.at, key);
    }

    /// The state to forget when the table is full: the least recently seen one-port state,
    /// else the least recently seen protected one.
    pub(crate) fn pop_oldest(&mut self) -> Option<K> {
        self.one_port
            .pop_first()
            .or_else(|| self.protected.pop_first())
            .map(|(_, k)| k)
    }

    /// The states untouched for a whole `window` at `now`, taken out of the order.
    pub(crate) fn pop_expired(&mut self, window: Duration, now: Instant) -> Vec<K> {
        let mut out = Vec::new();
        for segment in [&mut self.one_port, &mut self.protected] {
            while let Some((&(seen, _), _)) = segment.first_key_value() {
                if within(seen, window, now) {
                    break;
                }
                if let Some((_, k)) = segment.pop_first() {
                    out.push(k);
                }
            }
        }
        out
    }

    /// Keeps the states for which `keep` is true; returns the others.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) -> Vec<K> {
        let mut gone = Vec::new();
        for segment in [&mut self.one_port, &mut self.protected] {
            segment.retain(|_, k| {
                let kept = keep(k);
                if !kept {
                    gone.push(k.clone());
                }
                kept
            });
        }
        gone
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.one_port.is_empty() && self.protected.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_port_states_go_first_then_the_oldest_protected() {
        let t0 = Instant::now();
        let mut r = Recency::new();
        let mut a = r.insert("a", t0);
        let _b = r.insert("b", t0);
        let mut c = r.insert("c", t0);
        r.touch(&mut a, "a", 2, t0);
        r.touch(&mut c, "c", 3, t0);
        assert_eq!(r.pop_oldest(), Some("b"));
        assert_eq!(r.pop_oldest(), Some("a"), "protected, oldest first");
        // Back to one port: unprotected again.
        r.touch(&mut c, "c", 1, t0);
        assert_eq!(r.pop_oldest(), Some("c"));
        assert_eq!(r.pop_oldest(), None);
        assert!(r.is_empty());
    }

    #[test]
    fn expiry_and_retain_reach_both_segments() {
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        let mut r = Recency::new();
        let mut a = r.insert(1, t0);
        r.touch(&mut a, 1, 2, t0);
        r.insert(2, t0 + Duration::from_secs(30));
        r.insert(3, t0);
        let mut gone = r.pop_expired(w, t0 + Duration::from_secs(61));
        gone.sort_unstable();
        assert_eq!(gone, [1, 3]);
        assert_eq!(r.retain(|k| *k != 2), [2]);
        assert!(r.is_empty());
    }
}
