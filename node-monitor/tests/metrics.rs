//! The metrics endpoint against real peers: Debian's `promtool` lints the exposition, a
//! real `prometheus` scrapes `serve` over loopback, and raw HTTP requests check routes,
//! readiness and content negotiation. Servers bind to 127.0.0.1 only.

#[path = "common"]
mod common {
    #[allow(
        dead_code,
        reason = "this binary uses only the chunked-body decoder of the HTTP helpers"
    )]
    pub(crate) mod http;
    #[allow(dead_code, reason = "this binary needs a free TCP port only")]
    pub(crate) mod ports;
    #[allow(dead_code, reason = "this binary needs temporary directories only")]
    pub(crate) mod temp;
}

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{http::dechunk, ports::free_tcp_port, temp::TempDir};
use node_monitor::metrics::{
    self, GroupSnapshot, Metrics, ProgramSnapshot, SinkSnapshot, Snapshot,
};
use node_monitor_common::GroupStats;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
const OPENMETRICS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn stats(packets: u64) -> GroupStats {
    GroupStats {
        packets,
        bytes: packets * 60,
        new_conns: packets / 2 + 1,
        would_drop: 0,
        dropped: 0,
        events: 1,
        lost_rate_limited: 0,
        lost_ringbuf_full: 0,
        sampled_out: 0,
    }
}

/// A populated snapshot with ordinary group names, as the daemon would build one.
fn snapshot() -> Snapshot {
    let mut groups = Vec::new();
    for group in ["kubelet", "etcd", "nodeports"] {
        for proto in ["tcp", "udp"] {
            for verdict in ["allowed", "denied"] {
                groups.push(GroupSnapshot {
                    group: group.to_owned(),
                    proto,
                    verdict,
                    stats: GroupStats::default(),
                });
            }
        }
    }
    let set = |groups: &mut Vec<GroupSnapshot>, g: &str, p: &str, v: &str, s: GroupStats| {
        let e = groups
            .iter_mut()
            .find(|x| x.group == g && x.proto == p && x.verdict == v)
            .expect("slot exists");
        e.stats = s;
    };
    set(
        &mut groups,
        "kubelet",
        "tcp",
        "denied",
        GroupStats {
            packets: 5,
            bytes: 370,
            new_conns: 3,
            would_drop: 5,
            dropped: 0,
            events: 2,
            lost_rate_limited: 1,
            lost_ringbuf_full: 0,
            sampled_out: 0,
        },
    );
    set(
        &mut groups,
        "kubelet",
        "tcp",
        "allowed",
        GroupStats {
            packets: 1200,
            bytes: 98_000,
            new_conns: 40,
            would_drop: 0,
            dropped: 0,
            events: 4,
            lost_rate_limited: 0,
            lost_ringbuf_full: 2,
            sampled_out: 34,
        },
    );
    set(
        &mut groups,
        "etcd",
        "tcp",
        "denied",
        GroupStats {
            dropped: 7,
            ..stats(7)
        },
    );
    set(&mut groups, "nodeports", "udp", "allowed", stats(11));
    Snapshot {
        groups,
        reasons: node_monitor::metrics::reasons_snapshot(&{
            let mut r = [0u64; node_monitor_common::reason::COUNT as usize];
            r[node_monitor_common::reason::NOT_IP as usize] = 42;
            r[node_monitor_common::reason::TRUNC_L4 as usize] = 3;
            r
        }),
        answers: vec![
            ("kubelet".into(), "tcp", "accepted", 2),
            ("kubelet".into(), "tcp", "refused", 1),
            ("kubelet".into(), "tcp", "none", 0),
        ],
        alerts: vec![
            ("kubelet-unauthorized-source".into(), "high", 3),
            ("etcd-unauthorized-source".into(), "critical", 1),
        ],
        alerts_suppressed: vec![("kubelet-unauthorized-source".into(), 9)],
        lost_events: vec![
            ("output_queue_full".into(), 4),
            ("malformed".into(), 0),
            // Kernel reasons come from `groups`; a caller that lists them too is ignored.
            ("rate_limited".into(), 1),
            ("ringbuf_full".into(), 2),
        ],
        sinks: vec![
            SinkSnapshot {
                name: "siem".into(),
                kind: "http",
                sent: 17,
                dropped: vec![("queue_full".into(), 2), ("send_error".into(), 1)],
                queue_len: 3,
            },
            SinkSnapshot {
                name: "stdout".into(),
                kind: "stdout",
                sent: 20,
                dropped: vec![],
                queue_len: 0,
            },
        ],
        flow_table_entries: 123,
        flow_table_capacity: 65_536,
        programs: vec![
            ProgramSnapshot {
                program: "xdp",
                run_count: 1000,
                run_time_ns: 1_500_000_000,
            },
            ProgramSnapshot {
                program: "tc_egress",
                run_count: 10,
                run_time_ns: 250_000,
            },
        ],
        config_reloads: vec![("success", 2), ("failure", 1)],
        attached_interfaces: 2,
        pending_answers: 6,
    }
}

