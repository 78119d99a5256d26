//! Configuration: the YAML schema (documented in `CONFIG.md`), its defaults, validation with
//! `file:line:column: field: message` errors, and the tables derived from it that the
//! datapath writes (port → group id, allowlist prefixes).
//!
//! Parsing happens in two steps. Serde reads the YAML into `Raw*` structs that keep the
//! source location of every value (`serde_saphyr::Spanned`) and reject unknown fields; then
//! [`Validator`] checks the values and builds the public [`Config`], so that every semantic
//! error points at the offending value too.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_saphyr::{DefaultMessageFormatter, Localizer, Location, MessageFormatter, Spanned};
use sha2::{Digest, Sha256};

/// The embedded default configuration (the port catalog), used when no config file is given.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("default-config.yaml");

/// Number of user-defined groups: ids 1..=63 (id 0 means "port not watched").
pub const MAX_USER_GROUPS: usize = node_monitor_common::MAX_GROUPS - 1;
const _: () = assert!(MAX_USER_GROUPS == 63 && MAX_USER_GROUPS <= u8::MAX as usize);

/// Origin used in errors about the embedded default.
const DEFAULT_ORIGIN: &str = "<embedded default config>";

/// Entries in each port table: one per port number.
const PORT_TABLE_LEN: usize = 1 << 16;

/// What `localhost` stands for.
const LOCALHOST_V4: IpNet = IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8));
const LOCALHOST_V6: IpNet = IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128));

// ---------------------------------------------------------------------------------------------
// Public model
// ---------------------------------------------------------------------------------------------

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Port groups in file order; `groups[i].id == i as u8 + 1`.
    pub groups: Vec<Group>,
    pub sampling: Sampling,
    pub limits: Limits,
    /// Interface names or globs to attach to (`eth*`, `ens5`). Empty (the default): the
    /// interfaces that carry a default route. The CLI `--iface` overrides.
    pub interfaces: Vec<String>,
    /// The hook; `None` when the file does not say (then `xdp`, or the CLI `--attach`).
    pub attach: Option<AttachKind>,
    pub alerts: AlertSettings,
    /// Never empty: `[stdout, ecs]` when the file has no `sinks`.
    pub sinks: Vec<SinkSpec>,
    pub metrics: MetricsSettings,
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
    /// Every new connection of this group feeds sweep detection (`alerts.sweep`).
    pub detect_sweeps: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Tcp, Protocol::Udp];

    /// The YAML spelling (`tcp` / `udp`).
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub fn from_name(name: &str) -> Option<Protocol> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowEntry::Cidr(net) => write!(f, "{net}"),
            AllowEntry::Set(set) => f.write_str(set.name()),
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
}

impl SymbolicSet {
    /// Every known set, in the order error messages list them.
    pub const ALL: [SymbolicSet; 2] = [SymbolicSet::Localhost, SymbolicSet::NodeSubnets];

    /// The YAML spelling.
    pub const fn name(self) -> &'static str {
        match self {
            SymbolicSet::Localhost => "localhost",
            SymbolicSet::NodeSubnets => "node-subnets",
        }
    }

    pub fn from_name(name: &str) -> Option<SymbolicSet> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The known names, comma-separated, for error messages.
    fn known_names() -> String {
        Self::ALL.map(SymbolicSet::name).join(", ")
    }
}

impl fmt::Display for SymbolicSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A configuration error that names the file, the position of the offending value (1-based,
/// when known) and the dotted path of the field, such as `groups.kubelet.allow[1]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", DisplayConfigError(self))]
pub struct ConfigError {
    pub origin: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: String,
    pub message: String,
}

/// `{origin}:{line}:{column}: {field}: {message}`, or `{origin}: {field}: {message}` when the
/// position is not known; `{field}: ` is left out when the error concerns no field (I/O).
struct DisplayConfigError<'a>(&'a ConfigError);

impl fmt::Display for DisplayConfigError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        f.write_str(&e.origin)?;
        if let Some(line) = e.line {
            write!(f, ":{line}")?;
            if let Some(column) = e.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !e.field.is_empty() {
            write!(f, "{}: ", e.field)?;
        }
        f.write_str(&e.message)
    }
}

// ---------------------------------------------------------------------------------------------
// Config API
// ---------------------------------------------------------------------------------------------

impl Config {
    /// The embedded default (the port catalog of `default-config.yaml`).
    ///
    /// # Panics
    ///
    /// Never in a tested build: a unit test parses the embedded file.
    #[must_use]
    pub fn default_config() -> Config {
        // The embedded file is covered by unit tests, so this cannot fail in a tested build.
        Config::from_yaml(DEFAULT_CONFIG_YAML, DEFAULT_ORIGIN)
            .unwrap_or_else(|e| panic!("the embedded default config is invalid: {e}"))
    }

    /// Parses and validates `text`; `origin` (usually the file name) prefixes every error.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] at the first problem: YAML syntax, an unknown field, a value out of
    /// range or of the wrong type, or two groups that share a port and protocol.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let raw = parse_raw(text, origin)?.unwrap_or_default();
        Validator { origin }.config(raw)
    }

    /// Reads and validates the file at `path`.
    ///
    /// # Errors
    ///
    /// As [`Config::from_yaml`], with the path as origin; a file that cannot be read is a
    /// [`ConfigError`] too, without a position.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: None,
            column: None,
            field: String::new(),
            message: format!("cannot read the config file: {e}"),
        })?;
        Config::from_yaml(&text, &origin)
    }

    /// A canonical, line-oriented text form of the config: what [`Config::digest`] hashes.
    /// Two configs that mean the same thing (whatever their YAML layout, comments or quoting)
    /// have the same canonical form.
    #[must_use]
    pub fn canonical(&self) -> String {
        fn join<T: fmt::Display>(items: &[T]) -> String {
            items
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }
        let mut out = String::from("node-monitor-config/2\n");
        for g in &self.groups {
            out.push_str(&format!(
                "group {} {} protocols={} ports={} allow={} action={} detect_sweeps={}\n",
                g.id,
                g.name,
                join(&g.protocols),
                join(&g.ports),
                join(&g.allow),
                g.action,
                g.detect_sweeps
            ));
        }
        out.push_str(&format!(
            "sampling allowed_flows_one_in={}\n",
            self.sampling.allowed_flows_one_in
        ));
        let l = &self.limits;
        out.push_str(&format!(
            "limits flows={} events_per_source_per_second={} answer_timeout_ms={} \
             flow_idle_timeout_ms={} sources={} ring_buffer_bytes={} allow_entries={}\n",
            l.flows,
            l.events_per_source_per_second,
            l.answer_timeout_ms,
            l.flow_idle_timeout_ms,
            l.sources,
            l.ring_buffer_bytes,
            l.allow_entries
        ));
        out.push_str(&format!(
            "interfaces {}\n",
            if self.interfaces.is_empty() {
                "(default-route)".to_owned()
            } else {
                self.interfaces.join(",")
            }
        ));
        out.push_str(&format!(
            "attach {}\n",
            self.attach.map_or("(default)", AttachKind::name)
        ));
        let a = &self.alerts;
        out.push_str(&format!(
            "alerts dedup_window_s={} sweep_min_ports={} sweep_window_s={} flood_window_s={}\n",
            a.dedup_window.as_secs(),
            a.sweep_min_ports,
            a.sweep_window.as_secs(),
            a.flood_window.as_secs()
        ));
        for s in &self.sinks {
            out.push_str(&format!(
                "sink {} type={} format={} queue={} flows={}",
                s.name,
                s.kind.type_name(),
                s.format,
                s.queue,
                s.flows
            ));
            match &s.kind {
                SinkKind::Stdout => {}
                SinkKind::File {
                    path,
                    max_size_bytes,
                    keep,
                } => out.push_str(&format!(
                    " path={} max_size_bytes={max_size_bytes} keep={keep}",
                    path.display()
                )),
                SinkKind::Syslog { transport } => out.push_str(&format!(" address={transport}")),
                SinkKind::Http {
                    url,
                    batch_max,
                    batch_interval,
                    timeout,
                    max_retries,
                    headers,
                } => {
                    // Header values are often secrets: the canonical form carries a hash of
                    // each, which is enough for the digest to change when one does.
                    let headers: Vec<String> = headers
                        .iter()
                        .map(|(n, v)| {
                            let h = Sha256::digest(v.as_bytes());
                            let h: String = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
                            format!("{}:sha256:{h}", n.to_ascii_lowercase())
                        })
                        .collect();
                    out.push_str(&format!(
                        " url={url} batch_max={batch_max} batch_interval_ms={} timeout_ms={} \
                         max_retries={max_retries} headers={}",
                        batch_interval.as_millis(),
                        timeout.as_millis(),
                        headers.join(",")
                    ));
                }
            }
            out.push('\n');
        }
        out.push_str(&format!("metrics listen={}\n", self.metrics.listen));
        out
    }

    /// A short stable digest for logs: the first 16 hex digits of the SHA-256 of
    /// [`Config::canonical`].
    #[must_use]
    pub fn digest(&self) -> String {
        let hash = Sha256::digest(self.canonical().as_bytes());
        hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// Resolves the allow lists into concrete `(group id, prefix)` pairs, in group order then
    /// list order. `node_subnets` are the prefixes of the attached interfaces. Prefixes are
    /// normalized (host bits cleared) and each pair appears once.
    #[must_use]
    pub fn resolve_allowlists(&self, node_subnets: &[IpNet]) -> Vec<(u8, IpNet)> {
        let localhost = [LOCALHOST_V4, LOCALHOST_V6];
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for g in &self.groups {
            for entry in &g.allow {
                let nets: &[IpNet] = match entry {
                    AllowEntry::Cidr(net) => std::slice::from_ref(net),
                    AllowEntry::Set(SymbolicSet::Localhost) => &localhost,
                    AllowEntry::Set(SymbolicSet::NodeSubnets) => node_subnets,
                };
                for net in nets {
                    let pair = (g.id, net.trunc());
                    if seen.insert(pair) {
                        out.push(pair);
                    }
                }
            }
        }
        out
    }

    /// The port → group id tables `(tcp, udp)`, 65536 entries each (0 = not watched).
    #[must_use]
    pub fn port_tables(&self) -> (Vec<u8>, Vec<u8>) {
        let mut tcp = vec![node_monitor_common::GROUP_NONE; PORT_TABLE_LEN];
        let mut udp = vec![node_monitor_common::GROUP_NONE; PORT_TABLE_LEN];
        for g in &self.groups {
            for proto in &g.protocols {
                let table = match proto {
                    Protocol::Tcp => &mut tcp,
                    Protocol::Udp => &mut udp,
                };
                for range in &g.ports {
                    table[usize::from(range.start)..=usize::from(range.end)].fill(g.id);
                }
            }
        }
        (tcp, udp)
    }

    /// The group with this id (1-based), if any.
    #[must_use]
    pub fn group_by_id(&self, id: u8) -> Option<&Group> {
        let index = usize::from(id).checked_sub(1)?;
        self.groups.get(index).filter(|g| g.id == id)
    }
}

// ---------------------------------------------------------------------------------------------
// Raw (serde) layer: the YAML as written, with locations
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    groups: Option<RawGroups>,
    sampling: Option<RawSampling>,
    limits: Option<RawLimits>,
    interfaces: Option<Spanned<Vec<Spanned<String>>>>,
    attach: Option<Spanned<String>>,
    alerts: Option<RawAlerts>,
    sinks: Option<Spanned<Vec<Spanned<RawSink>>>>,
    metrics: Option<RawMetrics>,
}

/// The `groups` mapping, in file order.
#[derive(Debug, Default)]
struct RawGroups(Vec<(Spanned<String>, RawGroup)>);

