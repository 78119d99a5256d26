//! Tests: `sinks`: defaults, derived names and every kind of error.

use super::*;

#[test]
fn sink_defaults_and_derived_names() {
    use std::time::Duration;
    let config = parse(
        "sinks:\n  - type: http\n    url: http://10.0.0.1:8080\n  - type: file\n    path: /a\n  - type: stdout\n    flows: false\n  - type: http\n    url: https://[2001:db8::5]/in?x=1\n",
    );
    let names: Vec<&str> = config.sinks.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["http", "file", "stdout", "http-2"]);
    assert_eq!(
        config.sinks[0].kind,
        SinkKind::Http {
            url: "http://10.0.0.1:8080".into(),
            batch_max: 500,
            batch_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            max_retries: 5,
            headers: vec![],
            tls: ClientTls::default(),
            bearer_token_file: None,
        }
    );
    assert_eq!(
        config.sinks[1].kind,
        SinkKind::File {
            path: "/a".into(),
            max_size_bytes: 100 << 20,
            keep: 5
        }
    );
    assert!(config.sinks.iter().all(|s| s.format == Format::Ecs));
    assert!(config.sinks.iter().all(|s| s.queue == 10_000));
    assert!(config.sinks.iter().all(|s| !s.flows));
    // localhost is the one host name a syslog address may use.
    let config = parse("sinks: [{type: syslog, address: \"tcp://localhost:601\"}]\n");
    assert_eq!(
        config.sinks[0].kind,
        SinkKind::Syslog {
            transport: SyslogTransport::Tcp("127.0.0.1:601".parse().unwrap()),
            tls: ClientTls::default(),
        }
    );
    // Bounds are accepted.
    let config = parse(
        "sinks: [{type: file, path: /x, queue: 10000000, max_size_mb: 1048576, keep: 100}, {type: stdout, queue: 1}]\nalerts: {dedup_window_s: 86400, sweep: {min_ports: 65535, window_s: 3600}, flood_window_s: 3600}\n",
    );
    assert_eq!(config.sinks[0].queue, 10_000_000);
    assert_eq!(config.alerts.dedup_window, Duration::from_secs(86_400));
    assert_eq!(config.alerts.sweep_min_ports, 65_535);
    parse("alerts: {dedup_window_s: 1, sweep: {min_ports: 2, window_s: 1}, flood_window_s: 1}\n");
}

#[test]
fn error_sinks_structure() {
    assert_error("sinks: []\n", 1, 8, "sinks", "must list at least one sink");
    assert_error("sinks: {type: stdout}\n", 1, 8, "sinks", "expected a list");
    assert_error(
        "sinks:\n  - {format: ecs}\n",
        2,
        5,
        "sinks[0].type",
        "missing field `type` (one of stdout, file, syslog, http)",
    );
    assert_error(
        "sinks:\n  - {type: kafka}\n",
        2,
        12,
        "sinks[0].type",
        "unknown sink type `kafka`: expected one of stdout, file, syslog, http",
    );
    assert_error(
        "sinks:\n  - {type: stdout, bogus: 1}\n",
        2,
        20,
        "sinks[0].bogus",
        "unknown field `bogus`",
    );
    assert_error(
        "sinks:\n  - type: stdout\n    path: /x\n",
        3,
        11,
        "sinks[0].path",
        "`path` is not a field of sinks of type stdout (their fields: type, name, format, queue, flows)",
    );
    assert_error(
        "sinks:\n  - {type: file, path: /x, url: \"http://a\"}\n",
        2,
        33,
        "sinks[0].url",
        "`url` is not a field of sinks of type file (their fields: type, name, format, queue, flows, path, max_size_mb, keep)",
    );
    assert_error(
        "sinks:\n  - {type: http, url: \"http://a\", address: \"udp://127.0.0.1:514\"}\n",
        2,
        44,
        "sinks[0].address",
        "`address` is not a field of sinks of type http",
    );
    assert_error(
        "sinks:\n  - {type: stdout, format: json}\n",
        2,
        28,
        "sinks[0].format",
        "unknown format `json`: expected one of ecs, ocsf, cef",
    );
    assert_error(
        "sinks:\n  - {type: stdout, queue: 0}\n",
        2,
        27,
        "sinks[0].queue",
        "0 is out of range: must be between 1 and 10000000",
    );
    assert_error(
        "sinks:\n  - {type: stdout, queue: 10000001}\n",
        2,
        27,
        "sinks[0].queue",
        "out of range",
    );
    assert_error(
        "sinks:\n  - {type: stdout, flows: 3}\n",
        2,
        27,
        "sinks[0].flows",
        "expected true or false",
    );
    assert_error(
        "sinks:\n  - {type: stdout, name: \"Out\"}\n",
        2,
        26,
        "sinks[0].name",
        "invalid sink name `Out`",
    );
}

