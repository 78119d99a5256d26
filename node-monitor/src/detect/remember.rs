//! Something remembered per connection for a bounded number of connections, the oldest
//! forgotten first: which alert reported a connection as `no_answer`, so that the late answer
//! that corrects it names that alert (`answer_corrects_alert`); and which accepted connections
//! the cap folded into a flood alert, so that the ACK that completes one names it.
use std::{collections::VecDeque, net::IpAddr};

use ahash::HashMap;

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
    /// Insertion order; an entry whose number no longer matches the map's is stale.
    order: VecDeque<(ConnKey, u64)>,
    seq: u64,
    cap: usize,
}

impl<V> Remembered<V> {
    pub(crate) fn new(cap: usize) -> Remembered<V> {
        Remembered {
            ids: HashMap::default(),
            order: VecDeque::new(),
            seq: 0,
            cap: cap.max(1),
        }
    }

    /// Remembers `id` for `rec`'s connection (forgetting the oldest past the cap).
    pub(crate) fn remember(&mut self, rec: &FlowRecord, id: V) {
        let key = key_of(rec);
        self.seq += 1;
        self.ids.insert(key, (id, self.seq));
        self.order.push_back((key, self.seq));
        // Every live map entry has its one order entry, so bounding the queue bounds both.
        while self.order.len() > self.cap {
            if let Some((old, seq)) = self.order.pop_front()
                && self.ids.get(&old).is_some_and(|(_, s)| *s == seq)
            {
                self.ids.remove(&old);
            }
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
        let mut c = Remembered::new(2);
        let (a, b, d) = (
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
        );
        let r = |port| FlowRecord {
            src_port: port,
            ..flagged()
        };
        c.remember(&r(1), a);
        c.remember(&r(2), b);
        assert_eq!(c.take(&r(1)), Some(a));
        assert_eq!(c.take(&r(1)), None, "once");
        // Re-remembered keys and stale queue entries never grow the tables past the cap.
        for _ in 0..10 {
            c.remember(&r(2), b);
        }
        c.remember(&r(3), d);
        assert!(c.order.len() <= 2 && c.len() <= 2);
        assert_eq!(c.take(&r(2)), Some(b));
        assert_eq!(c.take(&r(3)), Some(d));
        c.remember(&r(4), a);
        c.remember(&r(5), b);
        c.remember(&r(6), d);
        assert_eq!(c.take(&r(4)), None, "the oldest was forgotten");
        assert_eq!(c.len(), 2);
    }
}
