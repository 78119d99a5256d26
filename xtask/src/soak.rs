//! `cargo xtask soak [--minutes N]`: a benchmark, not a test (never part of `cargo xtask
//! test`). The release daemon runs in a lab of namespaces for N minutes under mixed real
//! traffic (allowed and denied TCP over IPv4 and IPv6, UDP to NodePorts, hping3 SYN bursts)
//! and faults:
//!
//! - a config reload every 10 s, alternating between two configs (a group comes and goes,
//!   sampling and the dedup window change);
//! - a watched veth in the node's namespace (`soak0`) that comes and goes every 5 s;
//! - an HTTP sink receiver that goes away 15 s in every minute and comes back;
//! - a syslog receiver that stalls 30 s in every minute (accepts, reads nothing);
//! - one `kill -9` of the daemon halfway, and a restart that adopts the pins.
//!
//! It samples the daemon's resident memory and open file descriptors every 2 s, reads the
//! final counters line (the way the end-to-end tests do) for the accounting identity, runs
//! `unpin` and checks that no pin, link, program or map of the run is left, and times the
//! restart to its first alert. The report goes to stdout and to the `## Soak` section of
//! node-monitor/BENCHMARKS.md; the samples and the daemons' logs to `target/soak/`.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::atomic::Ordering,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use node_monitor_lab::{BpfPinDir, Lab, Netns};
use serde_json::Value;

use crate::{
    soak_daemon::{Daemon, METRICS, metric_sum, scrape},
    soak_peers::{self as peers, HTTP_PORT, OUTSIDE_HOSTS, SYSLOG_PORT, Shared},
    soak_report::{self as report, Sample},
    soak_section::{Unpinned, section, write_section},
    tasks,
};

/// What `cargo xtask soak` was asked for.
#[derive(Debug)]
pub struct Options {
    /// Length of the run (at least 1 minute).
    pub minutes: f64,
    /// Use the daemon binary as it is: no setup, no build.
    pub no_build: bool,
    /// The daemon binary, run as it is (default: `target/release/node-monitor`, built
    /// first unless `no_build`).
    pub daemon: Option<PathBuf>,
    /// Where the `## Soak` section goes.
    pub output: PathBuf,
}

fn config(variant: u8) -> String {
    let lan = r#"["198.51.100.0/24", "2001:db8:1::/64"]"#;
    let etcd = if variant == 1 {
        format!(
            "  etcd-client:\n    protocols: [tcp]\n    ports: [\"2379\"]\n    allow: {lan}\n    action: monitor\n"
        )
    } else {
        String::new()
    };
    let (one_in, dedup) = if variant == 1 { (5, 20) } else { (10, 10) };
    format!(
        r#"# cargo xtask soak, config {variant}
interfaces: [eth0, "soak*"]
pod_interfaces: []
groups:
  kubelet:
    protocols: [tcp]
    ports: ["10250"]
    allow: {lan}
    action: monitor
  apiserver:
    protocols: [tcp]
    ports: ["6443"]
    allow: {lan}
    action: monitor
{etcd}  nodeport:
    protocols: [tcp, udp]
    ports: ["30000-32767"]
    allow: {lan}
    action: monitor
    detect_sweeps: true
sampling:
  allowed_flows_one_in: {one_in}
alerts:
  dedup_window_s: {dedup}
sinks:
  - {{type: stdout, format: ecs, flows: false}}
  - {{type: http, name: http, url: "http://127.0.0.1:{HTTP_PORT}/ingest", format: ocsf, flows: true, batch_interval_ms: 200, timeout_ms: 2000, max_retries: 2}}
  - {{type: syslog, name: syslog, address: "tcp://127.0.0.1:{SYSLOG_PORT}", format: cef, flows: true, queue: 200}}
metrics:
  listen: "{METRICS}"
cluster:
  enabled: "off"
"#
    )
}

/// Writes `text` over `path` the way a ConfigMap update lands (a new file renamed over it).
fn replace_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp-new");
    std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename over {}", path.display()))
}

/// The interface that comes and goes: a veth pair with both ends in the node's namespace.
fn churn_iface(node: &Netns, up: bool) -> anyhow::Result<()> {
    if up {
        node.ip(&[
            "link", "add", "soak0", "type", "veth", "peer", "name", "soak1",
        ])?;
        node.ip(&["link", "set", "soak0", "up"])?;
        node.ip(&["link", "set", "soak1", "up"])?;
    } else {
        node.ip(&["link", "del", "soak0"])?;
    }
    Ok(())
}

/// What the main loop saw, for the report.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) samples: Vec<Sample>,
    pub(crate) reloads_written: u64,
    pub(crate) iface_changes: u64,
    pub(crate) iface_errors: Vec<String>,
    pub(crate) scrapes_ok: u64,
    pub(crate) scrape_errors: Vec<String>,
    pub(crate) max_attached: f64,
    pub(crate) min_attached: f64,
    pub(crate) max_sink_queue: f64,
    pub(crate) alerts_metric_a: f64,
}

