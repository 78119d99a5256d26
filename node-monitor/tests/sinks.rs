//! Output sinks against real peers on loopback: files with rotation, a real rsyslogd over
//! UDP, TCP and a unix socket, an axum HTTP receiver that accepts, fails, hangs or is gone.
//! A trivial renderer (the alert id, the format) keeps these tests off the SIEM formats.
//! Every wait is bounded.

#[path = "common"]
mod common {
    pub(crate) mod ports;
    pub(crate) mod receivers;
    #[allow(dead_code, reason = "this binary needs temporary directories only")]
    pub(crate) mod temp;
    pub(crate) mod wait;
}

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use common::{
    ports::free_tcp_port,
    receivers::{HttpReceiver, Rsyslog, Script},
    temp::{TempDir, lines_of},
    wait::wait_for_async,
};
use node_monitor::{
    alerts::{Alert, AlertKind, FloodScope, OutputItem, Rule, Severity},
    config::{Format, SinkKind, SinkSpec, SyslogTransport},
    events::{FlowRecord, RecordType},
    sinks::{Renderer, SinkStats, Sinks},
};

const SEVERITIES: [Severity; 4] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
];

fn alert(id: &str, rule: &'static str, severity: Severity) -> Arc<OutputItem> {
    Arc::new(OutputItem::Alert(Alert {
        id: id.to_owned(),
        time: SystemTime::now(),
        rule: Rule {
            id: rule,
            name: "test rule",
            version: 1,
            severity,
            description: "",
        },
        kind: AlertKind::Flood {
            scope: FloodScope::Node,
            rate_limited: 1,
            ringbuf_full: 0,
            window: Duration::from_secs(1),
        },
        suppressed: 0,
        follow_up_of: None,
        losses_since_previous: Default::default(),
    }))
}

fn a(id: impl Into<String>) -> Arc<OutputItem> {
    alert(&id.into(), "NM-1001", Severity::High)
}

fn flow(port: u16) -> Arc<OutputItem> {
    Arc::new(OutputItem::Flow(FlowRecord {
        time: humantime::parse_rfc3339("2024-01-02T03:04:05.000006Z").unwrap(),
        record_type: RecordType::Flow,
        group: "kubelet".into(),
        verdict: "allowed",
        action: "pass",
        answer: None,
        protocol: "tcp",
        family: "ipv4",
        src_ip: "10.0.0.1".parse().unwrap(),
        src_port: port,
        dst_ip: "10.0.0.2".parse().unwrap(),
        dst_port: 10250,
        interface: None,
        ifindex: 1,
        hook: "xdp",
        vlan: vec![],
        tcp_flags: None,
        packet_length: 60,
        ktime_ns: 0,
        sampled: true,
    }))
}

/// `{"id":"<alert id>","format":"<Format>"}`, or `{"flow":<src port>,...}`.
fn render() -> Renderer {
    Arc::new(|item, format, out| {
        let line = match item {
            OutputItem::Alert(a) => format!("{{\"id\":\"{}\",\"format\":\"{format:?}\"}}", a.id),
            OutputItem::Flow(f) => format!("{{\"flow\":{},\"format\":\"{format:?}\"}}", f.src_port),
        };
        out.extend_from_slice(line.as_bytes());
    })
}

fn id_of(line: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    match (&v["id"], &v["flow"]) {
        (serde_json::Value::String(s), _) => s.clone(),
        (_, serde_json::Value::Number(n)) => format!("flow-{n}"),
        _ => panic!("no id in {line}"),
    }
}

fn file_spec(name: &str, path: &Path, max_size_bytes: u64, keep: u32, queue: usize) -> SinkSpec {
    SinkSpec {
        name: name.into(),
        kind: SinkKind::File {
            path: path.to_owned(),
            max_size_bytes,
            keep,
        },
        format: Format::Ecs,
        queue,
        flows: false,
    }
}

fn http_spec(name: &str, url: &str, batch_max: usize, max_retries: u32, queue: usize) -> SinkSpec {
    SinkSpec {
        name: name.into(),
        kind: SinkKind::Http {
            url: url.into(),
            batch_max,
            batch_interval: Duration::from_millis(100),
            timeout: Duration::from_secs(30),
            max_retries,
            headers: vec![("X-Token".into(), "t0k3n".into())],
        },
        format: Format::Ocsf,
        queue,
        flows: false,
    }
}

