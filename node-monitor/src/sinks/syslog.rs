//! The syslog sink: RFC 5424 messages over UDP, TCP (RFC 6587 octet counting), TLS (RFC 5425:
//! the same octet-counted frames in a TLS stream, with a CA bundle of its own and optionally a
//! client certificate) or a unix datagram socket (`/dev/log` style).
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME node-monitor PROCID MSGID - MSG
//! ```
//!
//! - PRI = facility × 8 + severity. Facility is 10, `authpriv` (security/authorization
//!   messages, private): where syslog daemons keep security events (`/var/log/auth.log` on
//!   Debian's rsyslog, `/var/log/secure` on RHEL), away from world-readable logs.
//! - Severity from the alert's rule severity: critical → 2 (crit), high → 3 (err),
//!   medium → 4 (warning), low → 5 (notice); flow records → 6 (info).
//! - TIMESTAMP: the alert's time (a flow record's own time), RFC 3339 UTC, microseconds.
//! - MSGID: the rule id (e.g. `NM-1001`), `flow` for flow records. Structured data: `-`.
//! - MSG: the rendered record (ECS/OCSF JSON or a CEF line) as is, UTF-8, without a BOM.
//!
//! UDP sends one message per datagram and keeps long messages whole: receivers that cap
//! messages (rsyslog's default `maxMessageSize` is 8 KiB) truncate them, and a datagram over
//! 65,507 bytes fails and counts as `send_error`. TCP reconnects with backoff (200 ms doubling,
//! capped 10 s), and so does TLS (a failed handshake too); while it is down, records wait in the sink's bounded queue (overflow counts as
//! `queue_full`), and a batch whose write failed is sent again on the new connection. Unix
//! sends each datagram to the path, so a restarted syslog daemon is picked up by itself.
use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::{
    io::AsyncWriteExt as _,
    net::{TcpStream, UdpSocket, UnixDatagram},
    sync::mpsc,
};

use super::{
    SinkError,
    accounting::{DropReason, Health},
    worker::{Ctx, MAX_BATCH, backoff, recv_batch},
};
use crate::{
    config::{ClientTls, FindingSeverity, SyslogTransport},
    detect::{OutputItem, Severity},
    render::Observer,
};

/// Facility 10: `authpriv`.
pub const SYSLOG_FACILITY: u8 = 10;
/// The RFC 5424 APP-NAME.
pub const SYSLOG_APP_NAME: &str = "node-monitor";

/// The RFC 5424 severity of an item: critical → 2, high → 3, medium → 4, low → 5, flow and
/// informational finding → 6.
pub fn syslog_severity(item: &OutputItem) -> u8 {
    match item {
        OutputItem::Alert(a) => match a.rule.severity {
            Severity::Critical => 2,
            Severity::High => 3,
            Severity::Medium => 4,
            Severity::Low => 5,
        },
        OutputItem::Flow(_) => 6,
        OutputItem::Finding(f) => match f.finding.severity {
            FindingSeverity::Critical => 2,
            FindingSeverity::High => 3,
            FindingSeverity::Medium => 4,
            FindingSeverity::Low => 5,
            FindingSeverity::Info => 6,
        },
    }
}

const RECONNECT_BASE: Duration = Duration::from_millis(200);
const RECONNECT_CAP: Duration = Duration::from_secs(10);
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Printable US-ASCII without spaces, at most `max` characters, `-` when empty (RFC 5424
/// header fields).
fn header_field(s: &str, max: usize) -> String {
    let f: String = s.chars().filter(char::is_ascii_graphic).take(max).collect();
    if f.is_empty() { "-".to_owned() } else { f }
}

/// The fixed part of every message from this process.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    hostname: String,
    procid: String,
}

impl Header {
    pub(crate) fn local() -> Header {
        Header {
            hostname: header_field(&Observer::local().hostname, 255),
            procid: std::process::id().to_string(),
        }
    }

    /// One RFC 5424 message for `item` with the rendered record as MSG.
    pub(crate) fn message(&self, item: &OutputItem, rendered: &str) -> String {
        let pri = u16::from(SYSLOG_FACILITY) * 8 + u16::from(syslog_severity(item));
        let (timestamp, msgid) = match item {
            OutputItem::Alert(a) => (
                humantime::format_rfc3339_micros(a.time).to_string(),
                header_field(a.rule.id, 32),
            ),
            OutputItem::Flow(f) => (
                humantime::format_rfc3339_micros(f.time).to_string(),
                "flow".to_owned(),
            ),
            OutputItem::Finding(f) => (
                humantime::format_rfc3339_micros(f.time).to_string(),
                header_field(f.finding.id, 32),
            ),
        };
        format!(
            "<{pri}>1 {timestamp} {} {SYSLOG_APP_NAME} {} {msgid} - {rendered}",
            self.hostname, self.procid
        )
    }
}

