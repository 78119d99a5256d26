//! The daemon: config → datapath → flows (answers) → alerts (rules, dedup, sweeps, floods)
//! → sinks; counters → metrics; config reloads; interfaces that come and go.
//!
//! One task owns the data path and the engine (neither is shared); sinks and the metrics
//! server run on their own tasks, fed without blocking, so a slow consumer never stalls the
//! ring-buffer reader.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::Instant,
};

use anyhow::{Context as _, bail};
use aya::maps::{MapData, RingBuf};
use serde::Serialize;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    time::{Duration, interval},
};
use tracing::{error, info, warn};

use crate::{
    answers::{GroupNames, Tracker, TrackerStats},
    config::{AllowEntry, AttachKind, Config, SymbolicSet},
    datapath::{AttachMode, Datapath, GroupIds, LoadOptions},
    detect::{self, Alert, Engine, LossTotals, OutputItem},
    metrics::{self, BpfStats, Metrics, Snapshot},
    netif,
    record::{self, Clock, FlowRecord, RecordType},
    render::{self, Observer},
    sinks::{Renderer, Sinks},
    watch::{ConfigWatcher, IfaceWatcher},
};

/// How often pending attempts are checked against the answer timeout, and the ring buffer
/// is drained as a safety net.
const TICK: Duration = Duration::from_millis(50);
/// Ticks between housekeeping rounds (interfaces, counters, metrics, alert windows): 500 ms,
/// so that a new interface is attached well within 2 s.
const HOUSEKEEPING_TICKS: u32 = 10;
/// Housekeeping rounds between flow-table walks (the walk costs one syscall per entry).
const FLOW_COUNT_ROUNDS: u32 = 20;
/// How long sinks get to flush at shutdown.
const SINK_SHUTDOWN: Duration = Duration::from_secs(5);

/// What the command line says; it overrides the config file where both speak.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub config_path: Option<PathBuf>,
    /// Interface names or globs; empty: the config's `interfaces`, else default-route ones.
    pub ifaces: Vec<String>,
    pub attach: Option<AttachMode>,
    pub pin_dir: Option<PathBuf>,
    pub metrics_addr: Option<SocketAddr>,
}

/// One read of the kernel's counters, shared by loss accounting and the metrics.
struct Counters {
    /// None when the read failed (this round then skips loss accounting).
    groups: Option<Vec<crate::datapath::GroupCounters>>,
    reasons: Option<[u64; node_monitor_common::reason::COUNT as usize]>,
}

impl Counters {
    fn read(dp: &Datapath) -> Counters {
        Counters {
            groups: dp.group_counters().ok(),
            reasons: dp.reason_counters().ok(),
        }
    }
}

impl GroupNames for GroupIds {
    fn group_name(&self, id: u8) -> std::borrow::Cow<'_, str> {
        self.name(id)
            .map_or_else(|| format!("group-{id}").into(), Into::into)
    }
}

/// Userspace counters, reported in metrics and in the exit summary.
#[derive(Debug, Default, Clone, Serialize)]
pub struct UserStats {
    pub events_read: u64,
    pub events_malformed: u64,
    pub config_reloads_ok: u64,
    pub config_reloads_failed: u64,
    #[serde(flatten)]
    pub tracker: TrackerStats,
}

fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

fn sweep_groups(cfg: &Config) -> Vec<String> {
    cfg.groups
        .iter()
        .filter(|g| g.detect_sweeps)
        .map(|g| g.name.clone())
        .collect()
}