fn stat<'a>(stats: &'a [SinkStats], name: &str) -> &'a SinkStats {
    stats
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no sink {name} in {stats:?}"))
}

fn dropped(s: &SinkStats, reason: &str) -> u64 {
    s.dropped.get(reason).copied().unwrap_or(0)
}

/// Every record offered to the sink is accounted for exactly once.
fn assert_accounted(s: &SinkStats, offered: u64) {
    assert_eq!(s.sent + s.dropped_total(), offered, "accounting of {s:?}");
    assert_eq!(s.queue_len, 0, "{s:?}");
}

async fn wait_sent(sinks: &Sinks, name: &str, n: u64) {
    wait_for_async(
        Duration::from_secs(10),
        &format!("{name} to deliver {n}"),
        || (stat(&sinks.stats(), name).sent >= n).then_some(()),
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// file

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_rotation_keeps_exactly_keep_old_files_in_order() {
    let dir = TempDir::new("rotate");
    let path = dir.path().join("sub/dir/alerts.json");
    // Each rendered line is 100 bytes: 10 per 1000-byte file.
    let render: Renderer = Arc::new(|item, _, out| match item {
        OutputItem::Alert(a) => out.extend_from_slice(format!("{:.<99}", a.id).as_bytes()),
        OutputItem::Flow(_) => unreachable!(),
    });
    let sinks = Sinks::start(&[file_spec("file", &path, 1000, 3, 1000)], render).unwrap();
    for i in 1..=75 {
        sinks.send(a(format!("rec-{i:05}")));
    }
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].sent, 75, "{stats:?}");
    assert_accounted(&stats[0], 75);

    let ids = |p: PathBuf| -> Vec<u32> {
        let content =
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            content.len() <= 1000,
            "{} has {} bytes",
            p.display(),
            content.len()
        );
        content
            .lines()
            .map(|l| l.trim_end_matches('.')[4..].parse().unwrap())
            .collect()
    };
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    assert_eq!(ids(path.clone()), (71..=75).collect::<Vec<_>>());
    assert_eq!(ids(rotated(1)), (61..=70).collect::<Vec<_>>());
    assert_eq!(ids(rotated(2)), (51..=60).collect::<Vec<_>>());
    assert_eq!(ids(rotated(3)), (41..=50).collect::<Vec<_>>());
    assert!(!rotated(4).exists(), "keep: 3 left a 4th old file");
    let files = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
    assert_eq!(files, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_rotation_loses_no_record_and_appends_to_an_existing_file() {
    let dir = TempDir::new("rotate-all");
    let path = dir.path().join("alerts.json");
    std::fs::write(&path, "{\"id\":\"old\",\"format\":\"Ecs\"}\n").unwrap();
    let spec = file_spec("file", &path, 2048, 1000, 100_000);
    let sinks = Sinks::start(std::slice::from_ref(&spec), render()).unwrap();
    let n = 6_000;
    for i in 0..n {
        sinks.send(a(format!("r{i}")));
    }
    let stats = sinks.shutdown(Duration::from_secs(60)).await;
    assert_eq!(stats[0].sent, n, "{stats:?}");
    assert_accounted(&stats[0], n);
    // Oldest first: path.<k> ... path.1, path.
    let mut old: Vec<u32> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()?
                .strip_prefix("alerts.json.")?
                .parse()
                .ok()
        })
        .collect();
    old.sort_unstable_by(|a, b| b.cmp(a));
    assert!(old.len() > 50, "expected many rotations, got {}", old.len());
    let mut all = Vec::new();
    for k in &old {
        let f = lines_of(&PathBuf::from(format!("{}.{k}", path.display())));
        assert!(f.iter().map(|l| l.len() + 1).sum::<usize>() <= 2048);
        all.extend(f);
    }
    all.extend(lines_of(&path));
    let got: Vec<String> = all.iter().map(|l| id_of(l)).collect();
    let want: Vec<String> = std::iter::once("old".to_owned())
        .chain((0..n).map(|i| format!("r{i}")))
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "records lost, duplicated or out of order across rotation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_errors_name_the_sink() {
    let dir = TempDir::new("errors");
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let err = Sinks::start(
        &[file_spec("audit-file", &blocker.join("x.json"), 0, 1, 10)],
        render(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("sink audit-file: cannot open "), "{err}");
    let err = Sinks::start(&[http_spec("siem", "ftp://x/", 10, 1, 10)], render())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("sink siem: "), "{err}");
    let mut zero = file_spec("q0", &dir.path().join("q0"), 0, 1, 0);
    zero.queue = 0;
    let err = Sinks::start(&[zero], render()).unwrap_err().to_string();
    assert_eq!(err, "sink q0: queue must hold at least 1 record");
    let dup = file_spec("same", &dir.path().join("a"), 0, 1, 10);
    let err = Sinks::start(&[dup.clone(), dup], render())
        .unwrap_err()
        .to_string();
    assert_eq!(err, "sink name \"same\" is used more than once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_records_go_only_to_sinks_that_take_flows() {
    let dir = TempDir::new("flows");
    let (p1, p2) = (dir.path().join("alerts"), dir.path().join("all"));
    let mut all = file_spec("all", &p2, 0, 1, 100);
    all.flows = true;
    let sinks = Sinks::start(&[file_spec("alerts", &p1, 0, 1, 100), all], render()).unwrap();
    sinks.send(a("x1"));
    sinks.send(flow(4242));
    sinks.send(a("x2"));
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stat(&stats, "alerts").sent, 2);
    assert_eq!(stat(&stats, "all").sent, 3);
    assert_eq!(
        lines_of(&p1).iter().map(|l| id_of(l)).collect::<Vec<_>>(),
        ["x1", "x2"]
    );
    assert_eq!(
        lines_of(&p2).iter().map(|l| id_of(l)).collect::<Vec<_>>(),
        ["x1", "flow-4242", "x2"]
    );
}

