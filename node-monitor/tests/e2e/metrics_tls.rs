//! Issue 13: the whole daemon with its metrics endpoint protected (TLS with a client CA and a
//! bearer token file), scraped from inside its namespace by curl, a TLS client of its own:
//! with the client certificate and the token a scrape gets the daemon's metrics (the flagged
//! attempt counted); without the certificate, without the token, with a certificate from
//! another CA or over plain HTTP it is refused; `/healthz` stays open without credentials.
//! Certificates from the tests' one PKI builder (`node_monitor::tls::testing::TestPki`,
//! which the metrics tier's Prometheus-over-TLS test uses too).

use std::{path::Path, time::Duration};

use node_monitor::tls::testing::TestPki;
use node_monitor_lab::{BpfPinDir, Lab};

use crate::{
    common::{
        daemon::{Daemon, context},
        http::metric_value,
        temp::{TempDir, TempFile},
    },
    readonly::readonly_attempts,
    setup::{setup, test_config},
};

const TOKEN: &str = "e2e-scrape-token-9b1d";

/// What curl got: its exit code, the HTTP status (0 without a response) and the body.
struct Got {
    exit: i32,
    status: u16,
    body: String,
}

/// curl in the node's namespace against the daemon's endpoint, trusting the test CA.
struct Curl<'a> {
    lab: &'a Lab,
    d: &'a Daemon,
    dir: &'a TempDir,
    ca: &'a Path,
}

impl Curl<'_> {
    /// `scheme://ADDR/path`, presenting `cert` (certificate, key) and `token` when given;
    /// bounded (5 s).
    fn get(
        &self,
        scheme: &str,
        path: &str,
        cert: Option<(&Path, &Path)>,
        token: Option<&str>,
    ) -> Got {
        let Curl { lab, d, dir, ca } = *self;
        let body = dir.file("curl-body");
        let _ = std::fs::remove_file(&body);
        let url = format!("{scheme}://{}{path}", d.metrics_addr);
        let mut args: Vec<String> = vec![
            "-sS".into(),
            "--max-time".into(),
            "5".into(),
            "--cacert".into(),
            ca.display().to_string(),
            "-o".into(),
            body.display().to_string(),
            "-w".into(),
            "%{http_code}".into(),
        ];
        if let Some((c, k)) = cert {
            args.extend([
                "--cert".into(),
                c.display().to_string(),
                "--key".into(),
                k.display().to_string(),
            ]);
        }
        if let Some(t) = token {
            args.extend(["-H".into(), format!("Authorization: Bearer {t}")]);
        }
        args.push(url);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = context(
            lab.node
                .exec_timeout(Duration::from_secs(10), "curl", &refs),
        );
        Got {
            exit: out.status.code().unwrap_or(-1),
            status: String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(0),
            body: std::fs::read_to_string(&body).unwrap_or_default(),
        }
    }
}

#[test]
fn the_daemon_serves_metrics_over_mtls_with_a_token_and_refuses_without() {
    let lab = setup();
    let pin = context(BpfPinDir::new("mtls"));
    let dir = TempDir::new("metrics-mtls");
    let pki = TestPki::write(dir.path());
    let token = dir.file("scrape-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let protected = format!(
        "\nmetrics:\n  tls: {{cert_file: {}, key_file: {}, client_ca_file: {}}}\n  bearer_token_file: {}\n",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca.display(),
        token.display()
    );
    let cfg = TempFile::new("mtls.yaml", &test_config(&[("\nmetrics:\n", &protected)]));
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));
    // One flagged attempt, so that the scrape has a count of the daemon's own to show.
    readonly_attempts(&lab, &[43101]);
    let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    let c = Curl {
        lab: &lab,
        d: &d,
        dir: &dir,
        ca: &pki.ca,
    };

    // Certificate and token: the daemon's metrics, the attempt counted (refreshed every
    // 500 ms: a bounded wait).
    let mut ok = c.get("https", "/metrics", client, Some(TOKEN));
    for _ in 0..20 {
        let seen = metric_value(
            &ok.body,
            "node_monitor_connections_total",
            &[("group", "kubelet-readonly"), ("verdict", "denied")],
        );
        if seen.is_some_and(|v| v >= 1.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        ok = c.get("https", "/metrics", client, Some(TOKEN));
    }
    assert_eq!((ok.exit, ok.status), (0, 200), "mTLS + token: {}", ok.body);
    assert!(
        ok.body.contains("node_monitor_build_info"),
        "not the daemon's metrics: {}",
        ok.body
    );
    assert!(
        metric_value(
            &ok.body,
            "node_monitor_connections_total",
            &[("group", "kubelet-readonly"), ("verdict", "denied")],
        )
        .is_some_and(|v| v >= 1.0),
        "the flagged attempt is not counted in the scrape: {}",
        ok.body
    );

    // The certificate without the token: 401.
    let no_token = c.get("https", "/metrics", client, None);
    assert_eq!(no_token.status, 401, "no token: {}", no_token.body);
    assert!(
        !no_token.body.contains("node_monitor_"),
        "{}",
        no_token.body
    );
    // The token without a certificate: 403.
    let no_cert = c.get("https", "/metrics", None, Some(TOKEN));
    assert_eq!(
        no_cert.status, 403,
        "no client certificate: {}",
        no_cert.body
    );
    assert!(!no_cert.body.contains("node_monitor_"), "{}", no_cert.body);
    // A wrong token with the certificate: 401.
    let wrong = c.get("https", "/metrics", client, Some("nope"));
    assert_eq!(wrong.status, 401, "wrong token: {}", wrong.body);
    // A certificate of another CA: the handshake fails, no HTTP status at all.
    let other = Some((
        pki.other_client_cert.as_path(),
        pki.other_client_key.as_path(),
    ));
    let intruder = c.get("https", "/metrics", other, Some(TOKEN));
    assert!(
        intruder.exit != 0 && intruder.status == 0,
        "a certificate of another CA got through: exit {}, status {}",
        intruder.exit,
        intruder.status
    );
    // Plain HTTP on the TLS port: no HTTP answer.
    let plain = c.get("http", "/metrics", None, Some(TOKEN));
    assert!(
        plain.status != 200 && !plain.body.contains("node_monitor_"),
        "plain HTTP got metrics: status {}, {}",
        plain.status,
        plain.body
    );

    // /healthz stays open: no certificate, no token.
    let health = c.get("https", "/healthz", None, None);
    assert_eq!(
        (health.exit, health.status),
        (0, 200),
        "healthz: {}",
        health.body
    );

    let fin = context(d.stop());
    fin.counters.check_invariants();
}
