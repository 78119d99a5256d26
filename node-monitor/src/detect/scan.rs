//! Port scans across groups (NM-1011): per source, the distinct destination ports of its
//! flagged connections within the sliding `scan_window`, and the group of each. Reaching
//! `scan_min_ports` distinct ports that span at least two groups makes one scan detection
//! (a scan inside one group is a sweep, NM-1010); the source is then quiet for
//! `scan_window`, and its port set starts over afterwards.
//!
//! The connection alerts a scan covers are not held back (a connection alert cannot wait for
//! a scan that may never come, and dedup already bounds them to one per source and group per
//! dedup window): the detection counts them instead, as `connections` (flagged connections
//! of the scanned ports within the window) and `connection_alerts` (how many of those raised
//! a connection alert of their own rather than folding into a dedup series).
//!
//! Memory is bounded by configuration: at most `max_sources` sources, and at most `min_ports`
//! ports per source (when full, the port seen longest ago gives way; a port of a second group
//! still completes the scan, since the check runs before the trim). When the table is full, a
//! partial scan is forgotten (counted in `evictions`): the least recently seen source that
//! holds one port, and only when there is none, the least recently seen of those that hold
//! several. A spoofed flood (a new source for every packet, one port each) thus only churns
//! the one-port sources and cannot push a real scanner's partial scan out of the table,
//! whose second port protects it.
use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use ahash::HashMap;

use super::{
    model::AlertKind,
    recency::{Recency, Slot},
    window::within,
};
use crate::record::FlowRecord;

/// One destination port of a source's scan.
struct ScanPort {
    port: u16,
    group: Arc<str>,
    /// When a connection to it was last seen.
    seen: Instant,
    /// Flagged connections to it, and how many of them raised a connection alert.
    connections: u64,
    alerts: u64,
}

struct ScanState {
    /// At most `min_ports` (+1 while a record is fed), in no particular order.
    ports: Vec<ScanPort>,
    /// No new detection before this instant.
    quiet_until: Option<Instant>,
    /// Where it sits in `order`.
    slot: Slot,
}

/// The scan states of every source seen lately.
pub(crate) struct Scans {
    max_sources: usize,
    /// Ports all states may hold together: the cap is at most this over `min_ports`.
    port_slots: usize,
    states: HashMap<IpAddr, ScanState>,
    /// Least recently seen first, one-port states before the others.
    order: Recency<IpAddr>,
    /// Scan detections (before dedup).
    pub(crate) detections: u64,
    /// Sources forgotten because the table was full.
    pub(crate) evictions: u64,
}

