//! The posture audit's metrics (`audit:` in the config), kept apart from the per-second
//! snapshot: an audit run ends every `interval_s`, not every second. The event loop hands
//! each run's result to [`super::Metrics::set_audit`]; a scrape encodes the latest.
//!
//! - `node_monitor_audit_findings{id, severity}` (gauge): the last completed run's findings
//!   by id and severity (ids are the NM-2xxx catalog: bounded).
//! - `node_monitor_audit_last_run_timestamp_seconds` (gauge): when the last run ended (0:
//!   none yet), whether it completed or failed.
//! - `node_monitor_audit_last_run_duration_seconds` (gauge): how long it took.
//! - `node_monitor_audit_last_run_success` (gauge): 1 when it completed, 0 when it timed out
//!   or could not run.
//! - `node_monitor_audit_runs_total{result}` (counter): runs by `completed` / `failed`.
//! - `node_monitor_audit_checks_skipped` (gauge): the last completed run's checks that could
//!   not run (no kubelet config, no cluster identity, ...; the reasons are in the logs and
//!   in `node-monitor audit`).
use std::{
    borrow::Cow,
    collections::BTreeMap,
    fmt,
    sync::{Arc, PoisonError, RwLock},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Unit,
};

/// What the metrics show of the audit runs so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditSnapshot {
    /// The last completed run's findings: `(id, severity)` → count.
    pub findings: BTreeMap<(&'static str, &'static str), u64>,
    /// The last completed run's skipped checks.
    pub checks_skipped: u64,
    /// When the last run (completed or not) ended, in seconds since the epoch.
    pub last_run_unix_s: f64,
    pub last_run_duration_s: f64,
    pub last_run_ok: bool,
    pub runs_completed: u64,
    pub runs_failed: u64,
}

#[derive(Default)]
pub(super) struct AuditState {
    pub(super) latest: RwLock<Option<AuditSnapshot>>,
}

impl fmt::Debug for AuditState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditState").finish_non_exhaustive()
    }
}

/// Encodes the latest [`AuditSnapshot`]; nothing until the daemon has started auditing.
#[derive(Debug)]
pub(super) struct AuditCollector {
    pub(super) state: Arc<AuditState>,
}

impl Collector for AuditCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let latest = self
            .state
            .latest
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(s) = latest.as_ref() else {
            return Ok(());
        };
        if !s.findings.is_empty() {
            let mut m = encoder.encode_descriptor(
                "node_monitor_audit_findings",
                "Findings of the last completed posture audit run, by finding id and severity.",
                None,
                MetricType::Gauge,
            )?;
            for ((id, severity), n) in &s.findings {
                let labels: [(&str, Cow<'_, str>); 2] = [
                    ("id", Cow::Borrowed(id)),
                    ("severity", Cow::Borrowed(severity)),
                ];
                ConstGauge::new(*n).encode(m.encode_family(&labels)?)?;
            }
        }
        let gauge = |encoder: &mut DescriptorEncoder,
                     name: &str,
                     help: &str,
                     unit: Option<&Unit>,
                     v: f64|
         -> Result<(), fmt::Error> {
            let g = ConstGauge::new(v);
            let m = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
            g.encode(m)
        };
        gauge(
            &mut encoder,
            "node_monitor_audit_checks_skipped",
            "Checks the last completed posture audit run could not make (see the daemon's log).",
            None,
            s.checks_skipped as f64,
        )?;
        gauge(
            &mut encoder,
            "node_monitor_audit_last_run_timestamp",
            "When the last posture audit run ended (completed or failed), in seconds since the epoch.",
            Some(&Unit::Seconds),
            s.last_run_unix_s,
        )?;
        gauge(
            &mut encoder,
            "node_monitor_audit_last_run_duration",
            "How long the last posture audit run took.",
            Some(&Unit::Seconds),
            s.last_run_duration_s,
        )?;
        gauge(
            &mut encoder,
            "node_monitor_audit_last_run_success",
            "1 when the last posture audit run completed, 0 when it timed out or could not run.",
            None,
            if s.last_run_ok { 1.0 } else { 0.0 },
        )?;
        let mut m = encoder.encode_descriptor(
            "node_monitor_audit_runs",
            "Posture audit runs, by result (completed, failed: timed out or could not run).",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [("completed", s.runs_completed), ("failed", s.runs_failed)] {
            let labels: [(&str, Cow<'_, str>); 1] = [("result", Cow::Borrowed(result))];
            ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn nothing_before_the_first_run_then_every_family() {
        let m = Metrics::new();
        assert!(!m.render_text().contains("node_monitor_audit"));
        let mut s = AuditSnapshot {
            last_run_unix_s: 1_700_000_000.0,
            last_run_duration_s: 0.25,
            last_run_ok: true,
            runs_completed: 2,
            runs_failed: 1,
            checks_skipped: 3,
            ..AuditSnapshot::default()
        };
        s.findings.insert(("NM-2001", "high"), 1);
        s.findings.insert(("NM-2002", "medium"), 2);
        m.set_audit(s);
        let text = m.render_text();
        for want in [
            "node_monitor_audit_findings{id=\"NM-2001\",severity=\"high\"} 1",
            "node_monitor_audit_findings{id=\"NM-2002\",severity=\"medium\"} 2",
            "node_monitor_audit_checks_skipped 3",
            "node_monitor_audit_last_run_timestamp_seconds 1700000000",
            "node_monitor_audit_last_run_duration_seconds 0.25",
            "node_monitor_audit_last_run_success 1",
            "node_monitor_audit_runs_total{result=\"completed\"} 2",
            "node_monitor_audit_runs_total{result=\"failed\"} 1",
        ] {
            assert!(text.contains(want), "missing {want} in:\n{text}");
        }
        let om = m.render_openmetrics();
        assert!(
            om.contains("# TYPE node_monitor_audit_runs counter"),
            "{om}"
        );
        assert!(om.trim_end().ends_with("# EOF"));
    }
}
