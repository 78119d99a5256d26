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
//! reason, sink, kind, program, result. Never an address or a port.
use std::{
    borrow::Cow,
    collections::BTreeMap,
    fmt,
    future::Future,
    io,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use node_monitor_common::{GroupStats, VERDICT_DENIED, reason};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge, info::Info},
    registry::{Registry, Unit},
};

/// `Content-Type` of the Prometheus text format 0.0.4.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of the OpenMetrics text format 1.0.0.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every counter and gauge the daemon exports, as plain data. The daemon fills it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Kernel counters per (group, protocol, verdict).
    pub groups: Vec<GroupSnapshot>,
    /// Packets passed unclassified or malformed, by reason (`reason::NAMES`).
    pub reasons: Vec<(&'static str, u64)>,
    /// Flagged connections by how the node answered: (group, proto, answer, count).
    pub answers: Vec<(String, &'static str, &'static str, u64)>,
    /// Alerts raised: (rule id, severity, count).
    pub alerts: Vec<(String, &'static str, u64)>,
    /// Alerts suppressed by dedup/suppression: (rule id, count).
    pub alerts_suppressed: Vec<(String, u64)>,
    /// Events lost in userspace, by reason (output queue full, malformed record, ...).
    /// Kernel losses (`rate_limited`, `ringbuf_full`) are summed from `groups` by
    /// [`Metrics::update`]; entries here with those two reasons are ignored, so that a
    /// caller that also lists them cannot count them twice.
    pub lost_events: Vec<(String, u64)>,
    /// Output sinks.
    pub sinks: Vec<SinkSnapshot>,
    pub flow_table_entries: u64,
    pub flow_table_capacity: u64,
    /// Per-program BPF run statistics (see [`program_stats`]).
    pub programs: Vec<ProgramSnapshot>,
    /// Config reloads by result (`success` | `failure`).
    pub config_reloads: Vec<(&'static str, u64)>,
    pub attached_interfaces: u64,
    /// Flagged attempts waiting for the node's answer.
    pub pending_answers: u64,
}

/// Kernel counters of one (group, protocol, verdict) slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSnapshot {
    pub group: String,
    /// `tcp` | `udp`.
    pub proto: &'static str,
    /// `allowed` | `denied`.
    pub verdict: &'static str,
    pub stats: GroupStats,
}

impl From<&crate::datapath::GroupCounters> for GroupSnapshot {
    fn from(c: &crate::datapath::GroupCounters) -> Self {
        GroupSnapshot {
            group: c.group.clone(),
            proto: c.proto.name(),
            verdict: verdict_name(c.verdict),
            stats: c.stats,
        }
    }
}

/// The metrics spelling of a kernel verdict.
pub fn verdict_name(verdict: u8) -> &'static str {
    if verdict == VERDICT_DENIED {
        "denied"
    } else {
        "allowed"
    }
}

/// Pairs `Datapath::reason_counters()` with their names.
pub fn reasons_snapshot(counters: &[u64; reason::COUNT as usize]) -> Vec<(&'static str, u64)> {
    reason::NAMES
        .iter()
        .copied()
        .zip(counters.iter().copied())
        .collect()
}

/// One output sink.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkSnapshot {
    /// The sink's configured name.
    pub name: String,
    /// `stdout` | `file` | `syslog` | `http` | ...
    pub kind: &'static str,
    /// Records delivered.
    pub sent: u64,
    /// Records dropped, by reason (queue_full, write_error, ...).
    pub dropped: Vec<(String, u64)>,
    /// Records waiting in the sink's queue now.
    pub queue_len: u64,
}

impl From<&crate::sinks::SinkStats> for SinkSnapshot {
    fn from(s: &crate::sinks::SinkStats) -> Self {
        SinkSnapshot {
            name: s.name.clone(),
            kind: s.kind,
            sent: s.sent,
            dropped: s.dropped.iter().map(|(r, n)| (r.clone(), *n)).collect(),
            queue_len: u64::try_from(s.queue_len).unwrap_or(u64::MAX),
        }
    }
}

/// BPF run statistics of one program (cumulative while [`BpfStats`] is held).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgramSnapshot {
    /// `xdp` | `tc_ingress` | `tc_egress`.
    pub program: &'static str,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// Reads run count and run time of loaded programs, e.g.
