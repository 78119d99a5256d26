//! Tests: Reading files, and how errors are displayed and collected.

use super::*;

#[test]
fn load_reads_files_and_names_the_path_in_errors() {
    let dir = std::env::temp_dir().join(format!("node-monitor-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.yaml");
    std::fs::write(&good, EXAMPLE).unwrap();
    assert_eq!(Config::load(&good).unwrap(), parse(EXAMPLE));

    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "limits:\n  flows: 1\n").unwrap();
    let e = Config::load(&bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2:10: limits.flows: 1 is out of range: must be between 1024 and 16777216",
            bad.display()
        )
    );

    let missing = dir.join("missing.yaml");
    let errors = Config::load(&missing).unwrap_err();
    assert_eq!(errors.errors().len(), 1);
    let e = errors.first();
    assert_eq!((e.line, e.column), (None, None));
    assert_eq!(e.origin, missing.display().to_string());
    assert!(
        e.to_string().starts_with(&format!(
            "{}: cannot read the config file: ",
            missing.display()
        )),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn error_display_without_location() {
    let e = ConfigError {
        origin: "c.yaml".into(),
        line: None,
        column: None,
        field: "limits.flows".into(),
        message: "bad".into(),
    };
    assert_eq!(e.to_string(), "c.yaml: limits.flows: bad");
}

/// The messages of every error of `yaml`, as `line:column: field` prefixes in file order.
fn positions(yaml: &str) -> Vec<String> {
    let errors = Config::from_yaml(yaml, "test.yaml").expect_err("config should be rejected");
    errors
        .errors()
        .iter()
        .map(|e| {
            format!(
                "{}:{}: {}",
                e.line.unwrap_or(0),
                e.column.unwrap_or(0),
                e.field
            )
        })
        .collect()
}

#[test]
fn every_error_is_reported_in_file_order() {
    // Three independent errors; the sinks come first in the file but are checked last.
    let yaml = "sinks:\n  - {type: kafka}\ngroups:\n  kubelet:\n    protocols: [tcp]\n    ports: [\"10250\"]\n    allow: [\"198.51.100.0/24\", \"203.0.113.300/32\"]\n  nodeport:\n    protocols: [tcp]\n    ports: [\"32767-30000\"]\n";
    let errors = Config::from_yaml(yaml, "test.yaml").expect_err("three errors");
    assert_eq!(errors.errors().len(), 3, "{errors}");
    let text = errors.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "test.yaml:2:12: sinks[0].type: unknown sink type `kafka`: expected one of stdout, \
             file, syslog, http",
            "test.yaml:7:32: groups.kubelet.allow[1]: `203.0.113.300/32` is not a valid IP \
             address or CIDR (such as 203.0.113.0/24, 2001:db8::/32 or 198.51.100.7)",
            "test.yaml:10:13: groups.nodeport.ports[0]: range 32767-30000 is reversed: write \
             30000-32767",
        ],
        "{text}"
    );
    assert_eq!(errors.first(), &errors.errors()[0]);
    assert_eq!((&errors).into_iter().count(), 3);
}

#[test]
fn a_single_error_prints_as_before() {
    let e = Config::from_yaml(
        "groups:\n  a: { protocols: [tcp], ports: [1], action: block }\n",
        "c.yaml",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "c.yaml:2:46: groups.a.action: unknown action `block`: expected one of monitor, drop"
    );
    assert_eq!(e.errors().len(), 1);
    // A syntax error stops the reading: one error, whatever else is wrong.
    let e = Config::from_yaml("limits: { flows: 1 }\ngroups: [\n", "c.yaml").unwrap_err();
    assert_eq!(e.errors().len(), 1, "{e}");
    assert!(e.to_string().starts_with("c.yaml:2:9: groups: "), "{e}");
}

#[test]
fn validation_goes_on_past_a_bad_value() {
    // Within a group: a bad protocol, a bad port, a bad allow entry, a bad action; and a
    // second group that claims a port of the first at two entries.
    let yaml = "groups:\n  a: { protocols: [tcp, sctp], ports: [\"0\", 10250, 2379], allow: [\"x.y\"], action: block }\n  b: { protocols: [tcp], ports: [10250, 2379] }\n";
    assert_eq!(
        positions(yaml),
        [
            "2:25: groups.a.protocols[1]",
            "2:40: groups.a.ports[0]",
            "2:67: groups.a.allow[0]",
            "2:83: groups.a.action",
            "3:34: groups.b.ports[0]",
            "3:41: groups.b.ports[1]",
        ]
    );
    // Numbers in several sections.
    assert_eq!(
        positions(
            "limits: { flows: 1, sources: 1 }\nalerts: { dedup_window_s: 0, sweep: { min_ports: 1 } }\nsampling: { allowed_flows_one_in: 4294967296 }\n"
        ),
        [
            "1:18: limits.flows",
            "1:30: limits.sources",
            "2:27: alerts.dedup_window_s",
            "2:50: alerts.sweep.min_ports",
            "3:35: sampling.allowed_flows_one_in",
        ]
    );
    // Within sinks: every bad field of a sink, then the next sinks; sinks[3] and sinks[4]
    // take the name derived for sinks[0].
    let yaml = "sinks:\n  - type: http\n    url: ftp://x\n    batch_max: 0\n    path: /a\n    headers: { \"Bad Name\": x, X-A: \"a\\nb\" }\n  - {type: file, path: rel, keep: 101, name: Bad}\n  - {type: syslog}\n  - {type: stdout, name: http}\n  - {type: stdout, name: http, format: xml}\n  - {type: stdout, queue: 0}\ninterfaces: [\"a b\", eth0, \"\"]\nattach: ebpf\nmetrics: { listen: nowhere }\n";
    assert_eq!(
        positions(yaml),
        [
            "3:10: sinks[0].url",
            "4:16: sinks[0].batch_max",
            "5:11: sinks[0].path",
            "6:16: sinks[0].headers.Bad Name",
            "6:36: sinks[0].headers.X-A",
            "7:24: sinks[1].path",
            "7:35: sinks[1].keep",
            "7:46: sinks[1].name",
            "8:12: sinks[2].address",
            "9:26: sinks[3].name",
            "10:26: sinks[4].name",
            "10:40: sinks[4].format",
            "11:27: sinks[5].queue",
            "12:14: interfaces[0]",
            "12:27: interfaces[2]",
            "13:9: attach",
            "14:20: metrics.listen",
        ]
    );
}
