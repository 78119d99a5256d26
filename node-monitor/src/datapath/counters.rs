//! Reading the data path back: group and reason counters summed over CPUs, the flow table,
//! and the kernel's run statistics of the attached programs.
use std::{
    collections::BTreeSet,
    os::fd::AsFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use aya::{
    maps::{HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues},
    programs::{ProgramError, ProgramInfo, SchedClassifier, Xdp},
    util::nr_cpus,
};
use node_monitor_common::{
    FlowKey, FlowState, GroupStats, PROTO_IDX_TCP, PROTO_IDX_UDP, VERDICT_ALLOWED, VERDICT_DENIED,
    map_name, reason, stats_index,
};
use tracing::warn;

use super::{Datapath, DatapathError, GroupIds, Hook, Result};
use crate::config::Protocol;

/// Counters of one (group, protocol, verdict), summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupCounters {
    pub group: String,
    pub proto: Protocol,
    pub verdict: u8,
    pub stats: GroupStats,
}

/// The `GROUP_STATS` slots of one group, in the order [`Datapath::group_counters`] lists
/// them: (protocol, its index in `stats_index`, verdict).
const GROUP_SLOTS: [(Protocol, u32, u8); 4] = [
    (Protocol::Tcp, PROTO_IDX_TCP, VERDICT_ALLOWED),
    (Protocol::Tcp, PROTO_IDX_TCP, VERDICT_DENIED),
    (Protocol::Udp, PROTO_IDX_UDP, VERDICT_ALLOWED),
    (Protocol::Udp, PROTO_IDX_UDP, VERDICT_DENIED),
];

/// The `GROUP_STATS` indexes of every (protocol, verdict) slot of group `id`.
pub(super) fn stats_indexes(id: u8) -> impl Iterator<Item = u32> {
    GROUP_SLOTS
        .into_iter()
        .map(move |(_, pidx, verdict)| stats_index(id, pidx, verdict))
}

