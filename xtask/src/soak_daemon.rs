//! The daemon under soak: started in the node's namespace with its stdout (alerts, and when
//! the first came) and stderr (kept whole) read by threads, killed with `kill -9` or stopped
//! with SIGTERM for its final counters line; and its metrics endpoint, scraped.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use node_monitor_lab::{Child, Netns};
use serde_json::Value;

/// The metrics endpoint (node namespace, loopback).
pub(crate) const METRICS: &str = "127.0.0.1:19630";
/// How long the daemon may take to log `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running daemon: its stdout counted (alerts, and when the first came), its stderr kept.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) started: Instant,
    pub(crate) ready_after: Duration,
    pub(crate) alerts: Arc<AtomicU64>,
    pub(crate) first_alert: Arc<Mutex<Option<Instant>>>,
    pub(crate) err: Arc<Mutex<Vec<String>>>,
    pub(crate) readers: Vec<thread::JoinHandle<()>>,
}

impl Daemon {
    pub(crate) fn start(
        node: &Netns,
        bin: &Path,
        cfg: &Path,
        pin: &Path,
    ) -> anyhow::Result<Daemon> {
        let mut cmd = node.nsenter(&bin.to_string_lossy());
        cmd.arg("run")
            .arg("--config")
            .arg(cfg)
            .arg("--pin-dir")
            .arg(pin)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = Child::spawn(&mut cmd)?;
        let alerts = Arc::new(AtomicU64::new(0));
        let first_alert = Arc::new(Mutex::new(None));
        let err = Arc::new(Mutex::new(Vec::new()));
        let out = child.take_stdout().context("stdout")?;
        let (a, f) = (alerts.clone(), first_alert.clone());
        let r_out = thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["event"]["kind"] == "alert" {
                    a.fetch_add(1, Ordering::Relaxed);
                    let mut g = f.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    g.get_or_insert_with(Instant::now);
                }
            }
        });
        let e = child.take_stderr().context("stderr")?;
        let lines = err.clone();
        let r_err = thread::spawn(move || {
            for line in BufReader::new(e).lines().map_while(Result::ok) {
                lines
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(line);
            }
        });
        let mut d = Daemon {
            child,
            started,
            ready_after: Duration::ZERO,
            alerts,
            first_alert,
            err,
            readers: vec![r_out, r_err],
        };
        let deadline = started + READY_TIMEOUT;
        loop {
            if d.stderr().iter().any(|l| l.contains(": ready")) {
                d.ready_after = started.elapsed();
                return Ok(d);
            }
            if let Some(st) = d.child.try_wait()? {
                thread::sleep(Duration::from_millis(100));
                bail!(
                    "the daemon exited ({st}) before it was ready:\n{}",
                    d.stderr().join("\n")
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "the daemon did not log `ready` within {READY_TIMEOUT:?}:\n{}",
                    d.stderr().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stderr(&self) -> Vec<String> {
        self.err
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn first_alert_after(&self) -> Option<Duration> {
        self.first_alert
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|t| t - self.started)
    }

    /// Waits (bounded) for the output readers after the process is gone.
    pub(crate) fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let deadline = Instant::now() + Duration::from_secs(3);
            while !r.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }

    /// `kill -9`; waits (bounded) until it is gone.
    pub(crate) fn kill9(&mut self) -> anyhow::Result<()> {
        let pid = i32::try_from(self.pid())?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                bail!("the daemon survived kill -9 for 5 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.join_readers();
        Ok(())
    }

    /// SIGTERM; the final counters line (the last line of stderr).
    pub(crate) fn stop(&mut self) -> anyhow::Result<Value> {
        let st = self.child.stop(Duration::from_secs(15))?;
        self.join_readers();
        let err = self.stderr();
        if !st.success() {
            bail!(
                "the daemon exited with {st} after SIGTERM:\n{}",
                err.join("\n")
            );
        }
        let last = err.last().context("no stderr after SIGTERM")?;
        let v: Value = serde_json::from_str(last)
            .with_context(|| format!("the last stderr line is not the counters line: {last}"))?;
        if v["type"] != "counters" {
            bail!("the last stderr line is not the counters line: {last}");
        }
        Ok(v)
    }
}

/// `GET /metrics` from inside the node's namespace (5 s at most); the body.
pub(crate) fn scrape(node: &Netns) -> anyhow::Result<String> {
    node.run(|| -> anyhow::Result<String> {
        use std::io::{Read as _, Write as _};
        let t = Duration::from_secs(5);
        let a = METRICS.parse()?;
        let mut s = std::net::TcpStream::connect_timeout(&a, t)?;
        s.set_read_timeout(Some(t))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {METRICS}\r\nConnection: close\r\n\r\n"
        )?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        if !body.starts_with("HTTP/1.1 200") {
            bail!("{}", body.lines().next().unwrap_or(""));
        }
        Ok(body)
    })?
}

/// The sum of a metric's samples (any labels) in a Prometheus text body.
pub(crate) fn metric_sum(body: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for l in body.lines().filter(|l| !l.starts_with('#')) {
        let series = l.split([' ', '{']).next().unwrap_or("");
        if series == name
            && let Some(v) = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok())
        {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}
