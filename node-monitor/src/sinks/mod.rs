//! Output sinks: where rendered alerts (and, per sink, sampled flow records) go.
//!
//! Every sink runs as its own tokio task behind its own bounded queue. [`Sinks::send`] never
//! blocks and never waits on a sink: it `try_send`s to each queue, and a full queue is a
//! counted drop for that sink only (reason `queue_full`). A slow or dead sink therefore
//! costs its own records, never the pipeline's time or another sink's records.
//!
//! Accounting: for every sink, each record accepted by its queue ends as exactly one of
//! `sent` or one `dropped` reason, so `sent + Σ dropped` equals the records offered to that
//! sink once it is shut down. Reasons:
//!
//! | reason | sinks | meaning |
//! |---|---|---|
//! | `queue_full` | all | the sink's queue was full when the record was offered |
//! | `write_error` | stdout, file | the write failed (the file is reopened for the next record) |
//! | `send_error` | syslog | the datagram could not be sent (UDP, unix) |
//! | `http_status` | http | a 4xx answer other than 408/429 (not retried) |
//! | `retries_exhausted` | http | still failing after `max_retries` retries |
//! | `shutdown` | all | still queued or in flight when the shutdown deadline passed |
//! | `closed` | all | the sink's task had stopped (it panicked) |
//!
//! Formats are not this module's business: the daemon passes a [`Renderer`]
//! (`crate::render::render` bound to its observer).
mod file;
mod http;
mod stdout;
mod syslog;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    config::{Format, SinkKind, SinkSpec},
    detect::OutputItem,
};

pub use syslog::{SYSLOG_APP_NAME, SYSLOG_FACILITY, syslog_severity};

/// Appends one output item as one record (an ECS/OCSF JSON object or a CEF line), without a
/// trailing newline, to a buffer the sink reuses. What it appends must be UTF-8.
pub type Renderer = Arc<dyn Fn(&OutputItem, Format, &mut Vec<u8>) + Send + Sync>;

/// How long [`Sinks::reconfigure`] lets a removed or changed sink drain its queue.
pub const RECONFIGURE_DRAIN: Duration = Duration::from_secs(5);

/// Most records a worker takes from its queue at once (one write, one syscall batch).
const MAX_BATCH: usize = 512;

/// Why a sink could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The settings of a sink are unusable.
    #[error("sink {name}: {message}")]
    Invalid { name: String, message: String },
    /// Opening what the sink writes to failed.
    #[error("sink {name}: {context}: {source}")]
    Io {
        name: String,
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Two sinks share a name (names label metrics and must be unique).
    #[error("sink name {0:?} is used more than once")]
    DuplicateName(String),
    /// Sinks spawn tokio tasks: they must be started inside a tokio runtime.
    #[error("sinks must be started inside a tokio runtime")]
    NoRuntime,
}

impl SinkError {
    fn invalid(name: &str, message: impl Into<String>) -> SinkError {
        SinkError::Invalid {
            name: name.to_owned(),
            message: message.into(),
        }
    }
    fn io(name: &str, context: impl Into<String>, source: std::io::Error) -> SinkError {
        SinkError::Io {
            name: name.to_owned(),
            context: context.into(),
            source,
        }
    }
}

/// Why records were dropped by a sink (the `reason` label of the drop counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    QueueFull,
    WriteError,
    SendError,
    HttpStatus,
    RetriesExhausted,
    Shutdown,
    Closed,
}

impl DropReason {
    pub const ALL: [DropReason; 7] = [
        DropReason::QueueFull,
        DropReason::WriteError,
        DropReason::SendError,
        DropReason::HttpStatus,
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
            SinkKind::Http { .. } => &[QueueFull, HttpStatus, RetriesExhausted, Shutdown],
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
    sent: AtomicU64,
    retries: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    /// Records in the queue (incremented before `try_send`, so never below what is queued).
    queued: AtomicU64,
    /// Records the worker took from the queue and has not accounted for yet.
    in_flight: AtomicU64,
}

impl Counters {
    fn drop_offered(&self, reason: DropReason, n: u64) {
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
    fn settle_queued(&self) {
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(1))
            });
    }
    fn settle(&self, n: u64) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                Some(f.saturating_sub(n))
            });
    }
}

/// What a worker needs besides its queue and its own connection.
pub(crate) struct Ctx {
    pub name: String,
    pub format: Format,
    pub render: Renderer,
    pub counters: Arc<Counters>,
}