// ---------------------------------------------------------------------------------------
// syslog

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_to_a_real_rsyslogd_over_udp_tcp_and_unix() {
    let rsyslog = tokio::task::spawn_blocking(Rsyslog::start).await.unwrap();
    let n = 200usize;
    let transports = [
        ("udp", SyslogTransport::Udp(rsyslog.udp)),
        ("tcp", SyslogTransport::Tcp(rsyslog.tcp)),
        ("unix", SyslogTransport::Unix(rsyslog.unix.clone())),
    ];
    // Every record: its id, rule and severity, and the exact message we expect.
    let mut expected = Vec::new();
    for (tag, transport) in transports {
        let spec = SinkSpec {
            name: format!("syslog-{tag}"),
            kind: SinkKind::Syslog { transport },
            format: Format::Cef,
            queue: 10_000,
            flows: false,
        };
        let sinks = Sinks::start(&[spec], render()).unwrap();
        for i in 0..n {
            let sev = SEVERITIES[i % 4];
            const RULES: [&str; 7] = [
                "NM-1000", "NM-1001", "NM-1002", "NM-1003", "NM-1004", "NM-1005", "NM-1006",
            ];
            let rule = RULES[i % 7];
            let id = format!("{tag}-{i:04} é|x");
            sinks.send(alert(&id, rule, sev));
            let pri = 80 + [2, 3, 4, 5][i % 4];
            expected.push(format!(
                "{pri}|node-monitor|{rule}|{{\"id\":\"{id}\",\"format\":\"Cef\"}}"
            ));
        }
        let stats = sinks.shutdown(Duration::from_secs(10)).await;
        assert_eq!(stats[0].sent, n as u64, "{stats:?}");
        assert_accounted(&stats[0], n as u64);
    }
    let got = wait_for_async(
        Duration::from_secs(15),
        "rsyslogd to write every message",
        || {
            let got: Vec<String> = rsyslog
                .lines()
                .into_iter()
                .filter(|l| !l.contains("|probe|"))
                .collect();
            (got.len() >= expected.len()).then_some(got)
        },
    )
    .await;
    // rsyslog's inputs run in their own threads: compare per transport, as multisets.
    for tag in ["udp", "tcp", "unix"] {
        let of = |v: &[String]| -> Vec<String> {
            let mut v: Vec<String> = v
                .iter()
                .filter(|l| l.contains(&format!("\"id\":\"{tag}-")))
                .cloned()
                .collect();
            v.sort();
            v
        };
        let (want, got) = (of(&expected), of(&got));
        let missing: Vec<_> = want.iter().filter(|l| !got.contains(l)).take(3).collect();
        let unexpected: Vec<_> = got.iter().filter(|l| !want.contains(l)).take(3).collect();
        assert!(
            missing.is_empty() && unexpected.is_empty(),
            "{tag}: missing {missing:?}, unexpected {unexpected:?}"
        );
        assert_eq!(got.len(), n, "{tag}: duplicates");
    }
    assert_eq!(got.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tcp_waits_for_its_peer_and_reconnects() {
    // Nothing listens yet: records stay queued while the sink retries the connection.
    let port = free_tcp_port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let spec = SinkSpec {
        name: "syslog".into(),
        kind: SinkKind::Syslog {
            transport: SyslogTransport::Tcp(addr),
        },
        format: Format::Ecs,
        queue: 100,
        flows: false,
    };
    let sinks = Sinks::start(&[spec], render()).unwrap();
    for i in 0..10 {
        sinks.send(a(format!("t{i}")));
    }
    wait_for_async(Duration::from_secs(5), "reconnect attempts", || {
        (sinks.stats()[0].retries >= 2).then_some(())
    })
    .await;
    assert_eq!(sinks.stats()[0].sent, 0);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(15), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut got = Vec::new();
    let read = async {
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0u8; 4096];
        loop {
            let k = conn.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..k]);
            if k == 0 || frames(&got).len() >= 10 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap();
    let msgs = frames(&got);
    assert_eq!(msgs.len(), 10);
    for (i, m) in msgs.iter().enumerate() {
        assert!(m.starts_with("<83>1 "), "{m}");
        assert!(
            m.ends_with(&format!(
                " node-monitor {} NM-1001 - {{\"id\":\"t{i}\",\"format\":\"Ecs\"}}",
                std::process::id()
            )),
            "{m}"
        );
    }
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].sent, 10);
}

