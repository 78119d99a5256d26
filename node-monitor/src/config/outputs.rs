//! The output model: where alerts and flow records go (`SinkSpec`, `SinkKind`) and in which
//! format (`Format`).

use std::fmt;

/// Alert/record format of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Elastic Common Schema JSON (the default).
    Ecs,
    /// OCSF JSON: Detection Finding (2004) for alerts, Network Activity (4001) for flows.
    Ocsf,
    /// ArcSight Common Event Format, one `CEF:0|...` line.
    Cef,
}

/// Where a syslog sink sends (RFC 5424).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTransport {
    /// `udp://HOST:PORT`: one message per datagram.
    Udp(std::net::SocketAddr),
    /// `tcp://HOST:PORT`: octet-counted framing (RFC 6587).
    Tcp(std::net::SocketAddr),
    /// `unix:///dev/log` (datagram socket, as rsyslog's imuxsock).
    Unix(std::path::PathBuf),
    /// `tls://HOST:PORT`: TCP under TLS, octet-counted framing (RFC 5425).
    Tls(std::net::SocketAddr),
}

/// The TLS settings of a sink that connects out (https, syslog over TLS). Paths only: the
/// files are read (and checked) when the config is loaded and when the sink starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA bundle the server's certificate must chain to, instead of the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate (chain) and its private key, for mutual TLS.
    pub cert_and_key: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// The name the server's certificate must hold (syslog; default: the address's IP).
    pub server_name: Option<String>,
}

impl ClientTls {
    /// Nothing set: the defaults of the transport.
    pub fn is_empty(&self) -> bool {
        *self == ClientTls::default()
    }
}

/// The kind of a sink and its own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    Stdout,
    /// JSON lines to a file, rotated by size: `path`, `path.1` ... `path.<keep>`.
    File {
        path: std::path::PathBuf,
        max_size_bytes: u64,
        keep: u32,
    },
    Syslog {
        transport: SyslogTransport,
        /// Only with `tls://` (where `ca_file` is required).
        tls: ClientTls,
    },
    /// Batched NDJSON POST (`Content-Type: application/x-ndjson`), retried with backoff.
    Http {
        url: String,
        /// Most records per POST.
        batch_max: usize,
        /// Longest a record waits for its batch to fill.
        batch_interval: std::time::Duration,
        /// Per-request timeout.
        timeout: std::time::Duration,
        /// Retries of a failed POST before its batch is dropped (and counted).
        max_retries: u32,
        /// Extra request headers, in order.
        headers: Vec<(String, String)>,
        /// Only with `https://`.
        tls: ClientTls,
        /// Sent as `Authorization: Bearer <token>`; re-read when the file changes.
        bearer_token_file: Option<std::path::PathBuf>,
    },
}

/// One sink as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSpec {
    /// Unique name used in metrics labels and logs: given by `name:`, else derived
    /// (`stdout`, `file`, `syslog`, `http`, with `-2`, `-3` for repeats).
    pub name: String,
    pub kind: SinkKind,
    pub format: Format,
    /// Records queued for this sink before new ones are dropped (and counted).
    pub queue: usize,
    /// Whether sampled flow records (not only alerts) go to this sink.
    pub flows: bool,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Ecs, Format::Ocsf, Format::Cef];

    /// The YAML spelling (`ecs` / `ocsf` / `cef`).
    pub const fn name(self) -> &'static str {
        match self {
            Format::Ecs => "ecs",
            Format::Ocsf => "ocsf",
            Format::Cef => "cef",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for SyslogTransport {
    /// The address as written in the config (`udp://127.0.0.1:514`, `unix:///dev/log`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogTransport::Udp(a) => write!(f, "udp://{a}"),
            SyslogTransport::Tcp(a) => write!(f, "tcp://{a}"),
            SyslogTransport::Unix(p) => write!(f, "unix://{}", p.display()),
            SyslogTransport::Tls(a) => write!(f, "tls://{a}"),
        }
    }
}

impl SinkKind {
    /// The YAML `type` (`stdout` / `file` / `syslog` / `http`).
    pub const fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Stdout => "stdout",
            SinkKind::File { .. } => "file",
            SinkKind::Syslog { .. } => "syslog",
            SinkKind::Http { .. } => "http",
        }
    }
}

impl SinkSpec {
    /// Default queue length of a sink.
    pub const DEFAULT_QUEUE: usize = 10_000;

    /// The sink used when the config has no `sinks`: ECS JSON lines on stdout, with flows.
    #[must_use]
    pub fn default_stdout() -> SinkSpec {
        SinkSpec {
            name: "stdout".to_owned(),
            kind: SinkKind::Stdout,
            format: Format::Ecs,
            queue: Self::DEFAULT_QUEUE,
            flows: true,
        }
    }
}
