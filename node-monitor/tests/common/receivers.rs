//! Real peers for the sink tests (tests/sinks/), loopback only, every wait bounded:
//! a real rsyslogd (UDP, TCP and unix inputs, writing the RFC 5424 fields it parsed to a
//! file) and a small axum HTTP receiver whose answers can be scripted.

use std::{
    net::{SocketAddr, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use super::{
    ports::{free_tcp_port, free_udp_port},
    temp::TempDir,
    wait::wait_for,
};

pub(crate) const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// A real rsyslogd child process listening on loopback UDP and TCP and on a unix datagram
/// socket in its own temp dir; it writes `PRI|APP-NAME|MSGID|MSG` lines to `out`. Killed on
/// drop.
pub(crate) struct Rsyslog {
    child: Child,
    pub(crate) udp: SocketAddr,
    pub(crate) tcp: SocketAddr,
    pub(crate) unix: PathBuf,
    pub(crate) out: PathBuf,
    #[allow(
        dead_code,
        reason = "held for its Drop: the temp dir lives as long as rsyslogd"
    )]
    dir: TempDir,
}

impl Rsyslog {
    /// Starts rsyslogd and waits (bounded) until all three inputs deliver.
    pub(crate) fn start() -> Rsyslog {
        assert!(
            Path::new(RSYSLOGD).exists(),
            "{RSYSLOGD} is missing: the syslog sink tests need a real rsyslog (apt-get install rsyslog)"
        );
        let dir = TempDir::new("rsyslog");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("work dir");
        let unix = dir.path().join("log.sock");
        let out = dir.path().join("out.log");
        let conf = dir.path().join("rsyslog.conf");
        let pid = dir.path().join("rsyslogd.pid");
        let (udp_port, tcp_port) = (free_udp_port(), free_tcp_port());
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}" maxMessageSize="64k")
module(load="imudp")
module(load="imtcp")
module(load="imuxsock" SysSock.Use="off")
input(type="imudp" address="127.0.0.1" port="{udp_port}")
input(type="imtcp" address="127.0.0.1" port="{tcp_port}")
input(type="imuxsock" Socket="{unix}" CreatePath="on" UseSpecialParser="off" RateLimit.Interval="0")
template(name="fields" type="string" string="%PRI%|%APP-NAME%|%MSGID%|%msg%\n")
action(type="omfile" file="{out}" template="fields")
"#,
                work = work.display(),
                unix = unix.display(),
                out = out.display(),
            ),
        )
        .expect("write rsyslog.conf");
        let child = Command::new(RSYSLOGD)
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
        let mut r = Rsyslog {
            child,
            udp: SocketAddr::from(([127, 0, 0, 1], udp_port)),
            tcp: SocketAddr::from(([127, 0, 0, 1], tcp_port)),
            unix,
            out,
            dir,
        };
        r.wait_ready();
        r
    }

    fn wait_ready(&mut self) {
        let t = Duration::from_secs(15);
        wait_for(t, "rsyslogd to listen on TCP", || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("rsyslogd exited during startup: {status}");
            }
            TcpStream::connect(self.tcp).ok()
        });
        wait_for(t, "rsyslogd's unix socket", || {
            self.unix.exists().then_some(())
        });
        // UDP has no handshake: send probes until one is written out.
        let probe = UdpSocket::bind("127.0.0.1:0").expect("bind probe");
        let msg = "<14>1 - - probe - probe - ready";
        wait_for(t, "rsyslogd to log a UDP probe", || {
            let _ = probe.send_to(msg.as_bytes(), self.udp);
            std::thread::sleep(Duration::from_millis(50));
            self.lines()
                .iter()
                .any(|l| l.contains("|probe|"))
                .then_some(())
        });
    }

    /// The lines written so far (`PRI|APP-NAME|MSGID|MSG`).
    pub(crate) fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request as the HTTP receiver saw it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) content_type: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
    /// The status answered.
    pub(crate) status: u16,
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Script {
    /// 200 to everything.
    Ok,
    /// `status` to the first `n` requests, then 200.
    FailFirst { n: usize, status: u16 },
    /// Never answers within the test: holds each request this long, then 200.
    Hang(Duration),
    /// `status` (a 3xx) with `Location: /captured`, a route that takes any POST with 200 and
    /// logs it like `/ingest`.
    Redirect(u16),
}

#[derive(Clone)]
struct State {
    script: Script,
    seen: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Received>>>,
    captured: Arc<Mutex<Vec<String>>>,
}

/// An axum NDJSON receiver on 127.0.0.1, POST `/ingest`. Stops when dropped.
pub(crate) struct HttpReceiver {
    pub(crate) addr: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
    seen: Arc<AtomicUsize>,
    captured: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpReceiver {
    pub(crate) async fn start(script: Script) -> HttpReceiver {
        use axum::{
            Router,
            extract::State as S,
            http::{HeaderMap, StatusCode},
            routing::post,
        };
        async fn ingest(
            S(st): S<State>,
            headers: HeaderMap,
            body: String,
        ) -> (StatusCode, [(&'static str, &'static str); 1]) {
            let n = st.seen.fetch_add(1, Ordering::SeqCst);
            let status = match st.script {
                Script::Ok => 200,
                Script::FailFirst { n: fails, status } => {
                    if n < fails {
                        status
                    } else {
                        200
                    }
                }
                Script::Hang(d) => {
                    tokio::time::sleep(d).await;
                    200
                }
                Script::Redirect(status) => status,
            };
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let headers = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            st.log.lock().unwrap().push(Received {
                content_type,
                headers,
                body,
                status,
            });
            (
                StatusCode::from_u16(status).unwrap(),
                [("location", "/captured")],
            )
        }
        async fn captured_route(S(st): S<State>, body: String) -> StatusCode {
            st.captured.lock().unwrap().push(body);
            StatusCode::OK
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(AtomicUsize::new(0));
        let captured = Arc::new(Mutex::new(Vec::new()));
        let state = State {
            script,
            seen: seen.clone(),
            log: log.clone(),
            captured: captured.clone(),
        };
        let app = Router::new()
            .route("/ingest", post(ingest))
            .route("/captured", post(captured_route))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HttpReceiver {
            addr,
            log,
            seen,
            captured,
            task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/ingest", self.addr)
    }

    /// Requests answered so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Bodies POSTed to `/captured` (where [`Script::Redirect`] points).
    pub(crate) fn captured(&self) -> Vec<String> {
        self.captured.lock().unwrap().clone()
    }

    /// Requests that have arrived (answered or still held).
    pub(crate) fn seen(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