thread_local! {
    /// The group whose value is being read, so that an error inside it can be reported as
    /// `groups.<name>....`: the path tracker cannot see a `Spanned` key.
    static CURRENT_GROUP: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn set_current_group(name: Option<String>) {
    CURRENT_GROUP.with(|c| *c.borrow_mut() = name);
}

impl<'de> Deserialize<'de> for RawGroups {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct GroupsVisitor;
        impl<'de> Visitor<'de> for GroupsVisitor {
            type Value = RawGroups;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of group name to group")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawGroups, A::Error> {
                let mut groups = Vec::new();
                loop {
                    set_current_group(None);
                    let Some(name) = map.next_key::<Spanned<String>>()? else {
                        break;
                    };
                    set_current_group(Some(name.value.clone()));
                    let group = map.next_value::<RawGroup>()?;
                    groups.push((name, group));
                }
                set_current_group(None);
                Ok(RawGroups(groups))
            }
        }
        deserializer.deserialize_map(GroupsVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    protocols: Option<Spanned<Vec<Spanned<String>>>>,
    ports: Option<Spanned<Vec<Spanned<RawPort>>>>,
    allow: Option<Vec<Spanned<String>>>,
    action: Option<Spanned<String>>,
    detect_sweeps: Option<Spanned<bool>>,
}

/// A port entry as written: an integer or a string (`"10250"`, `"30000-32767"`).
#[derive(Debug)]
enum RawPort {
    Int(i128),
    Str(String),
}

impl<'de> Deserialize<'de> for RawPort {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = RawPort;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a port such as 10250 or a range such as "30000-32767""#)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPort, E> {
                Ok(RawPort::Int(i128::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPort, E> {
                Ok(RawPort::Int(i128::from(v)))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawPort, E> {
                Ok(RawPort::Int(v))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawPort, E> {
                Ok(RawPort::Int(i128::try_from(v).unwrap_or(i128::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPort, E> {
                Ok(RawPort::Str(v.to_owned()))
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSampling {
    allowed_flows_one_in: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    flows: Option<Spanned<u64>>,
    events_per_source_per_second: Option<Spanned<u64>>,
    answer_timeout_ms: Option<Spanned<u64>>,
    flow_idle_timeout_ms: Option<Spanned<u64>>,
    sources: Option<Spanned<u64>>,
    ring_buffer_bytes: Option<Spanned<u64>>,
    allow_entries: Option<Spanned<u64>>,
}

/// Renders serde-saphyr messages without the " at line X, column Y" suffix: the position goes
/// into [`ConfigError::line`] / [`ConfigError::column`] instead.
struct PlainMessages;

struct NoLocationSuffix;

impl Localizer for NoLocationSuffix {
    fn attach_location<'a>(&self, base: Cow<'a, str>, _loc: Location) -> Cow<'a, str> {
        base
    }
}

impl MessageFormatter for PlainMessages {
    fn localizer(&self) -> &dyn Localizer {
        &NoLocationSuffix
    }

    fn format_message<'a>(&self, err: &'a serde_saphyr::Error) -> Cow<'a, str> {
        match err {
            serde_saphyr::Error::DuplicateMappingKey { key: Some(k), .. } => {
                Cow::Owned(format!("duplicate key `{k}`"))
            }
            serde_saphyr::Error::DuplicateMappingKey { key: None, .. } => {
                Cow::Borrowed("duplicate key")
            }
            serde_saphyr::Error::InvalidScalar { ty, .. } if ty.starts_with('u') => {
                Cow::Borrowed("expected a whole number (0 or more)")
            }
            serde_saphyr::Error::ExternalMessage { source, .. }
                if matches!(**source, serde_saphyr::ExternalMessageSource::Parser(_)) =>
            {
                Cow::Owned(format!(
                    "YAML syntax error: {}",
                    DefaultMessageFormatter.format_message(err)
                ))
            }
            serde_saphyr::Error::MultipleDocuments { .. } => {
                Cow::Borrowed("more than one YAML document: a config file holds exactly one")
            }
            _ => {
                // Reword the few messages that speak to a Rust developer rather than to
                // whoever edits the file.
                let message = DefaultMessageFormatter.format_message(err);
                if message.starts_with("cannot deserialize null") {
                    Cow::Borrowed("expected a value, found null (nothing)")
                } else if message.ends_with("expected mapping start") {
                    Cow::Borrowed("expected a mapping (`key: value` entries)")
                } else if message.starts_with("invalid boolean") {
                    Cow::Borrowed("expected true or false")
                } else if message.ends_with("expected sequence start") {
                    Cow::Borrowed("expected a list (`[a, b]` or `- a` lines)")
                } else {
                    message
                }
            }
        }
    }
}

/// Reads the YAML into the raw structs. `Ok(None)` for an empty document.
fn parse_raw(text: &str, origin: &str) -> Result<Option<RawConfig>, ConfigError> {
    set_current_group(None);
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    let mut path: Option<String> = None;
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize::<_, Option<RawConfig>>(de).map_err(|e| {
            let unknown_field = matches!(e.inner(), serde_saphyr::Error::SerdeUnknownField { .. });
            path = Some(render_path(e.path(), unknown_field));
            e.into_inner()
        })
    });
    set_current_group(None);
    result.map_err(|e| {
        let location = e.location().filter(|l| l.line() > 0);
        ConfigError {
            origin: origin.to_owned(),
            line: location.and_then(|l| usize::try_from(l.line()).ok()),
            column: location
                .filter(|l| l.column() > 0)
                .and_then(|l| usize::try_from(l.column()).ok()),
            field: path.unwrap_or_default(),
            message: e.render_with_options(serde_saphyr::render_options! {
                formatter: &PlainMessages,
                snippets: serde_saphyr::SnippetMode::Off,
            }),
        }
    })
}

/// Turns a serde path into the dotted form of [`ConfigError::field`]: drops the `value`
/// segments that `Spanned` adds, and names the group that the tracker cannot see.
fn render_path(path: &serde_path_to_error::Path, unknown_field: bool) -> String {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let mut out = String::new();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let key: Cow<'_, str> = match segment {
            Segment::Seq { index } => {
                out.push_str(&format!("[{index}]"));
                continue;
            }
            // `Spanned<T>` reads its inner value through a `value` key; an unknown field
            // literally named `value` is the last segment of an unknown-field error.
            Segment::Map { key } if key == "value" && !(last && unknown_field) => continue,
            Segment::Map { key } => Cow::Borrowed(key.as_str()),
            Segment::Enum { variant } => Cow::Borrowed(variant.as_str()),
            Segment::Unknown => {
                let in_groups =
                    i == 1 && matches!(segments[0], Segment::Map { key } if key == "groups");
                match CURRENT_GROUP.with(|c| c.borrow().clone()) {
                    Some(name) if in_groups => Cow::Owned(name),
                    _ => continue,
                }
            }
        };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&key);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Validation: raw → Config
// ---------------------------------------------------------------------------------------------

/// Bounds of one numeric setting.
struct Bound {
    field: &'static str,
    min: u64,
    max: u64,
    note: &'static str,
    /// The kernel wants a power of two (ring buffer sizes).
    power_of_two: bool,
}

const FLOWS: Bound = Bound {
    field: "flows",
    min: 1024,
    max: 16_777_216,
    note: "",
    power_of_two: false,
};
const EVENTS_PER_SOURCE: Bound = Bound {
    field: "events_per_source_per_second",
    min: 0,
    max: u32::MAX as u64,
    note: " (0 = unlimited)",
    power_of_two: false,
};
const ANSWER_TIMEOUT: Bound = Bound {
    field: "answer_timeout_ms",
    min: 1,
    max: 60_000,
    note: "",
    power_of_two: false,
};
const FLOW_IDLE_TIMEOUT: Bound = Bound {
    field: "flow_idle_timeout_ms",
    min: 1,
    max: 3_600_000,
    note: "",
    power_of_two: false,
};
const SOURCES: Bound = Bound {
    field: "sources",
    min: 256,
    max: 16_777_216,
    note: "",
    power_of_two: false,
};
const RING_BUFFER: Bound = Bound {
    field: "ring_buffer_bytes",
    min: 4096,
    max: 1 << 30,
    note: ", and a power of two",
    power_of_two: true,
};
const ALLOW_ENTRIES: Bound = Bound {
    field: "allow_entries",
    min: 1,
    max: 16_777_216,
    note: "",
    power_of_two: false,
};
const SAMPLING_ONE_IN: Bound = Bound {
    field: "allowed_flows_one_in",
    min: 0,
    max: u32::MAX as u64,
    note: " (0 = off)",
    power_of_two: false,
};

struct Validator<'a> {
    origin: &'a str,
}

impl Validator<'_> {
    fn error(
        &self,
        at: Option<Location>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let at = at.filter(|l| l.line() > 0);
        ConfigError {
            origin: self.origin.to_owned(),
            line: at.and_then(|l| usize::try_from(l.line()).ok()),
            column: at.and_then(|l| usize::try_from(l.column()).ok()),
            field: field.into(),
            message: message.into(),
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let groups = self.groups(raw.groups.unwrap_or_default())?;
        let sampling = match raw.sampling {
            None => Sampling::DEFAULT,
            Some(s) => Sampling {
                allowed_flows_one_in: self.opt_u32(
                    "sampling",
                    &SAMPLING_ONE_IN,
                    s.allowed_flows_one_in,
                    Sampling::DEFAULT.allowed_flows_one_in,
                )?,
            },
        };
        let limits = match raw.limits {
            None => Limits::DEFAULT,
            Some(l) => self.limits(l)?,
        };
        Ok(Config {
            groups,
            sampling,
            limits,
            interfaces: self.interfaces(raw.interfaces)?,
            attach: self.attach(raw.attach)?,
            alerts: self.alerts(raw.alerts)?,
            sinks: self.sinks(raw.sinks)?,
            metrics: self.metrics(raw.metrics)?,
        })
    }

    fn limits(&self, raw: RawLimits) -> Result<Limits, ConfigError> {
        let d = Limits::DEFAULT;
        Ok(Limits {
            flows: self.opt_u32("limits", &FLOWS, raw.flows, d.flows)?,
            events_per_source_per_second: self.opt_u32(
                "limits",
                &EVENTS_PER_SOURCE,
                raw.events_per_source_per_second,
                d.events_per_source_per_second,
            )?,
            answer_timeout_ms: self.opt_u64(
                "limits",
                &ANSWER_TIMEOUT,
                raw.answer_timeout_ms,
                d.answer_timeout_ms,
            )?,
            flow_idle_timeout_ms: self.opt_u64(
                "limits",
                &FLOW_IDLE_TIMEOUT,
                raw.flow_idle_timeout_ms,
                d.flow_idle_timeout_ms,
            )?,
            sources: self.opt_u32("limits", &SOURCES, raw.sources, d.sources)?,
            ring_buffer_bytes: self.opt_u32(
                "limits",
                &RING_BUFFER,
                raw.ring_buffer_bytes,
                d.ring_buffer_bytes,
            )?,
            allow_entries: self.opt_u32(
                "limits",
                &ALLOW_ENTRIES,
                raw.allow_entries,
                d.allow_entries,
            )?,
        })
    }

    /// Checks an optional number against its bounds; `default` when absent.
    fn opt_u64(
        &self,
        section: &str,
        bound: &Bound,
        value: Option<Spanned<u64>>,
        default: u64,
    ) -> Result<u64, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        let field = format!("{section}.{}", bound.field);
        let v = value.value;
        if !(bound.min..=bound.max).contains(&v) {
            return Err(self.error(
                Some(value.referenced),
                field,
                format!(
                    "{v} is out of range: must be between {} and {}{}",
                    bound.min, bound.max, bound.note
                ),
            ));
        }
        if bound.power_of_two && !v.is_power_of_two() {
            let above = v.next_power_of_two();
            return Err(self.error(
                Some(value.referenced),
                field,
                format!(
                    "{v} is not a power of two (the kernel requires one): use {} or {above}",
                    above / 2
                ),
            ));
        }
        Ok(v)
    }

    fn opt_u32(
        &self,
        section: &str,
        bound: &Bound,
        value: Option<Spanned<u64>>,
        default: u32,
    ) -> Result<u32, ConfigError> {
        debug_assert!(bound.max <= u64::from(u32::MAX));
        let at = value.as_ref().map(|v| v.referenced);
        let v = self.opt_u64(section, bound, value, u64::from(default))?;
        u32::try_from(v).map_err(|_| {
            self.error(
                at,
                format!("{section}.{}", bound.field),
                format!("{v} does not fit in 32 bits"),
            )
        })
    }

    fn groups(&self, raw: RawGroups) -> Result<Vec<Group>, ConfigError> {
        let mut groups: Vec<Group> = Vec::with_capacity(raw.0.len());
        // Which group (index + 1) owns each port, per protocol: for the overlap check.
        let mut owner_tcp = vec![0u8; PORT_TABLE_LEN];
        let mut owner_udp = vec![0u8; PORT_TABLE_LEN];
        for (index, (name, raw_group)) in raw.0.into_iter().enumerate() {
            let path = format!("groups.{}", name.value);
            check_group_name(&name.value)
                .map_err(|m| self.error(Some(name.referenced), path.as_str(), m))?;
            if index >= MAX_USER_GROUPS {
                return Err(self.error(
                    Some(name.referenced),
                    path.as_str(),
                    format!("too many groups: at most {MAX_USER_GROUPS} are supported"),
                ));
            }
            let id = u8::try_from(index + 1)
                .map_err(|_| self.error(Some(name.referenced), path.as_str(), "too many groups"))?;

            let protocols = self.protocols(&path, name.referenced, raw_group.protocols)?;
            let (ports, port_locations) = self.ports(&path, name.referenced, raw_group.ports)?;
            let allow = self.allow(&path, raw_group.allow.as_deref().unwrap_or_default())?;
            let action = match raw_group.action {
                None => Action::Monitor,
                Some(a) => Action::from_name(&a.value).ok_or_else(|| {
                    self.error(
                        Some(a.referenced),
                        format!("{path}.action"),
                        format!(
                            "unknown action `{}`: expected one of {}",
                            a.value,
                            Action::ALL.map(Action::name).join(", ")
                        ),
                    )
                })?,
            };

            // A port belongs to one group per protocol. The first overlapping port of an
            // entry, in port order then protocol order, is reported at that entry.
            for (j, range) in ports.iter().enumerate() {
                for port in range.start..=range.end {
                    for proto in &protocols {
                        let owners = match proto {
                            Protocol::Tcp => &owner_tcp,
                            Protocol::Udp => &owner_udp,
                        };
                        let owner = owners[usize::from(port)];
                        if owner != 0 && owner != id {
                            let other = groups
                                .get(usize::from(owner) - 1)
                                .map_or("?", |g| g.name.as_str());
                            return Err(self.error(
                                Some(port_locations[j]),
                                format!("{path}.ports[{j}]"),
                                format!("port {port}/{proto} is already in group {other}"),
                            ));
                        }
                    }
                }
            }
            for proto in &protocols {
                let owners = match proto {
                    Protocol::Tcp => &mut owner_tcp,
                    Protocol::Udp => &mut owner_udp,
                };
                for range in &ports {
                    owners[usize::from(range.start)..=usize::from(range.end)].fill(id);
                }
            }

            groups.push(Group {
                name: name.value,
                id,
                protocols,
                ports,
                allow,
                action,
                detect_sweeps: raw_group.detect_sweeps.is_some_and(|d| d.value),
            });
        }
        Ok(groups)
    }

    fn protocols(
        &self,
        path: &str,
        group_at: Location,
        raw: Option<Spanned<Vec<Spanned<String>>>>,
    ) -> Result<Vec<Protocol>, ConfigError> {
        let field = format!("{path}.protocols");
        let Some(raw) = raw else {
            return Err(self.error(
                Some(group_at),
                field,
                "missing field `protocols` (a list of tcp and/or udp)",
            ));
        };
        if raw.value.is_empty() {
            return Err(self.error(
                Some(raw.referenced),
                field,
                "must list at least one protocol (tcp, udp)",
            ));
        }
        let mut protocols = Vec::with_capacity(raw.value.len());
        for (i, p) in raw.value.iter().enumerate() {
            let at = Some(p.referenced);
            let field = format!("{field}[{i}]");
            let proto = Protocol::from_name(&p.value).ok_or_else(|| {
                self.error(
                    at,
                    field.as_str(),
                    format!(
                        "unknown protocol `{}`: expected one of {}",
                        p.value,
                        Protocol::ALL.map(Protocol::name).join(", ")
                    ),
                )
            })?;
            if protocols.contains(&proto) {
                return Err(self.error(at, field, format!("duplicate protocol {proto}")));
            }
            protocols.push(proto);
        }
        Ok(protocols)
    }

    fn ports(
        &self,
        path: &str,
        group_at: Location,
        raw: Option<Spanned<Vec<Spanned<RawPort>>>>,
    ) -> Result<(Vec<PortRange>, Vec<Location>), ConfigError> {
        let field = format!("{path}.ports");
        let Some(raw) = raw else {
            return Err(self.error(
                Some(group_at),
                field,
                r#"missing field `ports` (a list such as ["10250", "30000-32767"])"#,
            ));
        };
        if raw.value.is_empty() {
            return Err(self.error(
                Some(raw.referenced),
                field,
                "must list at least one port or range",
            ));
        }
        let mut ranges = Vec::with_capacity(raw.value.len());
        let mut locations = Vec::with_capacity(raw.value.len());
        for (i, p) in raw.value.iter().enumerate() {
            let range = parse_port_entry(&p.value)
                .map_err(|m| self.error(Some(p.referenced), format!("{field}[{i}]"), m))?;
            ranges.push(range);
            locations.push(p.referenced);
        }
        Ok((ranges, locations))
    }

    fn allow(&self, path: &str, raw: &[Spanned<String>]) -> Result<Vec<AllowEntry>, ConfigError> {
        raw.iter()
            .enumerate()
            .map(|(i, entry)| {
                parse_allow_entry(&entry.value).map_err(|m| {
                    self.error(Some(entry.referenced), format!("{path}.allow[{i}]"), m)
                })
            })
            .collect()
    }
}

/// `[a-z0-9][a-z0-9_-]{0,62}`: a label that fits in metrics, alerts and file names.
fn check_group_name(name: &str) -> Result<(), String> {
    let valid_first = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let valid_rest = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid_first && valid_rest && name.len() <= 63 {
        Ok(())
    } else {
        Err(format!(
            "invalid group name `{name}`: use 1 to 63 characters a-z, 0-9, `_` and `-`, \
             starting with a letter or digit"
        ))
    }
}

fn port_number(value: i128, written: &str) -> Result<u16, String> {
    match u16::try_from(value) {
        Ok(0) => Err("port 0 is not a valid port (ports are 1-65535)".to_owned()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!(
            "port {written} is out of range (ports are 1-65535)"
        )),
    }
}

/// `10250`, `"10250"` or `"30000-32767"` (inclusive).
fn parse_port_entry(raw: &RawPort) -> Result<PortRange, String> {
    let text = match raw {
        RawPort::Int(n) => return port_number(*n, &n.to_string()).map(PortRange::single),
        RawPort::Str(s) => s.trim(),
    };
    let garbage =
        || format!(r#"`{text}` is not a port or a port range (write 10250 or "30000-32767")"#);
    let number = |s: &str| -> Result<u16, String> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(garbage());
        }
        // All digits: only an overflow can fail, and that is out of range too.
        let value = s.parse::<i128>().unwrap_or(i128::MAX);
        port_number(value, s)
    };
    match text.split_once('-') {
        None => number(text).map(PortRange::single),
        Some((start, end)) => {
            let (start, end) = (number(start)?, number(end)?);
            if start > end {
                Err(format!(
                    "range {start}-{end} is reversed: write {end}-{start}"
                ))
            } else {
                Ok(PortRange { start, end })
            }
        }
    }
}

/// A CIDR, a bare IP (/32 or /128) or a symbolic set name.
fn parse_allow_entry(text: &str) -> Result<AllowEntry, String> {
    let text = text.trim();
    if let Some(set) = SymbolicSet::from_name(text) {
        return Ok(AllowEntry::Set(set));
    }
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(AllowEntry::Cidr(net));
    }
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(AllowEntry::Cidr(IpNet::from(addr)));
    }
    let looks_like_address =
        text.contains(['.', ':', '/']) || text.starts_with(|c: char| c.is_ascii_digit());
    if looks_like_address {
        Err(format!(
            "`{text}` is not a valid IP address or CIDR (such as 203.0.113.0/24, \
             2001:db8::/32 or 198.51.100.7)"
        ))
    } else {
        Err(format!(
            "unknown symbolic set `{text}`: known sets are {}",
            SymbolicSet::known_names()
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Outputs, alerting, metrics and interfaces (issue: daemon). These are the typed, validated
// forms; `Config` carries them once parsed.

/// Alert/record format of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Elastic Common Schema JSON (the default).
    Ecs,
    /// OCSF JSON: Detection Finding (2004) for alerts, Network Activity (4001) for flows.
    Ocsf,
    /// ArcSight Common Event Format, one `CEF:0|...` line.
    Cef,
}

/// Where a syslog sink sends (RFC 5424).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTransport {
    /// `udp://HOST:PORT`: one message per datagram.
    Udp(std::net::SocketAddr),
    /// `tcp://HOST:PORT`: octet-counted framing (RFC 6587).
    Tcp(std::net::SocketAddr),
    /// `unix:///dev/log` (datagram socket, as rsyslog's imuxsock).
    Unix(std::path::PathBuf),
}

/// The kind of a sink and its own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    Stdout,
    /// JSON lines to a file, rotated by size: `path`, `path.1` ... `path.<keep>`.
    File {
        path: std::path::PathBuf,
        max_size_bytes: u64,
        keep: u32,
    },
    Syslog {
        transport: SyslogTransport,
    },
    /// Batched NDJSON POST (`Content-Type: application/x-ndjson`), retried with backoff.
    Http {
        url: String,
        /// Most records per POST.
        batch_max: usize,
        /// Longest a record waits for its batch to fill.
        batch_interval: std::time::Duration,
        /// Per-request timeout.
        timeout: std::time::Duration,
        /// Retries of a failed POST before its batch is dropped (and counted).
        max_retries: u32,
        /// Extra request headers (e.g. Authorization), in order.
        headers: Vec<(String, String)>,
    },
}

