//! node-monitor command line.
use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use node_monitor::{
    config::{AttachMode, Config, DEFAULT_CONFIG_YAML},
    daemon,
    datapath::{self, DEFAULT_PIN_DIR},
};

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
        /// Interface name or glob to watch (repeatable). Default: the config's `interfaces`,
        /// else the interfaces that carry a default route.
        #[arg(long = "iface", env = "NODE_MONITOR_IFACE", value_delimiter = ',')]
        ifaces: Vec<String>,
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
            metrics_addr,
            log_format,
            log_level,
        } => {
            init_logs(log_format, &log_level);
            let opts = daemon::RunOptions {
                config_path: config,
                ifaces,
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

fn run_daemon(opts: daemon::RunOptions) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(daemon::run(opts))
}