/// An open TCP or TLS connection to the receiver.
type Conn = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// What a stream transport connects with: TCP alone, or TLS over it.
#[derive(Clone)]
enum Connector {
    Tcp,
    Tls {
        /// Built again when the CA or client certificate files change: each new connection
        /// gets what they hold now.
        config: Arc<crate::tls::Reloading<Arc<rustls::ClientConfig>>>,
        name: rustls::pki_types::ServerName<'static>,
    },
}

enum Transport {
    Udp(UdpSocket),
    Stream {
        addr: std::net::SocketAddr,
        connector: Connector,
        conn: Option<Conn>,
    },
    Unix {
        path: PathBuf,
        sock: UnixDatagram,
    },
}

pub(crate) struct SyslogSender {
    header: Header,
    transport: Transport,
}

impl SyslogSender {
    /// Opens the socket (UDP: bound and connected; unix: an unbound datagram socket). A TCP
    /// peer is connected to by the worker, with backoff.
    pub(crate) fn new(
        name: &str,
        t: &SyslogTransport,
        tls: &ClientTls,
    ) -> Result<SyslogSender, SinkError> {
        if !tls.is_empty() && !matches!(t, SyslogTransport::Tls(_)) {
            return Err(SinkError::invalid(
                name,
                "tls settings apply to tls://HOST:PORT addresses only",
            ));
        }
        let transport = match t {
            SyslogTransport::Udp(addr) => {
                let bind: std::net::SocketAddr = if addr.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let ctx = |what: &str| format!("{what} UDP socket for syslog to {addr}");
                let s = std::net::UdpSocket::bind(bind)
                    .map_err(|e| SinkError::io(name, ctx("cannot bind a"), e))?;
                s.connect(addr)
                    .map_err(|e| SinkError::io(name, ctx("cannot connect the"), e))?;
                s.set_nonblocking(true)
                    .map_err(|e| SinkError::io(name, ctx("cannot set up the"), e))?;
                Transport::Udp(
                    UdpSocket::from_std(s)
                        .map_err(|e| SinkError::io(name, ctx("cannot register the"), e))?,
                )
            }
            SyslogTransport::Tcp(addr) | SyslogTransport::Tls(addr) => {
                if addr.port() == 0 || addr.ip().is_unspecified() {
                    return Err(SinkError::invalid(
                        name,
                        format!("cannot send syslog to {addr}"),
                    ));
                }
                let connector = if matches!(t, SyslogTransport::Tls(_)) {
                    tls_connector(name, addr.ip(), tls)?
                } else {
                    Connector::Tcp
                };
                Transport::Stream {
                    addr: *addr,
                    connector,
                    conn: None,
                }
            }
            SyslogTransport::Unix(path) => {
                if path.as_os_str().is_empty() {
                    return Err(SinkError::invalid(name, "the syslog socket path is empty"));
                }
                let sock = UnixDatagram::unbound()
                    .map_err(|e| SinkError::io(name, "cannot create a unix datagram socket", e))?;
                if !path.exists() {
                    tracing::warn!(
                        sink = name,
                        path = %path.display(),
                        "syslog socket does not exist (yet); messages count as send_error until it does"
                    );
                }
                Transport::Unix {
                    path: path.clone(),
                    sock,
                }
            }
        };
        Ok(SyslogSender {
            header: Header::local(),
            transport,
        })
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Arc<OutputItem>>, ctx: Ctx) {
        let mut health = Health::default();
        while let Some(batch) = recv_batch(&mut rx, &ctx.counters, MAX_BATCH).await {
            let messages: Vec<String> = batch
                .iter()
                .map(|item| self.header.message(item, &ctx.render(item)))
                .collect();
            drop(batch);
            match &mut self.transport {
                Transport::Udp(sock) => {
                    for m in &messages {
                        datagram(sock.send(m.as_bytes()).await, &ctx, &mut health);
                    }
                }
                Transport::Unix { path, sock } => {
                    for m in &messages {
                        datagram(sock.send_to(m.as_bytes(), &*path).await, &ctx, &mut health);
                    }
                }
                Transport::Stream {
                    addr,
                    connector,
                    conn,
                } => {
                    let mut frames = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
                    for m in &messages {
                        frames.extend_from_slice(format!("{} ", m.len()).as_bytes());
                        frames.extend_from_slice(m.as_bytes());
                    }
                    stream_send(*addr, connector, conn, &frames, &ctx, &mut health).await;
                    ctx.counters.sent(messages.len() as u64);
                }
            }
        }
        if let Transport::Stream { conn: Some(c), .. } = &mut self.transport {
            let _ = c.shutdown().await;
        }
    }
}

fn datagram(res: std::io::Result<usize>, ctx: &Ctx, health: &mut Health) {
    match res {
        Ok(_) => {
            health.ok(&ctx.name);
            ctx.counters.sent(1);
        }
        Err(e) => {
            health.fail(&ctx.name, &e);
            ctx.counters.dropped(DropReason::SendError, 1);
        }
    }
}

