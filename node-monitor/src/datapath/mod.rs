//! The data path seen from userspace: load the embedded eBPF object, pin and adopt maps and
//! links, write the port tables, allowlists and settings from the config, attach to
//! interfaces, and read counters back.
//!
//! Pin layout under the pin directory (default `/sys/fs/bpf/node-monitor`):
//! - `maps/<NAME>`: every map; a restarted daemon reuses those whose shape still fits
//!   its config and replaces the others.
//! - `links/<hook>@<iface>`: the attachment links; a restarted daemon swaps its freshly
//!   loaded program into each one atomically (`bpf_link_update`), so counting never stops.
//! - `maps/GROUP_NAMES`: kernel group id → group name, so ids (and their counters) survive
//!   restarts and reloads whatever the order of groups in the config.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs, io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap as BpfHashMap, LpmTrie, MapData, MapInfo, MapType, PerCpuArray,
        PerCpuValues, RingBuf, lpm_trie::Key,
    },
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        tc::{self, TcAttachOptions},
        xdp::XdpLink,
    },
    util::nr_cpus,
};
use ipnet::IpNet;
use node_monitor_common::{
    AllowKeyV4, AllowKeyV6, FlowKey, FlowState, GROUP_NAME_BYTES, GroupName, GroupStats,
    MAX_GROUPS, PORT_TABLE_ENTRIES, PROTO_IDX_TCP, PROTO_IDX_UDP, STATS_ENTRIES, Settings,
    SourceSlot, VERDICT_ALLOWED, VERDICT_DENIED, VERDICT_SLOTS, VerdictSlot, map_name, prog_name,
    reason, source_slots, stats_index,
};
use tracing::{info, warn};

use crate::config::{Action, Config, Limits, Protocol};

mod error;

pub use error::{DatapathError, Result};

/// The eBPF object, built by build.rs and embedded in the binary.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/node-monitor"));

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/node-monitor";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Where the monitor attaches its ingress program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// XDP on ingress (native, falling back to generic), tc on egress.
    Xdp,
    /// tc on ingress and egress (tcx where the kernel has it).
    Tc,
}

/// One of the three hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    Xdp,
    TcIngress,
    TcEgress,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::TcIngress => "tc-ingress",
            Hook::TcEgress => "tc-egress",
        }
    }
    fn program(self) -> &'static str {
        match self {
            Hook::Xdp => prog_name::XDP_INGRESS,
            Hook::TcIngress => prog_name::TC_INGRESS,
            Hook::TcEgress => prog_name::TC_EGRESS,
        }
    }
    fn from_str(s: &str) -> Option<Hook> {
        [Hook::Xdp, Hook::TcIngress, Hook::TcEgress]
            .into_iter()
            .find(|h| h.as_str() == s)
    }
}

/// What an attach did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub iface: String,
    pub hook: Hook,
    /// "native", "generic", "tcx" or "netlink"; "pinned" for an adopted XDP link (it keeps
    /// the mode it was first attached in).
    pub mode: &'static str,
    /// True when an existing pinned link was adopted (program swapped in place).
    pub adopted: bool,
}

/// Sizes and pinning, fixed at load time.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Pin maps and links here; None keeps everything in this process (tests, benchmarks).
    pub pin_dir: Option<PathBuf>,
}

