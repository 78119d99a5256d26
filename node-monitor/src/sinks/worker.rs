//! A sink's worker: the task that owns its queue and its connection, and what every worker
//! shares (the context, batch reads, retry backoff, shutdown with a deadline).
use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::{
    Renderer, SinkError,
    accounting::{Counters, DropReason, SinkStats, stats_of},
    file, http, stdout, syslog,
};
use crate::{
    config::{Format, SinkKind, SinkSpec},
    detect::OutputItem,
};

/// Most records a worker takes from its queue at once (one write, one syscall batch).
pub(super) const MAX_BATCH: usize = 512;

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
        (self.render)(item, self.format, out);
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
    // Sized once for what is queued now: no regrowth while the batch is taken.
    let mut batch = Vec::with_capacity(max.min(rx.len() + 1));
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
pub(super) enum Prepared {
    Stdout,
    File(file::FileWriter),
    Syslog(syslog::SyslogSender),
    Http(http::HttpSender),
}

pub(super) fn prepare(spec: &SinkSpec) -> Result<Prepared, SinkError> {
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
        SinkKind::Syslog { transport, tls } => {
            Prepared::Syslog(syslog::SyslogSender::new(&spec.name, transport, tls)?)
        }
        SinkKind::Http { .. } => Prepared::Http(http::HttpSender::new(spec)?),
    })
}

pub(super) struct SinkHandle {
    pub(super) spec: SinkSpec,
    pub(super) tx: mpsc::Sender<Arc<OutputItem>>,
    pub(super) counters: Arc<Counters>,
    pub(super) task: JoinHandle<()>,
}

impl SinkHandle {
    pub(super) fn spawn(spec: SinkSpec, prepared: Prepared, render: Renderer) -> SinkHandle {
        SinkHandle::spawn_after(spec, prepared, render, None)
    }

    /// As [`SinkHandle::spawn`]; the worker starts once `after` turns true (or its sender is
    /// gone): a changed sink's old worker has finished.
    pub(super) fn spawn_after(
        spec: SinkSpec,
        prepared: Prepared,
        render: Renderer,
        after: Option<watch::Receiver<bool>>,
    ) -> SinkHandle {
        let (tx, rx) = mpsc::channel(spec.queue);
        let counters = Arc::new(Counters::default());
        let ctx = Ctx {
            name: spec.name.clone(),
            format: spec.format,
            render,
            counters: counters.clone(),
        };
        let task = tokio::spawn(async move {
            if let Some(mut done) = after {
                let _ = done.wait_for(|d| *d).await;
            }
            match prepared {
                Prepared::Stdout => stdout::run(tokio::io::stdout(), rx, ctx).await,
                Prepared::File(w) => w.run(rx, ctx).await,
                Prepared::Syslog(s) => s.run(rx, ctx).await,
                Prepared::Http(h) => h.run(rx, ctx).await,
            }
        });
        SinkHandle {
            spec,
            tx,
            counters,
            task,
        }
    }

    pub(super) fn stats(&self) -> SinkStats {
        stats_of(&self.spec, &self.counters)
    }

    /// Closes the queue, lets the worker drain it until `deadline`, then aborts it and counts
    /// what was left as `shutdown` drops.
    pub(super) async fn shutdown(self, deadline: tokio::time::Instant) -> SinkStats {
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
            .map_or(0, |d| d.subsec_nanos().into()),
    );
    h.finish()
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
}