fn uses_node_subnets(cfg: &Config) -> bool {
    cfg.groups
        .iter()
        .any(|g| g.allow.contains(&AllowEntry::Set(SymbolicSet::NodeSubnets)))
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    // Watch before reading, so that a change between the two is not missed.
    let config_changes = match &opts.config_path {
        Some(path) => {
            let (w, rx) =
                ConfigWatcher::new(path).with_context(|| format!("watching {}", path.display()))?;
            Some((w, rx))
        }
        None => None,
    };
    let (cfg, origin) = match &opts.config_path {
        Some(path) => (Config::load(path)?, path.display().to_string()),
        None => (Config::default_config(), "embedded default".to_owned()),
    };
    let mode = opts.attach.unwrap_or(match cfg.attach {
        Some(AttachKind::Tc) => AttachMode::Tc,
        _ => AttachMode::Xdp,
    });
    let cli_ifaces = !opts.ifaces.is_empty();
    let patterns = if cli_ifaces {
        opts.ifaces.clone()
    } else {
        cfg.interfaces.clone()
    };
    // A name given outright must exist at start; globs may match nothing yet.
    for p in patterns.iter().filter(|p| !is_glob(p)) {
        if netif::ifindex(p).is_none() {
            bail!("interface `{p}` does not exist in this network namespace");
        }
    }
    let mut ifaces = IfaceWatcher::new(patterns.clone());
    let initial = ifaces.poll().added;
    if initial.is_empty() {
        if patterns.is_empty() {
            bail!(
                "no --iface given, no `interfaces` in the config, and no interface carries a default route; name one with --iface"
            );
        }
        bail!("no interface matches {patterns:?}");
    }
    let subnets = netif::subnets_of(&initial).context("reading interface addresses")?;
    if uses_node_subnets(&cfg) && subnets.is_empty() {
        warn!(
            ?initial,
            "node-subnets resolves to nothing: the interfaces have no addresses, so groups that allow node-subnets flag every source"
        );
    }
    info!(config = %origin, digest = %cfg.digest(), groups = cfg.groups.len(), ?subnets, "config loaded");
    let mut dp = Datapath::load(
        &cfg,
        &subnets,
        &LoadOptions {
            pin_dir: opts.pin_dir.clone(),
        },
    )?;
    let mut attached = BTreeSet::new();
    for iface in &initial {
        dp.attach(iface, mode)?;
        attached.insert(iface.clone());
    }
    dp.prune_stale_links()?;
    let bpf_stats = match BpfStats::enable() {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "cannot turn on the kernel's BPF run-time statistics; program run time metrics stay at 0");
            None
        }
    };

    let metrics = Metrics::new();
    let listen = opts.metrics_addr.unwrap_or(cfg.metrics.listen);
    let server = MetricsServer::start(listen, &metrics).await?;

    let observer = Observer::local();
    let render: Renderer =
        Arc::new(move |item, format, out| render::render_into(item, format, &observer, out));
    let sinks = Sinks::start(&cfg.sinks, render)?;

    let ring = dp
        .take_events()
        .context("the ring buffer was already taken")?;
    // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd owns the RingBuf, and
    // as_raw_fd always returns that same fd.
    let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering the ring buffer with tokio: {e}"))?;

    let mut d = Daemon {
        engine: Engine::new(&cfg.alerts, sweep_groups(&cfg)),
        tracker: Tracker::new(cfg.limits.answer_timeout_ms),
        cfg,
        opts,
        cli_ifaces,
        mode,
        dp,
        ifaces,
        attached,
        subnets,
        sinks,
        metrics,
        stats: UserStats::default(),
        answers: BTreeMap::new(),
        records: Vec::new(),
        alerts: Vec::new(),
        flow_entries: 0,
        rounds: 0,
        _bpf_stats: bpf_stats,
        server,
    };
    d.update_metrics(true);
    d.metrics.set_ready(true);
    info!(
        attachments = ?d.dp.attachments().map(|a| format!("{}@{} ({}{})", a.hook.as_str(), a.iface, a.mode, if a.adopted { ", adopted" } else { "" })).collect::<Vec<_>>(),
        sinks = ?d.sinks.names(),
        metrics = %listen,
        "ready"
    );
    let result = d.event_loop(ring, config_changes).await;
    d.server.stop().await;
    result
}

/// The metrics and health endpoint's task, stoppable and re-bindable on reload.
struct MetricsServer {
    listen: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl MetricsServer {
    async fn start(listen: SocketAddr, metrics: &Metrics) -> anyhow::Result<MetricsServer> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the metrics endpoint on {listen}"))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(metrics::serve(listener, metrics.clone(), async {
            let _ = stopped.await;
        }));
        Ok(MetricsServer { listen, stop, task })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

struct Daemon {
    cfg: Config,
    opts: RunOptions,
    cli_ifaces: bool,
    mode: AttachMode,
    dp: Datapath,
    ifaces: IfaceWatcher,
    attached: BTreeSet<String>,
    subnets: Vec<ipnet::IpNet>,
    engine: Engine,
    tracker: Tracker,
    sinks: Sinks,
    metrics: Metrics,
    stats: UserStats,
    /// Flagged connections by (group, protocol, answer).
    answers: BTreeMap<(Arc<str>, &'static str, &'static str), u64>,
    records: Vec<FlowRecord>,
    alerts: Vec<Alert>,
    flow_entries: u64,
    rounds: u32,
    _bpf_stats: Option<BpfStats>,
    server: MetricsServer,
}

