//! Answer tracking: a flagged attempt is held until the node answers it (SYN-ACK or a UDP
//! reply → accepted; RST or ICMP port unreachable → refused) or the answer timeout passes
//! (→ no answer). Sampled flows of allowed sources are reported at once.
//!
//! The egress program reports answers as events and also records them on the flow entry;
//! when an answer event was lost, the timeout path reads the flow entry instead.
//!
//! An answer that arrives after its attempt was reported (the node answered after the answer
//! timeout) is never only counted: it becomes a record of its own, a flagged connection with
//! that answer and `answer_corrects: no_answer`, the correction of the earlier report (the
//! tracker remembers the last [`MAX_UNANSWERED`] attempts it reported without an answer, for
//! [`REMEMBER_NS`]). An answer to an attempt it never reported (rate limited, lost, or from
//! before a restart) becomes a record only when it is an acceptance.
use std::{
    borrow::Cow,
    collections::{VecDeque, hash_map::Entry},
    sync::Arc,
};

use ahash::HashMap;
use node_monitor_common::{
    ANSWER_NONE, EVENT_ANSWER, EVENT_FLAGGED, EVENT_UNSEEN, Event, FlowKey, FlowState,
};

use crate::record::{self, Answer, Clock, FlowRecord};

/// Counters of the tracker itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TrackerStats {
    /// Answer events for attempts no longer pending (after the timeout, or after a restart).
    /// Each is reported as a record of its own (see the module docs).
    pub late_answers: u64,
    /// Flagged attempts reported with an answer read from the flow table because the answer
    /// event itself was lost.
    pub answers_from_flow_table: u64,
    /// Pending attempts replaced by a newer attempt on the same 5-tuple before they resolved.
    pub superseded: u64,
    /// Attempts resolved before their timeout because the pending table was full (their
    /// answer is read from the flow table; "no_answer" may be premature for them).
    pub resolved_early: u64,
    /// Unanswered attempts forgotten before [`REMEMBER_NS`] because that table was full (a
    /// late answer to one of them is reported without `answer_corrects`, or not at all).
    pub unanswered_forgotten: u64,
}

/// Most attempts held for an answer at once; beyond it the oldest are resolved early (checked
/// every tick, so the table may run over by what one tick brings). 7/8 of a power of two, so
/// that the hash table, grown to it, holds it without growing to the next one: 32,768 slots of
/// about 120 bytes, and an order queue of at most twice the cap (48 bytes an entry): about
/// 7 MiB at most.
pub(crate) const MAX_PENDING: usize = 28_672;
/// Most attempts remembered as reported without an answer; beyond it the oldest are
/// forgotten (counted). About 110 bytes each: about 3.5 MiB.
pub(crate) const MAX_UNANSWERED: usize = 28_672;
/// How long an attempt reported without an answer is remembered, so that a late answer can
/// say which report it corrects.
pub(crate) const REMEMBER_NS: u64 = 600_000_000_000;

struct Pending {
    event: Event,
    deadline_ns: u64,
}

/// Holds flagged attempts until they are answered or time out.
pub struct Tracker {
    timeout_ns: u64,
    max_pending: usize,
    max_unanswered: usize,
    pending: HashMap<FlowKey, Pending>,
    /// Keys in arrival order; deadlines are monotonic in arrival order.
    order: VecDeque<(FlowKey, u64)>,
    /// Attempts reported as `no_answer`: key → the attempt's kernel time.
    unanswered: HashMap<FlowKey, u64>,
    /// The same, in report order, with the time each may be forgotten.
    unanswered_order: VecDeque<(FlowKey, u64, u64)>,
    /// The name last seen for each group id, shared by the records of that group (one
    /// allocation per group, not per record).
    group_names: Vec<Option<Arc<str>>>,
    pub stats: TrackerStats,
}

/// Resolves a group id to its name.
pub trait GroupNames {
    fn group_name(&self, id: u8) -> Cow<'_, str>;
}