#[test]
fn error_duplicate_sink_names() {
    assert_error(
        "sinks:\n  - {type: stdout, name: out}\n  - {type: file, path: /x, name: out}\n",
        3,
        34,
        "sinks[1].name",
        "duplicate sink name `out`",
    );
    // A derived name that collides with an earlier explicit one: said so, at the sink.
    assert_error(
        "sinks:\n  - {type: file, path: /a, name: file}\n  - {type: file, path: /b}\n",
        3,
        5,
        "sinks[1].name",
        "duplicate sink name `file` (the name derived for this sink: give it a `name`)",
    );
}

#[test]
fn error_file_sinks() {
    assert_error(
        "sinks:\n  - {type: file}\n",
        2,
        12,
        "sinks[0].path",
        "missing field `path` (an absolute file path) for a sink of type file",
    );
    assert_error(
        "sinks:\n  - type: file\n    path: var/log/a.json\n",
        3,
        11,
        "sinks[0].path",
        "`var/log/a.json` is not an absolute path",
    );
    assert_error(
        "sinks:\n  - {type: file, path: /var/log/}\n",
        2,
        24,
        "sinks[0].path",
        "names a directory",
    );
    assert_error(
        "sinks:\n  - {type: file, path: /a, max_size_mb: 0}\n",
        2,
        41,
        "sinks[0].max_size_mb",
        "0 is out of range: must be between 1 and 1048576",
    );
    assert_error(
        "sinks:\n  - {type: file, path: /a, keep: 101}\n",
        2,
        34,
        "sinks[0].keep",
        "101 is out of range: must be between 0 and 100",
    );
}

#[test]
fn error_syslog_sinks() {
    let yaml = |a: &str| format!("sinks:\n  - type: syslog\n    address: \"{a}\"\n");
    let cases = [
        (
            "udp://syslog.example:514",
            "`syslog.example` is not an IP address: host names are not resolved when the config is read, so use an IP address or `localhost`",
        ),
        ("udp://127.0.0.1", "has no port"),
        (
            "udp://127.0.0.1:0",
            "`0` in `udp://127.0.0.1:0` is not a port (1-65535)",
        ),
        ("tcp://127.0.0.1:65536", "is not a port"),
        ("udp://2001:db8::1:514", "put an IPv6 address in brackets"),
        ("udp://[2001:db8::1:514", "missing `]`"),
        ("unix://dev/log", "unix:// then an absolute path"),
        ("unix://", "unix:// then an absolute path"),
        (
            "127.0.0.1:514",
            "is not a syslog address: use udp://HOST:PORT",
        ),
        ("https://127.0.0.1:514", "is not a syslog address"),
    ];
    for (address, msg) in cases {
        assert_error(&yaml(address), 3, 14, "sinks[0].address", msg);
    }
    assert_error(
        "sinks:\n  - {type: syslog}\n",
        2,
        12,
        "sinks[0].address",
        "missing field `address`",
    );
}

#[test]
fn error_http_sinks() {
    let yaml = |u: &str| format!("sinks:\n  - type: http\n    url: \"{u}\"\n");
    let cases = [
        (
            "ftp://a.example/",
            "`ftp://a.example/` is not an http:// or https:// URL",
        ),
        ("siem.example", "is not an http:// or https:// URL"),
        ("https://", "has no host"),
        ("https:///x", "has no host"),
        ("https://a b/", "contains white space"),
        ("https://user:pw@a.example/", "carries credentials"),
        ("https://a.example:99999/", "`99999` is not a port"),
        ("https://a.example:/", "is not a port"),
        ("https://[::1/", "missing `]`"),
        ("https://[zz::1]/", "is not an IPv6 address"),
        ("https://a!b/", "is not a valid host name"),
    ];
    for (url, msg) in cases {
        assert_error(&yaml(url), 3, 10, "sinks[0].url", msg);
    }
    assert_error(
        "sinks:\n  - {type: http}\n",
        2,
        12,
        "sinks[0].url",
        "missing field `url` (an http:// or https:// URL) for a sink of type http",
    );
    let http = "sinks:\n  - type: http\n    url: https://a.example/\n";
    for (field, value, column, msg) in [
        ("batch_max", "0", 16, "between 1 and 100000"),
        ("batch_interval_ms", "0", 24, "between 1 and 600000"),
        ("timeout_ms", "600001", 17, "between 1 and 600000"),
        ("max_retries", "101", 18, "between 0 and 100"),
    ] {
        assert_error(
            &format!("{http}    {field}: {value}\n"),
            4,
            column,
            &format!("sinks[0].{field}"),
            msg,
        );
    }
    assert_error(
        &format!("{http}    headers:\n      Bad Name: x\n"),
        5,
        7,
        "sinks[0].headers.Bad Name",
        "`Bad Name` is not a valid HTTP header name",
    );
    assert_error(
        &format!("{http}    headers:\n      X-A: \"a\\nb\"\n"),
        5,
        12,
        "sinks[0].headers.X-A",
        "no line breaks",
    );
    assert_error(
        &format!("{http}    headers:\n      X-A: a\n      x-a: b\n"),
        6,
        7,
        "sinks[0].headers.x-a",
        "duplicate header `x-a` (header names ignore case)",
    );
    assert_error(
        &format!("{http}    headers: [a]\n"),
        4,
        14,
        "sinks[0].headers",
        "expected a mapping",
    );
}