impl Scans {
    /// A table of at most `max_sources` states (at least 1) holding at most `port_slots` ports
    /// in all (see [`Self::capacity`]).
    pub(crate) fn new(max_sources: usize, port_slots: usize) -> Scans {
        Scans {
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

    /// Tracked sources now.
    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    /// Forgets the sources untouched for a whole `window`.
    pub(crate) fn expire(&mut self, window: Duration, now: Instant) {
        // A quiet period ends at most `window` after the last touch, so a state untouched
        // for a whole window holds nothing worth keeping.
        for source in self.order.pop_expired(window, now) {
            self.states.remove(&source);
        }
    }

    /// One flagged connection; `alerted`: it raised a connection alert of its own. Returns
    /// the scan it completes, if any.
    pub(crate) fn feed(
        &mut self,
        rec: &FlowRecord,
        alerted: bool,
        window: Duration,
        min_ports: usize,
        now: Instant,
    ) -> Option<AlertKind> {
        let min_ports = min_ports.max(2);
        let source = rec.src_ip;
        if !self.states.contains_key(&source) {
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
        let state = self.states.entry(source).or_insert_with(|| ScanState {
            ports: Vec::new(),
            quiet_until: None,
            slot: order.insert(source, now),
        });
        let held = state.ports.len();
        order.touch(&mut state.slot, source, held, now);

        if let Some(q) = state.quiet_until {
            if now < q {
                return None;
            }
            state.quiet_until = None;
        }
        state.ports.retain(|p| within(p.seen, window, now));
        match state.ports.iter_mut().find(|p| p.port == rec.dst_port) {
            Some(p) => {
                p.seen = now;
                p.group = rec.group.clone();
                p.connections += 1;
                p.alerts += u64::from(alerted);
            }
            None => state.ports.push(ScanPort {
                port: rec.dst_port,
                group: rec.group.clone(),
                seen: now,
                connections: 1,
                alerts: u64::from(alerted),
            }),
        }
        // A second port: protected from a flood of one-port sources.
        if state.slot.protects(state.ports.len()) {
            order.touch(&mut state.slot, source, state.ports.len(), now);
        }
        let spans_groups = state
            .ports
            .iter()
            .any(|p| *p.group != *state.ports[0].group);
        if state.ports.len() < min_ports || !spans_groups {
            // Bounded: the port seen longest ago gives way.
            while state.ports.len() > min_ports {
                let oldest = state
                    .ports
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, p)| p.seen)
                    .map(|(i, _)| i);
                if let Some(i) = oldest {
                    state.ports.swap_remove(i);
                }
            }
            return None;
        }
        let mut found = std::mem::take(&mut state.ports);
        found.sort_unstable_by_key(|p| p.port);
        let mut groups: Vec<Arc<str>> = found.iter().map(|p| p.group.clone()).collect();
        groups.sort_unstable();
        groups.dedup();
        // An unrepresentable end: quiet "forever", i.e. until the state is forgotten.
        state.quiet_until = Some(
            now.checked_add(window)
                .unwrap_or(now + Duration::from_secs(86_400 * 365)),
        );
        self.detections += 1;
        Some(AlertKind::Scan {
            source,
            ports: found.iter().map(|p| p.port).collect(),
            groups,
            window,
            connections: found.iter().map(|p| p.connections).sum(),
            connection_alerts: found.iter().map(|p| p.alerts).sum(),
            last: rec.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fixture;

    const WINDOW: Duration = Duration::from_secs(60);

    fn rec(group: &str, src: &str, port: u16) -> FlowRecord {
        fixture::flagged_from(group, src.parse().unwrap(), port)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// The control-plane ports of the nmap scan, with their groups.
    const CONTROL_PLANE: [(&str, u16); 7] = [
        ("etcd-client", 2379),
        ("etcd-peer", 2380),
        ("apiserver", 6443),
        ("kubelet", 10250),
        ("kubelet-readonly", 10255),
        ("controller-manager", 10257),
        ("scheduler", 10259),
    ];

    #[test]
    fn threshold_then_quiet_for_the_window_then_again() {
        let mut s = Scans::new(16, 1 << 20);
        let t0 = Instant::now();
        let src = "203.0.113.9";
        let mut hits = Vec::new();
        for (i, (group, port)) in CONTROL_PLANE.iter().enumerate() {
            let now = t0 + Duration::from_millis(i as u64);
            if let Some(k) = s.feed(&rec(group, src, *port), true, WINDOW, 5, now) {
                hits.push((i, k));
            }
        }
        assert_eq!(hits.len(), 1, "once per window: {hits:?}");
        let (at, kind) = &hits[0];
        assert_eq!(*at, 4, "the 5th distinct port completes it");
        match kind {
            AlertKind::Scan {
                source,
                ports,
                groups,
                window,
                connections,
                connection_alerts,
                last,
            } => {
                assert_eq!(*source, src.parse::<IpAddr>().unwrap());
                assert_eq!(ports, &[2379, 2380, 6443, 10250, 10255]);
                let groups: Vec<&str> = groups.iter().map(|g| &**g).collect();
                assert_eq!(
                    groups,
                    [
                        "apiserver",
                        "etcd-client",
                        "etcd-peer",
                        "kubelet",
                        "kubelet-readonly"
                    ]
                );
                assert_eq!(*window, WINDOW);
                assert_eq!((*connections, *connection_alerts), (5, 5));
                assert_eq!(last.dst_port, 10255);
            }
            k => panic!("{k:?}"),
        }
        assert_eq!(s.detections, 1);
        // Still quiet just before the window ends, whatever it touches.
        for (group, port) in CONTROL_PLANE {
            assert!(
                s.feed(&rec(group, src, port), true, WINDOW, 5, t0 + secs(59))
                    .is_none()
            );
        }
        // After the window: a new scan needs five fresh ports again.
        let later = t0 + secs(61);
        let mut again = 0;
        for (i, (group, port)) in CONTROL_PLANE.iter().enumerate() {
            if s.feed(&rec(group, src, *port), false, WINDOW, 5, later)
                .is_some()
            {
                again += 1;
                assert_eq!(i, 4);
            }
        }
        assert_eq!(again, 1);
        assert_eq!(s.detections, 2);
    }

    #[test]
    fn below_threshold_or_outside_the_window_is_no_scan() {
        let mut s = Scans::new(16, 1 << 20);
        let t0 = Instant::now();
        // Four ports: below the threshold, and repeats of one port add nothing.
        for (group, port) in &CONTROL_PLANE[..4] {
            for _ in 0..3 {
                assert!(
                    s.feed(&rec(group, "203.0.113.9", *port), true, WINDOW, 5, t0)
                        .is_none()
                );
            }
        }
        // The fifth port comes after the first four have left the sliding window.
        let (group, port) = CONTROL_PLANE[4];
        assert!(
            s.feed(
                &rec(group, "203.0.113.9", port),
                true,
                WINDOW,
                5,
                t0 + secs(60)
            )
            .is_none()
        );
        // Five ports from five sources: no scan either.
        for (i, (group, port)) in CONTROL_PLANE.iter().enumerate() {
            let src = format!("198.51.100.{}", i + 1);
            assert!(
                s.feed(&rec(group, &src, *port), true, WINDOW, 5, t0)
                    .is_none()
            );
        }
        assert_eq!(s.detections, 0);
    }

    #[test]
    fn one_group_is_a_sweep_not_a_scan_and_its_ports_stay_bounded() {
        let mut s = Scans::new(16, 1 << 20);
        let t0 = Instant::now();
        let src = "203.0.113.9";
        for port in 30000..30400u16 {
            assert!(
                s.feed(&rec("nodeport", src, port), true, WINDOW, 5, t0)
                    .is_none()
            );
        }
        let state = &s.states[&src.parse::<IpAddr>().unwrap()];
        assert!(state.ports.len() <= 5, "{}", state.ports.len());
        // A port of a second group completes the scan.
        match s.feed(&rec("kubelet", src, 10250), true, WINDOW, 5, t0) {
            Some(AlertKind::Scan { ports, groups, .. }) => {
                assert_eq!(ports.len(), 6, "{ports:?}");
                assert_eq!(ports[0], 10250);
                assert_eq!(groups.len(), 2);
            }
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn counts_the_connections_and_alerts_it_folds() {
        let mut s = Scans::new(16, 1 << 20);
        let t0 = Instant::now();
        let src = "203.0.113.9";
        // Three connections to 10250, the first alerting, the two others folded by dedup.
        for i in 0..3 {
            s.feed(&rec("kubelet", src, 10250), i == 0, WINDOW, 3, t0);
        }
        s.feed(&rec("apiserver", src, 6443), true, WINDOW, 3, t0);
        match s.feed(&rec("etcd-client", src, 2379), false, WINDOW, 3, t0) {
            Some(AlertKind::Scan {
                connections,
                connection_alerts,
                ..
            }) => assert_eq!((connections, connection_alerts), (5, 2)),
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn the_table_holds_at_most_its_port_slots() {
        // 100 slots: 20 sources of min_ports 5, 50 of min_ports 2.
        let mut s = Scans::new(1000, 100);
        assert_eq!(
            (s.capacity(5), s.capacity(2), s.capacity(1000)),
            (20, 50, 1)
        );
        let t0 = Instant::now();
        for i in 0..30u8 {
            let src = format!("203.0.113.{i}");
            s.feed(&rec("kubelet", &src, 10250), true, WINDOW, 5, t0);
        }
        assert_eq!((s.len(), s.evictions), (20, 10));
    }

    #[test]
    fn a_flood_of_one_port_sources_never_evicts_a_partial_scan() {
        let mut s = Scans::new(8, 1 << 20);
        let t0 = Instant::now();
        let scanner = "203.0.113.9";
        // The scanner's first two ports (two groups), then a spoofed flood of 1,000 sources,
        // one port each, through a table of 8.
        let mut ports = CONTROL_PLANE.iter();
        for (group, port) in ports.by_ref().take(2) {
            assert!(
                s.feed(&rec(group, scanner, *port), true, WINDOW, 5, t0)
                    .is_none()
            );
        }
        for i in 0..1000u32 {
            let src = std::net::Ipv4Addr::from(0xc633_6400 + i).to_string();
            let now = t0 + Duration::from_millis(u64::from(i));
            s.feed(&rec("kubelet", &src, 10250), true, WINDOW, 5, now);
        }
        assert_eq!(s.len(), 8);
        assert_eq!(s.evictions, 1000 - 7);
        // The scan completes with its next three ports.
        let mut found = None;
        for (group, port) in ports.take(3) {
            found = found.or(s.feed(&rec(group, scanner, *port), true, WINDOW, 5, t0 + secs(2)));
        }
        assert!(
            matches!(found, Some(AlertKind::Scan { ref ports, .. }) if ports.len() == 5),
            "{found:?}"
        );
        // With only protected states left, the least recently seen of them gives way.
        let mut s = Scans::new(2, 1 << 20);
        for (i, src) in ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
            .iter()
            .enumerate()
        {
            let now = t0 + secs(i as u64);
            s.feed(&rec("kubelet", src, 10250), true, WINDOW, 5, now);
            s.feed(&rec("apiserver", src, 6443), true, WINDOW, 5, now);
        }
        assert_eq!((s.len(), s.evictions), (2, 1));
        assert!(
            !s.states
                .contains_key(&"203.0.113.1".parse::<IpAddr>().unwrap())
        );
        s.expire(WINDOW, t0 + secs(70));
        assert_eq!(s.len(), 0);
        assert!(s.order.is_empty());
    }

    #[test]
    fn bounded_sources_with_counted_evictions_and_expiry() {
        let mut s = Scans::new(3, 1 << 20);
        let t0 = Instant::now();
        for i in 0..10u64 {
            let src = format!("203.0.113.{i}");
            s.feed(&rec("kubelet", &src, 10250), true, WINDOW, 5, t0 + secs(i));
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.evictions, 7);
        // The three kept are the three seen last: the evicted ones start over.
        assert!(
            s.states
                .contains_key(&"203.0.113.9".parse::<IpAddr>().unwrap())
        );
        assert!(
            !s.states
                .contains_key(&"203.0.113.0".parse::<IpAddr>().unwrap())
        );
        // Untouched for a whole window: forgotten, not counted as evictions.
        s.expire(WINDOW, t0 + secs(69));
        assert_eq!(s.len(), 0);
        assert_eq!(s.evictions, 7);
        assert!(s.order.is_empty());
    }
}
