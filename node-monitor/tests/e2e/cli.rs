//! The command line: check-config, print-default-config, and errors that name the fix.

use std::time::{Duration, Instant};

use node_monitor_lab::{BpfPinDir, Netns};

use crate::{
    common::{
        daemon::{self, context},
        temp::TempFile,
    },
    setup::test_config,
};

/// Test 6: The command line: check-config, print-default-config, run on a missing interface.
#[test]
fn cli_check_config_and_errors() {
    daemon::require_root_and_tools(&["ip", "nsenter"]);
    // A valid file.
    let good = TempFile::new("good.yaml", &test_config(&[]));
    let (st, out, err) = daemon::run_cli(None, &["check-config", good.as_str()]);
    assert!(st.success(), "valid config rejected: {err}");
    assert!(out.contains(": ok ("), "{out}");

    // A bad CIDR: file:line:column: field: message.
    let bad = TempFile::new(
        "bad.yaml",
        "groups:\n  kubelet:\n    protocols: [tcp]\n    ports: [\"10250\"]\n    allow:\n      - 198.51.100.0/24\n      - 203.0.113.300/32\n",
    );
    let (st, out, err) = daemon::run_cli(None, &["check-config", bad.as_str()]);
    assert_eq!(st.code(), Some(1), "bad config: {st} {out} {err}");
    let want = format!("{}:7:9: groups.kubelet.allow[1]: ", bad.as_str());
    assert!(
        err.starts_with(&want),
        "want a line starting with {want:?}, got:\n{err}"
    );
    assert!(
        err.contains("203.0.113.300/32"),
        "the message should quote the value:\n{err}"
    );

    // print-default-config round-trips through check-config.
    let (st, text, err) = daemon::run_cli(None, &["print-default-config"]);
    assert!(st.success(), "{err}");
    assert_eq!(text, node_monitor::config::DEFAULT_CONFIG_YAML);
    let dflt = TempFile::new("default.yaml", &text);
    let (st, out, err) = daemon::run_cli(None, &["check-config", dflt.as_str()]);
    assert!(st.success(), "default config rejected: {err}");
    assert!(out.contains("(12 groups"), "{out}");

    // run on a missing interface: exit 1, a clear error, no pins.
    let ns = context(Netns::new("cli"));
    let pin = context(BpfPinDir::new("cli"));
    let sub = pin.path.join("nm");
    let t = Instant::now();
    let (st, _, err) = daemon::run_cli(
        Some(&ns),
        &[
            "run",
            "--iface",
            "does-not-exist",
            "--pin-dir",
            sub.to_str().unwrap(),
        ],
    );
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("does-not-exist") && err.contains("does not exist"),
        "unclear error: {err}"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(!sub.exists(), "pins left behind: {:?}", pin.entries());
    assert!(pin.entries().is_empty(), "{:?}", pin.entries());
}
