//! The endpoint protected: over TLS with a client CA, and with a bearer token file. A real
//! Prometheus scrapes with a client certificate (up) and without one (refused), with the
//! token (up) and a wrong one (refused); raw TLS clients check that `/healthz` and `/readyz`
//! stay open while `/metrics` and unknown paths do not, that a changed certificate is served
//! to the next connection, and that a client that never finishes its handshake is cut at the
//! header timeout. Loopback only, every wait bounded; certificates made at test time.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use node_monitor::{
    config::MetricsSettings,
    metrics::{self, Metrics, Protection, ServeLimits},
    tls::{ServerFiles, testing::TestPki},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};

use crate::{
    common::temp::TempDir,
    fixture::populated,
    prometheus::{RunningPrometheus, find_value, query, start_prometheus},
    serve::http_get,
};

const TOKEN: &str = "scrape-token-4f9a2c";

struct Protected {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Protected {
    async fn start(m: Metrics, settings: &MetricsSettings, limits: ServeLimits) -> Protected {
        let protection = Protection::from_settings(settings).expect("protection");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(metrics::serve_protected(
            listener,
            m,
            limits,
            Arc::new(Mutex::new(Arc::new(protection))),
            async move {
                let _ = rx.await;
            },
        ));
        Protected { addr, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task")
            .expect("serve result");
    }
}

fn settings(tls: Option<ServerFiles>, token: Option<&Path>) -> MetricsSettings {
    MetricsSettings {
        tls,
        bearer_token_file: token.map(Path::to_owned),
        ..MetricsSettings::DEFAULT
    }
}

fn mtls_files(pki: &TestPki) -> ServerFiles {
    ServerFiles {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: Some(pki.ca.clone()),
    }
}

/// A TLS client trusting `ca`, presenting `identity` when given.
fn client(ca: &Path, identity: Option<(&Path, &Path)>) -> tokio_rustls::TlsConnector {
    tokio_rustls::TlsConnector::from(
        node_monitor::tls::client_config(ca, identity).expect("client config"),
    )
}

/// GET `path` over TLS (`Connection: close`), bounded in time: the status and body, or the
/// error (a refused handshake).
async fn https_get(
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let fut = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let mut s = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status in {text:?}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrapes_with_a_client_certificate_or_a_token_and_is_refused_without() {
    let dir = TempDir::new("prometheus-tls");
    let pki = TestPki::write(dir.path());
    let token = dir.file("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let wrong = dir.file("wrong-token");
    std::fs::write(&wrong, "not-the-token").unwrap();

    let m = populated();
    m.set_ready(true);
    let mtls = Protected::start(
        m.clone(),
        &settings(Some(mtls_files(&pki)), None),
        ServeLimits::default(),
    )
    .await;
    let bearer = Protected::start(
        m.clone(),
        &settings(None, Some(&token)),
        ServeLimits::default(),
    )
    .await;

    let config = dir.file("prometheus.yml");
    let (ca, cert, key) = (
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display(),
    );
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n\
             \x20 - job_name: with-cert\n    scheme: https\n    tls_config: {{ca_file: {ca}, cert_file: {cert}, key_file: {key}}}\n    static_configs: [{{targets: ['{mtls}']}}]\n\
             \x20 - job_name: without-cert\n    scheme: https\n    tls_config: {{ca_file: {ca}}}\n    static_configs: [{{targets: ['{mtls}']}}]\n\
             \x20 - job_name: with-token\n    authorization: {{credentials_file: {token}}}\n    static_configs: [{{targets: ['{bearer}']}}]\n\
             \x20 - job_name: wrong-token\n    authorization: {{credentials_file: {wrong}}}\n    static_configs: [{{targets: ['{bearer}']}}]\n",
            mtls = mtls.addr,
            bearer = bearer.addr,
            token = token.display(),
            wrong = wrong.display(),
        ),
    )
    .expect("write config");
    let RunningPrometheus {
        addr: prom_addr,
        log: log_path,
        guard,
    } = start_prometheus(&dir, &config);

    let want = [
        ("with-cert", "1"),
        ("without-cert", "0"),
        ("with-token", "1"),
        ("wrong-token", "0"),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::from("no answer yet");
    let mut ok = false;
    while Instant::now() < deadline && !ok {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(up) = query(prom_addr, "up").await else {
            continue;
        };
        last = format!("{up:?}");
        ok = want
            .iter()
            .all(|(job, v)| find_value(&up, &[("job", job)]).as_deref() == Some(*v));
    }
    let prom_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        ok,
        "Prometheus did not report up = {want:?} within 30 s; last: {last}\n--- prometheus log ---\n{prom_log}"
    );
    // The scrapes that got in read real values; the refusals are the endpoint's, not TLS
    // noise: 403 without a certificate, 401 with a wrong token.
    let packets = query(prom_addr, "node_monitor_packets_total")
        .await
        .unwrap_or_default();
    for job in ["with-cert", "with-token"] {
        assert_eq!(
            find_value(
                &packets,
                &[
                    ("job", job),
                    ("group", "kubelet"),
                    ("proto", "tcp"),
                    ("verdict", "denied")
                ]
            )
            .as_deref(),
            Some("5"),
            "{job}: {packets:?}"
        );
    }
    let targets = http_get(prom_addr, "/api/v1/targets", None)
        .await
        .expect("targets");
    let targets: serde_json::Value = serde_json::from_str(&targets.body).expect("targets json");
    let error_of = |job: &str| -> String {
        targets["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["labels"]["job"] == job)
            .and_then(|t| t["lastError"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    assert!(
        error_of("without-cert").contains("403"),
        "{}",
        error_of("without-cert")
    );
    assert!(
        error_of("wrong-token").contains("401"),
        "{}",
        error_of("wrong-token")
    );
    assert_eq!(error_of("with-cert"), "");
    drop(guard);
    mtls.stop().await;
    bearer.stop().await;
}

#[tokio::test]
async fn health_stays_open_and_everything_else_needs_the_credentials() {
    let dir = TempDir::new("metrics-tls");
    let pki = TestPki::write(dir.path());
    let token = dir.file("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let m = populated();
    m.set_ready(true);
    // Both: a client certificate and the token.
    let srv = Protected::start(
        m.clone(),
        &settings(Some(mtls_files(&pki)), Some(&token)),
        ServeLimits::default(),
    )
    .await;
    let with_cert = client(&pki.ca, Some((&pki.client_cert, &pki.client_key)));
    let without = client(&pki.ca, None);
    let intruder = client(
        &pki.ca,
        Some((&pki.other_client_cert, &pki.other_client_key)),
    );

    for (tls, who) in [
        (&with_cert, "with a certificate"),
        (&without, "without one"),
    ] {
        assert_eq!(
            https_get(srv.addr, tls, "/healthz", None).await,
            Ok((200, "ok".to_owned())),
            "{who}"
        );
        assert_eq!(
            https_get(srv.addr, tls, "/readyz", None).await.map(|r| r.0),
            Ok(200),
            "{who}"
        );
    }
    let status = |r: Result<(u16, String), String>| r.map(|(s, _)| s);
    assert_eq!(
        status(https_get(srv.addr, &without, "/metrics", Some(TOKEN)).await),
        Ok(403)
    );
    assert_eq!(
        status(https_get(srv.addr, &without, "/nope", Some(TOKEN)).await),
        Ok(403)
    );
    assert_eq!(
        status(https_get(srv.addr, &with_cert, "/metrics", None).await),
        Ok(401)
    );
    assert_eq!(
        status(https_get(srv.addr, &with_cert, "/metrics", Some("wrong")).await),
        Ok(401)
    );
    let (code, body) = https_get(srv.addr, &with_cert, "/metrics", Some(TOKEN))
        .await
        .expect("scrape");
    assert_eq!(code, 200);
    assert!(body.contains("node_monitor_packets_total"), "{body}");
    // Unknown paths follow the setting too: past the checks, a plain 404.
    assert_eq!(
        status(https_get(srv.addr, &with_cert, "/nope", Some(TOKEN)).await),
        Ok(404)
    );
    // A certificate from another CA fails the handshake itself.
    assert!(
        https_get(srv.addr, &intruder, "/healthz", None)
            .await
            .is_err()
    );
    // Plain HTTP to a TLS endpoint gets nothing.
    assert!(http_get(srv.addr, "/healthz", None).await.is_err());

    // The token file rotates: the old token is refused, the new one accepted, no restart.
    std::fs::write(&token, "rotated-token\n").unwrap();
    assert_eq!(
        status(https_get(srv.addr, &with_cert, "/metrics", Some(TOKEN)).await),
        Ok(401)
    );
    assert_eq!(
        status(https_get(srv.addr, &with_cert, "/metrics", Some("rotated-token")).await),
        Ok(200)
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_new_certificate_is_served_to_the_next_connection() {
    let dir = TempDir::new("metrics-tls-reload");
    let first = TestPki::write(dir.path());
    let next_dir = TempDir::new("metrics-tls-next");
    let next = TestPki::write(next_dir.path());
    let files = ServerFiles {
        cert: first.server_cert.clone(),
        key: first.server_key.clone(),
        client_ca: None,
    };
    let srv = Protected::start(
        populated(),
        &settings(Some(files), None),
        ServeLimits::default(),
    )
    .await;
    let old_ca = client(&first.ca, None);
    let new_ca = client(&next.ca, None);
    assert_eq!(
        https_get(srv.addr, &old_ca, "/metrics", None)
            .await
            .map(|r| r.0),
        Ok(200)
    );
    assert!(
        https_get(srv.addr, &new_ca, "/metrics", None)
            .await
            .is_err()
    );

    // A half-written update (a new certificate, the old key) is not used: the old pair stays.
    std::fs::copy(&next.server_cert, &first.server_cert).unwrap();
    assert_eq!(
        https_get(srv.addr, &old_ca, "/healthz", None)
            .await
            .map(|r| r.0),
        Ok(200)
    );
    // The key follows: the next connection gets the new pair.
    std::fs::copy(&next.server_key, &first.server_key).unwrap();
    assert_eq!(
        https_get(srv.addr, &new_ca, "/metrics", None)
            .await
            .map(|r| r.0),
        Ok(200)
    );
    assert!(
        https_get(srv.addr, &old_ca, "/metrics", None)
            .await
            .is_err()
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_cut_and_the_cap_holds() {
    let dir = TempDir::new("metrics-tls-limits");
    let pki = TestPki::write(dir.path());
    let limits = ServeLimits {
        max_connections: 4,
        max_per_peer: 4,
        header_read_timeout: Duration::from_millis(500),
        connection_lifetime: Duration::from_secs(30),
        stop_grace: Duration::from_millis(300),
    };
    let files = ServerFiles {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: None,
    };
    let srv = Protected::start(populated(), &settings(Some(files), None), limits).await;
    // Four silent clients take every slot: a fifth connection is closed at once.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(srv.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let tls = client(&pki.ca, None);
    assert!(https_get(srv.addr, &tls, "/healthz", None).await.is_err());
    // Each silent client is cut at the header timeout, without a handshake.
    let started = Instant::now();
    for s in &mut silent {
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await;
        assert!(matches!(r, Ok(Ok(0) | Err(_))), "still open: {r:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The slots are free again.
    assert_eq!(
        https_get(srv.addr, &tls, "/healthz", None)
            .await
            .map(|r| r.0),
        Ok(200)
    );
    srv.stop().await;
}

/// `check-config` (the binary) on configs that name secret files: it accepts good files and
/// prints the digest, refuses bad ones at their position, and never prints what they hold.
#[test]
fn check_config_names_secret_files_never_their_contents() {
    const SECRET: &str = "cHJvbWV0aGV1cy1zZWNyZXQ";
    let dir = TempDir::new("check-config-tls");
    let pki = TestPki::write(dir.path());
    let token = dir.file("token");
    std::fs::write(&token, format!("{SECRET}\n")).unwrap();
    let bad_token = dir.file("bad-token");
    std::fs::write(&bad_token, format!("{SECRET} {SECRET}\n")).unwrap();
    let key_text = std::fs::read_to_string(&pki.server_key).unwrap();
    let bad_key = dir.file("bad-key.pem");
    std::fs::write(
        &bad_key,
        key_text.replacen('\n', &format!("\n{SECRET}\n"), 1),
    )
    .unwrap();
    let run = |name: &str, token: &Path, key: &Path| {
        let config = dir.file(name);
        std::fs::write(
            &config,
            format!(
                "metrics:\n  listen: \"0.0.0.0:9630\"\n  tls:\n    cert_file: {}\n    key_file: {}\n  bearer_token_file: {}\n",
                pki.server_cert.display(),
                key.display(),
                token.display()
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_node-monitor"))
            .arg("check-config")
            .arg(&config)
            .stdin(Stdio::null())
            .output()
            .expect("run check-config");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains(SECRET), "a secret was printed: {text}");
        assert!(
            !text.contains(key_text.lines().nth(1).unwrap()),
            "key material: {text}"
        );
        (out.status.success(), text, config)
    };
    let (ok, text, _) = run("good.yaml", &token, &pki.server_key);
    assert!(ok, "{text}");
    assert!(
        text.contains(": ok (") && text.contains("digest "),
        "{text}"
    );
    let (ok, text, config) = run("bad.yaml", &bad_token, &bad_key);
    assert!(!ok, "{text}");
    let c = config.display();
    assert!(
        text.contains(&format!(
            "{c}:5:15: metrics.tls.key_file: `{}`: the private key cannot be used",
            bad_key.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{c}:6:22: metrics.bearer_token_file: `{}`",
            bad_token.display()
        )),
        "{text}"
    );
}

/// What a reload does at the same address: `Server::protect` gives the next connections the
/// new settings without a rebind; settings whose files cannot be used change nothing.
#[tokio::test]
async fn a_reload_protects_the_running_endpoint_without_a_rebind() {
    let dir = TempDir::new("metrics-protect");
    let token = dir.file("token");
    std::fs::write(&token, TOKEN).unwrap();
    let m = populated();
    // Port 0: the kernel's choice, which no other test can take between a pick and the bind.
    let asked = SocketAddr::from(([127, 0, 0, 1], 0));
    let srv = metrics::Server::start(asked, &MetricsSettings::DEFAULT, &m)
        .await
        .expect("start");
    assert_eq!(srv.listen(), asked);
    let listen = srv.local_addr();
    assert_ne!(listen.port(), 0, "the bound port is the kernel's choice");
    let get = |auth: Option<&'static str>| async move {
        let mut s = TcpStream::connect(listen).await.expect("connect");
        let mut req = format!("GET /metrics HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n");
        if let Some(t) = auth {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        String::from_utf8_lossy(&buf)
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .expect("status")
    };
    assert_eq!(get(None).await, 200);
    srv.protect(&settings(None, Some(&token))).expect("protect");
    assert_eq!(srv.local_addr(), listen, "protect does not rebind");
    assert_eq!(get(None).await, 401);
    assert_eq!(get(Some(TOKEN)).await, 200);
    // A token file that went missing: an error that names it, and the token still applies.
    let gone = dir.file("gone");
    let e = srv.protect(&settings(None, Some(&gone))).unwrap_err();
    assert!(e.to_string().contains(&gone.display().to_string()), "{e}");
    assert_eq!(get(None).await, 401);
    assert_eq!(get(Some(TOKEN)).await, 200);
    // Protection off again.
    srv.protect(&MetricsSettings::DEFAULT).expect("unprotect");
    assert_eq!(get(None).await, 200);
    srv.stop().await;
}
