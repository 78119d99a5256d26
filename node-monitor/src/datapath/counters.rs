//! Reading the data path back: group and reason counters summed over CPUs, the flow table,
//! and the kernel's run statistics of the attached programs.
use std::collections::BTreeSet;

use aya::{
    maps::PerCpuValues,
    programs::{ProgramError, ProgramInfo, SchedClassifier, Xdp},
    util::nr_cpus,
};
use node_monitor_common::{
    FlowKey, FlowState, GroupStats, PROTO_IDX_TCP, PROTO_IDX_UDP, VERDICT_ALLOWED, VERDICT_DENIED,
    map_name, reason, stats_index,
};
use tracing::warn;

use super::{Datapath, DatapathError, Hook, Result};
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

impl Datapath {
    /// Counters for every configured group, protocol and verdict, summed over CPUs.
    pub fn group_counters(&self) -> Result<Vec<GroupCounters>> {
        let mut out = Vec::new();
        for (name, id) in self.ids.iter() {
            for (proto, pidx, verdict) in GROUP_SLOTS {
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
        Ok(out)
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
    /// the table with one syscall per entry.
    pub(crate) const FLOW_COUNT_MAX: u32 = 262_144;

    /// Number of entries in the flow table (walks the table; for metrics, not per event).
    /// None when the table is larger than [`Self::FLOW_COUNT_MAX`], whose walk would cost
    /// too much to repeat.
    pub(crate) fn flow_count(&self) -> Option<usize> {
        (self.limits.flows <= Self::FLOW_COUNT_MAX)
            .then(|| self.flows.keys().filter(std::result::Result::is_ok).count())
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use node_monitor_common::MAX_GROUPS;

    use super::*;

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
