//! The validated model of a configuration: port groups and their allowlists, sampling, limits,
//! alert settings, the metrics endpoint and the attach mode. Sinks live in `outputs`.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr},
};

use ipnet::IpNet;

use super::outputs::SinkSpec;

/// Number of user-defined groups: ids 1..=63 (id 0 means "port not watched").
pub const MAX_USER_GROUPS: usize = node_monitor_common::MAX_GROUPS - 1;
const _: () = assert!(MAX_USER_GROUPS == 63 && MAX_USER_GROUPS <= u8::MAX as usize);

/// `pod_interfaces` when the file does not say: the host-side interfaces of the common CNIs
/// (Calico, Cilium, the bridge/ptp plugins and kindnet, GKE, the AWS VPC CNI, Flannel's bridge).
/// Cilium's own devices (`cilium_host`, `cilium_net`, `cilium_vxlan`) match `cilium_*`.
pub const DEFAULT_POD_INTERFACES: [&str; 8] = [
    "cali*", "lxc*", "veth*", "gke*", "eni*", "cni*", "flannel*", "cilium_*",
];

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Port groups in file order; `groups[i].id == i as u8 + 1`.
    pub groups: Vec<Group>,
    pub sampling: Sampling,
    pub limits: Limits,
    /// Interface names or globs to attach to (`eth*`, `ens5`). Empty (the default): the
    /// interfaces that carry a default route; the entry [`DEFAULT_ROUTE`](crate::config::DEFAULT_ROUTE)
    /// adds them beside the others. The CLI `--iface` overrides.
    pub interfaces: Vec<String>,
    /// Host-side interfaces of pods (CNI veths and bridges: `cali*`, `lxc*`, ...), watched as
    /// well with tc (ingress and egress) whatever `attach` says, with hotplug: a pod reaching
    /// its own node's kubelet arrives there, never on the uplink. Their addresses never join
    /// `node-subnets`. Default [`DEFAULT_POD_INTERFACES`]; `[]` turns it off.
    pub pod_interfaces: Vec<String>,
    /// The hook; `None` when the file does not say (then `xdp`, or the CLI `--attach`).
    pub attach: Option<AttachMode>,
    pub alerts: AlertSettings,
    /// Never empty: `[stdout, ecs]` when the file has no `sinks`.
    pub sinks: Vec<SinkSpec>,
    pub metrics: MetricsSettings,
    /// Identity from the Kubernetes API (`cluster.rs`).
    pub cluster: super::cluster::ClusterSettings,
    /// The periodic posture audit (`audit.rs`).
    pub audit: super::audit::AuditSettings,
}

/// Sampling of allowed flows into flow records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampling {
    /// Record one allowed flow in N (default 100; 0 = record none).
    pub allowed_flows_one_in: u32,
}

impl Sampling {
    pub const DEFAULT: Sampling = Sampling {
        allowed_flows_one_in: 100,
    };
}

impl Default for Sampling {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Sizes of the kernel maps and timeouts. See `CONFIG.md` for the bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// LRU flow table entries: default 65536, `1024..=16_777_216`.
    pub flows: u32,
    /// Events per source per second (token bucket): default 20; 0 = unlimited.
    pub events_per_source_per_second: u32,
    /// How long to wait for the node's answer (SYN-ACK / RST): default 1000, `1..=60_000`.
    pub answer_timeout_ms: u64,
    /// A 5-tuple idle this long starts a new connection (UDP "first packet", TCP SYN
    /// retransmit window): default 30000, `1..=3_600_000`.
    pub flow_idle_timeout_ms: u64,
    /// Per-source token-bucket table entries: default 16384, `256..=16_777_216`.
    pub sources: u32,
    /// Event ring buffer size: default 1 MiB; a power of two, 4096 (a page) to 1 GiB.
    pub ring_buffer_bytes: u32,
    /// Maximum LPM trie entries per address family: default 16384, `1..=16_777_216`.
    pub allow_entries: u32,
    /// Events per port group per second, node-wide (token buckets shared by all CPUs, one
    /// for flagged and one for allowed events): default 1000; 0 = unlimited.
    pub events_per_group_per_second: u32,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        flows: 65536,
        events_per_source_per_second: 20,
        answer_timeout_ms: 1000,
        flow_idle_timeout_ms: 30_000,
        sources: 16384,
        ring_buffer_bytes: 1 << 20,
        allow_entries: 16384,
        events_per_group_per_second: 1000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A named set of ports with its allowlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The YAML key; `[a-z0-9][a-z0-9_-]{0,62}`.
    pub name: String,
    /// `1..=63`, from the position in the file.
    pub id: u8,
    /// Non-empty, no duplicates.
    pub protocols: Vec<Protocol>,
    /// Non-empty.
    pub ports: Vec<PortRange>,
    /// May be empty: then every source is flagged.
    pub allow: Vec<AllowEntry>,
    pub action: Action,
    /// Every new connection of this group feeds sweep detection (`alerts.sweep`). When the
    /// file does not say: true for a group of more than one port, false for a single port
    /// (see [`default_detect_sweeps`]).
    pub detect_sweeps: bool,
}