/// One sink as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSpec {
    /// Unique name used in metrics labels and logs: given by `name:`, else derived
    /// (`stdout`, `file`, `syslog`, `http`, with `-2`, `-3` for repeats).
    pub name: String,
    pub kind: SinkKind,
    pub format: Format,
    /// Records queued for this sink before new ones are dropped (and counted).
    pub queue: usize,
    /// Whether sampled flow records (not only alerts) go to this sink.
    pub flows: bool,
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
    /// Flood alerts aggregate rate-limited and ring-buffer losses over this window.
    pub flood_window: std::time::Duration,
}

/// The metrics and health HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    pub listen: std::net::SocketAddr,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Ecs, Format::Ocsf, Format::Cef];

    /// The YAML spelling (`ecs` / `ocsf` / `cef`).
    pub const fn name(self) -> &'static str {
        match self {
            Format::Ecs => "ecs",
            Format::Ocsf => "ocsf",
            Format::Cef => "cef",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for SyslogTransport {
    /// The address as written in the config (`udp://127.0.0.1:514`, `unix:///dev/log`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogTransport::Udp(a) => write!(f, "udp://{a}"),
            SyslogTransport::Tcp(a) => write!(f, "tcp://{a}"),
            SyslogTransport::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

impl SinkKind {
    /// The YAML `type` (`stdout` / `file` / `syslog` / `http`).
    pub const fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Stdout => "stdout",
            SinkKind::File { .. } => "file",
            SinkKind::Syslog { .. } => "syslog",
            SinkKind::Http { .. } => "http",
        }
    }
}

impl SinkSpec {
    /// Default queue length of a sink.
    pub const DEFAULT_QUEUE: usize = 10_000;

    /// The sink used when the config has no `sinks`: ECS JSON lines on stdout, with flows.
    #[must_use]
    pub fn default_stdout() -> SinkSpec {
        SinkSpec {
            name: "stdout".to_owned(),
            kind: SinkKind::Stdout,
            format: Format::Ecs,
            queue: Self::DEFAULT_QUEUE,
            flows: true,
        }
    }
}

impl AlertSettings {
    pub const DEFAULT: AlertSettings = AlertSettings {
        dedup_window: std::time::Duration::from_secs(60),
        sweep_min_ports: 10,
        sweep_window: std::time::Duration::from_secs(60),
        flood_window: std::time::Duration::from_secs(10),
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
    };
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The ingress hook, as the config names it (`attach: xdp | tc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttachKind {
    /// XDP on ingress (native, else generic), tc on egress. The default.
    Xdp,
    /// tc on ingress and egress (tcx where the kernel has it).
    Tc,
}

impl AttachKind {
    pub const ALL: [AttachKind; 2] = [AttachKind::Xdp, AttachKind::Tc];

    pub const fn name(self) -> &'static str {
        match self {
            AttachKind::Xdp => "xdp",
            AttachKind::Tc => "tc",
        }
    }

    pub fn from_name(name: &str) -> Option<AttachKind> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for AttachKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What applying a new config over the running one involves: see [`Config::reload_plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Changed fields that only take effect at the next restart (kernel map sizes: the maps
    /// are created at load). The running values stay in force; report these as
    /// "restart required" in the reload result.
    pub restart_required: Vec<&'static str>,
    /// Groups, sampling or the runtime limits changed: rewrite the maps
    /// (`Datapath::apply_config`); programs stay attached.
    pub datapath: bool,
    /// `limits.answer_timeout_ms` changed: the userspace answer tracker takes the new value.
    pub answer_timeout: bool,
    /// `attach` changed: detach and re-attach every interface with the new hook.
    pub reattach: bool,
    /// `interfaces` changed: give the new patterns to the interface watcher.
    pub interfaces: bool,
    /// `alerts` changed (or a group's `detect_sweeps`, which is also in `datapath`).
    pub alerts: bool,
    /// `sinks` changed: reconfigure the outputs.
    pub sinks: bool,
    /// `metrics.listen` changed: rebind the metrics endpoint.
    pub metrics: bool,
}

impl ReloadPlan {
    /// Nothing differs.
    #[must_use]
    pub fn is_noop(&self) -> bool {
        *self == ReloadPlan::default()
    }
}

impl Config {
    /// The fields of `limits` that size kernel maps: a change needs a restart.
    pub const RESTART_REQUIRED_FIELDS: [&'static str; 4] = [
        "limits.flows",
        "limits.sources",
        "limits.ring_buffer_bytes",
        "limits.allow_entries",
    ];

    /// How to go from the running config (`self`) to `next`. Everything is reloadable in
    /// place except the map sizes in [`Config::RESTART_REQUIRED_FIELDS`].
    #[must_use]
    pub fn reload_plan(&self, next: &Config) -> ReloadPlan {
        let (a, b) = (&self.limits, &next.limits);
        let mut restart_required = Vec::new();
        for (field, changed) in Config::RESTART_REQUIRED_FIELDS.into_iter().zip([
            a.flows != b.flows,
            a.sources != b.sources,
            a.ring_buffer_bytes != b.ring_buffer_bytes,
            a.allow_entries != b.allow_entries,
        ]) {
            if changed {
                restart_required.push(field);
            }
        }
        let sweeps = |c: &Config| {
            c.groups
                .iter()
                .map(|g| (g.name.clone(), g.detect_sweeps))
                .collect::<Vec<_>>()
        };
        ReloadPlan {
            restart_required,
            datapath: self.groups != next.groups
                || self.sampling != next.sampling
                || a.events_per_source_per_second != b.events_per_source_per_second
                || a.flow_idle_timeout_ms != b.flow_idle_timeout_ms,
            answer_timeout: a.answer_timeout_ms != b.answer_timeout_ms,
            reattach: self.attach.unwrap_or(AttachKind::Xdp)
                != next.attach.unwrap_or(AttachKind::Xdp),
            interfaces: self.interfaces != next.interfaces,
            alerts: self.alerts != next.alerts || sweeps(self) != sweeps(next),
            sinks: self.sinks != next.sinks,
            metrics: self.metrics != next.metrics,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw layer and validation of the output, alert, metrics and interface settings
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    dedup_window_s: Option<Spanned<u64>>,
    sweep: Option<RawSweep>,
    flood_window_s: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    min_ports: Option<Spanned<u64>>,
    window_s: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
}

/// One `sinks` entry as written: the fields of every type, checked against `type` later so
/// that a misplaced field is reported at its own position.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    queue: Option<Spanned<u64>>,
    flows: Option<Spanned<bool>>,
    path: Option<Spanned<String>>,
    max_size_mb: Option<Spanned<u64>>,
    keep: Option<Spanned<u64>>,
    address: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    batch_max: Option<Spanned<u64>>,
    batch_interval_ms: Option<Spanned<u64>>,
    timeout_ms: Option<Spanned<u64>>,
    max_retries: Option<Spanned<u64>>,
    headers: Option<Spanned<RawHeaders>>,
}

/// The `headers` mapping of an http sink, in file order.
#[derive(Debug, Default)]
struct RawHeaders(Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for RawHeaders {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;
        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = RawHeaders;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of header name to value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeaders, A::Error> {
                let mut headers = Vec::new();
                while let Some(name) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value::<Spanned<String>>()?;
                    headers.push((name, value));
                }
                Ok(RawHeaders(headers))
            }
        }
        deserializer.deserialize_map(HeadersVisitor)
    }
}

/// The sink types, in the order error messages list them.
const SINK_TYPES: [&str; 4] = ["stdout", "file", "syslog", "http"];

/// Fields every sink takes.
const SINK_COMMON_FIELDS: [&str; 5] = ["type", "name", "format", "queue", "flows"];

/// The fields of each sink type besides the common ones.
fn sink_type_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "file" => &["path", "max_size_mb", "keep"],
        "syslog" => &["address"],
        "http" => &[
            "url",
            "batch_max",
            "batch_interval_ms",
            "timeout_ms",
            "max_retries",
            "headers",
        ],
        _ => &[],
    }
}