/// Expected shape of a map, to decide whether a pinned one can be adopted.
#[derive(Clone, Copy, Debug, PartialEq)]
struct MapShape {
    ty: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

fn expected_shapes(limits: &Limits) -> [(&'static str, MapShape); 12] {
    use std::mem::size_of;
    let s = |ty, k: usize, v: usize, n: u32| MapShape {
        ty,
        key_size: k as u32,
        value_size: v as u32,
        max_entries: n,
    };
    [
        (
            map_name::PORTS_TCP,
            s(MapType::Array, 4, 1, PORT_TABLE_ENTRIES),
        ),
        (
            map_name::PORTS_UDP,
            s(MapType::Array, 4, 1, PORT_TABLE_ENTRIES),
        ),
        (
            map_name::ALLOW_V4,
            s(
                MapType::LpmTrie,
                4 + size_of::<AllowKeyV4>(),
                1,
                limits.allow_entries,
            ),
        ),
        (
            map_name::ALLOW_V6,
            s(
                MapType::LpmTrie,
                4 + size_of::<AllowKeyV6>(),
                1,
                limits.allow_entries,
            ),
        ),
        (
            map_name::SETTINGS,
            s(MapType::Array, 4, size_of::<Settings>(), 1),
        ),
        (
            map_name::GROUP_STATS,
            s(
                MapType::PerCpuArray,
                4,
                size_of::<GroupStats>(),
                STATS_ENTRIES,
            ),
        ),
        (
            map_name::REASONS,
            s(MapType::PerCpuArray, 4, 8, reason::COUNT),
        ),
        (
            map_name::FLOWS,
            s(
                MapType::LruHash,
                size_of::<FlowKey>(),
                size_of::<FlowState>(),
                limits.flows,
            ),
        ),
        (
            map_name::SOURCES,
            s(
                MapType::Array,
                4,
                size_of::<SourceSlot>(),
                source_slots(limits.sources),
            ),
        ),
        (
            map_name::EVENTS,
            s(MapType::RingBuf, 0, 0, limits.ring_buffer_bytes),
        ),
        (
            map_name::GROUP_NAMES,
            s(MapType::Array, 4, GROUP_NAME_BYTES, MAX_GROUPS as u32),
        ),
        (
            map_name::VERDICTS,
            s(
                MapType::PerCpuArray,
                4,
                size_of::<VerdictSlot>(),
                VERDICT_SLOTS,
            ),
        ),
    ]
}

/// Stable kernel ids for group names.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct GroupIds(BTreeMap<String, u8>);

impl GroupIds {
    /// Keeps the ids of names that `prev` knew, gives new names the lowest free ids, and
    /// returns the ids that were newly handed out (their counters must start at zero).
    pub fn assign(prev: &GroupIds, cfg: &Config) -> Result<(GroupIds, Vec<u8>), usize> {
        let mut ids = BTreeMap::new();
        for g in &cfg.groups {
            if let Some(id) = prev.0.get(&g.name) {
                ids.insert(g.name.clone(), *id);
            }
        }
        let mut fresh = Vec::new();
        for g in &cfg.groups {
            if ids.contains_key(&g.name) {
                continue;
            }
            let used: BTreeSet<u8> = ids.values().copied().collect();
            let id = (1..MAX_GROUPS as u8)
                .find(|i| !used.contains(i))
                .ok_or(MAX_GROUPS - 1)?;
            ids.insert(g.name.clone(), id);
            fresh.push(id);
        }
        Ok((GroupIds(ids), fresh))
    }
    pub fn id(&self, name: &str) -> Option<u8> {
        self.0.get(name).copied()
    }
    pub fn name(&self, id: u8) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, v)| **v == id)
            .map(|(k, _)| k.as_str())
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, u8)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

/// Counters of one (group, protocol, verdict), summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupCounters {
    pub group: String,
    pub proto: Protocol,
    pub verdict: u8,
    pub stats: GroupStats,
}

enum HeldLink {
    /// Pinned: the pin keeps the link (and the node watched) after this process exits.
    Pinned(PinnedLink),
    /// Held by this process (unpinned, or adopted: then its pin keeps it as well).
    Xdp(XdpLink),
    Tc(aya::programs::tc::SchedClassifierLink),
}

impl HeldLink {
    /// Lets go of the link. An fd-based link stays attached while a pin holds it; a netlink
    /// attachment (kernels without bpf_link) is detached explicitly.
    fn release(self) {
        use aya::programs::links::Link as _;
        let r = match self {
            HeldLink::Pinned(p) => {
                drop(p);
                Ok(())
            }
            HeldLink::Xdp(l) => l.detach(),
            HeldLink::Tc(l) => l.detach(),
        };
        if let Err(e) = r {
            warn!(error = %e, "detaching a link");
        }
    }
}

/// The loaded data path.
pub struct Datapath {
    ebpf: Ebpf,
    pin_dir: Option<PathBuf>,
    ids: GroupIds,
    limits: Limits,
    ports_tcp: Array<MapData, u8>,
    ports_udp: Array<MapData, u8>,
    allow_v4: LpmTrie<MapData, AllowKeyV4, u8>,
    allow_v6: LpmTrie<MapData, AllowKeyV6, u8>,
    settings: Array<MapData, Settings>,
    stats: PerCpuArray<MapData, GroupStats>,
    reasons: PerCpuArray<MapData, u64>,
    flows: BpfHashMap<MapData, FlowKey, FlowState>,
    events: Option<RingBuf<MapData>>,
    links: Vec<(Attachment, HeldLink)>,
    group_names: Array<MapData, GroupName>,
    /// What the TCP and UDP port tables hold, when known (a new map is all zeros; an adopted
    /// one is read once), so that rewrites touch only the entries that change.
    ports_shadow: [Option<Vec<u8>>; 2],
}

macro_rules! take_map {
    ($ebpf:expr, $name:expr) => {{
        let m = $ebpf
            .take_map($name)
            .ok_or(DatapathError::MissingMap($name))?;
        m.try_into()
            .map_err(|error| DatapathError::Map { name: $name, error })?
    }};
}

