//! Every map the programs use, in one place. Sizes here are defaults: userspace sets the
//! configured sizes at load time (`EbpfLoader::map_max_entries`) and pins the maps.
use aya_ebpf::{
    macros::map,
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use node_monitor_common::{
    ACCEPTS_ENTRIES, AllowKeyV4, AllowKeyV6, DEFAULT_ALLOW_ENTRIES, DEFAULT_FLOWS,
    DEFAULT_RINGBUF_BYTES, DEFAULT_SOURCES, FloodTop, FlowKey, FlowState, GroupAnswers,
    GroupBudget, GroupName, GroupStats, HllRegisters, MAX_GROUPS, PORT_ALLOW_ENTRIES,
    PORT_TABLE_ENTRIES, PendingAccept, PortAllowKeyV4, PortAllowKeyV6, REFUSAL_TAG_SLOTS,
    STATS_ENTRIES, Settings, SourceSlot, VERDICT_SLOTS, VerdictSlot, reason, source_slots,
};

/// Destination port → group id (0 = not watched), TCP.
#[map]
pub static PORTS_TCP: Array<u8> = Array::with_max_entries(PORT_TABLE_ENTRIES, 0);
/// Destination port → group id (0 = not watched), UDP.
#[map]
pub static PORTS_UDP: Array<u8> = Array::with_max_entries(PORT_TABLE_ENTRIES, 0);

/// Allowed sources per group: key = group byte + IPv4 address; prefix = 8 + CIDR length.
#[map]
pub static ALLOW_V4: LpmTrie<AllowKeyV4, u8> = LpmTrie::with_max_entries(DEFAULT_ALLOW_ENTRIES, 0);
/// Allowed sources per group: key = group byte + IPv6 address.
#[map]
pub static ALLOW_V6: LpmTrie<AllowKeyV6, u8> = LpmTrie::with_max_entries(DEFAULT_ALLOW_ENTRIES, 0);

/// Source ranges of the ports marked `PORT_RANGES_MARK` in the port tables (NodePorts whose
/// Service sets `loadBalancerSourceRanges`): key = protocol, port, IPv4 address; prefix =
/// 24 + CIDR length. Entries under protocol 0, port 0 hold for every marked port.
#[map]
pub static PORT_ALLOW_V4: LpmTrie<PortAllowKeyV4, u8> =
    LpmTrie::with_max_entries(PORT_ALLOW_ENTRIES, 0);
/// Source ranges of the marked ports: key = protocol, port, IPv6 address.
#[map]
pub static PORT_ALLOW_V6: LpmTrie<PortAllowKeyV6, u8> =
    LpmTrie::with_max_entries(PORT_ALLOW_ENTRIES, 0);

/// Runtime settings: one slot, rewritten on reload.
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// Counters per (group, protocol, verdict), per CPU.
#[map]
pub static GROUP_STATS: PerCpuArray<GroupStats> = PerCpuArray::with_max_entries(STATS_ENTRIES, 0);

/// Packet-level reason counters (`reason::*`), per CPU.
#[map]
pub static REASONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(reason::COUNT, 0);

/// Recently seen 5-tuples: new-connection detection and answer tracking.
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowState> = LruHashMap::with_max_entries(DEFAULT_FLOWS, 0);

/// Per-source token buckets that cap flagged events per source: direct-mapped slots shared
/// by all CPUs (see `SourceSlot`).
#[map]
pub static SOURCES: Array<SourceSlot> = Array::with_max_entries(source_slots(DEFAULT_SOURCES), 0);

/// Events to userspace.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RINGBUF_BYTES, 0);

/// Group id → group name, written and read by userspace only (see `GroupName`).
#[map]
pub static GROUP_NAMES: Array<GroupName> = Array::with_max_entries(MAX_GROUPS as u32, 0);

/// Per-CPU, direct-mapped cache of verdicts per source, in front of the LPM tries.
#[map]
pub static VERDICTS: PerCpuArray<VerdictSlot> = PerCpuArray::with_max_entries(VERDICT_SLOTS, 0);

// ---- Floods (budget.rs, summary.rs) ----------------------------------------------------

/// Node-wide event budget per group (indexed by group id), shared by all CPUs.
#[map]
pub static GROUP_BUDGET: Array<GroupBudget> = Array::with_max_entries(MAX_GROUPS as u32, 0);

/// Flood summary: a HyperLogLog sketch of the sources of withheld new connections, per
/// group, per CPU (userspace merges the CPUs by register maximum and resets it per window).
/// 4096 bytes × 64 group ids = 256 KiB per CPU.
#[map]
pub static FLOOD_HLL: PerCpuArray<HllRegisters> =
    PerCpuArray::with_max_entries(MAX_GROUPS as u32, 0);

/// Flood summary: space-saving tables of the top withheld sources and destination ports,
/// per group, per CPU (userspace merges and resets them per window).
#[map]
pub static FLOOD_TOP: PerCpuArray<FloodTop> = PerCpuArray::with_max_entries(MAX_GROUPS as u32, 0);

/// The node's answers (SYN-ACK, RST) from each group's ports, per CPU (cumulative counters).
#[map]
pub static FLOOD_ANSWERS: PerCpuArray<GroupAnswers> =
    PerCpuArray::with_max_entries(MAX_GROUPS as u32, 0);

// ---- Handshakes completed past the budgets (unseen.rs, handshake.rs) --------------------

/// Acceptances (SYN-ACKs) that egress saw on a 5-tuple without a flow entry while the event
/// budgets withheld them, waiting for the peer's completing ACK. A table of its own, so that
/// the SYN-ACKs of a spoofed flood against an open port never evict real flows.
#[map]
pub static ACCEPTS: LruHashMap<FlowKey, PendingAccept> =
    LruHashMap::with_max_entries(ACCEPTS_ENTRIES, 0);

/// When egress last recorded a withheld acceptance (0: never). Ingress looks a denied
/// source's ACK up in `ACCEPTS` only within `ACCEPT_WAIT_NS` of it, so that the lookup costs
/// nothing while no flood is withholding acceptances.
#[map]
pub static ACCEPT_GATE: Array<u64> = Array::with_max_entries(1, 0);

/// The tag ([`refusal_tag`](node_monitor_common::refusal_tag)) of each flagged flow ingress
/// records in `FLOWS`, direct-mapped, shared by all CPUs: egress looks a refusal up in `FLOWS`
/// only when its slot holds the refusal's own tag. Written only when a flagged flow is
/// recorded, which the event budgets bound.
#[map]
pub static REFUSAL_TAGS: Array<u32> = Array::with_max_entries(REFUSAL_TAG_SLOTS, 0);
