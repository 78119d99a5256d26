//! node-monitor command line.
use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use node_monitor::{
    config::{AttachMode, Config, DEFAULT_CONFIG_YAML},
    daemon,
    datapath::{self, DEFAULT_PIN_DIR},
    posture::identity::Identity,
};

/// How long `audit` and `firewall` wait for one list of the cluster.
const CLUSTER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Parser)]
#[command(
    name = "node-monitor",
    version,
    about = "eBPF flow monitor for the ports that protect a Kubernetes node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Attach to interfaces and report flagged connections and sampled flows as JSON lines on stdout.
    Run {
        /// Interface name or glob to watch (repeatable; `default-route`: the interfaces that
        /// carry a default route). Default: the config's `interfaces`, else those.
        #[arg(long = "iface", env = "NODE_MONITOR_IFACE", value_delimiter = ',')]
        ifaces: Vec<String>,
        /// Pods' host-side interface name or glob to watch as well, with tc (repeatable).
        /// Default: the config's `pod_interfaces` (the common CNIs' veths and bridges).
        #[arg(
            long = "pod-iface",
            env = "NODE_MONITOR_POD_IFACE",
            value_delimiter = ',',
            conflicts_with = "no_pod_ifaces"
        )]
        pod_ifaces: Vec<String>,
        /// Watch no pod interface, whatever the config's `pod_interfaces` says.
        #[arg(long, env = "NODE_MONITOR_NO_POD_IFACES")]
        no_pod_ifaces: bool,
        /// YAML config file. Default: the embedded config (`print-default-config`).
        #[arg(long, env = "NODE_MONITOR_CONFIG")]
        config: Option<PathBuf>,
        /// Ingress hook: XDP (native, else generic) or tc (tcx where available). Default: the
        /// config's `attach`, else xdp.
        #[arg(long, env = "NODE_MONITOR_ATTACH", value_enum)]
        attach: Option<AttachMode>,
        /// Where maps and links are pinned (on a bpf filesystem).
        #[arg(long, env = "NODE_MONITOR_PIN_DIR", default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Pin nothing: programs detach when the daemon exits and counters start from zero.
        #[arg(long, env = "NODE_MONITOR_NO_PIN")]
        no_pin: bool,
        /// Metrics and health endpoint (`/metrics`, `/healthz`, `/readyz`). Default: the
        /// config's `metrics.listen`, else 127.0.0.1:9630.
        #[arg(long, env = "NODE_MONITOR_METRICS_ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
        /// Log format on stderr.
        #[arg(
            long,
            env = "NODE_MONITOR_LOG_FORMAT",
            value_enum,
            default_value = "text"
        )]
        log_format: LogFormat,
        /// Log level (overridden by RUST_LOG).
        #[arg(long, env = "NODE_MONITOR_LOG_LEVEL", default_value = "info")]
        log_level: String,
    },
    /// Validate a config file: exit 0 if valid, 1 with file:line:column and the field if not.
    CheckConfig { file: PathBuf },
    /// Print the embedded default config.
    PrintDefaultConfig,
    /// Audit the node's posture: listeners on the catalog ports, the kubelet's API probed
    /// without credentials, the kubelet's and the API server's settings, the firewall, and
    /// (with a reachable cluster) etcd and NodePort listeners by identity. Exit 0 when nothing
    /// at or above --fail-on is found, 1 otherwise, 2 on a usage error.
    Audit {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: node_monitor::render::audit::Format,
        /// The lowest severity that makes the exit status 1.
        #[arg(long, value_enum, default_value = "high")]
        fail_on: node_monitor::posture::Severity,
        /// The kubelet config file. Default: the running kubelet's --config, else
        /// /var/lib/kubelet/config.yaml when present.
        #[arg(long)]
        kubelet_config: Option<PathBuf>,
        /// The API server's static-pod manifest. Default:
        /// /etc/kubernetes/manifests/kube-apiserver.yaml when present.
        #[arg(long)]
        apiserver_manifest: Option<PathBuf>,
        /// The config whose groups' ports the listener and firewall checks look at. Default: the
        /// embedded config.
        #[arg(long, env = "NODE_MONITOR_CONFIG")]
        config: Option<PathBuf>,
        /// Interfaces whose prefixes `node-subnets` stands for (as for `firewall`).
        #[arg(long = "iface", value_delimiter = ',')]
        ifaces: Vec<String>,
        /// Where a running daemon pins its maps: its counters and flow table tell which open
        /// ports saw sources outside their allowlist, and which of those the node accepted.
        #[arg(long, env = "NODE_MONITOR_PIN_DIR", default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Internal (hidden): the daemon's audit process. Reads the daemon's view (a
        /// `posture::child::Job`, JSON) on stdin instead of the flags above, runs once within
        /// its timeout, prints the report (`--format json`) and exits 0, or prints why it
        /// failed on stderr and exits 3.
        #[arg(long = "daemon-job", hide = true)]
        daemon_job: bool,
    },
    /// Print netfilter rules (iptables-restore or nft -f input) that allow each group's
    /// allowlist on its ports and drop the rest. Printed for review, never applied. Cluster
    /// sets (control-plane-nodes, nodes, ...) are read from the cluster (KUBECONFIG or
    /// in-cluster) once; without a cluster such a config is refused.
    Firewall {
        #[arg(long, value_enum)]
        format: node_monitor::firewall::Format,
        /// YAML config file. Default: the embedded config.
        #[arg(long, env = "NODE_MONITOR_CONFIG")]
        config: Option<PathBuf>,
        /// Interfaces whose prefixes `node-subnets` stands for (names or globs). Default: the
        /// config's `interfaces`, else the interfaces that carry a default route.
        #[arg(long = "iface", value_delimiter = ',')]
        ifaces: Vec<String>,
    },
    /// Detach everything a daemon pinned under the pin directory and remove the pins.
    Unpin {
        #[arg(long, env = "NODE_MONITOR_PIN_DIR", default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
}

