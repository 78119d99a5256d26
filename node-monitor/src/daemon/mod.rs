//! The daemon: config → datapath → record → answers → detect → render → sinks; counters →
//! metrics; config reloads; interfaces that come and go.
//!
//! One task owns the data path and the engine (neither is shared); sinks and the metrics
//! server run on their own tasks, fed without blocking, so a slow consumer never stalls the
//! ring-buffer reader. This file starts the daemon and runs its event loop;
//! [`drain`] reads the ring buffer in budgets, so that a flood never holds the loop;
//! [`housekeeping`] is the 500 ms round (interfaces, losses, metrics), [`reload`] applies a
//! new config, [`summary`] prints the counters at exit.
mod audit;
mod cluster;
mod drain;
mod housekeeping;
mod pod_ifaces;
mod reload;
mod summary;
mod workloads;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::Instant,
};

use anyhow::{Context as _, bail};
use aya::maps::{MapData, RingBuf};
use drain::{DRAIN_BUDGET, DRAIN_SLICE, Drained, drain_records};
use pod_ifaces::PodIfaces;
pub use summary::UserStats;
use summary::print_summary;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    time::{Duration, interval},
};
use tracing::{info, warn};

use crate::{
    answers::{GroupNames, Tracker},
    config::{AllowEntry, AttachMode, Config, SymbolicSet},
    datapath::{Datapath, GroupIds, LoadOptions},
    detect::{Alert, Engine, OutputItem},
    metrics::{self, BpfStats, Metrics},
    netif,
    record::{self, Answer, Clock, FlowRecord, Protocol, RecordType},
    render::{self, Observer},
    sinks::{Renderer, Sinks},
    watch::{ConfigWatcher, IfaceWatcher},
};

/// How often pending attempts are checked against the answer timeout and the ring buffer is
/// read whether or not the programs woke the daemon (they wake it only at each eighth of the
/// ring: a lone alert waits here for at most one tick).
const TICK: Duration = Duration::from_millis(50);
/// Ticks between housekeeping rounds (interfaces, counters, metrics, alert windows): 500 ms,
/// so that a new interface is attached well within 2 s.
const HOUSEKEEPING_TICKS: u32 = 10;
/// Housekeeping rounds between flow-table walks (the walk costs one syscall per entry).
const FLOW_COUNT_ROUNDS: u32 = 20;
/// How long the ring buffer is read at shutdown, at most.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);
/// How long sinks get to flush at shutdown.
const SINK_SHUTDOWN: Duration = Duration::from_secs(5);

/// What the command line says; it overrides the config file where both speak.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub config_path: Option<PathBuf>,
    /// Interface names or globs; empty: the config's `interfaces`, else default-route ones.
    pub ifaces: Vec<String>,
    /// The pods' interface patterns (`--pod-iface`; `Some(vec![])`: `--no-pod-ifaces`);
    /// `None`: the config's `pod_interfaces`.
    pub pod_ifaces: Option<Vec<String>>,
    pub attach: Option<AttachMode>,
    pub pin_dir: Option<PathBuf>,
    pub metrics_addr: Option<SocketAddr>,
}

