//! Per-sink accounting: every record offered to a sink ends as `sent` or as one counted drop
//! reason; the counters `send`, the worker and `stats` share; and failure logging on the
//! transition between healthy and failing.
use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use crate::config::{Format, SinkKind, SinkSpec};

/// Why records were dropped by a sink (the `reason` label of the drop counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    QueueFull,
    WriteError,
    SendError,
    HttpStatus,
    Redirect,
    RetriesExhausted,
    Shutdown,
    Closed,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        DropReason::QueueFull,
        DropReason::WriteError,
        DropReason::SendError,
        DropReason::HttpStatus,
        DropReason::Redirect,
        DropReason::RetriesExhausted,
        DropReason::Shutdown,
        DropReason::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::WriteError => "write_error",
            DropReason::SendError => "send_error",
            DropReason::HttpStatus => "http_status",
            DropReason::Redirect => "redirect",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::Shutdown => "shutdown",
            DropReason::Closed => "closed",
        }
    }

    /// The reasons a sink of this kind can report; they are always present in
    /// [`SinkStats::dropped`] (at 0 until they happen), so metrics series exist from the start.
    fn for_kind(kind: &SinkKind) -> &'static [DropReason] {
        use DropReason::*;
        match kind {
            SinkKind::Stdout | SinkKind::File { .. } => &[QueueFull, WriteError, Shutdown],
            SinkKind::Syslog { .. } => &[QueueFull, SendError, Shutdown],
            SinkKind::Http { .. } => &[QueueFull, HttpStatus, Redirect, RetriesExhausted, Shutdown],
        }
    }
}

/// Counters of one sink, as of the call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SinkStats {
    pub name: String,
    /// `stdout`, `file`, `syslog` or `http`.
    pub kind: &'static str,
    pub format: Format,
    /// Records delivered (written, sent, or acknowledged with a 2xx).
    pub sent: u64,
    /// Records dropped, by reason (see the module docs).
    pub dropped: BTreeMap<String, u64>,
    /// Records waiting in the sink's queue.
    pub queue_len: usize,
    /// Retries: HTTP POSTs retried, syslog TCP reconnect attempts.
    pub retries: u64,
}

impl SinkStats {
    /// All drops, whatever the reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}

/// `stdout`, `file`, `syslog` or `http`.
pub fn kind_name(kind: &SinkKind) -> &'static str {
    match kind {
        SinkKind::Stdout => "stdout",
        SinkKind::File { .. } => "file",
        SinkKind::Syslog { .. } => "syslog",
        SinkKind::Http { .. } => "http",
    }
}

/// The live counters of one sink, shared by `send`, the worker and `stats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(super) sent: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) dropped: [AtomicU64; DropReason::ALL.len()],
    /// Records in the queue (incremented before `try_send`, so never below what is queued).
    pub(super) queued: AtomicU64,
    /// Records the worker took from the queue and has not accounted for yet.
    pub(super) in_flight: AtomicU64,
}

impl Counters {
    pub(super) fn drop_offered(&self, reason: DropReason, n: u64) {
        self.dropped[reason as usize].fetch_add(n, Ordering::Relaxed);
    }
    /// The worker took `n` records from the queue.
    pub(crate) fn taken(&self, n: u64) {
        self.in_flight.fetch_add(n, Ordering::Relaxed);
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(n))
            });
    }
    /// `n` in-flight records were delivered.
    pub(crate) fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
        self.settle(n);
    }
    /// `n` in-flight records were dropped.
    pub(crate) fn dropped(&self, reason: DropReason, n: u64) {
        self.dropped[reason as usize].fetch_add(n, Ordering::Relaxed);
        self.settle(n);
    }
    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    /// A record counted as queued did not make it into the queue.
    pub(super) fn settle_queued(&self) {
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(1))
            });
    }
    pub(super) fn settle(&self, n: u64) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                Some(f.saturating_sub(n))
            });
    }
}

pub(super) fn stats_of(spec: &SinkSpec, c: &Counters) -> SinkStats {
    let mut dropped = BTreeMap::new();
    for r in DropReason::for_kind(&spec.kind) {
        dropped.insert(r.as_str().to_owned(), 0);
    }
    for r in DropReason::ALL {
        let n = c.dropped[r as usize].load(Ordering::Relaxed);
        if n > 0 {
            dropped.insert(r.as_str().to_owned(), n);
        }
    }
    SinkStats {
        name: spec.name.clone(),
        kind: kind_name(&spec.kind),
        format: spec.format,
        sent: c.sent.load(Ordering::Relaxed),
        dropped,
        queue_len: usize::try_from(c.queued.load(Ordering::Relaxed)).unwrap_or(usize::MAX),
        retries: c.retries.load(Ordering::Relaxed),
    }
}

/// Logs a sink's failures on the transition from healthy to failing (and back), not per
/// record: a dead sink must not flood the log.
#[derive(Debug, Default)]
pub(crate) struct Health {
    failing: bool,
    failures: u64,
}

impl Health {
    pub(crate) fn fail(&mut self, sink: &str, what: &dyn std::fmt::Display) {
        self.failures += 1;
        if !self.failing {
            self.failing = true;
            tracing::warn!(
                sink,
                error = %what,
                "sink failing; records are dropped and counted until it recovers"
            );
        }
    }
    pub(crate) fn ok(&mut self, sink: &str) {
        if self.failing {
            self.failing = false;
            tracing::info!(sink, failures = self.failures, "sink recovered");
            self.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_reason_has_a_distinct_label() {
        let labels: BTreeSet<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), DropReason::ALL.len());
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
