//! Dedup: key (rule id, source ip, group, accepted). The first occurrence alerts at once
//! (`suppressed` 0); repeats within `dedup_window` of the first are counted; when the window
//! ends (seen by [`Dedup::close_due`], or by the next occurrence) a series with repeats gets
//! one follow-up alert carrying the last repeat, `suppressed = repeats`, the repeats by answer
//! (connection alerts) and `follow_up_of = first id`. An accepted connection is never folded
//! into a series of refused or unanswered ones: the first accepted connection of a source
//! alerts at once, whatever came before it. The
//! next occurrence starts a new series. At most `max_series` series: when full, the oldest is
//! closed early, its follow-up emitted, never dropped silently.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use ahash::HashMap;

use super::{
    model::{Alert, AlertKind, AnswerCounts, Rule},
    window::within,
};
use crate::record::Answer;

/// (rule id, source, group, accepted): the group is the record's shared name (no copy per
/// record); accepted connections are a series of their own.
type SeriesKey = (&'static str, IpAddr, Arc<str>, bool);

struct Series {
    /// Kept binary; written out only for the follow-up (most series have none).
    first_id: uuid::Uuid,
    started: Instant,
    seq: u64,
    rule: Rule,
    repeats: u64,
    /// The last repeat's kind, boxed: most series never repeat, and an inline `AlertKind`
    /// would make every slot of the table as large as a whole record.
    last: Option<Box<AlertKind>>,
    /// The repeats by answer (connection alerts), None for other kinds.
    by_answer: Option<AnswerCounts>,
}

impl Series {
    /// A series whose first alert, `first_id`, was just raised.
    fn new(first_id: uuid::Uuid, started: Instant, seq: u64, rule: Rule) -> Series {
        Series {
            first_id,
            started,
            seq,
            rule,
            repeats: 0,
            last: None,
            by_answer: None,
        }
    }
}

/// One occurrence to alert on or fold: what [`Dedup::detect`] takes.
pub(crate) struct Occurrence<'a> {
    pub rule: Rule,
    pub source: IpAddr,
    pub group: &'a Arc<str>,
    pub kind: AlertKind,
    /// The alert's wall-clock time if it is the first of its series.
    pub time: SystemTime,
    /// For connection alerts: the connection's answer (`Some(None)` when it has none).
    pub answer: Option<Option<Answer>>,
}

/// The open dedup series.
pub(crate) struct Dedup {
    max_series: usize,
    seq: u64,
    series: HashMap<SeriesKey, Series>,
    /// (start, seq) → key: oldest series first.
    order: BTreeMap<(Instant, u64), SeriesKey>,
    /// Occurrences folded into a series instead of alerting.
    pub(crate) suppressed_total: u64,
    /// The same, by rule id.
    pub(crate) suppressed_by_rule: BTreeMap<&'static str, u64>,
    /// Series closed early because the table was full.
    pub(crate) evictions: u64,
}

pub(crate) fn new_id() -> String {
    id_text(uuid::Uuid::new_v4())
}

/// An alert id in text form (lowercase, hyphenated), encoded without the `fmt` machinery.
fn id_text(id: uuid::Uuid) -> String {
    id.hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .to_owned()
}

/// The first alert of a dedup series.
fn first_alert(id: String, time: SystemTime, rule: Rule, kind: AlertKind) -> Alert {
    Alert {
        id,
        time,
        rule,
        kind,
        suppressed: 0,
        follow_up_of: None,
        repeats_by_answer: None,
        losses_since_previous: BTreeMap::new(),
    }
}

/// Where [`Dedup::detect`] put an occurrence.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Detected {
    /// The series: the id of its first alert.
    pub(crate) series: uuid::Uuid,
    /// True when the occurrence raised that first alert, false when it was folded.
    pub(crate) new_alert: bool,
}

impl Dedup {
    /// A table of at most `max_series` series (at least 1).
    pub(crate) fn new(max_series: usize) -> Dedup {
        Dedup {
            max_series: max_series.max(1),
            seq: 0,
            // Grown as series come, never allocated at the cap: in a table allocated at its
            // cap each new key lands on a random page, which faults the whole table into
            // resident memory over hours of light traffic (see `answers::Tracker::new`).
            series: HashMap::with_hasher(ahash::RandomState::new()),
            order: BTreeMap::new(),
            suppressed_total: 0,
            suppressed_by_rule: BTreeMap::new(),
            evictions: 0,
        }
    }

