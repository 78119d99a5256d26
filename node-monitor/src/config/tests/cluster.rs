//! Tests: the `cluster` section.

use std::time::Duration;

use super::*;

#[test]
fn cluster_defaults_when_absent() {
    assert_eq!(parse(EXAMPLE).cluster, ClusterSettings::DEFAULT);
    assert_eq!(ClusterSettings::DEFAULT.enabled, ClusterMode::Auto);
    assert_eq!(Config::default_config().cluster, ClusterSettings::DEFAULT);
}

#[test]
fn cluster_every_field() {
    for (text, mode) in [
        ("auto", ClusterMode::Auto),
        ("on", ClusterMode::On),
        ("off", ClusterMode::Off),
    ] {
        let c = parse(&format!(
            "cluster:\n  enabled: {text}\n  node_name: worker-1.example\n  resync_s: 120\n  stale_after_s: 5\n"
        ))
        .cluster;
        assert_eq!(
            c,
            ClusterSettings {
                enabled: mode,
                node_name: Some("worker-1.example".into()),
                resync: Duration::from_secs(120),
                stale_after: Duration::from_secs(5),
            }
        );
    }
}

#[test]
fn cluster_errors_name_line_column_and_field() {
    assert_error(
        "cluster:\n  enabled: maybe\n",
        2,
        12,
        "cluster.enabled",
        "unknown value `maybe`: expected one of auto, on, off",
    );
    assert_error(
        "cluster:\n  node_name: Worker_1\n",
        2,
        14,
        "cluster.node_name",
        "is not a Kubernetes node name",
    );
    assert_error(
        "cluster:\n  resync_s: 5\n",
        2,
        13,
        "cluster.resync_s",
        "5 is out of range: must be between 60 and 86400",
    );
    assert_error(
        "cluster:\n  stale_after_s: 0\n",
        2,
        18,
        "cluster.stale_after_s",
        "must be between 1 and 3600",
    );
    let errors = Config::from_yaml("cluster:\n  enabeld: on\n", "test.yaml").unwrap_err();
    assert!(errors.to_string().contains("enabeld"), "{errors}");
}

#[test]
fn cluster_change_needs_a_restart_and_changes_the_digest() {
    let a = parse(EXAMPLE);
    let b = parse(&format!("{EXAMPLE}cluster: {{enabled: off}}\n"));
    assert_ne!(a.digest(), b.digest());
    assert_eq!(a.reload_plan(&b).restart_required, ["cluster"]);
    assert!(b.canonical().contains("cluster enabled=off"));
}
