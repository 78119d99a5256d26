//! Tests: The canonical form and digest.

use super::*;

#[test]
fn digest_is_stable_and_ignores_layout() {
    let a = parse(EXAMPLE);
    let digest = a.digest();
    assert_eq!(digest.len(), 16);
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(digest, parse(EXAMPLE).digest());
    // Same meaning, other layout: same digest.
    let reformatted = "# comment\ngroups:\n  kubelet:\n    protocols: [tcp]\n    ports: [10250]\n    allow: ['203.0.113.0/28', '2001:db8:1::/64']\n  nodeport: { protocols: [tcp, udp], ports: [\"30000-32767\"], allow: [\"0.0.0.0/0\", \"::/0\"] }\n";
    assert_eq!(parse(reformatted).digest(), digest);
    // Any change shows.
    let changed = EXAMPLE.replace("allowed_flows_one_in: 100", "allowed_flows_one_in: 10");
    assert_ne!(parse(&changed).digest(), digest);
    assert_ne!(Config::default_config().digest(), digest);
}

#[test]
fn digest_covers_every_section() {
    let base = parse(FULL);
    let digest = base.digest();
    for (from, to) in [
        ("\"ens5\"", "\"ens6\""),
        ("attach: tc", "attach: xdp"),
        ("detect_sweeps: true", "detect_sweeps: false"),
        ("dedup_window_s: 120", "dedup_window_s: 121"),
        ("min_ports: 20", "min_ports: 21"),
        ("window_s: 30", "window_s: 31"),
        ("min_ports: 6", "min_ports: 7"),
        ("window_s: 45", "window_s: 46"),
        ("flood_window_s: 5", "flood_window_s: 6"),
        (
            "connection_alerts_per_group: 7",
            "connection_alerts_per_group: 8",
        ),
        ("format: cef", "format: ocsf"),
        ("keep: 5", "keep: 6"),
        ("max_size_mb: 100", "max_size_mb: 101"),
        ("udp://127.0.0.1:514", "udp://127.0.0.1:515"),
        ("siem.example/ingest", "siem.example/other"),
        ("batch_max: 500", "batch_max: 501"),
        ("batch_interval_ms: 1000", "batch_interval_ms: 1001"),
        ("timeout_ms: 5000", "timeout_ms: 5001"),
        ("max_retries: 5", "max_retries: 6"),
        ("Bearer x", "Bearer y"),
        ("name: remote", "name: remote2"),
        ("queue: 50", "queue: 51"),
        ("flows: true, keep", "flows: false, keep"),
        ("[::]:9100", "[::]:9101"),
    ] {
        assert_eq!(FULL.matches(from).count(), 1, "{from}");
        let changed = parse(&FULL.replace(from, to));
        assert_ne!(changed.digest(), digest, "{from} -> {to}");
    }
    // Header values are secrets: the canonical form holds a hash of them, not them.
    let canonical = base.canonical();
    assert!(!canonical.contains("Bearer"), "{canonical}");
    assert!(canonical.contains("authorization:sha256:"), "{canonical}");
    // Writing a default explicitly does not change the meaning, nor the digest.
    assert_eq!(
            parse("groups: {}\n").digest(),
            parse("groups: {}\nsinks: [{type: stdout, format: ecs, queue: 10000, flows: true}]\nmetrics: {listen: \"127.0.0.1:9630\"}\nalerts: {dedup_window_s: 60}\ninterfaces: []\n").digest()
        );
}