impl Tracker {
    pub fn new(answer_timeout_ms: u64) -> Tracker {
        Tracker {
            timeout_ns: answer_timeout_ms.saturating_mul(1_000_000),
            max_pending: MAX_PENDING,
            max_unanswered: MAX_UNANSWERED,
            // Grown as entries come, up to the caps, never allocated at them: a table allocated
            // at its cap has each new key land on a random one of its pages, and a queue walks
            // its whole buffer as it turns, so either would fault its full size (about 10 MiB
            // here) into resident memory over hours of light traffic. Grown, they hold what the
            // most attempts at once needed: the same bound under a flood, a few KiB on a quiet
            // node. The price is a rehash when a table doubles (not measured; at most 28,672
            // entries are moved, once per doubling), while the ring buffer holds the events.
            pending: HashMap::with_hasher(ahash::RandomState::new()),
            order: VecDeque::new(),
            unanswered: HashMap::with_hasher(ahash::RandomState::new()),
            unanswered_order: VecDeque::new(),
            group_names: vec![None; usize::from(u8::MAX) + 1],
            stats: TrackerStats::default(),
        }
    }

    pub fn set_timeout(&mut self, answer_timeout_ms: u64) {
        self.timeout_ns = answer_timeout_ms.saturating_mul(1_000_000);
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Changes the pending-table cap, and the unanswered-table cap with it (tests).
    pub fn set_max_pending(&mut self, max: usize) {
        self.max_pending = max.max(1);
        self.max_unanswered = self.max_pending;
    }

    /// The pending-table cap.
    pub fn max_pending(&self) -> usize {
        self.max_pending
    }

    /// Attempts remembered as reported without an answer now, and the cap.
    pub fn unanswered(&self) -> (usize, usize) {
        (self.unanswered.len(), self.max_unanswered)
    }

    /// The shared name of group `id` (a reload may give an id another name: the name is
    /// compared each time, and replaced when it changed).
    fn group(&mut self, id: u8, names: &impl GroupNames) -> Arc<str> {
        let name = names.group_name(id);
        let slot = &mut self.group_names[usize::from(id)];
        match slot {
            Some(shared) if **shared == *name => shared.clone(),
            _ => slot.insert(Arc::from(name.as_ref())).clone(),
        }
    }

    /// Handles one decoded event; pushes any record that is complete onto `out`.
    /// `now_ns` is the current monotonic time.
    pub fn handle(
        &mut self,
        ev: Event,
        now_ns: u64,
        names: &impl GroupNames,
        clock: &Clock,
        out: &mut Vec<FlowRecord>,
    ) {
        let key = record::flow_key(&ev);
        match ev.kind {
            EVENT_FLAGGED => {
                // Deadline from when we saw it, so a backlog never expires attempts early.
                let deadline_ns = now_ns.max(ev.ts_ns).saturating_add(self.timeout_ns);
                if let Some(old) = self.pending.insert(
                    key,
                    Pending {
                        event: ev,
                        deadline_ns,
                    },
                ) {
                    self.stats.superseded += 1;
                    let name = self.group(old.event.group, names);
                    self.remember_unanswered(key, old.event.ts_ns, now_ns);
                    out.push(record::from_event(
                        &old.event,
                        name,
                        clock,
                        Some(Answer::NoAnswer),
                    ));
                }
                self.order.push_back((key, deadline_ns));
                // Answered attempts leave their order entry behind until its deadline: past
                // twice the table's size, drop those (amortized, so the order stays bounded
                // by the table, not by the event rate times the timeout).
                if self.order.len() > 2 * self.max_pending.max(self.pending.len()) {
                    let pending = &self.pending;
                    self.order
                        .retain(|(k, d)| pending.get(k).is_some_and(|p| p.deadline_ns == *d));
                }
            }
            EVENT_ANSWER => match self.pending.remove(&key) {
                Some(p) => {
                    let name = self.group(p.event.group, names);
                    out.push(record::from_event(
                        &p.event,
                        name,
                        clock,
                        Answer::from_raw(ev.answer),
                    ));
                }
                None => {
                    self.stats.late_answers += 1;
                    let corrects = self.unanswered.remove(&key).map(|_| Answer::NoAnswer);
                    let answer = Answer::from_raw(ev.answer);
                    // An attempt never reported (its event was rate limited or lost, counted
                    // in the flood alerts; or it came before a restart): only its acceptance
                    // is news, so that a burst cannot hide an accepted connection.
                    if corrects.is_none() && answer != Some(Answer::Accepted) {
                        return;
                    }
                    let name = self.group(ev.group, names);
                    let mut rec = record::from_event(&ev, name, clock, answer);
                    rec.record_type = record::RecordType::Flagged;
                    rec.answer_corrects = corrects;
                    // The answer event carries no action: the attempt was answered, so its SYN
                    // went through (a denied one in monitor mode).
                    rec.action = match rec.verdict {
                        record::Verdict::Denied => record::Action::WouldDrop,
                        record::Verdict::Allowed => record::Action::Pass,
                    };
                    // The flags are the answer's (SYN-ACK, RST), not an opener's.
                    rec.tcp_flags = None;
                    out.push(rec);
                }
            },
            // The node accepted a connection ingress never saw (NM-1030): the event is the
            // answer itself, complete at once.
            EVENT_UNSEEN => {
                let name = self.group(ev.group, names);
                out.push(record::from_event(&ev, name, clock, Some(Answer::Accepted)));
            }
            _ => {
                let name = self.group(ev.group, names);
                out.push(record::from_event(&ev, name, clock, None));
            }
        }
    }

    /// Reports attempts whose deadline passed. `lookup` reads the flow table, for answers
    /// whose event was lost.
    pub fn expire(
        &mut self,
        now_ns: u64,
        lookup: impl Fn(&FlowKey) -> Option<FlowState>,
        names: &impl GroupNames,
        clock: &Clock,
        out: &mut Vec<FlowRecord>,
    ) {
        while let Some((key, deadline)) = self.order.front().copied() {
            if deadline > now_ns {
                break;
            }
            self.order.pop_front();
            // The key may have been answered, or re-flagged with a later deadline.
            if let Some(p) = self.take_due(key, deadline) {
                self.report(&key, &p, now_ns, &lookup, names, clock, out);
            }
        }
        // Bounded memory: past the cap, resolve the oldest attempts now.
        while self.pending.len() > self.max_pending {
            let Some((key, deadline)) = self.order.pop_front() else {
                break;
            };
            if let Some(p) = self.take_due(key, deadline) {
                self.stats.resolved_early += 1;
                self.report(&key, &p, now_ns, &lookup, names, clock, out);
            }
        }
    }

    /// Remembers that the attempt of `key` (kernel time `ts_ns`) was reported as `no_answer`,
    /// for [`REMEMBER_NS`], at most [`MAX_UNANSWERED`] attempts (the oldest are forgotten,
    /// and counted).
    fn remember_unanswered(&mut self, key: FlowKey, ts_ns: u64, now_ns: u64) {
        while let Some(&(k, ts, forget)) = self.unanswered_order.front() {
            let full = self.unanswered_order.len() >= self.max_unanswered;
            if forget > now_ns && !full {
                break;
            }
            self.unanswered_order.pop_front();
            if self.unanswered.get(&k) == Some(&ts) {
                self.unanswered.remove(&k);
                if forget > now_ns {
                    self.stats.unanswered_forgotten += 1;
                }
            }
        }
        self.unanswered.insert(key, ts_ns);
        self.unanswered_order
            .push_back((key, ts_ns, now_ns.saturating_add(REMEMBER_NS)));
    }

    /// Removes the attempt of `key` if it is still the one due at `deadline` (one lookup).
    fn take_due(&mut self, key: FlowKey, deadline: u64) -> Option<Pending> {
        match self.pending.entry(key) {
            Entry::Occupied(e) if e.get().deadline_ns == deadline => Some(e.remove()),
            _ => None,
        }
    }

    /// Reports every pending attempt now (shutdown).
    pub fn flush(
        &mut self,
        lookup: impl Fn(&FlowKey) -> Option<FlowState>,
        names: &impl GroupNames,
        clock: &Clock,
        out: &mut Vec<FlowRecord>,
    ) {
        let mut rest: Vec<(FlowKey, Pending)> = self.pending.drain().collect();
        rest.sort_by_key(|(_, p)| p.event.ts_ns);
        self.order.clear();
        for (key, p) in rest {
            self.report(&key, &p, 0, &lookup, names, clock, out);
        }
    }

    /// Reports a pending attempt whose wait is over, with the answer the flow table holds.
    #[expect(
        clippy::too_many_arguments,
        reason = "the tracker's one reporting path: each argument is a different input"
    )]
    fn report(
        &mut self,
        key: &FlowKey,
        p: &Pending,
        now_ns: u64,
        lookup: &impl Fn(&FlowKey) -> Option<FlowState>,
        names: &impl GroupNames,
        clock: &Clock,
        out: &mut Vec<FlowRecord>,
    ) {
        let answer = self.answer_from_table(key, &p.event, lookup);
        if answer == Answer::NoAnswer {
            self.remember_unanswered(*key, p.event.ts_ns, now_ns);
        }
        let name = self.group(p.event.group, names);
        out.push(record::from_event(&p.event, name, clock, Some(answer)));
    }

    fn answer_from_table(
        &mut self,
        key: &FlowKey,
        ev: &Event,
        lookup: &impl Fn(&FlowKey) -> Option<FlowState>,
    ) -> Answer {
        match lookup(key) {
            // Same attempt (the entry was not restarted by a later one) with an answer.
            Some(f) if f.first_ns == ev.ts_ns && f.answer != ANSWER_NONE => {
                self.stats.answers_from_flow_table += 1;
                Answer::from_raw(f.answer).unwrap_or(Answer::NoAnswer)
            }
            _ => Answer::NoAnswer,
        }
    }
}