/// Splits RFC 6587 octet-counted frames.
fn frames(mut b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(sp) = b.iter().position(|&c| c == b' ') {
        let len: usize = std::str::from_utf8(&b[..sp]).unwrap().parse().unwrap();
        if b.len() < sp + 1 + len {
            break;
        }
        out.push(String::from_utf8(b[sp + 1..sp + 1 + len].to_vec()).unwrap());
        b = &b[sp + 1 + len..];
    }
    out
}

// ---------------------------------------------------------------------------------------
// http

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_batches_ndjson_and_delivers_each_record_once() {
    let rx = HttpReceiver::start(Script::Ok).await;
    let sinks = Sinks::start(&[http_spec("siem", &rx.url(), 7, 3, 1000)], render()).unwrap();
    let n = 200u64;
    for i in 0..n {
        sinks.send(a(format!("h{i}")));
    }
    wait_sent(&sinks, "siem", n).await;
    // A partial batch goes out after batch_interval (100 ms), as one request.
    let before = rx.received().len();
    for i in 0..3 {
        sinks.send(a(format!("late{i}")));
    }
    wait_sent(&sinks, "siem", n + 3).await;
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_accounted(&stats[0], n + 3);
    assert_eq!(stats[0].sent, n + 3);
    assert_eq!(stats[0].retries, 0);

    let reqs = rx.received();
    assert_eq!(
        reqs.len(),
        before + 1,
        "the 3 late records came in one request"
    );
    assert!(reqs.len() as u64 > n.div_ceil(7));
    let mut ids = Vec::new();
    for r in &reqs {
        assert_eq!(r.content_type.as_deref(), Some("application/x-ndjson"));
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "x-token" && v == "t0k3n"),
            "{:?}",
            r.headers
        );
        assert!(r.body.ends_with('\n'));
        let lines: Vec<&str> = r.body.lines().collect();
        assert!((1..=7).contains(&lines.len()), "batch of {}", lines.len());
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["format"], "Ocsf");
            ids.push(v["id"].as_str().unwrap().to_owned());
        }
    }
    let want: Vec<String> = (0..n)
        .map(|i| format!("h{i}"))
        .chain((0..3).map(|i| format!("late{i}")))
        .collect();
    assert_eq!(ids, want, "every record exactly once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_retries_503_then_delivers_once() {
    let rx = HttpReceiver::start(Script::FailFirst { n: 2, status: 503 }).await;
    let sinks = Sinks::start(&[http_spec("siem", &rx.url(), 5, 3, 100)], render()).unwrap();
    let t0 = Instant::now();
    for i in 0..5 {
        sinks.send(a(format!("r{i}")));
    }
    wait_sent(&sinks, "siem", 5).await;
    let backoff = t0.elapsed();
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].sent, 5);
    assert_eq!(stats[0].retries, 2);
    assert_accounted(&stats[0], 5);
    // 200 ms doubling with equal jitter: at least 100 + 200 ms before the third attempt.
    assert!(backoff >= Duration::from_millis(300), "{backoff:?}");
    let reqs = rx.received();
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 503, 200]
    );
    assert!(
        reqs.iter().all(|r| r.body == reqs[0].body),
        "the same batch is retried"
    );
    let delivered: Vec<String> = reqs[2].body.lines().map(id_of).collect();
    assert_eq!(delivered, ["r0", "r1", "r2", "r3", "r4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_client_errors_are_not_retried() {
    let rx = HttpReceiver::start(Script::FailFirst { n: 1, status: 400 }).await;
    let sinks = Sinks::start(&[http_spec("siem", &rx.url(), 3, 5, 100)], render()).unwrap();
    for i in 0..3 {
        sinks.send(a(format!("bad{i}")));
    }
    wait_for_async(
        Duration::from_secs(5),
        "the rejected batch to be counted",
        || (dropped(&sinks.stats()[0], "http_status") == 3).then_some(()),
    )
    .await;
    for i in 0..3 {
        sinks.send(a(format!("good{i}")));
    }
    wait_sent(&sinks, "siem", 3).await;
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].retries, 0);
    assert_eq!(dropped(&stats[0], "http_status"), 3);
    assert_accounted(&stats[0], 6);
    assert_eq!(rx.received().len(), 2);
}