impl Datapath {
    /// Loads the embedded object, adopting pinned maps that fit `cfg.limits`, and writes
    /// the config into the maps. Nothing is attached yet.
    pub fn load(cfg: &Config, node_subnets: &[IpNet], opts: &LoadOptions) -> Result<Datapath> {
        Self::load_object(EBPF_OBJECT, cfg, node_subnets, opts)
    }

    fn load_object(
        obj: &[u8],
        cfg: &Config,
        node_subnets: &[IpNet],
        opts: &LoadOptions,
    ) -> Result<Datapath> {
        if obj.is_empty() {
            return Err(DatapathError::EmptyObject);
        }
        let limits = cfg.limits.clone();
        let shapes = expected_shapes(&limits);
        let mut loader = EbpfLoader::new();
        for (name, shape) in &shapes {
            if shape.max_entries != default_max_entries(name) {
                loader.map_max_entries(name, shape.max_entries);
            }
        }
        let mut pin_paths = Vec::new();
        let mut adopted: BTreeSet<&'static str> = BTreeSet::new();
        if let Some(dir) = &opts.pin_dir {
            prepare_pin_dir(dir)?;
            for (name, shape) in &shapes {
                let path = dir.join("maps").join(name);
                if path.exists() {
                    let fits = match MapInfo::from_pin(&path) {
                        Ok(info) => {
                            let have = MapShape {
                                ty: info.map_type().unwrap_or(MapType::Unspecified),
                                key_size: info.key_size(),
                                value_size: info.value_size(),
                                max_entries: info.max_entries(),
                            };
                            if have != *shape {
                                info!(map = name, ?have, want = ?shape, "pinned map no longer fits; replacing it");
                            }
                            have == *shape
                        }
                        Err(e) => {
                            warn!(map = name, error = %e, "pinned map unreadable; replacing it");
                            false
                        }
                    };
                    if !fits {
                        fs::remove_file(&path).map_err(|error| DatapathError::PinDir {
                            path: path.clone(),
                            error,
                        })?;
                    } else {
                        info!(map = name, "adopting pinned map");
                        adopted.insert(*name);
                    }
                }
                pin_paths.push((*name, path));
            }
            // Counters under ids we cannot map back to names would be misattributed: without
            // a usable GROUP_NAMES, the counters start over too.
            let names = dir.join("maps").join(map_name::GROUP_NAMES);
            let stats = dir.join("maps").join(map_name::GROUP_STATS);
            if !names.exists() && stats.exists() {
                info!("pinned counters without group names; counters start over");
                fs::remove_file(&stats).map_err(|error| DatapathError::PinDir {
                    path: stats.clone(),
                    error,
                })?;
            }
            for (name, path) in &pin_paths {
                loader.map_pin_path(name, path.as_path());
            }
        }
        let mut ebpf = loader.load(obj)?;
        for name in [
            prog_name::XDP_INGRESS,
            prog_name::TC_INGRESS,
            prog_name::TC_EGRESS,
        ] {
            let prog = ebpf
                .program_mut(name)
                .ok_or(DatapathError::MissingProgram(name))?;
            let res = match prog {
                aya::programs::Program::Xdp(p) => p.load(),
                aya::programs::Program::SchedClassifier(p) => p.load(),
                _ => return Err(DatapathError::MissingProgram(name)),
            };
            res.map_err(|error| DatapathError::Program {
                name,
                error: Box::new(error),
            })?;
        }
        let group_names: Array<MapData, GroupName> = take_map!(ebpf, map_name::GROUP_NAMES);
        let prev_ids = read_group_names(&group_names)?;
        let fresh =
            |name: &str| (!adopted.contains(name)).then(|| vec![0u8; PORT_TABLE_ENTRIES as usize]);
        let ports_shadow = [fresh(map_name::PORTS_TCP), fresh(map_name::PORTS_UDP)];
        let mut dp = Datapath {
            ports_shadow,
            group_names,
            ports_tcp: take_map!(ebpf, map_name::PORTS_TCP),
            ports_udp: take_map!(ebpf, map_name::PORTS_UDP),
            allow_v4: take_map!(ebpf, map_name::ALLOW_V4),
            allow_v6: take_map!(ebpf, map_name::ALLOW_V6),
            settings: take_map!(ebpf, map_name::SETTINGS),
            stats: take_map!(ebpf, map_name::GROUP_STATS),
            reasons: take_map!(ebpf, map_name::REASONS),
            flows: take_map!(ebpf, map_name::FLOWS),
            events: Some(take_map!(ebpf, map_name::EVENTS)),
            ebpf,
            pin_dir: opts.pin_dir.clone(),
            ids: prev_ids,
            limits,
            links: Vec::new(),
        };
        dp.apply_config(cfg, node_subnets)?;
        Ok(dp)
    }