fn populated() -> Metrics {
    let m = Metrics::new();
    m.update(&snapshot());
    m
}

/// Splits a sample line `name{k="v",...} value` into (name, labels, value).
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, String) {
    let (series, value) = line.rsplit_once(' ').expect("sample has a value");
    let (name, labels) = match series.split_once('{') {
        Some((n, rest)) => (n, rest.strip_suffix('}').expect("closing brace")),
        None => (series, ""),
    };
    let mut out = BTreeMap::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"").expect("label key");
        // Label values in these tests contain no escaped quotes.
        let (v, after) = after.split_once('"').expect("label value");
        out.insert(k.to_owned(), v.to_owned());
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    (name.to_owned(), out, value.to_owned())
}

fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(parse_sample)
        .collect()
}

#[test]
fn text_has_exact_lines() {
    let text = populated().render_text();
    for line in [
        "# TYPE node_monitor_packets_total counter",
        "node_monitor_packets_total{group=\"kubelet\",proto=\"tcp\",verdict=\"denied\"} 5",
        "node_monitor_packets_total{group=\"kubelet\",proto=\"tcp\",verdict=\"allowed\"} 1200",
        "node_monitor_packets_total{group=\"etcd\",proto=\"udp\",verdict=\"allowed\"} 0",
        "node_monitor_bytes_total{group=\"kubelet\",proto=\"tcp\",verdict=\"denied\"} 370",
        "node_monitor_connections_total{group=\"kubelet\",proto=\"tcp\",verdict=\"allowed\"} 40",
        "node_monitor_events_total{group=\"kubelet\",proto=\"tcp\",verdict=\"denied\"} 2",
        "node_monitor_would_drop_packets_total{group=\"kubelet\",proto=\"tcp\"} 5",
        "node_monitor_dropped_packets_total{group=\"etcd\",proto=\"tcp\"} 7",
        "node_monitor_sampled_out_total{group=\"kubelet\",proto=\"tcp\"} 34",
        // Kernel losses summed over groups, plus userspace reasons.
        "node_monitor_lost_events_total{reason=\"rate_limited\"} 1",
        "node_monitor_lost_events_total{reason=\"ringbuf_full\"} 2",
        "node_monitor_lost_events_total{reason=\"output_queue_full\"} 4",
        "node_monitor_lost_events_total{reason=\"malformed\"} 0",
        "node_monitor_packets_unclassified_total{reason=\"not_ip\"} 42",
        "node_monitor_packets_unclassified_total{reason=\"truncated_l4\"} 3",
        "node_monitor_packets_unclassified_total{reason=\"bad_tcp_header\"} 0",
        "node_monitor_flagged_connections_total{group=\"kubelet\",proto=\"tcp\",answer=\"accepted\"} 2",
        "node_monitor_alerts_total{rule=\"kubelet-unauthorized-source\",severity=\"high\"} 3",
        "node_monitor_alerts_suppressed_total{rule=\"kubelet-unauthorized-source\"} 9",
        "node_monitor_sink_records_total{sink=\"siem\",kind=\"http\"} 17",
        "node_monitor_sink_dropped_total{sink=\"siem\",kind=\"http\",reason=\"queue_full\"} 2",
        "# TYPE node_monitor_sink_queue_length gauge",
        "node_monitor_sink_queue_length{sink=\"siem\"} 3",
        "# TYPE node_monitor_flow_table_entries gauge",
        "node_monitor_flow_table_entries 123",
        "node_monitor_flow_table_capacity 65536",
        "node_monitor_program_run_count_total{program=\"xdp\"} 1000",
        "node_monitor_program_run_time_seconds_total{program=\"xdp\"} 1.5",
        "node_monitor_program_run_time_seconds_total{program=\"tc_egress\"} 0.00025",
        "node_monitor_config_reloads_total{result=\"success\"} 2",
        "node_monitor_config_reloads_total{result=\"failure\"} 1",
        "node_monitor_attached_interfaces 2",
        "node_monitor_pending_answers 6",
        "node_monitor_ready 0",
        "# TYPE node_monitor_build_info gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }
    let version = format!(
        "node_monitor_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        text.lines().any(|l| l == version),
        "{version:?} in:\n{text}"
    );
    // Every HELP says something.
    for l in text.lines().filter(|l| l.starts_with("# HELP ")) {
        let help = l.splitn(4, ' ').nth(3).unwrap_or("");
        assert!(help.len() > 10, "short HELP: {l}");
    }
    // No `# EOF` in the 0.0.4 format.
    assert!(!text.contains("# EOF"));
}

#[test]
fn update_replaces_values_and_ready_toggles() {
    let m = populated();
    let mut s = snapshot();
    s.groups[0].stats.packets = 99_999; // kubelet/tcp/allowed
    s.alerts.clear();
    m.update(&s);
    m.set_ready(true);
    let text = m.render_text();
    assert!(text.contains(
        "node_monitor_packets_total{group=\"kubelet\",proto=\"tcp\",verdict=\"allowed\"} 99999\n"
    ));
    assert!(!text.contains("node_monitor_alerts_total"), "{text}");
    assert!(text.contains("node_monitor_ready 1\n"));
    m.set_ready(false);
    assert!(m.render_text().contains("node_monitor_ready 0\n"));
}

#[test]
fn duplicate_series_are_summed_not_repeated() {
    let m = Metrics::new();
    m.update(&Snapshot {
        alerts: vec![("r1".into(), "high", 2), ("r1".into(), "high", 3)],
        ..Snapshot::default()
    });
    let text = m.render_text();
    let lines: Vec<_> = text
        .lines()
        .filter(|l| l.starts_with("node_monitor_alerts_total"))
        .collect();
    assert_eq!(
        lines,
        ["node_monitor_alerts_total{rule=\"r1\",severity=\"high\"} 5"]
    );
}

#[test]
fn empty_metrics_render_build_info_and_ready() {
    let m = Metrics::new();
    let text = m.render_text();
    assert!(text.contains("node_monitor_build_info{"), "{text}");
    assert!(text.contains("node_monitor_ready 0\n"), "{text}");
    let om = m.render_openmetrics();
    assert!(om.ends_with("# EOF\n"), "{om}");
}

#[test]
fn openmetrics_ends_with_eof() {
    let om = populated().render_openmetrics();
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert_eq!(om.matches("# EOF").count(), 1);
    for line in [
        "# TYPE node_monitor_packets counter",
        "node_monitor_packets_total{group=\"kubelet\",proto=\"tcp\",verdict=\"denied\"} 5",
        "# TYPE node_monitor_build info",
        "# UNIT node_monitor_program_run_time_seconds seconds",
        "node_monitor_program_run_time_seconds_total{program=\"xdp\"} 1.5",
    ] {
        assert!(om.lines().any(|l| l == line), "missing {line:?} in:\n{om}");
    }
}

#[test]
fn names_prefixed_counters_total_labels_bounded() {
    const ALLOWED_LABELS: [&str; 12] = [
        "group", "proto", "verdict", "answer", "rule", "severity", "reason", "sink", "kind",
        "program", "result", "version",
    ];
    for text in [populated().render_text(), populated().render_openmetrics()] {
        let s = samples(&text);
        assert!(s.len() > 40, "{text}");
        for (name, labels, value) in &s {
            assert!(name.starts_with("node_monitor_"), "{name}");
            value.parse::<f64>().expect("numeric value");
            for (k, v) in labels {
                assert!(ALLOWED_LABELS.contains(&k.as_str()), "label {k} on {name}");
                assert!(
                    v.parse::<IpAddr>().is_err(),
                    "{name}: {k}={v} is an address"
                );
                assert!(
                    v.parse::<SocketAddr>().is_err(),
                    "{name}: {k}={v} is an address"
                );
                assert!(
                    v.is_empty() || !v.chars().all(|c| c.is_ascii_digit()),
                    "{name}: {k}={v} looks like a port"
                );
                assert!(!v.contains('/'), "{name}: {k}={v} looks like a CIDR");
            }
        }
    }
    // Prometheus text: every counter family's name ends in `_total`, and so does every
    // sample of a counter.
    let text = populated().render_text();
    let counters: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    assert_eq!(counters.len(), 17, "{counters:?}");
    for c in &counters {
        assert!(c.ends_with("_total"), "counter {c}");
    }
    for (name, _, _) in samples(&text) {
        if name.ends_with("_total") {
            assert!(counters.contains(&name.as_str()), "{name} is not a counter");
        }
    }
}

fn promtool_check(text: &str) -> (bool, String) {
    use std::io::Write as _;
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: install Debian's `prometheus` package (apt-get install prometheus)"
    );
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}