/// The TLS side of a `tls://` sink: only the CA bundle's roots, the client certificate when
/// set, the server name (else the address's IP) to verify.
fn tls_connector(
    name: &str,
    ip: std::net::IpAddr,
    tls: &ClientTls,
) -> Result<Connector, SinkError> {
    let Some(ca) = &tls.ca_file else {
        return Err(SinkError::invalid(
            name,
            "syslog over tls:// needs tls.ca_file (the receiver's CA bundle)",
        ));
    };
    let identity = tls
        .cert_and_key
        .as_ref()
        .map(|(c, k)| (c.as_path(), k.as_path()));
    let mut files = vec![ca.clone()];
    files.extend(
        identity
            .iter()
            .flat_map(|(c, k)| [c.to_path_buf(), k.to_path_buf()]),
    );
    let owned = (ca.clone(), tls.cert_and_key.clone());
    let config = crate::tls::Reloading::new("syslog sink TLS files", files, move || {
        let (ca, identity) = &owned;
        crate::tls::client_config(
            ca,
            identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        )
    })
    .map_err(|e| SinkError::invalid(name, e.to_string()))?;
    let server = crate::tls::server_name(tls.server_name.as_deref(), ip)
        .map_err(|e| SinkError::invalid(name, e.to_string()))?;
    Ok(Connector::Tls {
        config: Arc::new(config),
        name: server,
    })
}

/// A new connection to `addr` (and its TLS handshake), within `TCP_CONNECT_TIMEOUT`.
async fn connect(addr: std::net::SocketAddr, connector: &Connector) -> Result<Conn, String> {
    let attempt = async {
        let s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = s.set_nodelay(true);
        match connector {
            Connector::Tcp => Ok(Box::new(s) as Conn),
            Connector::Tls { config, name } => tokio_rustls::TlsConnector::from(config.current())
                .connect(name.clone(), s)
                .await
                .map(|s| Box::new(s) as Conn)
                .map_err(|e| format!("TLS handshake with {addr} failed: {e}")),
        }
    };
    tokio::time::timeout(TCP_CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("cannot connect to {addr}: timed out")))
}

/// Writes `frames` on the connection, (re)connecting with backoff until it succeeds. Returns
/// only once written (the shutdown deadline bounds it).
async fn stream_send(
    addr: std::net::SocketAddr,
    connector: &Connector,
    conn: &mut Option<Conn>,
    frames: &[u8],
    ctx: &Ctx,
    health: &mut Health,
) {
    let mut attempt = 0u32;
    loop {
        if conn.is_none() {
            if attempt > 0 {
                ctx.counters.retry();
                tokio::time::sleep(backoff(attempt, RECONNECT_BASE, RECONNECT_CAP)).await;
            }
            attempt = attempt.saturating_add(1);
            match connect(addr, connector).await {
                Ok(c) => *conn = Some(c),
                Err(e) => {
                    health.fail(&ctx.name, &e);
                    continue;
                }
            }
        }
        let Some(stream) = conn.as_mut() else {
            continue;
        };
        // TLS holds written records until flushed.
        let written = async {
            stream.write_all(frames).await?;
            stream.flush().await
        };
        match written.await {
            Ok(()) => {
                health.ok(&ctx.name);
                return;
            }
            Err(e) => {
                health.fail(&ctx.name, &format_args!("write to {addr} failed: {e}"));
                *conn = None;
                attempt = attempt.max(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Alert, AlertKind, FloodScope, Rule, fixture};

    fn alert(sev: Severity) -> OutputItem {
        OutputItem::Alert(Alert {
            id: "id".into(),
            time: std::time::SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            rule: Rule {
                id: "NM-1001",
                name: "n",
                version: 1,
                severity: sev,
                description: "",
            },
            kind: AlertKind::Flood {
                scope: FloodScope::Node,
                rate_limited: 1,
                ringbuf_full: 0,
                window: Duration::from_secs(1),
                summary: None,
            },
            ..fixture::flood()
        })
    }

    #[test]
    fn rfc5424_header() {
        let h = Header {
            hostname: "node-1".into(),
            procid: "42".into(),
        };
        assert_eq!(
            h.message(&alert(Severity::Critical), "{\"a\":1}"),
            "<82>1 2023-11-14T22:13:20.123456Z node-1 node-monitor 42 NM-1001 - {\"a\":1}"
        );
        let pris: Vec<_> = [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
        ]
        .into_iter()
        .map(|s| 80 + syslog_severity(&alert(s)))
        .collect();
        assert_eq!(pris, [82, 83, 84, 85]);
        let flow = crate::sinks::stdout::tests::flow(1);
        assert_eq!(syslog_severity(&flow), 6);
        assert_eq!(
            h.message(&flow, "CEF:0|x"),
            "<86>1 2024-01-02T03:04:05.000006Z node-1 node-monitor 42 flow - CEF:0|x"
        );
    }

    #[test]
    fn header_fields_are_printable_ascii() {
        assert_eq!(header_field("a b\tc", 255), "abc");
        assert_eq!(header_field("", 255), "-");
        assert_eq!(header_field("ünïcode", 255), "ncode");
        assert_eq!(header_field(&"x".repeat(40), 32).len(), 32);
    }
}
