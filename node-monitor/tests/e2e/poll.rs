//! Bounded waits on a running daemon's metrics, and sample values read from them.

use std::time::{Duration, Instant};

use node_monitor_lab::Lab;

use crate::common::{
    daemon::{Daemon, scrape},
    http::metric_value,
};

/// Waits (bounded) until `pred` holds for the daemon's metrics; returns the last body.
pub(crate) fn wait_metrics(
    lab: &Lab,
    d: &Daemon,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> (bool, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let body = scrape(&lab.node, d);
        if pred(&body) {
            return (true, body);
        }
        if Instant::now() >= deadline {
            return (false, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of a metric sample (summed over matching series), 0 when absent.
pub(crate) fn metric(body: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(body, name, labels).unwrap_or(0.0)
}

/// Config reloads with `result` (`success` / `failure`).
pub(crate) fn reloads(body: &str, result: &str) -> f64 {
    metric(
        body,
        "node_monitor_config_reloads_total",
        &[("result", result)],
    )
}

/// New kubelet TCP connections with `verdict` (`allowed` / `denied`).
pub(crate) fn kubelet_conns(body: &str, verdict: &str) -> f64 {
    metric(
        body,
        "node_monitor_connections_total",
        &[("group", "kubelet"), ("proto", "tcp"), ("verdict", verdict)],
    )
}