impl Daemon {
    async fn event_loop(
        &mut self,
        mut ring: AsyncFd<RingBuf<MapData>>,
        mut config_changes: Option<(ConfigWatcher, tokio::sync::mpsc::Receiver<()>)>,
    ) -> anyhow::Result<()> {
        let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut sighup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let mut tick = interval(TICK);
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("waiting on the ring buffer")?;
                    self.drain(guard.get_inner_mut());
                    guard.clear_ready();
                    // The kernel wakes the reader only when it had caught up; a record
                    // committed between the last read and clear_ready() would otherwise wait
                    // for the next drain. Reading again after clearing closes that window.
                    self.drain(guard.get_inner_mut());
                }
                _ = tick.tick() => {
                    // Safety net: bounded delay even if a wakeup was ever missed.
                    self.drain(ring.get_mut());
                    let clock = Clock::now();
                    let dp = &self.dp;
                    self.tracker.expire(Clock::ktime_now(), |k| dp.flow(k), dp.group_ids(), &clock, &mut self.records);
                    ticks += 1;
                    if ticks.is_multiple_of(HOUSEKEEPING_TICKS) {
                        self.housekeeping();
                    }
                }
                _ = sighup.recv() => self.reload("SIGHUP").await,
                Some(()) = async {
                    match config_changes.as_mut() {
                        Some((_, rx)) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => self.reload("config file changed").await,
                _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
                _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
            }
            self.dispatch();
        }
        // Drain what the kernel already queued, report every pending attempt and alert
        // series, let the sinks flush, then print the counters.
        self.drain(ring.get_mut());
        let clock = Clock::now();
        let dp = &self.dp;
        self.tracker
            .flush(|k| dp.flow(k), dp.group_ids(), &clock, &mut self.records);
        self.dispatch();
        self.engine.flush(&mut self.alerts);
        self.dispatch();
        self.update_metrics(true);
        let sinks = std::mem::replace(&mut self.sinks, Sinks::start(&[], Arc::new(|_, _, _| {}))?);
        let sink_stats = sinks.shutdown(SINK_SHUTDOWN).await;
        self.stats.tracker = self.tracker.stats;
        print_summary(&self.dp, &self.stats, &sink_stats)?;
        Ok(())
    }

    /// Reads every record the ring buffer holds now.
    fn drain(&mut self, ring: &mut RingBuf<MapData>) {
        let clock = Clock::now();
        let now = Clock::ktime_now();
        while let Some(item) = ring.next() {
            self.stats.events_read += 1;
            match record::decode(&item) {
                Ok(ev) => {
                    self.tracker
                        .handle(ev, now, self.dp.group_ids(), &clock, &mut self.records)
                }
                Err(e) => {
                    self.stats.events_malformed += 1;
                    warn!(error = %e, "malformed ring buffer record");
                }
            }
        }
    }

    /// Completed records → the alert engine and the sinks; alerts → the sinks. Never blocks.
    fn dispatch(&mut self) {
        if self.records.is_empty() && self.alerts.is_empty() {
            return;
        }
        let now = Instant::now();
        for rec in self.records.drain(..) {
            if rec.record_type == RecordType::Flagged {
                let answer = rec.answer.map_or("none", |a| a.as_str());
                *self
                    .answers
                    .entry((rec.group.clone(), rec.protocol.as_str(), answer))
                    .or_default() += 1;
            }
            self.engine.on_record(&rec, now, &mut self.alerts);
            if rec.record_type == RecordType::Sampled && rec.sampled {
                self.sinks.send(Arc::new(OutputItem::Flow(rec)));
            }
        }
        for a in self.alerts.drain(..) {
            self.sinks.send(Arc::new(OutputItem::Alert(a)));
        }
    }

    /// Every 500 ms: interfaces, loss accounting and alert windows, metrics.
    fn housekeeping(&mut self) {
        self.rounds = self.rounds.wrapping_add(1);
        self.sync_interfaces();
        let now = Instant::now();
        // One read of the kernel counters serves loss accounting and the metrics.
        let counters = Counters::read(&self.dp);
        self.account_losses(&counters, now);
        self.engine.tick(now, &mut self.alerts);
        self.update_metrics_from(self.rounds % FLOW_COUNT_ROUNDS == 1, counters);
    }

    /// Feeds the engine the cumulative loss counters (kernel and userspace).
    fn account_losses(&mut self, counters: &Counters, now: Instant) {
        if let Some(groups) = &counters.groups {
            let mut totals = LossTotals::default();
            for c in groups {
                totals.rate_limited += c.stats.lost_rate_limited;
                totals.ringbuf_full += c.stats.lost_ringbuf_full;
            }
            if let Some(r) = &counters.reasons {
                totals.ringbuf_full += r[node_monitor_common::reason::ANSWER_RINGBUF_FULL as usize];
            }
            if self.stats.events_malformed > 0 {
                totals
                    .userspace
                    .insert("decode_error".to_owned(), self.stats.events_malformed);
            }
            for s in self.sinks.stats() {
                for (reason, n) in &s.dropped {
                    *totals
                        .userspace
                        .entry(format!("sink_{reason}"))
                        .or_default() += n;
                }
            }
            self.engine.on_losses(&totals, now, &mut self.alerts);
        }
    }

    /// Attaches to interfaces that appeared and match; forgets those that disappeared.
    fn sync_interfaces(&mut self) {
        let changes = self.ifaces.poll();
        if changes.is_empty() {
            return;
        }
        for iface in &changes.removed {
            if self.attached.remove(iface) {
                self.dp.detach_iface(iface);
                info!(
                    iface,
                    "interface gone or no longer matching; detached and forgotten"
                );
            }
        }
        for iface in &changes.added {
            match self.dp.attach(iface, self.mode) {
                Ok(_) => {
                    self.attached.insert(iface.clone());
                    info!(iface, "new interface attached");
                }
                Err(e) => {
                    warn!(iface, error = %e, "cannot attach to a new interface; will retry if it reappears")
                }
            }
        }
        // node-subnets follows the attached interfaces.
        let current: Vec<String> = self.attached.iter().cloned().collect();
        match netif::subnets_of(&current) {
            Ok(s) if s != self.subnets => {
                self.subnets = s;
                if let Err(e) = self.dp.apply_config(&self.cfg, &self.subnets) {
                    error!(error = %e, "rewriting allowlists for the new interface set failed");
                }
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "reading interface addresses"),
        }
    }

    async fn reload(&mut self, why: &str) {
        let Some(path) = self.opts.config_path.clone() else {
            warn!(
                why,
                "reload asked, but the daemon runs on the embedded config: nothing to re-read"
            );
            return;
        };
        let new = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                self.stats.config_reloads_failed += 1;
                error!(why, error = %e, "config reload rejected; the running config stays");
                return;
            }
        };
        let plan = self.cfg.reload_plan(&new);
        if plan.is_noop() {
            info!(why, "config unchanged");
            return;
        }
        // Everything that can fail is tried before anything changes: sinks first (they are
        // opened), then the data path (validated before any map is written).
        if plan.sinks
            && let Err(e) = self.sinks.reconfigure(&new.sinks).await
        {
            self.stats.config_reloads_failed += 1;
            error!(why, error = %e, "config reload rejected (sinks); the running config stays");
            return;
        }
        if plan.datapath
            && let Err(e) = self.dp.apply_config(&new, &self.subnets)
        {
            self.stats.config_reloads_failed += 1;
            error!(why, error = %e, "config reload rejected (data path); the running config stays");
            if plan.sinks {
                let _ = self.sinks.reconfigure(&self.cfg.sinks).await;
            }
            return;
        }
        if plan.answer_timeout {
            self.tracker.set_timeout(new.limits.answer_timeout_ms);
        }
        if plan.alerts {
            self.engine.set_settings(&new.alerts, sweep_groups(&new));
        }
        if plan.interfaces && !self.cli_ifaces {
            // The next housekeeping round attaches what now matches and detaches the rest.
            self.ifaces.set_patterns(new.interfaces.clone());
        }
        if plan.reattach && self.opts.attach.is_none() {
            let mode = match new.attach {
                Some(AttachKind::Tc) => AttachMode::Tc,
                _ => AttachMode::Xdp,
            };
            self.reattach(mode);
        }
        if plan.metrics && self.opts.metrics_addr.is_none() {
            match MetricsServer::start(new.metrics.listen, &self.metrics).await {
                Ok(server) => {
                    let old = std::mem::replace(&mut self.server, server);
                    info!(from = %old.listen, to = %new.metrics.listen, "metrics endpoint moved");
                    old.stop().await;
                }
                Err(e) => {
                    error!(error = %e, "cannot move the metrics endpoint; it stays on {}", self.server.listen)
                }
            }
        }
        if !plan.restart_required.is_empty() {
            warn!(fields = ?plan.restart_required, "these settings take effect at the next restart; everything else is applied");
        }
        self.stats.config_reloads_ok += 1;
        info!(why, digest = %new.digest(), "config reloaded; maps rewritten in place, counters kept");
        self.cfg = new;
        self.update_metrics(false);
    }

    /// Detaches every interface and attaches it again with `mode` (the `attach` setting
    /// changed). Each interface is unwatched for the moment between the two.
    fn reattach(&mut self, mode: AttachMode) {
        self.mode = mode;
        for iface in self.attached.clone() {
            self.dp.detach_iface(&iface);
            if let Err(e) = self.dp.attach(&iface, mode) {
                error!(iface, error = %e, "re-attaching with the new hook failed");
                self.attached.remove(&iface);
            }
        }
        info!(?mode, "re-attached with the new hook");
    }

    fn update_metrics(&mut self, count_flows: bool) {
        let counters = Counters::read(&self.dp);
        self.update_metrics_from(count_flows, counters);
    }

    fn update_metrics_from(&mut self, count_flows: bool, counters: Counters) {
        if count_flows && let Some(n) = self.dp.flow_count() {
            self.flow_entries = n as u64;
        }
        let groups = counters.groups.unwrap_or_default();
        let reasons = counters.reasons.unwrap_or_default();
        let es = self.engine.stats();
        let sink_stats = self.sinks.stats();
        // Kernel losses (rate_limited, ringbuf_full) come from `groups`; only userspace ones here.
        let mut lost: BTreeMap<String, u64> = BTreeMap::new();
        lost.insert("decode_error".to_owned(), self.stats.events_malformed);
        let severities: BTreeMap<&'static str, &'static str> = detect::rules::all()
            .into_iter()
            .map(|r| (r.id, r.severity.as_str()))
            .collect();
        let snap = Snapshot {
            groups: groups.iter().map(Into::into).collect(),
            reasons: metrics::reasons_snapshot(&reasons),
            answers: self
                .answers
                .iter()
                .map(|((g, p, a), n)| (g.to_string(), *p, *a, *n))
                .collect(),
            alerts: es
                .alerts_by_rule
                .iter()
                .map(|(id, n)| {
                    (
                        (*id).to_owned(),
                        severities.get(id).copied().unwrap_or("medium"),
                        *n,
                    )
                })
                .collect(),
            alerts_suppressed: es
                .suppressed_by_rule
                .iter()
                .map(|(id, n)| ((*id).to_owned(), *n))
                .collect(),
            lost_events: lost.into_iter().collect(),
            sinks: sink_stats.iter().map(Into::into).collect(),
            flow_table_entries: self.flow_entries,
            flow_table_capacity: u64::from(self.dp.limits().flows),
            programs: metrics::program_stats(self.dp.program_infos()),
            config_reloads: vec![
                ("success", self.stats.config_reloads_ok),
                ("failure", self.stats.config_reloads_failed),
            ],
            attached_interfaces: self.attached.len() as u64,
            pending_answers: self.tracker.pending() as u64,
        };
        self.metrics.update(&snap);
    }
}