#[cfg(test)]
mod tests {
    use node_monitor_common::{
        ANSWER_ACCEPTED, ANSWER_REFUSED, EVENT_SAMPLED, FAMILY_V4, IPPROTO_TCP,
    };

    use super::*;

    struct Names;
    impl GroupNames for Names {
        fn group_name(&self, id: u8) -> Cow<'_, str> {
            Cow::Owned(format!("g{id}"))
        }
    }

    fn ev(kind: u8, sport: u16, ts: u64, answer: u8) -> Event {
        Event {
            kind,
            family: FAMILY_V4,
            proto: IPPROTO_TCP,
            src_port: sport,
            dst_port: 10250,
            ts_ns: ts,
            answer,
            group: 1,
            ..Default::default()
        }
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn answered_attempt_is_reported_at_once_with_its_answer() {
        let mut t = Tracker::new(1000);
        let clock = Clock::now();
        let mut out = Vec::new();
        t.handle(
            ev(EVENT_FLAGGED, 1, 10 * MS, 0),
            10 * MS,
            &Names,
            &clock,
            &mut out,
        );
        assert!(out.is_empty());
        t.handle(
            ev(EVENT_ANSWER, 1, 11 * MS, ANSWER_REFUSED),
            11 * MS,
            &Names,
            &clock,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].answer, Some(Answer::Refused));
        assert_eq!(&*out[0].group, "g1");
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn tables_grow_with_the_attempts_held_not_with_the_attempts_seen() {
        // 50,000 distinct attempts, one a millisecond, each refused at once: never more than
        // one held, and a second's worth of keys in the order queue. Tables allocated at
        // their caps would fault their whole size in as the keys pass through them.
        let mut t = Tracker::new(1000);
        let clock = Clock::now();
        let mut out = Vec::new();
        for i in 0..50_000u64 {
            let now = (i + 1) * MS;
            let port = u16::try_from(i % 60_000).unwrap() + 1;
            t.handle(
                ev(EVENT_FLAGGED, port, now, 0),
                now,
                &Names,
                &clock,
                &mut out,
            );
            t.handle(
                ev(EVENT_ANSWER, port, now, ANSWER_REFUSED),
                now,
                &Names,
                &clock,
                &mut out,
            );
            if i % 100 == 0 {
                t.expire(now, |_| None, &Names, &clock, &mut out);
            }
        }
        assert_eq!(out.len(), 50_000, "every attempt reported with its answer");
        assert_eq!(t.pending(), 0);
        assert!(
            t.pending.capacity() < 64,
            "pending table sized for {} attempts, held at most 1",
            t.pending.capacity()
        );
        assert!(
            t.order.capacity() <= 2048,
            "order queue sized for {}, held at most about 1,100",
            t.order.capacity()
        );
        assert_eq!(t.unanswered.capacity(), 0, "nothing went unanswered");
    }

    #[test]
    fn unanswered_attempt_times_out_and_flow_table_fills_lost_answers() {
        let mut t = Tracker::new(1000);
        let clock = Clock::now();
        let mut out = Vec::new();
        t.handle(
            ev(EVENT_FLAGGED, 1, 10 * MS, 0),
            10 * MS,
            &Names,
            &clock,
            &mut out,
        );
        t.handle(
            ev(EVENT_FLAGGED, 2, 20 * MS, 0),
            20 * MS,
            &Names,
            &clock,
            &mut out,
        );
        let table = |k: &FlowKey| {
            (k.src_port == 2).then_some(FlowState {
                first_ns: 20 * MS,
                answer: ANSWER_ACCEPTED,
                flagged: 1,
                ..Default::default()
            })
        };
        t.expire(500 * MS, table, &Names, &clock, &mut out);
        assert!(out.is_empty(), "nothing is due before the timeout");
        t.expire(1010 * MS, table, &Names, &clock, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].answer, Some(Answer::NoAnswer));
        t.expire(1020 * MS, table, &Names, &clock, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].answer, Some(Answer::Accepted));
        assert_eq!(t.stats.answers_from_flow_table, 1);
    }

    #[test]
    fn unseen_acceptance_is_a_record_at_once() {
        let mut t = Tracker::new(1000);
        let clock = Clock::now();
        let mut out = Vec::new();
        let mut e = ev(EVENT_UNSEEN, 7, 5 * MS, ANSWER_ACCEPTED);
        e.tcp_flags = node_monitor_common::TCP_SYN | node_monitor_common::TCP_ACK;
        t.handle(e, 5 * MS, &Names, &clock, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].record_type, record::RecordType::Unseen);
        assert_eq!(out[0].answer, Some(Answer::Accepted));
        assert_eq!(out[0].src_port, 7);
        assert_eq!(t.pending(), 0, "nothing is held for an answer");
        assert_eq!(t.stats.late_answers, 0, "not a late answer");
    }

    #[test]
    fn late_answers_and_samples() {
        let mut t = Tracker::new(1000);
        let clock = Clock::now();
        let mut out = Vec::new();
        t.handle(
            ev(EVENT_ANSWER, 9, 1, ANSWER_ACCEPTED),
            1,
            &Names,
            &clock,
            &mut out,
        );
        assert_eq!(t.stats.late_answers, 1);
        // An answer to an attempt this tracker never reported (its event was rate limited,
        // or it came before a restart) is a flagged record with that answer, correcting
        // nothing, when it is an acceptance; a refusal is only counted.
        t.handle(
            ev(EVENT_ANSWER, 8, 1, ANSWER_REFUSED),
            1,
            &Names,
            &clock,
            &mut out,
        );
        assert_eq!(t.stats.late_answers, 2);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].record_type, record::RecordType::Flagged);
        assert_eq!(out[0].answer, Some(Answer::Accepted));
        assert_eq!(out[0].answer_corrects, None);
        t.handle(ev(EVENT_SAMPLED, 3, 1, 0), 1, &Names, &clock, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].answer, None);
    }

    #[test]
    fn late_answer_corrects_the_no_answer_report() {
        // Issue 15: the attempt timed out (reported no_answer), then the node accepted it.
        let mut t = Tracker::new(1000);
        let clock = Clock::now();
        let mut out = Vec::new();
        t.handle(
            ev(EVENT_FLAGGED, 49000, 10 * MS, 0),
            10 * MS,
            &Names,
            &clock,
            &mut out,
        );
        t.expire(1010 * MS, |_| None, &Names, &clock, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].answer, Some(Answer::NoAnswer));
        let mut late = ev(EVENT_ANSWER, 49000, 2500 * MS, ANSWER_ACCEPTED);
        late.verdict = node_monitor_common::VERDICT_DENIED;
        late.tcp_flags = node_monitor_common::TCP_SYN | node_monitor_common::TCP_ACK;
        t.handle(late, 2500 * MS, &Names, &clock, &mut out);
        assert_eq!(out.len(), 2, "the late answer is a record of its own");
        let r = &out[1];
        assert_eq!(r.record_type, record::RecordType::Flagged);
        assert_eq!((r.src_port, r.dst_port), (49000, 10250));
        assert_eq!(r.answer, Some(Answer::Accepted));
        assert_eq!(r.answer_corrects, Some(Answer::NoAnswer));
        assert_eq!(
            r.action,
            record::Action::WouldDrop,
            "the attempt went through"
        );
        assert_eq!(r.tcp_flags, None, "not the opener's flags");
        assert_eq!(r.ktime_ns, 2500 * MS);
        assert_eq!(t.stats.late_answers, 1);
        // A second late answer for the same attempt corrects nothing more.
        t.handle(
            ev(EVENT_ANSWER, 49000, 2600 * MS, ANSWER_ACCEPTED),
            2600 * MS,
            &Names,
            &clock,
            &mut out,
        );
        assert_eq!(out[2].answer_corrects, None);
        // Superseded attempts are remembered too, and the memory is bounded.
        t.set_max_pending(2);
        for port in 1..=4u16 {
            for ts in [1, 2] {
                t.handle(
                    ev(EVENT_FLAGGED, port, ts * MS, 0),
                    3000 * MS,
                    &Names,
                    &clock,
                    &mut out,
                );
            }
        }
        assert!(t.unanswered.len() <= 3, "{}", t.unanswered.len());
        t.handle(
            ev(EVENT_ANSWER, 4, 3001 * MS, ANSWER_ACCEPTED),
            3001 * MS,
            &Names,
            &clock,
            &mut out,
        );
        // Port 4's second attempt is still pending: the answer resolves it.
        assert_eq!(out.last().map(|r| r.answer_corrects), Some(None));
        assert_eq!(out.last().map(|r| r.ktime_ns), Some(2 * MS));
    }

    #[test]
    fn pending_table_is_bounded() {
        let mut t = Tracker::new(60_000);
        t.set_max_pending(3);
        let clock = Clock::now();
        let mut out = Vec::new();
        for port in 1..=5u16 {
            t.handle(
                ev(EVENT_FLAGGED, port, u64::from(port), 0),
                1,
                &Names,
                &clock,
                &mut out,
            );
        }
        t.expire(2, |_| None, &Names, &clock, &mut out);
        assert_eq!(t.pending(), 3);
        assert_eq!(t.stats.resolved_early, 2);
        // The two oldest went first.
        assert_eq!(
            out.iter().map(|r| r.src_port).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    #[test]
    fn flush_reports_everything_in_time_order() {
        let mut t = Tracker::new(1000);
        let clock = Clock::now();
        let mut out = Vec::new();
        t.handle(ev(EVENT_FLAGGED, 2, 20, 0), 20, &Names, &clock, &mut out);
        t.handle(ev(EVENT_FLAGGED, 1, 10, 0), 20, &Names, &clock, &mut out);
        t.flush(|_| None, &Names, &clock, &mut out);
        assert_eq!(
            out.iter().map(|r| r.src_port).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(t.pending(), 0);
    }
}
