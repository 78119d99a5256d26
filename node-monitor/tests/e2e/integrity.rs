//! Issue 15 end to end: what a source does cannot steer what is reported about it.
//! - Allowed NodePort noise from a host does not spend the budget of its kubelet connection.
//! - A refused, an accepted and a refused attempt: the accepted one alerts on its own.
//! - A source revoked by a reload while its connection is open is flagged on its next packet.
//! - A reload that fails half-way (a map the kernel refuses to write) leaves the running
//!   config and its counters in force.

use std::{
    io::Write,
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
    time::Duration,
};

use node_monitor_lab::{BpfPinDir, addr, output_with_timeout};
use serde_json::Value;

use crate::{
    common::{
        config::replace_file,
        daemon::{self, Daemon, context, scrape},
        peers::{TcpOutcome, tcp_connect, tcp_server},
        temp::{TempDir, TempFile},
    },
    expect::{alerts_of, dump, js, ju},
    poll::{kubelet_conns, reloads, wait_metrics},
    setup::{CONNECT_TIMEOUT, KUBELET_MONITOR, node, outside, setup, test_config},
};

/// NM-1001 alerts whose source is `ip`.
fn kubelet_alerts_from<'a>(records: &'a [Value], ip: &str) -> Vec<&'a Value> {
    alerts_of(records, "NM-1001")
        .into_iter()
        .filter(|a| js(a, "/source/ip") == ip)
        .collect()
}

/// The first reproduction: about 30 UDP datagrams a second from outside to NodePort 30000
/// (allowed for everyone and sweep-watched in the catalog: every datagram from a new source
/// port is an allowed event), and in the middle one TCP connection to the kubelet. The
/// kubelet connection must alert, naming the source and saying `accepted`, and nothing of
/// kubelet may be withheld by the rate limit.
#[test]
fn nodeport_noise_does_not_hide_a_kubelet_connection() {
    daemon::require_root_and_tools(&["hping3"]);
    let lab = setup();
    let pin = context(BpfPinDir::new("integrity-noise"));
    let cfg = TempFile::new("noise.yaml", &test_config(&[]));
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));
    let _kubelet = tcp_server(&lab.node, &[node(10250, false)], 1);

    // 90 datagrams, 33 ms apart (about 3 s); bounded by count and a 15 s timeout.
    let mut hping = lab.outside.command("hping3");
    hping.args([
        "--udp",
        "-p",
        "30000",
        "-i",
        "u33000",
        "-c",
        "90",
        &addr::NODE_V4.to_string(),
    ]);
    let noise = thread::spawn(move || output_with_timeout(hping, Duration::from_secs(15)));
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        tcp_connect(
            &lab.outside,
            outside(45100, false),
            node(10250, false),
            CONNECT_TIMEOUT
        ),
        TcpOutcome::Connected
    );
    let out = context(noise.join().expect("hping3 thread"));
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "hping3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ip = addr::OUTSIDE_V4.to_string();
    let seen = d.wait_records(Duration::from_secs(5), |r| {
        !kubelet_alerts_from(r, &ip).is_empty()
    });
    let fin = context(d.stop());
    assert!(seen, "no kubelet alert: {}", dump(&fin.records));
    let alerts = kubelet_alerts_from(&fin.records, &ip);
    assert_eq!(alerts.len(), 1, "{}", dump(&fin.records));
    let a = alerts[0];
    assert_eq!(js(a, "/node_monitor/answer"), "accepted");
    assert_eq!(js(a, "/event/outcome"), "success");
    assert_eq!(ju(a, "/source/port"), 45100);
    let k = fin.counters.get("kubelet", "tcp", "denied");
    assert_eq!(
        (k.new_conns, k.events, k.lost_rate_limited),
        (1, 1, 0),
        "kubelet: {k:?}"
    );
    let np = fin.counters.get("nodeport", "udp", "allowed");
    assert!(
        np.new_conns >= 60,
        "the NodePort noise did not arrive: {np:?}"
    );
}