/// The counters of every group in `ids`, per protocol and verdict, summed over CPUs: of the
/// running data path, or of the maps an earlier daemon pinned.
pub(super) fn summed_counters(
    stats: &PerCpuArray<MapData, GroupStats>,
    ids: &GroupIds,
) -> Result<Vec<GroupCounters>> {
    let mut out = Vec::new();
    for (name, id) in ids.iter() {
        for (proto, pidx, verdict) in GROUP_SLOTS {
            let per_cpu = stats
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
    Ok(out)
}

impl Datapath {
    /// Counters for every configured group, protocol and verdict, summed over CPUs.
    pub fn group_counters(&self) -> Result<Vec<GroupCounters>> {
        summed_counters(&self.stats, &self.ids)
    }

    /// Zeroes every counter of the groups `ids` (ids newly handed out: they start from zero,
    /// whatever an old group under the same id left behind).
    pub(super) fn reset_group_counters(&mut self, ids: &[u8]) -> Result<()> {
        let cpus = nr_cpus().map_err(|(path, error)| DatapathError::PinDir {
            path: path.into(),
            error,
        })?;
        for id in ids {
            for (_, pidx, verdict) in GROUP_SLOTS {
                let zero =
                    PerCpuValues::try_from(vec![GroupStats::default(); cpus]).map_err(|e| {
                        DatapathError::Map {
                            name: map_name::GROUP_STATS,
                            error: e.into(),
                        }
                    })?;
                self.stats
                    .set(stats_index(*id, pidx, verdict), zero, 0)
                    .map_err(|error| DatapathError::Map {
                        name: map_name::GROUP_STATS,
                        error,
                    })?;
            }
        }
        Ok(())
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
    /// the table with one syscall per entry (on a thread of its own).
    pub(crate) const FLOW_COUNT_MAX: u32 = 262_144;

    /// Starts a count of the flow table's entries on the counter's own thread, unless one
    /// is running or the table is larger than [`Self::FLOW_COUNT_MAX`]. Returns at once:
    /// the event loop never walks the table.
    pub(crate) fn request_flow_count(&self) {
        if self.limits.flows <= Self::FLOW_COUNT_MAX {
            self.flow_counter.request();
        }
    }

    /// The last figure a count published (None before the first count ends).
    pub(crate) fn flow_count(&self) -> Option<u64> {
        self.flow_counter.latest()
    }

    /// Kernel information (run count and time, with BPF stats on) of the attached programs.
    pub(crate) fn program_infos(&self) -> Vec<(&'static str, Result<ProgramInfo, ProgramError>)> {
        let mut out = Vec::new();
        let hooks: BTreeSet<Hook> = self.attachments().map(|a| a.hook).collect();
        for hook in hooks {
            let name = hook.program();
            let (label, info) = match hook {
                Hook::Xdp => (
                    "xdp",
                    self.program::<Xdp>(name).map(aya::programs::Xdp::info),
                ),
                Hook::TcIngress => (
                    "tc_ingress",
                    self.program::<SchedClassifier>(name)
                        .map(aya::programs::SchedClassifier::info),
                ),
                Hook::TcEgress => (
                    "tc_egress",
                    self.program::<SchedClassifier>(name)
                        .map(aya::programs::SchedClassifier::info),
                ),
            };
            match info {
                Ok(i) => out.push((label, i)),
                Err(e) => warn!(program = label, error = %e, "program missing"),
            }
        }
        out
    }
}

/// Counts the flow table's entries on a thread of its own, through a second handle on the
/// map (its own fd), and publishes the last figure. At most one count runs at a time.
#[derive(Debug)]
pub(crate) struct FlowCounter {
    shared: Arc<CounterShared>,
}

#[derive(Debug)]
struct CounterShared {
    map: BpfHashMap<MapData, FlowKey, FlowState>,
    /// The last figure; `u64::MAX` before the first count ends.
    latest: AtomicU64,
    running: AtomicBool,
}

impl FlowCounter {
    pub(crate) fn new(map: BpfHashMap<MapData, FlowKey, FlowState>) -> FlowCounter {
        FlowCounter {
            shared: Arc::new(CounterShared {
                map,
                latest: AtomicU64::new(u64::MAX),
                running: AtomicBool::new(false),
            }),
        }
    }

    /// Starts a count unless one is running. Never blocks.
    pub(crate) fn request(&self) {
        if self.shared.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("flow-count".to_owned())
            .spawn(move || shared.count());
        if let Err(e) = spawned {
            self.shared.running.store(false, Ordering::Release);
            warn!(error = %e, "cannot start the flow table count; the fill figure stays as it was");
        }
    }

    /// The last figure published, if a count has ended.
    pub(crate) fn latest(&self) -> Option<u64> {
        let n = self.shared.latest.load(Ordering::Acquire);
        (n != u64::MAX).then_some(n)
    }
}

impl CounterShared {
    fn count(&self) {
        let n = self.map.keys().filter(std::result::Result::is_ok).count() as u64;
        self.latest.store(n, Ordering::Release);
        self.running.store(false, Ordering::Release);
    }
}

/// Takes the flow table out of `ebpf` as two handles on the same map: the event loop's (per
/// event lookups) and the [`FlowCounter`]'s (a duplicate of the fd).
pub(super) fn take_flows(
    ebpf: &mut aya::Ebpf,
) -> Result<(BpfHashMap<MapData, FlowKey, FlowState>, FlowCounter)> {
    let name = map_name::FLOWS;
    let map_err = |error| DatapathError::Map { name, error };
    let map = ebpf.take_map(name).ok_or(DatapathError::MissingMap(name))?;
    let fd = match &map {
        Map::LruHashMap(data) | Map::HashMap(data) => data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| map_err(MapError::from(e)))?,
        _ => return Err(map_err(MapError::InvalidMapType { map_type: 0 })),
    };
    let second = MapData::from_fd(fd).map_err(map_err)?;
    let counter_map = Map::from_map_data(second)
        .map_err(map_err)?
        .try_into()
        .map_err(map_err)?;
    let flows = map.try_into().map_err(map_err)?;
    Ok((flows, FlowCounter::new(counter_map)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use node_monitor_common::MAX_GROUPS;

    use super::*;

    /// A standalone table of `n` flows (a BPF hash map of the flow table's key and value).
    fn table(n: u32) -> BpfHashMap<MapData, FlowKey, FlowState> {
        let mut m = BpfHashMap::<MapData, FlowKey, FlowState>::create(n, 0)
            .expect("creating a BPF hash map (needs root)");
        for i in 0..n {
            let key = FlowKey {
                src_port: (i & 0xffff) as u16,
                dst_port: (i >> 16) as u16,
                proto: 6,
                family: 4,
                ..FlowKey::default()
            };
            m.insert(key, FlowState::default(), 0).expect("insert");
        }
        m
    }

    #[test]
    fn the_flow_count_never_walks_the_table_on_the_caller() {
        const N: u32 = 200_000;
        let counter = FlowCounter::new(table(N));
        assert_eq!(counter.latest(), None, "no figure before a count");
        // The walk costs one syscall per entry (a good part of a second here). A request that
        // walked the table on the caller would return with the figure ready; one that hands
        // the walk to another thread returns before it (no clock involved).
        counter.request();
        assert_eq!(
            counter.latest(),
            None,
            "the request walked the table on the caller"
        );
        // A second request while one runs does not start another.
        counter.request();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while counter.latest().is_none() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(counter.latest(), Some(u64::from(N)));
    }

    #[test]
    fn group_slots_cover_each_protocol_and_verdict_once_under_the_right_index() {
        let pairs: BTreeSet<(u32, u8)> = GROUP_SLOTS.iter().map(|(_, p, v)| (*p, *v)).collect();
        assert_eq!(pairs.len(), 4);
        for (proto, pidx, _) in GROUP_SLOTS {
            let want = match proto {
                Protocol::Tcp => PROTO_IDX_TCP,
                Protocol::Udp => PROTO_IDX_UDP,
            };
            assert_eq!(pidx, want, "{proto:?} read from the other protocol's slot");
        }
    }

    #[test]
    fn groups_never_share_a_counter_slot() {
        // A reset of a fresh id must not touch another group's counters.
        let mut seen = BTreeSet::new();
        for id in 1..MAX_GROUPS as u8 {
            for (_, pidx, verdict) in GROUP_SLOTS {
                assert!(seen.insert(stats_index(id, pidx, verdict)), "id {id}");
            }
        }
    }
}
