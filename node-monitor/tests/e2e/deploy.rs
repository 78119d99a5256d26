//! Issue 11 end to end: the daemon as the DaemonSet runs it, and the chart's alerts and
//! dashboard against what the daemon really exports.
//!
//! The daemon runs in the lab's node namespace as an unprivileged user (uid 65534) with only
//! the capabilities the DaemonSet adds (read from `deploy/manifests/node-monitor.yaml`), given
//! as ambient capabilities by `setpriv`, on the config the manifests' ConfigMap holds, with
//! JSON logs as the chart sets them, against a fake Kubernetes API server. It attaches, pins
//! into the host's bpffs (mounted by the test's setup, never by the daemon), reports a flagged
//! connection, and a restart (what a rolling update does) adopts its pins with the counters
//! intact. Every metric name that `files/rules.yaml` and `files/dashboard.json` use is in its
//! `/metrics`.
//!
//! The image: the `Dockerfile`'s runtime stage built by buildah (Debian's, vfs storage, chroot
//! isolation), its build stage replaced by a build context that holds what that stage makes
//! (`deploy/image/rootfs.sh` on the binary under test): base images cannot be pulled here, so
//! the build stage (a Rust image) cannot run. `--version` and `check-config` run in the image.

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use node_monitor_lab::{BpfPinDir, Child, Netns, output_with_timeout};
use serde_json::Value;

use crate::{
    common::{
        daemon::{self, BIN, context},
        http::{http_get, metric_value},
        peers::{tcp_connect, tcp_server},
        temp::{TempDir, TempFile},
    },
    fake_cluster::{FakeCluster, cp_1, worker_1},
    setup::{CONNECT_TIMEOUT, node as node_addr, outside, setup},
};

/// The unprivileged user the daemon runs as (`nobody`).
const UID: u32 = 65_534;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// The daemon's config in the manifests' ConfigMap (the `config.yaml: |` block).
fn manifest_config(manifests: &str) -> String {
    let mut lines = manifests
        .lines()
        .skip_while(|l| l.trim() != "config.yaml: |");
    assert!(
        lines.next().is_some(),
        "no `config.yaml: |` in deploy/manifests/node-monitor.yaml"
    );
    let mut out = String::new();
    for l in lines.take_while(|l| l.is_empty() || l.starts_with("    ")) {
        out.push_str(l.get(4..).unwrap_or(""));
        out.push('\n');
    }
    assert!(out.contains("groups:"), "the ConfigMap's config: {out}");
    out
}

/// The capabilities the manifests' DaemonSet adds (`- NAME  # why` under `add:`).
fn manifest_capabilities(manifests: &str) -> Vec<String> {
    let mut lines = manifests.lines().skip_while(|l| l.trim() != "add:");
    assert!(
        lines.next().is_some(),
        "no capabilities `add:` in the DaemonSet"
    );
    lines
        .map_while(|l| l.trim().strip_prefix("- "))
        .map(|c| c.split_whitespace().next().unwrap_or("").to_owned())
        .collect()
}

/// Capability numbers (linux/capability.h) of the names the DaemonSet may add.
fn cap_bit(name: &str) -> u32 {
    match name {
        "NET_ADMIN" => 12,
        "SYS_PTRACE" => 19,
        "SYS_ADMIN" => 21,
        "PERFMON" => 38,
        "BPF" => 39,
        other => {
            panic!(
                "the DaemonSet adds {other}: this test knows BPF, NET_ADMIN, PERFMON, SYS_ADMIN, SYS_PTRACE"
            )
        }
    }
}

/// `node_monitor_...` names in a text (rules, dashboard).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("node_monitor_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// Names of the samples in a Prometheus text exposition.
fn exported(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn bpf_mounts() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" - bpf "))
        .count()
}

/// The daemon as the DaemonSet runs it, in `ns`, as [`UID`] with `caps` only.
struct Unprivileged {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
    metrics: SocketAddr,
}

fn collect(pipe: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    });
}

