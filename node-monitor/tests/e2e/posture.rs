//! Issue 12 end to end: `node-monitor audit` against real listeners in the lab's node
//! namespace (a kubelet-like HTTPS server with and without authentication, a plain HTTP
//! read-only port, node-local endpoints bound wide or to loopback), and `node-monitor
//! firewall` rules loaded into the node namespace's real iptables and nft, with real
//! connections from the allowed control plane and from outside, IPv4 and IPv6.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use node_monitor::cluster::testing::objects::node as node_object;
use node_monitor_lab::{Lab, Netns, output_with_timeout};
use serde_json::Value;

use crate::{
    common::{
        daemon::{self, context, run_cli},
        peers::{TcpOutcome, sa, tcp_connect, tcp_server},
        temp::TempDir,
    },
    fake_cluster::{FakeCluster, cp_1, worker_1},
    setup::{CONNECT_TIMEOUT, cp, node, outside, setup},
};

/// An HTTP(S) server in `ns` on `addr` answering every request with `status` and `body`;
/// at most 16 connections and 30 s, stops when dropped.
pub(crate) struct Http {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Drop for Http {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

pub(crate) fn http_server(
    ns: &Netns,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    status: &'static str,
    body: &'static str,
) -> Http {
    let listener = ns
        .run(move || TcpListener::bind(addr).unwrap_or_else(|e| panic!("listen {addr}: {e}")))
        .expect("run in netns");
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut served = 0;
        while served < 16 && Instant::now() < deadline && !flag.load(Ordering::Relaxed) {
            let Ok((s, _)) = listener.accept() else {
                thread::sleep(Duration::from_millis(5));
                continue;
            };
            served += 1;
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            match &tls {
                Some(cfg) => {
                    let Ok(conn) = rustls::ServerConnection::new(cfg.clone()) else {
                        continue;
                    };
                    let mut stream = rustls::StreamOwned::new(conn, s);
                    serve(&mut stream, &response);
                }
                None => {
                    let mut s = s;
                    serve(&mut s, &response);
                }
            }
        }
    });
    Http {
        stop,
        handle: Some(handle),
    }
}

/// Reads a request's head, writes `response`.
fn serve(s: &mut (impl Read + Write), response: &str) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = s.write_all(response.as_bytes());
    let _ = s.flush();
}

/// A self-signed certificate made by the real `openssl`, as a rustls server config.
/// `days`: its validity.
fn tls_config(dir: &TempDir, days: &str) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let (key, cert) = (dir.file("key.pem"), dir.file("cert.pem"));
    let mut cmd = Command::new("openssl");
    cmd.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
    ])
    .args(["-nodes", "-days", days, "-subj", "/CN=kubelet", "-keyout"])
    .arg(&key)
    .arg("-out")
    .arg(&cert);
    let out = context(output_with_timeout(cmd, Duration::from_secs(20)));
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    )
}

pub(crate) const PODS: &str = r#"{"kind":"PodList","apiVersion":"v1","items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}]}"#;
const UNAUTHORIZED: &str = "Unauthorized";

fn audit(lab: &Lab, extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec![
        "audit",
        "--format",
        "json",
        "--fail-on",
        "high",
        "--iface",
        "eth0",
    ];
    args.extend_from_slice(extra);
    let (status, stdout, stderr) = run_cli(Some(&lab.node), &args);
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("audit output is not JSON ({e}): {stdout}\n{stderr}"));
    (status.code(), v)
}

fn ids(v: &Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect()
}

fn finding<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no {id}: {v}"))
}