#[test]
fn promtool_check_metrics_is_clean() {
    for m in [Metrics::new(), populated()] {
        m.set_ready(true);
        let text = m.render_text();
        let (ok, report) = promtool_check(&text);
        assert!(
            ok && report.trim().is_empty(),
            "promtool: {report}\n---\n{text}"
        );
    }
    // The lint is real: it does flag a bad exposition.
    let (ok, report) = promtool_check("# TYPE foo counter\nfoo 1\n");
    assert!(!ok || !report.trim().is_empty(), "promtool flagged nothing");
}

#[test]
fn accept_negotiation() {
    assert!(metrics::wants_openmetrics(OPENMETRICS_ACCEPT));
    assert!(metrics::wants_openmetrics("Application/OpenMetrics-Text"));
    assert!(!metrics::wants_openmetrics("text/plain;version=0.0.4"));
    assert!(!metrics::wants_openmetrics("*/*"));
    assert!(!metrics::wants_openmetrics(""));
    assert!(!metrics::wants_openmetrics(
        "application/openmetrics-text;q=0, text/plain"
    ));
}

// ---------------------------------------------------------------------------------------
// HTTP

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(m: Metrics) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(metrics::serve(listener, m, async move {
            let _ = rx.await;
        }));
        Server {
            addr,
            stop: Some(tx),
            task,
        }
    }
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let res = tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task");
        res.expect("serve result");
    }
}

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 GET over a fresh connection (`Connection: close`), bounded in time.
async fn http_get(
    addr: SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(a) = accept {
            req.push_str(&format!("Accept: {a}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "HTTP GET timed out"))??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {text:?}")))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

#[tokio::test]
async fn http_routes_readiness_and_negotiation() {
    let m = populated();
    let srv = Server::start(m.clone()).await;

    let r = http_get(srv.addr, "/healthz", None).await.expect("healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok");

    let r = http_get(srv.addr, "/readyz", None).await.expect("readyz");
    assert_eq!(r.status, 503, "not ready before set_ready(true)");
    m.set_ready(true);
    let r = http_get(srv.addr, "/readyz", None).await.expect("readyz");
    assert_eq!(r.status, 200);

    // No Accept header, and Accept asking for the 0.0.4 text format: Prometheus text.
    for accept in [None, Some("text/plain;version=0.0.4"), Some("*/*")] {
        let r = http_get(srv.addr, "/metrics", accept)
            .await
            .expect("metrics");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8"),
            "accept {accept:?}"
        );
        assert!(!r.body.contains("# EOF"));
        assert!(r.body.contains(
            "node_monitor_packets_total{group=\"kubelet\",proto=\"tcp\",verdict=\"denied\"} 5\n"
        ));
        assert!(r.body.contains("node_monitor_ready 1\n"));
    }
    // What Prometheus sends: OpenMetrics.
    let r = http_get(srv.addr, "/metrics", Some(OPENMETRICS_ACCEPT))
        .await
        .expect("metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(r.body.ends_with("# EOF\n"), "{}", r.body);
    assert!(r.body.contains("# TYPE node_monitor_packets counter\n"));

    let r = http_get(srv.addr, "/nope", None).await.expect("404");
    assert_eq!(r.status, 404);
    let r = http_get(srv.addr, "/metrics/extra", None)
        .await
        .expect("404");
    assert_eq!(r.status, 404);

    // Updates show up on the next scrape.
    let mut s = snapshot();
    s.pending_answers = 77;
    m.update(&s);
    let r = http_get(srv.addr, "/metrics", None).await.expect("metrics");
    assert!(r.body.contains("node_monitor_pending_answers 77\n"));

    let addr = srv.addr;
    srv.stop().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still listening after shutdown"
    );
}

