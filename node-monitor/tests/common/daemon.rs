//! The daemon under test: run the real `node-monitor` in a lab namespace, collect its stdout
//! records (ECS JSON lines of the default stdout sink) and its stderr log, stop it with SIGTERM
//! and parse the final counters line (the last line of stderr); run its CLI to completion.
//!
//! Every wait here is bounded in time.

use std::{
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use node_monitor_lab::{Child, Netns, output_with_timeout};
use serde_json::Value;

use super::{counters::Counters, http::http_get};

/// The daemon binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_node-monitor");
/// How long the daemon may take to log `ready`.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the daemon may take to exit after SIGTERM.
pub(crate) const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Fails (never skips) unless we are root and every tool is on PATH.
pub(crate) fn require_root_and_tools(tools: &[&str]) {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the end-to-end tests need root (network namespaces, bpffs, XDP/tc); run them as root"
    );
    for t in tools {
        let found = std::env::var_os("PATH").is_some_and(|p| {
            std::env::split_paths(&p).any(|d| {
                let f = d.join(t);
                f.is_file()
            })
        });
        assert!(
            found,
            "the end-to-end tests need `{t}` on PATH (Debian: iproute2, util-linux, curl, ...)"
        );
    }
}

/// Removes ANSI colour sequences from a log line.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Reads lines from a pipe into a shared vector until EOF (the daemon exits).
fn collect_lines(
    pipe: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let reader = BufReader::new(pipe);
        for line in reader.lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(strip_ansi(&line));
        }
    })
}

/// A running daemon; SIGTERMed (then SIGKILLed) on drop.
pub(crate) struct Daemon {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    /// The metrics endpoint (inside the daemon's namespace).
    pub(crate) metrics_addr: SocketAddr,
}

/// What a daemon printed, after it exited.
#[derive(Debug)]
pub(crate) struct Finished {
    #[allow(dead_code, reason = "read through the Debug output when a test fails")]
    pub(crate) status: ExitStatus,
    /// Every stdout line, parsed (ECS documents: alerts and sampled flows).
    pub(crate) records: Vec<Value>,
    /// The final `{"type":"counters",...}` line (the last line of stderr).
    pub(crate) counters: Counters,
    /// stderr without the counters line.
    pub(crate) stderr: String,
}

/// A metrics port of its own for every daemon a test process starts (each daemon runs in
/// its lab's node namespace, so these never collide with anything outside the lab).
pub(crate) fn next_metrics_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    19_630 + NEXT.fetch_add(1, Ordering::Relaxed) % 10_000
}

impl Daemon {
    /// `node-monitor run --iface eth0 --pin-dir PIN --metrics-addr 127.0.0.1:PORT ARGS...` in
    /// `ns` (through `nsenter`, so that it sees the host's bpffs); waits until it logs
    /// `ready`. PORT is fresh for every daemon unless ARGS give `--metrics-addr`.
    pub(crate) fn start(ns: &Netns, pin: &Path, args: &[&str]) -> anyhow::Result<Daemon> {
        Daemon::start_on(ns, pin, &["eth0"], args)
    }

    /// As [`Daemon::start`], with `--iface` for each of `ifaces` (names or globs).
    pub(crate) fn start_on(
        ns: &Netns,
        pin: &Path,
        ifaces: &[&str],
        args: &[&str],
    ) -> anyhow::Result<Daemon> {
        Daemon::start_env(ns, pin, ifaces, args, &[])
    }