/// `program_stats([("xdp", dp.xdp_program()?.info()), ("tc_ingress", dp.tc_ingress_program()?.info())])`.
/// A program whose info cannot be read is left out (and logged at debug level).
/// The kernel only counts while BPF stats are enabled ([`BpfStats::enable`]).
pub fn program_stats(
    programs: impl IntoIterator<
        Item = (
            &'static str,
            Result<aya::programs::ProgramInfo, aya::programs::ProgramError>,
        ),
    >,
) -> Vec<ProgramSnapshot> {
    programs
        .into_iter()
        .filter_map(|(program, info)| match info {
            Ok(info) => Some(ProgramSnapshot {
                program,
                run_count: info.run_count(),
                run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
            }),
            Err(error) => {
                tracing::debug!(program, %error, "reading BPF program info");
                None
            }
        })
        .collect()
}

/// Kernel BPF run-time statistics (`BPF_ENABLE_STATS`), on for as long as this is held.
#[derive(Debug)]
pub struct BpfStats(OwnedFd);

impl BpfStats {
    /// Turns on run count / run time accounting for every BPF program (needs
    /// CAP_SYS_ADMIN; kernel ≥ 5.8). Keep the value for as long as the daemon runs.
    pub fn enable() -> io::Result<BpfStats> {
        aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .map(BpfStats)
            .map_err(|e| io::Error::new(e.io_error.kind(), e))
    }
}

