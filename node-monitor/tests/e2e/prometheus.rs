//! A real Prometheus scrapes the daemon in its namespace; promtool checks what it serves.

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use node_monitor_lab::{BpfPinDir, Child, Netns, output_with_timeout};
use serde_json::Value;

use crate::{
    common::{
        daemon::{self, Daemon, context, scrape},
        http::http_get,
        peers::{TcpOutcome, tcp_connect},
        temp::{TempDir, TempFile},
    },
    setup::{CONNECT_TIMEOUT, node, outside, setup, test_config},
};

/// Percent-encodes a URL query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One instant-vector query against Prometheus's API; the first sample's value.
fn prom_query(ns: &Netns, prom: SocketAddr, q: &str) -> Option<f64> {
    let (status, body) =
        http_get(ns, prom, &format!("/api/v1/query?query={}", urlencode(q))).ok()?;
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    v.pointer("/data/result/0/value/1")?.as_str()?.parse().ok()
}

/// Test 11: a real Prometheus (Debian's) in the node namespace scrapes the real daemon every
/// second: `up` is 1 and the flagged attempt shows in `node_monitor_connections_total`; and
/// `promtool check metrics` finds nothing to say about the exposition.
#[test]
fn prometheus_scrapes_the_daemon() {
    daemon::require_root_and_tools(&["prometheus", "promtool"]);
    let lab = setup();
    let pin = context(BpfPinDir::new("prom"));
    let dir = TempDir::new("prom");
    let cfg = TempFile::new("prom-nm.yaml", &test_config(&[]));
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));
    let prom_addr = SocketAddr::from(([127, 0, 0, 1], daemon::next_metrics_port()));
    let prom_cfg = dir.file("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: node-monitor\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: [\"{}\"]\n",
            d.metrics_addr
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.file("prometheus.log")).unwrap();
    let mut cmd = lab.node.nsenter("prometheus");
    cmd.arg(format!("--config.file={}", prom_cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.file("data").display()
        ))
        .arg(format!("--web.listen-address={prom_addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    let _prom = context(Child::spawn(&mut cmd));

    let o = outside(42801, false);
    assert_eq!(
        tcp_connect(&lab.outside, o, node(10250, false), CONNECT_TIMEOUT),
        TcpOutcome::Refused
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let q = r#"node_monitor_connections_total{group="kubelet",verdict="denied"}"#;
    let (mut up, mut conns) = (None, None);
    while Instant::now() < deadline {
        up = prom_query(&lab.node, prom_addr, r#"up{job="node-monitor"}"#);
        conns = prom_query(&lab.node, prom_addr, q);
        if up == Some(1.0) && conns.is_some_and(|c| c >= 1.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let plog = std::fs::read_to_string(dir.file("prometheus.log")).unwrap_or_default();
    assert_eq!(up, Some(1.0), "up; prometheus log:\n{plog}");
    assert!(
        conns.is_some_and(|c| c >= 1.0),
        "{q} = {conns:?}; prometheus log:\n{plog}"
    );

    // promtool on the daemon's exposition.
    let body = scrape(&lab.node, &d);
    let file = dir.file("metrics.txt");
    std::fs::write(&file, &body).unwrap();
    let mut check = Command::new("sh");
    check.args([
        "-c",
        &format!("promtool check metrics < '{}'", file.display()),
    ]);
    let out = context(output_with_timeout(check, Duration::from_secs(20)));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics ({}):\n{said}\nbody:\n{body}",
        out.status
    );
    let fin = context(d.stop());
    fin.counters.check_invariants();
}