/// Runs the soak; see the module doc.
pub fn run(root: &Path, opts: &Options) -> anyhow::Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("the soak loads eBPF programs and builds network namespaces: run it as root");
    }
    if opts.minutes < 1.0 {
        bail!("--minutes must be at least 1");
    }
    if !opts.no_build {
        crate::setup::run(root)?;
        // A binary given with --daemon is run as it is.
        if opts.daemon.is_none() {
            tasks::build_daemon_release(root, &[])?;
        }
    }
    let bin = opts
        .daemon
        .clone()
        .unwrap_or_else(|| root.join("target/release/node-monitor"));
    if !bin.is_file() {
        bail!("no daemon binary at {}", bin.display());
    }
    let total = Duration::from_secs_f64(opts.minutes * 60.0);
    let out_dir = root.join("target").join("soak");
    std::fs::create_dir_all(&out_dir)?;
    let cfg = out_dir.join("config.yaml");
    for v in [0, 1] {
        std::fs::write(out_dir.join(format!("config-{v}.yaml")), config(v))?;
    }
    replace_file(&cfg, &config(0))?;

    println!("==> soak: lab");
    let lab = Lab::new()?;
    for h in OUTSIDE_HOSTS {
        lab.outside
            .ip(&["addr", "add", &format!("203.0.113.{h}/24"), "dev", "eth0"])?;
        lab.outside.ip(&[
            "addr",
            "add",
            &format!("2001:db8:2::{h:x}/64"),
            "dev",
            "eth0",
            "nodad",
        ])?;
    }
    // Small TCP buffers in the node's namespace, so that a stalled syslog receiver backs up
    // into the sink's queue within seconds instead of megabytes of socket buffer.
    lab.node.sysctl(&[
        "net.ipv4.tcp_wmem=4096 16384 32768",
        "net.ipv4.tcp_rmem=4096 16384 32768",
    ])?;
    let pin = BpfPinDir::new("soak")?;
    let t0 = Instant::now();
    let sh = Shared::new(t0 + total + Duration::from_secs(120));
    println!(
        "==> soak: {:.1} min, daemon {}, pins {}",
        opts.minutes,
        bin.display(),
        pin.path.display()
    );

    let result = thread::scope(|s| -> anyhow::Result<_> {
        let peers_up = [
            s.spawn(|| peers::node_listeners(&lab.node, &sh)),
            s.spawn(|| peers::http_receiver(&lab.node, &sh)),
            s.spawn(|| peers::syslog_receiver(&lab.node, &sh)),
        ];
        // The receivers listen before the daemon starts.
        thread::sleep(Duration::from_millis(300));
        let r = drive(&lab, &bin, &cfg, &pin, &sh, total, t0, s);
        sh.stop.store(true, Ordering::Relaxed);
        sh.stop_receivers.store(true, Ordering::Relaxed);
        for p in peers_up {
            match p.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("soak: a peer failed: {e:#}"),
                Err(_) => eprintln!("soak: a peer panicked"),
            }
        }
        r
    });
    let (mut daemons, mut seen, counters) = result?;

    // unpin: every pinned object of the run must go.
    let objects = report::pinned_objects(&pin.path).unwrap_or_else(|e| {
        eprintln!("soak: could not read the pins: {e:#}");
        Vec::new()
    });
    let mut unpin = lab.node.nsenter(&bin.to_string_lossy());
    unpin.args(["unpin", "--pin-dir"]).arg(&pin.path);
    let unpin_ok = node_monitor_lab::run_ok(unpin, Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left: Vec<report::BpfObject> = objects.clone();
    while !left.is_empty() && Instant::now() < deadline {
        left.retain(|o| report::alive(*o));
        thread::sleep(Duration::from_millis(100));
    }
    let pins_left = if pin.path.exists() {
        pin.entries()
    } else {
        Vec::new()
    };
    let xdp_left = lab
        .node
        .ip(&["-d", "link", "show"])
        .map_or(true, |l| l.contains("prog/xdp") || l.contains(" xdp"));

    // Logs and samples for a closer look.
    for (i, d) in daemons.iter().enumerate() {
        std::fs::write(
            out_dir.join(format!("daemon-{i}.stderr")),
            d.stderr().join("\n"),
        )?;
    }
    let mut csv = String::from("t_s,life,age_s,rss_kib,rss_anon_kib,rss_file_kib,fds\n");
    for s in &seen.samples {
        let _ = writeln!(
            csv,
            "{:.1},{},{:.1},{},{},{},{}",
            s.t, s.life, s.age, s.rss.total, s.rss.anon, s.rss.file, s.fds
        );
    }
    std::fs::write(out_dir.join("samples.csv"), csv)?;

    let md = section(
        opts,
        &mut daemons,
        &mut seen,
        &counters,
        &sh,
        Unpinned {
            ok: unpin_ok.as_ref().err().map(|e| format!("{e:#}")),
            objects: objects.len(),
            left,
            pins_left,
            xdp_left,
        },
    );
    print!("{md}");
    write_section(&root.join(&opts.output), &md)?;
    println!("wrote the Soak section of {}", opts.output.display());
    Ok(())
}

