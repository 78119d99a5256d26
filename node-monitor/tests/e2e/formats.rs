//! The three formats (ECS, OCSF, CEF) through file sinks: one attempt, one alert in each file
//! with the same id, and each format's required fields.

use std::time::{Duration, Instant};

use node_monitor_lab::BpfPinDir;
use serde_json::Value;

use crate::{
    common::{
        daemon::{Daemon, context},
        peers::{TcpOutcome, tcp_connect},
        temp::{TempDir, TempFile, lines_of},
    },
    expect::{Rec, assert_same_records, js, ju},
    setup::{CONNECT_TIMEOUT, node, outside, setup, test_config},
};

/// Splits a CEF header on unescaped pipes (the first 7 fields), then the extension.
fn cef_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if fields.len() == 7 {
            cur.push(c);
            continue;
        }
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '|' => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// CEF extension `key=value` pairs (values may contain spaces: a key starts at ` word=`).
fn cef_ext(ext: &str) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    let mut key: Option<String> = None;
    let mut val = String::new();
    for tok in ext.split(' ') {
        let starts_key = tok.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()) && !k.ends_with('\\')
        });
        if starts_key {
            if let Some(k) = key.take() {
                m.insert(k, std::mem::take(&mut val));
            }
            let (k, v) = tok.split_once('=').unwrap();
            key = Some(k.to_owned());
            val = v.to_owned();
        } else {
            val.push(' ');
            val.push_str(tok);
        }
    }
    if let Some(k) = key {
        m.insert(k, val);
    }
    m.into_iter().map(|(k, v)| (k, cef_unescape(&v))).collect()
}

/// Undoes CEF extension escaping (`\\`, `\=`, `\n`, `\r`).
fn cef_unescape(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(n) => out.push(n),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Test 8: the three formats through file sinks (and ECS on stdout): one flagged kubelet
/// attempt gives exactly one alert in each file, the same alert id in each, and each format's
/// required fields (OCSF Detection Finding, a CEF line that parses).
#[test]
fn formats_through_file_sinks() {
    let lab = setup();
    let pin = context(BpfPinDir::new("sinks"));
    let dir = TempDir::new("sinks");
    let (ecs, ocsf, cef) = (
        dir.file("alerts.ecs.json"),
        dir.file("alerts.ocsf.json"),
        dir.file("alerts.cef"),
    );
    let sinks = format!(
        "sinks:\n  - {{type: stdout, format: ecs}}\n  - {{type: file, name: f-ecs, path: \"{}\", format: ecs}}\n  - {{type: file, name: f-ocsf, path: \"{}\", format: ocsf}}\n  - {{type: file, name: f-cef, path: \"{}\", format: cef}}\n",
        ecs.display(),
        ocsf.display(),
        cef.display()
    );
    let cfg = TempFile::new(
        "sinks.yaml",
        &test_config(&[("sinks:\n  - {type: stdout, format: ecs}\n", &sinks)]),
    );
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));
    let o = outside(42601, false);
    assert_eq!(
        tcp_connect(&lab.outside, o, node(10250, false), CONNECT_TIMEOUT),
        TcpOutcome::Refused
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while [&ecs, &ocsf, &cef].iter().any(|p| lines_of(p).is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let fin = context(d.stop());
    fin.counters.check_invariants();
    assert_same_records(
        &fin.records,
        vec![Rec::flagged(
            "kubelet",
            o,
            node(10250, false),
            "tcp",
            "refused",
            "would_drop",
            "xdp",
        )],
    );
    let id = js(&fin.records[0], "/event/id").to_owned();
    for s in ["stdout", "f-ecs", "f-ocsf", "f-cef"] {
        assert_eq!(fin.counters.sink_sent(s), 1, "{s}: {}", fin.counters.0);
    }

    // ECS file: the same document as stdout.
    let e = lines_of(&ecs);
    assert_eq!(e.len(), 1, "{e:?}");
    let ev: Value = serde_json::from_str(&e[0]).unwrap();
    assert_eq!(ev, fin.records[0]);

    // OCSF Detection Finding.
    let l = lines_of(&ocsf);
    assert_eq!(l.len(), 1, "{l:?}");
    let v: Value = serde_json::from_str(&l[0]).unwrap();
    assert_eq!(ju(&v, "/class_uid"), 2004, "{v}");
    assert_eq!(ju(&v, "/category_uid"), 2, "{v}");
    assert_eq!(ju(&v, "/activity_id"), 1, "{v}");
    assert_eq!(ju(&v, "/type_uid"), 200_401, "{v}");
    assert_eq!(ju(&v, "/severity_id"), 4, "{v}");
    assert!(ju(&v, "/time") > 1_600_000_000_000, "epoch ms: {v}");
    assert_eq!(js(&v, "/metadata/product/name"), "node-monitor", "{v}");
    assert_eq!(js(&v, "/metadata/version"), "1.3.0", "{v}");
    assert_eq!(js(&v, "/finding_info/uid"), id, "{v}");
    assert_eq!(js(&v, "/metadata/uid"), id, "{v}");
    assert_eq!(js(&v, "/finding_info/analytic/uid"), "NM-1001", "{v}");
    assert_eq!(ju(&v, "/count"), 1, "{v}");
    assert_eq!(js(&v, "/evidences/0/src_endpoint/ip"), "203.0.113.2", "{v}");
    assert_eq!(ju(&v, "/evidences/0/src_endpoint/port"), 42601, "{v}");
    assert_eq!(ju(&v, "/evidences/0/dst_endpoint/port"), 10250, "{v}");
    assert_eq!(
        js(&v, "/evidences/0/connection_info/community_uid"),
        js(&ev, "/network/community_id"),
        "{v}"
    );
    assert_eq!(
        js(&v, "/unmapped/node_monitor/port_group"),
        "kubelet",
        "{v}"
    );

    // CEF.
    let l = lines_of(&cef);
    assert_eq!(l.len(), 1, "{l:?}");
    let line = &l[0];
    assert!(line.starts_with("CEF:0|"), "{line}");
    let f = cef_fields(line);
    assert_eq!(f.len(), 8, "8 pipe-separated fields: {f:?}");
    assert_eq!(f[0], "CEF:0");
    assert_eq!(f[1], "node-monitor");
    assert_eq!(f[2], "node-monitor");
    assert!(!f[3].is_empty(), "{f:?}");
    assert_eq!(f[4], "NM-1001", "{f:?}");
    assert_eq!(
        f[5], "kubelet API access from a source not allowed",
        "{f:?}"
    );
    assert_eq!(f[6], "8", "{f:?}");
    let ext = cef_ext(&f[7]);
    for (k, v) in [
        ("src", "203.0.113.2"),
        ("spt", "42601"),
        ("dst", "198.51.100.1"),
        ("dpt", "10250"),
        ("proto", "TCP"),
        ("act", "would_drop"),
        ("cs1", "kubelet"),
        ("cs6", "refused"),
        ("externalId", id.as_str()),
        ("cn1", "0"),
        ("deviceInboundInterface", "eth0"),
    ] {
        assert_eq!(ext.get(k).map(String::as_str), Some(v), "{k} in {line}");
    }
    assert_eq!(
        ext.get("cs2").map(String::as_str),
        Some(js(&ev, "/network/community_id")),
        "{line}"
    );
}
