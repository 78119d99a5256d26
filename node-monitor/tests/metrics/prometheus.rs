//! A real `prometheus` (Debian's) scrapes `serve` over loopback.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    common::{ports::free_tcp_port, temp::TempDir},
    fixture::populated,
    serve::{Server, http_get},
};

pub(crate) const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Kills and reaps the child on drop, even when the test fails.
pub(crate) struct ChildGuard(pub(crate) Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running Debian `prometheus` on `config` (written by the caller in `dir`), listening on a
/// free loopback port, its output in `prometheus.log` there. Killed when the guard drops.
pub(crate) struct RunningPrometheus {
    pub(crate) addr: SocketAddr,
    pub(crate) log: std::path::PathBuf,
    pub(crate) guard: ChildGuard,
}

/// How many times [`start_prometheus`] tries a new port after Prometheus found its port taken.
const PORT_TRIES: u32 = 3;

pub(crate) fn start_prometheus(dir: &TempDir, config: &Path) -> RunningPrometheus {
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: install Debian's `prometheus` package (apt-get install prometheus)"
    );
    let log_path = dir.file("prometheus.log");
    // The port is picked, released, then bound by Prometheus: another test can take it in
    // between. Prometheus then exits saying so, and starts again on another port.
    for attempt in 1..=PORT_TRIES {
        let log = std::fs::File::create(&log_path).expect("log file");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.file(&format!("data-{attempt}")).display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {PROMETHEUS}: {e}"));
        let mut guard = ChildGuard(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let said = std::fs::read_to_string(&log_path).unwrap_or_default();
            if said.contains("ready to receive web requests") {
                return RunningPrometheus {
                    addr,
                    log: log_path,
                    guard,
                };
            }
            if let Some(status) = guard.0.try_wait().expect("waiting for prometheus") {
                if said.contains("address already in use") && attempt < PORT_TRIES {
                    break;
                }
                panic!("{PROMETHEUS} exited ({status}) before it was ready:\n{said}");
            }
            assert!(
                Instant::now() < deadline,
                "{PROMETHEUS} not ready within 20 s:\n{said}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    unreachable!("the last attempt returns or panics")
}

pub(crate) async fn query(prom: SocketAddr, q: &str) -> Option<Vec<serde_json::Value>> {
    let path = format!("/api/v1/query?query={q}");
    let r = http_get(prom, &path, None).await.ok()?;
    if r.status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    if v["status"] != "success" {
        return None;
    }
    v["data"]["result"].as_array().cloned()
}

pub(crate) fn find_value(results: &[serde_json::Value], labels: &[(&str, &str)]) -> Option<String> {
    results
        .iter()
        .find(|r| labels.iter().all(|(k, v)| r["metric"][*k] == *v))
        .and_then(|r| r["value"][1].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrapes_serve() {
    let m = populated();
    m.set_ready(true);
    let srv = Server::start(m.clone()).await;

    let dir = TempDir::new("prometheus");
    let config = dir.file("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: node-monitor\n    static_configs:\n      - targets: ['{}']\n",
            srv.addr
        ),
    )
    .expect("write config");
    let RunningPrometheus {
        addr: prom_addr,
        log: log_path,
        guard,
    } = start_prometheus(&dir, &config);

    let want = [
        ("group", "kubelet"),
        ("proto", "tcp"),
        ("verdict", "denied"),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::from("no answer yet");
    let mut ok = false;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(packets) = query(prom_addr, "node_monitor_packets_total").await else {
            continue;
        };
        last = format!("{packets:?}");
        if find_value(&packets, &want).as_deref() != Some("5") {
            continue;
        }
        let Some(up) = query(prom_addr, "up").await else {
            continue;
        };
        last = format!("up: {up:?}");
        if find_value(&up, &[("job", "node-monitor")]).as_deref() == Some("1") {
            ok = true;
            break;
        }
    }
    let prom_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        ok,
        "Prometheus did not report node_monitor_packets_total{{group=\"kubelet\",proto=\"tcp\",verdict=\"denied\"}} = 5 and up = 1 within 20 s; last: {last}\n--- prometheus log ---\n{prom_log}"
    );
    // More of the exposition made it through Prometheus's parser.
    let runtime = query(prom_addr, "node_monitor_program_run_time_seconds_total")
        .await
        .unwrap_or_default();
    assert_eq!(
        find_value(&runtime, &[("program", "xdp")]).as_deref(),
        Some("1.5"),
        "{runtime:?}"
    );
    let build = query(prom_addr, "node_monitor_build_info")
        .await
        .unwrap_or_default();
    assert_eq!(
        find_value(&build, &[("version", env!("CARGO_PKG_VERSION"))]).as_deref(),
        Some("1"),
        "{build:?}"
    );
    drop(guard);
    srv.stop().await;
}