/// Refused, accepted, refused from one source within the dedup window: the refused ones
/// make one series (an alert, then a follow-up counting the repeat as refused), the
/// accepted one alerts on its own at once.
#[test]
fn refused_accepted_refused_series() {
    let lab = setup();
    let pin = context(BpfPinDir::new("integrity-series"));
    let cfg = TempFile::new(
        "series.yaml",
        &test_config(&[("dedup_window_s: 60", "dedup_window_s: 3")]),
    );
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));
    let ip = addr::OUTSIDE_V4.to_string();
    let connect = |sport: u16| {
        tcp_connect(
            &lab.outside,
            outside(sport, false),
            node(10250, false),
            CONNECT_TIMEOUT,
        )
    };
    assert_eq!(connect(45201), TcpOutcome::Refused);
    let server = tcp_server(&lab.node, &[node(10250, false)], 1);
    assert_eq!(connect(45202), TcpOutcome::Connected);
    assert_eq!(server.finish(), 1);
    assert_eq!(connect(45203), TcpOutcome::Refused);
    // The follow-up comes when the 3 s window ends.
    let done = d.wait_records(Duration::from_secs(8), |r| {
        kubelet_alerts_from(r, &ip).len() >= 3
    });
    let fin = context(d.stop());
    assert!(done, "{}", dump(&fin.records));
    let alerts = kubelet_alerts_from(&fin.records, &ip);
    let summary: Vec<(String, u64, u64)> = alerts
        .iter()
        .map(|a| {
            (
                js(a, "/node_monitor/answer").to_owned(),
                ju(a, "/source/port"),
                ju(a, "/node_monitor/suppressed_count"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("refused".to_owned(), 45201, 0),
            ("accepted".to_owned(), 45202, 0),
            ("refused".to_owned(), 45203, 1),
        ],
        "{}",
        dump(&fin.records)
    );
    let follow_up = alerts[2];
    assert_eq!(
        (
            ju(follow_up, "/node_monitor/repeats_by_answer/accepted"),
            ju(follow_up, "/node_monitor/repeats_by_answer/refused"),
            ju(follow_up, "/node_monitor/repeats_by_answer/no_answer"),
        ),
        (0, 1, 0),
        "{}",
        dump(&fin.records)
    );
    assert_eq!(
        js(follow_up, "/node_monitor/follow_up_of"),
        js(alerts[0], "/event/id")
    );
}

/// A connection from outside opened while outside is allowed stays open across a reload
/// that revokes outside; the next segment on it raises a kubelet alert that names the
/// source and says the connection was open when the source was revoked.
#[test]
fn source_revoked_while_connected_is_flagged() {
    let lab = setup();
    let pin = context(BpfPinDir::new("integrity-revoke"));
    let dir = TempDir::new("integrity-revoke");
    let path = dir.file("config.yaml");
    let allow_outside = "ports: [\"10250\"]\n    allow: [\"203.0.113.0/24\", \"2001:db8:2::/64\"]\n    action: monitor";
    std::fs::write(&path, test_config(&[(KUBELET_MONITOR, allow_outside)])).unwrap();
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", path.to_str().unwrap()],
    ));
    // A listener that never accepts: the kernel completes the handshake and queues the
    // connection, which stays open for the whole test.
    let kubelet = node(10250, false);
    let _listener: TcpListener = lab
        .node
        .run(move || TcpListener::bind(kubelet).expect("listen"))
        .expect("run in netns");
    let src: SocketAddr = outside(45300, false);
    let mut conn: TcpStream = lab
        .outside
        .run(move || {
            let s = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )
            .expect("socket");
            s.bind(&src.into()).expect("bind");
            s.connect_timeout(&kubelet.into(), CONNECT_TIMEOUT)
                .expect("connect while allowed");
            TcpStream::from(s)
        })
        .expect("run in netns");
    conn.write_all(b"while allowed\n").expect("write");
    let ip = addr::OUTSIDE_V4.to_string();

    replace_file(
        &path,
        &test_config(&[(
            KUBELET_MONITOR,
            "ports: [\"10250\"]\n    allow: [node-subnets]\n    action: monitor",
        )]),
    );
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(3), |b| {
        reloads(b, "success") >= 1.0
    });
    assert!(ok, "no reload: {body}\n{}", d.stderr());
    assert!(
        kubelet_alerts_from(&d.records(), &ip).is_empty(),
        "no alert while outside was allowed: {}",
        dump(&d.records())
    );
    conn.write_all(b"after the reload\n").expect("write");
    let seen = d.wait_records(Duration::from_secs(3), |r| {
        !kubelet_alerts_from(r, &ip).is_empty()
    });
    conn.write_all(b"and again\n").expect("write");
    thread::sleep(Duration::from_millis(300));
    drop(conn);
    let fin = context(d.stop());
    assert!(
        seen,
        "the revoked connection raised no alert: {}",
        dump(&fin.records)
    );
    let alerts = kubelet_alerts_from(&fin.records, &ip);
    assert_eq!(
        alerts.len(),
        1,
        "one alert per revoked flow: {}",
        dump(&fin.records)
    );
    let a = alerts[0];
    assert_eq!(ju(a, "/source/port"), 45300);
    assert_eq!(a["node_monitor"]["revoked"], Value::Bool(true), "{a}");
    assert_eq!(js(a, "/node_monitor/verdict"), "denied");
    assert_eq!(js(a, "/event/outcome"), "unknown");
    assert!(
        js(a, "/message").contains("revoked"),
        "the message says why: {a}"
    );
    let k = fin.counters.get("kubelet", "tcp", "denied");
    assert_eq!((k.new_conns, k.events), (1, 1), "{k:?}");
    fin.counters.check_invariants();
}