    /// As [`Daemon::start_on`], with environment variables for the daemon (`KUBECONFIG`).
    pub(crate) fn start_env(
        ns: &Netns,
        pin: &Path,
        ifaces: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Daemon> {
        let mut cmd = ns.nsenter(BIN);
        cmd.envs(env.iter().copied());
        cmd.arg("run");
        for i in ifaces {
            cmd.args(["--iface", i]);
        }
        let metrics_addr = match args.iter().position(|a| *a == "--metrics-addr") {
            Some(i) => args
                .get(i + 1)
                .context("--metrics-addr without a value")?
                .parse()
                .context("--metrics-addr")?,
            None => {
                let a = SocketAddr::from(([127, 0, 0, 1], next_metrics_port()));
                cmd.arg("--metrics-addr").arg(a.to_string());
                a
            }
        };
        cmd.arg("--pin-dir")
            .arg(pin)
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = Child::spawn(&mut cmd)?;
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect_lines(child.take_stdout().context("stdout")?, out.clone()),
            collect_lines(child.take_stderr().context("stderr")?, err.clone()),
        ];
        let mut d = Daemon {
            child,
            out,
            err,
            readers,
            metrics_addr,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if d.stderr_lines().iter().any(|l| is_ready_line(l)) {
                return Ok(d);
            }
            if let Some(st) = d.child.try_wait()? {
                // Let the readers catch the last lines.
                thread::sleep(Duration::from_millis(100));
                bail!(
                    "`{}` exited ({st}) before it was ready; stderr:\n{}",
                    d.child.describe(),
                    d.stderr()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "`{}` did not log `ready` within {READY_TIMEOUT:?}; stderr:\n{}",
                    d.child.describe(),
                    d.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn stderr_lines(&self) -> Vec<String> {
        self.err.lock().unwrap().clone()
    }

    /// The daemon's process id (`nsenter` execs it: no fork for a network namespace).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits (bounded) until some stderr line satisfies `pred`.
    pub(crate) fn wait_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr_lines().iter().any(|l| pred(l)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr_lines().join("\n")
    }

    /// The stdout records so far (parsed; lines that are not JSON fail the test).
    pub(crate) fn records(&self) -> Vec<Value> {
        self.out
            .lock()
            .unwrap()
            .iter()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// Waits (bounded) until `pred` holds for the records printed so far.
    pub(crate) fn wait_records(&self, timeout: Duration, pred: impl Fn(&[Value]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.records()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGTERM; waits (bounded) for the exit, reads everything it printed and parses the
    /// final counters line. Fails unless it exited 0 with a counters line last.
    pub(crate) fn stop(mut self) -> anyhow::Result<Finished> {
        let t = Instant::now();
        let status = self.child.stop(EXIT_TIMEOUT)?;
        let took = t.elapsed();
        for r in self.readers.drain(..) {
            // The pipes close with the process; a bounded wait all the same.
            let deadline = Instant::now() + Duration::from_secs(2);
            while !r.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
        let stderr = self.stderr();
        if took >= EXIT_TIMEOUT {
            bail!("the daemon did not exit within {EXIT_TIMEOUT:?} of SIGTERM; stderr:\n{stderr}");
        }
        if !status.success() {
            bail!("the daemon exited with {status} after SIGTERM; stderr:\n{stderr}");
        }
        let records = self.records();
        let mut lines = self.stderr_lines();
        let last = lines
            .pop()
            .ok_or_else(|| anyhow!("no stderr at all after SIGTERM"))?;
        let counters: Value = serde_json::from_str(&last)
            .map_err(|e| anyhow!("the last stderr line is not JSON ({e}): {last}\n{stderr}"))?;
        if counters["type"] != "counters" {
            bail!("the last stderr line is not the counters line: {last}");
        }
        if let Some(l) = lines.iter().find(|l| l.contains(r#""type":"counters""#)) {
            bail!("a counters line before the last stderr line: {l}");
        }
        if let Some(r) = records.iter().find(|r| r["type"] == "counters") {
            bail!("a counters line on stdout: {r}");
        }
        Ok(Finished {
            status,
            records,
            counters: Counters(counters),
            stderr: lines.join("\n"),
        })
    }
}

fn is_ready_line(l: &str) -> bool {
    // tracing's text format: `... INFO node_monitor::daemon: ready attachments=[...]`.
    l.contains(": ready")
}

/// Runs `node-monitor ARGS...` to completion (bounded) in `ns`; returns (status, stdout, stderr).
pub(crate) fn run_cli(ns: Option<&Netns>, args: &[&str]) -> (ExitStatus, String, String) {
    let mut cmd = match ns {
        Some(ns) => ns.nsenter(BIN),
        None => {
            let mut c = Command::new(BIN);
            c.stdin(Stdio::null());
            c
        }
    };
    cmd.args(args).env("NO_COLOR", "1");
    let out = output_with_timeout(cmd, Duration::from_secs(20)).expect("run node-monitor");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        strip_ansi(&String::from_utf8_lossy(&out.stderr)),
    )
}

/// Fails with the daemon's stderr as context.
pub(crate) fn context<T>(r: anyhow::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e:#}"))
}

/// Scrapes the daemon's /metrics (from inside `ns`).
pub(crate) fn scrape(ns: &Netns, d: &Daemon) -> String {
    let (status, body) =
        http_get(ns, d.metrics_addr, "/metrics").unwrap_or_else(|e| panic!("scrape: {e:#}"));
    assert_eq!(status, 200, "GET /metrics: {body}");
    body
}
