//! The data path seen from userspace: load the embedded eBPF object, pin and adopt maps and
//! links, write the port tables, allowlists and settings from the config, attach to
//! interfaces, and read counters back.
//!
//! Lifecycle: [`Datapath::load`] (load.rs: object, pins, programs; it ends with a first
//! `apply_config`) → [`Datapath::apply_config`] (tables.rs: port tables, allowlist tries,
//! settings; again on every reload, programs stay attached) → `attach` per interface
//! (attach.rs; `prune_stale_links` once all are attached, `detach_iface` when one goes)
//! → counters read back at will (counters.rs). Dropping the `Datapath` lets go of its links:
//! pinned ones stay attached.
//!
//! Pin layout under the pin directory (default `/sys/fs/bpf/node-monitor`):
//! - `maps/<NAME>`: every map; a restarted daemon reuses those whose shape (shapes.rs) still
//!   fits its config and replaces the others.
//! - `links/<hook>@<iface>`: the attachment links; a restarted daemon swaps its freshly
//!   loaded program into each one atomically (`bpf_link_update`), so counting never stops.
//! - `maps/PORT_ALLOW_V4`, `maps/PORT_ALLOW_V6`: the source ranges of the ports marked in
//!   the port tables (NodePorts whose Service sets `loadBalancerSourceRanges`); adopted with
//!   the marks when the port tables are adopted too, until the cluster's next snapshot
//!   rewrites them.
//! - `maps/GROUP_NAMES`: kernel group id → group name (groups.rs), so ids (and their
//!   counters) survive restarts and reloads whatever the order of groups in the config.
use std::path::PathBuf;

use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, LpmTrie, MapData, PerCpuArray, RingBuf},
    programs::{Program, ProgramError},
};
use node_monitor_common::{
    AllowKeyV4, AllowKeyV6, FloodTop, FlowKey, FlowState, GroupAnswers, GroupName, GroupStats,
    HllRegisters, PortAllowKeyV4, PortAllowKeyV6, Settings,
};

use crate::config::Limits;

mod attach;
mod counters;
mod error;
mod floods;
mod groups;
mod load;
mod pinned;
mod port_ranges;
mod shapes;
mod tables;
#[cfg(any(test, feature = "test-support"))]
mod test_hooks;

use attach::HeldLink;
pub(crate) use attach::{Attachment, Hook};
pub use counters::GroupCounters;
pub use error::{DatapathError, Result};
pub use floods::{FloodSketch, TopPortCount, TopSourceCount, hll_estimate};
pub use groups::GroupIds;
pub use load::{DEFAULT_PIN_DIR, EBPF_OBJECT, LoadOptions, unpin_all};
pub use pinned::{FlaggedFlows, pinned_flagged_flows, pinned_group_counters};
pub use port_ranges::{PortRanges, PortRangesApplied};
#[cfg(any(test, feature = "test-support"))]
pub use test_hooks::freeze_pinned_map;

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
    /// Source ranges of the ports marked in the port tables (port_ranges.rs).
    port_allow_v4: LpmTrie<MapData, PortAllowKeyV4, u8>,
    port_allow_v6: LpmTrie<MapData, PortAllowKeyV6, u8>,
    /// The ports marked as having source ranges of their own, per protocol (0 TCP, 1 UDP),
    /// and the per-port ranges last applied (port_ranges.rs).
    port_marks: [std::collections::BTreeSet<u16>; 2],
    port_ranges: Option<(PortRanges, PortRangesApplied)>,
    /// Writes of the per-port ranges that failed (port_ranges.rs).
    port_ranges_failures: u64,
    /// The `cluster.node_port_also_allow` the daemon last resolved `port_ranges.any` from,
    /// so that a reload that changes it is followed without a cluster change.
    pub(crate) port_ranges_also_allow: Option<Vec<crate::config::AllowEntry>>,
    settings: Array<MapData, Settings>,
    stats: PerCpuArray<MapData, GroupStats>,
    reasons: PerCpuArray<MapData, u64>,
    flows: BpfHashMap<MapData, FlowKey, FlowState>,
    /// Counts `flows` off the event loop (its own handle on the map).
    flow_counter: counters::FlowCounter,
    events: Option<RingBuf<MapData>>,
    links: Vec<(Attachment, HeldLink)>,
    group_names: Array<MapData, GroupName>,
    /// What the TCP and UDP port tables hold, when known (a new map is all zeros; an adopted
    /// one is read once), so that rewrites touch only the entries that change.
    ports_shadow: [Option<Vec<u8>>; 2],
    /// Flood summaries (floods.rs): per-group sketches and answer counters, per CPU.
    flood_hll: PerCpuArray<MapData, HllRegisters>,
    flood_top: PerCpuArray<MapData, FloodTop>,
    flood_answers: PerCpuArray<MapData, GroupAnswers>,
}

impl Datapath {
    /// The ring buffer, for the event reader. Can be taken once.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }

    /// The limits the maps were sized with at load (a reload does not resize them).
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    fn program_mut<'a, T>(&'a mut self, name: &'static str) -> Result<&'a mut T>
    where
        &'a mut T: TryFrom<&'a mut Program, Error = ProgramError>,
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

    fn program<'a, T>(&'a self, name: &'static str) -> Result<&'a T>
    where
        &'a T: TryFrom<&'a Program, Error = ProgramError>,
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
