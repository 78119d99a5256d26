//! Prometheus metrics and the health HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
//!
//! The event loop owns the [`Datapath`](crate::datapath::Datapath) (not `Sync`); once a
//! second it reads every counter into a plain [`Snapshot`] and hands it to
//! [`Metrics::update`]. The HTTP handler renders from that latest snapshot only, so a
//! scrape never touches the kernel and never waits on the event loop.
//!
//! Kernel and userspace counters are cumulative totals, so they are exported as counters
//! whose value is the latest total (a custom [`Collector`] with `ConstCounter`s), never
//! by incrementing. Labels are bounded: group, proto, verdict, answer, rule, severity,
//! reason, sink, kind, program, result, id (an audit finding's), and the source workload's
//! kind, namespace and name (at most `daemon::workloads::MAX_SOURCES` series). Never an
//! address or a port.
mod audit;
mod families;
mod http;
mod snapshot;

use std::{
    fmt,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

pub use audit::AuditSnapshot;
use audit::{AuditCollector, AuditState};
use families::{PreparedFamily, SnapshotCollector, prepare};
pub use http::{
    CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT, Protection, ServeLimits, Server, SharedProtection,
    router, serve, serve_protected, serve_with, wants_openmetrics,
};
use prometheus_client::{metrics::info::Info, registry::Registry};
pub use snapshot::{
    BpfStats, ClusterKindSnapshot, ClusterSnapshot, DetectorSnapshot, GroupSnapshot,
    NodePortRangesSnapshot, ProgramSnapshot, SinkSnapshot, Snapshot, SourceWorkloadCount,
    program_stats, reasons_snapshot,
};

/// The registry and the latest snapshot. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    state: Arc<SharedState>,
    audit: Arc<AuditState>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("ready", &self.inner.state.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with build info, readiness and the snapshot collector; every counter
    /// reads as absent (or 0 for the plain gauges) until the first [`update`](Self::update).
    pub fn new() -> Metrics {
        let state = Arc::new(SharedState::default());
        let mut registry = Registry::default();
        registry.register(
            "node_monitor_build",
            "Build information of the running node-monitor binary (value always 1)",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register_collector(Box::new(SnapshotCollector {
            state: Arc::clone(&state),
        }));
        let audit = Arc::new(AuditState::default());
        registry.register_collector(Box::new(AuditCollector {
            state: Arc::clone(&audit),
        }));
        Metrics {
            inner: Arc::new(Inner {
                registry,
                state,
                audit,
            }),
        }
    }

    /// Replaces every snapshot-derived value. Cheap: the families are prepared here, once
    /// a second, so that a scrape only formats.
    pub fn update(&self, s: &Snapshot) {
        let families = prepare(s);
        *self
            .inner
            .state
            .families
            .write()
            .unwrap_or_else(PoisonError::into_inner) = families;
    }

    /// The posture audit's latest state (`audit.rs`): set after each run.
    pub fn set_audit(&self, s: AuditSnapshot) {
        *self
            .inner
            .audit
            .latest
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(s);
    }

    /// `/readyz` answers 200 once this is true (programs attached, maps written).
    pub fn set_ready(&self, ready: bool) {
        self.inner.state.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.inner.state.ready.load(Ordering::Relaxed)
    }

    /// Prometheus text format 0.0.4.
    pub fn render_text(&self) -> String {
        self.try_render_text().unwrap_or_else(|e| {
            tracing::error!(error = %e, "encoding metrics (text)");
            String::new()
        })
    }

    /// OpenMetrics text 1.0.0, ending in `# EOF`.
    pub fn render_openmetrics(&self) -> String {
        self.try_render_openmetrics().unwrap_or_else(|e| {
            tracing::error!(error = %e, "encoding metrics (OpenMetrics)");
            String::new()
        })
    }

    fn try_render_text(&self) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry)?;
        Ok(out)
    }

    fn try_render_openmetrics(&self) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)?;
        Ok(out)
    }
}

#[derive(Default)]
pub(super) struct SharedState {
    families: RwLock<Vec<PreparedFamily>>,
    ready: AtomicBool,
}
