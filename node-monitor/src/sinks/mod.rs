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
//! | `redirect` | http | a 3xx answer: redirects are never followed (not retried) |
//! | `retries_exhausted` | http | still failing after `max_retries` retries |
//! | `shutdown` | all | still queued or in flight when the shutdown deadline passed |
//! | `closed` | all | the sink's task had stopped (it panicked) |
//!
//! Formats are not this module's business: the daemon passes a [`Renderer`]
//! (`crate::render::render` bound to its observer).
mod accounting;
mod file;
mod http;
mod stdout;
mod syslog;
mod worker;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

pub use accounting::{DropReason, SinkStats, kind_name};
pub use syslog::{SYSLOG_APP_NAME, SYSLOG_FACILITY, syslog_severity};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use worker::{SinkHandle, prepare};

use crate::{
    config::{Format, SinkSpec},
    detect::OutputItem,
};

/// Appends one output item as one record (an ECS/OCSF JSON object or a CEF line), without a
/// trailing newline, to a buffer the sink reuses. What it appends must be UTF-8.
pub type Renderer = Arc<dyn Fn(&OutputItem, Format, &mut Vec<u8>) + Send + Sync>;

/// How long [`Sinks::reconfigure`] lets a removed or changed sink drain its queue.
pub const RECONFIGURE_DRAIN: Duration = Duration::from_secs(5);

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
    /// Sinks removed or changed by [`Sinks::reconfigure`], still draining on their own tasks.
    draining: Vec<(String, JoinHandle<SinkStats>)>,
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
        Ok(Sinks {
            sinks,
            draining: Vec::new(),
            render,
        })
    }

    /// Offers `item` to every sink that takes it (flow records only go to sinks with
    /// `flows: true`). Never blocks and never waits on a sink: a full queue is a counted drop
    /// (`queue_full`) for that sink.
    #[expect(
        clippy::needless_pass_by_value,
        reason = "the caller hands its item over; each sink's queue takes its own reference"
    )]
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
    /// queued or in flight at the deadline are counted as `shutdown` drops. Sinks that a
    /// reconfigure removed and that are still draining are waited for, until the same
    /// deadline at most (their own drain deadline is shorter or equal).
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
        for (name, mut task) in self.draining {
            if tokio::time::timeout_at(at, &mut task).await.is_err() {
                task.abort();
                tracing::warn!(sink = %name, "a removed sink was still draining at shutdown");
            }
        }
        out
    }

    /// Replaces the set of sinks. Sinks whose spec (name included) is unchanged keep running
    /// and keep their counters and queues; removed or changed ones are shut down (draining
    /// for at most [`RECONFIGURE_DRAIN`]) on their own tasks, so that a reload never waits on
    /// a slow sink; new or changed ones start with fresh counters. A changed sink's new
    /// worker starts once its old one has finished (records wait in its queue meanwhile), so
    /// the two never write to the same place at once and records keep their order.
    /// On error nothing changes: the new set is validated and opened before anything stops.
    pub async fn reconfigure(&mut self, specs: &[SinkSpec]) -> Result<(), SinkError> {
        check_unique_names(specs)?;
        let mut fresh = BTreeMap::new();
        for spec in specs {
            if !self.sinks.iter().any(|h| h.spec == *spec) {
                fresh.insert(spec.name.clone(), prepare(spec)?);
            }
        }
        self.draining.retain(|(_, task)| !task.is_finished());
        let (mut kept, removed): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sinks)
            .into_iter()
            .partition(|h| specs.contains(&h.spec));
        let at = tokio::time::Instant::now() + RECONFIGURE_DRAIN;
        // The drain of a removed sink, by name; a changed sink's new worker waits on it.
        let mut old: BTreeMap<String, watch::Receiver<bool>> = BTreeMap::new();
        for h in removed {
            let name = h.spec.name.clone();
            let (done_tx, done_rx) = watch::channel(false);
            old.insert(name.clone(), done_rx);
            let task = tokio::spawn(async move {
                let stats = h.shutdown(at).await;
                tracing::info!(
                    sink = %stats.name,
                    sent = stats.sent,
                    dropped = stats.dropped_total(),
                    "sink removed"
                );
                let _ = done_tx.send(true);
                stats
            });
            self.draining.push((name, task));
        }
        for spec in specs {
            if let Some(pos) = kept.iter().position(|h| h.spec == *spec) {
                self.sinks.push(kept.swap_remove(pos));
            } else if let Some(p) = fresh.remove(&spec.name) {
                self.sinks.push(SinkHandle::spawn_after(
                    spec.clone(),
                    p,
                    self.render.clone(),
                    old.remove(&spec.name),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SinkKind;

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
