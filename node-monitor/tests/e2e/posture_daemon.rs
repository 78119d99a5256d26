//! Issue 12 end to end, inside `run`: the daemon audits the node at start and every
//! `audit.interval_s`, and each run's findings come out of its stdout sink (ECS,
//! `event.kind: state`) and its /metrics; with the fake cluster's identity, etcd on a node
//! that is not a control-plane node and a NodePort-range listener that no Service owns are
//! findings, and `node-monitor firewall` prints the cluster's sets instead of refusing.

use std::{collections::BTreeSet, time::Duration};

use node_monitor::cluster::testing::objects::{node, service};
use node_monitor_lab::{BpfPinDir, Lab};
use serde_json::Value;

use crate::{
    common::{
        config::AUDIT_ON,
        daemon::{Daemon, context, run_cli, scrape},
        http::metric_value,
        peers::{TcpOutcome, sa, tcp_connect, tcp_server},
        temp::{TempDir, TempFile},
    },
    expect::alerts_of,
    fake_cluster::{FakeCluster, cp_1, worker_1},
    posture::{PODS, http_server},
    setup::{CONNECT_TIMEOUT, node as node_addr, outside, setup, test_config},
};

/// The test config's edits that turn the audit on, every 10 s, each run given 8 s.
const AUDIT_EVERY_10S: [(&str, &str); 3] = [
    AUDIT_ON,
    ("interval_s: 3600", "interval_s: 10"),
    ("timeout_s: 60 ", "timeout_s: 8 "),
];

/// A daemon auditing every 10 s with no cluster watched, on a config written to `file`
/// (returned too: it must outlive the daemon).
fn audit_daemon(lab: &Lab, pin: &BpfPinDir, file: &str) -> (TempFile, Daemon) {
    let text = test_config(
        &[
            AUDIT_EVERY_10S.as_slice(),
            &[("enabled: auto", "enabled: off")],
        ]
        .concat(),
    );
    let cfg = TempFile::new(file, &text);
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));
    (cfg, d)
}

/// A connection from outside, from source port `ports.0` to the node's port `ports.1`, ends
/// in `outcome` (asserted); true when the alert `rule` then reaches the daemon's stdout
/// within 2 s.
fn connect_and_alert(
    lab: &Lab,
    d: &Daemon,
    ports: (u16, u16),
    outcome: TcpOutcome,
    rule: &str,
) -> bool {
    assert_eq!(
        tcp_connect(
            &lab.outside,
            outside(ports.0, false),
            node_addr(ports.1, false),
            CONNECT_TIMEOUT
        ),
        outcome
    );
    d.wait_records(Duration::from_secs(2), |r| !alerts_of(r, rule).is_empty())
}

/// `node_monitor_audit_runs_total{result}` in a scrape.
fn runs(body: &str, result: &str) -> Option<f64> {
    metric_value(body, "node_monitor_audit_runs_total", &[("result", result)])
}

/// The findings the daemon printed so far: ECS documents of `event.kind: state`.
fn findings(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|v| v["event"]["kind"] == "state")
        .collect()
}

fn with_id<'a>(records: &'a [Value], id: &str) -> Vec<&'a Value> {
    findings(records)
        .into_iter()
        .filter(|v| v["rule"]["id"] == id)
        .collect()
}

