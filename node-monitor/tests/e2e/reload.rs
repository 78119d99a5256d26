//! Live config reload: a ConfigMap-style file replacement is applied without resetting
//! counters, an invalid file is rejected and counted, unchanged content reloads nothing.

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use node_monitor_lab::BpfPinDir;
use serde_json::Value;

use crate::{
    common::{
        config::replace_file,
        daemon::{Daemon, context, scrape},
        peers::{TcpOutcome, tcp_connect, tcp_server},
        temp::TempDir,
    },
    expect::{Rec, alerts_of, assert_same_records, dump, is_alert},
    poll::{kubelet_conns, reloads, wait_metrics},
    setup::{CONNECT_TIMEOUT, KUBELET_MONITOR, node, outside, setup, test_config},
};

/// Sampled flows of kubelet from `src`.
fn kubelet_flows_from(records: &[Value], src: SocketAddr) -> usize {
    records
        .iter()
        .filter(|r| {
            r.pointer("/event/kind") == Some(&Value::from("event"))
                && r["node_monitor"]["port_group"] == "kubelet"
                && r["source"]["ip"] == src.ip().to_string()
                && r["source"]["port"] == src.port()
        })
        .count()
}

/// Test 9: live reload. A ConfigMap-style rename that allows outside on kubelet is applied
/// within 3 s without resetting counters; an invalid file is rejected and counted, and the
/// running config stays; restoring the running content and SIGHUP with unchanged content
/// reload nothing and count nothing (run.rs: "config unchanged").
#[test]
fn config_reload_live() {
    let lab = setup();
    let pin = context(BpfPinDir::new("reload"));
    let dir = TempDir::new("reload");
    let path = dir.file("config.yaml");
    let allow_outside = "ports: [\"10250\"]\n    allow: [\"203.0.113.0/24\", \"2001:db8:2::/64\"]\n    action: monitor";
    let cfg0 = test_config(&[]);
    let cfg1 = test_config(&[(KUBELET_MONITOR, allow_outside)]);
    let bad = cfg1.replacen("203.0.113.0/24", "203.0.113.300/24", 1);
    std::fs::write(&path, &cfg0).unwrap();
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", path.to_str().unwrap()],
    ));
    let _kubelet = tcp_server(&lab.node, &[node(10250, false), node(10250, true)], 8);

    // Before: outside -> kubelet is flagged.
    let o1 = outside(42701, false);
    assert_eq!(
        tcp_connect(&lab.outside, o1, node(10250, false), CONNECT_TIMEOUT),
        TcpOutcome::Connected
    );
    assert!(
        d.wait_records(Duration::from_secs(3), |r| !alerts_of(r, "NM-1001")
            .is_empty()),
        "{}",
        dump(&d.records())
    );
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(3), |b| {
        kubelet_conns(b, "denied") >= 1.0
    });
    assert!(ok, "{body}");
    let denied_before = kubelet_conns(&body, "denied");
    assert_eq!(
        (reloads(&body, "success"), reloads(&body, "failure")),
        (0.0, 0.0)
    );

    // Reload: rename a new file over the old one.
    let t = Instant::now();
    replace_file(&path, &cfg1);
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(3), |b| {
        reloads(b, "success") >= 1.0
    });
    assert!(
        ok,
        "no successful reload within 3 s:\n{}\n{body}",
        d.stderr()
    );
    eprintln!("reload seen in the metrics after {:?}", t.elapsed());
    assert_eq!(reloads(&body, "success"), 1.0, "{body}");
    let (o2, o3) = (outside(42702, false), outside(43702, true));
    for (o, v6) in [(o2, false), (o3, true)] {
        assert_eq!(
            tcp_connect(&lab.outside, o, node(10250, v6), CONNECT_TIMEOUT),
            TcpOutcome::Connected
        );
    }
    assert!(
        d.wait_records(Duration::from_secs(3), |r| {
            kubelet_flows_from(r, o2) == 1 && kubelet_flows_from(r, o3) == 1
        }),
        "outside's new connections are not sampled flows after the reload:\n{}",
        dump(&d.records())
    );
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(3), |b| {
        kubelet_conns(b, "allowed") >= 2.0
    });
    assert!(ok, "{body}");
    assert!(
        kubelet_conns(&body, "denied") >= denied_before,
        "the denied counter went down across the reload: {denied_before} -> {}",
        kubelet_conns(&body, "denied")
    );

    // An invalid file: rejected, counted; the running (reloaded) config stays.
    replace_file(&path, &bad);
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(3), |b| {
        reloads(b, "failure") >= 1.0
    });
    assert!(ok, "no failed reload within 3 s:\n{}\n{body}", d.stderr());
    assert_eq!(
        (reloads(&body, "success"), reloads(&body, "failure")),
        (1.0, 1.0),
        "{body}"
    );
    let err = d.stderr();
    let field = format!("{}:", path.display());
    assert!(
        err.lines().any(|l| l.contains("ERROR")
            && l.contains("rejected")
            && l.contains(&field)
            && l.contains("groups.kubelet.allow[0]")
            && l.contains("203.0.113.300")),
        "the rejection should be logged with file:line:column, the field and the value:\n{err}"
    );
    let o4 = outside(42704, false);
    assert_eq!(
        tcp_connect(&lab.outside, o4, node(10250, false), CONNECT_TIMEOUT),
        TcpOutcome::Connected
    );
    assert!(
        d.wait_records(Duration::from_secs(3), |r| kubelet_flows_from(r, o4) == 1),
        "after a rejected reload the reloaded config must stay:\n{}",
        dump(&d.records())
    );

    // The running content again: the file changed, the config did not.
    replace_file(&path, &cfg1);
    assert!(
        d.wait_log(Duration::from_secs(3), |l| l.contains("config unchanged")
            && l.contains("config file changed")),
        "{}",
        d.stderr()
    );
    // SIGHUP with unchanged content: logged, nothing reloaded, nothing counted.
    let st = Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .stdin(Stdio::null())
        .status()
        .expect("kill -HUP");
    assert!(st.success());
    assert!(
        d.wait_log(Duration::from_secs(3), |l| l.contains("config unchanged")
            && l.contains("SIGHUP")),
        "{}",
        d.stderr()
    );
    std::thread::sleep(Duration::from_millis(600));
    let body = scrape(&lab.node, &d);
    assert_eq!(
        (reloads(&body, "success"), reloads(&body, "failure")),
        (1.0, 1.0),
        "{body}"
    );

    let fin = context(d.stop());
    eprintln!("daemon stderr:\n{}", fin.stderr);
    fin.counters.check_invariants();
    assert_eq!(fin.counters.userspace("config_reloads_ok"), 1);
    assert_eq!(fin.counters.userspace("config_reloads_failed"), 1);
    let alerts: Vec<&Value> = fin.records.iter().filter(|r| is_alert(r)).collect();
    assert_eq!(
        alerts.len(),
        1,
        "only the attempt before the reload alerts:\n{}",
        dump(&fin.records)
    );
    assert_same_records(
        &fin.records,
        vec![
            Rec::flagged(
                "kubelet",
                o1,
                node(10250, false),
                "tcp",
                "accepted",
                "would_drop",
                "xdp",
            ),
            Rec::flow("kubelet", o2, node(10250, false), "tcp", "xdp"),
            Rec::flow("kubelet", o3, node(10250, true), "tcp", "xdp"),
            Rec::flow("kubelet", o4, node(10250, false), "tcp", "xdp"),
        ],
    );
    let k = fin.counters.get("kubelet", "tcp", "denied");
    assert_eq!((k.new_conns, k.events), (1, 1), "{k:?}");
    let a = fin.counters.get("kubelet", "tcp", "allowed");
    assert_eq!((a.new_conns, a.events), (3, 3), "{a:?}");
}