#[derive(Serialize)]
struct GroupSummary<'a> {
    group: &'a str,
    protocol: &'static str,
    verdict: &'static str,
    #[serde(flatten)]
    stats: node_monitor_common::GroupStats,
}

/// The last line on stderr: every kernel, userspace and sink counter as one JSON object
/// (`{"type":"counters",...}`), so that a run's flagged = emitted + counted losses can be
/// checked from its output alone. stdout carries only records in the sinks' formats.
fn print_summary(
    dp: &Datapath,
    user: &UserStats,
    sinks: &[crate::sinks::SinkStats],
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let counters = dp.group_counters()?;
    let groups: Vec<GroupSummary<'_>> = counters
        .iter()
        .filter(|c| c.stats != Default::default())
        .map(|c| GroupSummary {
            group: &c.group,
            protocol: c.proto.name(),
            verdict: metrics::verdict_name(c.verdict),
            stats: c.stats,
        })
        .collect();
    let reasons = dp.reason_counters()?;
    let reasons: serde_json::Map<String, serde_json::Value> = node_monitor_common::reason::NAMES
        .iter()
        .zip(reasons)
        .filter(|(_, v)| *v != 0)
        .map(|(k, v)| ((*k).to_owned(), v.into()))
        .collect();
    let sinks: Vec<serde_json::Value> = sinks
        .iter()
        .map(|s| serde_json::json!({"sink": s.name, "kind": s.kind, "sent": s.sent, "dropped": s.dropped}))
        .collect();
    let summary = serde_json::json!({
        "type": "counters",
        "time": record::rfc3339(std::time::SystemTime::now()),
        "groups": groups,
        "reasons": reasons,
        "userspace": user,
        "sinks": sinks,
    });
    let mut err = std::io::stderr().lock();
    serde_json::to_writer(&mut err, &summary)?;
    err.write_all(b"\n")?;
    err.flush()?;
    Ok(())
}
