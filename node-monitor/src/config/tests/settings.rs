//! Tests: `interfaces`, `attach`, `alerts`, `metrics` and `detect_sweeps`.

use super::*;

#[test]
fn full_example_parses_every_field() {
    use std::time::Duration;
    let config = parse(FULL);
    assert_eq!(config.interfaces, ["eth*", "ens5", "en[op]?s*"]);
    assert_eq!(config.attach, Some(AttachMode::Tc));
    assert!(config.groups[0].detect_sweeps);
    assert!(!config.groups[1].detect_sweeps);
    assert_eq!(
        config.alerts,
        AlertSettings {
            dedup_window: Duration::from_secs(120),
            sweep_min_ports: 20,
            sweep_window: Duration::from_secs(30),
            scan_min_ports: 6,
            scan_window: Duration::from_secs(45),
            flood_window: Duration::from_secs(5),
            connection_alerts_per_group: 7,
        }
    );
    assert_eq!(config.metrics.listen, "[::]:9100".parse().unwrap());
    let sink = |name: &str, kind: SinkKind, format: Format, queue: usize, flows: bool| SinkSpec {
        name: name.into(),
        kind,
        format,
        queue,
        flows,
    };
    let expected = vec![
        sink("stdout", SinkKind::Stdout, Format::Ecs, 10_000, true),
        sink(
            "file",
            SinkKind::File {
                path: "/var/log/node-monitor/alerts.json".into(),
                max_size_bytes: 100 * 1024 * 1024,
                keep: 5,
            },
            Format::Ocsf,
            10_000,
            false,
        ),
        sink(
            "syslog",
            SinkKind::Syslog {
                transport: SyslogTransport::Udp("127.0.0.1:514".parse().unwrap()),
                tls: ClientTls::default(),
            },
            Format::Cef,
            10_000,
            false,
        ),
        sink(
            "http",
            SinkKind::Http {
                url: "https://siem.example/ingest".into(),
                batch_max: 500,
                batch_interval: Duration::from_millis(1000),
                timeout: Duration::from_millis(5000),
                max_retries: 5,
                headers: vec![
                    ("Authorization".into(), "Bearer x".into()),
                    ("X-Tenant".into(), "node-1".into()),
                ],
                tls: ClientTls::default(),
                bearer_token_file: None,
            },
            Format::Ecs,
            10_000,
            false,
        ),
        sink(
            "remote",
            SinkKind::Syslog {
                transport: SyslogTransport::Tcp("[2001:db8::1]:6514".parse().unwrap()),
                tls: ClientTls::default(),
            },
            Format::Ecs,
            50,
            true,
        ),
        sink(
            "syslog-2",
            SinkKind::Syslog {
                transport: SyslogTransport::Unix("/dev/log".into()),
                tls: ClientTls::default(),
            },
            Format::Ecs,
            10_000,
            false,
        ),
        sink(
            "file-2",
            SinkKind::File {
                path: "/var/log/nm/flows.json".into(),
                max_size_bytes: 1024 * 1024,
                keep: 0,
            },
            Format::Ecs,
            10_000,
            true,
        ),
    ];
    assert_eq!(config.sinks, expected);
}

#[test]
fn attach_and_interfaces() {
    assert_eq!(parse("attach: xdp\n").attach, Some(AttachMode::Xdp));
    assert_eq!(parse("attach:\n").attach, None);
    assert_eq!(
        parse("interfaces:\n  - eth0\n  - \"veth*\"\n  - bond0.100\n  - abcdefghijklmno\n")
            .interfaces,
        ["eth0", "veth*", "bond0.100", "abcdefghijklmno"]
    );
    // A glob may be longer than a name: it is not a name.
    parse("interfaces: [\"[a-z][a-z][a-z][a-z]*\"]\n");
}

#[test]
fn error_interfaces_and_attach() {
    assert_error(
        "interfaces: [eth0, abcdefghijklmnop]\n",
        1,
        20,
        "interfaces[1]",
        "interface name `abcdefghijklmnop` is 16 bytes long: interface names are at most 15 bytes",
    );
    assert_error(
        "interfaces:\n  - eth0\n  - \"eth[\"\n",
        3,
        5,
        "interfaces[1]",
        "`eth[` is not a valid glob",
    );
    assert_error(
        "interfaces: [\"\"]\n",
        1,
        14,
        "interfaces[0]",
        "an empty interface name",
    );
    assert_error(
        "interfaces: [\"a/b\"]\n",
        1,
        14,
        "interfaces[0]",
        "`/` and white space are not allowed",
    );
    assert_error(
        "interfaces: \"eth*\"\n",
        1,
        13,
        "interfaces",
        "expected a list",
    );
    assert_error(
        "attach: bpf\n",
        1,
        9,
        "attach",
        "unknown attach mode `bpf`: expected one of xdp, tc",
    );
}

#[test]
fn error_detect_sweeps() {
    assert_error(
        "groups:\n  a: {protocols: [tcp], ports: [1], detect_sweeps: maybe}\n",
        2,
        52,
        "groups.a.detect_sweeps",
        "expected true or false",
    );
}