impl Unprivileged {
    fn start(
        ns: &Netns,
        caps: &[String],
        config: &Path,
        pin: &Path,
        kubeconfig: &str,
    ) -> Unprivileged {
        Unprivileged::start_as(ns, UID, caps, config, pin, kubeconfig)
    }

    /// As [`Unprivileged::start`], as `uid` (the DaemonSet's `runAsUser` is 0).
    fn start_as(
        ns: &Netns,
        uid: u32,
        caps: &[String],
        config: &Path,
        pin: &Path,
        kubeconfig: &str,
    ) -> Unprivileged {
        let metrics = SocketAddr::from(([127, 0, 0, 1], daemon::next_metrics_port()));
        let list = caps
            .iter()
            .map(|c| format!("+{}", c.to_ascii_lowercase()))
            .collect::<Vec<_>>()
            .join(",");
        let mut cmd = ns.nsenter("setpriv");
        cmd.args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            &format!("--inh-caps=-all,{list}"),
            &format!("--ambient-caps=-all,{list}"),
            &format!("--bounding-set=-all,{list}"),
            "--",
            BIN,
            "run",
            "--iface",
            "eth0",
        ])
        .arg("--config")
        .arg(config)
        .arg("--pin-dir")
        .arg(pin)
        .arg("--metrics-addr")
        .arg(metrics.to_string())
        // As the DaemonSet sets them.
        .env("NODE_NAME", "worker-1")
        .env("NODE_MONITOR_LOG_FORMAT", "json")
        .env("KUBECONFIG", kubeconfig)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = context(Child::spawn(&mut cmd));
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        collect(child.take_stdout().unwrap(), out.clone());
        collect(child.take_stderr().unwrap(), err.clone());
        let d = Unprivileged {
            child,
            out,
            err,
            metrics,
        };
        assert!(
            d.wait_log(daemon::READY_TIMEOUT, |l| l
                .contains(r#""message":"ready""#)),
            "the unprivileged daemon did not log `ready` within {:?}; stderr:\n{}",
            daemon::READY_TIMEOUT,
            d.stderr()
        );
        d
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().join("\n")
    }

    fn wait_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.err.lock().unwrap().iter().any(|l| pred(l)) {
                return true;
            }
            thread::sleep(Duration::from_millis(25));
        }
        false
    }

    fn alerts_for(&self, group: &str) -> usize {
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"]["kind"] == "alert" && v["node_monitor"]["port_group"] == group)
            .count()
    }

    fn scrape(&self, ns: &Netns) -> String {
        let (status, body) = context(http_get(ns, self.metrics, "/metrics"));
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }

    /// SIGTERM; the exit status must be 0 and every stderr line one JSON object without ANSI
    /// escape codes (stderr is a pipe, as under `kubectl logs` and journald).
    fn stop(mut self) -> String {
        let status = context(self.child.stop(daemon::EXIT_TIMEOUT));
        thread::sleep(Duration::from_millis(200));
        let err = self.stderr();
        assert!(
            status.success(),
            "exit {status} after SIGTERM; stderr:\n{err}"
        );
        for l in err.lines() {
            assert!(
                !l.contains('\x1b'),
                "an ANSI escape code in a log line: {l:?}"
            );
            assert!(
                serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object()),
                "a log line that is not one JSON object: {l}"
            );
        }
        err
    }
}

