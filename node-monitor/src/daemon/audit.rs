//! The periodic posture audit (`audit:` in the config): at start, then every `interval_s`,
//! the checks of `node-monitor audit` run on a blocking thread of their own (with their own
//! small runtime), never on the event loop: the data path and the alert pipeline go on
//! while a kubelet probe waits. A run is bounded by `timeout_s`; one that does not end
//! within it (plus a grace) is counted as failed and the next is scheduled as usual, the
//! stuck thread being left to end on its own (its result, if it ever comes, is dropped).
//! One run at a time.
//!
//! Each completed run sends every finding at or above `min_severity` to the sinks, again on
//! every run (a SIEM keeps the node's current state; a finding that is no longer sent has
//! been fixed), and sets the `node_monitor_audit_*` metrics.
use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use tokio::{
    sync::mpsc,
    time::{Duration, Instant},
};
use tracing::{info, warn};

use super::Daemon;
use crate::{
    config::AuditSettings,
    detect::OutputItem,
    metrics::AuditSnapshot,
    posture::{self, FindingEvent, Report, identity::Identity},
};

/// How long past `timeout_s` a run's thread may take to report before it is given up.
const GRACE: Duration = Duration::from_secs(5);

/// What a run's thread reports.
pub(super) struct Done {
    no: u64,
    result: Result<Report, String>,
    took: Duration,
}

struct Running {
    no: u64,
    give_up_at: Instant,
}

/// The audit's schedule and the metrics of its runs.
pub(super) struct Auditor {
    settings: AuditSettings,
    /// When the next run is due.
    next: Instant,
    running: Option<Running>,
    runs: u64,
    tx: mpsc::Sender<Done>,
    metrics: AuditSnapshot,
}

impl Auditor {
    /// The first run is due now.
    pub(super) fn new(settings: AuditSettings) -> (Auditor, mpsc::Receiver<Done>) {
        let (tx, rx) = mpsc::channel(2);
        (
            Auditor {
                settings,
                next: Instant::now(),
                running: None,
                runs: 0,
                tx,
                metrics: AuditSnapshot::default(),
            },
            rx,
        )
    }

    /// Whether the event loop has anything to wait for: a run due or one to give up on.
    pub(super) fn active(&self) -> bool {
        self.settings.interval.is_some() || self.running.is_some()
    }

    /// When the event loop should call [`Daemon::audit_due`].
    pub(super) fn wake_at(&self) -> Instant {
        self.running.as_ref().map_or(self.next, |r| r.give_up_at)
    }

    /// New settings (a reload): the next run, with them, is due now.
    pub(super) fn set_settings(&mut self, settings: AuditSettings) {
        self.settings = settings;
        self.next = Instant::now();
    }

    fn schedule_next(&mut self, from: Instant) {
        if let Some(i) = self.settings.interval {
            self.next = from + i;
        }
    }
}

impl Daemon {
    /// A run is due, or the running one is past its time.
    pub(super) fn audit_due(&mut self) {
        let now = Instant::now();
        if let Some(r) = &self.audit.running {
            if now >= r.give_up_at {
                let no = r.no;
                self.audit.running = None;
                self.audit_failed(
                    no,
                    &format!(
                        "still running {}s after its timeout; its thread is left to end on its own",
                        GRACE.as_secs()
                    ),
                    self.audit.settings.timeout + GRACE,
                );
            }
            return;
        }
        if self.audit.settings.interval.is_none() || now < self.audit.next {
            return;
        }
        self.audit.runs += 1;
        let no = self.audit.runs;
        let timeout = self.audit.settings.timeout;
        self.audit.running = Some(Running {
            no,
            give_up_at: now + timeout + GRACE,
        });
        self.audit.schedule_next(now);
        let opts = posture::Options {
            kubelet_config: self.audit.settings.kubelet_config.clone(),
            apiserver_manifest: self.audit.settings.apiserver_manifest.clone(),
            config: self.cfg.clone(),
            node_subnets: self.subnets.clone(),
            pin_dir: self.opts.pin_dir.clone(),
            identity: match &self.cluster {
                None => Identity::Unavailable(
                    "the daemon watches no cluster (cluster.enabled: off, or no credentials found)"
                        .to_owned(),
                ),
                Some(c) => Identity::Cluster {
                    snapshot: c.snapshot(),
                    node: c.node().map(str::to_owned),
                },
            },
            ..posture::Options::default()
        };
        let tx = self.audit.tx.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = run_once(&opts, timeout);
            // The event loop may have given up on this run, or stopped: then nobody listens.
            let _ = tx.blocking_send(Done {
                no,
                result,
                took: started.elapsed(),
            });
        });
    }

    /// A run's thread reported.
    pub(super) fn audit_done(&mut self, done: Done) {
        if self.audit.running.as_ref().is_none_or(|r| r.no != done.no) {
            return; // given up on already
        }
        self.audit.running = None;
        match done.result {
            Err(why) => self.audit_failed(done.no, &why, done.took),
            Ok(report) => {
                let m = &mut self.audit.metrics;
                m.runs_completed += 1;
                m.last_run_ok = true;
                m.last_run_unix_s = unix_s(report.time);
                m.last_run_duration_s = done.took.as_secs_f64();
                let skipped: Vec<String> = report
                    .checks
                    .iter()
                    .filter(|c| c.status == "skipped")
                    .map(|c| format!("{}: {}", c.name, c.detail))
                    .collect();
                m.checks_skipped = skipped.len() as u64;
                let mut by: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
                for f in &report.findings {
                    *by.entry((f.id, f.severity.as_str())).or_default() += 1;
                }
                m.findings = by;
                self.metrics.set_audit(m.clone());
                let min = self.audit.settings.min_severity;
                let mut sent = 0;
                for e in FindingEvent::of_report(&report) {
                    if e.finding.severity >= min {
                        sent += 1;
                        self.sinks.send(Arc::new(OutputItem::Finding(e)));
                    }
                }
                info!(
                    run = done.no,
                    findings = report.findings.len(),
                    sent,
                    worst = report.worst().map_or("none", posture::Severity::as_str),
                    took_ms = done.took.as_millis() as u64,
                    ?skipped,
                    "posture audit done"
                );
            }
        }
    }

    fn audit_failed(&mut self, no: u64, why: &str, took: Duration) {
        let m = &mut self.audit.metrics;
        m.runs_failed += 1;
        m.last_run_ok = false;
        m.last_run_unix_s = unix_s(SystemTime::now());
        m.last_run_duration_s = took.as_secs_f64();
        self.metrics.set_audit(m.clone());
        warn!(run = no, error = %why, "posture audit failed; the findings of the last completed run stay in the metrics");
    }
}

/// One audit on the calling (blocking) thread, with a runtime of its own, within `timeout`.
fn run_once(opts: &posture::Options, timeout: Duration) -> Result<Report, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the audit's runtime: {e}"))?;
    let result = rt
        .block_on(async { tokio::time::timeout(timeout, posture::audit(opts)).await })
        .map_err(|_| format!("timed out after {}s", timeout.as_secs()));
    // Whatever the timeout cut short (a child process, a connection) is dropped, not waited
    // for.
    rt.shutdown_timeout(Duration::from_millis(100));
    result
}

fn unix_s(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
