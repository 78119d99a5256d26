//! `cargo xtask test`'s "deploy checks" and `cargo xtask deploy-manifests`: `deploy/` checked
//! by the real tools.
//!
//! - `deploy/check/check_chart.py` (in the venv that [`crate::setup`] makes): Helm's own engine
//!   renders and lints the chart for the default values and a non-default set, refuses values
//!   that break the schema, every object validates (strict) against the Kubernetes schemas of
//!   kubernetes-validate, the ServiceMonitor and PrometheusRule (strict) against the
//!   prometheus-operator CRD schemas vendored in `deploy/check/crds/`, `deploy/manifests/`
//!   is the default render, and every metric name of the rules and the dashboard is the
//!   daemon's or one allowed by name (`up`, kube-state-metrics');
//! - `node-monitor check-config` on the config each render holds;
//! - `promtool check rules` on the rule file, the rendered PrometheusRule and the dashboard's
//!   queries (as recording rules, for promtool's PromQL parser), and
//!   `promtool test rules` (a unit test per alert);
//! - `systemd-analyze verify` of the unit, and its `security` exposure under a threshold.
//!
//! The metric names of the rules and the dashboard are checked against the daemon's real
//! `/metrics` by the e2e test `deploy` (node-monitor/tests/e2e/deploy.rs).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::{
    setup,
    tasks::{cargo, run_step},
};

/// The chart.
pub const CHART: &str = "deploy/helm/node-monitor";
/// `systemd-analyze security` exposure, times ten, above which the unit fails (the unit is
/// at 2.8, "OK"; 3.0 is still "OK").
pub const EXPOSURE_THRESHOLD: &str = "30";

/// Where the checks write what they render (the configs, the rules).
fn out_dir(root: &Path) -> PathBuf {
    root.join("target/deploy-check")
}

fn check_chart(root: &Path, write: bool) -> anyhow::Result<Command> {
    let python = setup::deploy_python(root);
    if !python.is_file() {
        bail!(
            "{} is missing: run `cargo xtask setup` (it makes the venv with the deploy checks' Python packages)",
            python.display()
        );
    }
    let mut cmd = Command::new(python);
    cmd.current_dir(root)
        .stdin(Stdio::null())
        .arg(root.join("deploy/check/check_chart.py"))
        .arg(out_dir(root));
    if write {
        cmd.arg("--write-manifests");
    }
    Ok(cmd)
}

/// Renders the chart with its default values into `deploy/manifests/node-monitor.yaml`.
pub fn write_manifests(root: &Path) -> anyhow::Result<()> {
    setup::run(root)?;
    run_step("deploy manifests", check_chart(root, true)?)
}

/// Every deploy check; runs them all, then fails naming those that failed.
pub fn checks(root: &Path) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    let mut step = |name: &str, cmd: anyhow::Result<Command>| {
        if let Err(e) = cmd.and_then(|c| run_step(name, c)) {
            eprintln!("deploy checks: {e:#}");
            failed.push(name.to_owned());
        }
    };
    step(
        "chart (helm, kubernetes-validate, CRD schemas)",
        check_chart(root, false),
    );

    // The daemon on the configs the chart renders: the binary the tests run
    // (target/debug/node-monitor, built by `cargo test` with the features its dev-dependency
    // turns on). After the tests step this build is a no-op; `cargo build -p node-monitor`
    // would select other features and build the crate a second time.
    let mut build = cargo(root);
    build.args([
        "test",
        "--workspace",
        "--exclude",
        "node-monitor-ebpf",
        "--no-run",
    ]);
    step("build node-monitor", Ok(build));
    let daemon = root.join("target/debug/node-monitor");
    for label in ["default", "non-default", "tls"] {
        let mut cmd = Command::new(&daemon);
        cmd.arg("check-config")
            .arg(out_dir(root).join(format!("config-{label}.yaml")));
        step(&format!("check-config ({label} values)"), Ok(cmd));
    }

    let rules = root.join(CHART).join("files/rules.yaml");
    let mut check = Command::new("promtool");
    check
        .args(["check", "rules"])
        .arg(&rules)
        .arg(out_dir(root).join("rules-non-default.yaml"))
        .arg(out_dir(root).join("dashboard-queries.yaml"));
    step(
        "promtool check rules (and the dashboard's queries)",
        Ok(check),
    );
    let mut test = Command::new("promtool");
    test.current_dir(root.join(CHART).join("tests"))
        .args(["test", "rules", "rules_test.yaml"]);
    step("promtool test rules", Ok(test));

    match systemd_unit_for_verify(root, &daemon) {
        Ok(unit) => {
            let mut verify = Command::new("systemd-analyze");
            verify.args(["verify", "--man=no"]).arg(&unit);
            step("systemd-analyze verify", Ok(verify));
            let mut security = Command::new("systemd-analyze");
            security
                .args([
                    "security",
                    "--offline=yes",
                    &format!("--threshold={EXPOSURE_THRESHOLD}"),
                ])
                .arg(&unit)
                // The table is long: on a failure, run the command by hand to see it.
                .stdout(Stdio::null());
            step("systemd-analyze security", Ok(security));
        }
        Err(e) => step("systemd unit", Err(e)),
    }

    if !failed.is_empty() {
        bail!("deploy checks failed: {}", failed.join(", "));
    }
    println!("deploy checks: all passed");
    Ok(())
}

/// The unit as shipped, but for its `ExecStart` binary, which `verify` wants to exist: the
/// daemon just built stands in for `/usr/local/bin/node-monitor`.
fn systemd_unit_for_verify(root: &Path, daemon: &Path) -> anyhow::Result<PathBuf> {
    let src = root.join("deploy/systemd/node-monitor.service");
    let text = std::fs::read_to_string(&src).with_context(|| format!("read {}", src.display()))?;
    let installed = "/usr/local/bin/node-monitor";
    if !text.contains(&format!("ExecStart={installed} ")) {
        bail!("{} no longer starts {installed}", src.display());
    }
    let dir = out_dir(root);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let unit = dir.join("node-monitor.service");
    std::fs::write(&unit, text.replace(installed, &daemon.to_string_lossy()))
        .with_context(|| format!("write {}", unit.display()))?;
    Ok(unit)
}