impl Ctx {
    /// Appends the record of `item` to `out`.
    pub(crate) fn render_into(&self, item: &OutputItem, out: &mut Vec<u8>) {
        (self.render)(item, self.format, out)
    }
    /// The record of `item` as text.
    pub(crate) fn render(&self, item: &OutputItem) -> String {
        let mut out = Vec::with_capacity(2048);
        self.render_into(item, &mut out);
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// Waits for at least one record, then takes what else is already queued (up to `max`).
/// `None` once the queue is closed and empty.
pub(crate) async fn recv_batch(
    rx: &mut mpsc::Receiver<Arc<OutputItem>>,
    counters: &Counters,
    max: usize,
) -> Option<Vec<Arc<OutputItem>>> {
    let first = rx.recv().await?;
    let mut batch = Vec::with_capacity(max.min(64));
    batch.push(first);
    while batch.len() < max {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    counters.taken(batch.len() as u64);
    Some(batch)
}

/// A sink whose resources are open, not yet running.
enum Prepared {
    Stdout,
    File(file::FileWriter),
    Syslog(syslog::SyslogSender),
    Http(http::HttpSender),
}

fn prepare(spec: &SinkSpec) -> Result<Prepared, SinkError> {
    if spec.queue == 0 {
        return Err(SinkError::invalid(
            &spec.name,
            "queue must hold at least 1 record",
        ));
    }
    Ok(match &spec.kind {
        SinkKind::Stdout => Prepared::Stdout,
        SinkKind::File {
            path,
            max_size_bytes,
            keep,
        } => Prepared::File(file::FileWriter::open(
            &spec.name,
            path,
            *max_size_bytes,
            *keep,
        )?),
        SinkKind::Syslog { transport } => {
            Prepared::Syslog(syslog::SyslogSender::new(&spec.name, transport)?)
        }
        SinkKind::Http { .. } => Prepared::Http(http::HttpSender::new(spec)?),
    })
}

struct SinkHandle {
    spec: SinkSpec,
    tx: mpsc::Sender<Arc<OutputItem>>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl SinkHandle {
    fn spawn(spec: SinkSpec, prepared: Prepared, render: Renderer) -> SinkHandle {
        let (tx, rx) = mpsc::channel(spec.queue);
        let counters = Arc::new(Counters::default());
        let ctx = Ctx {
            name: spec.name.clone(),
            format: spec.format,
            render,
            counters: counters.clone(),
        };
        let task = match prepared {
            Prepared::Stdout => tokio::spawn(stdout::run(tokio::io::stdout(), rx, ctx)),
            Prepared::File(w) => tokio::spawn(w.run(rx, ctx)),
            Prepared::Syslog(s) => tokio::spawn(s.run(rx, ctx)),
            Prepared::Http(h) => tokio::spawn(h.run(rx, ctx)),
        };
        SinkHandle {
            spec,
            tx,
            counters,
            task,
        }
    }

    fn stats(&self) -> SinkStats {
        stats_of(&self.spec, &self.counters)
    }

    /// Closes the queue, lets the worker drain it until `deadline`, then aborts it and counts
    /// what was left as `shutdown` drops.
    async fn shutdown(self, deadline: tokio::time::Instant) -> SinkStats {
        let SinkHandle {
            spec,
            tx,
            counters,
            mut task,
        } = self;
        drop(tx);
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
            let left = counters.in_flight.swap(0, Ordering::Relaxed)
                + counters.queued.swap(0, Ordering::Relaxed);
            if left > 0 {
                tracing::warn!(
                    sink = %spec.name,
                    records = left,
                    "sink did not drain before the deadline; records dropped"
                );
            }
            counters.drop_offered(DropReason::Shutdown, left);
        } else {
            // A worker that ended (drained, or panicked) leaves nothing behind it.
            let left = counters.in_flight.swap(0, Ordering::Relaxed)
                + counters.queued.swap(0, Ordering::Relaxed);
            counters.drop_offered(DropReason::Closed, left);
        }
        stats_of(&spec, &counters)
    }
}

fn stats_of(spec: &SinkSpec, c: &Counters) -> SinkStats {
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

fn check_unique_names(specs: &[SinkSpec]) -> Result<(), SinkError> {
    let mut seen = BTreeSet::new();
    for s in specs {
        if !seen.insert(s.name.as_str()) {
            return Err(SinkError::DuplicateName(s.name.clone()));
        }
    }
    Ok(())
}

/// The running sinks.
pub struct Sinks {
    sinks: Vec<SinkHandle>,
    render: Renderer,
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sinks")
            .field(
                "sinks",
                &self.sinks.iter().map(|s| &s.spec.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Sinks {
    /// Starts one tokio task per sink, each with its own bounded queue (`spec.queue`).
    ///
    /// Opens what can fail early, with errors naming the sink: the file (its directory is
    /// created), the syslog socket, the HTTP URL and headers. A syslog peer that is not up
    /// yet is not an error (TCP reconnects with backoff; datagrams count `send_error`).
    /// Must be called inside a tokio runtime.
    pub fn start(specs: &[SinkSpec], render: Renderer) -> Result<Sinks, SinkError> {
        tokio::runtime::Handle::try_current().map_err(|_| SinkError::NoRuntime)?;
        check_unique_names(specs)?;
        let prepared = specs.iter().map(prepare).collect::<Result<Vec<_>, _>>()?;
        let sinks = specs
            .iter()
            .zip(prepared)
            .map(|(spec, p)| SinkHandle::spawn(spec.clone(), p, render.clone()))
            .collect();
        Ok(Sinks { sinks, render })
    }

    /// Offers `item` to every sink that takes it (flow records only go to sinks with
    /// `flows: true`). Never blocks and never waits on a sink: a full queue is a counted drop
    /// (`queue_full`) for that sink.
    pub fn send(&self, item: Arc<OutputItem>) {
        let is_flow = matches!(*item, OutputItem::Flow(_));
        for s in &self.sinks {
            if is_flow && !s.spec.flows {
                continue;
            }
            s.counters.queued.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = s.tx.try_send(item.clone()) {
                s.counters.settle_queued();
                let reason = match e {
                    mpsc::error::TrySendError::Full(_) => DropReason::QueueFull,
                    mpsc::error::TrySendError::Closed(_) => DropReason::Closed,
                };
                s.counters.drop_offered(reason, 1);
            }
        }
    }

    /// Counters of every sink, in configuration order.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.sinks.iter().map(SinkHandle::stats).collect()
    }

    /// The names of the running sinks, in configuration order.
    pub fn names(&self) -> Vec<String> {
        self.sinks.iter().map(|s| s.spec.name.clone()).collect()
    }

    /// Graceful stop: stops accepting, lets every sink flush its queue until `deadline` has
    /// passed (all sinks drain at once), then returns the final counters. Records still
    /// queued or in flight at the deadline are counted as `shutdown` drops.
    pub async fn shutdown(self, deadline: Duration) -> Vec<SinkStats> {
        let at = tokio::time::Instant::now() + deadline;
        let stops: Vec<_> = self
            .sinks
            .into_iter()
            .map(|s| tokio::spawn(s.shutdown(at)))
            .collect();
        let mut out = Vec::with_capacity(stops.len());
        for stop in stops {
            if let Ok(stats) = stop.await {
                out.push(stats);
            }
        }
        out
    }

    /// Replaces the set of sinks. Sinks whose spec (name included) is unchanged keep running
    /// and keep their counters and queues; removed or changed ones are shut down (draining
    /// for at most [`RECONFIGURE_DRAIN`]); new or changed ones start with fresh counters.
    /// On error nothing changes: the new set is validated and opened before anything stops.
    pub async fn reconfigure(&mut self, specs: &[SinkSpec]) -> Result<(), SinkError> {
        check_unique_names(specs)?;
        let mut fresh = BTreeMap::new();
        for spec in specs {
            if !self.sinks.iter().any(|h| h.spec == *spec) {
                fresh.insert(spec.name.clone(), prepare(spec)?);
            }
        }
        let (mut kept, removed): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sinks)
            .into_iter()
            .partition(|h| specs.contains(&h.spec));
        let at = tokio::time::Instant::now() + RECONFIGURE_DRAIN;
        let stops: Vec<_> = removed
            .into_iter()
            .map(|h| tokio::spawn(h.shutdown(at)))
            .collect();
        for stop in stops {
            if let Ok(stats) = stop.await {
                tracing::info!(
                    sink = %stats.name,
                    sent = stats.sent,
                    dropped = stats.dropped_total(),
                    "sink removed"
                );
            }
        }
        for spec in specs {
            if let Some(pos) = kept.iter().position(|h| h.spec == *spec) {
                self.sinks.push(kept.swap_remove(pos));
            } else if let Some(p) = fresh.remove(&spec.name) {
                self.sinks
                    .push(SinkHandle::spawn(spec.clone(), p, self.render.clone()));
            }
        }
        Ok(())
    }
}

/// Exponential backoff: `base` doubling per attempt (1-based), capped at `cap`, with "equal
/// jitter" (half fixed, half random) so that many sensors do not retry in step.
pub(crate) fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(cap);
    let half = exp / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let jitter = if nanos == 0 { 0 } else { random_u64() % nanos };
    half + Duration::from_nanos(jitter)
}

/// A random number good enough for jitter (std's randomly keyed hasher; no extra crate).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos().into())
            .unwrap_or(0),
    );
    h.finish()
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
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let base = Duration::from_millis(200);
        let cap = Duration::from_secs(10);
        for attempt in 1..=12u32 {
            let full = base.saturating_mul(1 << (attempt - 1)).min(cap);
            for _ in 0..50 {
                let d = backoff(attempt, base, cap);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d:?} vs {full:?}"
                );
            }
        }
        assert!(backoff(u32::MAX, base, cap) <= cap);
        assert_eq!(backoff(1, Duration::ZERO, cap), Duration::ZERO);
    }

    #[test]
    fn every_reason_has_a_distinct_label() {
        let labels: BTreeSet<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), DropReason::ALL.len());
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn duplicate_names_are_refused() {
        let spec = SinkSpec {
            name: "a".into(),
            kind: SinkKind::Stdout,
            format: Format::Ecs,
            queue: 1,
            flows: false,
        };
        let err = check_unique_names(&[spec.clone(), spec]).unwrap_err();
        assert_eq!(err.to_string(), "sink name \"a\" is used more than once");
    }

    #[test]
    fn start_outside_a_runtime_is_an_error() {
        let render: Renderer = Arc::new(|_, _, _| {});
        assert!(matches!(
            Sinks::start(&[], render),
            Err(SinkError::NoRuntime)
        ));
    }
}
