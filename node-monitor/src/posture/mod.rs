//! Node posture: which of the node's doors are open, checked the way the hardening guide
//! does by hand (`ss -ltpn`, an unauthenticated `curl` to the kubelet, the kubelet's and
//! the API server's settings), as findings with a stable id, a severity, the evidence, the
//! fix and the CIS Kubernetes Benchmark item where there is one. `node-monitor audit` runs it
//! once; see [`crate::firewall`] for the rules that close the doors.
pub mod kubelet;
pub mod listeners;
pub mod report;
pub mod settings;

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::Serialize;

use crate::config::Protocol;

/// How bad a finding is; ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable id, `NM-2xxx` (ALERTS.md lists them).
    pub id: &'static str,
    pub severity: Severity,
    pub title: &'static str,
    /// What was seen, where.
    pub evidence: String,
    /// How to close it.
    pub fix: &'static str,
    /// CIS Kubernetes Benchmark item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cis: Option<&'static str>,
}

impl Finding {
    #[must_use]
    pub fn new(
        id: &'static str,
        severity: Severity,
        title: &'static str,
        evidence: String,
        fix: &'static str,
        cis: Option<&'static str>,
    ) -> Finding {
        Finding {
            id,
            severity,
            title,
            evidence,
            fix,
            cis,
        }
    }
}

/// What one check did: `ok`, `findings`, or `skipped` with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: &'static str,
    pub detail: String,
}

/// The result of an audit.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(serialize_with = "serialize_time")]
    pub time: SystemTime,
    pub checks: Vec<Check>,
    pub findings: Vec<Finding>,
}

impl Report {
    /// The highest severity found, if any.
    #[must_use]
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// Where the audit reads from.
#[derive(Debug, Clone)]
pub struct Options {
    /// `/proc` (tests point it elsewhere).
    pub proc_root: PathBuf,
    /// The kubelet config; `None`: the kubelet's `--config`, else the kubeadm path if present.
    pub kubelet_config: Option<PathBuf>,
    /// The API server's static-pod manifest; `None`: the kubeadm path if present.
    pub apiserver_manifest: Option<PathBuf>,
    /// Per HTTP probe.
    pub probe_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            proc_root: PathBuf::from("/proc"),
            kubelet_config: None,
            apiserver_manifest: None,
            probe_timeout: Duration::from_secs(3),
        }
    }
}

/// Ports that serve only the node itself (health and metrics endpoints): bound beyond
/// loopback, they answer whoever reaches the node.
const NODE_LOCAL: [(u16, &str, Option<&str>); 5] = [
    (10248, "kubelet healthz", None),
    (10249, "kube-proxy metrics", None),
    (10257, "kube-controller-manager", Some("1.3.7")),
    (10259, "kube-scheduler", Some("1.4.2")),
    (2381, "etcd metrics", None),
];

/// Findings on the listeners: the read-only kubelet port open, node-local endpoints bound
/// beyond loopback.
#[must_use]
pub fn listener_findings(ls: &[listeners::Listener]) -> Vec<Finding> {
    let mut out = Vec::new();
    for l in ls.iter().filter(|l| l.protocol == Protocol::Tcp) {
        if l.port == kubelet::KUBELET_READONLY_PORT {
            out.push(Finding::new(
                "NM-2001",
                Severity::High,
                "kubelet read-only port open",
                format!("listening: {}", l.describe()),
                "set readOnlyPort: 0 in the kubelet config (or --read-only-port=0)",
                Some("4.2.4"),
            ));
        }
        if let Some((_, what, cis)) = NODE_LOCAL.iter().find(|(p, ..)| *p == l.port)
            && !l.loopback_only()
        {
            out.push(Finding::new(
                "NM-2002",
                Severity::Medium,
                "node-local endpoint bound beyond loopback",
                format!("{what} listening on {}", l.describe()),
                "bind it to 127.0.0.1 (--bind-address=127.0.0.1, --healthz-bind-address, --metrics-bind-address, --listen-metrics-urls)",
                *cis,
            ));
        }
    }
    out
}