const ALERT_DEDUP_WINDOW: Bound = Bound {
    field: "dedup_window_s",
    min: 1,
    max: 86_400,
    note: "",
    power_of_two: false,
};
const SWEEP_MIN_PORTS: Bound = Bound {
    field: "min_ports",
    min: 2,
    max: 65_535,
    note: "",
    power_of_two: false,
};
const SWEEP_WINDOW: Bound = Bound {
    field: "window_s",
    min: 1,
    max: 3600,
    note: "",
    power_of_two: false,
};
const FLOOD_WINDOW: Bound = Bound {
    field: "flood_window_s",
    min: 1,
    max: 3600,
    note: "",
    power_of_two: false,
};
const SINK_QUEUE: Bound = Bound {
    field: "queue",
    min: 1,
    max: 10_000_000,
    note: "",
    power_of_two: false,
};
const FILE_MAX_SIZE_MB: Bound = Bound {
    field: "max_size_mb",
    min: 1,
    max: 1_048_576,
    note: "",
    power_of_two: false,
};
const FILE_KEEP: Bound = Bound {
    field: "keep",
    min: 0,
    max: 100,
    note: "",
    power_of_two: false,
};
const HTTP_BATCH_MAX: Bound = Bound {
    field: "batch_max",
    min: 1,
    max: 100_000,
    note: "",
    power_of_two: false,
};
const HTTP_BATCH_INTERVAL: Bound = Bound {
    field: "batch_interval_ms",
    min: 1,
    max: 600_000,
    note: "",
    power_of_two: false,
};
const HTTP_TIMEOUT: Bound = Bound {
    field: "timeout_ms",
    min: 1,
    max: 600_000,
    note: "",
    power_of_two: false,
};
const HTTP_MAX_RETRIES: Bound = Bound {
    field: "max_retries",
    min: 0,
    max: 100,
    note: "",
    power_of_two: false,
};

/// Defaults of the sink fields that have one.
const FILE_DEFAULT_MAX_SIZE_MB: u64 = 100;
const FILE_DEFAULT_KEEP: u32 = 5;
const HTTP_DEFAULT_BATCH_MAX: u64 = 500;
const HTTP_DEFAULT_BATCH_INTERVAL_MS: u64 = 1000;
const HTTP_DEFAULT_TIMEOUT_MS: u64 = 5000;
const HTTP_DEFAULT_MAX_RETRIES: u32 = 5;

/// Longest interface name the kernel takes (`IFNAMSIZ - 1`).
pub const MAX_IFACE_NAME: usize = 15;

impl Validator<'_> {
    fn interfaces(
        &self,
        raw: Option<Spanned<Vec<Spanned<String>>>>,
    ) -> Result<Vec<String>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        raw.value
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                check_iface_pattern(&p.value)
                    .map(|()| p.value.clone())
                    .map_err(|m| self.error(Some(p.referenced), format!("interfaces[{i}]"), m))
            })
            .collect()
    }

    fn attach(&self, raw: Option<Spanned<String>>) -> Result<Option<AttachKind>, ConfigError> {
        raw.map(|a| {
            AttachKind::from_name(&a.value).ok_or_else(|| {
                self.error(
                    Some(a.referenced),
                    "attach",
                    format!(
                        "unknown attach mode `{}`: expected one of {}",
                        a.value,
                        AttachKind::ALL.map(AttachKind::name).join(", ")
                    ),
                )
            })
        })
        .transpose()
    }

    fn alerts(&self, raw: Option<RawAlerts>) -> Result<AlertSettings, ConfigError> {
        let d = AlertSettings::DEFAULT;
        let Some(raw) = raw else {
            return Ok(d);
        };
        let secs = std::time::Duration::from_secs;
        let (min_ports, window_s) = match raw.sweep {
            None => (None, None),
            Some(s) => (s.min_ports, s.window_s),
        };
        Ok(AlertSettings {
            dedup_window: secs(self.opt_u64(
                "alerts",
                &ALERT_DEDUP_WINDOW,
                raw.dedup_window_s,
                d.dedup_window.as_secs(),
            )?),
            sweep_min_ports: self.opt_u32(
                "alerts.sweep",
                &SWEEP_MIN_PORTS,
                min_ports,
                d.sweep_min_ports,
            )?,
            sweep_window: secs(self.opt_u64(
                "alerts.sweep",
                &SWEEP_WINDOW,
                window_s,
                d.sweep_window.as_secs(),
            )?),
            flood_window: secs(self.opt_u64(
                "alerts",
                &FLOOD_WINDOW,
                raw.flood_window_s,
                d.flood_window.as_secs(),
            )?),
        })
    }

    fn metrics(&self, raw: Option<RawMetrics>) -> Result<MetricsSettings, ConfigError> {
        let Some(listen) = raw.and_then(|m| m.listen) else {
            return Ok(MetricsSettings::DEFAULT);
        };
        let text = listen.value.trim();
        let addr = text.parse::<std::net::SocketAddr>().map_err(|_| {
            self.error(
                Some(listen.referenced),
                "metrics.listen",
                format!(
                    "`{text}` is not a socket address: write IP:PORT, such as 127.0.0.1:9630, \
                     0.0.0.0:9630 or [::]:9630 (host names are not resolved)"
                ),
            )
        })?;
        Ok(MetricsSettings { listen: addr })
    }

    fn sinks(
        &self,
        raw: Option<Spanned<Vec<Spanned<RawSink>>>>,
    ) -> Result<Vec<SinkSpec>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(vec![SinkSpec::default_stdout()]);
        };
        if raw.value.is_empty() {
            return Err(self.error(
                Some(raw.referenced),
                "sinks",
                "must list at least one sink (leave `sinks` out for the default: stdout, ecs)",
            ));
        }
        let mut sinks: Vec<SinkSpec> = Vec::with_capacity(raw.value.len());
        // Unnamed sinks seen so far, per type: for the derived names.
        let mut unnamed = [0usize; SINK_TYPES.len()];
        for (i, sink) in raw.value.into_iter().enumerate() {
            let at = sink.referenced;
            let (spec, name_at) = self.sink(i, at, sink.value, &mut unnamed)?;
            if sinks.iter().any(|s| s.name == spec.name) {
                let how = if name_at.is_some() {
                    String::new()
                } else {
                    " (the name derived for this sink: give it a `name`)".to_owned()
                };
                return Err(self.error(
                    Some(name_at.unwrap_or(at)),
                    format!("sinks[{i}].name"),
                    format!("duplicate sink name `{}`{how}", spec.name),
                ));
            }
            sinks.push(spec);
        }
        Ok(sinks)
    }

    /// One sink; also returns where its `name` was written, if it was.
    fn sink(
        &self,
        i: usize,
        at: Location,
        raw: RawSink,
        unnamed: &mut [usize; SINK_TYPES.len()],
    ) -> Result<(SinkSpec, Option<Location>), ConfigError> {
        let section = format!("sinks[{i}]");
        let Some(kind) = raw.kind else {
            return Err(self.error(
                Some(at),
                format!("{section}.type"),
                format!("missing field `type` (one of {})", SINK_TYPES.join(", ")),
            ));
        };
        let Some(type_index) = SINK_TYPES.iter().position(|t| *t == kind.value) else {
            return Err(self.error(
                Some(kind.referenced),
                format!("{section}.type"),
                format!(
                    "unknown sink type `{}`: expected one of {}",
                    kind.value,
                    SINK_TYPES.join(", ")
                ),
            ));
        };
        let type_name = SINK_TYPES[type_index];

        // Fields of another sink type are errors, at their own position.
        let present: [(&str, Option<Location>); 10] = [
            ("path", raw.path.as_ref().map(|v| v.referenced)),
            (
                "max_size_mb",
                raw.max_size_mb.as_ref().map(|v| v.referenced),
            ),
            ("keep", raw.keep.as_ref().map(|v| v.referenced)),
            ("address", raw.address.as_ref().map(|v| v.referenced)),
            ("url", raw.url.as_ref().map(|v| v.referenced)),
            ("batch_max", raw.batch_max.as_ref().map(|v| v.referenced)),
            (
                "batch_interval_ms",
                raw.batch_interval_ms.as_ref().map(|v| v.referenced),
            ),
            ("timeout_ms", raw.timeout_ms.as_ref().map(|v| v.referenced)),
            (
                "max_retries",
                raw.max_retries.as_ref().map(|v| v.referenced),
            ),
            ("headers", raw.headers.as_ref().map(|v| v.referenced)),
        ];
        let own = sink_type_fields(type_name);
        for (field, loc) in present {
            if let Some(loc) = loc
                && !own.contains(&field)
            {
                let fields: Vec<&str> = SINK_COMMON_FIELDS.iter().chain(own).copied().collect();
                return Err(self.error(
                    Some(loc),
                    format!("{section}.{field}"),
                    format!(
                        "`{field}` is not a field of sinks of type {type_name} (their fields: {})",
                        fields.join(", ")
                    ),
                ));
            }
        }

        let name_at = raw.name.as_ref().map(|n| n.referenced);
        let name = match raw.name {
            Some(n) => {
                check_group_name(&n.value).map_err(|_| {
                    self.error(
                        Some(n.referenced),
                        format!("{section}.name"),
                        format!(
                            "invalid sink name `{}`: use 1 to 63 characters a-z, 0-9, `_` \
                                 and `-`, starting with a letter or digit",
                            n.value
                        ),
                    )
                })?;
                n.value
            }
            None => {
                unnamed[type_index] += 1;
                match unnamed[type_index] {
                    1 => type_name.to_owned(),
                    k => format!("{type_name}-{k}"),
                }
            }
        };
        let format = match raw.format {
            None => Format::Ecs,
            Some(f) => Format::from_name(&f.value).ok_or_else(|| {
                self.error(
                    Some(f.referenced),
                    format!("{section}.format"),
                    format!(
                        "unknown format `{}`: expected one of {}",
                        f.value,
                        Format::ALL.map(Format::name).join(", ")
                    ),
                )
            })?,
        };
        let queue = self.opt_u64(
            &section,
            &SINK_QUEUE,
            raw.queue,
            SinkSpec::DEFAULT_QUEUE as u64,
        )?;
        let queue = usize::try_from(queue).unwrap_or(usize::MAX);
        let flows = raw.flows.map_or(type_name == "stdout", |f| f.value);

        let required = |value: Option<Spanned<String>>, field: &str, what: &str| {
            value.ok_or_else(|| {
                self.error(
                    Some(kind.referenced),
                    format!("{section}.{field}"),
                    format!("missing field `{field}` ({what}) for a sink of type {type_name}"),
                )
            })
        };
        let kind = match type_name {
            "file" => {
                let path = required(raw.path, "path", "an absolute file path")?;
                let p = std::path::PathBuf::from(path.value.trim());
                if !p.is_absolute() {
                    return Err(self.error(
                        Some(path.referenced),
                        format!("{section}.path"),
                        format!("`{}` is not an absolute path", path.value),
                    ));
                }
                if path.value.ends_with('/') {
                    return Err(self.error(
                        Some(path.referenced),
                        format!("{section}.path"),
                        format!("`{}` names a directory: give a file name", path.value),
                    ));
                }
                let mb = self.opt_u64(
                    &section,
                    &FILE_MAX_SIZE_MB,
                    raw.max_size_mb,
                    FILE_DEFAULT_MAX_SIZE_MB,
                )?;
                let keep = self.opt_u32(&section, &FILE_KEEP, raw.keep, FILE_DEFAULT_KEEP)?;
                SinkKind::File {
                    path: p,
                    max_size_bytes: mb * 1024 * 1024,
                    keep,
                }
            }
            "syslog" => {
                let address = required(
                    raw.address,
                    "address",
                    "udp://HOST:PORT, tcp://HOST:PORT or unix:///PATH",
                )?;
                let transport = parse_syslog_address(&address.value).map_err(|m| {
                    self.error(Some(address.referenced), format!("{section}.address"), m)
                })?;
                SinkKind::Syslog { transport }
            }
            "http" => {
                let url = required(raw.url, "url", "an http:// or https:// URL")?;
                let text = url.value.trim();
                check_http_url(text)
                    .map_err(|m| self.error(Some(url.referenced), format!("{section}.url"), m))?;
                let ms = std::time::Duration::from_millis;
                let batch_max = self.opt_u64(
                    &section,
                    &HTTP_BATCH_MAX,
                    raw.batch_max,
                    HTTP_DEFAULT_BATCH_MAX,
                )?;
                let batch_interval = ms(self.opt_u64(
                    &section,
                    &HTTP_BATCH_INTERVAL,
                    raw.batch_interval_ms,
                    HTTP_DEFAULT_BATCH_INTERVAL_MS,
                )?);
                let timeout = ms(self.opt_u64(
                    &section,
                    &HTTP_TIMEOUT,
                    raw.timeout_ms,
                    HTTP_DEFAULT_TIMEOUT_MS,
                )?);
                let max_retries = self.opt_u32(
                    &section,
                    &HTTP_MAX_RETRIES,
                    raw.max_retries,
                    HTTP_DEFAULT_MAX_RETRIES,
                )?;
                let mut headers: Vec<(String, String)> = Vec::new();
                for (name, value) in raw.headers.map(|h| h.value.0).unwrap_or_default() {
                    let field = format!("{section}.headers.{}", name.value);
                    check_header_name(&name.value)
                        .map_err(|m| self.error(Some(name.referenced), field.as_str(), m))?;
                    if headers
                        .iter()
                        .any(|(n, _)| n.eq_ignore_ascii_case(&name.value))
                    {
                        return Err(self.error(
                            Some(name.referenced),
                            field,
                            format!(
                                "duplicate header `{}` (header names ignore case)",
                                name.value
                            ),
                        ));
                    }
                    check_header_value(&value.value)
                        .map_err(|m| self.error(Some(value.referenced), field.as_str(), m))?;
                    headers.push((name.value, value.value));
                }
                SinkKind::Http {
                    url: text.to_owned(),
                    batch_max: usize::try_from(batch_max).unwrap_or(usize::MAX),
                    batch_interval,
                    timeout,
                    max_retries,
                    headers,
                }
            }
            _ => SinkKind::Stdout,
        };
        Ok((
            SinkSpec {
                name,
                kind,
                format,
                queue,
                flows,
            },
            name_at,
        ))
    }
}