/// BPF_MAP_FREEZE on a pinned map: from then on the kernel refuses every write to it from
/// user space, which makes a reload fail in the middle of its writes.
fn freeze_pinned_map(path: &std::path::Path) {
    node_monitor::datapath::freeze_pinned_map(path)
        .unwrap_or_else(|e| panic!("BPF_MAP_FREEZE {}: {e}", path.display()));
}

/// A reload that fails half-way: the new config allows outside on the kubelet for IPv4 and
/// IPv6; the IPv6 allowlist map is frozen, so the IPv4 entries are written and the IPv6
/// ones refused. The reload is counted as failed, the IPv4 entries are taken back (outside
/// is still flagged on IPv4 too), and the counters of the running config are intact.
#[test]
fn reload_failing_half_way_keeps_the_running_config() {
    let lab = setup();
    let pin = context(BpfPinDir::new("integrity-halfway"));
    let dir = TempDir::new("integrity-halfway");
    let path = dir.file("config.yaml");
    std::fs::write(&path, test_config(&[])).unwrap();
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", path.to_str().unwrap()],
    ));
    let _kubelet = tcp_server(&lab.node, &[node(10250, false), node(10250, true)], 8);
    // Allowed traffic under the running config: the control plane.
    assert_eq!(
        tcp_connect(
            &lab.cp,
            crate::setup::cp(45400, false),
            node(10250, false),
            CONNECT_TIMEOUT
        ),
        TcpOutcome::Connected
    );
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(3), |b| {
        kubelet_conns(b, "allowed") >= 1.0
    });
    assert!(ok, "{body}");
    let allowed_before = kubelet_conns(&body, "allowed");

    freeze_pinned_map(&pin.path.join("maps").join("ALLOW_V6"));
    let allow_outside = "ports: [\"10250\"]\n    allow: [\"203.0.113.0/24\", \"2001:db8:2::/64\"]\n    action: monitor";
    replace_file(&path, &test_config(&[(KUBELET_MONITOR, allow_outside)]));
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(3), |b| {
        reloads(b, "failure") >= 1.0
    });
    assert!(ok, "the reload did not fail: {body}\n{}", d.stderr());
    assert_eq!(reloads(&body, "success"), 0.0, "{body}");
    assert!(
        kubelet_conns(&body, "allowed") >= allowed_before,
        "counters of the running config were reset: {allowed_before} -> {}",
        kubelet_conns(&body, "allowed")
    );

    // The running config is still in force, for IPv4 (whose entries were written, then
    // taken back) as for IPv6.
    for (sport, v6) in [(45401, false), (45402, true)] {
        assert_eq!(
            tcp_connect(
                &lab.outside,
                outside(sport, v6),
                node(10250, v6),
                CONNECT_TIMEOUT
            ),
            TcpOutcome::Connected
        );
    }
    let ips = [addr::OUTSIDE_V4.to_string(), addr::OUTSIDE_V6.to_string()];
    let both = d.wait_records(Duration::from_secs(3), |r| {
        ips.iter().all(|ip| !kubelet_alerts_from(r, ip).is_empty())
    });
    let body = scrape(&lab.node, &d);
    let fin = context(d.stop());
    assert!(
        both,
        "outside must still be flagged after the failed reload: {}",
        dump(&fin.records)
    );
    assert!(kubelet_conns(&body, "allowed") >= allowed_before, "{body}");
    assert!(
        fin.stderr.contains("rejected") || fin.stderr.contains("failed"),
        "the failure is logged: {}",
        fin.stderr
    );
    assert_eq!(fin.counters.userspace("config_reloads_failed"), 1);
    let k = fin.counters.get("kubelet", "tcp", "denied");
    assert_eq!(k.new_conns, 2, "{k:?}");
    fin.counters.check_invariants();
}
