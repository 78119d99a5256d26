//! `cargo xtask demo`: the release daemon in the lab's node namespace, a scripted attack
//! and access scenario from the control-plane peer and from outside, then a summary of
//! what the daemon reported. Every command has a timeout; the lab is removed at the end
//! (and on any error or panic, by its guards).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead as _, BufReader, Read},
    path::{Path, PathBuf},
    process::Stdio,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use node_monitor_lab::{self as lab, BpfPinDir, Child, Lab, Netns, addr};
use serde_json::Value;

use crate::{setup, tasks};

/// Options of `cargo xtask demo`.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Skip setup and the release build (use the binary as it is).
    pub no_build: bool,
    /// The daemon binary; default `<target>/release/node-monitor`.
    pub daemon: Option<PathBuf>,
}

/// What a kubelet answers an anonymous request with.
const KUBELET_REPLY: &str = "printf 'HTTP/1.1 401 Unauthorized\\r\\nContent-Type: text/plain\\r\\nContent-Length: 12\\r\\nConnection: close\\r\\n\\r\\nUnauthorized'";
/// What the demo NodePort Service answers.
const NODEPORT_REPLY: &str = "printf 'HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: 12\\r\\nConnection: close\\r\\n\\r\\nhello world\\n'";
const KUBELET_PORT: u16 = 10250;
const NODEPORT: u16 = 30080;
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Events echoed live per step.
const LIVE_LINES: usize = 4;

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => root.join(d),
        None => root.join("target"),
    }
}

fn banner(text: &str) {
    println!("\n=== {text}");
}

/// Waits (at most 5 s) until TCP `ports` listen in `ns`.
fn wait_listening(ns: &Netns, ports: &[u16]) -> anyhow::Result<()> {
    let mut last = String::new();
    for _ in 0..50 {
        let out = ns.exec_timeout(Duration::from_secs(5), "ss", &["-Htln"])?;
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if ports.iter().all(|p| last.contains(&format!(":{p} "))) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "listeners on {ports:?} did not come up in {}: {last}",
        ns.name
    )
}

/// Reads lines from `pipe` on a thread; each line goes to `tx`.
fn line_reader(pipe: impl Read + Send + 'static, tx: mpsc::Sender<String>) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

/// Flattens nested objects into dotted keys, so that `{"a":{"b":1}}` and `{"a.b":1}`
/// read the same.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

/// The first of `keys` present, as text; `-` when none is.
fn field(flat: &BTreeMap<String, Value>, keys: &[&str]) -> String {
    keys.iter()
        .find_map(|k| flat.get(*k))
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| "-".to_owned())
}

const GROUP: &[&str] = &[
    "node_monitor.group",
    "node_monitor.port_group",
    "group",
    "port_group",
];
const VERDICT: &[&str] = &["node_monitor.verdict", "verdict"];
const ANSWER: &[&str] = &["node_monitor.answer", "answer"];
const SRC: &[&str] = &["source.ip", "src_ip", "src"];
const DST: &[&str] = &["destination.ip", "dst_ip", "dst"];
const DPORT: &[&str] = &["destination.port", "dst_port", "dport"];

/// The daemon's closing counters line (`{"type":"counters",...}`) as a table.
fn counters_table(v: &Value) -> String {
    let mut out = String::from("kernel counters (per group, protocol, verdict):\n");
    out.push_str(&format!(
        "  {:<18} {:<5} {:<8} {:>8} {:>9} {:>7} {:>11} {:>12}\n",
        "group", "proto", "verdict", "packets", "new conns", "events", "would drop", "losses"
    ));
    for g in v["groups"].as_array().into_iter().flatten() {
        let n = |k: &str| g[k].as_u64().unwrap_or(0);
        out.push_str(&format!(
            "  {:<18} {:<5} {:<8} {:>8} {:>9} {:>7} {:>11} {:>12}\n",
            g["group"].as_str().unwrap_or("-"),
            g["protocol"].as_str().unwrap_or("-"),
            g["verdict"].as_str().unwrap_or("-"),
            n("packets"),
            n("new_conns"),
            n("events"),
            n("would_drop"),
            n("lost_rate_limited") + n("lost_ringbuf_full"),
        ));
    }
    if let Some(r) = v["reasons"].as_object().filter(|r| !r.is_empty()) {
        let parts: Vec<String> = r.iter().map(|(k, n)| format!("{k}={n}")).collect();
        out.push_str(&format!(
            "  packets passed unclassified, by reason: {}\n",
            parts.join(", ")
        ));
    }
    out
}