/// An interface name (at most 15 bytes) or a glob over names (`*`, `?`, `[...]`, `[!...]`).
///
/// # Errors
///
/// A message for the config error: empty, too long, a character the kernel does not allow in
/// a name, or a malformed glob.
pub fn check_iface_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("an empty interface name".to_owned());
    }
    if pattern.contains('/') || pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{pattern}` is not a valid interface name or glob: `/` and white space are not allowed"
        ));
    }
    if is_glob(pattern) {
        glob::Pattern::new(pattern).map_err(|e| {
            format!(
                "`{pattern}` is not a valid glob: {} (at character {}); use `*`, `?` and `[...]`",
                e.msg,
                e.pos + 1
            )
        })?;
    } else if pattern.len() > MAX_IFACE_NAME {
        return Err(format!(
            "interface name `{pattern}` is {} bytes long: interface names are at most \
             {MAX_IFACE_NAME} bytes",
            pattern.len()
        ));
    } else if pattern == "." || pattern == ".." {
        return Err(format!("`{pattern}` is not a valid interface name"));
    }
    Ok(())
}

/// Whether an interface pattern uses glob syntax (otherwise it is an exact name).
#[must_use]
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// `HOST:PORT` where HOST is an IP literal (IPv6 in brackets) or `localhost`.
fn parse_host_port(text: &str, whole: &str) -> Result<std::net::SocketAddr, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{whole}`: missing `]` after the IPv6 address"))?;
        let port = after.strip_prefix(':').ok_or_else(|| {
            format!("`{whole}` has no port: write HOST:PORT, such as udp://[::1]:514")
        })?;
        (host, port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or_else(|| {
            format!("`{whole}` has no port: write HOST:PORT, such as udp://127.0.0.1:514")
        })?;
        if host.contains(':') {
            return Err(format!(
                "`{whole}`: put an IPv6 address in brackets, such as udp://[2001:db8::1]:514"
            ));
        }
        (host, port)
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>().map_err(|_| {
            format!(
                "`{host}` is not an IP address: host names are not resolved when the config is \
                 read, so use an IP address or `localhost`"
            )
        })?
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            return Err(format!("`{port}` in `{whole}` is not a port (1-65535)"));
        }
    };
    Ok(std::net::SocketAddr::new(ip, port))
}

/// `udp://HOST:PORT`, `tcp://HOST:PORT` or `unix:///PATH`.
fn parse_syslog_address(text: &str) -> Result<SyslogTransport, String> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("udp://") {
        parse_host_port(rest, text).map(SyslogTransport::Udp)
    } else if let Some(rest) = text.strip_prefix("tcp://") {
        parse_host_port(rest, text).map(SyslogTransport::Tcp)
    } else if let Some(path) = text.strip_prefix("unix://") {
        if path.len() > 1 && path.starts_with('/') && !path.ends_with('/') {
            Ok(SyslogTransport::Unix(std::path::PathBuf::from(path)))
        } else {
            Err(format!(
                "`{text}`: a unix socket address is unix:// then an absolute path, such as \
                 unix:///dev/log"
            ))
        }
    } else {
        Err(format!(
            "`{text}` is not a syslog address: use udp://HOST:PORT, tcp://HOST:PORT or \
             unix:///PATH (such as udp://127.0.0.1:514 or unix:///dev/log)"
        ))
    }
}

/// An `http://` or `https://` URL with a host, an optional port and an optional path.
fn check_http_url(text: &str) -> Result<(), String> {
    let lower = text.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &text["http://".len()..]
    } else if lower.starts_with("https://") {
        &text["https://".len()..]
    } else {
        return Err(format!("`{text}` is not an http:// or https:// URL"));
    };
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{text}` contains white space: percent-encode it (%20)"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "`{text}` carries credentials: put them in `headers` (Authorization) instead"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{text}`: missing `]` after the IPv6 address"))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("`{text}`: `{host}` is not an IPv6 address"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("`{text}`: unexpected `{after}` after the host")),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{text}` has no host"));
    }
    let host_ok = authority.starts_with('[')
        || host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !host_ok {
        return Err(format!("`{text}`: `{host}` is not a valid host name"));
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("`{text}`: `{port}` is not a port (1-65535)")),
        }
    }
    Ok(())
}

/// An HTTP header name: an RFC 9110 token.
fn check_header_name(name: &str) -> Result<(), String> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !name.is_empty() && name.bytes().all(tchar) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"
        ))
    }
}

