//! Helpers for the end-to-end tier (tests/e2e*.rs): run the real `node-monitor` daemon in a
//! lab namespace, collect its stdout records (ECS JSON lines of the default stdout sink) and
//! its stderr log, stop it with SIGTERM and parse the final counters line (the last line of
//! stderr); scrape its metrics endpoint; real TCP/UDP peers with explicit source ports.
//!
//! Every wait here is bounded in time, every server loop in count and time.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, ErrorKind, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU16, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use node_monitor_common::GroupStats;
use node_monitor_lab::{Child, Netns, output_with_timeout};
use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};

/// The daemon binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_node-monitor");
/// How long the daemon may take to log `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the daemon may take to exit after SIGTERM.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Fails (never skips) unless we are root and every tool is on PATH.
pub fn require_root_and_tools(tools: &[&str]) {
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
pub struct Daemon {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    /// The metrics endpoint (inside the daemon's namespace).
    pub metrics_addr: SocketAddr,
}

/// What a daemon printed, after it exited.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// Every stdout line, parsed (ECS documents: alerts and sampled flows).
    pub records: Vec<Value>,
    /// The final `{"type":"counters",...}` line (the last line of stderr).
    pub counters: Counters,
    /// stderr without the counters line.
    pub stderr: String,
}

/// A metrics port of its own for every daemon a test process starts (each daemon runs in
/// its lab's node namespace, so these never collide with anything outside the lab).
pub fn next_metrics_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    19_630 + NEXT.fetch_add(1, Ordering::Relaxed) % 10_000
}

impl Daemon {
    /// `node-monitor run --iface eth0 --pin-dir PIN --metrics-addr 127.0.0.1:PORT ARGS...` in
    /// `ns` (through `nsenter`, so that it sees the host's bpffs); waits until it logs
    /// `ready`. PORT is fresh for every daemon unless ARGS give `--metrics-addr`.
    pub fn start(ns: &Netns, pin: &Path, args: &[&str]) -> anyhow::Result<Daemon> {
        Daemon::start_on(ns, pin, &["eth0"], args)
    }