#[test]
fn detect_sweeps_defaults_to_on_for_groups_of_several_ports() {
    let config = parse(concat!(
        "groups:\n",
        "  np: {protocols: [tcp, udp], ports: [\"30000-32767\"]}\n",
        "  two: {protocols: [tcp], ports: [8080, 8443]}\n",
        "  one: {protocols: [tcp], ports: [10250]}\n",
        "  same: {protocols: [tcp], ports: [10251, \"10251\", \"10251-10251\"]}\n",
        "  off: {protocols: [tcp], ports: [\"20000-20001\"], detect_sweeps: false}\n",
        "  forced: {protocols: [tcp], ports: [10252], detect_sweeps: true}\n",
    ));
    let sweeps: Vec<(&str, bool)> = config
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.detect_sweeps))
        .collect();
    assert_eq!(
        sweeps,
        [
            ("np", true),
            ("two", true),
            ("one", false),
            ("same", false),
            ("off", false),
            ("forced", true),
        ]
    );
}

#[test]
fn scan_settings_default_and_bounds() {
    use std::time::Duration;
    let config = parse("groups: {}\n");
    assert_eq!(
        (config.alerts.scan_min_ports, config.alerts.scan_window),
        (5, Duration::from_secs(60))
    );
    let config = parse("alerts: {scan: {min_ports: 64, window_s: 3600}}\n");
    assert_eq!(
        (config.alerts.scan_min_ports, config.alerts.scan_window),
        (64, Duration::from_secs(3600))
    );
    assert_error(
        "alerts: {scan: {min_ports: 1}}\n",
        1,
        28,
        "alerts.scan.min_ports",
        "1 is out of range: must be between 2 and 64 (the scan detector keeps this many ports per source)",
    );
    assert_error(
        "alerts:\n  scan:\n    min_ports: 65\n",
        3,
        16,
        "alerts.scan.min_ports",
        "must be between 2 and 64",
    );
    assert_error(
        "alerts:\n  scan:\n    window_s: 0\n",
        3,
        15,
        "alerts.scan.window_s",
        "0 is out of range: must be between 1 and 3600",
    );
    assert_error(
        "alerts: {scan: {ports: 3}}\n",
        1,
        17,
        "alerts.scan.ports",
        "unknown field `ports`",
    );
}

#[test]
fn error_alerts_and_metrics() {
    assert_error(
        "alerts:\n  dedup_window_s: 0\n",
        2,
        19,
        "alerts.dedup_window_s",
        "0 is out of range: must be between 1 and 86400",
    );
    assert_error(
        "alerts: {sweep: {min_ports: 1}}\n",
        1,
        29,
        "alerts.sweep.min_ports",
        "must be between 2 and 65535",
    );
    assert_error(
        "alerts:\n  sweep:\n    window_s: 3601\n",
        3,
        15,
        "alerts.sweep.window_s",
        "must be between 1 and 3600",
    );
    assert_error(
        "alerts: {flood_window_s: 0}\n",
        1,
        26,
        "alerts.flood_window_s",
        "must be between 1 and 3600",
    );
    assert_error(
        "alerts: {sweep: {ports: 3}}\n",
        1,
        18,
        "alerts.sweep.ports",
        "unknown field `ports`",
    );
    assert_error(
        "metrics:\n  listen: \"localhost:9630\"\n",
        2,
        11,
        "metrics.listen",
        "`localhost:9630` is not a socket address",
    );
    assert_error(
        "metrics: {listen: \"127.0.0.1\"}\n",
        1,
        19,
        "metrics.listen",
        "is not a socket address",
    );
    assert_error(
        "metrics: {port: 1}\n",
        1,
        11,
        "metrics.port",
        "unknown field `port`",
    );
}

#[test]
fn iface_patterns() {
    for ok in [
        "eth0", "eth*", "en?", "en[op]s*", "[!l]*", "a:1", "veth.100",
    ] {
        assert_eq!(check_iface_pattern(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "eth[",
        "a b",
        "a/b",
        "abcdefghijklmnop",
        ".",
        "..",
        "eth**x",
    ] {
        assert!(check_iface_pattern(bad).is_err(), "{bad}");
    }
    assert!(is_glob("eth*") && is_glob("e?") && is_glob("[ab]") && !is_glob("eth0"));
}

#[test]
fn default_route_is_an_interfaces_entry_not_a_pods_one() {
    let config = parse("interfaces: [default-route, \"vxlan.calico\"]\n");
    assert_eq!(config.interfaces, [DEFAULT_ROUTE, "vxlan.calico"]);
    assert!(!is_name(DEFAULT_ROUTE) && is_name("eth0") && !is_name("eth*"));
    // The command line's --pod-iface takes the same check.
    assert!(check_pod_iface_pattern(DEFAULT_ROUTE).is_err());
    assert_eq!(check_pod_iface_pattern("cali*"), Ok(()));
    assert_error(
        "pod_interfaces: [\"cali*\", default-route]\n",
        1,
        27,
        "pod_interfaces[1]",
        "belongs in `interfaces`",
    );
}