/// An HTTP header value: visible ASCII, spaces and tabs; no line breaks.
fn check_header_value(value: &str) -> Result<(), String> {
    if value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        Ok(())
    } else {
        Err(
            "the header value may hold only visible ASCII characters, spaces and tabs (no line \
             breaks)"
                .to_owned(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"groups:
  kubelet: { protocols: [tcp], ports: ["10250"], allow: ["203.0.113.0/28", "2001:db8:1::/64"], action: monitor }
  nodeport: { protocols: [tcp, udp], ports: ["30000-32767"], allow: ["0.0.0.0/0", "::/0"] }
sampling: { allowed_flows_one_in: 100 }
limits: { flows: 65536, events_per_source_per_second: 20, answer_timeout_ms: 1000 }
"#;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn parse(yaml: &str) -> Config {
        Config::from_yaml(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
    }

    /// Asserts that `yaml` fails at `line:column` on `field` with a message containing `msg`.
    #[track_caller]
    fn assert_error(yaml: &str, line: usize, column: usize, field: &str, msg: &str) {
        let e = Config::from_yaml(yaml, "test.yaml").expect_err("config should be rejected");
        assert_eq!(
            (e.line, e.column, e.field.as_str()),
            (Some(line), Some(column), field),
            "wrong location or field for: {e}"
        );
        assert!(
            e.message.contains(msg),
            "message {:?} lacks {msg:?}",
            e.message
        );
        assert_eq!(e.origin, "test.yaml");
        let field = if field.is_empty() {
            String::new()
        } else {
            format!("{field}: ")
        };
        assert_eq!(
            e.to_string(),
            format!("test.yaml:{line}:{column}: {field}{}", e.message)
        );
    }

    /// A group snippet with the given ports and protocols.
    fn group_yaml(name: &str, protocols: &str, ports: &str) -> String {
        format!("  {name}: {{ protocols: [{protocols}], ports: [{ports}] }}\n")
    }

    #[test]
    fn example_parses_to_the_expected_struct() {
        let expected = Config {
            groups: vec![
                Group {
                    name: "kubelet".into(),
                    id: 1,
                    protocols: vec![Protocol::Tcp],
                    ports: vec![PortRange::single(10250)],
                    allow: vec![
                        AllowEntry::Cidr(net("203.0.113.0/28")),
                        AllowEntry::Cidr(net("2001:db8:1::/64")),
                    ],
                    action: Action::Monitor,
                    detect_sweeps: false,
                },
                Group {
                    name: "nodeport".into(),
                    id: 2,
                    protocols: vec![Protocol::Tcp, Protocol::Udp],
                    ports: vec![PortRange {
                        start: 30000,
                        end: 32767,
                    }],
                    allow: vec![
                        AllowEntry::Cidr(net("0.0.0.0/0")),
                        AllowEntry::Cidr(net("::/0")),
                    ],
                    action: Action::Monitor,
                    detect_sweeps: false,
                },
            ],
            sampling: Sampling {
                allowed_flows_one_in: 100,
            },
            limits: Limits::DEFAULT,
            interfaces: vec![],
            attach: None,
            alerts: AlertSettings::DEFAULT,
            sinks: vec![SinkSpec::default_stdout()],
            metrics: MetricsSettings::DEFAULT,
        };
        assert_eq!(parse(EXAMPLE), expected);
    }

    #[test]
    fn default_config_parses_to_the_catalog() {
        let config = Config::default_config();
        let tcp = |p| (vec![Protocol::Tcp], vec![PortRange::single(p)]);
        let catalog = [
            (
                "kubelet",
                tcp(10250),
                vec![AllowEntry::Set(SymbolicSet::NodeSubnets)],
            ),
            ("kubelet-readonly", tcp(10255), vec![]),
            (
                "kubelet-healthz",
                tcp(10248),
                vec![AllowEntry::Set(SymbolicSet::Localhost)],
            ),
            (
                "apiserver",
                tcp(6443),
                vec![AllowEntry::Set(SymbolicSet::NodeSubnets)],
            ),
            (
                "etcd-client",
                tcp(2379),
                vec![AllowEntry::Set(SymbolicSet::NodeSubnets)],
            ),
            (
                "etcd-peer",
                tcp(2380),
                vec![AllowEntry::Set(SymbolicSet::NodeSubnets)],
            ),
            (
                "etcd-metrics",
                tcp(2381),
                vec![AllowEntry::Set(SymbolicSet::Localhost)],
            ),
            (
                "scheduler",
                tcp(10259),
                vec![AllowEntry::Set(SymbolicSet::Localhost)],
            ),
            (
                "controller-manager",
                tcp(10257),
                vec![AllowEntry::Set(SymbolicSet::Localhost)],
            ),
            (
                "kube-proxy-healthz",
                tcp(10256),
                vec![AllowEntry::Set(SymbolicSet::NodeSubnets)],
            ),
            (
                "kube-proxy-metrics",
                tcp(10249),
                vec![AllowEntry::Set(SymbolicSet::Localhost)],
            ),
            (
                "nodeport",
                (
                    vec![Protocol::Tcp, Protocol::Udp],
                    vec![PortRange {
                        start: 30000,
                        end: 32767,
                    }],
                ),
                vec![
                    AllowEntry::Cidr(net("0.0.0.0/0")),
                    AllowEntry::Cidr(net("::/0")),
                ],
            ),
        ];
        assert_eq!(config.groups.len(), catalog.len());
        for (i, (group, (name, (protocols, ports), allow))) in
            config.groups.iter().zip(catalog).enumerate()
        {
            assert_eq!(group.name, name);
            assert_eq!(usize::from(group.id), i + 1);
            assert_eq!(group.protocols, protocols, "{name}");
            assert_eq!(group.ports, ports, "{name}");
            assert_eq!(group.allow, allow, "{name}");
            assert_eq!(group.action, Action::Monitor, "{name}");
            assert_eq!(group.detect_sweeps, name == "nodeport", "{name}");
        }
        assert!(config.interfaces.is_empty());
        assert_eq!(config.attach, None);
        assert_eq!(config.alerts, AlertSettings::DEFAULT);
        assert_eq!(config.sinks, vec![SinkSpec::default_stdout()]);
        assert_eq!(config.metrics, MetricsSettings::DEFAULT);
        assert_eq!(config.sampling, Sampling::DEFAULT);
        assert_eq!(config.sampling.allowed_flows_one_in, 100);
        assert_eq!(config.limits, Limits::DEFAULT);
        assert_eq!(config.limits.ring_buffer_bytes, 1 << 20);
    }

    #[test]
    fn every_section_is_optional() {
        for yaml in [
            "",
            "# nothing\n",
            "groups:\n",
            "groups: {}\nsampling: {}\nlimits: {}\n",
            "interfaces:\nattach:\nalerts:\nsinks:\nmetrics:\n",
            "interfaces: []\nalerts: {sweep: {}}\nmetrics: {}\n",
        ] {
            let config = parse(yaml);
            assert!(config.groups.is_empty(), "{yaml:?}");
            assert_eq!(config.sampling, Sampling::DEFAULT);
            assert_eq!(config.limits, Limits::DEFAULT);
            assert!(config.interfaces.is_empty());
            assert_eq!(config.attach, None);
            assert_eq!(config.alerts, AlertSettings::DEFAULT);
            assert_eq!(config.sinks, vec![SinkSpec::default_stdout()]);
            assert_eq!(config.metrics, MetricsSettings::DEFAULT);
        }
        let config = parse(
            "limits: { flows: 2048, ring_buffer_bytes: 4096 }\nsampling: { allowed_flows_one_in: 0 }\n",
        );
        assert_eq!(
            config.limits,
            Limits {
                flows: 2048,
                ring_buffer_bytes: 4096,
                ..Limits::DEFAULT
            }
        );
        assert_eq!(config.sampling.allowed_flows_one_in, 0);
    }

    #[test]
    fn block_style_ports_bare_ips_and_actions() {
        let config = parse(
            "groups:\n  web:\n    protocols:\n      - udp\n    ports:\n      - 53\n      - \"8000-8080\"\n      - \"9000\"\n    allow:\n      - 198.51.100.7\n      - 2001:db8::1\n      - localhost\n    action: drop\n",
        );
        let web = &config.groups[0];
        assert_eq!(web.protocols, [Protocol::Udp]);
        assert_eq!(
            web.ports,
            [
                PortRange::single(53),
                PortRange {
                    start: 8000,
                    end: 8080
                },
                PortRange::single(9000)
            ]
        );
        assert_eq!(
            web.allow,
            [
                AllowEntry::Cidr(net("198.51.100.7/32")),
                AllowEntry::Cidr(net("2001:db8::1/128")),
                AllowEntry::Set(SymbolicSet::Localhost)
            ]
        );
        assert_eq!(web.action, Action::Drop);
        // The default action is monitor.
        assert_eq!(parse(EXAMPLE).groups[1].action, Action::Monitor);
    }

    #[test]
    fn group_by_id_follows_file_order() {
        let config = parse(EXAMPLE);
        assert_eq!(
            config.group_by_id(1).map(|g| g.name.as_str()),
            Some("kubelet")
        );
        assert_eq!(
            config.group_by_id(2).map(|g| g.name.as_str()),
            Some("nodeport")
        );
        assert!(config.group_by_id(0).is_none());
        assert!(config.group_by_id(3).is_none());
        assert!(config.group_by_id(255).is_none());
    }

    #[test]
    fn port_tables_map_each_port_to_its_group() {
        let config = parse(EXAMPLE);
        let (tcp, udp) = config.port_tables();
        assert_eq!((tcp.len(), udp.len()), (65536, 65536));
        assert_eq!((tcp[10250], udp[10250]), (1, 0));
        for port in [30000, 31000, 32767] {
            assert_eq!((tcp[port], udp[port]), (2, 2), "port {port}");
        }
        for port in [0, 29999, 32768, 10249, 10251, 65535] {
            assert_eq!((tcp[port], udp[port]), (0, 0), "port {port}");
        }
        let watched = tcp.iter().chain(&udp).filter(|&&g| g != 0).count();
        assert_eq!(watched, 1 + 2 * 2768);

        let (tcp, udp) = Config::default_config().port_tables();
        let config = Config::default_config();
        for group in &config.groups {
            for range in &group.ports {
                assert_eq!(tcp[usize::from(range.start)], group.id, "{}", group.name);
            }
        }
        assert_eq!(udp[10250], 0);
        assert_eq!(udp[30000], config.groups[11].id);
    }

    #[test]
    fn resolve_allowlists_expands_truncates_and_dedups() {
        let config = parse(
            "groups:\n  a: { protocols: [tcp], ports: [1], allow: [localhost, node-subnets, \"10.1.2.3/8\", \"10.0.0.0/8\", localhost] }\n  b: { protocols: [tcp], ports: [2], allow: [\"203.0.113.9\", node-subnets] }\n  c: { protocols: [tcp], ports: [3], allow: [] }\n",
        );
        let subnets = [
            net("198.51.100.17/24"),
            net("2001:db8:5::42/64"),
            net("198.51.100.0/24"),
        ];
        let resolved = config.resolve_allowlists(&subnets);
        assert_eq!(
            resolved,
            vec![
                (1, net("127.0.0.0/8")),
                (1, net("::1/128")),
                (1, net("198.51.100.0/24")),
                (1, net("2001:db8:5::/64")),
                (1, net("10.0.0.0/8")),
                (2, net("203.0.113.9/32")),
                (2, net("198.51.100.0/24")),
                (2, net("2001:db8:5::/64")),
            ]
        );
        // Without attached interfaces, node-subnets resolves to nothing.
        assert_eq!(config.resolve_allowlists(&[]).len(), 4);
    }

    #[test]
    fn digest_is_stable_and_ignores_layout() {
        let a = parse(EXAMPLE);
        let digest = a.digest();
        assert_eq!(digest.len(), 16);
        assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(digest, parse(EXAMPLE).digest());
        // Same meaning, other layout: same digest.
        let reformatted = "# comment\ngroups:\n  kubelet:\n    protocols: [tcp]\n    ports: [10250]\n    allow: ['203.0.113.0/28', '2001:db8:1::/64']\n  nodeport: { protocols: [tcp, udp], ports: [\"30000-32767\"], allow: [\"0.0.0.0/0\", \"::/0\"] }\n";
        assert_eq!(parse(reformatted).digest(), digest);
        // Any change shows.
        let changed = EXAMPLE.replace("allowed_flows_one_in: 100", "allowed_flows_one_in: 10");
        assert_ne!(parse(&changed).digest(), digest);
        assert_ne!(Config::default_config().digest(), digest);
    }

    #[test]
    fn overlaps_across_groups_are_errors_but_not_within_a_group() {
        // A group may overlap itself, and tcp/udp are separate.
        let config = parse(&format!(
            "groups:\n{}{}",
            group_yaml("a", "tcp", "\"10000-11000\", 10250, \"10500-10600\""),
            group_yaml("b", "udp", "10250")
        ));
        let (tcp, udp) = config.port_tables();
        assert_eq!((tcp[10250], udp[10250]), (1, 2));

        let yaml = format!(
            "groups:\n{}{}",
            group_yaml("etcd-client", "tcp", "2379"),
            group_yaml("etcd-x", "udp, tcp", "\"2000-2378\", \"2300-3000\"")
        );
        assert_error(
            &yaml,
            3,
            57,
            "groups.etcd-x.ports[1]",
            "port 2379/tcp is already in group etcd-client",
        );
    }

    #[test]
    fn error_yaml_syntax() {
        assert_error(
            "groups:\n  a: {protocols: [tcp}\n",
            2,
            18,
            "groups.a.protocols",
            "YAML syntax error",
        );
        assert_error("groups: [\n", 1, 9, "groups", "expected a mapping");
        assert_error("- a\n", 1, 1, "", "expected a mapping");
        assert_error(
            "groups:\n  a: { protocols: [tcp], ports: [1], allow: [~] }\n",
            2,
            46,
            "groups.a.allow[0]",
            "expected a value, found null",
        );
        assert_error(
            "groups: {}\n---\ngroups: {}\n",
            3,
            1,
            "",
            "more than one YAML document",
        );
        assert_error(
            "groups:\n  a: {protocols: [tcp], ports: [1]}\n  a: {protocols: [tcp], ports: [2]}\n",
            3,
            3,
            "groups",
            "duplicate key `a`",
        );
    }

    #[test]
    fn error_unknown_fields() {
        assert_error("bogus: 1\n", 1, 1, "bogus", "unknown field `bogus`");
        assert_error(
            "groups:\n  kubelet: { protocols: [tcp], portz: [\"10250\"] }\n",
            2,
            32,
            "groups.kubelet.portz",
            "unknown field `portz`",
        );
        assert_error(
            "limits:\n  flows: 2048\n  value: 1\n",
            3,
            3,
            "limits.value",
            "unknown field `value`",
        );
        assert_error(
            "sampling:\n  one_in: 5\n",
            2,
            3,
            "sampling.one_in",
            "unknown field `one_in`, expected one of allowed_flows_one_in",
        );
    }

    #[test]
    fn error_allow_entries() {
        let group = "groups:\n  a:\n    protocols: [tcp]\n    ports: [\"1\"]\n    allow: ";
        assert_error(
            &format!("{group}[\"1.2.3.4/33\"]\n"),
            5,
            13,
            "groups.a.allow[0]",
            "`1.2.3.4/33` is not a valid IP address or CIDR",
        );
        assert_error(
            &format!("{group}[localhost, 300.1.1.1]\n"),
            5,
            24,
            "groups.a.allow[1]",
            "`300.1.1.1` is not a valid IP address or CIDR",
        );
        assert_error(
            &format!("{group}[\"2001:db8::/129\"]\n"),
            5,
            13,
            "groups.a.allow[0]",
            "not a valid IP address or CIDR",
        );
        assert_error(
            &format!("{group}[\"1.2.3.4\", control-plane]\n"),
            5,
            24,
            "groups.a.allow[1]",
            "unknown symbolic set `control-plane`: known sets are localhost, node-subnets",
        );
    }

    #[test]
    fn error_protocols() {
        let ports = "\n    ports: [1]\n";
        let yaml = |p: &str| format!("groups:\n  a:\n    protocols: {p}{ports}");
        assert_error(
            &yaml("[tcp, sctp]"),
            3,
            22,
            "groups.a.protocols[1]",
            "unknown protocol `sctp`: expected one of tcp, udp",
        );
        assert_error(
            &yaml("[TCP]"),
            3,
            17,
            "groups.a.protocols[0]",
            "unknown protocol `TCP`",
        );
        assert_error(
            &yaml("[udp, tcp, udp]"),
            3,
            27,
            "groups.a.protocols[2]",
            "duplicate protocol udp",
        );
        assert_error(
            &yaml("[]"),
            3,
            16,
            "groups.a.protocols",
            "at least one protocol",
        );
        assert_error(
            "groups:\n  a:\n    ports: [1]\n",
            2,
            3,
            "groups.a.protocols",
            "missing field `protocols`",
        );
        assert_error(&yaml("tcp"), 3, 16, "groups.a.protocols", "expected a list");
    }

    #[test]
    fn error_ports() {
        let yaml = |p: &str| format!("groups:\n  a:\n    protocols: [tcp]\n    ports: {p}\n");
        assert_error(
            &yaml("[0]"),
            4,
            13,
            "groups.a.ports[0]",
            "port 0 is not a valid port",
        );
        assert_error(
            &yaml("[1, \"0\"]"),
            4,
            16,
            "groups.a.ports[1]",
            "port 0 is not a valid port",
        );
        assert_error(
            &yaml("[65536]"),
            4,
            13,
            "groups.a.ports[0]",
            "port 65536 is out of range",
        );
        assert_error(
            &yaml("[\"70000\"]"),
            4,
            13,
            "groups.a.ports[0]",
            "port 70000 is out of range",
        );
        assert_error(
            &yaml("[-1]"),
            4,
            13,
            "groups.a.ports[0]",
            "port -1 is out of range",
        );
        assert_error(
            &yaml("[\"1-99999999999999999999999\"]"),
            4,
            13,
            "groups.a.ports[0]",
            "out of range",
        );
        assert_error(
            &yaml("[\"32767-30000\"]"),
            4,
            13,
            "groups.a.ports[0]",
            "range 32767-30000 is reversed",
        );
        for garbage in [
            "\"abc\"",
            "\"10250/tcp\"",
            "\"1-2-3\"",
            "\"-5\"",
            "\"\"",
            "\"30000-\"",
        ] {
            assert_error(
                &yaml(&format!("[{garbage}]")),
                4,
                13,
                "groups.a.ports[0]",
                "is not a port or a port range",
            );
        }
        assert_error(&yaml("[[1]]"), 4, 13, "groups.a.ports[0]", "invalid type");
        assert_error(&yaml("[]"), 4, 12, "groups.a.ports", "at least one port");
        assert_error(
            "groups:\n  a:\n    protocols: [tcp]\n",
            2,
            3,
            "groups.a.ports",
            "missing field `ports`",
        );
    }

    #[test]
    fn error_group_names_and_actions() {
        for bad in ["A", "-a", "_a", "a.b", "kube let", &"a".repeat(64)] {
            assert_error(
                &format!("groups:\n  \"{bad}\": {{ protocols: [tcp], ports: [1] }}\n"),
                2,
                3,
                &format!("groups.{bad}"),
                "invalid group name",
            );
        }
        // The longest and shortest valid names.
        let long = "a".repeat(63);
        parse(&format!(
            "groups:\n  {long}: {{ protocols: [tcp], ports: [1] }}\n  0: {{ protocols: [tcp], ports: [2] }}\n"
        ));
        assert_error(
            "groups:\n  a: { protocols: [tcp], ports: [1], action: block }\n",
            2,
            46,
            "groups.a.action",
            "unknown action `block`: expected one of monitor, drop",
        );
    }

    #[test]
    fn error_too_many_groups() {
        let groups = |n: u16| {
            let mut yaml = String::from("groups:\n");
            for i in 1..=n {
                yaml.push_str(&group_yaml(&format!("g{i}"), "tcp", &i.to_string()));
            }
            yaml
        };
        let config = parse(&groups(63));
        assert_eq!(config.groups.len(), MAX_USER_GROUPS);
        assert_eq!(config.groups[62].id, 63);
        assert_error(
            &groups(64),
            65,
            3,
            "groups.g64",
            "too many groups: at most 63",
        );
    }

    #[test]
    fn error_limits_out_of_range() {
        let cases = [
            (
                "flows: 1023",
                10,
                "limits.flows",
                "1023 is out of range: must be between 1024 and 16777216",
            ),
            ("flows: 16777217", 10, "limits.flows", "out of range"),
            (
                "answer_timeout_ms: 0",
                22,
                "limits.answer_timeout_ms",
                "between 1 and 60000",
            ),
            (
                "answer_timeout_ms: 60001",
                22,
                "limits.answer_timeout_ms",
                "out of range",
            ),
            (
                "flow_idle_timeout_ms: 0",
                25,
                "limits.flow_idle_timeout_ms",
                "between 1 and 3600000",
            ),
            (
                "flow_idle_timeout_ms: 3600001",
                25,
                "limits.flow_idle_timeout_ms",
                "out of range",
            ),
            ("sources: 255", 12, "limits.sources", "between 256 and"),
            (
                "events_per_source_per_second: 4294967296",
                33,
                "limits.events_per_source_per_second",
                "out of range",
            ),
            (
                "allow_entries: 0",
                18,
                "limits.allow_entries",
                "out of range",
            ),
            (
                "ring_buffer_bytes: 2048",
                22,
                "limits.ring_buffer_bytes",
                "between 4096 and",
            ),
            (
                "ring_buffer_bytes: 2147483648",
                22,
                "limits.ring_buffer_bytes",
                "out of range",
            ),
            (
                "ring_buffer_bytes: 5000",
                22,
                "limits.ring_buffer_bytes",
                "5000 is not a power of two",
            ),
            (
                "ring_buffer_bytes: 12288",
                22,
                "limits.ring_buffer_bytes",
                "not a power of two",
            ),
            ("flows: -3", 10, "limits.flows", "expected a whole number"),
            ("flows: lots", 10, "limits.flows", "expected a whole number"),
        ];
        for (line, column, field, msg) in cases {
            assert_error(&format!("limits:\n  {line}\n"), 2, column, field, msg);
        }
        assert_error(
            "sampling: { allowed_flows_one_in: 4294967296 }\n",
            1,
            35,
            "sampling.allowed_flows_one_in",
            "out of range",
        );
        // The bounds themselves are accepted.
        let config = parse(
            "limits: { flows: 1024, sources: 256, answer_timeout_ms: 60000, flow_idle_timeout_ms: 1, ring_buffer_bytes: 1073741824, events_per_source_per_second: 0 }\n",
        );
        assert_eq!(config.limits.ring_buffer_bytes, 1 << 30);
    }

    #[test]
    fn load_reads_files_and_names_the_path_in_errors() {
        let dir =
            std::env::temp_dir().join(format!("node-monitor-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.yaml");
        std::fs::write(&good, EXAMPLE).unwrap();
        assert_eq!(Config::load(&good).unwrap(), parse(EXAMPLE));

        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "limits:\n  flows: 1\n").unwrap();
        let e = Config::load(&bad).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:2:10: limits.flows: 1 is out of range: must be between 1024 and 16777216",
                bad.display()
            )
        );

        let missing = dir.join("missing.yaml");
        let e = Config::load(&missing).unwrap_err();
        assert_eq!((e.line, e.column), (None, None));
        assert_eq!(e.origin, missing.display().to_string());
        assert!(
            e.to_string().starts_with(&format!(
                "{}: cannot read the config file: ",
                missing.display()
            )),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn error_display_without_location() {
        let e = ConfigError {
            origin: "c.yaml".into(),
            line: None,
            column: None,
            field: "limits.flows".into(),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "c.yaml: limits.flows: bad");
    }

    // --- interfaces, attach, alerts, sinks, metrics, detect_sweeps -------------------------

    const FULL: &str = r#"interfaces: ["eth*", "ens5", "en[op]?s*"]
attach: tc
groups:
  nodeport: { protocols: [tcp, udp], ports: ["30000-32767"], allow: ["0.0.0.0/0", "::/0"], detect_sweeps: true }
  kubelet: { protocols: [tcp], ports: [10250], detect_sweeps: false }
alerts:
  dedup_window_s: 120
  sweep: { min_ports: 20, window_s: 30 }
  flood_window_s: 5
sinks:
  - {type: stdout, format: ecs}
  - {type: file, path: /var/log/node-monitor/alerts.json, format: ocsf, max_size_mb: 100, keep: 5}
  - {type: syslog, address: "udp://127.0.0.1:514", format: cef}
  - {type: http, url: "https://siem.example/ingest", format: ecs, batch_max: 500, batch_interval_ms: 1000, timeout_ms: 5000, max_retries: 5, headers: {Authorization: "Bearer x", X-Tenant: node-1}}
  - {type: syslog, address: "tcp://[2001:db8::1]:6514", name: remote, queue: 50, flows: true}
  - {type: syslog, address: "unix:///dev/log"}
  - {type: file, path: /var/log/nm/flows.json, flows: true, keep: 0, max_size_mb: 1}
metrics: { listen: "[::]:9100" }
"#;

    #[test]
    fn full_example_parses_every_new_field() {
        use std::time::Duration;
        let config = parse(FULL);
        assert_eq!(config.interfaces, ["eth*", "ens5", "en[op]?s*"]);
        assert_eq!(config.attach, Some(AttachKind::Tc));
        assert!(config.groups[0].detect_sweeps);
        assert!(!config.groups[1].detect_sweeps);
        assert_eq!(
            config.alerts,
            AlertSettings {
                dedup_window: Duration::from_secs(120),
                sweep_min_ports: 20,
                sweep_window: Duration::from_secs(30),
                flood_window: Duration::from_secs(5),
            }
        );
        assert_eq!(config.metrics.listen, "[::]:9100".parse().unwrap());
        let sink =
            |name: &str, kind: SinkKind, format: Format, queue: usize, flows: bool| SinkSpec {
                name: name.into(),
                kind,
                format,
                queue,
                flows,
            };
        let expected = vec![
            sink("stdout", SinkKind::Stdout, Format::Ecs, 10_000, true),
            sink(
                "file",
                SinkKind::File {
                    path: "/var/log/node-monitor/alerts.json".into(),
                    max_size_bytes: 100 * 1024 * 1024,
                    keep: 5,
                },
                Format::Ocsf,
                10_000,
                false,
            ),
            sink(
                "syslog",
                SinkKind::Syslog {
                    transport: SyslogTransport::Udp("127.0.0.1:514".parse().unwrap()),
                },
                Format::Cef,
                10_000,
                false,
            ),
            sink(
                "http",
                SinkKind::Http {
                    url: "https://siem.example/ingest".into(),
                    batch_max: 500,
                    batch_interval: Duration::from_millis(1000),
                    timeout: Duration::from_millis(5000),
                    max_retries: 5,
                    headers: vec![
                        ("Authorization".into(), "Bearer x".into()),
                        ("X-Tenant".into(), "node-1".into()),
                    ],
                },
                Format::Ecs,
                10_000,
                false,
            ),
            sink(
                "remote",
                SinkKind::Syslog {
                    transport: SyslogTransport::Tcp("[2001:db8::1]:6514".parse().unwrap()),
                },
                Format::Ecs,
                50,
                true,
            ),
            sink(
                "syslog-2",
                SinkKind::Syslog {
                    transport: SyslogTransport::Unix("/dev/log".into()),
                },
                Format::Ecs,
                10_000,
                false,
            ),
            sink(
                "file-2",
                SinkKind::File {
                    path: "/var/log/nm/flows.json".into(),
                    max_size_bytes: 1024 * 1024,
                    keep: 0,
                },
                Format::Ecs,
                10_000,
                true,
            ),
        ];
        assert_eq!(config.sinks, expected);
    }

    #[test]
    fn sink_defaults_and_derived_names() {
        use std::time::Duration;
        let config = parse(
            "sinks:\n  - type: http\n    url: http://10.0.0.1:8080\n  - type: file\n    path: /a\n  - type: stdout\n    flows: false\n  - type: http\n    url: https://[2001:db8::5]/in?x=1\n",
        );
        let names: Vec<&str> = config.sinks.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["http", "file", "stdout", "http-2"]);
        assert_eq!(
            config.sinks[0].kind,
            SinkKind::Http {
                url: "http://10.0.0.1:8080".into(),
                batch_max: 500,
                batch_interval: Duration::from_secs(1),
                timeout: Duration::from_secs(5),
                max_retries: 5,
                headers: vec![],
            }
        );
        assert_eq!(
            config.sinks[1].kind,
            SinkKind::File {
                path: "/a".into(),
                max_size_bytes: 100 << 20,
                keep: 5
            }
        );
        assert!(config.sinks.iter().all(|s| s.format == Format::Ecs));
        assert!(config.sinks.iter().all(|s| s.queue == 10_000));
        assert!(config.sinks.iter().all(|s| !s.flows));
        // localhost is the one host name a syslog address may use.
        let config = parse("sinks: [{type: syslog, address: \"tcp://localhost:601\"}]\n");
        assert_eq!(
            config.sinks[0].kind,
            SinkKind::Syslog {
                transport: SyslogTransport::Tcp("127.0.0.1:601".parse().unwrap())
            }
        );
        // Bounds are accepted.
        let config = parse(
            "sinks: [{type: file, path: /x, queue: 10000000, max_size_mb: 1048576, keep: 100}, {type: stdout, queue: 1}]\nalerts: {dedup_window_s: 86400, sweep: {min_ports: 65535, window_s: 3600}, flood_window_s: 3600}\n",
        );
        assert_eq!(config.sinks[0].queue, 10_000_000);
        assert_eq!(config.alerts.dedup_window, Duration::from_secs(86_400));
        assert_eq!(config.alerts.sweep_min_ports, 65_535);
        parse(
            "alerts: {dedup_window_s: 1, sweep: {min_ports: 2, window_s: 1}, flood_window_s: 1}\n",
        );
    }

    #[test]
    fn attach_and_interfaces() {
        assert_eq!(parse("attach: xdp\n").attach, Some(AttachKind::Xdp));
        assert_eq!(parse("attach:\n").attach, None);
        assert_eq!(
            parse("interfaces:\n  - eth0\n  - \"veth*\"\n  - bond0.100\n  - abcdefghijklmno\n")
                .interfaces,
            ["eth0", "veth*", "bond0.100", "abcdefghijklmno"]
        );
        // A glob may be longer than a name: it is not a name.
        parse("interfaces: [\"[a-z][a-z][a-z][a-z]*\"]\n");
    }

    #[test]
    fn error_interfaces_and_attach() {
        assert_error(
            "interfaces: [eth0, abcdefghijklmnop]\n",
            1,
            20,
            "interfaces[1]",
            "interface name `abcdefghijklmnop` is 16 bytes long: interface names are at most 15 bytes",
        );
        assert_error(
            "interfaces:\n  - eth0\n  - \"eth[\"\n",
            3,
            5,
            "interfaces[1]",
            "`eth[` is not a valid glob",
        );
        assert_error(
            "interfaces: [\"\"]\n",
            1,
            14,
            "interfaces[0]",
            "an empty interface name",
        );
        assert_error(
            "interfaces: [\"a/b\"]\n",
            1,
            14,
            "interfaces[0]",
            "`/` and white space are not allowed",
        );
        assert_error(
            "interfaces: \"eth*\"\n",
            1,
            13,
            "interfaces",
            "expected a list",
        );
        assert_error(
            "attach: bpf\n",
            1,
            9,
            "attach",
            "unknown attach mode `bpf`: expected one of xdp, tc",
        );
    }

    #[test]
    fn error_detect_sweeps() {
        assert_error(
            "groups:\n  a: {protocols: [tcp], ports: [1], detect_sweeps: maybe}\n",
            2,
            52,
            "groups.a.detect_sweeps",
            "expected true or false",
        );
    }

    #[test]
    fn error_alerts_and_metrics() {
        assert_error(
            "alerts:\n  dedup_window_s: 0\n",
            2,
            19,
            "alerts.dedup_window_s",
            "0 is out of range: must be between 1 and 86400",
        );
        assert_error(
            "alerts: {sweep: {min_ports: 1}}\n",
            1,
            29,
            "alerts.sweep.min_ports",
            "must be between 2 and 65535",
        );
        assert_error(
            "alerts:\n  sweep:\n    window_s: 3601\n",
            3,
            15,
            "alerts.sweep.window_s",
            "must be between 1 and 3600",
        );
        assert_error(
            "alerts: {flood_window_s: 0}\n",
            1,
            26,
            "alerts.flood_window_s",
            "must be between 1 and 3600",
        );
        assert_error(
            "alerts: {sweep: {ports: 3}}\n",
            1,
            18,
            "alerts.sweep.ports",
            "unknown field `ports`",
        );
        assert_error(
            "metrics:\n  listen: \"localhost:9630\"\n",
            2,
            11,
            "metrics.listen",
            "`localhost:9630` is not a socket address",
        );
        assert_error(
            "metrics: {listen: \"127.0.0.1\"}\n",
            1,
            19,
            "metrics.listen",
            "is not a socket address",
        );
        assert_error(
            "metrics: {port: 1}\n",
            1,
            11,
            "metrics.port",
            "unknown field `port`",
        );
    }

    #[test]
    fn error_sinks_structure() {
        assert_error("sinks: []\n", 1, 8, "sinks", "must list at least one sink");
        assert_error("sinks: {type: stdout}\n", 1, 8, "sinks", "expected a list");
        assert_error(
            "sinks:\n  - {format: ecs}\n",
            2,
            5,
            "sinks[0].type",
            "missing field `type` (one of stdout, file, syslog, http)",
        );
        assert_error(
            "sinks:\n  - {type: kafka}\n",
            2,
            12,
            "sinks[0].type",
            "unknown sink type `kafka`: expected one of stdout, file, syslog, http",
        );
        assert_error(
            "sinks:\n  - {type: stdout, bogus: 1}\n",
            2,
            20,
            "sinks[0].bogus",
            "unknown field `bogus`",
        );
        assert_error(
            "sinks:\n  - type: stdout\n    path: /x\n",
            3,
            11,
            "sinks[0].path",
            "`path` is not a field of sinks of type stdout (their fields: type, name, format, queue, flows)",
        );
        assert_error(
            "sinks:\n  - {type: file, path: /x, url: \"http://a\"}\n",
            2,
            33,
            "sinks[0].url",
            "`url` is not a field of sinks of type file (their fields: type, name, format, queue, flows, path, max_size_mb, keep)",
        );
        assert_error(
            "sinks:\n  - {type: http, url: \"http://a\", address: \"udp://127.0.0.1:514\"}\n",
            2,
            44,
            "sinks[0].address",
            "`address` is not a field of sinks of type http",
        );
        assert_error(
            "sinks:\n  - {type: stdout, format: json}\n",
            2,
            28,
            "sinks[0].format",
            "unknown format `json`: expected one of ecs, ocsf, cef",
        );
        assert_error(
            "sinks:\n  - {type: stdout, queue: 0}\n",
            2,
            27,
            "sinks[0].queue",
            "0 is out of range: must be between 1 and 10000000",
        );
        assert_error(
            "sinks:\n  - {type: stdout, queue: 10000001}\n",
            2,
            27,
            "sinks[0].queue",
            "out of range",
        );
        assert_error(
            "sinks:\n  - {type: stdout, flows: 3}\n",
            2,
            27,
            "sinks[0].flows",
            "expected true or false",
        );
        assert_error(
            "sinks:\n  - {type: stdout, name: \"Out\"}\n",
            2,
            26,
            "sinks[0].name",
            "invalid sink name `Out`",
        );
    }

    #[test]
    fn error_duplicate_sink_names() {
        assert_error(
            "sinks:\n  - {type: stdout, name: out}\n  - {type: file, path: /x, name: out}\n",
            3,
            34,
            "sinks[1].name",
            "duplicate sink name `out`",
        );
        // A derived name that collides with an earlier explicit one: said so, at the sink.
        assert_error(
            "sinks:\n  - {type: file, path: /a, name: file}\n  - {type: file, path: /b}\n",
            3,
            5,
            "sinks[1].name",
            "duplicate sink name `file` (the name derived for this sink: give it a `name`)",
        );
    }

    #[test]
    fn error_file_sinks() {
        assert_error(
            "sinks:\n  - {type: file}\n",
            2,
            12,
            "sinks[0].path",
            "missing field `path` (an absolute file path) for a sink of type file",
        );
        assert_error(
            "sinks:\n  - type: file\n    path: var/log/a.json\n",
            3,
            11,
            "sinks[0].path",
            "`var/log/a.json` is not an absolute path",
        );
        assert_error(
            "sinks:\n  - {type: file, path: /var/log/}\n",
            2,
            24,
            "sinks[0].path",
            "names a directory",
        );
        assert_error(
            "sinks:\n  - {type: file, path: /a, max_size_mb: 0}\n",
            2,
            41,
            "sinks[0].max_size_mb",
            "0 is out of range: must be between 1 and 1048576",
        );
        assert_error(
            "sinks:\n  - {type: file, path: /a, keep: 101}\n",
            2,
            34,
            "sinks[0].keep",
            "101 is out of range: must be between 0 and 100",
        );
    }

    #[test]
    fn error_syslog_sinks() {
        let yaml = |a: &str| format!("sinks:\n  - type: syslog\n    address: \"{a}\"\n");
        let cases = [
            (
                "udp://syslog.example:514",
                "`syslog.example` is not an IP address: host names are not resolved when the config is read, so use an IP address or `localhost`",
            ),
            ("udp://127.0.0.1", "has no port"),
            (
                "udp://127.0.0.1:0",
                "`0` in `udp://127.0.0.1:0` is not a port (1-65535)",
            ),
            ("tcp://127.0.0.1:65536", "is not a port"),
            ("udp://2001:db8::1:514", "put an IPv6 address in brackets"),
            ("udp://[2001:db8::1:514", "missing `]`"),
            ("unix://dev/log", "unix:// then an absolute path"),
            ("unix://", "unix:// then an absolute path"),
            (
                "127.0.0.1:514",
                "is not a syslog address: use udp://HOST:PORT",
            ),
            ("https://127.0.0.1:514", "is not a syslog address"),
        ];
        for (address, msg) in cases {
            assert_error(&yaml(address), 3, 14, "sinks[0].address", msg);
        }
        assert_error(
            "sinks:\n  - {type: syslog}\n",
            2,
            12,
            "sinks[0].address",
            "missing field `address`",
        );
    }

    #[test]
    fn error_http_sinks() {
        let yaml = |u: &str| format!("sinks:\n  - type: http\n    url: \"{u}\"\n");
        let cases = [
            (
                "ftp://a.example/",
                "`ftp://a.example/` is not an http:// or https:// URL",
            ),
            ("siem.example", "is not an http:// or https:// URL"),
            ("https://", "has no host"),
            ("https:///x", "has no host"),
            ("https://a b/", "contains white space"),
            ("https://user:pw@a.example/", "carries credentials"),
            ("https://a.example:99999/", "`99999` is not a port"),
            ("https://a.example:/", "is not a port"),
            ("https://[::1/", "missing `]`"),
            ("https://[zz::1]/", "is not an IPv6 address"),
            ("https://a!b/", "is not a valid host name"),
        ];
        for (url, msg) in cases {
            assert_error(&yaml(url), 3, 10, "sinks[0].url", msg);
        }
        assert_error(
            "sinks:\n  - {type: http}\n",
            2,
            12,
            "sinks[0].url",
            "missing field `url` (an http:// or https:// URL) for a sink of type http",
        );
        let http = "sinks:\n  - type: http\n    url: https://a.example/\n";
        for (field, value, column, msg) in [
            ("batch_max", "0", 16, "between 1 and 100000"),
            ("batch_interval_ms", "0", 24, "between 1 and 600000"),
            ("timeout_ms", "600001", 17, "between 1 and 600000"),
            ("max_retries", "101", 18, "between 0 and 100"),
        ] {
            assert_error(
                &format!("{http}    {field}: {value}\n"),
                4,
                column,
                &format!("sinks[0].{field}"),
                msg,
            );
        }
        assert_error(
            &format!("{http}    headers:\n      Bad Name: x\n"),
            5,
            7,
            "sinks[0].headers.Bad Name",
            "`Bad Name` is not a valid HTTP header name",
        );
        assert_error(
            &format!("{http}    headers:\n      X-A: \"a\\nb\"\n"),
            5,
            12,
            "sinks[0].headers.X-A",
            "no line breaks",
        );
        assert_error(
            &format!("{http}    headers:\n      X-A: a\n      x-a: b\n"),
            6,
            7,
            "sinks[0].headers.x-a",
            "duplicate header `x-a` (header names ignore case)",
        );
        assert_error(
            &format!("{http}    headers: [a]\n"),
            4,
            14,
            "sinks[0].headers",
            "expected a mapping",
        );
    }

    #[test]
    fn digest_covers_the_new_fields() {
        let base = parse(FULL);
        let digest = base.digest();
        for (from, to) in [
            ("\"ens5\"", "\"ens6\""),
            ("attach: tc", "attach: xdp"),
            ("detect_sweeps: true", "detect_sweeps: false"),
            ("dedup_window_s: 120", "dedup_window_s: 121"),
            ("min_ports: 20", "min_ports: 21"),
            ("window_s: 30", "window_s: 31"),
            ("flood_window_s: 5", "flood_window_s: 6"),
            ("format: cef", "format: ocsf"),
            ("keep: 5", "keep: 6"),
            ("max_size_mb: 100", "max_size_mb: 101"),
            ("udp://127.0.0.1:514", "udp://127.0.0.1:515"),
            ("siem.example/ingest", "siem.example/other"),
            ("batch_max: 500", "batch_max: 501"),
            ("batch_interval_ms: 1000", "batch_interval_ms: 1001"),
            ("timeout_ms: 5000", "timeout_ms: 5001"),
            ("max_retries: 5", "max_retries: 6"),
            ("Bearer x", "Bearer y"),
            ("name: remote", "name: remote2"),
            ("queue: 50", "queue: 51"),
            ("flows: true, keep", "flows: false, keep"),
            ("[::]:9100", "[::]:9101"),
        ] {
            assert_eq!(FULL.matches(from).count(), 1, "{from}");
            let changed = parse(&FULL.replace(from, to));
            assert_ne!(changed.digest(), digest, "{from} -> {to}");
        }
        // Header values are secrets: the canonical form holds a hash of them, not them.
        let canonical = base.canonical();
        assert!(!canonical.contains("Bearer"), "{canonical}");
        assert!(canonical.contains("authorization:sha256:"), "{canonical}");
        // Writing a default explicitly does not change the meaning, nor the digest.
        assert_eq!(
            parse("groups: {}\n").digest(),
            parse("groups: {}\nsinks: [{type: stdout, format: ecs, queue: 10000, flows: true}]\nmetrics: {listen: \"127.0.0.1:9630\"}\nalerts: {dedup_window_s: 60}\ninterfaces: []\n").digest()
        );
    }

    #[test]
    fn reload_plan_separates_restart_fields() {
        let base = parse(FULL);
        assert!(base.reload_plan(&base).is_noop());
        let next = parse(&format!(
            "{FULL}limits: {{ flows: 2048, ring_buffer_bytes: 4096, answer_timeout_ms: 5, events_per_source_per_second: 3 }}\n"
        ));
        let plan = base.reload_plan(&next);
        assert_eq!(
            plan.restart_required,
            ["limits.flows", "limits.ring_buffer_bytes"]
        );
        assert!(plan.datapath && plan.answer_timeout);
        assert!(!plan.reattach && !plan.sinks && !plan.metrics && !plan.interfaces);

        let next = parse(&FULL.replace("attach: tc", "attach: xdp"));
        assert_eq!(
            base.reload_plan(&next),
            ReloadPlan {
                reattach: true,
                ..ReloadPlan::default()
            }
        );
        // `attach` left out means xdp: no re-attach between the two.
        let xdp = parse("attach: xdp\n");
        assert!(parse("").reload_plan(&xdp).is_noop());

        let next = parse(&FULL.replace("detect_sweeps: true", "detect_sweeps: false"));
        let plan = base.reload_plan(&next);
        assert!(plan.alerts && plan.datapath && plan.restart_required.is_empty());

        let next = parse(
            &FULL
                .replace("\"ens5\"", "\"ens6\"")
                .replace("keep: 5", "keep: 6")
                .replace("[::]:9100", "[::]:9101")
                .replace("min_ports: 20", "min_ports: 21"),
        );
        let plan = base.reload_plan(&next);
        assert!(plan.interfaces && plan.sinks && plan.metrics && plan.alerts);
        assert!(!plan.datapath && !plan.reattach && plan.restart_required.is_empty());

        let next = parse(&format!(
            "{FULL}limits: {{ sources: 512, allow_entries: 10 }}\n"
        ));
        assert_eq!(
            base.reload_plan(&next).restart_required,
            ["limits.sources", "limits.allow_entries"]
        );
    }

    #[test]
    fn iface_patterns() {
        for ok in [
            "eth0", "eth*", "en?", "en[op]s*", "[!l]*", "a:1", "veth.100",
        ] {
            assert_eq!(check_iface_pattern(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "eth[",
            "a b",
            "a/b",
            "abcdefghijklmnop",
            ".",
            "..",
            "eth**x",
        ] {
            assert!(check_iface_pattern(bad).is_err(), "{bad}");
        }
        assert!(is_glob("eth*") && is_glob("e?") && is_glob("[ab]") && !is_glob("eth0"));
    }

    #[test]
    fn symbolic_set_names_round_trip() {
        for set in SymbolicSet::ALL {
            assert_eq!(SymbolicSet::from_name(set.name()), Some(set));
            assert_eq!(parse_allow_entry(set.name()), Ok(AllowEntry::Set(set)));
        }
        assert_eq!(SymbolicSet::from_name("nodes"), None);
    }
}
