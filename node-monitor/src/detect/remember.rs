//! Something remembered per connection for a bounded number of connections, the oldest
//! forgotten first: which alert reported a connection as `no_answer`, so that the late answer
//! that corrects it names that alert (`answer_corrects_alert`); and which accepted connections
//! the cap folded into a flood alert, so that the ACK that completes one names it.
//!
//! Bounded in count and in age: what is older than the time its answer or ACK can still come
//! is forgotten, so that a steady trickle of connections holds what that time brings, not the
//! cap's worth that it would reach after hours (issue 13: the soak's resident memory rose for
//! as long as it ran).
use std::{
    collections::VecDeque,
    net::IpAddr,
    time::{Duration, Instant},
};

use ahash::HashMap;

use super::window::within;
use crate::{config::Protocol, record::FlowRecord};

/// Connections remembered for corrections: as many as the answer tracker remembers unanswered
/// attempts at most, in about 2.5 MiB.
pub(crate) const MAX_REMEMBERED: usize = 32_768;

/// A connection: the 5-tuple in ingress orientation.
type ConnKey = (IpAddr, u16, IpAddr, u16, Protocol);

fn key_of(r: &FlowRecord) -> ConnKey {
    (r.src_ip, r.src_port, r.dst_ip, r.dst_port, r.protocol)
}

pub(crate) struct Remembered<V> {
    /// Connection → (what is remembered of it, its insertion number).
    ids: HashMap<ConnKey, (V, u64)>,
    /// Insertion order and time; an entry whose number no longer matches the map's is stale
    /// (taken, or remembered again since).
    order: VecDeque<(ConnKey, u64, Instant)>,
    seq: u64,
    cap: usize,
    /// How long an entry can still be asked for; past it, it is forgotten even under the cap.
    max_age: Duration,
}

/// Below this many slots a queue or table is never shrunk.
const MIN_CAPACITY: usize = 64;

impl<V> Remembered<V> {
    /// At most `cap` connections, each for at most `max_age`.
    pub(crate) fn new(cap: usize, max_age: Duration) -> Remembered<V> {
        Remembered {
            ids: HashMap::default(),
            order: VecDeque::new(),
            seq: 0,
            cap: cap.max(1),
            max_age,
        }
    }

    /// Remembers `id` for `rec`'s connection at `now` (forgetting what is too old, and the
    /// oldest past the cap).
    pub(crate) fn remember(&mut self, rec: &FlowRecord, id: V, now: Instant) {
        self.expire(now);
        let key = key_of(rec);
        self.seq += 1;
        self.ids.insert(key, (id, self.seq));
        self.order.push_back((key, self.seq, now));
        // Every live map entry has its one order entry, so bounding the queue bounds both.
        while self.order.len() > self.cap {
            self.pop_oldest();
        }
    }

    /// Forgets what was remembered `max_age` or longer before `now`, and gives back the room a
    /// burst left behind (a queue or table at most a quarter full is halved, or more).
    pub(crate) fn expire(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(_, _, at)| !within(*at, self.max_age, now))
        {
            self.pop_oldest();
        }
        if self.order.capacity() > MIN_CAPACITY && self.order.len() < self.order.capacity() / 4 {
            self.order
                .shrink_to((self.order.len() * 2).max(MIN_CAPACITY));
        }
        if self.ids.capacity() > MIN_CAPACITY && self.ids.len() < self.ids.capacity() / 4 {
            self.ids.shrink_to((self.ids.len() * 2).max(MIN_CAPACITY));
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((old, seq, _)) = self.order.pop_front()
            && self.ids.get(&old).is_some_and(|(_, s)| *s == seq)
        {
            self.ids.remove(&old);
        }
    }

    /// What was remembered for `rec`'s connection, once.
    pub(crate) fn take(&mut self, rec: &FlowRecord) -> Option<V> {
        self.ids.remove(&key_of(rec)).map(|(id, _)| id)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fixture::flagged;

    #[test]
    fn remembers_once_and_forgets_the_oldest() {
        let t0 = Instant::now();
        let mut c = Remembered::new(2, Duration::from_secs(600));
        let (a, b, d) = (
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
        );
        let r = |port| FlowRecord {
            src_port: port,
            ..flagged()
        };
        c.remember(&r(1), a, t0);
        c.remember(&r(2), b, t0);
        assert_eq!(c.take(&r(1)), Some(a));
        assert_eq!(c.take(&r(1)), None, "once");
        // Re-remembered keys and stale queue entries never grow the tables past the cap.
        for _ in 0..10 {
            c.remember(&r(2), b, t0);
        }
        c.remember(&r(3), d, t0);
        assert!(c.order.len() <= 2 && c.len() <= 2);
        assert_eq!(c.take(&r(2)), Some(b));
        assert_eq!(c.take(&r(3)), Some(d));
        c.remember(&r(4), a, t0);
        c.remember(&r(5), b, t0);
        c.remember(&r(6), d, t0);
        assert_eq!(c.take(&r(4)), None, "the oldest was forgotten");
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn what_is_too_old_to_be_asked_for_is_forgotten() {
        let t0 = Instant::now();
        let age = Duration::from_secs(10);
        let mut c = Remembered::new(32_768, age);
        let r = |port| FlowRecord {
            src_port: port,
            ..flagged()
        };
        c.remember(&r(1), 1u8, t0);
        c.remember(&r(2), 2, t0 + age / 2);
        c.expire(t0 + age - Duration::from_nanos(1));
        assert_eq!(c.len(), 2, "both still young enough");
        c.expire(t0 + age);
        assert_eq!(c.take(&r(1)), None, "as old as max_age: forgotten");
        assert_eq!(c.take(&r(2)), Some(2));
        // Issue 13: a steady trickle (one connection a second, half of them answered and
        // taken) held every connection up to the cap, for hours. Now it holds what `max_age`
        // brings, queue and table alike, however long it runs.
        let mut t = t0 + age;
        for i in 0..20_000u32 {
            t += Duration::from_secs(1);
            let rec = r(u16::try_from(i % 60_000).unwrap_or(0) + 10);
            c.remember(&rec, 0, t);
            if i % 2 == 0 {
                let _ = c.take(&rec);
            }
        }
        assert!(c.order.len() <= 11, "queue holds {}", c.order.len());
        assert!(c.len() <= 6, "table holds {}", c.len());
        // A burst grows them; once it has aged out their room is given back.
        for i in 0..10_000u16 {
            c.remember(&r(i), 0, t);
        }
        assert!(c.order.capacity() >= 10_000);
        c.expire(t + age);
        assert!(c.order.is_empty() && c.len() == 0);
        assert!(
            c.order.capacity() <= MIN_CAPACITY && c.ids.capacity() <= 2 * MIN_CAPACITY,
            "room kept: queue {}, table {}",
            c.order.capacity(),
            c.ids.capacity()
        );
    }
}