/// Runs every check. Never fails: a check that cannot run says so in [`Report::checks`].
pub async fn audit(opts: &Options) -> Report {
    let mut checks = Vec::new();
    let mut findings = Vec::new();
    let (ls, bad) = listeners::read(&opts.proc_root);
    let watched: Vec<String> = ls
        .iter()
        .filter(|l| is_catalog_port(l.port))
        .map(listeners::Listener::describe)
        .collect();
    record(
        &mut checks,
        &mut findings,
        "listeners",
        listener_findings(&ls),
        format!(
            "{} listening sockets, {} on catalog ports{}{}",
            ls.len(),
            watched.len(),
            if watched.is_empty() {
                String::new()
            } else {
                format!(": {}", watched.join(", "))
            },
            if bad > 0 {
                format!("; {bad} unreadable lines")
            } else {
                String::new()
            }
        ),
    );

    let secure_at = kubelet::reach(&ls, kubelet::KUBELET_PORT);
    let readonly_at = kubelet::reach(&ls, kubelet::KUBELET_READONLY_PORT);
    let secure = kubelet::get_pods(secure_at, true, opts.probe_timeout).await;
    let readonly = kubelet::get_pods(readonly_at, false, opts.probe_timeout).await;
    let detail = format!("secure port: {secure:?}; read-only port: {readonly:?}");
    record(
        &mut checks,
        &mut findings,
        "kubelet-api",
        kubelet::findings(&secure, secure_at, &readonly, readonly_at),
        detail,
    );

    // The kubelet's settings: its file, then its flags over it.
    let cmdline = settings::kubelet_cmdline(&opts.proc_root);
    let config_path = opts
        .kubelet_config
        .clone()
        .or_else(|| {
            cmdline
                .as_deref()
                .and_then(settings::kubelet_config_flag)
                .map(PathBuf::from)
        })
        .or_else(|| existing(settings::DEFAULT_KUBELET_CONFIG));
    match (&config_path, &cmdline) {
        (None, None) => checks.push(skipped(
            "kubelet-settings",
            "no kubelet process and no kubelet config file (--kubelet-config)",
        )),
        _ => {
            let mut auth = settings::KubeletAuth::default();
            let mut sources = Vec::new();
            let mut error = None;
            if let Some(p) = &config_path {
                match settings::kubelet_config(p) {
                    Ok(a) => {
                        auth = a;
                        sources.push(p.display().to_string());
                    }
                    Err(e) => error = Some(e),
                }
            }
            if let Some(args) = &cmdline {
                settings::apply_kubelet_flags(&mut auth, args);
                sources.push("kubelet command line".to_owned());
            }
            match error {
                Some(e) if cmdline.is_none() => checks.push(skipped("kubelet-settings", &e)),
                _ => record(
                    &mut checks,
                    &mut findings,
                    "kubelet-settings",
                    settings::kubelet_findings(&auth, &sources.join(" + ")),
                    format!(
                        "from {}{}",
                        sources.join(" + "),
                        error.map_or_else(String::new, |e| format!(" (config file: {e})"))
                    ),
                ),
            }
        }
    }

    match opts
        .apiserver_manifest
        .clone()
        .or_else(|| existing(settings::DEFAULT_APISERVER_MANIFEST))
    {
        None => checks.push(skipped(
            "apiserver-settings",
            "no API server manifest on this node (--apiserver-manifest)",
        )),
        Some(p) => match settings::apiserver_findings(&p) {
            Ok(f) => record(
                &mut checks,
                &mut findings,
                "apiserver-settings",
                f,
                format!("from {}", p.display()),
            ),
            Err(e) => checks.push(skipped("apiserver-settings", &e)),
        },
    }
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(b.id)));
    Report {
        time: SystemTime::now(),
        checks,
        findings,
    }
}

fn serialize_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&crate::record::rfc3339(*t))
}

fn record(
    checks: &mut Vec<Check>,
    findings: &mut Vec<Finding>,
    name: &'static str,
    found: Vec<Finding>,
    detail: String,
) {
    let status = if found.is_empty() { "ok" } else { "findings" };
    checks.push(Check {
        name,
        status,
        detail,
    });
    findings.extend(found);
}

fn skipped(name: &'static str, why: &str) -> Check {
    Check {
        name,
        status: "skipped",
        detail: why.to_owned(),
    }
}

fn existing(p: &str) -> Option<PathBuf> {
    Path::new(p).exists().then(|| PathBuf::from(p))
}

/// The well-known control-plane and node ports (the NodePort range aside).
fn is_catalog_port(p: u16) -> bool {
    matches!(p, 2379..=2381 | 6443 | 10248..=10250 | 10255..=10257 | 10259)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(addr: &str, port: u16) -> listeners::Listener {
        listeners::Listener {
            protocol: Protocol::Tcp,
            addr: addr.parse().unwrap(),
            port,
            inode: 1,
            process: Some((42, "kubelet".into())),
        }
    }

    #[test]
    fn listener_findings_by_port_and_bind() {
        let f = listener_findings(&[
            l("0.0.0.0", 10255),
            l("127.0.0.1", 10248),
            l("::1", 10259),
            l("0.0.0.0", 10257),
            l("::", 2381),
            l("0.0.0.0", 10250),
        ]);
        let got: Vec<(&str, &str)> = f.iter().map(|f| (f.id, &*f.evidence)).collect();
        assert_eq!(
            got,
            vec![
                ("NM-2001", "listening: 0.0.0.0:10255/tcp (kubelet, pid 42)"),
                (
                    "NM-2002",
                    "kube-controller-manager listening on 0.0.0.0:10257/tcp (kubelet, pid 42)"
                ),
                (
                    "NM-2002",
                    "etcd metrics listening on [::]:2381/tcp (kubelet, pid 42)"
                ),
            ]
        );
        assert_eq!(f[1].cis, Some("1.3.7"));
    }
}