/// A stopped receiver makes drops counted, not a stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_receiver_makes_drops_counted_not_a_stall() {
    let dir = TempDir::new("dead-http");
    let path = dir.path().join("alerts.json");
    let dead = format!("http://127.0.0.1:{}/ingest", free_tcp_port());
    let specs = [
        http_spec("siem", &dead, 50, 2, 100),
        file_spec("file", &path, 0, 1, 20_000),
    ];
    let sinks = Sinks::start(&specs, render()).unwrap();
    let n = 10_000u64;
    let t0 = Instant::now();
    for i in 0..n {
        sinks.send(a(format!("d{i}")));
    }
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(1), "10,000 sends took {took:?}");
    // The file sink is not held back by the dead HTTP sink.
    wait_sent(&sinks, "file", n).await;
    // After max_retries (2: ~0.3-0.6 s of backoff) the first batch is dropped and counted.
    wait_for_async(
        Duration::from_secs(10),
        "a batch dropped after its retries",
        || (dropped(stat(&sinks.stats(), "siem"), "retries_exhausted") >= 50).then_some(()),
    )
    .await;
    let stats = sinks.shutdown(Duration::from_secs(3)).await;
    let (http, file) = (stat(&stats, "siem"), stat(&stats, "file"));
    assert_eq!(http.sent, 0);
    assert!(dropped(http, "queue_full") >= n - 100 - 50, "{http:?}");
    assert!(dropped(http, "retries_exhausted") >= 50, "{http:?}");
    assert!(http.retries >= 2, "{http:?}");
    assert_accounted(http, n);
    assert_eq!(file.sent, n);
    assert_accounted(file, n);
    assert_eq!(lines_of(&path).len() as u64, n);
}