#[test]
fn daemonset_capabilities_unprivileged_user_attaches_pins_reports_and_adopts() {
    daemon::require_root_and_tools(&["setpriv", "nsenter"]);
    let manifests = read("deploy/manifests/node-monitor.yaml");
    let caps = manifest_capabilities(&manifests);
    assert_eq!(
        caps,
        ["BPF", "NET_ADMIN", "PERFMON"],
        "the DaemonSet's capabilities"
    );
    let config = TempFile::new("deploy-config.yaml", &manifest_config(&manifests));
    let lab = setup();
    let pin = context(BpfPinDir::new("deploy"));
    // The pin directory belongs to the daemon's user, as uid 0's does in the pod; the bpffs
    // itself is the host's, mounted by the test setup.
    nix::unistd::chown(
        &pin.path,
        Some(nix::unistd::Uid::from_raw(UID)),
        Some(nix::unistd::Gid::from_raw(UID)),
    )
    .unwrap();
    let mounts_before = bpf_mounts();

    // The fake API server, in the node namespace: this node and a control-plane node.
    let cluster = FakeCluster::start(&lab.node, |api| {
        api.apply("nodes", worker_1("203.0.113.0/26"));
        api.apply("nodes", cp_1("203.0.113.128/26"));
    });
    let kubeconfig = &cluster.kubeconfig;

    let d = Unprivileged::start(
        &lab.node,
        &caps,
        &config.path,
        &pin.path,
        kubeconfig.as_str(),
    );
    // It runs as the unprivileged user with exactly those capabilities.
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("{k} in {status}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(field("Uid:"), vec![UID.to_string(); 4], "{status}");
    let want: u64 = caps.iter().map(|c| 1u64 << cap_bit(c)).sum();
    let eff = u64::from_str_radix(&field("CapEff:")[0], 16).unwrap();
    assert_eq!(eff, want, "CapEff {eff:#x}, the DaemonSet's {want:#x}");

    // It pinned into the host's bpffs, as its user, and mounted nothing.
    let entries = pin.entries();
    assert!(
        entries.iter().any(|e| e == "maps") && entries.iter().any(|e| e == "links"),
        "pins: {entries:?}"
    );
    assert_eq!(bpf_mounts(), mounts_before, "the daemon mounted a bpffs");

    // It reports: a flagged connection to the kubelet (the outside host is no node).
    tcp_connect(
        &lab.outside,
        outside(46300, false),
        node_addr(10250, false),
        CONNECT_TIMEOUT,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.alerts_for("kubelet") == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        d.alerts_for("kubelet") > 0,
        "no kubelet alert; stderr:\n{}",
        d.stderr()
    );

    // The identity cache synced (its metrics are exported), then every metric name of the
    // rules and the dashboard is one the daemon exports.
    let mut body = String::new();
    for _ in 0..100 {
        body = d.scrape(&lab.node);
        if body.lines().any(|l| l == "node_monitor_cluster_synced 1")
            && body.contains("node_monitor_alerts_total{")
            && body.contains("node_monitor_node_port_ranges_ports{")
        {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let have = exported(&body);
    let rules = read("deploy/helm/node-monitor/files/rules.yaml");
    let dashboard = read("deploy/helm/node-monitor/files/dashboard.json");
    let used: BTreeSet<String> = metric_names(&rules)
        .into_iter()
        .chain(metric_names(&dashboard))
        .collect();
    assert!(
        used.len() >= 10,
        "metric names found in rules and dashboard: {used:?}"
    );
    let missing: Vec<&String> = used.iter().filter(|m| !have.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "the rules or the dashboard use metrics the daemon does not export: {missing:?}\n/metrics:\n{body}"
    );
    let denied = |body: &str| {
        metric_value(
            body,
            "node_monitor_connections_total",
            &[("group", "kubelet"), ("verdict", "denied")],
        )
        .unwrap_or(0.0)
    };
    let before = denied(&body);
    assert!(before >= 1.0, "kubelet denied connections: {before}");
    d.stop();

    // A restart, as a rolling update does: the new process adopts the pins, the counters
    // went on.
    let d = Unprivileged::start(
        &lab.node,
        &caps,
        &config.path,
        &pin.path,
        kubeconfig.as_str(),
    );
    assert!(
        d.wait_log(Duration::from_secs(1), |l| l
            .contains("adopting pinned map")),
        "the restarted daemon adopted nothing; stderr:\n{}",
        d.stderr()
    );
    let after = denied(&d.scrape(&lab.node));
    assert!(
        after >= before,
        "kubelet denied connections went from {before} to {after} across the restart"
    );
    d.stop();
    cluster.stop();
}

impl Unprivileged {
    /// The findings on stdout (ECS `event.kind: state`) with `id`: their evidence.
    fn findings(&self, id: &str) -> Vec<String> {
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"]["kind"] == "state" && v["rule"]["id"] == id)
            .map(|v| {
                v["node_monitor"]["finding"]["evidence"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    }

    /// The JSON log lines of completed audit runs that skipped no check.
    fn complete_runs(&self) -> usize {
        self.err
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| {
                v["fields"]["message"] == "posture audit done" && v["fields"]["skipped"] == "[]"
            })
            .count()
    }
}

/// The posture audit as the DaemonSet runs it (issue 11 with issue 12): uid 0 (its
/// `runAsUser`) with only its capabilities, the config its ConfigMap holds (the audit on, every
/// 10 s here), the kubelet's config and the API server's manifest where the chart mounts them
/// (fixtures here, root's and mode 0600 as on a node), the firewall tools by name and the fake
/// cluster's identity. Every check runs (none skipped: the capabilities suffice for
/// iptables-save and nft, the files are readable) and finds what the node holds: the
/// controller manager bound wide (listeners), anonymous kubelet auth (kubelet-settings), an
/// API server without kubelet client certificates (apiserver-settings), open ports
/// (firewall), etcd on this worker (identity). The listeners' owners are another root
/// process's (this test's): under the default capabilities they show as unknown; with
/// SYS_PTRACE, as `audit.processOwners` adds it, they are named.
#[test]
fn the_audit_runs_under_the_daemonsets_capabilities() {
    daemon::require_root_and_tools(&["setpriv", "nsenter", "iptables-save", "nft"]);
    let manifests = read("deploy/manifests/node-monitor.yaml");
    assert!(
        manifests.contains("            runAsUser: 0\n"),
        "the DaemonSet no longer runs as uid 0: this test runs the daemon as its runAsUser"
    );
    assert!(
        manifests.contains("      hostPID: true\n"),
        "the DaemonSet shares the node's process table for the audit (hostPID)"
    );
    let caps = manifest_capabilities(&manifests);
    let dir = TempDir::new("deploy-audit");
    let kubelet = dir.file("kubelet-config.yaml");
    std::fs::write(
        &kubelet,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
         authentication:\n  anonymous:\n    enabled: true\n  webhook:\n    enabled: true\n\
         authorization:\n  mode: Webhook\nreadOnlyPort: 0\nrotateCertificates: true\n",
    )
    .unwrap();
    let apiserver = dir.file("kube-apiserver.yaml");
    std::fs::write(
        &apiserver,
        "apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
spec:
  containers:
  - name: kube-apiserver
    command: [kube-apiserver, --anonymous-auth=false]
",
    )
    .unwrap();
    for f in [&kubelet, &apiserver] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let mounted = "  kubelet_config: \"/var/lib/kubelet/config.yaml\"\n";
    let text = manifest_config(&manifests);
    assert!(
        text.contains("audit:\n  enabled: true\n") && text.contains(mounted),
        "the ConfigMap's audit section: {text}"
    );
    let text = text
        .replace("  interval_s: 3600\n", "  interval_s: 10\n")
        .replace("  timeout_s: 60\n", "  timeout_s: 8\n")
        .replace(
            mounted,
            &format!(
                "  kubelet_config: {:?}\n  apiserver_manifest: {:?}\n",
                kubelet.display().to_string(),
                apiserver.display().to_string()
            ),
        );
    let config = TempFile::new("deploy-audit-config.yaml", &text);
    let lab = setup();
    let cluster = FakeCluster::start(&lab.node, |api| {
        api.apply("nodes", worker_1("203.0.113.0/26"));
        api.apply("nodes", cp_1("203.0.113.128/26"));
    });
    let _etcd = tcp_server(&lab.node, &[SocketAddr::from(([0, 0, 0, 0], 2379))], 1);
    let _cm = tcp_server(&lab.node, &[SocketAddr::from(([0, 0, 0, 0], 10257))], 1);
    let owner = format!("pid {})", std::process::id());

    for (extra, named) in [(None, false), (Some("SYS_PTRACE"), true)] {
        let mut caps = caps.clone();
        caps.extend(extra.map(str::to_owned));
        let pin = context(BpfPinDir::new("deploy-audit"));
        let d = Unprivileged::start_as(
            &lab.node,
            0,
            &caps,
            &config.path,
            &pin.path,
            cluster.kubeconfig.as_str(),
        );
        let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap());
        let want: u64 = caps.iter().map(|c| 1u64 << cap_bit(c)).sum();
        assert_eq!(eff, Some(want), "{status}");
        // The first run may come before the identity cache is synced (identity skipped);
        // the next, 10 s later, has it. Bounded: 25 s.
        let deadline = Instant::now() + Duration::from_secs(25);
        while d.complete_runs() == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        assert!(
            d.complete_runs() > 0,
            "no audit run without a skipped check under {caps:?}; stderr:\n{}",
            d.stderr()
        );
        for (check, id, want) in [
            (
                "listeners",
                "NM-2002",
                "group controller-manager listening on 0.0.0.0:10257/tcp",
            ),
            ("kubelet-settings", "NM-2020", "kubelet-config.yaml"),
            ("apiserver-settings", "NM-2030", "kube-apiserver.yaml"),
            ("firewall", "NM-2040", "tcp/10250 (group kubelet)"),
            ("identity", "NM-2003", "0.0.0.0:2379/tcp"),
        ] {
            let found = d.findings(id);
            assert!(
                found.iter().any(|e| e.contains(want)),
                "{check}: no {id} with {want:?} under {caps:?}: {found:?}\n{}",
                d.stderr()
            );
        }
        for id in ["NM-2002", "NM-2003"] {
            for e in d.findings(id) {
                if named {
                    assert!(e.contains(&owner), "with SYS_PTRACE: {e}");
                } else {
                    assert!(
                        e.ends_with("(process unknown)"),
                        "without SYS_PTRACE another root process's sockets are unreadable: {e}"
                    );
                }
            }
        }
        d.stop();
    }
    // The chart adds SYS_PTRACE behind audit.processOwners, as the second run had it.
    assert!(
        read("deploy/helm/node-monitor/templates/daemonset.yaml")
            .contains("{{- if and .Values.audit.enabled .Values.audit.processOwners }}\n                - SYS_PTRACE"),
        "the chart no longer adds SYS_PTRACE behind audit.processOwners"
    );
    cluster.stop();
}

#[test]
fn manifests_config_and_capabilities_are_read_from_the_rendered_chart() {
    let manifests = read("deploy/manifests/node-monitor.yaml");
    let cfg = manifest_config(&manifests);
    assert!(cfg.contains("  kubelet:\n"), "{cfg}");
    assert!(
        cfg.starts_with("# Rendered by the node-monitor Helm chart") && cfg.contains("\ngroups:\n"),
        "the config is not dedented: {cfg}"
    );
    assert_eq!(
        manifest_capabilities(&manifests),
        ["BPF", "NET_ADMIN", "PERFMON"]
    );
    let names = metric_names("a node_monitor_ready{x} + rate(node_monitor_lost_events_total[5m])");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["node_monitor_lost_events_total", "node_monitor_ready"]
    );
    let body = "# HELP x\nnode_monitor_ready 1\nnode_monitor_packets_total{group=\"a\"} 2\n";
    assert_eq!(
        exported(body).into_iter().collect::<Vec<_>>(),
        ["node_monitor_packets_total", "node_monitor_ready"]
    );
}

/// buildah with its own storage (vfs) under a temporary directory; every container and image
/// removed on drop, before the directory goes.
struct Buildah {
    dir: TempDir,
}

impl Buildah {
    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new("buildah");
        cmd.arg("--root")
            .arg(self.dir.file("storage"))
            .arg("--runroot")
            .arg(self.dir.file("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("BUILDAH_ISOLATION", "chroot");
        cmd
    }

    /// Runs to completion (at most 120 s); stdout, or the failure with stderr.
    fn run(&self, args: &[&str]) -> String {
        let out = context(output_with_timeout(
            self.cmd(args),
            Duration::from_secs(120),
        ));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "`buildah {}` exited {}:\n{stdout}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        for args in [["rm", "--all"], ["rmi", "--all"]] {
            let _ = output_with_timeout(self.cmd(&args), Duration::from_secs(60));
        }
    }
}

#[test]
fn image_from_the_dockerfile_runs_version_and_check_config() {
    daemon::require_root_and_tools(&["buildah", "strip", "ldd"]);
    let b = Buildah {
        dir: TempDir::new("image"),
    };
    let ctx = b.dir.file("build-stage");
    let rootfs = ctx.join("rootfs");
    let mut sh = std::process::Command::new("sh");
    sh.arg(repo_file("deploy/image/rootfs.sh"))
        .arg(BIN)
        .arg(&rootfs);
    let out = context(output_with_timeout(sh, Duration::from_secs(60)));
    assert!(out.status.success(), "rootfs.sh: {out:?}");

    let root = repo_file("");
    let tag = "localhost/node-monitor:e2e";
    b.run(&[
        "bud",
        "--quiet",
        "--isolation",
        "chroot",
        "--build-context",
        &format!("build={}", ctx.display()),
        "--target",
        "runtime",
        "-f",
        &root.join("Dockerfile").to_string_lossy(),
        "-t",
        tag,
        &root.to_string_lossy(),
    ]);
    let entry = b.run(&["inspect", "--format", "{{.OCIv1.Config.Entrypoint}}", tag]);
    assert_eq!(entry.trim(), "[/usr/local/bin/node-monitor]");
    let ctr = b.run(&["from", tag]);
    let ctr = ctr.trim();

    let version = b.run(&["run", ctr, "--", "/usr/local/bin/node-monitor", "--version"]);
    assert_eq!(
        version.trim(),
        format!("node-monitor {}", env!("CARGO_PKG_VERSION"))
    );

    // The config the manifests' ConfigMap holds, where the DaemonSet mounts it.
    let config = TempFile::new(
        "image-config.yaml",
        &manifest_config(&read("deploy/manifests/node-monitor.yaml")),
    );
    b.run(&[
        "copy",
        ctr,
        config.as_str(),
        "/etc/node-monitor/config.yaml",
    ]);
    let checked = b.run(&[
        "run",
        ctr,
        "--",
        "/usr/local/bin/node-monitor",
        "check-config",
        "/etc/node-monitor/config.yaml",
    ]);
    assert!(
        checked.contains(": ok ("),
        "check-config in the image: {checked}"
    );

    // The audit's firewall tools run in the image.
    for (tool, want) in [
        ("iptables-save", "nf_tables"),
        ("ip6tables-save", "nf_tables"),
        ("iptables-legacy-save", "legacy"),
        ("ip6tables-legacy-save", "legacy"),
        ("nft", "nftables"),
    ] {
        let v = b.run(&["run", ctr, "--", tool, "--version"]);
        assert!(v.contains(want), "{tool} --version in the image: {v}");
    }

    // Minimal: the binary, the firewall tools (and the links that name them), the libraries
    // they link, iptables' modules, /etc/protocols, the CA bundle; no shell.
    let files: Vec<String> = walk(&rootfs)
        .into_iter()
        .map(|p| p.strip_prefix(&rootfs).unwrap().display().to_string())
        .collect();
    let expected = |f: &str| {
        f == "usr/local/bin/node-monitor"
            || f == "etc/ssl/certs/ca-certificates.crt"
            || f == "etc/protocols"
            || f.contains(".so")
            || [
                "usr/sbin/xtables-nft-multi",
                "usr/sbin/xtables-legacy-multi",
                "usr/sbin/nft",
            ]
            .contains(&f)
            || (f.starts_with("usr/sbin/") && f.contains("tables-") && f.ends_with("-save"))
    };
    let unexpected: Vec<&String> = files.iter().filter(|f| !expected(f)).collect();
    assert!(
        unexpected.is_empty() && !files.iter().any(|f| f.starts_with("bin/")),
        "unexpected files in the image: {unexpected:?}"
    );
    let sh = b.cmd(&["run", ctr, "--", "/bin/sh", "-c", "true"]);
    let out = context(output_with_timeout(sh, Duration::from_secs(60)));
    assert!(!out.status.success(), "a shell ran in the image");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
