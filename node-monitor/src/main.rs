//! node-monitor command line.
use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use node_monitor::{
    config::{Config, DEFAULT_CONFIG_YAML},
    datapath::{self, AttachMode, DEFAULT_PIN_DIR, Datapath, LoadOptions},
    netif, run,
};
use tracing::info;

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
        /// Interface to watch (repeatable). Default: the interfaces that carry a default route.
        #[arg(long = "iface", env = "NODE_MONITOR_IFACE", value_delimiter = ',')]
        ifaces: Vec<String>,
        /// YAML config file. Default: the embedded config (`print-default-config`).
        #[arg(long, env = "NODE_MONITOR_CONFIG")]
        config: Option<PathBuf>,
        /// Ingress hook: XDP (native, else generic) or tc (tcx where available).
        #[arg(long, env = "NODE_MONITOR_ATTACH", value_enum, default_value = "xdp")]
        attach: AttachMode,
        /// Where maps and links are pinned (on a bpf filesystem).
        #[arg(long, env = "NODE_MONITOR_PIN_DIR", default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Pin nothing: programs detach when the daemon exits and counters start from zero.
        #[arg(long, env = "NODE_MONITOR_NO_PIN")]
        no_pin: bool,
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
    /// Detach everything a daemon pinned under the pin directory and remove the pins.
    Unpin {
        #[arg(long, env = "NODE_MONITOR_PIN_DIR", default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
}

fn init_logs(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
            config,
            attach,
            pin_dir,
            no_pin,
            log_format,
            log_level,
        } => {
            init_logs(log_format, &log_level);
            match run_daemon(ifaces, config, attach, (!no_pin).then_some(pin_dir)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run_daemon(
    mut ifaces: Vec<String>,
    config: Option<PathBuf>,
    attach: AttachMode,
    pin_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (cfg, origin) = match &config {
        Some(path) => (Config::load(path)?, path.display().to_string()),
        None => (Config::default_config(), "embedded default".to_owned()),
    };
    if ifaces.is_empty() {
        ifaces = netif::default_route_ifaces().context("reading the routing table")?;
        if ifaces.is_empty() {
            bail!(
                "no --iface given and no interface carries a default route; name one with --iface"
            );
        }
    }
    for i in &ifaces {
        if netif::ifindex(i).is_none() {
            bail!("interface `{i}` does not exist in this network namespace");
        }
    }
    let subnets = netif::subnets_of(&ifaces).context("reading interface addresses")?;
    let uses_subnets = cfg.groups.iter().any(|g| {
        g.allow.contains(&node_monitor::config::AllowEntry::Set(
            node_monitor::config::SymbolicSet::NodeSubnets,
        ))
    });
    if uses_subnets && subnets.is_empty() {
        tracing::warn!(
            ?ifaces,
            "node-subnets resolves to nothing: the interfaces have no addresses, so groups that allow node-subnets flag every source"
        );
    }
    info!(config = %origin, digest = %cfg.digest(), groups = cfg.groups.len(), ?subnets, "config loaded");
    let mut dp = Datapath::load(
        &cfg,
        &subnets,
        &LoadOptions {
            pin_dir: pin_dir.clone(),
        },
    )?;
    for iface in &ifaces {
        dp.attach(iface, attach)?;
    }
    dp.prune_stale_links()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(run::event_loop(dp, cfg))
}