impl GroupNames for GroupIds {
    fn group_name(&self, id: u8) -> std::borrow::Cow<'_, str> {
        self.name(id)
            .map_or_else(|| format!("group-{id}").into(), Into::into)
    }
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
    let (cfg, origin, cfg_text) = match &opts.config_path {
        Some(path) => {
            let (cfg, text) = Config::load_with_text(path)?;
            (cfg, path.display().to_string(), Some(text))
        }
        None => (
            Config::default_config(),
            "embedded default".to_owned(),
            None,
        ),
    };
    let mode = opts.attach.or(cfg.attach).unwrap_or(AttachMode::Xdp);
    let cli_ifaces = !opts.ifaces.is_empty();
    let patterns = if cli_ifaces {
        opts.ifaces.clone()
    } else {
        cfg.interfaces.clone()
    };
    // A name given outright must exist at start; globs may match nothing yet.
    for p in patterns.iter().filter(|p| crate::config::is_name(p)) {
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
    // Cluster identity and allow sets (issue 8): started before the maps are written, never
    // waited for; /readyz does not depend on it. The embedded default uses the cluster's
    // sets when a cluster is found.
    let cluster = cluster::start_cluster(&cfg).await?;
    let cfg = if cluster.is_some() && opts.config_path.is_none() {
        info!(
            "a cluster was found: the embedded default allows control-plane-nodes, apiserver-endpoints and nodes on the kubelet, control-plane-nodes on etcd"
        );
        cfg.with_cluster_defaults()
    } else {
        cfg
    };
    info!(config = %origin, digest = %cfg.digest(), groups = cfg.groups.len(), ?subnets, "config loaded");
    let mut dp = Datapath::load(
        &cfg,
        &subnets,
        &LoadOptions {
            pin_dir: opts.pin_dir.clone(),
        },
    )?;
    // Before anything is attached: the cluster's sets (node-subnets in their place until
    // the cache is synced).
    let applied_sets = cluster::current_sets(cluster.as_ref(), &cfg, &subnets);
    if cluster.is_some() && cfg.uses_cluster_sets() {
        dp.apply_config_with(&cfg, &applied_sets)?;
    }
    let mut attached = BTreeSet::new();
    for iface in &initial {
        dp.attach(iface, mode)?;
        attached.insert(iface.clone());
    }
    let mut pod_ifaces = PodIfaces::new(
        opts.pod_ifaces
            .clone()
            .unwrap_or_else(|| cfg.pod_interfaces.clone()),
        opts.pod_ifaces.is_some(),
    );
    pod_ifaces.sync(&mut dp, &attached);
    // After every attach: the pins of interfaces attached again are adopted, not pruned.
    dp.prune_stale_links()?;
    // Flood summaries are per window: whatever adopted maps hold is an earlier run's.
    if let Err(e) = dp.reset_flood_sketches() {
        warn!(error = %e, "cannot reset the flood summaries; the first flood alert may count an earlier run's sources");
    }
    let bpf_stats = match BpfStats::enable() {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "cannot turn on the kernel's BPF run-time statistics; program run time metrics stay at 0");
            None
        }
    };

    let metrics = Metrics::new();
    let listen = opts.metrics_addr.unwrap_or(cfg.metrics.listen);
    let server = metrics::Server::start(listen, &cfg.metrics, &metrics).await?;

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

    let (auditor, audit_done) = audit::Auditor::new(cfg.audit.clone());
    let mut d = Daemon {
        audit: auditor,
        engine: Engine::new(&cfg.alerts, sweep_groups(&cfg)),
        tracker: Tracker::new(cfg.limits.answer_timeout_ms),
        cfg,
        cfg_text,
        opts,
        cli_ifaces,
        mode,
        dp,
        ifaces,
        attached,
        pod_ifaces,
        subnets,
        sinks,
        metrics,
        stats: UserStats::default(),
        answers: BTreeMap::new(),
        source_workloads: workloads::SourceWorkloads::default(),
        records: Vec::new(),
        alerts: Vec::new(),
        flow_entries: 0,
        rounds: 0,
        _bpf_stats: bpf_stats,
        server,
        cluster,
        applied_sets,
        sets_generation: u64::MAX,
        sets_retry_at: None,
    };
    // The loss counters as they are now (pinned ones keep an earlier run's) are the
    // baseline: only what is lost from here on counts, and nothing in the first round is
    // missed.
    d.read_losses();
    d.update_metrics(true);
    d.metrics.set_ready(true);
    info!(
        attachments = ?d.dp.attachments().map(|a| format!("{}@{} ({}{})", a.hook.as_str(), a.iface, a.mode, if a.adopted { ", adopted" } else { "" })).collect::<Vec<_>>(),
        sinks = ?d.sinks.names(),
        metrics = %d.server.local_addr(),
        "ready"
    );
    let result = d.event_loop(ring, config_changes, audit_done).await;
    d.server.stop().await;
    result
}

struct Daemon {
    cfg: Config,
    /// The text `cfg` was read from (`None`: the embedded default): the audit process is
    /// handed it, so it audits the config in force even when the file has since changed.
    cfg_text: Option<String>,
    opts: RunOptions,
    cli_ifaces: bool,
    mode: AttachMode,
    dp: Datapath,
    ifaces: IfaceWatcher,
    attached: BTreeSet<String>,
    /// The pods' host-side interfaces (tc), apart from the uplinks above.
    pod_ifaces: PodIfaces,
    subnets: Vec<ipnet::IpNet>,
    engine: Engine,
    tracker: Tracker,
    sinks: Sinks,
    metrics: Metrics,
    stats: UserStats,
    /// Flagged connections by (group, protocol, answer).
    answers: BTreeMap<(Arc<str>, Protocol, Option<Answer>), u64>,
    /// Flagged connections by source workload (with a cluster watched), bounded.
    source_workloads: workloads::SourceWorkloads,
    records: Vec<FlowRecord>,
    alerts: Vec<Alert>,
    flow_entries: u64,
    rounds: u32,
    _bpf_stats: Option<BpfStats>,
    server: metrics::Server,
    /// The cluster cache, when a cluster is watched.
    cluster: Option<crate::cluster::Cluster>,
    /// The set values the allowlists were last written with.
    applied_sets: crate::config::SetValues,
    /// The cache generation those were computed from.
    sets_generation: u64,
    /// When to write the sets again after a failed write (the generation alone would wait
    /// for the next change in the cluster).
    sets_retry_at: Option<std::time::Instant>,
    /// The periodic posture audit.
    audit: audit::Auditor,
}