// ---------------------------------------------------------------------------------------
// A real Prometheus

/// Kills and reaps the child on drop, even when the test fails.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn query(prom: SocketAddr, q: &str) -> Option<Vec<serde_json::Value>> {
    let path = format!("/api/v1/query?query={q}");
    let r = http_get(prom, &path, None).await.ok()?;
    if r.status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    if v["status"] != "success" {
        return None;
    }
    v["data"]["result"].as_array().cloned()
}

fn find_value(results: &[serde_json::Value], labels: &[(&str, &str)]) -> Option<String> {
    results
        .iter()
        .find(|r| labels.iter().all(|(k, v)| r["metric"][*k] == *v))
        .and_then(|r| r["value"][1].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrapes_serve() {
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: install Debian's `prometheus` package (apt-get install prometheus)"
    );
    let m = populated();
    m.set_ready(true);
    let srv = Server::start(m.clone()).await;

    let dir = TempDir::new("prometheus");
    let config = dir.file("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: node-monitor\n    static_configs:\n      - targets: ['{}']\n",
            srv.addr
        ),
    )
    .expect("write config");
    let data = dir.file("data");
    let log_path = dir.file("prometheus.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let prom_addr = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={prom_addr}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {PROMETHEUS}: {e}"));
    let _guard = ChildGuard(child);

    let want = [
        ("group", "kubelet"),
        ("proto", "tcp"),
        ("verdict", "denied"),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::from("no answer yet");
    let mut ok = false;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(packets) = query(prom_addr, "node_monitor_packets_total").await else {
            continue;
        };
        last = format!("{packets:?}");
        if find_value(&packets, &want).as_deref() != Some("5") {
            continue;
        }
        let Some(up) = query(prom_addr, "up").await else {
            continue;
        };
        last = format!("up: {up:?}");
        if find_value(&up, &[("job", "node-monitor")]).as_deref() == Some("1") {
            ok = true;
            break;
        }
    }
    let prom_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        ok,
        "Prometheus did not report node_monitor_packets_total{{group=\"kubelet\",proto=\"tcp\",verdict=\"denied\"}} = 5 and up = 1 within 20 s; last: {last}\n--- prometheus log ---\n{prom_log}"
    );
    // More of the exposition made it through Prometheus's parser.
    let runtime = query(prom_addr, "node_monitor_program_run_time_seconds_total")
        .await
        .unwrap_or_default();
    assert_eq!(
        find_value(&runtime, &[("program", "xdp")]).as_deref(),
        Some("1.5"),
        "{runtime:?}"
    );
    let build = query(prom_addr, "node_monitor_build_info")
        .await
        .unwrap_or_default();
    assert_eq!(
        find_value(&build, &[("version", env!("CARGO_PKG_VERSION"))]).as_deref(),
        Some("1"),
        "{build:?}"
    );
    drop(_guard);
    srv.stop().await;
}

#[test]
fn bpf_stats_enable_as_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: BPF_ENABLE_STATS needs root");
        return;
    }
    let s = metrics::BpfStats::enable().expect("BPF_ENABLE_STATS");
    drop(s);
    // The helper skips programs whose info cannot be read.
    assert!(metrics::program_stats(std::iter::empty()).is_empty());
}