fn is_counters(v: &Value) -> bool {
    v["type"] == "counters"
}

/// One line per reported event, as it arrives.
fn compact(line: &str) -> String {
    match serde_json::from_str::<Value>(line) {
        Ok(v) if is_counters(&v) => "counters summary (shown below)".to_owned(),
        Ok(v) => {
            let mut flat = BTreeMap::new();
            flatten("", &v, &mut flat);
            format!(
                "group={} verdict={} answer={} {} -> {}:{}",
                field(&flat, GROUP),
                field(&flat, VERDICT),
                field(&flat, ANSWER),
                field(&flat, SRC),
                field(&flat, DST),
                field(&flat, DPORT)
            )
        }
        Err(_) => format!("(not JSON) {line}"),
    }
}

/// The readable summary of the daemon's stdout.
pub fn summarize(lines: &[String]) -> String {
    let mut out = String::new();
    let mut counts: BTreeMap<(String, String, String, String), usize> = BTreeMap::new();
    let mut families: BTreeMap<String, usize> = BTreeMap::new();
    let mut sources: BTreeMap<String, usize> = BTreeMap::new();
    let mut samples = Vec::new();
    let mut sample_groups = BTreeSet::new();
    let mut not_json = 0usize;
    let mut json = 0usize;
    let mut counters = None;
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            not_json += 1;
            continue;
        };
        if is_counters(&v) {
            counters = Some(v);
            continue;
        }
        json += 1;
        let mut flat = BTreeMap::new();
        flatten("", &v, &mut flat);
        let group = field(&flat, GROUP);
        *counts
            .entry((
                field(&flat, &["rule.id"]),
                group.clone(),
                field(&flat, VERDICT),
                field(&flat, ANSWER),
            ))
            .or_default() += 1;
        *families
            .entry(field(&flat, &["network.type", "family"]))
            .or_default() += 1;
        *sources.entry(field(&flat, SRC)).or_default() += 1;
        if samples.len() < 3 && sample_groups.insert(group) {
            samples.push(v);
        }
    }
    out.push_str(&format!("{json} records ({not_json} other lines)\n"));
    if json == 0 {
        out.push_str("the daemon reported nothing\n");
        return out;
    }
    let w = counts
        .keys()
        .map(|(_, g, _, _)| g.len())
        .max()
        .unwrap_or(5)
        .max(5);
    out.push_str(&format!(
        "  {:<8}  {:<w$}  {:<10}  {:<10}  count\n",
        "rule", "group", "verdict", "answer"
    ));
    for ((r, g, v, a), n) in &counts {
        out.push_str(&format!("  {r:<8}  {g:<w$}  {v:<10}  {a:<10}  {n}\n"));
    }
    let join = |m: &BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.push_str(&format!("  by network.type: {}\n", join(&families)));
    out.push_str(&format!("  by source.ip:    {}\n", join(&sources)));
    if let Some(c) = &counters {
        out.push_str(&counters_table(c));
    }
    out.push_str("sample events:\n");
    for s in samples {
        out.push_str(&serde_json::to_string_pretty(&s).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// What a curl exit code means, for the narration.
fn curl_meaning(code: i32) -> &'static str {
    match code {
        0 => "got an answer",
        7 => "connection refused",
        28 => "timed out",
        35 => "TLS handshake failed",
        52 => "empty reply",
        56 => "connection reset",
        _ => "failed",
    }
}

struct Step<'a> {
    title: &'a str,
    from: &'a Netns,
    role: &'a str,
    program: &'a str,
    args: Vec<String>,
}