    /// As [`Daemon::start`], with `--iface` for each of `ifaces` (names or globs).
    pub fn start_on(
        ns: &Netns,
        pin: &Path,
        ifaces: &[&str],
        args: &[&str],
    ) -> anyhow::Result<Daemon> {
        let mut cmd = ns.nsenter(BIN);
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

    pub fn stderr_lines(&self) -> Vec<String> {
        self.err.lock().unwrap().clone()
    }

    /// The daemon's process id (`nsenter` execs it: no fork for a network namespace).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits (bounded) until some stderr line satisfies `pred`.
    pub fn wait_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
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

    pub fn stderr(&self) -> String {
        self.stderr_lines().join("\n")
    }

    /// The stdout records so far (parsed; lines that are not JSON fail the test).
    pub fn records(&self) -> Vec<Value> {
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
    pub fn wait_records(&self, timeout: Duration, pred: impl Fn(&[Value]) -> bool) -> bool {
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
    pub fn stop(mut self) -> anyhow::Result<Finished> {
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
    // tracing's text format: `... INFO node_monitor::run: ready attachments=[...]`.
    l.contains(": ready")
}

/// The final counters line.
#[derive(Debug, Clone)]
pub struct Counters(pub Value);

/// One (group, protocol, verdict) entry of the counters line: the kernel's counters.
pub type GroupCounts = GroupStats;

fn group_counts_from_json(v: &Value) -> GroupCounts {
    serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("counters entry is not a full set of counters ({e}): {v}"))
}

/// Field-wise difference of two readings (panics if any counter went down).
pub fn counts_minus(after: &GroupCounts, before: &GroupCounts) -> GroupCounts {
    let d = |a: u64, b: u64, k: &str| {
        a.checked_sub(b)
            .unwrap_or_else(|| panic!("counter {k} went down: {b} -> {a}"))
    };
    GroupCounts {
        packets: d(after.packets, before.packets, "packets"),
        bytes: d(after.bytes, before.bytes, "bytes"),
        new_conns: d(after.new_conns, before.new_conns, "new_conns"),
        would_drop: d(after.would_drop, before.would_drop, "would_drop"),
        dropped: d(after.dropped, before.dropped, "dropped"),
        events: d(after.events, before.events, "events"),
        lost_rate_limited: d(
            after.lost_rate_limited,
            before.lost_rate_limited,
            "lost_rate_limited",
        ),
        lost_ringbuf_full: d(
            after.lost_ringbuf_full,
            before.lost_ringbuf_full,
            "lost_ringbuf_full",
        ),
        sampled_out: d(after.sampled_out, before.sampled_out, "sampled_out"),
    }
}

impl Counters {
    /// Every entry, keyed by (group, protocol, verdict).
    pub fn groups(&self) -> BTreeMap<(String, String, String), GroupCounts> {
        let mut m = BTreeMap::new();
        for g in self.0["groups"]
            .as_array()
            .unwrap_or_else(|| panic!("counters line without groups: {}", self.0))
        {
            let key = (
                g["group"].as_str().unwrap().to_owned(),
                g["protocol"].as_str().unwrap().to_owned(),
                g["verdict"].as_str().unwrap().to_owned(),
            );
            assert!(
                m.insert(key.clone(), group_counts_from_json(g)).is_none(),
                "duplicate counters entry {key:?}"
            );
        }
        m
    }

    /// One entry; all zeros when absent (the daemon leaves out all-zero entries).
    pub fn get(&self, group: &str, protocol: &str, verdict: &str) -> GroupCounts {
        self.groups()
            .get(&(group.to_owned(), protocol.to_owned(), verdict.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    pub fn userspace(&self, k: &str) -> u64 {
        self.0["userspace"][k]
            .as_u64()
            .unwrap_or_else(|| panic!("no userspace.{k} in {}", self.0))
    }

    /// One sink's entry `{sink, kind, sent, dropped}`.
    pub fn sink(&self, name: &str) -> Value {
        self.0["sinks"]
            .as_array()
            .unwrap_or_else(|| panic!("counters line without sinks: {}", self.0))
            .iter()
            .find(|s| s["sink"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no sink {name} in {}", self.0))
    }

    /// Records a sink delivered.
    pub fn sink_sent(&self, name: &str) -> u64 {
        self.sink(name)["sent"]
            .as_u64()
            .unwrap_or_else(|| panic!("sink {name} without sent: {}", self.0))
    }

    /// Records a sink dropped, all reasons together (`dropped` is `{reason: n}`).
    pub fn sink_dropped(&self, name: &str) -> u64 {
        let d = &self.sink(name)["dropped"];
        match d {
            Value::Object(m) => m.values().map(|v| v.as_u64().unwrap_or(u64::MAX)).sum(),
            Value::Number(n) => n.as_u64().unwrap_or(u64::MAX),
            other => panic!("sink {name}: dropped is {other}"),
        }
    }

    /// Events withheld by the rate limit, all entries together.
    pub fn total_rate_limited(&self) -> u64 {
        self.groups().values().map(|c| c.lost_rate_limited).sum()
    }

    /// The invariants that hold for every entry of any run: flagged = emitted + counted
    /// losses; in monitor mode every denied packet is a would-drop, in enforce mode a drop.
    pub fn check_invariants(&self) {
        for ((g, p, v), c) in self.groups() {
            let what = format!("{g}/{p}/{v}: {c:?}");
            assert!(c.packets >= c.new_conns, "{what}");
            if v == "denied" {
                assert_eq!(
                    c.new_conns,
                    c.events + c.lost_rate_limited + c.lost_ringbuf_full,
                    "denied: new_conns == events + losses; {what}"
                );
                assert_eq!(c.would_drop + c.dropped, c.packets, "{what}");
                assert_eq!(c.sampled_out, 0, "{what}");
            } else {
                // Allowed connections of a sweep-watched group (nodeport) are all reported,
                // under the source's token bucket, so they can be rate-limited too.
                assert_eq!(
                    c.new_conns,
                    c.events + c.sampled_out + c.lost_rate_limited + c.lost_ringbuf_full,
                    "allowed: new_conns == events + sampled_out + losses; {what}"
                );
                assert_eq!(c.would_drop + c.dropped, 0, "{what}");
                if g != "nodeport" {
                    assert_eq!(c.lost_rate_limited, 0, "{what}");
                }
            }
        }
        assert_eq!(self.userspace("events_malformed"), 0, "{}", self.0);
        for s in self.0["sinks"]
            .as_array()
            .unwrap_or_else(|| panic!("counters line without sinks: {}", self.0))
        {
            let name = s["sink"].as_str().expect("sink name");
            assert_eq!(
                self.sink_dropped(name),
                0,
                "sink {name} dropped: {}",
                self.0
            );
        }
    }
}

/// Runs `node-monitor ARGS...` to completion (bounded) in `ns`; returns (status, stdout, stderr).
pub fn run_cli(ns: Option<&Netns>, args: &[&str]) -> (ExitStatus, String, String) {
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

// ---------------------------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------------------------

fn socket_for(dst: &SocketAddr, ty: Type, proto: Protocol) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(*dst), ty, Some(proto))?;
    s.set_reuse_address(true)?;
    Ok(s)
}

/// How a TCP connect ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOutcome {
    Connected,
    Refused,
    TimedOut,
    Other(ErrorKind),
}

/// A TCP connect from `src` (explicit port) to `dst` inside `ns`, at most `timeout`; on
/// success sends a line and closes.
pub fn tcp_connect(ns: &Netns, src: SocketAddr, dst: SocketAddr, timeout: Duration) -> TcpOutcome {
    ns.run(move || {
        let s = socket_for(&dst, Type::STREAM, Protocol::TCP).expect("tcp socket");
        s.bind(&src.into())
            .unwrap_or_else(|e| panic!("bind {src}: {e}"));
        match s.connect_timeout(&dst.into(), timeout) {
            Ok(()) => {
                let mut st: std::net::TcpStream = s.into();
                let _ = st.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let _ = st.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 256];
                let _ = st.read(&mut buf);
                TcpOutcome::Connected
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => TcpOutcome::Refused,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                TcpOutcome::TimedOut
            }
            Err(e) => TcpOutcome::Other(e.kind()),
        }
    })
    .expect("run in netns")
}

/// How a UDP probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpOutcome {
    Reply(Vec<u8>),
    Refused,
    Silence,
    Other(ErrorKind),
}

/// One UDP datagram from `src` (explicit port) to `dst` inside `ns`; waits at most `wait`
/// for a reply or an ICMP error.
pub fn udp_probe(ns: &Netns, src: SocketAddr, dst: SocketAddr, wait: Duration) -> UdpOutcome {
    ns.run(move || {
        let s = socket_for(&dst, Type::DGRAM, Protocol::UDP).expect("udp socket");
        s.bind(&src.into())
            .unwrap_or_else(|e| panic!("bind {src}: {e}"));
        s.connect(&dst.into()).expect("udp connect");
        let s: UdpSocket = s.into();
        s.set_read_timeout(Some(wait)).expect("timeout");
        if let Err(e) = s.send(b"probe") {
            return UdpOutcome::Other(e.kind());
        }
        let mut buf = [0u8; 512];
        match s.recv(&mut buf) {
            Ok(n) => UdpOutcome::Reply(buf[..n].to_vec()),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => UdpOutcome::Refused,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                UdpOutcome::Silence
            }
            Err(e) => UdpOutcome::Other(e.kind()),
        }
    })
    .expect("run in netns")
}

/// A server thread that stops by itself (count and time bounded) or when dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<usize>>,
}

impl Server {
    /// Stops the server; returns how many connections or datagrams it served.
    pub fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().map_or(0, |h| h.join().unwrap_or(0))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// How long a server lives at most.
const SERVER_LIFETIME: Duration = Duration::from_secs(60);

/// TCP listeners on `addrs` inside `ns` (bound before this returns) answering each
/// connection with a small HTTP response; serves at most `max` connections.
pub fn tcp_server(ns: &Netns, addrs: &[SocketAddr], max: usize) -> Server {
    let addrs = addrs.to_vec();
    let listeners = ns
        .run(move || {
            addrs
                .iter()
                .map(|a| TcpListener::bind(a).unwrap_or_else(|e| panic!("listen {a}: {e}")))
                .collect::<Vec<_>>()
        })
        .expect("run in netns");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::spawn(move || {
        for l in &listeners {
            l.set_nonblocking(true).unwrap();
        }
        let deadline = Instant::now() + SERVER_LIFETIME;
        let mut served = 0;
        while served < max && Instant::now() < deadline && !flag.load(Ordering::Relaxed) {
            let mut idle = true;
            for l in &listeners {
                if let Ok((mut s, _)) = l.accept() {
                    idle = false;
                    served += 1;
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(
                        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                    );
                }
            }
            if idle {
                thread::sleep(Duration::from_millis(5));
            }
        }
        served
    });
    Server {
        stop,
        handle: Some(handle),
    }
}

/// UDP sockets on `addrs` inside `ns` that echo every datagram (at most `max`).
pub fn udp_echo(ns: &Netns, addrs: &[SocketAddr], max: usize) -> Server {
    let socks = udp_bind(ns, addrs);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::spawn(move || {
        for s in &socks {
            s.set_nonblocking(true).unwrap();
        }
        let deadline = Instant::now() + SERVER_LIFETIME;
        let mut served = 0;
        while served < max && Instant::now() < deadline && !flag.load(Ordering::Relaxed) {
            let mut idle = true;
            for s in &socks {
                let mut buf = [0u8; 1500];
                if let Ok((n, peer)) = s.recv_from(&mut buf) {
                    idle = false;
                    served += 1;
                    let _ = s.send_to(&buf[..n], peer);
                }
            }
            if idle {
                thread::sleep(Duration::from_millis(5));
            }
        }
        served
    });
    Server {
        stop,
        handle: Some(handle),
    }
}

/// UDP sockets bound on `addrs` inside `ns` that never answer (keep them alive).
pub fn udp_bind(ns: &Netns, addrs: &[SocketAddr]) -> Vec<UdpSocket> {
    let addrs = addrs.to_vec();
    ns.run(move || {
        addrs
            .iter()
            .map(|a| UdpSocket::bind(a).unwrap_or_else(|e| panic!("bind {a}: {e}")))
            .collect()
    })
    .expect("run in netns")
}

/// `ip` address + port.
pub fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

// ---------------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------------

/// The embedded default catalog with edits: `(from, to)` replacements (each must match)
/// and extra groups appended to the `groups:` map.
pub fn catalog_with(replacements: &[(&str, &str)], extra_groups: &str) -> String {
    let mut y = node_monitor::config::DEFAULT_CONFIG_YAML.to_owned();
    for (from, to) in replacements {
        assert!(
            y.contains(from),
            "the default config no longer contains {from:?}"
        );
        y = y.replacen(from, to, 1);
    }
    if !extra_groups.is_empty() {
        let at = y
            .find("\nsampling:")
            .expect("the default config has a sampling section");
        y.insert_str(at + 1, extra_groups);
    }
    y
}

/// Writes `text` to a fresh temporary file that is removed on drop.
pub struct TempFile {
    pub path: std::path::PathBuf,
}

impl TempFile {
    pub fn new(tag: &str, text: &str) -> TempFile {
        use std::sync::atomic::AtomicU32;
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "nm-e2e-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).expect("write temp file");
        TempFile { path }
    }

    pub fn as_str(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs `curl ARGS...` in `ns` (bounded) and returns (success, stdout, stderr).
pub fn curl(ns: &Netns, args: &[&str]) -> (bool, String, String) {
    let mut cmd = ns.command("curl");
    cmd.args(args);
    let out = output_with_timeout(cmd, Duration::from_secs(10)).expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Fails with the daemon's stderr as context.
pub fn context<T>(r: anyhow::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e:#}"))
}

/// A fresh temporary directory, removed with its contents on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::AtomicU32;
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "nm-e2e-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Writes `text` to `path` the way a ConfigMap update lands: a new file in the same
/// directory, renamed over the old one (one atomic change).
pub fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-new");
    std::fs::write(&tmp, text).expect("write the new file");
    std::fs::rename(&tmp, path).expect("rename over the old file");
}

/// `GET path` on `addr` from inside `ns` (HTTP/1.1, `Connection: close`), at most 5 s.
/// Returns (status, body).
pub fn http_get(ns: &Netns, addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let path = path.to_owned();
    ns.run(move || -> anyhow::Result<(u16, String)> {
        let t = Duration::from_secs(5);
        let mut s = std::net::TcpStream::connect_timeout(&addr, t)
            .with_context(|| format!("connect {addr}"))?;
        s.set_read_timeout(Some(t))?;
        s.set_write_timeout(Some(t))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: text/plain\r\n\r\n"
        )?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).context("read the response")?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow!("no header end in {text:?}"))?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("bad status line in {head:?}"))?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Ok((status, body))
    })?
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// The sum of the samples of `name` (Prometheus text format) whose labels include every
/// `(key, value)` of `labels`; None when no sample matches.
pub fn metric_value(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (n, lbls) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let ok = labels
            .iter()
            .all(|(k, v)| lbls.split(',').any(|p| p == format!("{k}=\"{v}\"")));
        if ok && let Ok(v) = value.parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Scrapes the daemon's /metrics (from inside `ns`).
pub fn scrape(ns: &Netns, d: &Daemon) -> String {
    let (status, body) =
        http_get(ns, d.metrics_addr, "/metrics").unwrap_or_else(|e| panic!("scrape: {e:#}"));
    assert_eq!(status, 200, "GET /metrics: {body}");
    body
}