/// `detect_sweeps` of a group whose config does not set it: on for a group of more than one
/// port (a sweep needs several ports to sweep), off for a single port.
pub fn default_detect_sweeps(ports: &[PortRange]) -> bool {
    // Entries may overlap (`[10250, "10250"]` is one port): more than one port means some
    // entry holds a port other than the first one.
    let Some(first) = ports.first().map(|r| r.start) else {
        return false;
    };
    ports.iter().any(|r| r.start != first || r.end != first)
}

/// The groups of the embedded catalog that are meant to be reached from the node itself only.
pub const NODE_LOCAL_GROUPS: &[&str] = &[
    "scheduler",
    "controller-manager",
    "kubelet-healthz",
    "etcd-metrics",
    "kube-proxy-metrics",
];

/// The transport protocol: of a group's ports in the config, and of every record the data
/// path reports (the kernel watches TCP and UDP only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Tcp, Protocol::Udp];

    /// The one spelling (`tcp` / `udp`): YAML, metrics labels, and every alert format.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub fn from_name(name: &str) -> Option<Protocol> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The IANA protocol number (Community ID, OCSF `protocol_num`).
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Protocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// What to do with a new connection from a source that is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Count and report it (the default).
    Monitor,
    /// Drop it (`XDP_DROP` / `TC_ACT_SHOT`), and report it.
    Drop,
}

impl Action {
    pub const ALL: [Action; 2] = [Action::Monitor, Action::Drop];