/// Logs on stderr. Colour (ANSI escape codes) only when stderr is a terminal and `NO_COLOR`
/// is unset: `kubectl logs`, journald and files get plain text.
fn init_logs(format: LogFormat, level: &str) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} groups, digest {})",
                    file.display(),
                    cfg.groups.len(),
                    cfg.digest()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::PrintDefaultConfig => {
            print!("{DEFAULT_CONFIG_YAML}");
            ExitCode::SUCCESS
        }
        Command::Audit {
            format,
            fail_on,
            kubelet_config,
            apiserver_manifest,
            config,
            ifaces,
            pin_dir,
            daemon_job,
        } => {
            if daemon_job {
                return audit_job(format);
            }
            let (cfg, _, subnets) = match config_and_subnets(config.as_deref(), ifaces) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::from(2);
                }
            };
            // The identity checks read the cluster once, when one is reachable; without it
            // they are skipped and the report says why.
            let identity = rt
                .block_on(Identity::one_shot(&cfg.cluster, CLUSTER_WAIT))
                .unwrap_or_else(Identity::Unavailable);
            // The embedded config as `run` applies it: the cluster's sets on the kubelet and
            // etcd when a cluster is found.
            let cfg = match (&config, &identity) {
                (None, Identity::Cluster { .. }) => cfg.with_cluster_defaults(),
                _ => cfg,
            };
            let opts = node_monitor::posture::Options {
                kubelet_config,
                apiserver_manifest,
                config: cfg,
                node_subnets: subnets,
                pin_dir: Some(pin_dir),
                identity,
                ..node_monitor::posture::Options::default()
            };
            let report = rt.block_on(node_monitor::posture::audit(&opts));
            let observer = node_monitor::render::Observer::local();
            print!(
                "{}",
                node_monitor::render::audit::render(&report, format, &observer)
            );
            if report.worst().is_some_and(|w| w >= fail_on) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Firewall {
            format,
            config,
            ifaces,
        } => match firewall(format, config.as_deref(), ifaces) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Unpin { pin_dir } => match datapath::unpin_all(&pin_dir) {
            Ok(()) => {
                eprintln!("removed {}", pin_dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot remove {}: {e}", pin_dir.display());
                ExitCode::FAILURE
            }
        },
        Command::Run {
            ifaces,
            pod_ifaces,
            no_pod_ifaces,
            config,
            attach,
            pin_dir,
            no_pin,
            metrics_addr,
            log_format,
            log_level,
        } => {
            init_logs(log_format, &log_level);
            for p in &pod_ifaces {
                if let Err(e) = node_monitor::config::check_pod_iface_pattern(p) {
                    eprintln!("error: --pod-iface: {e}");
                    return ExitCode::from(2);
                }
            }
            let opts = daemon::RunOptions {
                config_path: config,
                ifaces,
                pod_ifaces: if no_pod_ifaces {
                    Some(Vec::new())
                } else {
                    (!pod_ifaces.is_empty()).then_some(pod_ifaces)
                },
                attach,
                pin_dir: (!no_pin).then_some(pin_dir),
                metrics_addr,
            };
            match run_daemon(opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The firewall rules for `config` (or the embedded config) on this node. The embedded
/// config is taken as `run` applies it: with the cluster defaults
/// ([`Config::with_cluster_defaults`]) when a cluster is found.
fn firewall(
    format: node_monitor::firewall::Format,
    config: Option<&std::path::Path>,
    ifaces: Vec<String>,
) -> anyhow::Result<String> {
    let (cfg, origin, subnets) = config_and_subnets(config, ifaces)?;
    let embedded = config.is_none();
    let cluster = node_monitor::firewall::cluster_entries(&cfg);
    if cluster.is_empty() && !embedded {
        return Ok(node_monitor::firewall::render(
            &cfg, &subnets, format, &origin,
        ));
    }
    // The cluster's sets, from one list of the cluster.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let why = match rt.block_on(Identity::one_shot(&cfg.cluster, CLUSTER_WAIT)) {
        Ok(Identity::Cluster { snapshot, .. }) => {
            let (cfg, origin) = if embedded {
                (
                    cfg.with_cluster_defaults(),
                    format!(
                        "{origin} with the cluster defaults `run` applies when a cluster is found (kubelet: control-plane-nodes, apiserver-endpoints, nodes; etcd: control-plane-nodes)"
                    ),
                )
            } else {
                (cfg, origin)
            };
            let sets = node_monitor::cluster::set_values(&snapshot, &cfg, &subnets);
            let api = std::env::var("KUBECONFIG").map_or_else(
                |_| "the cluster's API server".to_owned(),
                |k| format!("the cluster of KUBECONFIG={k}"),
            );
            let who = |ip| {
                snapshot
                    .address(ip)
                    .and_then(node_monitor::firewall::identity_label)
            };
            return Ok(node_monitor::firewall::render_with(
                &cfg,
                &sets,
                format,
                &origin,
                Some(&node_monitor::firewall::ClusterSource {
                    from: &api,
                    who: &who,
                }),
            ));
        }
        // No cluster to use: the embedded config as `run` applies it without one.
        Ok(Identity::Unavailable(_)) if cluster.is_empty() => {
            return Ok(node_monitor::firewall::render(
                &cfg, &subnets, format, &origin,
            ));
        }
        Ok(Identity::Unavailable(why)) | Err(why) => why,
        // A one-shot read gives a cache, never the daemon's facts.
        Ok(Identity::Facts(_)) => "the cluster's sets need the cluster's objects".to_owned(),
    };
    if cluster.is_empty() {
        anyhow::bail!(
            "Kubernetes credentials were found but the cluster could not be read ({why}); `run` on {origin} would allow the cluster's sets on the kubelet and etcd once it reads the cluster, so rules for the no-cluster defaults would not be what it enforces: fix the credentials, or give a config (`print-default-config`) with `cluster.enabled: off` for the rules without a cluster"
        );
    }
    anyhow::bail!(
        "{origin} allows sets that only the cluster resolves ({}), and the cluster could not be read ({why}); rules printed without their addresses would drop the sources they allow: give credentials (KUBECONFIG) or name those sources as CIDRs in a config for `firewall`",
        cluster.join("; ")
    )
}

/// `node-monitor audit --daemon-job`: one run of the daemon's periodic audit, in the process
/// the daemon started for it (`posture::child`).
fn audit_job(format: node_monitor::render::audit::Format) -> ExitCode {
    use std::io::Read as _;

    use node_monitor::posture::child;
    let fail = |why: &str| {
        // One line: the daemon logs it as the run's error.
        eprintln!("{}", why.replace('\n', "; "));
        ExitCode::from(child::EXIT_RUN_FAILED)
    };
    let mut text = String::new();
    // The job is a few kilobytes (the NodePorts of a cluster at most); bounded all the same.
    if let Err(e) = std::io::stdin().take(1 << 22).read_to_string(&mut text) {
        return fail(&format!("the audit process could not read its job: {e}"));
    }
    let job: child::Job = match serde_json::from_str(&text) {
        Ok(j) => j,
        Err(e) => return fail(&format!("the audit process's job is not valid: {e}")),
    };
    let timeout = std::time::Duration::from_secs(job.timeout_s);
    let opts = match child::options(job) {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the audit's runtime: {e}")),
    };
    let report = rt.block_on(async {
        tokio::time::timeout(timeout, node_monitor::posture::audit(&opts)).await
    });
    // Whatever the timeout cut short (a tool, a connection) is dropped, not waited for; the
    // daemon kills this process's group when it has exited.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    match report {
        Ok(report) => {
            let observer = node_monitor::render::Observer::local();
            print!(
                "{}",
                node_monitor::render::audit::render(&report, format, &observer)
            );
            ExitCode::SUCCESS
        }
        Err(_) => fail(&format!("timed out after {}s", timeout.as_secs())),
    }
}

/// The config (`config`, else the embedded one) with its origin, and what `node-subnets`
/// stands for on this node (`ifaces`, else the config's interfaces, else the default-route
/// interfaces).
fn config_and_subnets(
    config: Option<&std::path::Path>,
    ifaces: Vec<String>,
) -> anyhow::Result<(Config, String, Vec<ipnet::IpNet>)> {
    let (cfg, origin) = match config {
        Some(p) => (Config::load(p)?, p.display().to_string()),
        None => (
            Config::from_yaml(DEFAULT_CONFIG_YAML, "<embedded>")?,
            "the embedded config".to_owned(),
        ),
    };
    let patterns = if ifaces.is_empty() {
        cfg.interfaces.clone()
    } else {
        ifaces
    };
    let names = node_monitor::watch::IfaceWatcher::new(patterns)
        .poll()
        .added;
    let subnets = node_monitor::netif::subnets_of(&names).context("reading interface addresses")?;
    if subnets.is_empty() {
        eprintln!(
            "warning: node-subnets resolves to nothing (interfaces {names:?}): groups that allow node-subnets allow no source; name the node's interfaces with --iface"
        );
    }
    Ok((cfg, origin, subnets))
}

fn run_daemon(opts: daemon::RunOptions) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = rt.block_on(daemon::run(opts));
    // Work still on a blocking thread does not hold the exit up. A posture audit still
    // running is a process: dropping its task kills its process group.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
