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

use node_monitor_lab::{Lab, Netns, output_with_timeout};
use serde_json::Value;

use crate::{
    common::{
        daemon::{self, context, run_cli},
        peers::{TcpOutcome, sa, tcp_connect, tcp_server},
        temp::TempDir,
    },
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
}

/// A closed node: the kubelet refuses anonymous requests, no read-only port, node-local
/// endpoints on loopback, a good kubelet config, and the rules of `node-monitor firewall`
/// loaded into nft: no findings, exit 0.
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
    let (code, v) = audit(
        &lab,
        &[
            "--kubelet-config",
            config.to_str().unwrap(),
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
            ("apiserver-settings", "skipped"),
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
/// protects: the audit, reading the daemon's pinned counters, says the open door was used.
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
    let pin_dir = pin.path.to_str().unwrap().to_owned();
    let (_, v) = audit(&lab, &["--config", cfg.as_str(), "--pin-dir", &pin_dir]);
    drop(context(d.stop()));
    let seen = finding(&v, "NM-2041");
    assert_eq!(seen["severity"], "high");
    let evidence = seen["evidence"].as_str().unwrap();
    assert!(
        evidence.starts_with("tcp/10250 (group kubelet)")
            && evidence.contains("saw 1 new connections from denied sources"),
        "{v}"
    );
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "firewall"
                && c["detail"].as_str().unwrap().contains("counters: pinned")),
        "{v}"
    );
}

/// Runs `tool args input` inside `ns` (bounded).
fn load(ns: &Netns, tool: &str, args: &[&str], input: &Path) {
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
fn listing(ns: &Netns, tool: &str) -> String {
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
