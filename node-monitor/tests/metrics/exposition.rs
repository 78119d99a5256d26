//! The exposition: exact text lines, updates, summed duplicates, naming and label rules,
//! OpenMetrics and content negotiation, and Debian's `promtool` lint of what is rendered.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::Path,
    process::{Command, Stdio},
};

use node_monitor::metrics::{self, Metrics, Snapshot};

use crate::fixture::{OPENMETRICS_ACCEPT, populated, snapshot};

const PROMTOOL: &str = "/usr/bin/promtool";

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
        "node_monitor_connections_total{group=\"kubelet\",proto=\"tcp\",verdict=\"allowed\"} 43",
        "node_monitor_events_total{group=\"kubelet\",proto=\"tcp\",verdict=\"denied\"} 2",
        "node_monitor_would_drop_packets_total{group=\"kubelet\",proto=\"tcp\"} 5",
        "node_monitor_dropped_packets_total{group=\"etcd\",proto=\"tcp\"} 7",
        "node_monitor_sampled_out_total{group=\"kubelet\",proto=\"tcp\"} 34",
        // Kernel losses summed over groups, plus userspace reasons.
        "node_monitor_lost_events_total{reason=\"rate_limited\"} 1",
        "node_monitor_lost_events_total{reason=\"ringbuf_full\"} 2",
        "node_monitor_lost_events_total{reason=\"group_budget\"} 3",
        "node_monitor_lost_events_total{reason=\"sink_queue_full\"} 4",
        "node_monitor_lost_events_total{reason=\"malformed\"} 0",
        "node_monitor_packets_unclassified_total{reason=\"not_ip\"} 42",
        "node_monitor_packets_unclassified_total{reason=\"truncated_l4\"} 3",
        "node_monitor_packets_unclassified_total{reason=\"bad_tcp_header\"} 0",
        "node_monitor_flagged_connections_total{group=\"kubelet\",proto=\"tcp\",answer=\"accepted\"} 2",
        "node_monitor_flagged_connections_by_source_total{group=\"kubelet\",source_kind=\"pod\",source_namespace=\"shop\",source_workload_kind=\"Deployment\",source_workload=\"evil\"} 2",
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
        "node_monitor_detector_entries{detector=\"scan\"} 12",
        "node_monitor_detector_capacity{detector=\"dedup\"} 32768",
        "node_monitor_detector_evictions_total{detector=\"scan\"} 3",
        "node_monitor_detector_evictions_total{detector=\"dedup\"} 0",
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
    // The source workload's labels are bounded by the daemon (daemon::workloads::MAX_SOURCES).
    const ALLOWED_LABELS: [&str; 17] = [
        "group",
        "proto",
        "verdict",
        "answer",
        "rule",
        "severity",
        "reason",
        "sink",
        "kind",
        "program",
        "result",
        "version",
        "detector",
        "source_kind",
        "source_namespace",
        "source_workload_kind",
        "source_workload",
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
    assert_eq!(counters.len(), 19, "{counters:?}");
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
