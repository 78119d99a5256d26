//! TLS peers for the sink tests, loopback only, every wait bounded: an in-process HTTPS
//! receiver (rustls) that requires a client certificate from the test CA and a bearer token,
//! and a real rsyslogd with a TLS input (Debian's rsyslog-gnutls) that requires one too.
//! Certificates are made at test time ([`TestPki`]) in the test's temp dir.

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

pub(crate) use node_monitor::tls::testing::TestPki;

use super::{ports::free_tcp_port, temp::TempDir, wait::wait_for};

/// One POST that passed the handshake (so the client showed a certificate of the test CA).
#[derive(Debug, Clone)]
pub(crate) struct TlsReceived {
    pub(crate) authorization: Option<String>,
    pub(crate) body: String,
    pub(crate) status: u16,
}

/// An HTTPS NDJSON receiver on 127.0.0.1 (`/ingest`): the handshake requires a client
/// certificate that chains to `pki.ca`; a request answers 200 when it carries
/// `Authorization: Bearer <token>`, 401 otherwise. Stops when dropped.
pub(crate) struct MtlsReceiver {
    pub(crate) addr: SocketAddr,
    log: Arc<Mutex<Vec<TlsReceived>>>,
    handshakes_failed: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MtlsReceiver {
    pub(crate) async fn start(pki: &TestPki, token: &str) -> MtlsReceiver {
        use axum::{
            Router,
            extract::State,
            http::{HeaderMap, StatusCode},
            routing::post,
        };
        use hyper_util::{rt::TokioIo, service::TowerToHyperService};

        type Log = Arc<Mutex<Vec<TlsReceived>>>;
        async fn ingest(
            State((log, token)): State<(Log, String)>,
            headers: HeaderMap,
            body: String,
        ) -> StatusCode {
            let authorization = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let ok = authorization.as_deref() == Some(&format!("Bearer {token}"));
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            log.lock().unwrap().push(TlsReceived {
                authorization,
                body,
                status: status.as_u16(),
            });
            status
        }

        let roots = node_monitor::tls::load_roots(&pki.ca).expect("test CA");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            node_monitor::tls::provider(),
        )
        .build()
        .expect("client verifier");
        let identity =
            node_monitor::tls::load_identity(&pki.server_cert, &pki.server_key).expect("server");
        let config = rustls::ServerConfig::builder_with_provider(node_monitor::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                identity.cert.clone(),
                node_monitor::tls::load_key(&pki.server_key).expect("key"),
            )
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let log: Log = Arc::default();
        let handshakes_failed: Arc<Mutex<Vec<String>>> = Arc::default();
        let app = Router::new()
            .route("/ingest", post(ingest))
            .with_state((log.clone(), token.to_owned()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let failed = handshakes_failed.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, app, failed) = (acceptor.clone(), app.clone(), failed.clone());
                tokio::spawn(async move {
                    let tls =
                        match tokio::time::timeout(Duration::from_secs(5), acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                failed.lock().unwrap().push(e.to_string());
                                return;
                            }
                            Err(_) => return,
                        };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .await;
                });
            }
        });
        MtlsReceiver {
            addr,
            log,
            handshakes_failed,
            task,
        }
    }

    /// The URL by IP, which the server certificate holds.
    pub(crate) fn url(&self) -> String {
        format!("https://{}/ingest", self.addr)
    }

    pub(crate) fn received(&self) -> Vec<TlsReceived> {
        self.log.lock().unwrap().clone()
    }

    /// Why handshakes failed so far (rustls's words).
    pub(crate) fn handshakes_failed(&self) -> Vec<String> {
        self.handshakes_failed.lock().unwrap().clone()
    }
}

impl Drop for MtlsReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
/// The GnuTLS network stream driver of rsyslog (Debian package `rsyslog-gnutls`).
pub(crate) const LMNSD_GTLS: &str = "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so";

/// A real rsyslogd with one TLS input on 127.0.0.1 (RFC 5425, octet-counted frames) that
/// requires a client certificate of the test CA (`x509/certvalid`); it writes
/// `PRI|APP-NAME|MSGID|MSG` lines to `out`. Killed on drop.
pub(crate) struct RsyslogTls {
    child: Child,
    pub(crate) addr: SocketAddr,
    out: PathBuf,
}

impl RsyslogTls {
    /// Starts rsyslogd with its work files in `dir`, and waits (bounded) until it listens.
    pub(crate) fn start(dir: &TempDir, pki: &TestPki) -> RsyslogTls {
        assert!(
            Path::new(RSYSLOGD).exists(),
            "{RSYSLOGD} is missing: the syslog sink tests need a real rsyslog (apt-get install rsyslog)"
        );
        assert!(
            Path::new(LMNSD_GTLS).exists(),
            "{LMNSD_GTLS} is missing: syslog over TLS needs rsyslog's GnuTLS driver (apt-get install rsyslog-gnutls)"
        );
        let work = dir.path().join("rsyslog-work");
        std::fs::create_dir_all(&work).expect("work dir");
        let out = dir.path().join("rsyslog-out.log");
        let conf = dir.path().join("rsyslog.conf");
        let pid = dir.path().join("rsyslogd.pid");
        let port = free_tcp_port();
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}" maxMessageSize="64k"
       DefaultNetstreamDriver="gtls"
       DefaultNetstreamDriverCAFile="{ca}"
       DefaultNetstreamDriverCertFile="{cert}"
       DefaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="x509/certvalid")
input(type="imtcp" address="127.0.0.1" port="{port}")
template(name="fields" type="string" string="%PRI%|%APP-NAME%|%MSGID%|%msg%\n")
action(type="omfile" file="{out}" template="fields")
"#,
                work = work.display(),
                ca = pki.ca.display(),
                cert = pki.server_cert.display(),
                key = pki.server_key.display(),
                out = out.display(),
            ),
        )
        .expect("write rsyslog.conf");
        let mut child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(&pid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {RSYSLOGD}: {e}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for(Duration::from_secs(15), "rsyslogd to listen on TLS", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("rsyslogd exited during startup: {status}");
            }
            TcpStream::connect(addr).ok()
        });
        RsyslogTls { child, addr, out }
    }

    /// The lines written so far (`PRI|APP-NAME|MSGID|MSG`).
    pub(crate) fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

impl Drop for RsyslogTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