/// The run itself: daemon A, the faults, `kill -9` halfway, daemon B, SIGTERM. Returns both
/// daemons, what was seen, and B's counters line.
#[expect(
    clippy::too_many_arguments,
    reason = "the soak's one driver, called once"
)]
fn drive<'s, 'e: 's>(
    lab: &'e Lab,
    bin: &Path,
    cfg: &Path,
    pin: &BpfPinDir,
    sh: &'e Shared,
    total: Duration,
    t0: Instant,
    s: &'s thread::Scope<'s, 'e>,
) -> anyhow::Result<(Vec<Daemon>, Seen, Value)> {
    let mut seen = Seen {
        min_attached: f64::MAX,
        ..Seen::default()
    };
    let mut daemons = vec![Daemon::start(&lab.node, bin, cfg, &pin.path)?];
    println!(
        "==> soak: daemon A ready after {:?}",
        daemons[0].ready_after
    );
    let traffic = [
        s.spawn(|| peers::cp_traffic(&lab.cp, sh)),
        s.spawn(|| peers::outside_traffic(&lab.outside, sh)),
        s.spawn(|| {
            peers::syn_bursts(&lab.outside, sh);
            Ok(())
        }),
    ];
    let half = total / 2;
    let mut killed = false;
    let mut iface_up = false;
    let mut variant = 0u8;
    let mut sec: u64 = 0;
    loop {
        // One tick a second, on the soak's clock.
        let next = t0 + Duration::from_secs(sec + 1);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            thread::sleep(d);
        }
        sec += 1;
        let now = t0.elapsed();
        if now >= total {
            break;
        }
        let in_minute = sec % 60;
        sh.http_up
            .store(!(35..50).contains(&in_minute), Ordering::Relaxed);
        sh.syslog_reading
            .store(!(10..40).contains(&in_minute), Ordering::Relaxed);
        if sec.is_multiple_of(10) {
            variant ^= 1;
            replace_file(cfg, &config(variant))?;
            seen.reloads_written += 1;
        }
        if sec.is_multiple_of(5) {
            iface_up = !iface_up;
            match churn_iface(&lab.node, iface_up) {
                Ok(()) => seen.iface_changes += 1,
                Err(e) => seen.iface_errors.push(format!("{e:#}")),
            }
        }
        let life = u8::from(killed);
        let d = &daemons[usize::from(life)];
        if sec.is_multiple_of(2) {
            let pid = d.pid();
            if let (Some(rss), Some(fds)) = (report::rss(pid), report::open_fds(pid)) {
                seen.samples.push(Sample {
                    t: now.as_secs_f64(),
                    life,
                    age: d.started.elapsed().as_secs_f64(),
                    rss,
                    fds,
                    iface_settled_down: !iface_up && sec % 5 >= 3,
                });
            }
        }
        if sec.is_multiple_of(5) {
            match scrape(&lab.node) {
                Ok(body) => {
                    seen.scrapes_ok += 1;
                    if let Some(a) = metric_sum(&body, "node_monitor_attached_interfaces") {
                        seen.max_attached = seen.max_attached.max(a);
                        seen.min_attached = seen.min_attached.min(a);
                    }
                    if let Some(q) = metric_sum(&body, "node_monitor_sink_queue_length") {
                        seen.max_sink_queue = seen.max_sink_queue.max(q);
                    }
                    if !killed {
                        seen.alerts_metric_a =
                            metric_sum(&body, "node_monitor_alerts_total").unwrap_or(0.0);
                    }
                }
                Err(e) => seen
                    .scrape_errors
                    .push(format!("{:.0} s: {e:#}", now.as_secs_f64())),
            }
        }
        if !killed && now >= half {
            println!(
                "==> soak: kill -9 of daemon A at {:.0} s",
                now.as_secs_f64()
            );
            daemons[0].kill9()?;
            killed = true;
            // A gap of 3 s with nobody reading; the traffic goes on.
            thread::sleep(Duration::from_secs(3));
            daemons.push(Daemon::start(&lab.node, bin, cfg, &pin.path)?);
            println!(
                "==> soak: daemon B ready after {:?}",
                daemons[1].ready_after
            );
        }
        if sec.is_multiple_of(30) {
            println!(
                "    {:>4} s: {} samples, {} scrapes, alerts A {} B {}",
                now.as_secs(),
                seen.samples.len(),
                seen.scrapes_ok,
                daemons[0].alerts.load(Ordering::Relaxed),
                daemons
                    .get(1)
                    .map_or(0, |d| d.alerts.load(Ordering::Relaxed))
            );
        }
    }
    sh.stop.store(true, Ordering::Relaxed);
    for t in traffic {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("soak: traffic failed: {e:#}"),
            Err(_) => eprintln!("soak: traffic panicked"),
        }
    }
    // Let the last answers and batches settle, then stop B (the receivers still take what
    // its sinks drain at exit; the syslog receiver reads again).
    sh.syslog_reading.store(true, Ordering::Relaxed);
    sh.http_up.store(true, Ordering::Relaxed);
    thread::sleep(Duration::from_secs(2));
    let last = daemons.last_mut().context("no daemon")?;
    let counters = last.stop()?;
    Ok((daemons, seen, counters))
}