/// queue 10 + one batch of 5 in flight (the receiver holds it): everything else is a
/// `queue_full` drop, exactly; `send` stays instant and the file sink gets everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocked_sink_drops_exactly_what_does_not_fit() {
    let rx = HttpReceiver::start(Script::Hang(Duration::from_secs(60))).await;
    let dir = TempDir::new("blocked");
    let path = dir.path().join("alerts.json");
    let specs = [
        http_spec("siem", &rx.url(), 5, 0, 10),
        file_spec("file", &path, 0, 1, 10_000),
    ];
    let sinks = Sinks::start(&specs, render()).unwrap();
    for i in 0..5 {
        sinks.send(a(format!("first{i}")));
    }
    wait_for_async(
        Duration::from_secs(5),
        "the receiver to hold the first batch",
        || (rx.seen() == 1).then_some(()),
    )
    .await;
    let more = 1000u64;
    let t0 = Instant::now();
    for i in 0..more {
        sinks.send(a(format!("more{i}")));
    }
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    let total = 5 + more;
    let s = sinks.stats();
    let http = stat(&s, "siem");
    assert_eq!(dropped(http, "queue_full"), total - (10 + 5), "{http:?}");
    assert_eq!(http.queue_len, 10);
    assert_eq!(http.sent, 0);
    wait_sent(&sinks, "file", total).await;
    // The receiver still holds the batch: the deadline ends the wait, and what was left is
    // counted.
    let t0 = Instant::now();
    let stats = sinks.shutdown(Duration::from_millis(500)).await;
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        t0.elapsed()
    );
    let http = stat(&stats, "siem");
    assert_eq!(dropped(http, "shutdown"), 15, "{http:?}");
    assert_accounted(http, total);
    assert_eq!(stat(&stats, "file").sent, total);
}

// ---------------------------------------------------------------------------------------
// reconfigure

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_keeps_unchanged_sinks_and_their_counters() {
    let dir = TempDir::new("reconf");
    let p = |n: &str| dir.path().join(n);
    let keep = file_spec("keep", &p("keep"), 0, 1, 100);
    let change = file_spec("change", &p("change-a"), 0, 1, 100);
    let remove = file_spec("remove", &p("remove"), 0, 1, 100);
    let mut sinks =
        Sinks::start(&[keep.clone(), change.clone(), remove.clone()], render()).unwrap();
    for i in 0..10 {
        sinks.send(a(format!("a{i}")));
    }
    for name in ["keep", "change", "remove"] {
        wait_sent(&sinks, name, 10).await;
    }

    // A bad new set changes nothing.
    let bad = http_spec("bad", "not a url", 1, 1, 1);
    let err = sinks.reconfigure(&[keep.clone(), bad]).await.unwrap_err();
    assert!(err.to_string().starts_with("sink bad: "), "{err}");
    assert_eq!(sinks.names(), ["keep", "change", "remove"]);

    let changed = file_spec("change", &p("change-b"), 0, 1, 100);
    let added = file_spec("added", &p("added"), 0, 1, 100);
    sinks
        .reconfigure(&[added.clone(), keep.clone(), changed.clone()])
        .await
        .unwrap();
    assert_eq!(sinks.names(), ["added", "keep", "change"]);
    let s = sinks.stats();
    assert_eq!(
        stat(&s, "keep").sent,
        10,
        "unchanged sink keeps its counters"
    );
    assert_eq!(stat(&s, "change").sent, 0, "a changed sink starts afresh");
    for i in 0..5 {
        sinks.send(a(format!("b{i}")));
    }
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stat(&stats, "keep").sent, 15);
    assert_eq!(stat(&stats, "change").sent, 5);
    assert_eq!(stat(&stats, "added").sent, 5);
    assert_eq!(lines_of(&p("keep")).len(), 15);
    assert_eq!(lines_of(&p("change-a")).len(), 10);
    assert_eq!(lines_of(&p("change-b")).len(), 5);
    assert_eq!(lines_of(&p("remove")).len(), 10);
    assert_eq!(lines_of(&p("added")).len(), 5);
}