    /// Writes the config into the maps: settings, port tables, allowlists. Used at start and
    /// on reload; programs stay attached and counters keep counting. Entries are added
    /// before stale ones are removed, so an allowed source is never briefly denied.
    pub fn apply_config(&mut self, cfg: &Config, node_subnets: &[IpNet]) -> Result<()> {
        let (ids, fresh) =
            GroupIds::assign(&self.ids, cfg).map_err(|max| DatapathError::TooManyGroups { max })?;
        // New ids start from zero, whatever an old group under the same id left behind.
        let cpus = nr_cpus().map_err(|(path, error)| DatapathError::PinDir {
            path: path.into(),
            error,
        })?;
        for id in &fresh {
            for p in [PROTO_IDX_TCP, PROTO_IDX_UDP] {
                for v in [VERDICT_ALLOWED, VERDICT_DENIED] {
                    let zero =
                        PerCpuValues::try_from(vec![GroupStats::default(); cpus]).map_err(|e| {
                            DatapathError::Map {
                                name: map_name::GROUP_STATS,
                                error: e.into(),
                            }
                        })?;
                    self.stats
                        .set(stats_index(*id, p, v), zero, 0)
                        .map_err(|error| DatapathError::Map {
                            name: map_name::GROUP_STATS,
                            error,
                        })?;
                }
            }
        }

        let mut drop_mask = 0u64;
        let mut sweep_mask = 0u64;
        let mut tcp = vec![0u8; PORT_TABLE_ENTRIES as usize];
        let mut udp = vec![0u8; PORT_TABLE_ENTRIES as usize];
        for g in &cfg.groups {
            let Some(kid) = ids.id(&g.name) else { continue };
            if g.action == Action::Drop {
                drop_mask |= 1u64 << kid;
            }
            if g.detect_sweeps {
                sweep_mask |= 1u64 << kid;
            }
            for proto in &g.protocols {
                let table = match proto {
                    Protocol::Tcp => &mut tcp,
                    Protocol::Udp => &mut udp,
                };
                for r in &g.ports {
                    for port in r.start..=r.end {
                        table[port as usize] = kid;
                    }
                }
            }
        }
        let [shadow_tcp, shadow_udp] = &mut self.ports_shadow;
        write_port_table(&mut self.ports_tcp, shadow_tcp, tcp, map_name::PORTS_TCP)?;
        write_port_table(&mut self.ports_udp, shadow_udp, udp, map_name::PORTS_UDP)?;

        // Allowlists, translated from config ids to kernel ids.
        let mut want_v4 = BTreeSet::new();
        let mut want_v6 = BTreeSet::new();
        for (cfg_id, net) in cfg.resolve_allowlists(node_subnets) {
            let Some(g) = cfg.group_by_id(cfg_id) else {
                continue;
            };
            let Some(kid) = ids.id(&g.name) else { continue };
            match net {
                IpNet::V4(n) => {
                    let o = n.network().octets();
                    want_v4.insert((8 + n.prefix_len() as u32, [kid, o[0], o[1], o[2], o[3]]));
                }
                IpNet::V6(n) => {
                    let mut d = [0u8; 17];
                    d[0] = kid;
                    d[1..].copy_from_slice(&n.network().octets());
                    want_v6.insert((8 + n.prefix_len() as u32, d));
                }
            }
        }
        let max = self.limits.allow_entries;
        sync_trie(
            &mut self.allow_v4,
            &want_v4,
            "IPv4",
            max,
            map_name::ALLOW_V4,
        )?;
        sync_trie(
            &mut self.allow_v6,
            &want_v6,
            "IPv6",
            max,
            map_name::ALLOW_V6,
        )?;

        // Settings last: the new generation voids every cached verdict, now that the tries
        // hold the new allowlists.
        let prev = self.settings()?;
        let settings = Settings {
            flow_idle_ns: cfg.limits.flow_idle_timeout_ms.saturating_mul(1_000_000),
            drop_mask,
            sweep_mask,
            sample_one_in: cfg.sampling.allowed_flows_one_in,
            events_per_sec: cfg.limits.events_per_source_per_second,
            generation: prev.generation.wrapping_add(1).max(1),
            // The table's size as loaded: `limits.sources` changes only with a restart.
            source_slot_mask: source_slots(self.limits.sources) - 1,
        };
        self.set_settings(settings)?;

        // Record names for every id in use; clear the slots of ids no longer in use.
        for id in 1..MAX_GROUPS as u8 {
            let mut slot = [0u8; GROUP_NAME_BYTES];
            if let Some(name) = ids.name(id) {
                let n = name.len().min(GROUP_NAME_BYTES - 1);
                slot[..n].copy_from_slice(&name.as_bytes()[..n]);
            }
            self.group_names
                .set(id as u32, slot, 0)
                .map_err(|error| DatapathError::Map {
                    name: map_name::GROUP_NAMES,
                    error,
                })?;
        }
        self.ids = ids;
        Ok(())
    }