    /// The cap.
    pub(crate) fn capacity(&self) -> usize {
        self.max_series
    }

    /// Whether an occurrence of this key at `now` would fold into an open series (no alert
    /// of its own).
    pub(crate) fn folds(
        &self,
        rule: &'static str,
        source: IpAddr,
        group: &Arc<str>,
        answer: Option<Answer>,
        window: Duration,
        now: Instant,
    ) -> bool {
        let key: SeriesKey = (
            rule,
            source,
            group.clone(),
            answer == Some(Answer::Accepted),
        );
        self.series
            .get(&key)
            .is_some_and(|s| within(s.started, window, now))
    }

    /// Open series now.
    pub(crate) fn len(&self) -> usize {
        self.series.len()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// One occurrence: alert (pushed onto `out`) or fold (counted). Says which series it went
    /// into and whether it raised an alert of its own (the first of a series).
    pub(crate) fn detect(
        &mut self,
        o: Occurrence<'_>,
        window: Duration,
        now: Instant,
        out: &mut Vec<Alert>,
    ) -> Detected {
        let accepted = o.answer == Some(Some(Answer::Accepted));
        let key: SeriesKey = (o.rule.id, o.source, o.group.clone(), accepted);
        if let Some(s) = self.series.get_mut(&key) {
            if within(s.started, window, now) {
                s.repeats += 1;
                // The previous repeat's box is reused: a repeat allocates nothing.
                match &mut s.last {
                    Some(last) => **last = o.kind,
                    None => s.last = Some(Box::new(o.kind)),
                }
                if let Some(answer) = o.answer {
                    s.by_answer.get_or_insert_default().add(answer);
                }
                self.suppressed_total += 1;
                *self.suppressed_by_rule.entry(key.0).or_default() += 1;
                return Detected {
                    series: s.first_id,
                    new_alert: false,
                };
            }
            // The series' window ended before the tick saw it: close it, and start the next
            // series in its place (the table entry and its key are reused).
            let id = uuid::Uuid::new_v4();
            self.seq += 1;
            let seq = self.seq;
            let old = std::mem::replace(s, Series::new(id, now, seq, o.rule));
            self.order.remove(&(old.started, old.seq));
            self.order.insert((now, seq), key);
            close_series(old, out);
            out.push(first_alert(id_text(id), o.time, o.rule, o.kind));
            return Detected {
                series: id,
                new_alert: true,
            };
        }
        while self.series.len() >= self.max_series && !self.order.is_empty() {
            self.evictions += 1;
            self.close_oldest(out);
        }
        let id = uuid::Uuid::new_v4();
        out.push(first_alert(id_text(id), o.time, o.rule, o.kind));
        let seq = self.next_seq();
        self.order.insert((now, seq), key.clone());
        self.series.insert(key, Series::new(id, now, seq, o.rule));
        Detected {
            series: id,
            new_alert: true,
        }
    }

    /// Closes every series whose window ended by `now` (their follow-ups onto `out`).
    pub(crate) fn close_due(&mut self, window: Duration, now: Instant, out: &mut Vec<Alert>) {
        while let Some((&(start, _), _)) = self.order.first_key_value() {
            if within(start, window, now) {
                break;
            }
            self.close_oldest(out);
        }
    }

    /// Closes every series (shutdown).
    pub(crate) fn close_all(&mut self, out: &mut Vec<Alert>) {
        while !self.order.is_empty() {
            self.close_oldest(out);
        }
    }

    fn close_oldest(&mut self, out: &mut Vec<Alert>) {
        if let Some((_, key)) = self.order.pop_first()
            && let Some(s) = self.series.remove(&key)
        {
            close_series(s, out);
        }
    }
}

/// A closed series with repeats → its follow-up alert.
fn close_series(s: Series, out: &mut Vec<Alert>) {
    if s.repeats == 0 {
        return;
    }
    let Some(kind) = s.last.map(|k| *k) else {
        return;
    };
    out.push(Alert {
        id: new_id(),
        time: SystemTime::now(),
        rule: s.rule,
        kind,
        suppressed: s.repeats,
        follow_up_of: Some(id_text(s.first_id)),
        repeats_by_answer: s.by_answer,
        losses_since_previous: BTreeMap::new(),
    });
}
