//! The counters a running (or earlier) daemon left pinned, read without loading anything:
//! for `node-monitor audit`, which correlates open doors with the traffic seen.
use std::{collections::BTreeMap, path::Path};

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use node_monitor_common::{ANSWER_ACCEPTED, FlowKey, FlowState, GroupName, GroupStats, map_name};

use super::{
    DatapathError, GroupIds, Result,
    counters::{GroupCounters, summed_counters},
};

fn open(dir: &Path, name: &'static str) -> Result<MapData> {
    let path = dir.join("maps").join(name);
    MapData::from_pin(&path).map_err(|error| DatapathError::Map { name, error })
}

/// Counters of every group named in the pinned `GROUP_NAMES`, from the pinned
/// `GROUP_STATS` under the pin directory `dir`, summed over CPUs.
pub fn pinned_group_counters(dir: &Path) -> Result<Vec<GroupCounters>> {
    let names = group_names(dir)?;
    let stats: PerCpuArray<MapData, GroupStats> =
        PerCpuArray::try_from(Map::PerCpuArray(open(dir, map_name::GROUP_STATS)?)).map_err(
            |error| DatapathError::Map {
                name: map_name::GROUP_STATS,
                error,
            },
        )?;
    summed_counters(&stats, &GroupIds::read(&names)?)
}

fn group_names(dir: &Path) -> Result<Array<MapData, GroupName>> {
    Array::try_from(Map::Array(open(dir, map_name::GROUP_NAMES)?)).map_err(|error| {
        DatapathError::Map {
            name: map_name::GROUP_NAMES,
            error,
        }
    })
}

/// The flagged flows of a (group, protocol, destination port) among those the pinned `FLOWS`
/// table still holds ([`pinned_flagged_flows`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlaggedFlows {
    /// Flows whose new connection was flagged (a source outside the allowlist).
    pub held: u64,
    /// Of them, those egress saw the node accept (a SYN-ACK, or for UDP a reply).
    pub accepted: u64,
}

/// The flagged flows among those the pinned `FLOWS` table still holds, counted by (group
/// name, IP protocol, destination port). The table is an LRU of recent flows, and a denied
/// source past its budget inserts nothing: older flows may have left it and withheld attempts
/// were never in it, so these are lower bounds, per port (the group's counters are exact, per
/// group). One syscall per entry, for `node-monitor audit`.
pub fn pinned_flagged_flows(dir: &Path) -> Result<BTreeMap<(String, u8, u16), FlaggedFlows>> {
    let ids = GroupIds::read(&group_names(dir)?)?;
    let err = |error| DatapathError::Map {
        name: map_name::FLOWS,
        error,
    };
    let flows: BpfHashMap<MapData, FlowKey, FlowState> =
        BpfHashMap::try_from(Map::LruHashMap(open(dir, map_name::FLOWS)?)).map_err(err)?;
    let mut out: BTreeMap<_, FlaggedFlows> = BTreeMap::new();
    // An entry the programs evict during the walk ends it early or is skipped: what is read
    // is a lower bound, never an error.
    for (key, state) in flows.iter().flatten() {
        if state.flagged == 0 {
            continue;
        }
        if let Some(group) = ids.name(state.group) {
            let e = out
                .entry((group.to_owned(), key.proto, key.dst_port))
                .or_default();
            e.held += 1;
            e.accepted += u64::from(state.answer == ANSWER_ACCEPTED);
        }
    }
    Ok(out)
}
