//! Issue 15 end to end: a SYN the node never answers (bad TCP checksum: the kernel drops it,
//! the XDP program still sees it) and, after the answer timeout, a real connection from the
//! same source port. The real connection must have an alert of its own that names the source
//! and says `accepted`; the first attempt's alert says `no_answer`.

use std::{thread, time::Duration};

use node_monitor_lab::{BpfPinDir, addr, output_with_timeout};
use serde_json::Value;

use crate::{
    common::{
        daemon::{self, Daemon, context},
        peers::{TcpOutcome, tcp_connect, tcp_server},
        temp::TempFile,
    },
    expect::{alerts_of, dump, js, ju},
    setup::{ANSWER_TIMEOUT_MS, CONNECT_TIMEOUT, node, outside, setup, test_config},
};

const SPORT: u16 = 49000;

/// The NM-1001 alerts of outside:SPORT, as (answer, suppressed count).
fn kubelet_alerts(records: &[Value]) -> Vec<(String, u64)> {
    alerts_of(records, "NM-1001")
        .into_iter()
        .filter(|a| {
            js(a, "/source/ip") == addr::OUTSIDE_V4.to_string() && ju(a, "/source/port") == 49000
        })
        .map(|a| {
            (
                js(a, "/node_monitor/answer").to_owned(),
                ju(a, "/node_monitor/suppressed_count"),
            )
        })
        .collect()
}

#[test]
fn real_connection_after_a_dropped_syn_is_reported_accepted() {
    daemon::require_root_and_tools(&["hping3"]);
    let lab = setup();
    let pin = context(BpfPinDir::new("opener"));
    let cfg = TempFile::new("opener.yaml", &test_config(&[]));
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));
    let _kubelet = tcp_server(&lab.node, &[node(10250, false)], 1);

    // One SYN with a bad TCP checksum from outside:49000 (bounded: one packet, 10 s).
    let mut hping = lab.outside.command("hping3");
    hping.args([
        "-S",
        "-c",
        "1",
        "-p",
        "10250",
        "-s",
        &SPORT.to_string(),
        "-k",
        "--badcksum",
        &addr::NODE_V4.to_string(),
    ]);
    let out = context(output_with_timeout(hping, Duration::from_secs(10)));
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "hping3: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Its alert says no_answer once the answer timeout has passed.
    let first = d.wait_records(Duration::from_secs(5), |r| !kubelet_alerts(r).is_empty());
    assert!(
        first,
        "no alert for the dropped SYN: {}",
        dump(&d.records())
    );
    thread::sleep(Duration::from_millis(2 * ANSWER_TIMEOUT_MS));

    // The real connection from the same source port: the node accepts it.
    assert_eq!(
        tcp_connect(
            &lab.outside,
            outside(SPORT, false),
            node(10250, false),
            CONNECT_TIMEOUT
        ),
        TcpOutcome::Connected
    );
    let both = d.wait_records(Duration::from_secs(5), |r| kubelet_alerts(r).len() >= 2);
    let records = d.records();
    let fin = context(d.stop());
    assert!(both, "one alert only: {}", dump(&records));
    let alerts = kubelet_alerts(&fin.records);
    assert_eq!(
        alerts,
        vec![("no_answer".to_owned(), 0), ("accepted".to_owned(), 0)],
        "{}",
        dump(&fin.records)
    );
    let accepted = alerts_of(&fin.records, "NM-1001")
        .into_iter()
        .find(|a| js(a, "/node_monitor/answer") == "accepted")
        .cloned();
    let accepted = accepted.expect("the accepted alert");
    assert_eq!(js(&accepted, "/event/outcome"), "success");
    assert_eq!(js(&accepted, "/source/ip"), addr::OUTSIDE_V4.to_string());
    assert_eq!(js(&accepted, "/node_monitor/action"), "would_drop");
}