fn run_step(n: usize, step: &Step<'_>) -> anyhow::Result<()> {
    banner(&format!("step {n}: {}", step.title));
    println!("$ [{}] {} {}", step.role, step.program, step.args.join(" "));
    let args: Vec<&str> = step.args.iter().map(String::as_str).collect();
    let out = step.from.exec_timeout(STEP_TIMEOUT, step.program, &args)?;
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if step.program == "curl" {
        let body = stdout.lines().next().unwrap_or("").trim();
        println!(
            "  curl exit {code} ({}){}",
            curl_meaning(code),
            if body.is_empty() {
                String::new()
            } else {
                format!(": {body}")
            }
        );
    } else {
        for l in stdout
            .lines()
            .filter(|l| l.contains("/tcp") || l.starts_with("Not shown") || l.contains("scanned"))
        {
            println!("  {}", l.trim());
        }
        if !out.status.success() {
            println!(
                "  {} exit {code}: {}",
                step.program,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

/// Runs the demo (see the module doc).
pub fn run(root: &Path, opts: &Options) -> anyhow::Result<()> {
    if !opts.no_build {
        setup::run(root)?;
        tasks::build_release(root)?;
    }
    let daemon = opts
        .daemon
        .clone()
        .unwrap_or_else(|| target_dir(root).join("release/node-monitor"));
    if !daemon.is_file() {
        bail!(
            "{} not found: build it with `cargo xtask build`",
            daemon.display()
        );
    }
    let daemon = daemon.to_str().context("non-UTF-8 daemon path")?.to_owned();
    let started = Instant::now();

    banner("building the lab (network namespaces; nothing touches the root namespace)");
    let lab = Lab::new()?;
    for ns in lab.namespaces() {
        println!("  {}", ns.name);
    }
    println!(
        "  node {} / {}, control plane {} / {}, outside {} / {} (routed)",
        addr::NODE_V4,
        addr::NODE_V6,
        addr::CP_V4,
        addr::CP_V6,
        addr::OUTSIDE_V4,
        addr::OUTSIDE_V6
    );
    let pins = BpfPinDir::new("demo")?;

    // Listeners in the node namespace: a kubelet stand-in (TLS, answers 401 like an
    // anonymous-auth-off kubelet) and one NodePort Service. 10255, 2379 and 2380 stay
    // closed. Ended by their guards (and by the namespace's removal).
    let mut kubelet = lab.node.command("ncat");
    kubelet
        .args([
            "--ssl",
            "-lk",
            &KUBELET_PORT.to_string(),
            "-c",
            KUBELET_REPLY,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _kubelet = Child::spawn(&mut kubelet)?;
    let mut nodeport = lab.node.command("ncat");
    nodeport
        .args(["-lk", &NODEPORT.to_string(), "-c", NODEPORT_REPLY])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _nodeport = Child::spawn(&mut nodeport)?;
    wait_listening(&lab.node, &[KUBELET_PORT, NODEPORT])?;
    println!(
        "  listening in node: {KUBELET_PORT}/tcp (kubelet, TLS), {NODEPORT}/tcp (a NodePort Service)"
    );

    banner("starting node-monitor in the node namespace");
    // nsenter keeps the host's mounts, so the pins land in the shared bpffs (`ip netns
    // exec` would hide it behind a fresh /sys).
    let mut cmd = lab.node.nsenter(&daemon);
    let pin_dir = pins.path.to_str().context("non-UTF-8 pin dir")?;
    cmd.args(["run", "--iface", lab::NODE_IFACE, "--pin-dir", pin_dir])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    println!(
        "$ [node] {} run --iface {} --pin-dir {pin_dir}",
        daemon,
        lab::NODE_IFACE
    );
    let mut d = Child::spawn(&mut cmd)?;
    let (out_tx, out_rx) = mpsc::channel();
    let (err_tx, err_rx) = mpsc::channel();
    if let Some(p) = d.take_stdout() {
        line_reader(p, out_tx);
    }
    if let Some(p) = d.take_stderr() {
        line_reader(p, err_tx);
    }
    let mut lines: Vec<String> = Vec::new();
    let mut errs: Vec<String> = Vec::new();
    // Echoes at most LIVE_LINES events per step as they arrive (a sweep makes hundreds).
    let drain = |lines: &mut Vec<String>, errs: &mut Vec<String>| {
        errs.extend(err_rx.try_iter());
        let mut shown = 0;
        let mut more = 0;
        for l in out_rx.try_iter() {
            if shown < LIVE_LINES {
                println!("  [node-monitor] {}", compact(&l));
                shown += 1;
            } else {
                more += 1;
            }
            lines.push(l);
        }
        if more > 0 {
            println!("  [node-monitor] ... and {more} more");
        }
    };
    let ready_by = Instant::now() + READY_TIMEOUT;
    loop {
        drain(&mut lines, &mut errs);
        if let Some(status) = d.try_wait()? {
            thread::sleep(Duration::from_millis(100));
            drain(&mut lines, &mut errs);
            bail!(
                "node-monitor exited early ({status}); its stderr:\n{}",
                tail(&errs, 30)
            );
        }
        // The daemon pins each link only once it is attached, egress last: that pin
        // means every program is in place and every map is written.
        if pins
            .path
            .join("links")
            .join(format!("tc-egress@{}", lab::NODE_IFACE))
            .exists()
        {
            println!(
                "  ready: attached and pinned ({})",
                pins.entries().join(", ")
            );
            break;
        }
        if Instant::now() >= ready_by {
            bail!(
                "node-monitor did not attach within {READY_TIMEOUT:?}; its stderr:\n{}",
                tail(&errs, 30)
            );
        }
        thread::sleep(Duration::from_millis(100));
    }

    let node4 = addr::NODE_V4.to_string();
    let node6 = addr::NODE_V6.to_string();
    let steps = [
        Step {
            title: "allowed kubelet access from the control plane",
            from: &lab.cp,
            role: "cp",
            program: "curl",
            args: vec![
                "-sk".into(),
                "--max-time".into(),
                "2".into(),
                format!("https://{node4}:{KUBELET_PORT}/"),
            ],
        },
        Step {
            title: "kubelet access from outside (not allowed)",
            from: &lab.outside,
            role: "outside",
            program: "curl",
            args: vec![
                "-sk".into(),
                "--max-time".into(),
                "2".into(),
                format!("https://{node4}:{KUBELET_PORT}/"),
            ],
        },
        Step {
            title: "probe of the kubelet read-only port 10255 (closed) from outside",
            from: &lab.outside,
            role: "outside",
            program: "curl",
            args: vec![
                "-s".into(),
                "--max-time".into(),
                "2".into(),
                format!("http://{node4}:10255/pods"),
            ],
        },
        Step {
            title: "etcd probe from outside (SYN scan of 2379, 2380)",
            from: &lab.outside,
            role: "outside",
            program: "nmap",
            args: [
                "-Pn",
                "-sS",
                "-n",
                "--max-retries",
                "1",
                "--host-timeout",
                "10s",
                "-p",
                "2379,2380",
                &node4,
            ]
            .map(String::from)
            .to_vec(),
        },
        Step {
            title: "NodePort sweep from outside (SYN scan of 30000-30100)",
            from: &lab.outside,
            role: "outside",
            program: "nmap",
            args: [
                "-Pn",
                "-sS",
                "-n",
                "--max-retries",
                "1",
                "--host-timeout",
                "10s",
                "-p",
                "30000-30100",
                &node4,
            ]
            .map(String::from)
            .to_vec(),
        },
        Step {
            title: "kubelet access from outside over IPv6",
            from: &lab.outside,
            role: "outside",
            program: "curl",
            args: vec![
                "-gsk".into(),
                "--max-time".into(),
                "2".into(),
                format!("https://[{node6}]:{KUBELET_PORT}/"),
            ],
        },
    ];
    for (i, step) in steps.iter().enumerate() {
        run_step(i + 1, step)?;
        thread::sleep(Duration::from_millis(300)); // let its events arrive
        drain(&mut lines, &mut errs);
    }

    banner("stopping node-monitor (SIGTERM)");
    thread::sleep(Duration::from_millis(500)); // let the last events reach stdout
    let status = d.stop(Duration::from_secs(5))?;
    // The pipes close when the daemon exits; wait a bounded time for the readers.
    let until = Instant::now() + Duration::from_secs(2);
    let mut late = Vec::new();
    while Instant::now() < until {
        match out_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) => late.push(l),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    errs.extend(err_rx.try_iter());
    for l in late.iter().take(LIVE_LINES) {
        println!("  [node-monitor] {}", compact(l));
    }
    if late.len() > LIVE_LINES {
        println!("  [node-monitor] ... and {} more", late.len() - LIVE_LINES);
    }
    lines.extend(late);
    println!("  node-monitor exited: {status}");
    if !status.success() {
        println!("  its stderr (last lines):\n{}", tail(&errs, 20));
    }

    banner("what node-monitor reported");
    // The daemon's closing counters line is the last JSON object on its stderr.
    if let Some(c) = errs
        .iter()
        .rev()
        .find(|l| l.contains("\"type\":\"counters\""))
    {
        lines.push(c.clone());
    }
    print!("{}", summarize(&lines));

    banner("tearing down");
    drop(d);
    drop(_kubelet);
    drop(_nodeport);
    drop(pins);
    let names: Vec<String> = lab.namespaces().iter().map(|n| n.name.clone()).collect();
    drop(lab);
    let left: Vec<String> = lab::list_namespaces()?
        .into_iter()
        .filter(|n| names.contains(n))
        .collect();
    if left.is_empty() {
        println!(
            "  lab removed; demo took {:.1} s",
            started.elapsed().as_secs_f64()
        );
    } else {
        bail!("namespaces left behind: {left:?} (`cargo xtask lab down`)");
    }
    Ok(())
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reads_nested_and_dotted_fields() {
        let lines = vec![
            r#"{"node_monitor":{"group":"kubelet","verdict":"denied","answer":"accepted"},"source":{"ip":"203.0.113.2"},"network":{"type":"ipv4"}}"#.to_owned(),
            r#"{"node_monitor.group":"kubelet","node_monitor.verdict":"denied","node_monitor.answer":"accepted","source.ip":"203.0.113.2","network.type":"ipv6"}"#.to_owned(),
            "starting".to_owned(),
            r#"{"node_monitor":{"group":"etcd-client","verdict":"denied","answer":"refused"}}"#.to_owned(),
            r#"{"type":"counters","groups":[{"group":"kubelet","protocol":"tcp","verdict":"denied","packets":7,"new_conns":2,"events":2,"would_drop":7,"lost_rate_limited":0,"lost_ringbuf_full":0}],"reasons":{"not_ip":3}}"#.to_owned(),
        ];
        let s = summarize(&lines);
        assert!(s.contains("3 records (1 other lines)"), "{s}");
        assert!(s.contains("kubelet            tcp   denied          7         2       2           7            0"), "{s}");
        assert!(s.contains("by reason: not_ip=3"), "{s}");
        assert!(
            s.contains("-         kubelet      denied      accepted    2"),
            "{s}"
        );
        assert!(
            s.contains("-         etcd-client  denied      refused     1"),
            "{s}"
        );
        assert!(s.contains("ipv4: 1") && s.contains("ipv6: 1"), "{s}");
        assert!(
            compact(&lines[0])
                .starts_with("group=kubelet verdict=denied answer=accepted 203.0.113.2")
        );
    }

    #[test]
    fn empty_summary() {
        assert!(summarize(&[]).contains("reported nothing"));
    }
}