impl AsFd for BpfStats {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The registry and the latest snapshot. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    state: Arc<SharedState>,
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
        Metrics {
            inner: Arc::new(Inner { registry, state }),
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
struct SharedState {
    families: RwLock<Vec<PreparedFamily>>,
    ready: AtomicBool,
}

/// Loss reasons counted by the data path, per group (`GroupStats`).
const KERNEL_LOSS_REASONS: [&str; 2] = ["rate_limited", "ringbuf_full"];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// How a stored integer is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    One,
    /// Nanoseconds, exported as seconds.
    NanosAsSeconds,
}

#[derive(Debug)]
struct PreparedFamily {
    /// Without the `_total` (counter) or unit suffix: the encoder adds them.
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: Kind,
    scale: Scale,
    /// Sorted by labels; duplicates summed.
    samples: Vec<(Labels, u64)>,
}

struct FamilyBuilder {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: Kind,
    scale: Scale,
    samples: BTreeMap<Labels, u64>,
}

impl FamilyBuilder {
    fn counter(name: &'static str, help: &'static str) -> Self {
        FamilyBuilder {
            name,
            help,
            unit: None,
            kind: Kind::Counter,
            scale: Scale::One,
            samples: BTreeMap::new(),
        }
    }
    fn gauge(name: &'static str, help: &'static str) -> Self {
        FamilyBuilder {
            kind: Kind::Gauge,
            ..Self::counter(name, help)
        }
    }
    fn seconds(mut self) -> Self {
        self.unit = Some(Unit::Seconds);
        self.scale = Scale::NanosAsSeconds;
        self
    }
    /// Adds to the sample with these labels (summing duplicates, so that the exposition
    /// never holds the same series twice).
    fn add(&mut self, labels: Labels, v: u64) {
        let e = self.samples.entry(labels).or_insert(0);
        *e = e.saturating_add(v);
    }
    fn build(self) -> PreparedFamily {
        PreparedFamily {
            name: self.name,
            help: self.help,
            unit: self.unit,
            kind: self.kind,
            scale: self.scale,
            samples: self.samples.into_iter().collect(),
        }
    }
}

fn l(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// Turns a snapshot into the families to encode, in a stable order.
fn prepare(s: &Snapshot) -> Vec<PreparedFamily> {
    let mut packets = FamilyBuilder::counter(
        "node_monitor_packets",
        "Packets to watched ports seen by the data path, by port group, protocol and verdict.",
    );
    let mut bytes = FamilyBuilder::counter(
        "node_monitor_bytes",
        "Bytes (frame length) of packets to watched ports, by port group, protocol and verdict.",
    );
    let mut conns = FamilyBuilder::counter(
        "node_monitor_connections",
        "New connections to watched ports (TCP SYN, or the first UDP packet of an idle 5-tuple), by port group, protocol and verdict.",
    );
    let mut would_drop = FamilyBuilder::counter(
        "node_monitor_would_drop_packets",
        "Packets from sources not allowed that drop mode would have dropped (group in monitor mode), by port group and protocol.",
    );
    let mut dropped = FamilyBuilder::counter(
        "node_monitor_dropped_packets",
        "Packets from sources not allowed that were dropped (group enforces), by port group and protocol.",
    );
    let mut events = FamilyBuilder::counter(
        "node_monitor_events",
        "Events the data path wrote to the ring buffer (flagged connections for denied, sampled flow records for allowed), by port group, protocol and verdict.",
    );
    let mut lost = FamilyBuilder::counter(
        "node_monitor_lost_events",
        "Events lost before output, by reason: rate_limited and ringbuf_full in the kernel, the rest in userspace.",
    );
    let mut sampled_out = FamilyBuilder::counter(
        "node_monitor_sampled_out",
        "Allowed new connections not reported because 1-in-N sampling skipped them (not a loss), by port group and protocol.",
    );
    for g in &s.groups {
        let gpv = l(&[
            ("group", &g.group),
            ("proto", g.proto),
            ("verdict", g.verdict),
        ]);
        let gp = l(&[("group", &g.group), ("proto", g.proto)]);
        let st = &g.stats;
        packets.add(gpv.clone(), st.packets);
        bytes.add(gpv.clone(), st.bytes);
        conns.add(gpv.clone(), st.new_conns);
        events.add(gpv, st.events);
        would_drop.add(gp.clone(), st.would_drop);
        dropped.add(gp.clone(), st.dropped);
        sampled_out.add(gp, st.sampled_out);
        lost.add(
            l(&[("reason", KERNEL_LOSS_REASONS[0])]),
            st.lost_rate_limited,
        );
        lost.add(
            l(&[("reason", KERNEL_LOSS_REASONS[1])]),
            st.lost_ringbuf_full,
        );
    }
    for (reason, n) in &s.lost_events {
        if KERNEL_LOSS_REASONS.contains(&reason.as_str()) {
            continue;
        }
        lost.add(l(&[("reason", reason)]), *n);
    }

    let mut unclassified = FamilyBuilder::counter(
        "node_monitor_packets_unclassified",
        "Packets passed without classification (not IP, not TCP/UDP, fragments) or because they could not be parsed, and answers that could not be reported, by reason.",
    );
    for (reason, n) in &s.reasons {
        unclassified.add(l(&[("reason", reason)]), *n);
    }

    let mut flagged = FamilyBuilder::counter(
        "node_monitor_flagged_connections",
        "Flagged connections (from sources not allowed) by how the node answered: accepted, refused or none, by port group and protocol.",
    );
    for (group, proto, answer, n) in &s.answers {
        flagged.add(
            l(&[("group", group), ("proto", proto), ("answer", answer)]),
            *n,
        );
    }

    let mut alerts = FamilyBuilder::counter(
        "node_monitor_alerts",
        "Alerts raised, by rule id and severity.",
    );
    for (rule, severity, n) in &s.alerts {
        alerts.add(l(&[("rule", rule), ("severity", severity)]), *n);
    }
    let mut suppressed = FamilyBuilder::counter(
        "node_monitor_alerts_suppressed",
        "Alerts withheld by deduplication or suppression, by rule id.",
    );
    for (rule, n) in &s.alerts_suppressed {
        suppressed.add(l(&[("rule", rule)]), *n);
    }

    let mut sink_records = FamilyBuilder::counter(
        "node_monitor_sink_records",
        "Records delivered by each output sink, by sink name and kind.",
    );
    let mut sink_dropped = FamilyBuilder::counter(
        "node_monitor_sink_dropped",
        "Records an output sink dropped, by sink name, kind and reason.",
    );
    let mut sink_queue = FamilyBuilder::gauge(
        "node_monitor_sink_queue_length",
        "Records waiting in each output sink's queue.",
    );
    for sink in &s.sinks {
        sink_records.add(l(&[("sink", &sink.name), ("kind", sink.kind)]), sink.sent);
        for (reason, n) in &sink.dropped {
            sink_dropped.add(
                l(&[
                    ("sink", &sink.name),
                    ("kind", sink.kind),
                    ("reason", reason),
                ]),
                *n,
            );
        }
        sink_queue.add(l(&[("sink", &sink.name)]), sink.queue_len);
    }

    let mut flow_entries = FamilyBuilder::gauge(
        "node_monitor_flow_table_entries",
        "Entries in the kernel flow table (LRU hash) now.",
    );
    flow_entries.add(Vec::new(), s.flow_table_entries);
    let mut flow_capacity = FamilyBuilder::gauge(
        "node_monitor_flow_table_capacity",
        "Maximum entries of the kernel flow table.",
    );
    flow_capacity.add(Vec::new(), s.flow_table_capacity);

    let mut run_count = FamilyBuilder::counter(
        "node_monitor_program_run_count",
        "Times each eBPF program ran while kernel BPF statistics were enabled.",
    );
    let mut run_time = FamilyBuilder::counter(
        "node_monitor_program_run_time",
        "Time spent running each eBPF program while kernel BPF statistics were enabled.",
    )
    .seconds();
    for p in &s.programs {
        run_count.add(l(&[("program", p.program)]), p.run_count);
        run_time.add(l(&[("program", p.program)]), p.run_time_ns);
    }

    let mut reloads = FamilyBuilder::counter(
        "node_monitor_config_reloads",
        "Configuration reloads, by result (success or failure).",
    );
    for (result, n) in &s.config_reloads {
        reloads.add(l(&[("result", result)]), *n);
    }

    let mut attached = FamilyBuilder::gauge(
        "node_monitor_attached_interfaces",
        "Network interfaces the eBPF programs are attached to now.",
    );
    attached.add(Vec::new(), s.attached_interfaces);
    let mut pending = FamilyBuilder::gauge(
        "node_monitor_pending_answers",
        "Flagged connection attempts waiting for the node's answer now.",
    );
    pending.add(Vec::new(), s.pending_answers);

    [
        packets,
        bytes,
        conns,
        would_drop,
        dropped,
        events,
        lost,
        sampled_out,
        unclassified,
        flagged,
        alerts,
        suppressed,
        sink_records,
        sink_dropped,
        sink_queue,
        flow_entries,
        flow_capacity,
        run_count,
        run_time,
        reloads,
        attached,
        pending,
    ]
    .into_iter()
    .map(FamilyBuilder::build)
    .collect()
}

/// Encodes the latest prepared snapshot on each scrape.
#[derive(Debug)]
struct SnapshotCollector {
    state: Arc<SharedState>,
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState").finish_non_exhaustive()
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        {
            let families = self
                .state
                .families
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            for fam in families.iter() {
                // A labelled family with no series yet (no alerts, no sinks) is left out.
                if fam.samples.is_empty() {
                    continue;
                }
                let metric_type = match fam.kind {
                    Kind::Counter => MetricType::Counter,
                    Kind::Gauge => MetricType::Gauge,
                };
                let mut metric = encoder.encode_descriptor(
                    fam.name,
                    fam.help,
                    fam.unit.as_ref(),
                    metric_type,
                )?;
                for (labels, v) in &fam.samples {
                    let labels: Vec<(&str, Cow<'_, str>)> = labels
                        .iter()
                        .map(|(k, v)| (*k, Cow::Borrowed(v.as_str())))
                        .collect();
                    let sample = metric.encode_family(&labels)?;
                    match (fam.kind, fam.scale) {
                        (Kind::Counter, Scale::One) => ConstCounter::new(*v).encode(sample)?,
                        (Kind::Counter, Scale::NanosAsSeconds) => {
                            ConstCounter::new(nanos_to_seconds(*v)).encode(sample)?
                        }
                        (Kind::Gauge, Scale::One) => ConstGauge::new(*v).encode(sample)?,
                        (Kind::Gauge, Scale::NanosAsSeconds) => {
                            ConstGauge::new(nanos_to_seconds(*v)).encode(sample)?
                        }
                    }
                }
            }
        }
        let ready = ConstGauge::new(u64::from(self.state.ready.load(Ordering::Relaxed)));
        let metric = encoder.encode_descriptor(
            "node_monitor_ready",
            "1 once the eBPF programs are attached and their maps written, else 0.",
            None,
            ready.metric_type(),
        )?;
        ready.encode(metric)
    }
}

fn nanos_to_seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// True when the `Accept` header asks for OpenMetrics (any media range
/// `application/openmetrics-text` whose q is not 0).
pub fn wants_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        media.eq_ignore_ascii_case("application/openmetrics-text")
            && !parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("q")
                        && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                })
            })
    })
}

/// The HTTP routes, for embedding or testing without a socket.
pub fn router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics_handler(State(metrics): State<Metrics>, headers: HeaderMap) -> Response {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let (body, content_type) = if wants_openmetrics(&accept) {
        (metrics.try_render_openmetrics(), CONTENT_TYPE_OPENMETRICS)
    } else {
        (metrics.try_render_text(), CONTENT_TYPE_TEXT)
    };
    match body {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::VARY, HeaderValue::from_static("Accept")),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
                .into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(metrics): State<Metrics>) -> (StatusCode, &'static str) {
    if metrics.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