impl Daemon {
    async fn event_loop(
        &mut self,
        mut ring: AsyncFd<RingBuf<MapData>>,
        mut config_changes: Option<(ConfigWatcher, tokio::sync::mpsc::Receiver<()>)>,
        mut audit_done: tokio::sync::mpsc::Receiver<audit::Done>,
    ) -> anyhow::Result<()> {
        let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut sighup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let mut tick = interval(TICK);
        let mut ticks = 0u32;
        // Records left in the ring after a read that used up its budget: read on the next
        // turn, after yielding to the runtime (the sinks and the metrics server share this
        // thread), and after whatever else is due. `biased`: signals, the tick and reloads
        // come before the ring, so a flood that keeps it readable never starves them.
        let mut backlog = false;
        loop {
            tokio::select! {
                biased;
                _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
                _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
                _ = tick.tick() => {
                    // The programs wake this reader only when the ring's unread bytes
                    // cross an eighth of it (`ring_wake_mask`): a lone event, or the tail of
                    // a burst, is read here, at most one tick after its commit.
                    backlog |= self.drain(ring.get_mut()) == Drained::Yielded;
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
                // The posture audit runs in a child process of its own: here it is only
                // started, given up on (its process group killed), or its findings handed to
                // the sinks.
                () = tokio::time::sleep_until(self.audit.wake_at()), if self.audit.active() => {
                    self.audit_due();
                }
                Some(done) = audit_done.recv() => self.audit_done(done),
                () = tokio::task::yield_now(), if backlog => {
                    backlog = self.drain(ring.get_mut()) == Drained::Yielded;
                }
                guard = ring.readable_mut(), if !backlog => {
                    let mut guard = guard.context("waiting on the ring buffer")?;
                    if self.drain(guard.get_inner_mut()) == Drained::Yielded {
                        // Readiness stays set; the backlog branch reads on.
                        backlog = true;
                    } else {
                        guard.clear_ready();
                        // A record committed between the last read and clear_ready() would
                        // otherwise wait for the next wake-up or tick. Reading again after
                        // clearing closes that window.
                        backlog = self.drain(guard.get_inner_mut()) == Drained::Yielded;
                    }
                }
            }
            self.dispatch();
        }
        // Drain what the kernel already queued (for at most SHUTDOWN_DRAIN: a flood may never
        // let it run dry), report every pending attempt and alert series, let the sinks
        // flush, then print the counters.
        let until = Instant::now() + SHUTDOWN_DRAIN;
        while self.drain(ring.get_mut()) == Drained::Yielded {
            self.dispatch();
            if Instant::now() >= until {
                warn!(
                    "the ring buffer still had records after {SHUTDOWN_DRAIN:?}; left unread at shutdown (a pinned ring keeps them for the next run)"
                );
                break;
            }
        }
        let clock = Clock::now();
        let dp = &self.dp;
        self.tracker
            .flush(|k| dp.flow(k), dp.group_ids(), &clock, &mut self.records);
        self.dispatch();
        // The losses since the last housekeeping round, before the open flood window closes.
        self.read_losses();
        let dp = &mut self.dp;
        self.engine.flush_with(&mut self.alerts, &mut |g: &str| {
            housekeeping::take_sketch(dp, g)
        });
        self.dispatch();
        // No new flow-table count at exit: the last published figure stands.
        self.update_metrics(false);
        let sinks = std::mem::replace(&mut self.sinks, Sinks::start(&[], Arc::new(|_, _, _| {}))?);
        let sink_stats = sinks.shutdown(SINK_SHUTDOWN).await;
        self.stats.tracker = self.tracker.stats;
        let detectors = housekeeping::detector_snapshots(&self.engine.stats(), &self.tracker);
        // The cluster's watches stop first: the summary is the last line on stderr.
        if let Some(cluster) = self.cluster.take() {
            cluster.shutdown().await;
        }
        print_summary(&self.dp, &self.stats, &sink_stats, &detectors)?;
        Ok(())
    }

    /// Reads the records the ring buffer holds now, at most one budget of them
    /// ([`drain::DRAIN_BUDGET`] records or [`drain::DRAIN_SLICE`]).
    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> Drained {
        let clock = Clock::now();
        let now = Clock::ktime_now();
        let (tracker, stats, records, groups) = (
            &mut self.tracker,
            &mut self.stats,
            &mut self.records,
            self.dp.group_ids(),
        );
        drain_records(ring, DRAIN_BUDGET, DRAIN_SLICE, |item| {
            stats.events_read += 1;
            match record::decode(item) {
                Ok(ev) => tracker.handle(ev, now, groups, &clock, records),
                Err(e) => {
                    stats.events_malformed += 1;
                    warn!(error = %e, "malformed ring buffer record");
                }
            }
        })
    }

    /// Completed records → the alert engine and the sinks; alerts → the sinks. Never blocks.
    fn dispatch(&mut self) {
        if self.records.is_empty() && self.alerts.is_empty() {
            return;
        }
        let now = Instant::now();
        Self::enrich(self.cluster.as_ref(), &mut self.records);
        for rec in self.records.drain(..) {
            if rec.record_type.alerts() {
                *self
                    .answers
                    .entry((rec.group.clone(), rec.protocol, rec.answer))
                    .or_default() += 1;
                self.source_workloads.count(&rec);
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
}