    /// The YAML spelling (`monitor` / `drop`).
    pub const fn name(self) -> &'static str {
        match self {
            Action::Monitor => "monitor",
            Action::Drop => "drop",
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An inclusive port range; a single port has `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub const fn single(port: u16) -> PortRange {
        PortRange {
            start: port,
            end: port,
        }
    }

    pub fn contains(self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// One entry of a group's `allow` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowEntry {
    /// A CIDR or a bare IP (as /32 or /128), as written (host bits are cleared on resolve).
    Cidr(IpNet),
    /// A named set resolved at run time.
    Set(SymbolicSet),
    /// `{pods: {namespace, selector}}`: the IPs of the pods of a namespace whose labels
    /// match, resolved from the cluster (issue 8).
    Pods(PodSelector),
}

/// The pods an allow entry names: a namespace and an equality label selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodSelector {
    pub namespace: String,
    /// `key=value` pairs, all of which a pod's labels must hold; sorted, no duplicates.
    pub labels: Vec<(String, String)>,
}

impl fmt::Display for PodSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{pods: {{namespace: {}, selector: \"", self.namespace)?;
        for (i, (k, v)) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        f.write_str("\"}}")
    }
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowEntry::Cidr(net) => write!(f, "{net}"),
            AllowEntry::Set(set) => f.write_str(set.name()),
            AllowEntry::Pods(sel) => write!(f, "{sel}"),
        }
    }
}

/// A symbolic allow set. To add one: a variant, its row in [`SymbolicSet::ALL`] and
/// [`SymbolicSet::name`], its expansion in [`Config::resolve_allowlists`], and a line in
/// `CONFIG.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolicSet {
    /// `localhost`: 127.0.0.0/8 and ::1/128.
    Localhost,
    /// `node-subnets`: the IP prefixes configured on the interfaces the monitor is attached
    /// to (resolved by the daemon at run time).
    NodeSubnets,
    /// `control-plane-nodes`: the addresses of the nodes labelled
    /// `node-role.kubernetes.io/control-plane` (from the cluster).
    ControlPlaneNodes,
    /// `nodes`: the InternalIP and ExternalIP addresses of every node (from the cluster).
    Nodes,
    /// `pod-cidrs`: every node's `spec.podCIDRs` (from the cluster).
    PodCidrs,
    /// `apiserver-endpoints`: the addresses of the EndpointSlices of `default/kubernetes`.
    ApiserverEndpoints,
}

impl SymbolicSet {
    /// Every known set, in the order error messages list them.
    pub const ALL: [SymbolicSet; 6] = [
        SymbolicSet::Localhost,
        SymbolicSet::NodeSubnets,
        SymbolicSet::ControlPlaneNodes,
        SymbolicSet::Nodes,
        SymbolicSet::PodCidrs,
        SymbolicSet::ApiserverEndpoints,
    ];

    /// The YAML spelling.
    pub const fn name(self) -> &'static str {
        match self {
            SymbolicSet::Localhost => "localhost",
            SymbolicSet::NodeSubnets => "node-subnets",
            SymbolicSet::ControlPlaneNodes => "control-plane-nodes",
            SymbolicSet::Nodes => "nodes",
            SymbolicSet::PodCidrs => "pod-cidrs",
            SymbolicSet::ApiserverEndpoints => "apiserver-endpoints",
        }
    }

    /// Resolved from the Kubernetes API (the others are known without a cluster).
    pub const fn from_cluster(self) -> bool {
        !matches!(self, SymbolicSet::Localhost | SymbolicSet::NodeSubnets)
    }

    pub fn from_name(name: &str) -> Option<SymbolicSet> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The known names, comma-separated, for error messages.
    pub(super) fn known_names() -> String {
        Self::ALL.map(SymbolicSet::name).join(", ")
    }
}

impl fmt::Display for SymbolicSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Alert rule settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSettings {
    /// Repeats of the same rule, source and group within this window fold into one
    /// follow-up alert with a count.
    pub dedup_window: std::time::Duration,
    /// A source touching at least this many distinct ports of a sweep-watched group ...
    pub sweep_min_ports: u32,
    /// ... within this window raises a sweep alert.
    pub sweep_window: std::time::Duration,
    /// A source whose flagged connections reach at least this many distinct ports, of at
    /// least two groups ...
    pub scan_min_ports: u32,
    /// ... within this window raises a port scan alert (NM-1011).
    pub scan_window: std::time::Duration,
    /// Flood alerts aggregate rate-limited and ring-buffer losses over this window.
    pub flood_window: std::time::Duration,
    /// At most this many connection alerts (each the first of its dedup series) per port
    /// group and `flood_window`; past it, the group's connection alerts fold into its flood
    /// alert (NM-1020, `folded_alerts`). 0: no cap.
    pub connection_alerts_per_group: u32,
}

/// The metrics and health HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    pub listen: std::net::SocketAddr,
    /// HTTPS with this certificate and key (re-read when the files change), and client
    /// certificates checked against `client_ca` when it is set. `None`: plain HTTP.
    pub tls: Option<crate::tls::ServerFiles>,
    /// `/metrics` (and every path but `/healthz` and `/readyz`) wants
    /// `Authorization: Bearer <the file's token>`; the file is re-read when it changes.
    pub bearer_token_file: Option<std::path::PathBuf>,
}

impl AlertSettings {
    pub const DEFAULT: AlertSettings = AlertSettings {
        dedup_window: std::time::Duration::from_secs(60),
        sweep_min_ports: 10,
        sweep_window: std::time::Duration::from_secs(60),
        scan_min_ports: 5,
        scan_window: std::time::Duration::from_secs(60),
        flood_window: std::time::Duration::from_secs(10),
        connection_alerts_per_group: 10,
    };
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl MetricsSettings {
    /// `127.0.0.1:9630`.
    pub const DEFAULT: MetricsSettings = MetricsSettings {
        listen: std::net::SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9630),
        tls: None,
        bearer_token_file: None,
    };
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The ingress hook, as the config names it (`attach: xdp | tc`).
/// Also the `--attach` flag's values (the command line overrides the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum AttachMode {
    /// XDP on ingress (native, else generic), tc on egress. The default.
    Xdp,
    /// tc on ingress and egress (tcx where the kernel has it).
    Tc,
}

impl AttachMode {
    pub const ALL: [AttachMode; 2] = [AttachMode::Xdp, AttachMode::Tc];

    pub const fn name(self) -> &'static str {
        match self {
            AttachMode::Xdp => "xdp",
            AttachMode::Tc => "tc",
        }
    }

    pub fn from_name(name: &str) -> Option<AttachMode> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