    /// Attaches to `iface`: ingress by `mode`, and tc egress for answer tracking. With a pin
    /// directory, a pinned link from an earlier run is adopted (program swapped in place).
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<Vec<Attachment>> {
        if crate::netif::ifindex(iface).is_none() {
            return Err(DatapathError::NoSuchInterface(iface.to_owned()));
        }
        let ingress = match mode {
            AttachMode::Xdp => Hook::Xdp,
            AttachMode::Tc => Hook::TcIngress,
        };
        let mut out = Vec::new();
        for hook in [ingress, Hook::TcEgress] {
            let a = self.attach_hook(iface, hook)?;
            out.push(a);
        }
        Ok(out)
    }

    fn link_pin_path(&self, iface: &str, hook: Hook) -> Option<PathBuf> {
        self.pin_dir
            .as_ref()
            .map(|d| d.join("links").join(format!("{}@{iface}", hook.as_str())))
    }

    fn attach_hook(&mut self, iface: &str, hook: Hook) -> Result<Attachment> {
        let pin = self.link_pin_path(iface, hook);
        let name = hook.program();
        // Adopt a pinned link: swap our program into it atomically.
        if let Some(path) = &pin
            && path.exists()
        {
            match self.adopt(path, hook) {
                Ok((mode, held)) => {
                    let att = Attachment {
                        iface: iface.to_owned(),
                        hook,
                        mode,
                        adopted: true,
                    };
                    info!(
                        iface,
                        hook = hook.as_str(),
                        mode,
                        "adopted pinned link; program replaced in place"
                    );
                    self.links.push((att.clone(), held));
                    return Ok(att);
                }
                Err(e) => {
                    warn!(iface, hook = hook.as_str(), error = %e, "pinned link unusable (interface gone or recreated?); attaching anew");
                    let _ = fs::remove_file(path);
                }
            }
        }
        let (mode, link) = match hook {
            Hook::Xdp => {
                let prog: &mut Xdp = self.program_mut(name)?;
                let (id, mode) = match prog.attach(iface, XdpMode::Driver) {
                    Ok(id) => (id, "native"),
                    Err(native_err) => {
                        warn!(iface, error = %native_err, "native XDP unavailable; falling back to generic (skb) mode");
                        let id = prog.attach(iface, XdpMode::Skb).map_err(|error| {
                            DatapathError::Attach {
                                iface: iface.to_owned(),
                                hook: "xdp",
                                error: Box::new(error),
                                hint: " (is another XDP program attached? try --attach tc)",
                            }
                        })?;
                        (id, "generic")
                    }
                };
                let link = prog.take_link(id).map_err(|error| DatapathError::Program {
                    name,
                    error: Box::new(error),
                })?;
                (mode, HeldLink::Xdp(link))
            }
            Hook::TcIngress | Hook::TcEgress => {
                let ty = if hook == Hook::TcIngress {
                    TcAttachType::Ingress
                } else {
                    TcAttachType::Egress
                };
                let tcx = aya::util::KernelVersion::current()
                    .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0));
                let prog: &mut SchedClassifier = self.program_mut(name)?;
                let res = if tcx {
                    prog.attach_with_options(
                        iface,
                        ty,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    )
                } else {
                    // Classic clsact; "already exists" is fine.
                    let _ = tc::qdisc_add_clsact(iface);
                    prog.attach(iface, ty)
                };
                let id = res.map_err(|error| DatapathError::Attach {
                    iface: iface.to_owned(),
                    hook: hook.as_str(),
                    error: Box::new(error),
                    hint: "",
                })?;
                let link = prog.take_link(id).map_err(|error| DatapathError::Program {
                    name,
                    error: Box::new(error),
                })?;
                (if tcx { "tcx" } else { "netlink" }, HeldLink::Tc(link))
            }
        };
        // Pin fd-based links (bpf_link: XDP on 5.9+, tcx on 6.6+); netlink attachments have
        // no link object to pin and detach when the daemon exits.
        let held = match (pin, link) {
            (Some(path), link) if mode != "netlink" => {
                let fd = match link {
                    HeldLink::Xdp(l) => FdLink::try_from(l),
                    HeldLink::Tc(l) => FdLink::try_from(l),
                    HeldLink::Pinned(p) => Ok(FdLink::from(p)),
                }
                .map_err(|error| DatapathError::NotPinnable {
                    what: format!("{} link on {iface}", hook.as_str()),
                    error,
                })?;
                let pinned = fd.pin(&path).map_err(|error| DatapathError::Pin {
                    what: format!("{} link on {iface}", hook.as_str()),
                    path: path.clone(),
                    error,
                })?;
                HeldLink::Pinned(pinned)
            }
            (Some(_), link) => {
                warn!(
                    iface,
                    hook = hook.as_str(),
                    "this kernel gives no pinnable link for this hook; it detaches when the daemon exits"
                );
                link
            }
            (None, link) => link,
        };
        let att = Attachment {
            iface: iface.to_owned(),
            hook,
            mode,
            adopted: false,
        };
        info!(
            iface,
            hook = hook.as_str(),
            mode,
            pinned = matches!(held, HeldLink::Pinned(_)),
            "attached"
        );
        self.links.push((att.clone(), held));
        Ok(att)
    }

    fn adopt(&mut self, path: &Path, hook: Hook) -> Result<(&'static str, HeldLink), String> {
        let pinned = PinnedLink::from_pin(path).map_err(|e| e.to_string())?;
        let fd = FdLink::from(pinned);
        let name = hook.program();
        match hook {
            Hook::Xdp => {
                let link = XdpLink::try_from(fd).map_err(|e| e.to_string())?;
                let prog: &mut Xdp = self.program_mut(name).map_err(|e| e.to_string())?;
                let id = prog.attach_to_link(link).map_err(|e| e.to_string())?;
                let link = prog.take_link(id).map_err(|e| e.to_string())?;
                Ok(("pinned", HeldLink::Xdp(link)))
            }
            Hook::TcIngress | Hook::TcEgress => {
                let link = aya::programs::tc::SchedClassifierLink::try_from(fd)
                    .map_err(|e| e.to_string())?;
                let prog: &mut SchedClassifier =
                    self.program_mut(name).map_err(|e| e.to_string())?;
                let id = prog.attach_to_link(link).map_err(|e| e.to_string())?;
                let link = prog.take_link(id).map_err(|e| e.to_string())?;
                Ok(("tcx", HeldLink::Tc(link)))
            }
        }
    }

    /// Removes pinned links that this run did not attach or adopt (interfaces or hooks no
    /// longer configured). Call after every wanted interface is attached.
    pub fn prune_stale_links(&mut self) -> Result<Vec<String>> {
        let Some(dir) = &self.pin_dir else {
            return Ok(Vec::new());
        };
        let dir = dir.join("links");
        let keep: BTreeSet<String> = self
            .links
            .iter()
            .map(|(a, _)| format!("{}@{}", a.hook.as_str(), a.iface))
            .collect();
        let mut removed = Vec::new();
        let entries = fs::read_dir(&dir).map_err(|error| DatapathError::PinDir {
            path: dir.clone(),
            error,
        })?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let known_hook = name
                .split_once('@')
                .and_then(|(h, _)| Hook::from_str(h))
                .is_some();
            if known_hook && !keep.contains(&name) {
                fs::remove_file(e.path()).map_err(|error| DatapathError::PinDir {
                    path: e.path(),
                    error,
                })?;
                info!(link = %name, "removed a pinned link that the current config and flags no longer want");
                removed.push(name);
            }
        }
        Ok(removed)
    }

    /// Forgets attachments on an interface that no longer exists.
    /// Detaches from `iface` (all hooks) and removes its pins. For an interface that is gone,
    /// this only forgets it: the kernel already dropped its attachments.
    pub fn detach_iface(&mut self, iface: &str) {
        let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.links)
            .into_iter()
            .partition(|(a, _)| a.iface == iface);
        self.links = keep;
        for (_, held) in gone {
            held.release();
        }
        if let Some(dir) = &self.pin_dir {
            for hook in [Hook::Xdp, Hook::TcIngress, Hook::TcEgress] {
                let _ =
                    fs::remove_file(dir.join("links").join(format!("{}@{iface}", hook.as_str())));
            }
        }
    }

    pub fn attachments(&self) -> impl Iterator<Item = &Attachment> {
        self.links.iter().map(|(a, _)| a)
    }

    fn program_mut<'a, T>(&'a mut self, name: &'static str) -> Result<&'a mut T>
    where
        &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
    {
        let p = self
            .ebpf
            .program_mut(name)
            .ok_or(DatapathError::MissingProgram(name))?;
        p.try_into().map_err(|error| DatapathError::Program {
            name,
            error: Box::new(error),
        })
    }

    /// The loaded programs, for BPF_PROG_TEST_RUN.
    pub fn xdp_program(&self) -> Result<&Xdp> {
        self.program(prog_name::XDP_INGRESS)
    }
    pub fn tc_ingress_program(&self) -> Result<&SchedClassifier> {
        self.program(prog_name::TC_INGRESS)
    }
    pub fn tc_egress_program(&self) -> Result<&SchedClassifier> {
        self.program(prog_name::TC_EGRESS)
    }
    fn program<'a, T>(&'a self, name: &'static str) -> Result<&'a T>
    where
        &'a T: TryFrom<&'a aya::programs::Program, Error = aya::programs::ProgramError>,
    {
        let p = self
            .ebpf
            .program(name)
            .ok_or(DatapathError::MissingProgram(name))?;
        p.try_into().map_err(|error| DatapathError::Program {
            name,
            error: Box::new(error),
        })
    }

    /// Loads and returns the empty baseline XDP program (benchmarks subtract its cost).
    pub fn baseline_program(&mut self) -> Result<&Xdp> {
        let name = prog_name::BASELINE;
        let prog: &mut Xdp = self.program_mut(name)?;
        if prog.fd().is_err() {
            prog.load().map_err(|error| DatapathError::Program {
                name,
                error: Box::new(error),
            })?;
        }
        self.program(name)
    }

    /// The settings slot as the programs see it.
    pub fn settings(&self) -> Result<Settings> {
        self.settings
            .get(&0, 0)
            .map_err(|error| DatapathError::Map {
                name: map_name::SETTINGS,
                error,
            })
    }

    /// Overwrites the settings slot directly, bypassing config validation (benchmarks use a
    /// zero idle timeout so that every repeat of a packet is a new connection). A config
    /// reload writes it again.
    pub fn set_settings(&mut self, s: Settings) -> Result<()> {
        self.settings
            .set(0, s, 0)
            .map_err(|error| DatapathError::Map {
                name: map_name::SETTINGS,
                error,
            })
    }

    /// Kernel information (run count and time, with BPF stats on) of the attached programs.
    pub fn program_infos(
        &self,
    ) -> Vec<(
        &'static str,
        Result<aya::programs::ProgramInfo, aya::programs::ProgramError>,
    )> {
        let mut out = Vec::new();
        let hooks: BTreeSet<Hook> = self.links.iter().map(|(a, _)| a.hook).collect();
        for hook in hooks {
            let (label, info) = match hook {
                Hook::Xdp => ("xdp", self.xdp_program().map(|p| p.info())),
                Hook::TcIngress => ("tc_ingress", self.tc_ingress_program().map(|p| p.info())),
                Hook::TcEgress => ("tc_egress", self.tc_egress_program().map(|p| p.info())),
            };
            match info {
                Ok(i) => out.push((label, i)),
                Err(e) => warn!(program = label, error = %e, "program missing"),
            }
        }
        out
    }

    pub fn group_ids(&self) -> &GroupIds {
        &self.ids
    }

    /// Counters for every configured group, protocol and verdict, summed over CPUs.
    pub fn group_counters(&self) -> Result<Vec<GroupCounters>> {
        let mut out = Vec::new();
        for (name, id) in self.ids.iter() {
            for (proto, pidx) in [
                (Protocol::Tcp, PROTO_IDX_TCP),
                (Protocol::Udp, PROTO_IDX_UDP),
            ] {
                for verdict in [VERDICT_ALLOWED, VERDICT_DENIED] {
                    let per_cpu =
                        self.stats
                            .get(&stats_index(id, pidx, verdict), 0)
                            .map_err(|error| DatapathError::Map {
                                name: map_name::GROUP_STATS,
                                error,
                            })?;
                    let mut sum = GroupStats::default();
                    for s in per_cpu.iter() {
                        sum.accumulate(s);
                    }
                    out.push(GroupCounters {
                        group: name.to_owned(),
                        proto,
                        verdict,
                        stats: sum,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Packet-level reason counters, summed over CPUs, in `reason::NAMES` order.
    pub fn reason_counters(&self) -> Result<[u64; reason::COUNT as usize]> {
        let mut out = [0u64; reason::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let per_cpu = self
                .reasons
                .get(&(i as u32), 0)
                .map_err(|error| DatapathError::Map {
                    name: map_name::REASONS,
                    error,
                })?;
            *slot = per_cpu.iter().sum();
        }
        Ok(out)
    }

    /// The flow table entry for a 5-tuple (ingress orientation), if the LRU still has it.
    pub fn flow(&self, key: &FlowKey) -> Option<FlowState> {
        self.flows.get(key, 0).ok()
    }

    /// Largest flow table whose entries are counted for the fill metric: the count walks
    /// the table with one syscall per entry.
    pub const FLOW_COUNT_MAX: u32 = 262_144;

    /// Number of entries in the flow table (walks the table; for metrics, not per event).
    /// None when the table is larger than [`Self::FLOW_COUNT_MAX`], whose walk would cost
    /// too much to repeat.
    pub fn flow_count(&self) -> Option<usize> {
        (self.limits.flows <= Self::FLOW_COUNT_MAX)
            .then(|| self.flows.keys().filter(|k| k.is_ok()).count())
    }

    /// The ring buffer, for the event reader. Can be taken once.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl Drop for Datapath {
    /// Lets go of every link: pinned ones stay attached (that is what the pins are for);
    /// unpinned ones detach.
    fn drop(&mut self) {
        for (_, held) in self.links.drain(..) {
            held.release();
        }
    }
}

/// Group ids recorded by an earlier run (or by this one), from the `GROUP_NAMES` map.
fn read_group_names(map: &Array<MapData, GroupName>) -> Result<GroupIds> {
    let mut ids = BTreeMap::new();
    for id in 1..MAX_GROUPS as u8 {
        let slot = map
            .get(&(id as u32), 0)
            .map_err(|error| DatapathError::Map {
                name: map_name::GROUP_NAMES,
                error,
            })?;
        let len = slot.iter().position(|b| *b == 0).unwrap_or(slot.len());
        if len > 0
            && let Ok(name) = std::str::from_utf8(&slot[..len])
        {
            ids.insert(name.to_owned(), id);
        }
    }
    Ok(GroupIds(ids))
}

fn default_max_entries(name: &str) -> u32 {
    use node_monitor_common::*;
    match name {
        n if n == map_name::FLOWS => DEFAULT_FLOWS,
        n if n == map_name::SOURCES => source_slots(DEFAULT_SOURCES),
        n if n == map_name::ALLOW_V4 || n == map_name::ALLOW_V6 => DEFAULT_ALLOW_ENTRIES,
        n if n == map_name::EVENTS => DEFAULT_RINGBUF_BYTES,
        _ => 0,
    }
}

/// Brings a port table to `want`, writing only the entries that differ from what the map
/// holds (read once into `shadow` when not yet known).
fn write_port_table(
    map: &mut Array<MapData, u8>,
    shadow: &mut Option<Vec<u8>>,
    want: Vec<u8>,
    name: &'static str,
) -> Result<()> {
    let have = match shadow.take() {
        Some(h) => h,
        None => {
            let mut h = vec![0u8; PORT_TABLE_ENTRIES as usize];
            for (port, slot) in h.iter_mut().enumerate() {
                *slot = map
                    .get(&(port as u32), 0)
                    .map_err(|error| DatapathError::Map { name, error })?;
            }
            h
        }
    };
    for (port, (g, cur)) in want.iter().zip(have.iter()).enumerate() {
        if g != cur {
            map.set(port as u32, *g, 0)
                .map_err(|error| DatapathError::Map { name, error })?;
        }
    }
    *shadow = Some(want);
    Ok(())
}

fn sync_trie<K: aya::Pod + Ord + Copy>(
    trie: &mut LpmTrie<MapData, K, u8>,
    want: &BTreeSet<(u32, K)>,
    family: &'static str,
    max: u32,
    name: &'static str,
) -> Result<()> {
    if want.len() > max as usize {
        return Err(DatapathError::AllowlistFull {
            family,
            needed: want.len(),
            max,
        });
    }
    let have: BTreeSet<(u32, K)> = trie
        .keys()
        .filter_map(|k| k.ok())
        .map(|k| (k.prefix_len(), k.data()))
        .collect();
    for (plen, data) in want.difference(&have) {
        trie.insert(&Key::new(*plen, *data), 1, 0)
            .map_err(|error| DatapathError::Map { name, error })?;
    }
    for (plen, data) in have.difference(want) {
        trie.remove(&Key::new(*plen, *data))
            .map_err(|error| DatapathError::Map { name, error })?;
    }
    Ok(())
}

/// Makes sure `dir` is on a bpf filesystem (mounting /sys/fs/bpf when it is not) and that
/// its `maps/` and `links/` subdirectories exist.
fn prepare_pin_dir(dir: &Path) -> Result<()> {
    let root = Path::new("/sys/fs/bpf");
    if dir.starts_with(root) && !is_bpffs(root) {
        mount_bpffs(root).map_err(|error| DatapathError::Bpffs {
            path: root.to_owned(),
            error,
        })?;
    }
    for sub in ["maps", "links"] {
        let p = dir.join(sub);
        fs::create_dir_all(&p).map_err(|error| DatapathError::PinDir {
            path: p.clone(),
            error,
        })?;
    }
    if !is_bpffs(dir) {
        return Err(DatapathError::Bpffs {
            path: dir.to_owned(),
            error: io::Error::other("not a bpf filesystem"),
        });
    }
    Ok(())
}

fn is_bpffs(p: &Path) -> bool {
    use std::{ffi::CString, os::unix::ffi::OsStrExt};
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string and st a valid out-pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

fn mount_bpffs(p: &Path) -> io::Result<()> {
    use std::{ffi::CString, os::unix::ffi::OsStrExt};
    let target = CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let bpf = c"bpf";
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            bpf.as_ptr(),
            target.as_ptr(),
            bpf.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes everything node-monitor pinned under `dir`: detaches pinned links (unless a
/// running daemon holds them) and frees pinned maps.
pub fn unpin_all(dir: &Path) -> io::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    Ok(())
}