/// A read-only kubelet port serving the pod list over plain HTTP: the daemon's first audit
/// (at start) reports it through the stdout sink and the metrics, and the next run, one
/// interval later, reports it again with a new event id (findings are state: re-sent). The
/// config file breaks on disk in between: the reload is rejected, and the next run audits
/// the config the daemon still runs (the audit process is handed its text, not the path).
#[test]
fn the_daemon_audits_at_start_and_every_interval() {
    let lab = setup();
    let pin = context(BpfPinDir::new("posture-daemon"));
    let _readonly = http_server(&lab.node, sa([0, 0, 0, 0], 10255), None, "200 OK", PODS);
    let (cfg, d) = audit_daemon(&lab, &pin, "posture-daemon.yaml");
    // Bounded: the first run starts with the daemon; the second 10 s later.
    let first = d.wait_records(Duration::from_secs(10), |r| {
        !with_id(r, "NM-2001").is_empty() && !with_id(r, "NM-2011").is_empty()
    });
    assert!(first, "no NM-2001 and NM-2011 on stdout:\n{}", d.stderr());
    let records = d.records();
    let doc = with_id(&records, "NM-2001")[0];
    assert_eq!(doc["event"]["dataset"], "node_monitor.audit");
    assert_eq!(doc["event"]["severity"], 4);
    assert_eq!(doc["rule"]["reference"], "CIS Kubernetes Benchmark 4.2.4");
    assert!(
        doc["node_monitor"]["finding"]["evidence"]
            .as_str()
            .unwrap()
            .starts_with("listening: 0.0.0.0:10255/tcp"),
        "{doc}"
    );
    let leak = with_id(&records, "NM-2011")[0];
    assert_eq!(leak["event"]["severity"], 5, "the pod list served: {leak}");

    let body = scrape(&lab.node, &d);
    assert_eq!(
        metric_value(
            &body,
            "node_monitor_audit_findings",
            &[("id", "NM-2001"), ("severity", "high")]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        metric_value(&body, "node_monitor_audit_last_run_success", &[]),
        Some(1.0),
        "{body}"
    );
    assert!(
        metric_value(&body, "node_monitor_audit_last_run_timestamp_seconds", &[])
            .is_some_and(|t| t > 1.7e9),
        "{body}"
    );
    // No cluster: the identity checks were skipped, and the log says why.
    assert!(
        metric_value(&body, "node_monitor_audit_checks_skipped", &[]).is_some_and(|n| n >= 1.0),
        "{body}"
    );
    assert!(
        d.stderr()
            .contains("identity: etcd-outside-the-control-plane and NodePort-owner checks skipped: the daemon watches no cluster"),
        "{}",
        d.stderr()
    );

    // The file breaks on disk: the reload is rejected and the daemon runs on.
    std::fs::write(cfg.as_str(), "groups: [\n").expect("rewrite the config file");
    assert!(
        d.wait_log(Duration::from_secs(5), |l| l
            .contains("config reload rejected")),
        "the broken file was not noticed: {}",
        d.stderr()
    );
    // The next run re-sends the finding, as a new event.
    let second = d.wait_records(Duration::from_secs(20), |r| {
        with_id(r, "NM-2001").len() >= 2
    });
    assert!(second, "no second run: {}", d.stderr());
    let records = d.records();
    let ids: BTreeSet<&str> = with_id(&records, "NM-2001")
        .iter()
        .map(|v| v["event"]["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.len() >= 2,
        "each run's document has its own id: {ids:?}"
    );
    let body = scrape(&lab.node, &d);
    assert!(runs(&body, "completed").is_some_and(|n| n >= 2.0), "{body}");
    assert_eq!(runs(&body, "failed"), Some(0.0), "{body}");
    drop(context(d.stop()));
}

/// With the fake cluster's identity: this node (198.51.100.1, worker-1) is not a
/// control-plane node and listens on the etcd client port, and something listens on NodePort
/// 30090 that no Service owns (30080 is owned): two findings, through the daemon's sink.
#[test]
fn identity_checks_in_the_daemon() {
    let lab = setup();
    let pin = context(BpfPinDir::new("posture-identity"));
    let cluster = FakeCluster::start(&lab.node, |api| {
        api.apply("nodes", worker_1("203.0.113.0/26"));
        api.apply("nodes", cp_1("203.0.113.64/26"));
        api.apply(
            "services",
            service("shop", "web", &[(80, 30080, "TCP")], "Cluster", &[]),
        );
    });
    let _etcd = tcp_server(&lab.node, &[sa([0, 0, 0, 0], 2379)], 1);
    let _owned = tcp_server(&lab.node, &[sa([0, 0, 0, 0], 30080)], 1);
    let _stray = tcp_server(&lab.node, &[sa([0, 0, 0, 0], 30090)], 1);
    let text = test_config(
        &[
            AUDIT_EVERY_10S.as_slice(),
            &[("enabled: auto", "enabled: on\n  node_name: worker-1")],
        ]
        .concat(),
    );
    let cfg = TempFile::new("posture-identity.yaml", &text);
    // The first run may come before the cache is synced (it then says the checks were
    // skipped); the run after it, 10 s later, has identity.
    let d = cluster.daemon(&lab.node, &pin, cfg.as_str(), |_| true);
    let seen = d.wait_records(Duration::from_secs(25), |r| {
        !with_id(r, "NM-2003").is_empty() && !with_id(r, "NM-2004").is_empty()
    });
    assert!(
        seen,
        "no NM-2003 and NM-2004; the daemon's audit log:\n{}",
        d.stderr_lines()
            .iter()
            .filter(|l| l.contains("posture"))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let records = d.records();
    let etcd = with_id(&records, "NM-2003")[0];
    assert_eq!(etcd["event"]["severity"], 4);
    let evidence = etcd["node_monitor"]["finding"]["evidence"]
        .as_str()
        .unwrap();
    assert!(
        evidence.contains("node worker-1") && evidence.contains("0.0.0.0:2379/tcp"),
        "{etcd}"
    );
    let stray: Vec<&str> = with_id(&records, "NM-2004")
        .iter()
        .map(|v| v["node_monitor"]["finding"]["evidence"].as_str().unwrap())
        .collect();
    assert!(
        stray.iter().all(|e| e.contains(":30090/tcp")),
        "only the port no Service owns: {stray:?}"
    );
    let body = scrape(&lab.node, &d);
    assert_eq!(
        metric_value(
            &body,
            "node_monitor_audit_findings",
            &[("id", "NM-2003"), ("severity", "high")]
        ),
        Some(1.0),
        "{body}"
    );
    drop(context(d.stop()));
    cluster.stop();
}

/// What `cmd` printed on stdout, once it has exited 0 within 30 s (its stderr in the panic).
fn stdout_of(cmd: std::process::Command) -> String {
    let out = context(node_monitor_lab::output_with_timeout(
        cmd,
        Duration::from_secs(30),
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `firewall` with a config whose allowlists use cluster sets: refused without a cluster
/// (the message says why), printed with the sets' addresses when the cluster is reachable.
#[test]
fn firewall_expands_cluster_sets_from_the_cluster() {
    let lab = setup();
    let text = test_config(&[(
        "  etcd-peer:\n    protocols: [tcp]\n    ports: [\"2380\"]\n    allow: [node-subnets]",
        "  etcd-peer:\n    protocols: [tcp]\n    ports: [\"2380\"]\n    allow: [control-plane-nodes, pod-cidrs]",
    )]);
    let cfg = TempFile::new("posture-firewall.yaml", &text);
    let (status, _, stderr) = run_cli(
        Some(&lab.node),
        &[
            "firewall",
            "--format",
            "iptables",
            "--iface",
            "eth0",
            "--config",
            cfg.as_str(),
        ],
    );
    assert!(!status.success(), "refused without a cluster");
    assert!(
        stderr.contains("etcd-peer: control-plane-nodes")
            && stderr.contains("the cluster could not be read (no cluster"),
        "{stderr}"
    );

    let cluster = FakeCluster::start(&lab.node, |api| {
        api.apply("nodes", cp_1("203.0.113.64/26"));
        api.apply(
            "nodes",
            node(
                "worker-1",
                &[("InternalIP", "198.51.100.1")],
                &["203.0.113.0/26"],
                &[],
            ),
        );
    });
    let print = |format: &str| -> String {
        let mut cmd = lab.node.nsenter(crate::common::daemon::BIN);
        cmd.args([
            "firewall",
            "--format",
            format,
            "--iface",
            "eth0",
            "--config",
            cfg.as_str(),
        ])
        .env("KUBECONFIG", cluster.kubeconfig.as_str());
        stdout_of(cmd)
    };
    let rules = print("iptables");
    let nft = print("nft");
    // Both load into the node's real netfilter, holders' names in their comments.
    let dir = TempDir::new("posture-firewall-rules");
    for (text, tool, args, file) in [
        (
            &rules,
            "iptables-restore",
            &["--noflush"][..],
            "rules.iptables",
        ),
        (&nft, "nft", &["-f"][..], "rules.nft"),
    ] {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        crate::posture::load(&lab.node, tool, args, &path);
    }
    let loaded = crate::posture::listing(&lab.node, "iptables-restore");
    assert!(
        loaded.contains("-s 198.51.100.2/32 -p tcp -m tcp --dport 2380 -m comment --comment \"etcd-peer allow node cp-1\" -j RETURN"),
        "{loaded}"
    );
    let loaded = crate::posture::listing(&lab.node, "nft");
    assert!(
        loaded.contains("198.51.100.2 comment \"node cp-1\""),
        "{loaded}"
    );
    assert!(
        rules.contains("#   control-plane-nodes = 198.51.100.2/32 (node cp-1)"),
        "{rules}"
    );
    for allow in [
        "--dport 2380 -s 198.51.100.2/32 -m comment --comment \"etcd-peer allow node cp-1\" -j RETURN",
        "--dport 2380 -s 203.0.113.0/26 -m comment --comment \"etcd-peer allow\" -j RETURN",
        "--dport 2380 -s 203.0.113.64/26 -m comment --comment \"etcd-peer allow\" -j RETURN",
    ] {
        assert!(rules.contains(allow), "missing {allow}:\n{rules}");
    }
    assert!(
        !rules.contains("--dport 2380 -s 198.51.100.1/32"),
        "the worker is not a control-plane node:\n{rules}"
    );
    cluster.stop();
}

/// A kubelet that takes connections and never answers them: the audit's probe waits for its
/// timeout (3 s) on the audit's own thread, while the daemon goes on alerting; then the run
/// completes and reports that the kubelet could not be probed (NM-2013).
#[test]
fn a_hung_kubelet_holds_up_neither_the_alerts_nor_the_audit() {
    let lab = setup();
    let pin = context(BpfPinDir::new("posture-hung"));
    // Never accepted: the kernel completes the handshake, the TLS hello waits for ever.
    let _hung = context(
        lab.node
            .run(|| std::net::TcpListener::bind(sa([0, 0, 0, 0], 10250)).expect("listen 10250")),
    );
    let (_cfg, d) = audit_daemon(&lab, &pin, "posture-hung.yaml");
    // The first run has started with the daemon and waits on the kubelet.
    let alerted = connect_and_alert(&lab, &d, (46300, 10250), TcpOutcome::Connected, "NM-1001");
    assert!(alerted, "no alert while the audit waits: {}", d.stderr());
    assert!(
        findings(&d.records()).is_empty(),
        "the alert came while the audit still waited on the kubelet"
    );
    let probed = d.wait_records(Duration::from_secs(10), |r| {
        !with_id(r, "NM-2013").is_empty()
    });
    assert!(probed, "no NM-2013: {}", d.stderr());
    let records = d.records();
    let doc = with_id(&records, "NM-2013")[0];
    assert!(
        doc["node_monitor"]["finding"]["evidence"]
            .as_str()
            .unwrap()
            .contains("10250"),
        "{doc}"
    );
    let body = scrape(&lab.node, &d);
    assert_eq!(
        metric_value(&body, "node_monitor_audit_last_run_success", &[]),
        Some(1.0),
        "{body}"
    );
    assert!(
        metric_value(&body, "node_monitor_audit_last_run_duration_seconds", &[])
            .is_some_and(|s| s >= 2.5),
        "the run waited for the probe's timeout: {body}"
    );
    drop(context(d.stop()));
}

/// `firewall` on the embedded config prints what `run` applies: the no-cluster defaults
/// (node-subnets on the kubelet and etcd) without a cluster, and with a cluster found the
/// cluster defaults (kubelet: control-plane-nodes, apiserver-endpoints, nodes; etcd:
/// control-plane-nodes), with the sets' addresses from the cluster.
#[test]
fn firewall_on_the_embedded_config_uses_the_cluster_defaults() {
    let lab = setup();
    let firewall = |kubeconfig: Option<&str>| {
        let mut cmd = lab.node.nsenter(crate::common::daemon::BIN);
        cmd.args(["firewall", "--format", "iptables", "--iface", "eth0"])
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG");
        if let Some(k) = kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        stdout_of(cmd)
    };
    // `who`: the holder the comment names after "allow" (with its leading space), if any.
    let kubelet = |src: &str, who: &str| {
        format!("--dport 10250 -s {src} -m comment --comment \"kubelet allow{who}\" -j RETURN")
    };
    let etcd = |src: &str, who: &str| {
        format!("--dport 2379 -s {src} -m comment --comment \"etcd-client allow{who}\" -j RETURN")
    };
    let alone = firewall(None);
    for allow in [kubelet("198.51.100.0/24", ""), etcd("198.51.100.0/24", "")] {
        assert!(
            alone.contains(&allow),
            "no cluster: node-subnets, missing {allow}:\n{alone}"
        );
    }

    let cluster = FakeCluster::start(&lab.node, |api| {
        api.apply("nodes", worker_1("203.0.113.0/26"));
        api.apply("nodes", cp_1("203.0.113.64/26"));
    });
    let rules = firewall(Some(cluster.kubeconfig.as_str()));
    assert!(
        rules.contains("with the cluster defaults `run` applies"),
        "{rules}"
    );
    for allow in [
        kubelet("198.51.100.2/32", " node cp-1"),
        kubelet("198.51.100.1/32", " node worker-1"),
        etcd("198.51.100.2/32", " node cp-1"),
    ] {
        assert!(rules.contains(&allow), "missing {allow}:\n{rules}");
    }
    // Whatever the comment: no rule for these sources.
    for absent in [
        "--dport 10250 -s 198.51.100.0/24 ",
        "--dport 2379 -s 198.51.100.0/24 ",
        "--dport 2379 -s 198.51.100.1/32 ",
    ] {
        assert!(
            !rules.contains(absent),
            "the cluster defaults replace node-subnets; the worker is no control-plane node: {absent}\n{rules}"
        );
    }
    cluster.stop();
}

/// Processes whose command line contains `marker`: `(pid, ppid)`.
fn processes_with(marker: &str) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(marker) {
            continue;
        }
        out.push((pid, parent_of(pid).unwrap_or(0)));
    }
    out
}

/// The parent pid of `pid` (field 4 of /proc/PID/stat, after the command's parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The children of `pid`, zombies included: `(pid, state)`.
fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("?").to_owned();
        if f.next().and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.push((child, state));
        }
    }
    out
}

/// The daemon's audit process (`node-monitor audit --daemon-job`, its child), waited for
/// (bounded: 5 s).
fn audit_process(daemon: u32) -> Option<u32> {
    for _ in 0..50 {
        for (pid, state) in children_of(daemon) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if state != "Z" && String::from_utf8_lossy(&cmdline).contains("--daemon-job") {
                return Some(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// What `pid`'s descriptors point at: `(fd, target)` (`pipe:[…]`, `anon_inode:bpf-map`, …).
fn fd_targets(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(t) = std::fs::read_link(e.path()) {
            out.push((
                e.file_name().to_string_lossy().into_owned(),
                t.to_string_lossy().into_owned(),
            ));
        }
    }
    out
}

/// The descriptors of `child` that it shares with the `daemon` (the same file, pipe or
/// socket, other than its stdin, stdout and stderr: the pipes the daemon reads and writes),
/// or that are BPF objects at all (maps, programs, links, ring buffers). Other anonymous
/// inodes (an epoll, an eventfd) have one name for all and are the process's own runtime's.
fn foreign_fds(daemon: u32, child: u32) -> Vec<(String, String)> {
    let theirs: BTreeSet<String> = fd_targets(daemon).into_iter().map(|(_, t)| t).collect();
    let mine = fd_targets(child);
    assert!(
        ["0", "1", "2"]
            .iter()
            .all(|fd| mine.iter().any(|(f, t)| f == fd && t.starts_with("pipe:"))),
        "the audit process's stdin, stdout and stderr are not pipes: {mine:?}"
    );
    mine.into_iter()
        .filter(|(f, t)| {
            t.contains("bpf")
                || (!["0", "1", "2"].contains(&f.as_str())
                    && !t.starts_with("anon_inode:")
                    && theirs.contains(t))
        })
        .collect()
}

/// The effective capabilities of `pid` (`CapEff`).
fn cap_eff(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_owned()))
}

/// How many threads `pid` has.
fn tasks(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count)
}

/// Kills, on drop, whatever the hung tool left (so a failed test leaves no sleeper).
struct KillMarked(String);

impl Drop for KillMarked {
    fn drop(&mut self) {
        for (pid, _) in processes_with(&self.0) {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// An audit run that hangs past `audit.timeout_s` (5 s): the daemon's PATH starts with a
/// directory whose `iptables-save` is a shell script that sleeps for a minute (in a child of
/// its own, as a wrapper script would). The daemon gives the run up at its timeout, counts it
/// failed, logs a warning, kills the tool with everything it started (no sleeper, no zombie
/// left per hung run), and starts the next run on schedule (10 s later), which hangs and is
/// given up the same way; the alerts go on meanwhile.
#[test]
fn an_audit_run_that_hangs_is_given_up_and_the_next_starts_on_schedule() {
    let lab = setup();
    let pin = context(BpfPinDir::new("posture-hang"));
    let dir = TempDir::new("posture-hang-bin");
    let marker = dir.path().to_string_lossy().into_owned();
    let _cleanup = KillMarked(marker.clone());
    // The sleeper is `sleep` under a name in the directory, so that its command line names
    // the directory too (the leak check looks for it).
    let sleeper = dir.file("hang-sleep");
    std::os::unix::fs::symlink(
        std::fs::canonicalize("/bin/sleep").expect("sleep (coreutils)"),
        &sleeper,
    )
    .unwrap();
    let tool = dir.file("iptables-save");
    std::fs::write(
        &tool,
        format!(
            "#!/bin/sh\n# a hung iptables-save: a child that sleeps past the audit's timeout\n{} 59\nexit 1\n",
            sleeper.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", marker, std::env::var("PATH").unwrap_or_default());
    let text = test_config(&[
        AUDIT_ON,
        ("interval_s: 3600", "interval_s: 10"),
        ("timeout_s: 60 ", "timeout_s: 5 "),
        ("enabled: auto", "enabled: off"),
    ]);
    let cfg = TempFile::new("posture-hang.yaml", &text);
    let d = context(Daemon::start_env(
        &lab.node,
        &pin.path,
        &["eth0"],
        &["--config", cfg.as_str()],
        &[("PATH", &path)],
    ));
    let failed = |s: &str| {
        s.lines()
            .filter(|l| l.contains("posture audit failed") && l.contains("timed out after 5s"))
            .count()
    };
    // Bounded: until `n` runs were given up, or `within`.
    let given_up = |n: usize, within: Duration| {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if failed(&d.stderr()) >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    // The first run hangs in the firewall check: the tool and its sleeping child are there.
    let hung = (0..40).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        processes_with(&marker).len() >= 2
    });
    assert!(
        hung,
        "the daemon never ran the hung iptables-save: {}",
        d.stderr()
    );
    // Alerts meanwhile.
    let alerted = connect_and_alert(&lab, &d, (46310, 10250), TcpOutcome::Refused, "NM-1001");
    assert!(alerted, "no alert while the audit hangs: {}", d.stderr());
    assert_eq!(
        failed(&d.stderr()),
        0,
        "the alert came within the run's timeout"
    );

    // Given up at its timeout: a warning, and the tool killed with its child.
    assert!(
        given_up(1, Duration::from_secs(8)),
        "no warning for the hung run: {}",
        d.stderr()
    );
    let gone = (0..20).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        processes_with(&marker).is_empty()
    });
    assert!(
        gone,
        "the hung tool outlived its run: {:?}",
        processes_with(&marker)
    );
    let body = scrape(&lab.node, &d);
    assert_eq!(runs(&body, "failed"), Some(1.0), "{body}");
    assert_eq!(
        metric_value(&body, "node_monitor_audit_last_run_success", &[]),
        Some(0.0),
        "{body}"
    );

    // The next run, on schedule (10 s after the first started), hangs and is given up too;
    // alerts still flow while it hangs.
    assert!(
        given_up(2, Duration::from_secs(10)),
        "no second run given up within 15 s of the first: {}",
        d.stderr()
    );
    let gone = (0..20).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        processes_with(&marker).is_empty() && children_of(d.pid()).is_empty()
    });
    assert!(
        gone,
        "a hung run left processes behind: marked {:?}, the daemon's children {:?}",
        processes_with(&marker),
        children_of(d.pid())
    );
    let body = scrape(&lab.node, &d);
    assert_eq!(runs(&body, "failed"), Some(2.0), "{body}");
    assert_eq!(runs(&body, "completed"), Some(0.0), "{body}");
    // Another group (the same source on the kubelet again would be deduplicated).
    assert!(
        connect_and_alert(&lab, &d, (46311, 10255), TcpOutcome::Refused, "NM-1002"),
        "no alert after the hung runs: {}",
        d.stderr()
    );
    drop(context(d.stop()));
}

/// A run stuck where the run's own timeout cannot cut it: a blocking read in the run's
/// process (the kubelet config is a FIFO that nobody writes: opening it blocks). The daemon
/// gives the run up 5 s past `timeout_s` (5 s), kills its process and reaps it, counts it
/// failed with a warning, and starts the next run at once (it was due), which gets stuck
/// too, three times: the daemon's thread count does not grow, and no given-up process is
/// left (no zombie either). The run's process holds none of the daemon's descriptors (maps,
/// ring buffer, sockets) and has its capabilities. When the FIFO is finally written, the
/// current run completes, and alerts flow throughout.
#[test]
fn a_run_stuck_past_its_timeout_is_given_up_and_its_late_report_ignored() {
    let lab = setup();
    let pin = context(BpfPinDir::new("posture-stuck"));
    let dir = TempDir::new("posture-stuck");
    let fifo = dir.file("kubelet-config.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let text = test_config(&[
        AUDIT_ON,
        ("interval_s: 3600", "interval_s: 10"),
        ("timeout_s: 60 ", "timeout_s: 5 "),
        (
            "  # kubelet_config: /var/lib/kubelet/config.yaml",
            &format!("  kubelet_config: {}\n  #", fifo.display()),
        ),
        ("enabled: auto", "enabled: off"),
    ]);
    let cfg = TempFile::new("posture-stuck.yaml", &text);
    let d = context(Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));
    // Alerts while the first run is stuck.
    assert!(
        connect_and_alert(&lab, &d, (46320, 10250), TcpOutcome::Refused, "NM-1001"),
        "no alert while the audit is stuck: {}",
        d.stderr()
    );
    // The run's process, stuck on the FIFO: a child of the daemon, the binary re-executed.
    let run_1 = audit_process(d.pid()).expect("the daemon runs the audit in a child process");
    let leaked = foreign_fds(d.pid(), run_1);
    assert!(
        leaked.is_empty(),
        "the audit process holds the daemon's descriptors: {leaked:?}"
    );
    assert_eq!(
        cap_eff(run_1),
        cap_eff(d.pid()),
        "the audit process runs with the daemon's capabilities"
    );
    // Given up at timeout + 5 s (10 s after the start; bounded: 14 s).
    let gave_up = |run: u32| {
        move |l: &str| {
            l.contains("posture audit failed")
                && l.contains(&format!("run={run} "))
                && l.contains("still running 5s after its timeout")
        }
    };
    assert!(
        d.wait_log(Duration::from_secs(14), gave_up(1)),
        "the stuck run was not given up: {}",
        d.stderr()
    );
    let threads = tasks(d.pid());
    let gone = |pid: u32| {
        (0..20).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            !children_of(d.pid()).iter().any(|(c, _)| *c == pid)
        })
    };
    assert!(
        gone(run_1),
        "the given-up process is left: the daemon's children {:?}",
        children_of(d.pid())
    );
    // The next run starts at once and gets stuck too; so does the one after it.
    for run in [2, 3] {
        let stuck = audit_process(d.pid()).expect("the next run's process");
        assert!(
            d.wait_log(Duration::from_secs(14), gave_up(run)),
            "run {run} was not given up: {}",
            d.stderr()
        );
        assert!(
            gone(stuck),
            "run {run}'s process is left: the daemon's children {:?}",
            children_of(d.pid())
        );
    }
    let after = tasks(d.pid());
    assert!(
        after <= threads,
        "the daemon grew from {threads} to {after} threads over two more stuck runs"
    );
    // Only the current run's process is there, and no zombie.
    let children = children_of(d.pid());
    assert!(
        children.len() == 1 && children.iter().all(|(_, state)| state != "Z"),
        "the daemon's children after three stuck runs: {children:?}"
    );
    let body = scrape(&lab.node, &d);
    assert_eq!(runs(&body, "failed"), Some(3.0), "{body}");
    // The fourth run started at once and blocks on the FIFO too. Wait for it to have
    // opened the FIFO, then write the config.
    std::thread::sleep(Duration::from_millis(500));
    {
        use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
        // O_NONBLOCK: fails at once (ENXIO) rather than wait if no run has it open.
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&fifo)
            .expect("the run holds the FIFO open for reading");
        let _ = w.write_all(
            b"apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nreadOnlyPort: 0\n",
        );
    }
    assert!(
        d.wait_log(Duration::from_secs(5), |l: &str| {
            l.contains("posture audit done") && l.contains("run=4")
        }),
        "the fourth run did not complete once released: {}",
        d.stderr()
    );
    // No given-up run reported: they were killed.
    assert!(
        !d.stderr_lines()
            .iter()
            .any(|l| l.contains("posture audit done")
                && ["run=1 ", "run=2 ", "run=3 "].iter().any(|r| l.contains(r))),
        "a given-up run reported: {}",
        d.stderr()
    );
    let body = scrape(&lab.node, &d);
    assert_eq!(runs(&body, "completed"), Some(1.0), "{body}");
    assert_eq!(runs(&body, "failed"), Some(3.0), "{body}");
    assert_eq!(
        metric_value(&body, "node_monitor_audit_last_run_success", &[]),
        Some(1.0),
        "{body}"
    );
    drop(context(d.stop()));
}