/// An open node: a kubelet that lists its pods to anyone, the read-only port serving them
/// over plain HTTP, and the controller manager bound to every address. Each door is a
/// finding with its evidence; the exit status says something at or above `high` was found.
#[test]
fn audit_finds_the_open_doors() {
    daemon::require_root_and_tools(&["openssl"]);
    let lab = setup();
    let dir = TempDir::new("posture-open");
    // Valid for one more day: the audit says it expires soon.
    let tls = tls_config(&dir, "1");
    let _kubelet = http_server(
        &lab.node,
        sa([0, 0, 0, 0], 10250),
        Some(tls),
        "200 OK",
        PODS,
    );
    let _readonly = http_server(&lab.node, sa([0, 0, 0, 0], 10255), None, "200 OK", PODS);
    let _cm = tcp_server(&lab.node, &[sa([0, 0, 0, 0], 10257)], 1);
    let _healthz = tcp_server(&lab.node, &[sa([127, 0, 0, 1], 10248)], 1);

    let (code, v) = audit(&lab, &["--pin-dir", "/nonexistent"]);
    assert_eq!(code, Some(1), "{v}");
    let found = ids(&v);
    assert_eq!(
        found[..5],
        ["NM-2010", "NM-2011", "NM-2001", "NM-2002", "NM-2014"],
        "critical first, then by id: {v}"
    );
    // No firewall in the lab: every group with an allowlist is open to everyone else.
    assert!(
        found[5..].iter().all(|id| id == "NM-2040") && found.len() > 5,
        "{v}"
    );
    assert!(
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["evidence"]
                .as_str()
                .unwrap()
                .starts_with("tcp/10250 (group kubelet): no firewall rule drops")),
        "{v}"
    );
    let open = finding(&v, "NM-2010");
    assert_eq!(open["severity"], "critical");
    assert!(
        open["evidence"]
            .as_str()
            .unwrap()
            .contains("200, 2 pods listed"),
        "{open}"
    );
    assert!(
        finding(&v, "NM-2002")["evidence"]
            .as_str()
            .unwrap()
            .contains("group controller-manager listening on 0.0.0.0:10257/tcp"),
        "{v}"
    );
    assert_eq!(finding(&v, "NM-2001")["cis"], "4.2.4");
    let cert = finding(&v, "NM-2014");
    assert_eq!(cert["severity"], "medium");
    assert!(
        cert["evidence"]
            .as_str()
            .unwrap()
            .contains("on 127.0.0.1:10250 expires in "),
        "{cert}"
    );

    // The same findings as ECS documents, one per line.
    let (_, stdout, _) = run_cli(
        Some(&lab.node),
        &[
            "audit",
            "--format",
            "ecs",
            "--iface",
            "eth0",
            "--pin-dir",
            "/nonexistent",
        ],
    );
    let rules: Vec<String> = stdout
        .lines()
        .map(|l| {
            let d: Value = serde_json::from_str(l).unwrap();
            assert_eq!(d["event"]["kind"], "state");
            d["rule"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(rules, ids(&v));

    // OCSF Compliance Findings, one per line and finding; the table names each
    // finding with its severity. `--fail-on` moves the exit status: critical (NM-2010) is
    // found, so 1 even at `critical`.
    let cli = |format: &str, fail_on: &str| {
        run_cli(
            Some(&lab.node),
            &[
                "audit",
                "--format",
                format,
                "--fail-on",
                fail_on,
                "--iface",
                "eth0",
                "--pin-dir",
                "/nonexistent",
            ],
        )
    };
    let (status, stdout, stderr) = cli("ocsf", "critical");
    assert_eq!(status.code(), Some(1), "{stderr}");
    let classes: Vec<u64> = stdout
        .lines()
        .map(|l| {
            let d: Value = serde_json::from_str(l).unwrap();
            d["class_uid"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(classes.len(), found.len(), "{stdout}");
    assert!(classes.iter().all(|c| *c == 2003), "{stdout}");
    let (status, stdout, stderr) = cli("table", "critical");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stdout.contains("NM-2010 critical") && stdout.contains("check listeners"),
        "{stdout}"
    );
    // Bad flags and a config that cannot be read are usage errors: exit 2, saying why.
    let (status, _, stderr) = cli("json", "severe");
    assert_eq!(status.code(), Some(2), "an unknown severity: {stderr}");
    let (status, _, stderr) = run_cli(
        Some(&lab.node),
        &["audit", "--config", "/nonexistent/node-monitor.yaml"],
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/node-monitor.yaml"),
        "{stderr}"
    );
}

/// A closed node: the kubelet refuses anonymous requests, no read-only port, node-local
/// endpoints on loopback, a good kubelet config and API server manifest, and the rules of
/// `node-monitor firewall` loaded into nft: no findings, exit 0.
#[test]
fn audit_of_a_closed_node_finds_nothing() {
    daemon::require_root_and_tools(&["openssl"]);
    let lab = setup();
    let dir = TempDir::new("posture-closed");
    let tls = tls_config(&dir, "365");
    let _kubelet = http_server(
        &lab.node,
        sa([0, 0, 0, 0], 10250),
        Some(tls),
        "401 Unauthorized",
        UNAUTHORIZED,
    );
    let _cm = tcp_server(&lab.node, &[sa([127, 0, 0, 1], 10257)], 1);
    let config = dir.file("kubelet.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
         authentication:\n  anonymous:\n    enabled: false\n  webhook:\n    enabled: true\n\
         authorization:\n  mode: Webhook\nreadOnlyPort: 0\nrotateCertificates: true\n",
    )
    .unwrap();
    let (status, rules, stderr) = run_cli(
        Some(&lab.node),
        &["firewall", "--format", "nft", "--iface", "eth0"],
    );
    assert!(status.success(), "{stderr}");
    let file = dir.file("rules.nft");
    std::fs::write(&file, &rules).unwrap();
    load(&lab.node, "nft", &["-f"], &file);
    let manifest = dir.file("kube-apiserver.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    \
         - kube-apiserver\n    - --anonymous-auth=false\n    \
         - --kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt\n    \
         - --kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key\n",
    )
    .unwrap();
    let (code, v) = audit(
        &lab,
        &[
            "--kubelet-config",
            config.to_str().unwrap(),
            "--apiserver-manifest",
            manifest.to_str().unwrap(),
            "--pin-dir",
            "/nonexistent",
        ],
    );
    assert_eq!(ids(&v), Vec::<String>::new(), "{v}");
    assert_eq!(code, Some(0), "{v}");
    let checks: Vec<(&str, &str)> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        checks,
        [
            ("listeners", "ok"),
            ("kubelet-api", "ok"),
            ("kubelet-settings", "ok"),
            ("apiserver-settings", "ok"),
            ("firewall", "ok"),
            // No cluster in the lab: the identity checks say they were skipped, and why.
            ("identity", "skipped"),
        ],
        "{v}"
    );
    assert!(
        v["checks"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("code: 401"),
        "the probe really reached the kubelet: {v}"
    );
}

/// A daemon on the node has seen outside reach the kubelet, which no firewall rule
/// protects, and accepted there, and knock on the closed API server port: the audit, reading
/// the daemon's pinned counters and flow table, says the open doors were used, and that one
/// let outside in (critical). A group that node-monitor itself enforces (`action: drop`) is
/// not reported open: its programs drop what the firewall lets through.
#[test]
fn audit_correlates_open_ports_with_the_traffic_seen() {
    let lab = setup();
    let pin = context(node_monitor_lab::BpfPinDir::new("posture-seen"));
    let cfg = crate::common::temp::TempFile::new("posture.yaml", &crate::setup::test_config(&[]));
    let d = context(crate::common::daemon::Daemon::start(
        &lab.node,
        &pin.path,
        &["--config", cfg.as_str()],
    ));
    let _kubelet = tcp_server(&lab.node, &[node(10250, false)], 1);
    assert_eq!(
        tcp_connect(
            &lab.outside,
            outside(45600, false),
            node(10250, false),
            CONNECT_TIMEOUT
        ),
        TcpOutcome::Connected
    );
    assert_eq!(
        tcp_connect(
            &lab.outside,
            outside(45601, false),
            node(6443, false),
            CONNECT_TIMEOUT
        ),
        TcpOutcome::Refused
    );
    let pin_dir = pin.path.to_str().unwrap().to_owned();
    let (_, v) = audit(&lab, &["--config", cfg.as_str(), "--pin-dir", &pin_dir]);
    let enforced = crate::common::temp::TempFile::new(
        "posture-drop.yaml",
        &crate::setup::test_config(&[(crate::setup::KUBELET_MONITOR, crate::setup::KUBELET_DROP)]),
    );
    let (_, dropped) = audit(
        &lab,
        &["--config", enforced.as_str(), "--pin-dir", &pin_dir],
    );
    drop(context(d.stop()));
    let on = |v: &Value, id: &str, port: &str| -> Option<String> {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["id"] == id)
            .filter_map(|f| f["evidence"].as_str())
            .find(|e| e.starts_with(port))
            .map(str::to_owned)
    };
    let kubelet = "tcp/10250 (group kubelet)";
    let accepted =
        on(&v, "NM-2042", kubelet).unwrap_or_else(|| panic!("no NM-2042 on the kubelet: {v}"));
    assert!(
        accepted.contains("the node accepted 1 connections from denied sources")
            && accepted.contains("of 1 new connections")
            && accepted.ends_with(", 1 are to this range"),
        "{accepted}"
    );
    assert_eq!(finding(&v, "NM-2042")["severity"], "critical", "{v}");
    assert!(on(&v, "NM-2041", kubelet).is_none(), "{v}");
    let refused = on(&v, "NM-2041", "tcp/6443 (group apiserver)")
        .unwrap_or_else(|| panic!("no NM-2041 on the API server port: {v}"));
    assert!(
        refused.contains("saw 1 new connections from denied sources")
            && refused.ends_with(", 1 are to this range"),
        "{refused}"
    );
    let detail = |v: &Value| -> String {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "firewall")
            .and_then(|c| c["detail"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(detail(&v).contains("counters: pinned"), "{v}");
    // The kubelet group enforced by node-monitor: no finding on its port, and the check says
    // why; the API server port is still open and reported.
    for id in ["NM-2040", "NM-2041", "NM-2042"] {
        assert!(on(&dropped, id, kubelet).is_none(), "{id}: {dropped}");
    }
    assert!(
        detail(&dropped)
            .contains("node-monitor drops outside their allowlists (action: drop): kubelet"),
        "{dropped}"
    );
    assert!(
        on(&dropped, "NM-2041", "tcp/6443 (group apiserver)").is_some(),
        "{dropped}"
    );
}

/// Runs `tool args input` inside `ns` (bounded).
pub(crate) fn load(ns: &Netns, tool: &str, args: &[&str], input: &Path) {
    let mut cmd = ns.command(tool);
    cmd.args(args).arg(input);
    let out = context(output_with_timeout(cmd, Duration::from_secs(20)));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rules node-monitor owns, as the tool lists them.
pub(crate) fn listing(ns: &Netns, tool: &str) -> String {
    let mut cmd = if tool == "nft" {
        let mut c = ns.command("nft");
        c.args(["list", "table", "inet", "node_monitor"]);
        c
    } else {
        let mut c = ns.command(tool.trim_end_matches("-restore"));
        c.args(["-S", "NODE-MONITOR"]);
        c
    };
    cmd.env("LC_ALL", "C");
    let out = context(output_with_timeout(cmd, Duration::from_secs(10)));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The printed rules, loaded into the node namespace's firewall, let the control plane (on
/// the node's subnets: the embedded config allows it on the kubelet) connect and drop
/// outside's connections, for IPv4 and IPv6.
fn firewall_enforces(formats: &[(&str, &str, &[&str])]) {
    let lab = setup();
    let dir = TempDir::new("posture-fw");
    let _kubelet = tcp_server(&lab.node, &[node(10250, false), node(10250, true)], 8);
    for (i, (format, tool, args)) in formats.iter().enumerate() {
        let (status, rules, stderr) = run_cli(
            Some(&lab.node),
            &["firewall", "--format", format, "--iface", "eth0"],
        );
        assert!(status.success(), "{stderr}");
        let file = dir.file(&format!("rules-{i}"));
        std::fs::write(&file, &rules).unwrap();
        load(&lab.node, tool, args, &file);
        let first = listing(&lab.node, tool);
        assert!(first.contains("kubelet"), "{first}");
        // Loading the same text again replaces the rules, never doubles them.
        load(&lab.node, tool, args, &file);
        assert_eq!(listing(&lab.node, tool), first, "reloaded rules differ");
        if *tool != "nft" {
            let mut hook = lab.node.command(tool.trim_end_matches("-restore"));
            hook.args(["-I", "INPUT", "-j", "NODE-MONITOR"]);
            let out = context(output_with_timeout(hook, Duration::from_secs(10)));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let mut port = 45500;
    for v6 in [false, true] {
        port += 1;
        assert_eq!(
            tcp_connect(&lab.cp, cp(port, v6), node(10250, v6), CONNECT_TIMEOUT),
            TcpOutcome::Connected,
            "the control plane is allowed (v6: {v6})"
        );
        assert_eq!(
            tcp_connect(
                &lab.outside,
                outside(port, v6),
                node(10250, v6),
                CONNECT_TIMEOUT
            ),
            TcpOutcome::TimedOut,
            "outside is dropped (v6: {v6})"
        );
    }
}

#[test]
fn firewall_rules_enforce_with_iptables() {
    daemon::require_root_and_tools(&["iptables-restore", "ip6tables-restore"]);
    firewall_enforces(&[
        ("iptables", "iptables-restore", &["--noflush"]),
        ("ip6tables", "ip6tables-restore", &["--noflush"]),
    ]);
}

#[test]
fn firewall_rules_enforce_with_nft() {
    daemon::require_root_and_tools(&["nft"]);
    firewall_enforces(&[("nft", "nft", &["-f"])]);
}

/// Debian's real `etcd` (package etcd-server) in `ns`, its data and log in a temp dir
/// removed with it; killed on drop (the lab's `Child`), so a failed test leaves none.
struct Etcd {
    // Before the directory: the process ends before its data dir is removed.
    child: node_monitor_lab::Child,
    _dir: TempDir,
}

impl Etcd {
    /// etcd with its client URL on `client`:2379, its peer URL on `peer`:2380 and its metrics
    /// on `metrics`:2381; returns once the client port takes connections (bounded: 15 s).
    fn start(ns: &Netns, client: &str, peer: &str, metrics: &str) -> Etcd {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("etcd").is_file()));
        assert!(
            found,
            "this test needs Debian's etcd on PATH (package etcd-server; `cargo xtask setup` installs it)"
        );
        let dir = TempDir::new("etcd");
        let log = std::fs::File::create(dir.file("etcd.log")).unwrap();
        let peer_url = format!("http://{peer}:2380");
        let mut cmd = ns.nsenter("etcd");
        cmd.args([
            "--name",
            "nm-test",
            "--data-dir",
            dir.file("data").to_str().unwrap(),
            "--listen-client-urls",
            &format!("http://{client}:2379"),
            "--advertise-client-urls",
            &format!("http://{client}:2379"),
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("nm-test={peer_url}"),
            "--listen-metrics-urls",
            &format!("http://{metrics}:2381"),
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        let mut child = context(node_monitor_lab::Child::spawn(&mut cmd));
        let reach: SocketAddr = format!(
            "{}:2379",
            if client == "0.0.0.0" {
                "127.0.0.1"
            } else {
                client
            }
        )
        .parse()
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let up = context(ns.run(move || {
                std::net::TcpStream::connect_timeout(&reach, Duration::from_millis(200)).is_ok()
            }));
            if up {
                break;
            }
            let log = || std::fs::read_to_string(dir.file("etcd.log")).unwrap_or_default();
            if let Ok(Some(st)) = child.try_wait() {
                panic!("etcd exited ({st}) before it listened:\n{}", log());
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not listen on {reach} within 15 s:\n{}",
                log()
            );
            thread::sleep(Duration::from_millis(100));
        }
        Etcd { child, _dir: dir }
    }
}

/// `audit --format json` in the lab's node namespace against the fake cluster of
/// `kubeconfig`.
fn audit_with_cluster(lab: &Lab, kubeconfig: &str) -> Value {
    let mut cmd = lab.node.nsenter(daemon::BIN);
    cmd.args([
        "audit",
        "--format",
        "json",
        "--iface",
        "eth0",
        "--pin-dir",
        "/nonexistent",
    ])
    .env("NO_COLOR", "1")
    .env("KUBECONFIG", kubeconfig);
    let out = context(output_with_timeout(cmd, Duration::from_secs(30)));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "audit output is not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {v}"))
}

fn evidence_of(v: &Value, id: &str) -> Vec<String> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == id)
        .map(|f| f["evidence"].as_str().unwrap().to_owned())
        .collect()
}

/// Debian's real etcd on a worker (this node, worker-1, has no control-plane role in the
/// fake cluster), its client and peer ports on every address and its metrics beyond
/// loopback: etcd on a node that is not a control-plane node (NM-2003) for the client and the
/// peer port, and its metrics endpoint bound beyond loopback (NM-2002), each naming the
/// process `etcd` and its pid. (etcd, a Go program, binds `0.0.0.0` as the dual-stack `[::]`.)
#[test]
fn real_etcd_on_a_worker_is_found() {
    let lab = setup();
    let cluster = FakeCluster::start(&lab.node, |api| {
        api.apply("nodes", worker_1("203.0.113.0/26"));
        api.apply("nodes", cp_1("203.0.113.64/26"));
    });
    let etcd = Etcd::start(&lab.node, "0.0.0.0", "198.51.100.1", "0.0.0.0");
    let pid = etcd.child.id();
    let v = audit_with_cluster(&lab, cluster.kubeconfig.as_str());
    let who = format!("(etcd, pid {pid})");
    let stray = evidence_of(&v, "NM-2003");
    for want in ["[::]:2379/tcp", "198.51.100.1:2380/tcp"] {
        assert!(
            stray
                .iter()
                .any(|e| e.contains("node worker-1") && e.contains(want) && e.contains(&who)),
            "no NM-2003 for etcd on {want} {who}: {stray:?}\n{v}"
        );
    }
    assert_eq!(stray.len(), 2, "{stray:?}");
    let metrics = evidence_of(&v, "NM-2002");
    assert_eq!(
        metrics,
        vec![format!(
            "group etcd-metrics listening on [::]:2381/tcp {who}"
        )],
        "{v}"
    );
    assert!(
        check(&v, "identity")["detail"]
            .as_str()
            .unwrap()
            .contains("node worker-1 is not a control-plane node"),
        "{v}"
    );
    drop(etcd);
    cluster.stop();
}

/// The same etcd on loopback only, on a control-plane node (worker-1 labelled
/// control-plane): the audit sees it (the listeners check names it) and finds nothing about
/// it.
#[test]
fn real_etcd_on_loopback_on_a_control_plane_node_is_no_finding() {
    let lab = setup();
    let cluster = FakeCluster::start(&lab.node, |api| {
        api.apply(
            "nodes",
            node_object(
                "worker-1",
                &[("InternalIP", "198.51.100.1")],
                &["203.0.113.0/26"],
                &["control-plane"],
            ),
        );
    });
    let etcd = Etcd::start(&lab.node, "127.0.0.1", "127.0.0.1", "127.0.0.1");
    let pid = etcd.child.id();
    let v = audit_with_cluster(&lab, cluster.kubeconfig.as_str());
    let listeners = check(&v, "listeners")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    for port in [2379, 2380, 2381] {
        let seen = format!("127.0.0.1:{port}/tcp (etcd, pid {pid})");
        assert!(listeners.contains(&seen), "{seen} not seen: {listeners}");
    }
    for id in ["NM-2002", "NM-2003"] {
        assert_eq!(evidence_of(&v, id), Vec::<String>::new(), "{v}");
    }
    assert!(
        check(&v, "identity")["detail"]
            .as_str()
            .unwrap()
            .contains("node worker-1 is a control-plane node"),
        "{v}"
    );
    drop(etcd);
    cluster.stop();
}

/// A node whose firewall is iptables-legacy (the kernel's x_tables, which iptables-nft and
/// nft do not show): the audit reads `iptables-legacy-save` too, so the kubelet port that
/// `node-monitor firewall`'s rules close there is not reported open (NM-2040), for IPv4 and
/// IPv6; before they are loaded, it is.
#[test]
fn audit_reads_an_iptables_legacy_firewall() {
    daemon::require_root_and_tools(&["iptables-legacy-restore", "ip6tables-legacy-restore"]);
    let lab = setup();
    let dir = TempDir::new("posture-legacy");
    let kubelet_open = |v: &Value| {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| {
                f["id"] == "NM-2040"
                    && f["evidence"]
                        .as_str()
                        .unwrap()
                        .starts_with("tcp/10250 (group kubelet)")
            })
            .count()
    };
    let (_, before) = audit(&lab, &["--pin-dir", "/nonexistent"]);
    assert_eq!(kubelet_open(&before), 1, "{before}");
    assert!(
        check(&before, "firewall")["detail"]
            .as_str()
            .unwrap()
            .contains("iptables-legacy, ip6tables-legacy"),
        "{before}"
    );
    for (format, tool) in [
        ("iptables", "iptables-legacy"),
        ("ip6tables", "ip6tables-legacy"),
    ] {
        let (status, rules, stderr) = run_cli(
            Some(&lab.node),
            &["firewall", "--format", format, "--iface", "eth0"],
        );
        assert!(status.success(), "{stderr}");
        let file = dir.file(format);
        std::fs::write(&file, &rules).unwrap();
        load(&lab.node, &format!("{tool}-restore"), &["--noflush"], &file);
        let mut hook = lab.node.command(tool);
        hook.args(["-I", "INPUT", "-j", "NODE-MONITOR"]);
        let out = context(output_with_timeout(hook, Duration::from_secs(10)));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (_, after) = audit(&lab, &["--pin-dir", "/nonexistent"]);
    assert_eq!(kubelet_open(&after), 0, "{after}");
}
