//! Node posture: which of the node's doors are open, checked the way the hardening guide
//! does by hand (`ss -ltpn`, an unauthenticated `curl` to the kubelet, the kubelet's and
//! the API server's settings), as findings with a stable id, a severity, the evidence, the
//! fix and the CIS Kubernetes Benchmark item where there is one. `node-monitor audit` runs it
//! once; see [`crate::firewall`] for the rules that close the doors.
pub mod child;
pub mod identity;
pub mod kubelet;
pub mod listeners;
pub mod netfilter;
pub mod settings;

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::Serialize;

/// How bad a finding is; ordered (defined with the config, which names a minimum).
pub use crate::config::FindingSeverity as Severity;
use crate::{
    config::{Config, NODE_LOCAL_GROUPS, Protocol},
    datapath::FlaggedFlows,
};

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

/// One finding of one audit run, as the sinks get it (`OutputItem::Finding`). Every run
/// sends each of its findings again: a SIEM keeps the node's current state, and a finding
/// that is no longer sent has been fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingEvent {
    /// Unique per document (a UUID v4): ECS `event.id`, OCSF `metadata.uid`, CEF `externalId`.
    pub id: String,
    /// When the run that found it ended.
    pub time: SystemTime,
    pub finding: Finding,
}

impl FindingEvent {
    /// The findings of `report`, one event each, with fresh ids.
    #[must_use]
    pub fn of_report(report: &Report) -> Vec<FindingEvent> {
        report
            .findings
            .iter()
            .map(|f| FindingEvent {
                id: uuid::Uuid::new_v4().to_string(),
                time: report.time,
                finding: f.clone(),
            })
            .collect()
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
    /// The groups whose ports the firewall check looks at, and their allowlists.
    pub config: Config,
    /// `node-subnets` on this node.
    pub node_subnets: Vec<ipnet::IpNet>,
    /// Where a daemon pinned its maps: its counters show which open doors were knocked on.
    pub pin_dir: Option<PathBuf>,
    /// The cluster's identity, for the checks that need it ([`identity`]).
    pub identity: identity::Identity,
    /// Each tool the audit runs (`iptables-save`, `nft`) in a process group of its own, killed
    /// with it when its call ends (the command line). `false` in the daemon's audit process
    /// ([`child`]): the tools stay in that process's group, which the daemon kills whole.
    pub tool_groups: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            proc_root: PathBuf::from("/proc"),
            kubelet_config: None,
            apiserver_manifest: None,
            probe_timeout: Duration::from_secs(3),
            config: Config::default_config(),
            node_subnets: Vec::new(),
            pin_dir: None,
            identity: identity::Identity::default(),
            tool_groups: true,
        }
    }
}

/// The CIS item of a node-local group bound beyond loopback, where there is one.
fn node_local_cis(group: &str) -> Option<&'static str> {
    match group {
        "controller-manager" => Some("1.3.7"),
        "scheduler" => Some("1.4.2"),
        _ => None,
    }
}

/// The config's group watching TCP `port`.
fn tcp_group(cfg: &Config, port: u16) -> Option<&str> {
    cfg.groups
        .iter()
        .find(|g| {
            g.protocols.contains(&Protocol::Tcp)
                && g.ports.iter().any(|r| (r.start..=r.end).contains(&port))
        })
        .map(|g| g.name.as_str())
}

