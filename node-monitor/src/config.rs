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
        let mut out = String::from("node-monitor-config/1\n");
        for g in &self.groups {
            out.push_str(&format!(
                "group {} {} protocols={} ports={} allow={} action={}\n",
                g.id,
                g.name,
                join(&g.protocols),
                join(&g.ports),
                join(&g.allow),
                g.action
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
                },
            ],
            sampling: Sampling {
                allowed_flows_one_in: 100,
            },
            limits: Limits::DEFAULT,
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
        }
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
        ] {
            let config = parse(yaml);
            assert!(config.groups.is_empty(), "{yaml:?}");
            assert_eq!(config.sampling, Sampling::DEFAULT);
            assert_eq!(config.limits, Limits::DEFAULT);
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

    #[test]
    fn symbolic_set_names_round_trip() {
        for set in SymbolicSet::ALL {
            assert_eq!(SymbolicSet::from_name(set.name()), Some(set));
            assert_eq!(parse_allow_entry(set.name()), Ok(AllowEntry::Set(set)));
        }
        assert_eq!(SymbolicSet::from_name("nodes"), None);
    }
}
