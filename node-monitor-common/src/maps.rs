//! Map and program names, and the default sizes of the maps userspace may resize.

/// Default sizes (overridable at load time).
pub const DEFAULT_FLOWS: u32 = 65_536;
pub const DEFAULT_SOURCES: u32 = 16_384;
pub const DEFAULT_ALLOW_ENTRIES: u32 = 16_384;
pub const DEFAULT_RINGBUF_BYTES: u32 = 1 << 20;

/// The global the loader sets to the ring buffer's wake-up mask (see [`ring_wake_mask`]).
pub const RING_WAKE_MASK_GLOBAL: &str = "RING_WAKE_MASK";

/// The bytes one event takes in the ring buffer: the record and the kernel's 8-byte header,
/// rounded up to 8 (`BPF_RINGBUF_HDR_SZ`).
pub const RING_RECORD_BYTES: u64 = (size_of::<crate::Event>() as u64 + 8).div_ceil(8) * 8;

/// The mask the programs test the ring's unread bytes against: a commit wakes the daemon
/// when those bytes cross a multiple of an eighth of the ring (`ring_bytes`, a power of two
/// of at least 4096), and otherwise does not (`BPF_RB_NO_WAKEUP`): a reader woken for every
/// event that finds the ring empty costs the sending CPU an interrupt per event (irq_work, a
/// self-IPI), and the daemon reads the ring every 50 ms besides.
#[must_use]
pub const fn ring_wake_mask(ring_bytes: u32) -> u64 {
    (ring_bytes as u64 / 8).saturating_sub(1)
}

/// Map names (under 16 bytes: the kernel truncates longer names).
pub mod map_name {
    pub const PORTS_TCP: &str = "PORTS_TCP";
    pub const PORTS_UDP: &str = "PORTS_UDP";
    pub const ALLOW_V4: &str = "ALLOW_V4";
    pub const ALLOW_V6: &str = "ALLOW_V6";
    pub const SETTINGS: &str = "SETTINGS";
    pub const GROUP_STATS: &str = "GROUP_STATS";
    pub const REASONS: &str = "REASONS";
    pub const FLOWS: &str = "FLOWS";
    pub const SOURCES: &str = "SOURCES";
    pub const EVENTS: &str = "EVENTS";
    pub const GROUP_NAMES: &str = "GROUP_NAMES";
    pub const VERDICTS: &str = "VERDICTS";
    pub const GROUP_BUDGET: &str = "GROUP_BUDGET";
    pub const FLOOD_HLL: &str = "FLOOD_HLL";
    pub const FLOOD_TOP: &str = "FLOOD_TOP";
    pub const FLOOD_ANSWERS: &str = "FLOOD_ANSWERS";
    pub const ACCEPTS: &str = "ACCEPTS";
    pub const ACCEPT_GATE: &str = "ACCEPT_GATE";
    pub const PORT_ALLOW_V4: &str = "PORT_ALLOW_V4";
    pub const PORT_ALLOW_V6: &str = "PORT_ALLOW_V6";
    pub const REFUSAL_TAGS: &str = "REFUSAL_TAGS";
    pub const ALL: [&str; 21] = [
        PORTS_TCP,
        PORTS_UDP,
        ALLOW_V4,
        ALLOW_V6,
        SETTINGS,
        GROUP_STATS,
        REASONS,
        FLOWS,
        SOURCES,
        EVENTS,
        GROUP_NAMES,
        VERDICTS,
        GROUP_BUDGET,
        FLOOD_HLL,
        FLOOD_TOP,
        FLOOD_ANSWERS,
        ACCEPTS,
        ACCEPT_GATE,
        PORT_ALLOW_V4,
        PORT_ALLOW_V6,
        REFUSAL_TAGS,
    ];
}

/// One slot of the `GROUP_NAMES` array (indexed by group id): the group's name, NUL-padded.
/// Only userspace reads it; it lives in a pinned map so that a restarted daemon maps kernel
/// group ids (and their counters) back to the same names.
pub type GroupName = [u8; GROUP_NAME_BYTES];
pub const GROUP_NAME_BYTES: usize = 64;

/// Program names (the function names in the eBPF object).
pub mod prog_name {
    pub const XDP_INGRESS: &str = "nm_xdp_ingress";
    pub const TC_INGRESS: &str = "nm_tc_ingress";
    pub const TC_EGRESS: &str = "nm_tc_egress";
    /// An empty XDP_PASS program, the baseline for benchmarks; never attached.
    pub const BASELINE: &str = "nm_baseline";
}