/// Findings on the listeners: the read-only kubelet port open, the ports of the config's
/// node-local groups (health and metrics endpoints, [`NODE_LOCAL_GROUPS`]) bound
/// beyond loopback, where they answer whoever reaches the node.
#[must_use]
pub fn listener_findings(ls: &[listeners::Listener], cfg: &Config) -> Vec<Finding> {
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
        if let Some(group) = tcp_group(cfg, l.port)
            && NODE_LOCAL_GROUPS.contains(&group)
            && !l.loopback_only()
        {
            out.push(Finding::new(
                "NM-2002",
                Severity::Medium,
                "node-local endpoint bound beyond loopback",
                format!("group {group} listening on {}", l.describe()),
                "bind it to 127.0.0.1 (--bind-address=127.0.0.1, --healthz-bind-address, --metrics-bind-address, --listen-metrics-urls)",
                node_local_cis(group),
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
        .filter(|l| tcp_group(&opts.config, l.port).is_some())
        .map(listeners::Listener::describe)
        .collect();
    record(
        &mut checks,
        &mut findings,
        "listeners",
        listener_findings(&ls, &opts.config),
        format!(
            "{} listening sockets, {} on watched ports{}{}",
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
    let (secure, not_after) = kubelet::get_pods(secure_at, true, opts.probe_timeout).await;
    let (readonly, _) = kubelet::get_pods(readonly_at, false, opts.probe_timeout).await;
    let detail = format!(
        "secure port: {secure:?}; read-only port: {readonly:?}; serving certificate valid until {}",
        not_after.and_then(|t| u64::try_from(t).ok()).map_or_else(
            || "unknown".to_owned(),
            |t| crate::record::rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(t))
        )
    );
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut api = kubelet::findings(&secure, secure_at, &readonly, readonly_at);
    api.extend(kubelet::certificate_findings(not_after, secure_at, now));
    record(&mut checks, &mut findings, "kubelet-api", api, detail);

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
    match firewall_check(opts).await {
        Ok((found, detail)) => record(&mut checks, &mut findings, "firewall", found, detail),
        Err(why) => checks.push(skipped("firewall", &why)),
    }
    let local = crate::netif::local_addrs();
    match identity::findings(&opts.identity, &ls, &opts.config, &local) {
        Ok((found, detail)) => record(&mut checks, &mut findings, "identity", found, detail),
        Err(why) => checks.push(skipped(
            "identity",
            &format!("etcd-outside-the-control-plane and NodePort-owner checks skipped: {why}"),
        )),
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

/// Runs `program args` (10 s at most); its stdout, or `None` when it is missing or fails.
///
/// The program runs in a process group of its own, and the whole group is killed when the
/// call ends, however it ends: on its own 10 s bound, and when the audit's timeout drops this
/// future (a hung `iptables-save` wrapper and whatever it started are not left behind, one
/// per hung run).
///
/// Without `own_group` (the daemon's audit process) the program stays in the caller's process
/// group, which the daemon kills whole when the run ends or is given up.
async fn output(program: &str, args: &[&str], own_group: bool) -> Option<String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    if own_group {
        cmd.process_group(0);
    }
    let child = cmd.spawn().ok()?;
    let _group = child
        .id()
        .filter(|_| own_group)
        .and_then(|p| i32::try_from(p).ok())
        .map(KillGroup);
    match tokio::time::timeout(Duration::from_secs(10), child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => {
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        _ => None,
    }
}

/// SIGKILL to a process group on drop (the group of a tool [`output`] ran). The leader itself
/// is killed and reaped by tokio (`kill_on_drop`); this ends what it started.
struct KillGroup(i32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        // ESRCH when the group is already gone: nothing to do.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// For each group's ports: does the node's firewall drop new connections from outside the
/// allowlist (see [`netfilter`])? An open port is a finding; one the data path saw denied
/// sources reach (the pinned counters) is a worse one.
///
/// Both iptables back ends filter at once when a node has rules in each (a host on
/// iptables-legacy, a CNI on iptables-nft, or the reverse): `iptables-save` (the node's or
/// the image's default, nft in the image) and, where present, `iptables-legacy-save` are
/// read, and a port is open only when no back end drops it.
async fn firewall_check(opts: &Options) -> Result<(Vec<Finding>, String), String> {
    let g = opts.tool_groups;
    let v4 = output("iptables-save", &[], g).await;
    let v6 = output("ip6tables-save", &[], g).await;
    let legacy4 = output("iptables-legacy-save", &[], g).await;
    let legacy6 = output("ip6tables-legacy-save", &[], g).await;
    let nft_text = output("nft", &["-j", "list", "ruleset"], g).await;
    if v4.is_none() && v6.is_none() && nft_text.is_none() {
        return Err("none of iptables-save, ip6tables-save, nft could be run".to_owned());
    }
    // Each family's iptables rule sets, one per back end read.
    let ipt4: Vec<netfilter::Iptables> = [&v4, &legacy4]
        .into_iter()
        .map(|t| netfilter::parse_iptables_save(t.as_deref().unwrap_or("")))
        .collect();
    let ipt6: Vec<netfilter::Iptables> = [&v6, &legacy6]
        .into_iter()
        .map(|t| netfilter::parse_iptables_save(t.as_deref().unwrap_or("")))
        .collect();
    let nft = match &nft_text {
        Some(t) => netfilter::parse_nft_json(t, v4.is_some() || v6.is_some())?,
        None => netfilter::Nft::default(),
    };
    let seen = opts
        .pin_dir
        .as_deref()
        .and_then(|d| crate::datapath::pinned_group_counters(d).ok());
    let flagged = opts
        .pin_dir
        .as_deref()
        .and_then(|d| crate::datapath::pinned_flagged_flows(d).ok());
    // The flagged flows still held on `proto`/`ports` of `group`; None without the table.
    let flows_on = |group: &str, proto: Protocol, first: u16, last: u16| {
        flagged.as_ref().map(|f| {
            f.iter()
                .filter(|((g, p, port), _)| {
                    g == group && *p == proto.number() && (first..=last).contains(port)
                })
                .fold(FlaggedFlows::default(), |a, (_, n)| FlaggedFlows {
                    held: a.held + n.held,
                    accepted: a.accepted + n.accepted,
                })
        })
    };
    let denied_seen = |group: &str| -> u64 {
        seen.iter()
            .flatten()
            .filter(|c| c.group == group && c.verdict == node_monitor_common::VERDICT_DENIED)
            .map(|c| c.stats.new_conns)
            .sum()
    };
    let resolved = opts.config.resolve_allowlists(&opts.node_subnets);
    let mut out = Vec::new();
    let mut looked = 0;
    let mut enforced = Vec::new();
    for g in &opts.config.groups {
        // Its own programs drop what the group's allowlist does not allow before any socket
        // sees it: the firewall is not what closes these ports.
        if g.action == crate::config::Action::Drop {
            enforced.push(g.name.as_str());
            continue;
        }
        let nets: Vec<ipnet::IpNet> = resolved
            .iter()
            .filter(|(id, _)| *id == g.id)
            .map(|(_, n)| *n)
            .collect();
        let everyone = |v6: bool| {
            nets.iter()
                .any(|n| n.prefix_len() == 0 && n.addr().is_ipv6() == v6)
        };
        if everyone(false) && everyone(true) {
            continue;
        }
        for proto in &g.protocols {
            for r in &g.ports {
                looked += 1;
                let families = [(&ipt4, false), (&ipt6, true)]
                    .map(|(ipt, v6)| (!everyone(v6)).then(|| open_ports(ipt, &nft, *proto, *r)));
                let fams: Vec<String> = ["IPv4", "IPv6"]
                    .into_iter()
                    .zip(families)
                    .filter_map(|(f, open)| open_family(f, open?))
                    .collect();
                if fams.is_empty() {
                    continue;
                }
                let port = if r.start == r.end {
                    r.start.to_string()
                } else {
                    format!("{}-{}", r.start, r.end)
                };
                let what = format!(
                    "{}/{port} (group {}): no firewall rule drops new connections from outside its allowlist ({})",
                    proto.name(),
                    g.name,
                    fams.join(", ")
                );
                out.push(open_port_finding(
                    what,
                    denied_seen(&g.name),
                    flows_on(&g.name, *proto, r.start, r.end),
                ));
            }
        }
    }
    let sources: Vec<&str> = [
        ("iptables", v4.is_some()),
        ("ip6tables", v6.is_some()),
        ("iptables-legacy", legacy4.is_some()),
        ("ip6tables-legacy", legacy6.is_some()),
        ("nft", nft_text.is_some()),
    ]
    .into_iter()
    .filter(|(_, ok)| *ok)
    .map(|(n, _)| n)
    .collect();
    Ok((
        out,
        format!(
            "{looked} port ranges of groups with an allowlist, read from {}; counters: {}{}",
            sources.join(", "),
            if seen.is_some() { "pinned" } else { "none" },
            if enforced.is_empty() {
                String::new()
            } else {
                format!(
                    "; not looked at, node-monitor drops outside their allowlists (action: drop): {}",
                    enforced.join(", ")
                )
            }
        ),
    ))
}

/// The finding for a port range the firewall leaves open (`what` says which), by what the
/// data path saw there: connections from outside the allowlist that the node accepted
/// (`flows.accepted`, from the pinned flow table: SYN-ACK seen) are critical (NM-2042); new
/// connections from denied sources to the group (`denied`, the pinned counters) high
/// (NM-2041); an open door nobody knocked on, low (NM-2040). `flows`: the flagged flows the
/// pinned table still holds on this range (None: not read). The counters are per group and
/// exact; the table is per port but holds neither old flows nor withheld attempts, so it only
/// adds evidence: a range with none held is still NM-2041 when its group saw denied sources
/// (an attacker who spends the budget on one port must not make another look unvisited).
fn open_port_finding(what: String, denied: u64, flows: Option<FlaggedFlows>) -> Finding {
    const FIX: &str = "load `node-monitor firewall` rules, or set `action: drop` on the group";
    let held = |f: FlaggedFlows| {
        format!(
            "; of the flows from denied sources the data path still holds (recent ones, within the event budgets), {} are to this range",
            f.held
        )
    };
    match flows {
        Some(f) if f.accepted > 0 => Finding::new(
            "NM-2042",
            Severity::Critical,
            "port open in the firewall and it accepted connections from outside its allowlist",
            format!(
                "{what}; the node accepted {} connections from denied sources (SYN-ACK seen, among the flows the data path still holds), of {denied} new connections from denied sources to the group{}",
                f.accepted,
                held(f)
            ),
            FIX,
            None,
        ),
        _ if denied > 0 => Finding::new(
            "NM-2041",
            Severity::High,
            "port open in the firewall and reached from outside its allowlist",
            format!(
                "{what}; the data path saw {denied} new connections from denied sources to the group{}",
                flows.map(held).unwrap_or_default()
            ),
            FIX,
            None,
        ),
        _ => Finding::new(
            "NM-2040",
            Severity::Low,
            "port open in the firewall to sources outside its allowlist",
            what,
            FIX,
            None,
        ),
    }
}

/// Ports of a range evaluated one by one at most; a longer range (a config may name one) is
/// judged by its two ends (ALERTS.md says so; a finding with one end open says "1 of the 2
/// ports looked at").
const PORTS_EVALUATED: u32 = 8192;

/// Of the ports of `range` that the check looks at ([`PORTS_EVALUATED`]), how many a new
/// connection from outside the allowlist reaches (`.0`), and how many it looked at (`.1`).
/// Every port, since a rule may drop some ports of a range and not others: its two ends
/// dropped one by one say nothing of the ports between them.
fn open_ports(
    iptables: &[netfilter::Iptables],
    nft: &netfilter::Nft,
    proto: Protocol,
    range: crate::config::PortRange,
) -> (usize, usize) {
    let ports: Vec<u16> = if u32::from(range.end - range.start) < PORTS_EVALUATED {
        (range.start..=range.end).collect()
    } else {
        vec![range.start, range.end]
    };
    let open = ports
        .iter()
        .filter(|p| open_in_every_back_end(iptables, nft, proto, **p))
        .count();
    (open, ports.len())
}

/// How one family of a range reads in a finding: `None` when no port is open; the family
/// alone when every port looked at is; else how many of them.
fn open_family(family: &str, (open, looked): (usize, usize)) -> Option<String> {
    match open {
        0 => None,
        n if n == looked => Some(family.to_owned()),
        n => Some(format!("{family}: {n} of the {looked} ports looked at")),
    }
}

/// A new connection from outside the allowlist to `proto`/`port` reaches the socket: no
/// iptables back end read (nft-backed, legacy) and no native nft chain drops it. Every back
/// end filters the packet on its own, so one drop closes the port.
fn open_in_every_back_end(
    iptables: &[netfilter::Iptables],
    nft: &netfilter::Nft,
    proto: Protocol,
    port: u16,
) -> bool {
    iptables
        .iter()
        .all(|t| t.fate(proto, port) == netfilter::Fate::Open)
        && nft.fate(proto, port) == netfilter::Fate::Open
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
    fn a_port_dropped_by_any_back_end_is_closed() {
        let drop = |port: u16| {
            netfilter::parse_iptables_save(&format!(
                "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport {port} -j DROP\nCOMMIT\n"
            ))
        };
        let nft = netfilter::Nft::default();
        // iptables-nft's rules close 2379, iptables-legacy's 10250.
        let both = [drop(2379), drop(10250)];
        for (port, open) in [(2379, false), (10250, false), (10255, true)] {
            assert_eq!(
                open_in_every_back_end(&both, &nft, Protocol::Tcp, port),
                open,
                "port {port}"
            );
        }
        // Read from one back end only (the legacy one absent), the legacy drop is unseen.
        assert!(open_in_every_back_end(
            &[drop(2379), netfilter::parse_iptables_save("")],
            &nft,
            Protocol::Tcp,
            10250
        ));
    }

    /// Every port of a range is looked at: its two ends dropped one by one leave the ports
    /// between them open, and a rule on part of the range leaves the rest open.
    #[test]
    fn a_range_is_open_where_any_of_its_ports_is() {
        let rules = |lines: &str| {
            netfilter::parse_iptables_save(&format!(
                "*filter\n:INPUT ACCEPT [0:0]\n{lines}COMMIT\n"
            ))
        };
        let nft = netfilter::Nft::default();
        let range = crate::config::PortRange {
            start: 30000,
            end: 32767,
        };
        let ends = rules(
            "-A INPUT -p tcp -m tcp --dport 30000 -j DROP\n-A INPUT -p tcp -m tcp --dport 32767 -j DROP\n",
        );
        let part = rules("-A INPUT -p tcp -m tcp --dport 30000:31000 -j DROP\n");
        let all = rules("-A INPUT -p tcp -m tcp --dport 30000:32767 -j DROP\n");
        let see = |ipt: netfilter::Iptables| {
            open_family("IPv4", open_ports(&[ipt], &nft, Protocol::Tcp, range))
        };
        assert_eq!(
            see(ends).as_deref(),
            Some("IPv4: 2766 of the 2768 ports looked at")
        );
        assert_eq!(
            see(part).as_deref(),
            Some("IPv4: 1767 of the 2768 ports looked at")
        );
        assert_eq!(see(all), None);
        assert_eq!(see(rules("")).as_deref(), Some("IPv4"));
        // Past the bound, the two ends alone.
        let wide = crate::config::PortRange {
            start: 1,
            end: 65535,
        };
        assert_eq!(open_ports(&[rules("")], &nft, Protocol::Tcp, wide), (2, 2));
    }

    #[test]
    fn an_open_port_is_graded_by_what_reached_it() {
        let f = |denied, flows| {
            let f = open_port_finding("tcp/10250 (group kubelet): open".into(), denied, flows);
            (f.id, f.severity, f.evidence)
        };
        let held = |held, accepted| Some(FlaggedFlows { held, accepted });
        for flows in [None, held(0, 0)] {
            let (id, sev, ev) = f(0, flows);
            assert_eq!(
                (id, sev, ev.as_str()),
                ("NM-2040", Severity::Low, "tcp/10250 (group kubelet): open")
            );
        }
        let (id, sev, ev) = f(3, None);
        assert_eq!((id, sev), ("NM-2041", Severity::High));
        assert!(
            ev.ends_with("saw 3 new connections from denied sources to the group"),
            "{ev}"
        );
        // None of the flows held is to this range: still NM-2041, the group saw denied sources.
        let (id, sev, ev) = f(3, held(0, 0));
        assert_eq!((id, sev), ("NM-2041", Severity::High));
        assert!(ev.ends_with(", 0 are to this range"), "{ev}");
        let (id, _, ev) = f(3, held(2, 0));
        assert_eq!(id, "NM-2041");
        assert!(ev.ends_with(", 2 are to this range"), "{ev}");
        let (id, sev, ev) = f(3, held(2, 2));
        assert_eq!((id, sev), ("NM-2042", Severity::Critical));
        assert!(
            ev.contains("the node accepted 2 connections from denied sources"),
            "{ev}"
        );
        assert!(ev.contains("of 3 new connections"), "{ev}");
        assert!(ev.ends_with(", 2 are to this range"), "{ev}");
    }

    #[test]
    fn listener_findings_by_port_and_bind() {
        let f = listener_findings(
            &[
                l("0.0.0.0", 10255),
                l("127.0.0.1", 10248),
                l("::1", 10259),
                l("0.0.0.0", 10257),
                l("::", 2381),
                l("0.0.0.0", 10250),
            ],
            &Config::default_config(),
        );
        let got: Vec<(&str, &str)> = f.iter().map(|f| (f.id, &*f.evidence)).collect();
        assert_eq!(
            got,
            vec![
                ("NM-2001", "listening: 0.0.0.0:10255/tcp (kubelet, pid 42)"),
                (
                    "NM-2002",
                    "group controller-manager listening on 0.0.0.0:10257/tcp (kubelet, pid 42)"
                ),
                (
                    "NM-2002",
                    "group etcd-metrics listening on [::]:2381/tcp (kubelet, pid 42)"
                ),
            ]
        );
        assert_eq!(f[1].cis, Some("1.3.7"));
    }
}
